//! The fuzz targets' corpus, replayed (issue 16): every input under `fuzz/corpus/<target>/` (the
//! seeds, and any input a fuzzing run found and that was fixed) goes through the function its
//! target fuzzes (`src/fuzzing.rs`), which must return without a panic. This is the fuzzers'
//! smoke run in `.ci/run`; the fuzzing itself is `cargo +nightly fuzz run <target>` (README).
//!
//!     cargo test --features fuzzing --test fuzz_corpus -- --ignored   (writes the seeds again)
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use facevault::fuzzing;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| std::fs::read(file).unwrap())
        .collect()
}

#[test]
fn every_corpus_input_of_every_target_returns() {
    let scratch = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for (target, run) in [
        ("template_file", fuzzing::template_file as fn(&[u8])),
        ("bundle", fuzzing::bundle),
        ("audit_export", fuzzing::audit_export),
        ("notice_json", fuzzing::notice_json),
        ("governance_json", fuzzing::governance_json),
    ] {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "{target} has no corpus");
        for input in inputs {
            run(&input);
            replayed += 1;
        }
    }
    for input in inputs("backup") {
        fuzzing::backup(&input, scratch.path()).unwrap();
        replayed += 1;
    }
    for input in inputs("vault_file") {
        fuzzing::vault_file(&input, scratch.path()).unwrap();
        replayed += 1;
    }
    eprintln!("{replayed} corpus inputs replayed");
}

/// The seed vault and backup open all the way: the targets start from files that get past
/// every check, so that mutations of them reach deep; their broken siblings do not.
#[test]
fn the_seed_vault_and_backup_open_under_the_fuzzing_key() {
    let scratch = tempfile::tempdir().unwrap();
    let read = |target: &str, name: &str| std::fs::read(corpus(target).join(name)).unwrap();
    assert!(fuzzing::vault_file(&read("vault_file", "seed-vault"), scratch.path()).unwrap());
    assert!(!fuzzing::vault_file(&read("vault_file", "seed-not-sqlite"), scratch.path()).unwrap());
    assert!(fuzzing::backup(&read("backup", "seed-backup"), scratch.path()).unwrap());
    assert!(!fuzzing::backup(&read("backup", "seed-header-only"), scratch.path()).unwrap());
}

/// Writes the seed corpus: small valid inputs of each kind, and a few broken ones.
#[test]
#[ignore = "writes fuzz/corpus; run by hand when the formats change"]
fn write_the_seed_corpus() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(corpus(target)).unwrap();
        std::fs::write(corpus(target).join(name), bytes).unwrap();
    };
    let row: Vec<u8> = le_bytes(&[0.5, -0.25, 1.0, 0.0, 3.0, -1.0, 0.125, 2.0]);
    write(
        "template_file",
        "seed-one-row",
        &[[8u8, 0].as_slice(), &row].concat(),
    );
    write(
        "template_file",
        "seed-two-rows-named",
        &[[8u8, 1].as_slice(), &row, &row].concat(),
    );
    write(
        "template_file",
        "seed-nan",
        &[[2u8, 0].as_slice(), &le_bytes(&[f32::NAN, 1.0])].concat(),
    );
    write("template_file", "seed-short", &[4u8, 0, 1, 2, 3]);
    write(
        "notice_json",
        "seed-notice",
        notice_json(NOTICE_VERSION).as_bytes(),
    );
    write("notice_json", "seed-empty", b"{}");
    write(
        "governance_json",
        "seed-profile",
        include_bytes!("../examples/governance/profile.json"),
    );
    write(
        "governance_json",
        "seed-assessment",
        include_bytes!("../examples/governance/assessment.json"),
    );
    write(
        "governance_json",
        "seed-calendar",
        include_bytes!("../examples/governance/calendar-2025.json"),
    );

    // A vault under the fuzzing key, with subjects, consents, users and an audit log.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vault.db");
    let keys = facevault::FixedKey::new(fuzzing::FUZZ_KEY);
    let vault = facevault::Vault::create(
        &db,
        &keys,
        &facevault::VaultConfig::new(8, "fuzz-model"),
        ADMIN,
        &facevault::Password::new("admin password 1"),
    )
    .unwrap();
    let admin = vault
        .login(ADMIN, &facevault::Password::new("admin password 1"))
        .unwrap();
    vault.publish_notice(&admin, &notice(NOTICE_VERSION)).unwrap();
    govern(&vault, &admin);
    let mut rng = Rng::new(5);
    let subjects = vault
        .enrol_batch(
            &admin,
            &consent(),
            &(0..4).flat_map(|_| rng.gaussian_vec(8)).collect::<Vec<_>>(),
        )
        .unwrap();
    vault.erase(&admin, &subjects[0]).unwrap();
    let mut export = Vec::new();
    vault.export_audit(&admin, &mut export).unwrap();
    write("audit_export", "seed-export", &export);
    write("audit_export", "seed-truncated", &export[..export.len() / 2]);
    let recipient = facevault::RecipientSecretKey::from_bytes(fuzzing::FUZZ_RECIPIENT).public_key();
    vault
        .add_user(
            &admin,
            "exp",
            facevault::Role::Exporter,
            &facevault::Password::new("exporter password 1"),
        )
        .unwrap();
    let exporter = vault
        .login("exp", &facevault::Password::new("exporter password 1"))
        .unwrap();
    let bundle = vault
        .export(
            &exporter,
            &facevault::ExportRequest {
                destination: facevault::Destination::Local,
                recipient,
                subjects: Vec::new(),
                model: None,
            },
        )
        .unwrap();
    write("bundle", "seed-bundle", &bundle.bytes);
    write("bundle", "seed-magic-only", &bundle.bytes[..9]);
    let backup = dir.path().join("seed.fvbackup");
    vault.backup_to_file(&admin, &backup).unwrap();
    write("backup", "seed-backup", &std::fs::read(&backup).unwrap());
    write(
        "backup",
        "seed-header-only",
        &std::fs::read(&backup).unwrap()[..160],
    );
    vault.close().unwrap();
    write("vault_file", "seed-vault", &std::fs::read(&db).unwrap());
    write(
        "vault_file",
        "seed-not-sqlite",
        b"SQLite format 2\0 not a database at all",
    );
}
