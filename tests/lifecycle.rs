//! Issue 15: the device's life. Backup and restore: a restore never brings back a face that was
//! erased, withdrawn or expired after the backup was taken, and opens only with the master key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use facevault::{Error, FixedKey, OpenOptions, Password, Refusal, RestoreOptions, SubjectId, Vault};

const DIM: usize = 16;

fn restore_options(force: bool) -> RestoreOptions {
    RestoreOptions {
        force,
        open: OpenOptions::default(),
    }
}

/// The must-show: 1,000 enrolled and backed up; then 10 more, 5 of the 1,000 erased and
/// 3 withdrawn; the database deleted and the backup restored. The restored vault holds the
/// 1,000 less the 8 and none of the 10, and not a 16-byte window of the 8's wrapped keys or
/// ciphertexts is in its file or WAL.
#[test]
fn a_restore_brings_back_no_face_erased_or_withdrawn_after_the_backup() {
    let tv = TestVault::new(DIM);
    let mut rng = Rng::new(150);
    let people: Vec<f32> = (0..1000).flat_map(|_| rng.gaussian_vec(DIM)).collect();
    let first = tv.vault.enrol_batch(&tv.admin, &consent(), &people).unwrap();
    assert_eq!(first.len(), 1000);
    let backup = tv.dir.path().join("vault.fvbackup");
    let info = tv.vault.backup_to_file(&tv.admin, &backup).unwrap();
    assert_eq!(info.erasures_recorded, 0);

    let later: Vec<f32> = (0..10).flat_map(|_| rng.gaussian_vec(DIM)).collect();
    let later = tv.vault.enrol_batch(&tv.admin, &consent(), &later).unwrap();
    let (erased, withdrawn) = (&first[100..105], &first[500..503]);
    let tv = tv.reopen();
    let gone: Vec<SubjectId> = erased.iter().chain(withdrawn).copied().collect();
    let needles = windows::<16>(
        &gone
            .iter()
            .flat_map(|s| stored_secrets(&tv.path, s))
            .collect::<Vec<_>>(),
    );
    for subject in erased {
        tv.vault.erase(&tv.admin, subject).unwrap();
    }
    for subject in withdrawn {
        tv.vault.withdraw_consent(&tv.admin, subject).unwrap();
    }
    let TestVault { vault, path, dir, .. } = tv;
    vault.close().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(&path, suffix));
    }

    let (vault, restored) = Vault::restore(
        &backup,
        &path,
        &FixedKey::new(KEY),
        ADMIN,
        &Password::new(ADMIN_PASSWORD),
        restore_options(false),
    )
    .unwrap();
    assert_eq!(restored.erased_again, 8);
    assert_eq!(restored.purged, 0);
    // At least the batch, the five erasures and the three withdrawals.
    assert!(restored.changes_lost >= 9, "{restored:?}");
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    let listed: BTreeSet<SubjectId> = vault
        .subjects(&admin)
        .unwrap()
        .into_iter()
        .map(|s| s.subject)
        .collect();
    let expected: BTreeSet<SubjectId> = first.iter().filter(|s| !gone.contains(s)).copied().collect();
    assert_eq!(listed, expected);
    assert!(later.iter().all(|s| !listed.contains(s)));

    let operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
    for (index, subject) in first.iter().enumerate() {
        let probe = &people[index * DIM..(index + 1) * DIM];
        let answer = vault.verify(&operator, subject, probe);
        if gone.contains(subject) {
            assert!(matches!(answer, Err(Error::UnknownSubject(_))), "{answer:?}");
            let found = vault.identify(&operator, probe, 3).unwrap();
            assert!(found.iter().all(|c| c.subject != *subject));
        } else if index % 50 == 0 {
            assert!(answer.unwrap().matched);
        }
    }
    let records = audited(&vault, ADMIN, "restore");
    assert_eq!(records.iter().filter(|r| r.subject.is_some()).count(), 8);
    assert!(
        records.last().unwrap().detail.contains("erased again 8"),
        "{records:?}"
    );
    vault.verify_audit(&admin).unwrap();
    vault.flush_audit().unwrap();
    for file in [read_or_empty(&path), read_or_empty(&with_suffix(&path, "-wal"))] {
        assert_eq!(
            find_any(&file, &needles),
            None,
            "an erased subject's bytes came back"
        );
    }
    vault.close().unwrap();
    drop(dir);
}

/// Only the master key of its time opens a backup; a flipped byte anywhere, or a cut, is
/// refused; a vault that still works is replaced only when asked; nothing is left half-made.
#[test]
fn a_backup_is_refused_with_another_key_altered_or_over_a_working_vault() {
    let cli = CliVault::init(DIM);
    cli.enrol("a.f32", &Rng::new(151).gaussian_vec(DIM), &[]);
    let backup = cli.dir.path().join("vault.fvbackup");
    let made = cli
        .admin(&["backup", "--out", backup.to_str().unwrap()])
        .ok()
        .clone();
    assert!(made["backup"]["file_bytes"].as_u64().unwrap() > 160);
    cli.admin(&["backup", "--out", backup.to_str().unwrap()])
        .fails(2, "already_exists");
    let restore = |args: &[&str]| {
        let mut all = vec!["restore", "--in"];
        all.extend_from_slice(args);
        cli.admin(&all)
    };
    let path = backup.to_str().unwrap().to_string();

    // Over the working vault: only with --force.
    restore(&[&path]).fails(2, "already_exists");

    // Another master key.
    let other_key = cli.dir.path().join("other.key");
    std::fs::write(&other_key, [0x11u8; 32]).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_facevault"))
        .args([
            "--db",
            cli.db.to_str().unwrap(),
            "--key-file",
            other_key.to_str().unwrap(),
        ])
        .args(["--as", ADMIN, "restore", "--in", &path, "--force"])
        .env("FACEVAULT_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(4), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("wrong_key"),
        "{run:?}"
    );

    // A flipped byte in the header, in a chunk, in a tag; a cut; each refused, exit 4. The vault
    // ID and the wrapped root key bind each other, so an altered ID looks like a wrong key.
    let bytes = std::fs::read(&backup).unwrap();
    for (name, edit, error) in [
        ("vault_id", 20usize, "wrong_key"),
        ("created_at", 30, "backup_rejected"),
        ("body", 400, "backup_rejected"),
        ("tag", bytes.len() - 3, "backup_rejected"),
    ] {
        let mut altered = bytes.clone();
        altered[edit] ^= 0x40;
        let file = cli.file(&format!("{name}.fvbackup"), &altered);
        restore(&[&file, "--force"]).fails(4, error);
    }
    let cut = cli.file("cut.fvbackup", &bytes[..bytes.len() - 100]);
    restore(&[&cut, "--force"]).fails(4, "backup_rejected");
    assert!(!with_suffix(&cli.db, ".restoring").exists());
    // The vault was not touched by any of them.
    assert_eq!(cli.stats()["subjects"], 1);

    let restored = restore(&[&path, "--force"]).ok().clone();
    assert_eq!(restored["restored"]["erased_again"], 0);
    assert_eq!(cli.stats()["subjects"], 1);
    cli.admin(&["audit", "verify"]).ok();
}

/// The erasure ledger beside the key file: each erasure adds one 64-byte record; a torn last
/// record (a power cut mid-write) is cut off by the next erasure; an edited record, or a ledger
/// that cannot be read, refuses every opening.
#[test]
fn the_erasure_ledger_records_every_erasure_and_refuses_an_edited_one() {
    let cli = CliVault::init(DIM);
    let mut rng = Rng::new(152);
    let subjects: Vec<String> = (0..3)
        .map(|i| cli.enrol(&format!("{i}.f32"), &rng.gaussian_vec(DIM), &[]))
        .collect();
    let vault_id = cli.stats()["vault_id"].as_str().unwrap().to_string();
    let ledger = with_suffix(&cli.key, &format!(".{vault_id}.erasures"));
    assert!(!ledger.exists());
    cli.admin(&["erase", "--subject", &subjects[0]]).ok();
    let bytes = std::fs::read(&ledger).unwrap();
    assert_eq!(bytes.len(), 24 + 64);
    assert_eq!(&bytes[..8], b"fverase1");
    assert_eq!(hex(&bytes[24..40]), subjects[0]);

    // A torn record: cut off by the next erasure, which chains on from the last whole one.
    std::fs::write(&ledger, [&bytes[..], &[7u8; 30][..]].concat()).unwrap();
    cli.admin(&["consent", "withdraw", "--subject", &subjects[1]])
        .ok();
    let bytes = std::fs::read(&ledger).unwrap();
    assert_eq!(bytes.len(), 24 + 2 * 64);
    assert_eq!(bytes[24 + 64 + 24], 2, "the kind of a withdrawal");

    // An edited record: every opening is refused, and nothing is erased.
    let mut edited = bytes.clone();
    edited[24 + 20] ^= 1;
    std::fs::write(&ledger, &edited).unwrap();
    cli.admin(&["stats"]).fails(4, "erasure_ledger");
    std::fs::write(&ledger, &bytes).unwrap();
    assert_eq!(cli.stats()["subjects"], 1);

    // A ledger that cannot be read (a directory in its place): refused, and nothing is erased.
    std::fs::remove_file(&ledger).unwrap();
    std::fs::create_dir(&ledger).unwrap();
    cli.admin(&["erase", "--subject", &subjects[2]])
        .fails(4, "erasure_ledger");
    std::fs::remove_dir(&ledger).unwrap();
    std::fs::write(&ledger, &bytes).unwrap();
    assert_eq!(cli.stats()["subjects"], 1);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A migration killed at random moments, many times, from each older format: each time the
/// vault is either the old file as it was (byte for byte the fixture's) or migrated whole (to
/// version 2, 3 or 4: each step commits on its own, and the next opening goes on from a whole
/// older version), and it opens, migrates if it must, and keeps every subject and audit record.
#[test]
fn a_migration_killed_at_random_moments_leaves_the_old_file_or_the_new_one_whole() {
    kill_migrations("vault-v1", "v1-view.json", 1, 153);
    kill_migrations("vault-v2", "v2-view.json", 2, 154);
    kill_migrations("vault-v3", "v3-view.json", 3, 155);
}

fn kill_migrations(fixture: &str, view_file: &str, from: i64, seed: u64) {
    let original = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/testdata")
            .join(fixture)
            .join("vault.db"),
    )
    .unwrap();
    let mut rng = Rng::new(seed);
    let (mut old, mut new) = (0, 0);
    const ROUNDS: usize = 24;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let view = copy_fixture(fixture, view_file, dir.path());
        let (db, key) = (dir.path().join("vault.db"), dir.path().join("master.key"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_facevault"))
            .args(["--db", db.to_str().unwrap(), "--key-file", key.to_str().unwrap()])
            .args(["--as", "auditor", "audit", "verify"])
            .env("FACEVAULT_PASSWORD", "auditor password 1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.next_u64() % 60));
        let _ = child.kill();
        let _ = child.wait();
        let version: i64 = raw_db(&db)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        if version == from {
            old += 1;
            assert!(
                std::fs::read(&db).unwrap() == original,
                "round {round}: the format-{from} file was changed"
            );
        } else {
            assert!(version > from && version <= 4, "round {round}: version {version}");
            new += 1;
        }
        let vault = Vault::open_with(&db, &facevault::KeyFile::new(&key), OpenOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        let auditor = vault
            .login("auditor", &Password::new("auditor password 1"))
            .unwrap();
        vault.verify_audit(&auditor).unwrap();
        let listed = serde_json::to_value(vault.subjects(&auditor).unwrap()).unwrap();
        assert_eq!(listed, view["listed"]["subjects"], "round {round}");
        vault.close().unwrap();
    }
    eprintln!("format {from}: {old} of {ROUNDS} kills left the old file, {new} a migrated one");
}

/// The fixture made by format version 2's CLI (tests/testdata/vault-v2, with the files beside its
/// key and a backup): the current code migrates it to version 4 (through 3), keeping every
/// subject, alert and audit record, with a sealed copy of each older version beside it; the
/// first copy and the fixture's own backup restore (and migrate again).
#[test]
fn the_format_2_fixture_opens_with_every_subject_and_record_and_its_backup_restores() {
    fixture_opens_and_restores("vault-v2", "v2-view.json", 2);
}

/// The same for the fixture made by format version 3's CLI (two face models): migrated to
/// version 4, it has no deployment profile, so it matches no one until one (and, for enrolment,
/// an assessment) is recorded; then its templates of both models match again.
#[test]
fn the_format_3_fixture_opens_with_every_subject_and_record_and_its_backup_restores() {
    let dir = fixture_opens_and_restores("vault-v3", "v3-view.json", 3);
    let view = copy_fixture("vault-v3", "v3-view.json", dir.path());
    let vault = Vault::open_with(
        &dir.path().join("vault.db"),
        &facevault::KeyFile::new(dir.path().join("master.key")),
        OpenOptions::default(),
    )
    .unwrap();
    assert_eq!(vault.deployment_refusal(), Some(Refusal::NoDeploymentProfile));
    let gate = vault.login("gate", &Password::new("gate password 1")).unwrap();
    let subject: facevault::SubjectId = view["subjects"]["second_notice"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    fn model_2(values: &[f32]) -> facevault::TemplateInput<'_> {
        facevault::TemplateInput::values(values).from_model("fixture-model-2")
    }
    let probe = [0.0f32, 1.0, 0.0, 0.0];
    assert!(matches!(
        vault.verify(&gate, &subject, model_2(&probe)),
        Err(Error::Refused(Refusal::NoDeploymentProfile))
    ));
    let admin = vault.login("admin", &Password::new("admin password 1")).unwrap();
    vault.set_profile(&admin, &profile()).unwrap();
    assert!(vault.verify(&gate, &subject, model_2(&probe)).unwrap().matched);
    assert_eq!(vault.enrolment_refusal(), Some(Refusal::AssessmentRequired));
    vault.close().unwrap();
}

/// Opens a fixture of format `from` with the current code, checks it against its view, and
/// restores its backup and the first sealed copy the migrations kept. Returns its folder, where
/// the fixture now stands migrated (and restored from that copy).
fn fixture_opens_and_restores(fixture: &str, view_file: &str, from: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let view = copy_fixture(fixture, view_file, dir.path());
    let (db, key) = (dir.path().join("vault.db"), dir.path().join("master.key"));
    let records = view["audit"]["entries"].as_array().unwrap();
    let made_at = records.last().unwrap()["at"].as_i64().unwrap();
    let clock = std::sync::Arc::new(facevault::ManualClock::new(made_at + 86_400_000));
    let options = || OpenOptions {
        clock: clock.clone(),
        ..OpenOptions::default()
    };
    let keys = facevault::KeyFile::new(&key);
    let as_auditor_lists_the_view = |vault: &Vault| {
        let auditor = vault
            .login("auditor", &Password::new("auditor password 1"))
            .unwrap();
        assert_eq!(
            serde_json::to_value(vault.subjects(&auditor).unwrap()).unwrap(),
            view["listed"]["subjects"]
        );
        auditor
    };
    let vault = Vault::open_with(&db, &keys, options()).unwrap();
    let version: i64 = raw_db(&db)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    let auditor = as_auditor_lists_the_view(&vault);
    assert_eq!(
        serde_json::to_value(vault.alerts(&auditor).unwrap()).unwrap(),
        view["alerts"]["alerts"]
    );
    let migrations: Vec<_> = vault
        .audit_log(&auditor)
        .unwrap()
        .into_iter()
        // With the whole-file layer, a second `migrate` record says the plain file was encrypted.
        .filter(|record| record.action == "migrate" && record.detail.starts_with("format "))
        .collect();
    let steps: Vec<String> = (from..4).map(|v| format!("format {v} -> {}", v + 1)).collect();
    assert_eq!(migrations.len(), steps.len());
    for (migration, step) in migrations.iter().zip(&steps) {
        assert!(
            migration.detail.starts_with(step.as_str()),
            "{}",
            migration.detail
        );
    }
    for to in from + 1..=4 {
        assert!(dir.path().join(format!("vault.db.pre-v{to}.fvbackup")).is_file());
    }
    let sealed_copy = dir.path().join(format!("vault.db.pre-v{}.fvbackup", from + 1));
    let now = vault.audit_log(&auditor).unwrap();
    for (old, new) in records.iter().zip(&now) {
        assert_eq!(*old, serde_json::to_value(new).unwrap());
    }
    vault.verify_audit(&auditor).unwrap();
    let mut export = Vec::new();
    vault.export_audit(&auditor, &mut export).unwrap();
    let verification =
        facevault::AuditVerificationKey::read_from_file(&dir.path().join("audit.key")).unwrap();
    facevault::check_audit_export(std::str::from_utf8(&export).unwrap(), &verification, None).unwrap();
    vault.close().unwrap();

    // Its backup, made last, restores over it with --force: the same subjects, none erased again.
    let restore_forced = |backup: &std::path::Path| {
        let options = RestoreOptions {
            force: true,
            open: options(),
        };
        Vault::restore(
            backup,
            &db,
            &keys,
            "admin",
            &Password::new("admin password 1"),
            options,
        )
        .unwrap()
    };
    let (vault, restored) = restore_forced(&dir.path().join("backup.fvbackup"));
    assert_eq!(restored.erased_again, 0);
    assert_eq!(i64::from(restored.backup.format_version), from);
    as_auditor_lists_the_view(&vault);
    vault.close().unwrap();

    // So does the sealed copy the migration kept.
    let (vault, restored) = restore_forced(&sealed_copy);
    assert_eq!(i64::from(restored.backup.format_version), from);
    as_auditor_lists_the_view(&vault);
    vault.close().unwrap();
    dir
}
