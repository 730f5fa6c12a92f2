//! The whole-file layer (feature `sqlcipher`). Run with `cargo test --features sqlcipher`; the
//! rest of the suite runs under the layer too, with the tests' raw file access keyed as an
//! attacker with the file and its key would key it (`common::raw_db`).
//!
//! Without the feature, the first test shows what the layer hides: the plain file names its
//! tables and its model in clear.

mod common;

use std::path::Path;

use common::*;
#[cfg(feature = "sqlcipher")]
use facevault::{Error, FixedKey, KeyFile, OpenOptions, Password, Vault};

const DIM: usize = 16;

/// Names a reader of the raw bytes would look for: the schema, a model name, a user name.
const NAMES: [&str; 7] = [
    "SQLite format 3",
    "CREATE TABLE",
    "subjects",
    "consents",
    "principals",
    "test-model",
    "audit_epoch",
];

/// Which of [`NAMES`] occur in the file's bytes (as `strings` would find them).
fn names_in(path: &Path) -> Vec<&'static str> {
    let bytes = read_or_empty(path);
    NAMES
        .into_iter()
        .filter(|name| bytes.windows(name.len()).any(|window| window == name.as_bytes()))
        .collect()
}

#[test]
fn the_file_names_no_table_user_or_model_only_with_the_layer() {
    let mut tv = TestVault::new(DIM);
    let person = Rng::new(3).gaussian_vec(DIM);
    let subject = tv.vault.enrol(&tv.admin, &consent(), &person).unwrap();
    tv = tv.reopen();
    assert!(tv.vault.verify(&tv.operator, &subject, &person).unwrap().matched);
    tv.vault.flush_audit().unwrap();
    // Read while open, so that the WAL still holds the latest pages, and again after closing.
    let wal = tv.wal_path();
    let (dir, path) = (tv.dir, tv.path);
    let open_file = names_in(&path);
    let open_wal = names_in(&wal);
    tv.vault.close().unwrap();
    let closed_file = names_in(&path);
    if cfg!(feature = "sqlcipher") {
        assert_eq!(open_file, Vec::<&str>::new());
        assert_eq!(open_wal, Vec::<&str>::new());
        assert_eq!(closed_file, Vec::<&str>::new());
        let raw = rusqlite::Connection::open(&path).unwrap();
        let unkeyed = raw.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
            row.get::<_, i64>(0)
        });
        assert!(unkeyed.is_err(), "read without the key: {unkeyed:?}");
    } else {
        // The plain file the layer is there for: the scan above finds these.
        for name in ["SQLite format 3", "CREATE TABLE", "subjects", "test-model"] {
            assert!(closed_file.contains(&name), "{name} not in the plain file");
        }
    }
    drop(dir);
}

#[cfg(feature = "sqlcipher")]
#[test]
fn only_the_master_key_opens_the_file() {
    let tv = TestVault::new(DIM);
    let (dir, path) = (tv.dir, tv.path);
    tv.vault.close().unwrap();
    assert!(matches!(
        Vault::open(&path, &FixedKey::new([0x33; 32])),
        Err(Error::WrongKey)
    ));
    let vault = Vault::open(&path, &FixedKey::new(KEY)).unwrap();
    vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    vault.close().unwrap();
    drop(dir);
}

/// A terminal whose firmware gains the layer opens its plain vault, here the checked-in format-1
/// fixture: it is checked, migrated to format 2 and encrypted as a whole, audited, and then
/// opens as an encrypted vault with the same key.
#[cfg(feature = "sqlcipher")]
#[test]
fn a_plain_vault_is_encrypted_as_a_whole_once_checked() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/vault-v1");
    let dir = tempfile::tempdir().unwrap();
    let (db, key) = (dir.path().join("vault.db"), dir.path().join("master.key"));
    std::fs::copy(fixture.join("vault.db"), &db).unwrap();
    std::fs::copy(fixture.join("master.key"), &key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert!(names_in(&db).contains(&"CREATE TABLE"));
    // A wrong key is refused, and the plain file is left as it was.
    let before = std::fs::read(&db).unwrap();
    assert!(matches!(
        Vault::open(&db, &FixedKey::new([0x33; 32])),
        Err(Error::WrongKey)
    ));
    assert_eq!(std::fs::read(&db).unwrap(), before);

    let vault = Vault::open_with(&db, &KeyFile::new(&key), OpenOptions::default()).unwrap();
    assert_eq!(names_in(&db), Vec::<&str>::new());
    assert!(!dir.path().join("vault.db.encrypting").exists());
    let auditor = vault
        .login("auditor", &Password::new("auditor password 1"))
        .unwrap();
    let records = vault.audit_log(&auditor).unwrap();
    let migrations: Vec<_> = records
        .iter()
        .filter(|r| r.action == "migrate")
        .map(|r| r.detail.as_str())
        .collect();
    // Format 1 to 2, 2 to 3, 3 to 4, then the whole-file layer.
    assert_eq!(migrations.len(), 4, "{migrations:?}");
    assert!(migrations[1].starts_with("format 2 -> 3"));
    assert!(migrations[2].starts_with("format 3 -> 4"));
    assert!(migrations[3].contains("encrypted as a whole"));
    vault.close().unwrap();

    let vault = Vault::open_with(&db, &KeyFile::new(&key), OpenOptions::default()).unwrap();
    let auditor = vault
        .login("auditor", &Password::new("auditor password 1"))
        .unwrap();
    vault.verify_audit(&auditor).unwrap();
    assert_eq!(
        vault
            .audit_log(&auditor)
            .unwrap()
            .iter()
            .filter(|r| r.action == "migrate")
            .count(),
        4,
        "nothing migrates a second time"
    );
    vault.close().unwrap();
}

/// A rekey cut between its steps, built exactly: the file before the rekey (old file key, the old
/// wrap) with the new wrap added beside it is the state after step 1; re-encrypted under the new
/// file key, the state after step 2. The first opens only with the old key, which abandons the
/// rekey; the second only with the new, which finishes it. Each is audited and opens again.
#[cfg(feature = "sqlcipher")]
#[test]
fn a_rekey_cut_between_its_steps_is_settled_by_the_key_that_opens_the_file() {
    const NEW: [u8; 32] = [0x77; 32];
    let tv = TestVault::new(DIM);
    let person = Rng::new(5).gaussian_vec(DIM);
    let subject = tv.vault.enrol(&tv.admin, &consent(), &person).unwrap();
    let (dir, path) = (tv.dir, tv.path);
    tv.vault.close().unwrap();
    let before = dir.path().join("before.db");
    std::fs::copy(&path, &before).unwrap();
    let vault = Vault::open(&path, &FixedKey::new(KEY)).unwrap();
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    vault.rekey(&admin, &FixedKey::with_own_counters(NEW)).unwrap();
    vault.close().unwrap();
    let raw_with = |path: &Path, master: &[u8; 32]| {
        let conn = rusqlite::Connection::open(path).unwrap();
        key_whole_file(&conn, master);
        conn
    };
    let new_wrap: Vec<u8> = raw_with(&path, &NEW)
        .query_row("SELECT value FROM meta WHERE key = 'root_key'", [], |r| r.get(0))
        .unwrap();

    let after_step_1 = dir.path().join("step1.db");
    std::fs::copy(&before, &after_step_1).unwrap();
    raw_with(&after_step_1, &KEY)
        .execute(
            "INSERT INTO meta(key, value) VALUES ('root_key_next', ?1)",
            [&new_wrap],
        )
        .unwrap();
    let after_step_2 = dir.path().join("step2.db");
    std::fs::copy(&after_step_1, &after_step_2).unwrap();
    raw_with(&after_step_2, &KEY)
        .execute_batch(&format!("PRAGMA rekey = \"x'{}'\";", file_key_hex(&NEW)))
        .unwrap();

    for (file, holds, fails, word) in [
        (&after_step_1, KEY, NEW, "abandoned"),
        (&after_step_2, NEW, KEY, "finished"),
    ] {
        assert!(matches!(
            Vault::open(file, &FixedKey::with_own_counters(fails)),
            Err(Error::WrongKey)
        ));
        let keys = FixedKey::with_own_counters(holds);
        let vault = Vault::open(file, &keys).unwrap();
        let settled: Vec<_> = audited(&vault, "system", "rekey")
            .into_iter()
            .map(|r| r.detail)
            .collect();
        assert_eq!(settled.len(), 1, "{settled:?}");
        assert!(settled[0].contains(word), "{settled:?}");
        vault.close().unwrap();
        let left: i64 = raw_with(file, &holds)
            .query_row("SELECT count(*) FROM meta WHERE key = 'root_key_next'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(left, 0);
        let vault = Vault::open(file, &keys).unwrap();
        let operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
        assert!(vault.verify(&operator, &subject, &person).unwrap().matched);
        let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        vault.verify_audit(&admin).unwrap();
        vault.close().unwrap();
    }
}
