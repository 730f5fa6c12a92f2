//! The C ABI: its header is the one cbindgen makes from `src/ffi.rs`, its calls keep their
//! contract from Rust, and a real C program, `examples/c/turnstile.c`, builds against the static
//! library, runs, and runs again under valgrind with no leak and no error.
#![cfg(feature = "ffi")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
/// withdraws one, sees refusals and a forced panic come back as statuses, and checks the audit,
/// first natively and then under valgrind, which must find no error and no leak.
#[test]
fn the_c_turnstile_runs_and_valgrind_finds_no_error_and_no_leak() {
    let program = turnstile();
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(std::process::Command::new(&program).arg(dir.path()));
    assert!(ok, "turnstile failed:\n{text}");
    assert!(text.contains("two cameras: 40 and 40 of 40 right"), "{text}");
    assert!(text.contains("a forced panic came back as status 11"), "{text}");

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
