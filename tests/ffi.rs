//! The C ABI: its header is the one cbindgen makes from `src/ffi.rs`, its calls keep their
//! contract from Rust, and a real C program, `examples/c/turnstile.c`, builds against the static
//! library, runs, and runs again under valgrind with no leak and no error.
#![cfg(feature = "ffi")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_checked_in_header_is_the_one_cbindgen_makes() {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    // The module alone: the crate enables it by a feature, which the header need not know.
    let bindings = cbindgen::Builder::new()
        .with_src(root().join("src/ffi.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen reads src/ffi.rs");
    let mut made = Vec::new();
    bindings.write(&mut made);
    let path = root().join("include/facevault.h");
    if std::env::var_os("FACEVAULT_BLESS").is_some() {
        std::fs::write(&path, &made).unwrap();
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == made,
        "include/facevault.h is stale: FACEVAULT_BLESS=1 cargo test --features ffi --test ffi"
    );
}

/// Builds the static library (with the test hook that forces a panic) into a target folder of
/// its own, so as not to wait on the build that is running this test, and compiles
/// `examples/c/turnstile.c` against it.
fn turnstile() -> PathBuf {
    let target = root().join("target/ffi-c");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--lib",
            "--no-default-features",
            "--features",
            "ffi-test-hooks",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(root())
        .status()
        .unwrap();
    assert!(built.success(), "the static library did not build");
    let program = target.join("turnstile");
    let compiled = std::process::Command::new("gcc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
            "-DFACEVAULT_TEST_HOOKS",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("examples/c/turnstile.c"))
        .arg(target.join("debug/libfacevault.a"))
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&program)
        .status()
        .unwrap();
    assert!(compiled.success(), "turnstile.c did not compile");
    program
}

fn run(command: &mut std::process::Command) -> (bool, String) {
    // A backtrace of the forced panic would be symbolised, and its caches kept to the end.
    let output = command.env_remove("RUST_BACKTRACE").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The firmware issue's C example: it enrols three people, verifies, identifies from two threads,
/// withdraws one, sees refusals and a forced panic come back as statuses, backs up, compacts, checks
/// the audit and opens the vault again, first natively and then under valgrind, which must find no error and no leak.
#[test]
fn the_c_turnstile_runs_and_valgrind_finds_no_error_and_no_leak() {
    let program = turnstile();
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(std::process::Command::new(&program).arg(dir.path()));
    assert!(ok, "turnstile failed:\n{text}");
    assert!(text.contains("two cameras: 40 and 40 of 40 right"), "{text}");
    assert!(text.contains("a forced panic came back as status 11"), "{text}");
    assert!(text.contains("backed up: "), "{text}");
    assert!(text.contains("compacted: "), "{text}");
    assert!(
        text.contains("reopened: 2 subjects, person 0 verifies: match=1"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(std::process::Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
        ])
        .arg(&program)
        .arg(dir.path()));
    let summary: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.contains("ERROR SUMMARY")
                || line.contains("definitely lost")
                || line.contains("in use at exit")
        })
        .collect();
    eprintln!("valgrind: {}", summary.join(" | "));
    assert!(ok, "valgrind found errors or leaks:\n{text}");
    assert!(text.contains("ERROR SUMMARY: 0 errors"), "{text}");
    assert!(text.contains("in use at exit: 0 bytes in 0 blocks"), "{text}");
}

/// `fv_backup` and `fv_restore_with_key_file` from Rust through the ABI: a key file's vault is
/// backed up, a subject erased, the file deleted and the backup restored, and the erased subject
/// stays erased.
#[test]
#[allow(unsafe_code)] // calling the C ABI as C does
fn a_backup_restores_through_the_c_abi_without_the_erased() {
    use facevault::ffi::{
        fv_backup, fv_close, fv_erase, fv_login, fv_open_with_key_file, fv_restore_with_key_file,
        fv_session_free, fv_status,
    };
    use facevault::{KeyFile, Password, Vault, VaultConfig};
    use std::ffi::CString;
    let dir = tempfile::tempdir().unwrap();
    let (db, key, backup) = (
        dir.path().join("vault.db"),
        dir.path().join("master.key"),
        dir.path().join("vault.fvbackup"),
    );
    let keys = KeyFile::create(&key).unwrap();
    let vault = Vault::create(
        &db,
        &keys,
        &VaultConfig::new(4, "m"),
        "admin",
        &Password::new("admin password 1"),
    )
    .unwrap();
    let admin = vault.login("admin", &Password::new("admin password 1")).unwrap();
    vault
        .publish_notice(&admin, &common::notice(common::NOTICE_VERSION))
        .unwrap();
    common::govern(&vault, &admin);
    let enrolment = common::consent();
    let kept = vault
        .enrol(&admin, &enrolment, &[1.0f32, 0.0, 0.0, 0.0][..])
        .unwrap();
    let erased = vault
        .enrol(&admin, &enrolment, &[0.0f32, 1.0, 0.0, 0.0][..])
        .unwrap();
    vault.close().unwrap();

    let c = |text: &std::path::Path| CString::new(text.to_str().unwrap()).unwrap();
    let (db_c, key_c, backup_c) = (c(&db), c(&key), c(&backup));
    let admin_c = CString::new("admin").unwrap();
    let password_c = CString::new("admin password 1").unwrap();
    let mut handle = std::ptr::null_mut();
    let mut session = std::ptr::null_mut();
    let mut bytes = 0u64;
    // SAFETY: every pointer is valid for its call, texts NUL-terminated, and each handle is
    // closed or freed once.
    unsafe {
        assert_eq!(
            fv_open_with_key_file(db_c.as_ptr(), key_c.as_ptr(), &mut handle),
            fv_status::FV_OK
        );
        assert_eq!(
            fv_login(handle, admin_c.as_ptr(), password_c.as_ptr(), &mut session),
            fv_status::FV_OK
        );
        assert_eq!(
            fv_backup(handle, session, backup_c.as_ptr(), &mut bytes),
            fv_status::FV_OK
        );
        assert!(bytes > 160);
        assert_eq!(fv_erase(handle, session, erased.as_bytes()), fv_status::FV_OK);
        fv_session_free(session);
        assert_eq!(fv_close(handle), fv_status::FV_OK);
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    let mut restored = std::ptr::null_mut();
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            fv_restore_with_key_file(
                backup_c.as_ptr(),
                db_c.as_ptr(),
                key_c.as_ptr(),
                admin_c.as_ptr(),
                password_c.as_ptr(),
                false,
                &mut restored,
            ),
            fv_status::FV_OK
        );
        assert_eq!(fv_close(restored), fv_status::FV_OK);
    }
    let vault = Vault::open(&db, &keys).unwrap();
    let admin = vault.login("admin", &Password::new("admin password 1")).unwrap();
    let listed: Vec<_> = vault
        .subjects(&admin)
        .unwrap()
        .into_iter()
        .map(|s| s.subject)
        .collect();
    assert_eq!(listed, vec![kept]);
    vault.close().unwrap();
}
