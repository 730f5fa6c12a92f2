//! An attacker with the file: a wrong key, flipped bytes, swapped rows and edited settings are each
//! a distinct, clear error naming the damaged record, never a wrong answer and never a panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use facevault::{Error, FixedKey, Password, Vault};
use rusqlite::params;

/// A closed vault file with 20 subjects (the first five with two templates each), its folder and
/// its subjects' IDs.
fn populated_vault() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let tv = TestVault::new(64);
    let mut faces = Faces::new(64, 4, 3);
    let mut subjects = Vec::new();
    for i in 0..20 {
        let person = faces.person();
        let subject = tv.vault.enrol(&tv.admin, &consent(), &person).unwrap();
        if i < 5 {
            tv.vault
                .add_template(&tv.admin, &subject, &faces.capture(&person, 0.5))
                .unwrap();
        }
        subjects.push(subject.to_string());
    }
    tv.vault.close().unwrap();
    (tv.dir, tv.path, subjects)
}

/// A copy of the vault's (closed, checkpointed) file, edited by `edit` through plain SQLite.
fn tampered_copy(source: &Path, name: &str, edit: impl FnOnce(&rusqlite::Connection)) -> PathBuf {
    let target = source.with_file_name(name);
    std::fs::copy(source, &target).unwrap();
    let conn = raw_db(&target);
    edit(&conn);
    drop(conn);
    target
}

/// Each tampered copy is opened as if on a device of its own: copies of one vault share a
/// rollback counter otherwise, and one that a failed opening wrote to would make the next look
/// rolled back.
fn open(path: &Path) -> Result<Vault, Error> {
    Vault::open(path, &FixedKey::with_own_counters(KEY))
}

fn integrity_record(result: Result<Vault, Error>) -> (&'static str, String) {
    match result {
        Err(Error::Integrity { table, record }) => (table, record),
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

fn template_ids(conn: &rusqlite::Connection) -> Vec<i64> {
    let mut statement = conn.prepare("SELECT id FROM templates ORDER BY id").unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_flipped_byte_in_any_template_ciphertext_or_nonce_names_the_record() {
    let (_dir, path, _) = populated_vault();
    let ids = template_ids(&raw_db(&path));
    assert_eq!(ids.len(), 25);
    let mut rng = Rng::new(11);
    for (n, id) in ids.iter().enumerate() {
        let column = if n % 4 == 3 { "nonce" } else { "ciphertext" };
        let copy = tampered_copy(&path, &format!("flip-{id}.db"), |conn| {
            let mut blob: Vec<u8> = conn
                .query_row(
                    &format!("SELECT {column} FROM templates WHERE id = ?1"),
                    [id],
                    |r| r.get(0),
                )
                .unwrap();
            let at = (rng.next_u64() % blob.len() as u64) as usize;
            blob[at] ^= 1 << (rng.next_u64() % 8);
            conn.execute(
                &format!("UPDATE templates SET {column} = ?1 WHERE id = ?2"),
                params![blob, id],
            )
            .unwrap();
        });
        assert_eq!(
            integrity_record(open(&copy)),
            ("templates", id.to_string()),
            "{column} of template {id}"
        );
    }
}

/// A closed vault file with `n` subjects of one template each, at d=16: enough rows for the
/// opening to hand them between its threads in many batches.
fn large_vault(n: usize) -> (tempfile::TempDir, PathBuf) {
    let tv = TestVault::new(16);
    let mut faces = Faces::new(16, 4, 5);
    let rows: Vec<f32> = (0..n).flat_map(|_| faces.person()).collect();
    tv.vault.enrol_batch(&tv.admin, &consent(), &rows[..]).unwrap();
    tv.vault.close().unwrap();
    (tv.dir, tv.path)
}

fn flip_ciphertext(conn: &rusqlite::Connection, id: i64) {
    let mut blob: Vec<u8> = conn
        .query_row("SELECT ciphertext FROM templates WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    blob[3] ^= 0x10;
    conn.execute(
        "UPDATE templates SET ciphertext = ?1 WHERE id = ?2",
        params![blob, id],
    )
    .unwrap();
}

fn rename_model(conn: &rusqlite::Connection, id: i64) {
    conn.execute("UPDATE templates SET model = 'other-model' WHERE id = ?1", [id])
        .unwrap();
}

/// The opening reads rows on one thread and decrypts them on another; whichever finds damage,
/// the record named is the first damaged one in table order, as a single pass would name it,
/// and the opening ends rather than waiting on the other thread.
#[test]
fn the_first_damaged_template_in_table_order_is_named_whichever_check_finds_it() {
    let (_dir, path) = large_vault(700);
    let ids = template_ids(&raw_db(&path));
    assert_eq!(ids.len(), 700);
    let (early, late) = (ids[5], ids[650]);
    type Edit = fn(&rusqlite::Connection, i64);
    let cases: [(&str, Edit, Edit); 4] = [
        ("decrypt-then-model", flip_ciphertext, rename_model),
        ("model-then-decrypt", rename_model, flip_ciphertext),
        ("decrypt-then-decrypt", flip_ciphertext, flip_ciphertext),
        ("model-then-model", rename_model, rename_model),
    ];
    for (name, first, second) in cases {
        let copy = tampered_copy(&path, &format!("{name}.db"), |conn| {
            first(conn, early);
            second(conn, late);
        });
        assert_eq!(
            integrity_record(open(&copy)),
            ("templates", early.to_string()),
            "{name}"
        );
        let copy = tampered_copy(&path, &format!("{name}-late.db"), |conn| second(conn, late));
        assert_eq!(
            integrity_record(open(&copy)),
            ("templates", late.to_string()),
            "{name}, late only"
        );
    }
    // A subject's MAC is checked on the helper thread too: the last subject in table order.
    let last: Vec<u8> = raw_db(&path)
        .query_row("SELECT id FROM subjects ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let copy = tampered_copy(&path, "late-subject.db", |conn| {
        conn.execute(
            "UPDATE subjects SET expires_at = expires_at - 1 WHERE id = ?1",
            [&last],
        )
        .unwrap();
    });
    let hex: String = last.iter().map(|b| format!("{b:02x}")).collect();
    let (table, record) = integrity_record(open(&copy));
    assert_eq!(table, "subjects");
    assert_eq!(record.replace('-', ""), hex);
}

#[test]
fn a_flipped_byte_in_a_wrapped_key_names_the_subject() {
    let (_dir, path, subjects) = populated_vault();
    for (n, subject) in subjects.iter().enumerate().step_by(3) {
        let copy = tampered_copy(&path, &format!("key-{n}.db"), |conn| {
            let id = hex_to_bytes(subject);
            let mut wrapped: Vec<u8> = conn
                .query_row("SELECT wrapped_key FROM subjects WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .unwrap();
            let at = n % wrapped.len();
            wrapped[at] ^= 0x80;
            conn.execute(
                "UPDATE subjects SET wrapped_key = ?1 WHERE id = ?2",
                params![wrapped, id],
            )
            .unwrap();
        });
        assert_eq!(integrity_record(open(&copy)), ("subjects", subject.clone()));
    }
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn swapped_ciphertexts_between_two_subjects_are_caught() {
    let (_dir, path, _) = populated_vault();
    // Templates 11 and 12 belong to two different single-template subjects.
    let copy = tampered_copy(&path, "swap.db", |conn| {
        let row = |id: i64| -> (Vec<u8>, Vec<u8>) {
            conn.query_row(
                "SELECT nonce, ciphertext FROM templates WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        let (a, b) = (row(11), row(12));
        for (id, (nonce, ciphertext)) in [(11, b), (12, a)] {
            conn.execute(
                "UPDATE templates SET nonce = ?1, ciphertext = ?2 WHERE id = ?3",
                params![nonce, ciphertext, id],
            )
            .unwrap();
        }
    });
    assert_eq!(integrity_record(open(&copy)).0, "templates");

    // Moving a template row to another subject fails the same way.
    let copy = tampered_copy(&path, "move.db", |conn| {
        conn.execute("UPDATE templates SET subject_id = (SELECT subject_id FROM templates WHERE id = 20) WHERE id = 19", [])
            .unwrap();
    });
    assert_eq!(integrity_record(open(&copy)), ("templates", "19".to_string()));

    // Swapping two subjects' wrapped keys breaks both.
    let copy = tampered_copy(&path, "swap-keys.db", |conn| {
        conn.execute_batch(
            "CREATE TEMP TABLE k AS SELECT id, wrapped_key FROM subjects ORDER BY id LIMIT 2;
             UPDATE subjects SET wrapped_key = (SELECT wrapped_key FROM k WHERE k.id != subjects.id)
             WHERE id IN (SELECT id FROM k);",
        )
        .unwrap();
    });
    assert_eq!(integrity_record(open(&copy)).0, "subjects");
}

#[test]
fn deleting_a_subjects_templates_is_caught() {
    let (_dir, path, _) = populated_vault();
    let copy = tampered_copy(&path, "orphan.db", |conn| {
        conn.execute("DELETE FROM templates WHERE id = 12", []).unwrap();
    });
    assert_eq!(integrity_record(open(&copy)).0, "subjects");
}

#[test]
fn an_edited_threshold_or_role_is_caught() {
    let (_dir, path, _) = populated_vault();
    let copy = tampered_copy(&path, "threshold.db", |conn| {
        conn.execute("UPDATE models SET threshold = 0.1", []).unwrap();
    });
    assert_eq!(integrity_record(open(&copy)), ("meta", "settings".to_string()));
    // The failed opening is itself on the record.
    let (action, outcome, detail): (String, String, String) = raw_db(&copy)
        .query_row(
            "SELECT action, outcome, detail FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((action.as_str(), outcome.as_str()), ("open", "failed"));
    assert!(detail.starts_with("integrity"), "{detail}");

    let copy = tampered_copy(&path, "role.db", |conn| {
        conn.execute("UPDATE principals SET role = 'admin' WHERE name = ?1", [OPERATOR])
            .unwrap();
    });
    let vault = open(&copy).unwrap();
    match vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)) {
        Err(Error::Integrity {
            table: "principals",
            record,
        }) => assert_eq!(record, OPERATOR),
        other => panic!("expected an integrity error, got {other:?}"),
    }

    // A password hash copied from another principal does not log in either.
    let copy = tampered_copy(&path, "hash.db", |conn| {
        conn.execute(
            "UPDATE principals SET salt = (SELECT salt FROM principals WHERE name = ?1),
                                   hash = (SELECT hash FROM principals WHERE name = ?1) WHERE name = ?2",
            [OPERATOR, ADMIN],
        )
        .unwrap();
    });
    let vault = open(&copy).unwrap();
    assert!(matches!(
        vault.login(ADMIN, &Password::new(OPERATOR_PASSWORD)),
        Err(Error::Integrity {
            table: "principals",
            ..
        })
    ));
}

#[test]
fn wrong_key_is_refused_before_anything_is_read_or_written() {
    let (_dir, path, _) = populated_vault();
    let before = std::fs::read(&path).unwrap();
    let mut other_key = KEY;
    other_key[31] ^= 1;
    assert!(matches!(
        Vault::open(&path, &FixedKey::new(other_key)),
        Err(Error::WrongKey)
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(read_or_empty(&with_suffix(&path, "-wal")).is_empty());
}

#[test]
fn cli_wrong_key_exits_4_and_writes_nothing() {
    let cli = CliVault::init(16);
    let template = cli.file("t.f32", &le_bytes(&Rng::new(1).gaussian_vec(16)));
    cli.admin(&[
        "enroll",
        "--template",
        &template,
        "--notice",
        NOTICE_VERSION,
        "--consent-method",
        CONSENT_METHOD,
    ])
    .ok();
    let before = std::fs::read(&cli.db).unwrap();
    let wrong_key = cli.dir.path().join("wrong.key");
    std::fs::write(&wrong_key, [9u8; 32]).unwrap();
    set_private(&wrong_key);
    for args in [
        vec!["stats"],
        vec!["identify", "--probe", &template],
        vec!["audit", "show"],
    ] {
        let mut full = vec![
            "--db",
            cli.db.to_str().unwrap(),
            "--key-file",
            wrong_key.to_str().unwrap(),
            "--as",
            ADMIN,
        ];
        full.extend(args);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_facevault"))
            .args(&full)
            .env("FACEVAULT_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(4));
        assert!(output.stdout.is_empty());
        let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
        assert_eq!(error["error"], "wrong_key");
    }
    assert_eq!(std::fs::read(&cli.db).unwrap(), before, "the database changed");
    assert!(read_or_empty(&with_suffix(&cli.db, "-wal")).is_empty());
}

#[test]
fn cli_damaged_ciphertext_exits_4_and_never_answers_a_match() {
    let cli = CliVault::init(16);
    let template = Rng::new(5).gaussian_vec(16);
    let file = cli.file("t.f32", &le_bytes(&template));
    let subject = cli.enrol_file(&file, &[]);
    let conn = raw_db(&cli.db);
    let mut blob: Vec<u8> = conn
        .query_row("SELECT ciphertext FROM templates", [], |r| r.get(0))
        .unwrap();
    blob[3] ^= 4;
    conn.execute("UPDATE templates SET ciphertext = ?1", [blob])
        .unwrap();
    drop(conn);
    let run = cli.operator(&["verify", "--subject", &subject, "--probe", &file]);
    let message = run.fails(4, "integrity");
    assert!(message.contains("templates record 1"), "{message}");
    cli.operator(&["identify", "--probe", &file])
        .fails(4, "integrity");
}

#[test]
fn key_file_that_others_can_read_or_of_wrong_length_is_refused() {
    let cli = CliVault::init(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cli.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = cli.admin(&["stats"]).fails(3, "key_file");
        assert!(message.contains("chmod 600"), "{message}");
        set_private(&cli.key);
    }
    let key = std::fs::read(&cli.key).unwrap();
    std::fs::write(&cli.key, &key[..31]).unwrap();
    cli.admin(&["stats"]).fails(4, "key_file");
}

fn set_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn deleting_one_of_several_templates_or_a_subject_row_is_caught() {
    let (_dir, path, subjects) = populated_vault();
    // The first five subjects hold two templates each; drop the second of the first subject's.
    let copy = tampered_copy(&path, "one-template.db", |conn| {
        conn.execute("DELETE FROM templates WHERE id = 2", []).unwrap();
    });
    assert_eq!(integrity_record(open(&copy)), ("subjects", subjects[0].clone()));
    // With foreign keys off (the sqlite3 shell's default) the templates outlive their subject row.
    let copy = tampered_copy(&path, "subject-row.db", |conn| {
        conn.execute_batch("PRAGMA foreign_keys=OFF").unwrap();
        conn.execute(
            "DELETE FROM subjects WHERE id = (SELECT subject_id FROM templates WHERE id = 12)",
            [],
        )
        .unwrap();
    });
    // The state digest (issue 14) no longer adds up: refused before any template is read.
    assert!(matches!(open(&copy), Err(Error::RowsRolledBack)));
    // A whole subject gone, templates and all, is caught the same way (limitation 5).
    let copy = tampered_copy(&path, "whole-subject.db", |conn| {
        conn.execute_batch(
            "CREATE TEMP TABLE gone AS SELECT subject_id AS id FROM templates WHERE id = 12;
             DELETE FROM templates WHERE subject_id IN (SELECT id FROM gone);
             DELETE FROM consents WHERE subject_id IN (SELECT id FROM gone);
             DELETE FROM subjects WHERE id IN (SELECT id FROM gone);",
        )
        .unwrap();
    });
    assert!(matches!(open(&copy), Err(Error::RowsRolledBack)));
}

#[test]
fn an_edited_expiry_or_minor_flag_is_caught() {
    let (_dir, path, subjects) = populated_vault();
    let copy = tampered_copy(&path, "expiry.db", |conn| {
        conn.execute("UPDATE subjects SET expires_at = expires_at + 86400000", [])
            .unwrap();
    });
    assert_eq!(integrity_record(open(&copy)).0, "subjects");
    let copy = tampered_copy(&path, "minor.db", |conn| {
        conn.execute(
            "UPDATE subjects SET minor = 1 WHERE id = ?1",
            [hex_to_bytes(&subjects[7])],
        )
        .unwrap();
    });
    assert_eq!(integrity_record(open(&copy)), ("subjects", subjects[7].clone()));
}

#[test]
fn a_file_that_is_not_a_vault_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = raw_db(&path);
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(open(&path), Err(Error::NotAVault(_))));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "journal mode or anything else was changed"
    );
    // Another application's database that happens to use user_version 1 is refused untouched too.
    let versioned = dir.path().join("versioned.db");
    let conn = raw_db(&versioned);
    conn.execute_batch("CREATE TABLE t(x); PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&versioned).unwrap();
    assert!(matches!(open(&versioned), Err(Error::NotAVault(_))));
    assert_eq!(std::fs::read(&versioned).unwrap(), before);
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, [0x42u8; 4096]).unwrap();
    // With the whole-file layer, no page of it decrypts, as with a wrong key.
    match open(&garbage) {
        Err(Error::WrongKey) if cfg!(feature = "sqlcipher") => {}
        Err(Error::NotAVault(_)) if !cfg!(feature = "sqlcipher") => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&garbage).unwrap(), [0x42u8; 4096]);
    assert!(matches!(
        open(&dir.path().join("missing.db")),
        Err(Error::NotAVault(_))
    ));
}

/// Regression (review item 2): corruption found mid-operation, after a clean open, was reported as
/// a generic storage error (exit 1). A damaged page of the audit table, which opening does not
/// read, is found by `audit verify`: an integrity error, exit 4, named `corrupt`.
#[test]
fn a_damaged_page_found_after_open_is_an_integrity_error() {
    let cli = CliVault::init(16);
    cli.enrol("t.f32", &Rng::new(2).gaussian_vec(16), &[]);
    let (root_page, page_size): (i64, i64) = {
        let conn = raw_db(&cli.db);
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'audit'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        // SQLCipher answers with text.
        let size = conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|value| match value {
                rusqlite::types::Value::Integer(size) => size,
                rusqlite::types::Value::Text(size) => size.parse().unwrap(),
                other => panic!("page size {other:?}"),
            })
            .unwrap();
        (root, size)
    };
    assert!(
        read_or_empty(&with_suffix(&cli.db, "-wal")).is_empty(),
        "the WAL was checkpointed"
    );
    let mut bytes = std::fs::read(&cli.db).unwrap();
    let start = ((root_page - 1) * page_size) as usize;
    bytes[start..start + page_size as usize].fill(0xa5);
    std::fs::write(&cli.db, &bytes).unwrap();
    let message = cli.admin(&["audit", "verify"]).fails(4, "corrupt");
    assert!(message.contains("damaged"), "{message}");
}

/// Regression (review item 19): a vault without `meta.created_at`, or with `next_template_id`
/// missing, of the wrong type, or lowered below a stored template's ID, opened and failed only at
/// the next enrolment (with a storage error). Each is now refused at open.
#[test]
fn every_metadata_key_is_checked_at_open() {
    let (_dir, path, _) = populated_vault();
    let edits = [
        ("created_at missing", "DELETE FROM meta WHERE key = 'created_at'"),
        (
            "next_template_id missing",
            "DELETE FROM meta WHERE key = 'next_template_id'",
        ),
        (
            "next_template_id as text",
            "UPDATE meta SET value = '26' WHERE key = 'next_template_id'",
        ),
        (
            "created_at as a real",
            "UPDATE meta SET value = 1.5 WHERE key = 'created_at'",
        ),
        (
            "audit head of the wrong length",
            "UPDATE meta SET value = x'00' WHERE key = 'audit_head_hash'",
        ),
        (
            "audit epoch key missing",
            "DELETE FROM meta WHERE key = 'audit_epoch_key'",
        ),
        (
            "change number missing",
            "DELETE FROM meta WHERE key = 'change_number'",
        ),
    ];
    for (name, edit) in edits {
        let copy = tampered_copy(&path, "meta.db", |c| {
            c.execute(edit, []).unwrap();
        });
        let refused = open(&copy);
        assert!(
            matches!(
                refused,
                Err(Error::NotAVault(_)) | Err(Error::AuditTampered { .. }) | Err(Error::Integrity { .. })
            ),
            "{name}: {refused:?}"
        );
        std::fs::remove_file(&copy).unwrap();
    }
    let lowered = tampered_copy(&path, "meta.db", |c| {
        c.execute("UPDATE meta SET value = 3 WHERE key = 'next_template_id'", [])
            .unwrap();
    });
    assert_eq!(
        integrity_record(open(&lowered)),
        ("meta", "next_template_id".to_string())
    );
}

/// The processor's records: a profile edited in the file (a private space made a non-public
/// place, say, to lift the refusal), one deleted, or the filing threshold raised, is caught at
/// open; so is a row put in between.
#[test]
fn an_edited_or_deleted_governance_record_or_filing_threshold_is_caught() {
    let (_dir, path, _) = populated_vault();
    let copy = tampered_copy(&path, "profile.db", |conn| {
        conn.execute(
            "UPDATE governance SET body = replace(body, 'staff badge', 'nothing') WHERE kind = 'profile'",
            [],
        )
        .unwrap();
    });
    assert_eq!(integrity_record(open(&copy)), ("governance", "1".to_string()));
    let copy = tampered_copy(&path, "reordered.db", |conn| {
        conn.execute("UPDATE governance SET seq = 9 WHERE seq = 1", [])
            .unwrap();
    });
    assert!(matches!(
        open(&copy),
        Err(Error::Integrity {
            table: "governance",
            ..
        })
    ));
    let copy = tampered_copy(&path, "assessment.db", |conn| {
        conn.execute("DELETE FROM governance WHERE kind = 'assessment'", [])
            .unwrap();
    });
    assert!(
        matches!(open(&copy), Err(Error::RowsRolledBack)),
        "a deleted assessment"
    );
    let copy = tampered_copy(&path, "threshold.db", |conn| {
        conn.execute(
            "UPDATE meta SET value = 1000000 WHERE key = 'filing_threshold'",
            [],
        )
        .unwrap();
    });
    assert_eq!(integrity_record(open(&copy)), ("meta", "settings".to_string()));
}
