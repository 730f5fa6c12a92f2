//! Hostile files and inputs (issue 16, item 6): each gives a clear error of its kind and changes
//! nothing the vault holds. A failed opening that got as far as the audit log records itself
//! there (an `open` record, `failed`): that record is the one change allowed.
//!
//! Other cases of the list are tests elsewhere: a database that is not facevault's
//! (`tamper.rs`, `a_file_that_is_not_a_vault_is_refused_untouched`), one from a newer schema
//! version (`security.rs`, `lifecycle.rs`), a key file of the wrong length or readable by others
//! (`tamper.rs`), absurd dimensions and malformed template files (`bad_input.rs`), oversized
//! files and batches (`hostile.rs`), and arbitrary bytes as a vault, backup, bundle, audit
//! export, notice or template file (`fuzz_corpus.rs` and the fuzz targets).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use facevault::{Error, FixedKey, Vault, MAX_K};

/// The tables that hold the vault's data: what "changes nothing" compares.
const DATA_TABLES: [&str; 6] = [
    "subjects",
    "templates",
    "consents",
    "notices",
    "principals",
    "models",
];

/// The `open` records the failed openings added (with any epoch close the sealer put before
/// them), and the audit otherwise as it was.
fn failed_openings(path: &Path, records_before: i64) -> i64 {
    let conn = raw_db(path);
    let added: Vec<String> = conn
        .prepare("SELECT action || ' ' || outcome || ' ' || detail FROM audit WHERE seq > ?1")
        .and_then(|mut s| s.query_map([records_before], |row| row.get(0))?.collect())
        .unwrap_or_default();
    let after: i64 = conn
        .query_row("SELECT count(*) FROM audit", [], |row| row.get(0))
        .unwrap_or(records_before);
    let openings: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE seq > ?1 AND action = 'open' AND outcome = 'failed'",
            [records_before],
            |row| row.get(0),
        )
        .unwrap_or(0);
    // The sealer closes an epoch that has run its time before it seals the next record.
    let epoch_closes = added
        .iter()
        .filter(|r| r.starts_with("audit_epoch_close"))
        .count() as i64;
    assert_eq!(
        after - records_before,
        openings + epoch_closes,
        "only failed-open records were added: {added:?}"
    );
    openings
}

/// A closed vault with subjects, and its path.
fn closed_vault() -> (tempfile::TempDir, PathBuf) {
    let tv = TestVault::new(8);
    let mut rng = Rng::new(3);
    let rows: Vec<f32> = (0..5).flat_map(|_| rng.gaussian_vec(8)).collect();
    tv.vault.enrol_batch(&tv.admin, &consent(), &rows).unwrap();
    let path = tv.path.clone();
    let TestVault { dir, vault, .. } = tv;
    vault.close().unwrap();
    (dir, path)
}

fn open(path: &Path) -> Result<Vault, Error> {
    Vault::open(path, &FixedKey::with_own_counters(KEY))
}

#[test]
fn a_truncated_database_is_refused_and_left_as_it_is() {
    let (dir, path) = closed_vault();
    let whole = std::fs::read(&path).unwrap();
    for (name, len) in [
        ("empty", 0),
        ("header", 100),
        ("first page", 16_384),
        ("half", whole.len() / 2),
    ] {
        let cut = dir.path().join(format!("{}.db", name.replace(' ', "-")));
        std::fs::write(&cut, &whole[..len]).unwrap();
        let result = open(&cut);
        // Encrypted as a whole (feature `sqlcipher`), a cut file cannot be told from a file
        // under another key: no page decrypts.
        let whole_file_layer = cfg!(feature = "sqlcipher") && matches!(result, Err(Error::WrongKey));
        assert!(
            whole_file_layer
                || matches!(
                    result,
                    Err(Error::NotAVault(_))
                        | Err(Error::Storage(facevault::StorageError::Corrupt { .. }))
                        | Err(Error::Integrity { .. })
                ),
            "{name}: {result:?}"
        );
        assert_eq!(
            std::fs::read(&cut).unwrap(),
            &whole[..len],
            "{name}: the file changed"
        );
    }
}

#[test]
fn a_dropped_or_altered_table_is_refused_and_changes_nothing() {
    let (dir, path) = closed_vault();
    let cases: [(&str, &str); 5] = [
        ("no-models", "DROP TABLE models"),
        (
            "no-consents",
            "DROP TABLE consents; DROP INDEX IF EXISTS consents_by_subject",
        ),
        ("no-audit", "DROP TABLE audit"),
        ("renamed-column", "ALTER TABLE templates RENAME COLUMN nonce TO n"),
        ("dropped-column", "ALTER TABLE subjects DROP COLUMN personal"),
    ];
    for (name, sql) in cases {
        let copy = dir.path().join(format!("{name}.db"));
        std::fs::copy(&path, &copy).unwrap();
        raw_db(&copy).execute_batch(sql).unwrap();
        let before = table_rows(&copy, &DATA_TABLES);
        let audit_before: i64 = raw_db(&copy)
            .query_row("SELECT count(*) FROM audit", [], |row| row.get(0))
            .unwrap_or(0);
        let result = open(&copy);
        let error = result.expect_err(name);
        assert!(
            matches!(
                error,
                Error::NotAVault(_)
                    | Error::Integrity { .. }
                    | Error::Storage(_)
                    | Error::RowsRolledBack
                    | Error::AuditTampered { .. }
            ),
            "{name}: {error:?}"
        );
        assert!(!error.to_string().is_empty());
        assert_eq!(table_rows(&copy, &DATA_TABLES), before, "{name}: data changed");
        assert!(failed_openings(&copy, audit_before) <= 1, "{name}");
    }
}

#[test]
fn a_k_beyond_the_gallery_and_an_empty_gallery_answer_plainly() {
    let tv = TestVault::new(8);
    let mut rng = Rng::new(9);
    let probe = rng.gaussian_vec(8);
    // Empty: no candidate, no error.
    assert!(tv.vault.identify(&tv.operator, &probe, 5).unwrap().is_empty());
    let people: Vec<Vec<f32>> = (0..3).map(|_| rng.gaussian_vec(8)).collect();
    tv.vault
        .enrol_batch(&tv.admin, &consent(), &people.concat())
        .unwrap();
    // A k larger than the gallery gives every subject above the threshold, once each.
    let found = tv.vault.identify(&tv.operator, &people[1], MAX_K).unwrap();
    assert!(!found.is_empty() && found.len() <= 3);
    let mut subjects: Vec<_> = found.iter().map(|c| c.subject).collect();
    subjects.dedup();
    assert_eq!(subjects.len(), found.len());
    // A k beyond the limit is refused as an argument, before any scan.
    assert!(matches!(
        tv.vault.identify(&tv.operator, &people[1], MAX_K + 1),
        Err(Error::InvalidArgument { what: "k", .. })
    ));
    assert!(matches!(
        tv.vault.identify(&tv.operator, &people[1], 0),
        Err(Error::InvalidArgument { what: "k", .. })
    ));
    // A probe of the wrong size, in values and in bytes.
    assert!(matches!(
        tv.vault.identify(&tv.operator, &people[1][..7], 1),
        Err(Error::InvalidTemplate(_))
    ));
    let bytes = le_bytes(&people[1]);
    assert!(matches!(
        tv.vault
            .identify(&tv.operator, facevault::TemplateInput::le_bytes(&bytes[..31]), 1),
        Err(Error::InvalidTemplate(_))
    ));
}
