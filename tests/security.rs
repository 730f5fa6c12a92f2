//! Issue 14: the device in an attacker's hands. Login lockout, the forward-secure audit checked
//! off the device, rollback detection, rekey, and the migration of a format-version-1 vault.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use facevault::{
    Clock, EpochPolicy, Error, FixedKey, KeyFile, ManualClock, OpenOptions, Password, Vault, VaultConfig,
};
use serde_json::Value;

const DIM: usize = 8;

fn wrong(cli: &CliVault, args: &[&str]) -> Run {
    cli.run(Some((OPERATOR, "not the password")), args)
}

/// Five wrong passwords lock the account; the right one is then refused, and that refusal is
/// audited; the lock outlives a reopen; an admin lifts it.
#[test]
fn five_wrong_passwords_lock_the_account_until_an_admin_unlocks_it() {
    let cli = CliVault::init(DIM);
    for _ in 0..5 {
        wrong(&cli, &["stats"]).fails(3, "authentication_failed");
    }
    // Each `run` is a new process, so the lock survived four reopenings already; it holds for
    // the right password too.
    let message = cli.operator(&["stats"]).fails(3, "locked_out");
    assert!(message.contains("locked"), "{message}");
    let audit = cli.audit();
    let logins: Vec<&Value> = audit
        .iter()
        .filter(|r| r["actor"] == OPERATOR && (r["action"] == "login" || r["action"] == "lockout"))
        .collect();
    let denied = logins
        .iter()
        .filter(|r| r["action"] == "login" && r["outcome"] == "denied")
        .count();
    assert_eq!(denied, 6, "{logins:#?}");
    assert_eq!(logins.iter().filter(|r| r["action"] == "lockout").count(), 1);
    assert!(logins.last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .starts_with("locked_out"));

    cli.admin(&["user", "unlock", OPERATOR]).ok();
    cli.operator(&["stats"]).ok();
}

/// The lock doubles with each lockout and, after the timed ones, waits for an admin; the clock
/// is the vault's, so time is driven here.
#[test]
fn each_lock_lasts_twice_the_last_and_the_sixth_is_for_good() {
    let tv = TestVault::new(DIM);
    let (vault, clock) = (&tv.vault, &tv.clock);
    let right = Password::new(OPERATOR_PASSWORD);
    let wrong = Password::new("not the password");
    let mut lengths = Vec::new();
    for _ in 0..6 {
        for _ in 0..5 {
            assert!(matches!(
                vault.login(OPERATOR, &wrong),
                Err(Error::AuthenticationFailed)
            ));
        }
        match vault.login(OPERATOR, &right) {
            Err(Error::LockedOut { until: Some(until) }) => {
                lengths.push((until - clock.now()) / 1000);
                clock.set(until);
            }
            Err(Error::LockedOut { until: None }) => lengths.push(-1),
            other => panic!("expected a lock, got {other:?}"),
        }
    }
    assert_eq!(lengths, vec![60, 120, 240, 480, 960, -1]);
    clock.advance(365 * 86_400_000);
    assert!(matches!(
        vault.login(OPERATOR, &right),
        Err(Error::LockedOut { until: None })
    ));
    let tv = tv.reopen_expecting_lock();
    tv.0.unlock_user(&tv.1, OPERATOR).unwrap();
    tv.0.login(OPERATOR, &right).unwrap();
}

trait ReopenLocked {
    fn reopen_expecting_lock(self) -> (Vault, facevault::Session, tempfile::TempDir);
}

impl ReopenLocked for TestVault {
    /// Reopens, checks the operator is still locked, and returns the vault with an admin session.
    fn reopen_expecting_lock(self) -> (Vault, facevault::Session, tempfile::TempDir) {
        let TestVault {
            dir,
            path,
            clock,
            vault,
            ..
        } = self;
        vault.close().unwrap();
        let vault = Vault::open_with_clock(&path, &FixedKey::new(KEY), clock.clone()).unwrap();
        assert!(matches!(
            vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)),
            Err(Error::LockedOut { until: None })
        ));
        let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        (vault, admin, dir)
    }
}

/// A failed login and its audit record are one transaction: a process killed at any moment of a
/// failed login leaves the principal's failure count equal to the failures the log records.
#[test]
fn a_login_killed_at_any_moment_leaves_count_and_log_in_step() {
    let cli = CliVault::init(DIM);
    let mut rng = Rng::new(5);
    for _ in 0..12 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_facevault"))
            .arg("--db")
            .arg(&cli.db)
            .arg("--key-file")
            .arg(&cli.key)
            .args(["--as", OPERATOR, "stats"])
            .env("FACEVAULT_PASSWORD", "not the password")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.next_u64() % 400));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Read through the vault (the admin's own login is right, so it does not count).
    let audit = cli.audit();
    // Once locked, a login is refused without counting (`locked_out`): only the wrong passwords
    // count.
    let recorded = audit
        .iter()
        .filter(|r| {
            r["actor"] == OPERATOR
                && r["action"] == "login"
                && r["detail"].as_str().unwrap().starts_with("authentication_failed")
        })
        .count() as i64;
    let failures: i64 = raw_db(&cli.db)
        .query_row(
            "SELECT failures + 5 * lockouts FROM principals WHERE name = ?1",
            [OPERATOR],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(failures, recorded, "the count and the log disagree");
}

/// The end of an audit epoch overwrites the sealed key of the epoch that ended with its
/// successor's, and the audit key's hand-over deletes the sealed verification key. Each is
/// followed by a truncating checkpoint: afterwards no 16 bytes of any replaced or deleted sealed
/// key are in the database file or the WAL (SECURITY.md, section 1.5).
#[test]
fn ended_epochs_keys_and_the_handed_over_key_leave_no_byte_in_the_files() {
    let config = VaultConfig {
        audit_epochs: EpochPolicy {
            max_records: 5,
            max_millis: i64::MAX,
        },
        ..test_config(DIM)
    };
    let tv = TestVault::with(&config, &FixedKey::new(KEY));
    let sealed = |key: &str| -> Vec<u8> {
        raw_db(&tv.path)
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .unwrap()
    };
    let mut gone = Vec::new();
    for _ in 0..4 {
        gone.push(sealed("audit_epoch_key"));
        for _ in 0..5 {
            tv.vault.stats(&tv.admin).unwrap();
        }
        assert_ne!(&sealed("audit_epoch_key"), gone.last().unwrap(), "an epoch ended");
    }
    assert_gone_from_files(&tv.path, &windows::<16>(&gone), "ended epochs' sealed keys");
    gone.push(sealed("audit_verification_key"));
    let mut delivered = 0;
    tv.vault
        .hand_over_audit_key(&tv.admin, |_| {
            delivered += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(delivered, 1);
    assert_gone_from_files(&tv.path, &windows::<16>(&gone), "replaced or deleted sealed keys");
    tv.vault.verify_audit(&tv.admin).unwrap();
}

/// An exported log, and a vault made with --audit-key-out.
fn exported_log(epoch_records: &str) -> (CliVault, PathBuf, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let cli = CliVault {
        db: dir.path().join("vault.db"),
        key: dir.path().join("master.key"),
        dir,
    };
    let auditor_key = cli.dir.path().join("auditor.key");
    cli.run(
        None,
        &[
            "init",
            "--dim",
            "8",
            "--admin",
            ADMIN,
            "--audit-key-out",
            auditor_key.to_str().unwrap(),
            "--audit-epoch-records",
            epoch_records,
        ],
    )
    .ok();
    for _ in 0..6 {
        cli.admin(&["stats"]).ok();
    }
    let out = cli.dir.path().join("log.jsonl");
    let head = cli
        .admin(&["audit", "export", "--out", out.to_str().unwrap()])
        .ok()["head"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    (cli, out, auditor_key, head)
}

fn check(log: &Path, key: &Path, head: Option<&str>) -> Run {
    let mut args = vec![
        "audit",
        "check",
        log.to_str().unwrap(),
        "--verification-key",
        key.to_str().unwrap(),
    ];
    if let Some(head) = head {
        args.extend(["--head", head]);
    }
    // No vault: the auditor's machine has only the export and the key.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_facevault"))
        .args(&args)
        .output()
        .unwrap();
    let parse = |bytes: &[u8]| serde_json::from_slice(bytes).unwrap_or(Value::Null);
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: parse(&output.stdout),
        stderr: parse(&output.stderr),
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The exported log verifies off the device with the verification key, across several epochs;
/// an edited, inserted, dropped or reordered record is named; a tail cut back before a head
/// recorded earlier is caught.
#[test]
fn the_exported_log_verifies_off_the_device_and_names_every_kind_of_edit() {
    let (cli, log, key, head) = exported_log("4");
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 32);
    let checked = check(&log, &key, Some(&head)).ok().clone();
    assert!(checked["check"]["epochs"].as_u64().unwrap() >= 3, "{checked}");
    let records = lines(&log);
    // header, records, head
    assert!(records.len() > 10);

    let tampered_at = |edited: Vec<String>| -> u64 {
        let path = cli.dir.path().join("edited.jsonl");
        write_lines(&path, &edited);
        let run = check(&path, &key, None);
        run.fails(4, "audit_tampered");
        run.stderr["seq"].as_u64().unwrap()
    };
    // Edit record 3's detail.
    let mut edited = records.clone();
    edited[3] = edited[3].replace("\"detail\":\"", "\"detail\":\"x");
    assert_eq!(tampered_at(edited), 3);
    // Insert a copy of record 2 before it.
    let mut inserted = records.clone();
    inserted.insert(2, records[2].clone());
    assert_eq!(tampered_at(inserted), 3);
    // Drop record 5.
    let mut dropped = records.clone();
    dropped.remove(5);
    assert_eq!(tampered_at(dropped), 5);
    // Swap records 4 and 6.
    let mut swapped = records.clone();
    swapped.swap(4, 6);
    assert_eq!(tampered_at(swapped), 4);

    // More activity, then a second export whose tail an attacker cuts back (rewriting its
    // head line to match): the head recorded from the first export is no longer there.
    for _ in 0..3 {
        cli.admin(&["stats"]).ok();
    }
    let later = cli.dir.path().join("later.jsonl");
    cli.admin(&["audit", "export", "--out", later.to_str().unwrap()])
        .ok();
    check(&later, &key, Some(&head)).ok();
    let first_records = lines(&log);
    let keep = first_records.len() - 4; // header + records up to before the first export's head
    let mut cut: Vec<String> = first_records[..keep].to_vec();
    let last: Value = serde_json::from_str(cut.last().unwrap()).unwrap();
    cut.push(format!(
        "{{\"head_seq\":{},\"head_hash\":\"{}\"}}",
        last["seq"],
        last["hash"].as_str().unwrap()
    ));
    let cut_path = cli.dir.path().join("cut.jsonl");
    write_lines(&cut_path, &cut);
    // Alone it is a consistent (shorter) log; against the recorded head it is caught.
    check(&cut_path, &key, None).ok();
    check(&cut_path, &key, Some(&head)).fails(4, "audit_tampered");
    // And the wrong key verifies nothing.
    let other = cli.dir.path().join("other.key");
    facevault::AuditVerificationKey::from_bytes([9; 32])
        .write_to_file(&other)
        .unwrap();
    check(&log, &other, None).fails(4, "audit_tampered");
}

/// The verification key leaves the vault once: init handed it over, so a second hand-over is
/// refused and the vault holds no copy.
#[test]
fn the_verification_key_leaves_the_vault_once() {
    let (cli, _, _, _) = exported_log("100");
    let again = cli.dir.path().join("again.key");
    cli.admin(&["audit", "handover", "--out", again.to_str().unwrap()])
        .fails(2, "invalid_argument");
    assert!(!again.exists());
    let stored: i64 = raw_db(&cli.db)
        .query_row(
            "SELECT count(*) FROM meta WHERE key = 'audit_verification_key'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);
}

/// Puts `current` back at `path`, runs `statement` with an older copy attached as `old`, and
/// checks that the vault is then refused as rows rolled back.
fn refused_as_rows_rolled_back(path: &Path, current: &Path, older: &Path, statement: &str) {
    copy_db(current, path);
    let conn = raw_db(path);
    conn.execute_batch(&format!("{}; {statement}", attach_sql(older, "old")))
        .unwrap();
    drop(conn);
    let opened = Vault::open(path, &FixedKey::new(KEY));
    assert!(
        matches!(opened, Err(Error::RowsRolledBack)),
        "{statement}: {opened:?}"
    );
}

fn copy_db(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let _ = std::fs::remove_file(with_suffix(to, "-wal"));
    let _ = std::fs::remove_file(with_suffix(to, "-shm"));
}

/// A copy of the database taken before later changes, put back, is refused as rolled back (the
/// counter file beside the key has seen more changes).
#[test]
fn an_older_copy_of_the_database_is_refused_as_rolled_back() {
    let cli = CliVault::init(DIM);
    let subject = cli.enrol(ADMIN, &Rng::new(1).gaussian_vec(DIM), &[]);
    let saved = cli.dir.path().join("saved.db");
    copy_db(&cli.db, &saved);
    cli.admin(&["erase", "--subject", &subject]).ok();
    copy_db(&saved, &cli.db);
    let message = cli.admin(&["stats"]).fails(4, "rolled_back");
    assert!(message.contains("older copy"), "{message}");
    // Deleting the counter file does not make the copy acceptable.
    let counters: Vec<PathBuf> = std::fs::read_dir(cli.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".counter"))
        .collect();
    assert_eq!(counters.len(), 1);
    std::fs::remove_file(&counters[0]).unwrap();
    cli.admin(&["stats"]).fails(4, "rollback_counter");
}

/// The same in a library host: a copy put back while the process runs is refused.
#[test]
fn a_host_that_reopens_a_restored_copy_is_refused() {
    let tv = TestVault::new(DIM);
    let saved = tv.dir.path().join("saved.db");
    let tv = tv.reopen();
    copy_db(&tv.path, &saved);
    tv.vault
        .enrol(&tv.admin, &consent(), &Rng::new(2).gaussian_vec(DIM))
        .unwrap();
    let TestVault { vault, path, dir, .. } = tv;
    vault.close().unwrap();
    copy_db(&saved, &path);
    assert!(matches!(
        Vault::open(&path, &FixedKey::new(KEY)),
        Err(Error::RolledBack { .. })
    ));
    drop(dir);
}

/// After a rekey the old key is refused and the new one opens everything; the old wrapped root
/// key is in neither the file nor the WAL.
#[test]
fn after_a_rekey_the_old_key_is_refused_and_nothing_is_lost() {
    let cli = CliVault::init(DIM);
    let person = Rng::new(3).gaussian_vec(DIM);
    let subject = cli.enrol(ADMIN, &person, &[]);
    let old_root: Vec<u8> = raw_db(&cli.db)
        .query_row("SELECT value FROM meta WHERE key = 'root_key'", [], |row| {
            row.get(0)
        })
        .unwrap();
    let new_key = cli.dir.path().join("new.key");
    cli.admin(&["rekey", "--new-key-file", new_key.to_str().unwrap()])
        .ok();
    cli.admin(&["stats"]).fails(4, "wrong_key");
    let renewed = CliVault {
        db: cli.db.clone(),
        key: new_key.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let probe = renewed.file("probe.f32", &le_bytes(&person));
    let verified = renewed
        .operator(&["verify", "--subject", &subject, "--probe", &probe])
        .ok()
        .clone();
    assert_eq!(verified["match"], true);
    renewed.admin(&["audit", "verify"]).ok();
    let bytes = [
        read_or_empty(&cli.db),
        read_or_empty(&with_suffix(&cli.db, "-wal")),
    ]
    .concat();
    assert!(
        !bytes
            .windows(old_root.len())
            .any(|window| window == old_root.as_slice()),
        "the old wrapped root key survived"
    );
}

/// A rekey killed at random moments, many times: each time the vault opens with exactly one of
/// the two keys, and passes its checks.
#[test]
fn a_rekey_killed_at_random_moments_leaves_a_vault_that_opens_with_exactly_one_key() {
    let cli = CliVault::init(DIM);
    cli.enrol(ADMIN, &Rng::new(4).gaussian_vec(DIM), &[]);
    let mut rng = Rng::new(8);
    let mut current = cli.key.clone();
    let mut moved = 0;
    // A rekey takes about 140 ms in this build, most of it the admin's password hash; the kills
    // fall from 60 ms to 180 ms, across the hash's end, the commit and the exit.
    const ROUNDS: usize = 40;
    for round in 0..ROUNDS {
        let next = cli.dir.path().join(format!("key-{round}"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_facevault"))
            .arg("--db")
            .arg(&cli.db)
            .arg("--key-file")
            .arg(&current)
            .args(["--as", ADMIN, "rekey", "--new-key-file", next.to_str().unwrap()])
            .env("FACEVAULT_PASSWORD", ADMIN_PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(60 + rng.next_u64() % 120));
        let _ = child.kill();
        let _ = child.wait();
        let open = |key: &Path| -> Result<Vault, Error> {
            Vault::open_with(&cli.db, &KeyFile::new(key), OpenOptions::default())
        };
        let opens = |key: &Path| -> Result<(), Error> { open(key)?.close() };
        let with_current = opens(&current);
        let with_next = next.exists().then(|| opens(&next));
        let key = match (with_current, with_next) {
            (Ok(()), None | Some(Err(Error::WrongKey))) => current.clone(),
            (Err(Error::WrongKey), Some(Ok(()))) => {
                moved += 1;
                next.clone()
            }
            (a, b) => panic!("round {round}: old key {a:?}, new key {b:?}"),
        };
        let vault =
            open(&key).unwrap_or_else(|e| panic!("round {round}: reopening with {}: {e:?}", key.display()));
        let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        vault.verify_audit(&admin).unwrap();
        assert_eq!(vault.subjects(&admin).unwrap().len(), 1);
        vault.close().unwrap();
        current = key;
    }
    // With the whole-file layer a rekey has three steps; a kill between the first and the last
    // is finished or abandoned by the next opening, as `system`.
    let vault = Vault::open_with(&cli.db, &KeyFile::new(&current), OpenOptions::default()).unwrap();
    let settled: Vec<String> = audited(&vault, "system", "rekey")
        .into_iter()
        .map(|r| r.detail)
        .collect();
    vault.close().unwrap();
    eprintln!(
        "{moved} of {ROUNDS} rekeys committed before the kill; {} cut between steps and settled at the next opening: {settled:?}",
        settled.len()
    );
}

/// The fixture made by format version 1's CLI (tests/testdata/vault-v1): the current code opens
/// it, migrates it to version 2 in one audited transaction, and keeps every subject, consent and
/// audit record.
#[test]
fn a_format_1_vault_is_migrated_with_every_subject_consent_and_record() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/vault-v1");
    let view: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("v1-view.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, key) = (dir.path().join("vault.db"), dir.path().join("master.key"));
    std::fs::copy(fixture.join("vault.db"), &db).unwrap();
    std::fs::copy(fixture.join("master.key"), &key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let v1_records = view["audit"]["entries"].as_array().unwrap();
    let made_at = v1_records.last().unwrap()["at"].as_i64().unwrap();
    let clock = Arc::new(ManualClock::new(made_at + 86_400_000));
    let options = || OpenOptions {
        clock: clock.clone(),
        ..OpenOptions::default()
    };

    // A version newer than this build's is refused, and the file is left as it was.
    let newer = dir.path().join("newer.db");
    std::fs::copy(&db, &newer).unwrap();
    raw_db(&newer).pragma_update(None, "user_version", 5).unwrap();
    let before = std::fs::read(&newer).unwrap();
    assert!(matches!(
        Vault::open_with(&newer, &KeyFile::new(&key), options()),
        Err(Error::UnsupportedFormat {
            found: 5,
            supported: 4
        })
    ));
    assert_eq!(std::fs::read(&newer).unwrap(), before);

    // A version-1 log edited before the migration is not migrated: the file stays as it was.
    let edited = dir.path().join("edited.db");
    std::fs::copy(&db, &edited).unwrap();
    raw_db(&edited)
        .execute("UPDATE audit SET detail = 'edited' WHERE seq = 5", [])
        .unwrap();
    let before = std::fs::read(&edited).unwrap();
    assert!(matches!(
        Vault::open_with(&edited, &KeyFile::new(&key), options()),
        Err(Error::AuditTampered { seq: 5 })
    ));
    assert_eq!(std::fs::read(&edited).unwrap(), before);

    let vault = Vault::open_with(&db, &KeyFile::new(&key), options()).unwrap();
    let version: i64 = raw_db(&db)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    let auditor = vault
        .login("auditor", &Password::new("auditor password 1"))
        .unwrap();
    let listed = serde_json::to_value(vault.subjects(&auditor).unwrap()).unwrap();
    assert_eq!(listed, view["listed"]["subjects"]);
    let records = vault.audit_log(&auditor).unwrap();
    for (old, new) in v1_records.iter().zip(&records) {
        let new = serde_json::to_value(new).unwrap();
        for field in ["seq", "at", "actor", "action", "subject", "outcome", "detail"] {
            assert_eq!(old[field], new[field], "record {}: {field}", old["seq"]);
        }
        assert_eq!(new["epoch"], 0);
    }
    // The view was read by `audit show`, whose own record (22) followed; the migration's is 23.
    let migration = &records[v1_records.len() + 1];
    assert_eq!((migration.seq, migration.action.as_str()), (23, "migrate"));
    assert!(
        migration.detail.contains("22 audit records re-sealed"),
        "{}",
        migration.detail
    );
    // Then format 2 to 3, after a sealed copy of the format-2 vault was written beside it.
    let to_3: Vec<_> = records[v1_records.len() + 2..]
        .iter()
        .filter(|record| record.action == "migrate" && record.detail.starts_with("format 2 -> 3"))
        .collect();
    assert_eq!(to_3.len(), 1);
    assert!(to_3[0].detail.starts_with("format 2 -> 3"), "{}", to_3[0].detail);
    assert!(dir.path().join("vault.db.pre-v3.fvbackup").is_file());
    vault.verify_audit(&auditor).unwrap();

    // Consents and notices came across with their MACs: the adult with a transfer consent
    // verifies and can be exported; the child, enrolled with a guardian, cannot be exported.
    let subjects = &view["subjects"];
    let id = |name: &str| {
        subjects[name]
            .as_str()
            .unwrap()
            .parse::<facevault::SubjectId>()
            .unwrap()
    };
    let gate = vault.login("gate", &Password::new("gate password 1")).unwrap();
    let probe = [0.9f32, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    // Migrated to version 4, it has no deployment profile: it matches no one until one is set.
    assert!(matches!(
        vault.verify(&gate, &id("adult_with_transfer"), &probe),
        Err(Error::Refused(facevault::Refusal::NoDeploymentProfile))
    ));
    let admin = vault.login("admin", &Password::new("admin password 1")).unwrap();
    vault.set_profile(&admin, &profile()).unwrap();
    assert!(
        vault
            .verify(&gate, &id("adult_with_transfer"), &probe)
            .unwrap()
            .matched
    );
    for gone in ["withdrawn", "erased"] {
        assert!(matches!(
            vault.verify(&gate, &id(gone), &probe),
            Err(Error::UnknownSubject(_))
        ));
    }
    let desk = vault.login("desk", &Password::new("desk password 1")).unwrap();
    let due = vault.renotice_due(&desk).unwrap();
    assert_eq!(due.subjects.len(), 2, "{due:?}");
    vault.close().unwrap();

    // It opens again as version 3, with the counter the migration started.
    let vault = Vault::open_with(&db, &KeyFile::new(&key), options()).unwrap();
    vault.close().unwrap();
    // The version-1 file put back is a rollback: refused before the migration touches it.
    std::fs::copy(fixture.join("vault.db"), &db).unwrap();
    let before = std::fs::read(&db).unwrap();
    assert!(matches!(
        Vault::open_with(&db, &KeyFile::new(&key), options()),
        Err(Error::RolledBack { database: 0, .. })
    ));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

/// A vault with one enrolled subject, a second operator, and the given configuration.
fn throttled_vault(
    config: facevault::VaultConfig,
) -> (TestVault, facevault::SubjectId, Vec<f32>, facevault::Session) {
    let mut tv = TestVault::new(64);
    let dir_path = tv.dir.path().join("throttled.db");
    let vault = Vault::create_with_clock(
        &dir_path,
        &FixedKey::new(KEY),
        &config,
        ADMIN,
        &Password::new(ADMIN_PASSWORD),
        tv.clock.clone(),
    )
    .unwrap();
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    for name in [OPERATOR, "gate-2"] {
        vault
            .add_user(
                &admin,
                name,
                facevault::Role::Operator,
                &Password::new(OPERATOR_PASSWORD),
            )
            .unwrap();
    }
    vault.publish_notice(&admin, &notice(NOTICE_VERSION)).unwrap();
    govern(&vault, &admin);
    let person = Rng::new(11).gaussian_vec(64);
    let subject = vault.enrol(&admin, &consent(), &person).unwrap();
    let second = vault.login("gate-2", &Password::new(OPERATOR_PASSWORD)).unwrap();
    tv.operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
    tv.admin = admin;
    let old = std::mem::replace(&mut tv.vault, vault);
    old.close().unwrap();
    tv.path = dir_path;
    (tv, subject, person, second)
}

fn retry_after(result: Result<facevault::Verification, Error>) -> Option<i64> {
    match result {
        Err(Error::Throttled { retry_after_ms, .. }) => retry_after_ms,
        other => panic!("expected a throttle, got {other:?}"),
    }
}

/// Five failed verifies of one subject throttle its verify; the settable clock shows the waits
/// doubling; at fifty it is disabled until an admin resets it; another subject, and a match,
/// are unaffected; the throttle outlives a reopening; each step raises an alert.
#[test]
fn failed_verifies_of_a_subject_throttle_it_with_doubling_waits_then_disable_it() {
    // The default cap of 50 lies 30 s × 2^44 away along the doubling waits: the cap is tested at
    // 12, the waits as they are.
    let config = facevault::VaultConfig {
        throttle: facevault::ThrottlePolicy {
            verify_failures_before_disable: 12,
            ..facevault::ThrottlePolicy::default()
        },
        ..common::test_config(64)
    };
    let (tv, subject, person, second) = throttled_vault(config);
    let (vault, clock, gate) = (&tv.vault, &tv.clock, &tv.operator);
    let stranger = Rng::new(99).gaussian_vec(64);
    for _ in 0..5 {
        assert!(!vault.verify(gate, &subject, &stranger).unwrap().matched);
    }
    // Throttled for everyone, the genuine person too: the subject is under attack.
    assert_eq!(
        retry_after(vault.verify(&second, &subject, &person)),
        Some(30_000)
    );
    let mut waits = Vec::new();
    for _ in 0..4 {
        let wait = retry_after(vault.verify(gate, &subject, &stranger)).unwrap();
        waits.push(wait / 1000);
        clock.advance(wait);
        assert!(!vault.verify(gate, &subject, &stranger).unwrap().matched);
    }
    assert_eq!(waits, vec![30, 60, 120, 240]);
    // Another subject is served meanwhile.
    let other = Rng::new(12).gaussian_vec(64);
    let other_subject = vault.enrol(&tv.admin, &consent(), &other).unwrap();
    assert!(vault.verify(gate, &other_subject, &other).unwrap().matched);

    // On to the cap: disabled, whatever the clock says.
    for _ in 9..12 {
        let wait = retry_after(vault.verify(gate, &subject, &stranger)).unwrap();
        clock.advance(wait);
        assert!(!vault.verify(gate, &subject, &stranger).unwrap().matched);
    }
    clock.advance(86_400_000);
    let TestVault {
        vault,
        admin,
        dir,
        clock,
        ..
    } = tv;
    let path = dir.path().join("throttled.db");
    vault.flush_audit().unwrap();
    vault.close().unwrap();
    let vault = Vault::open_with_clock(&path, &FixedKey::new(KEY), clock.clone()).unwrap();
    let gate = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
    assert_eq!(retry_after(vault.verify(&gate, &subject, &person)), None);
    let admin = {
        drop(admin);
        vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap()
    };
    let alerts = vault.alerts(&admin).unwrap();
    assert!(
        alerts.iter().any(|a| a.detail.contains("5 failed verifies")),
        "{alerts:#?}"
    );
    assert!(
        alerts.iter().any(|a| a.detail.contains("disabled after 12")),
        "{alerts:#?}"
    );
    assert!(alerts.iter().all(|a| a.subject == Some(subject.to_string())));
    vault.reset_throttle(&admin, &subject).unwrap();
    assert!(vault.verify(&gate, &subject, &person).unwrap().matched);
}

/// A scripted enumeration (hundreds of random probes matching nobody) raises an alert and is
/// throttled, while another operator's traffic is served; a rate beyond the limit is refused
/// with a retry-after until the minute is over.
#[test]
fn an_enumeration_is_throttled_and_alerted_while_another_operator_is_served() {
    let config = facevault::VaultConfig {
        throttle: facevault::ThrottlePolicy {
            identify_per_minute: 10_000,
            ..facevault::ThrottlePolicy::default()
        },
        ..common::test_config(64)
    };
    let (tv, subject, person, second) = throttled_vault(config);
    let (vault, clock, gate) = (&tv.vault, &tv.clock, &tv.operator);
    let mut rng = Rng::new(77);
    let mut answered = 0;
    let refused = loop {
        match vault.identify(gate, &rng.gaussian_vec(64), 1) {
            Ok(found) => {
                assert!(found.is_empty());
                answered += 1;
            }
            Err(e) => break e,
        }
        // The other operator's genuine traffic goes on.
        assert_eq!(vault.identify(&second, &person, 1).unwrap()[0].subject, subject);
        assert!(answered <= 200, "never throttled");
    };
    assert_eq!(answered, 200);
    assert!(
        matches!(
            refused,
            Error::Throttled {
                retry_after_ms: Some(30_000),
                ..
            }
        ),
        "{refused:?}"
    );
    clock.advance(30_000);
    // The next miss doubles the wait.
    assert!(vault.identify(gate, &rng.gaussian_vec(64), 1).unwrap().is_empty());
    assert!(matches!(
        vault.identify(gate, &rng.gaussian_vec(64), 1),
        Err(Error::Throttled {
            retry_after_ms: Some(60_000),
            ..
        })
    ));
    let alerts = vault.alerts(&tv.admin).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].actor, OPERATOR);
    assert!(
        alerts[0].detail.contains("matched nobody"),
        "{}",
        alerts[0].detail
    );

    // The rate: the second operator sends more than the minute allows.
    let limited = facevault::VaultConfig {
        throttle: facevault::ThrottlePolicy {
            identify_per_minute: 30,
            ..facevault::ThrottlePolicy::default()
        },
        ..common::test_config(64)
    };
    let (tv, _, person, second) = throttled_vault(limited);
    for _ in 0..30 {
        tv.vault.identify(&second, &person, 1).unwrap();
    }
    let refused = tv.vault.identify(&second, &person, 1);
    assert!(
        matches!(
            refused,
            Err(Error::Throttled {
                retry_after_ms: Some(60_000),
                ..
            })
        ),
        "{refused:?}"
    );
    tv.vault.identify(&tv.operator, &person, 1).unwrap();
    tv.clock.advance(60_000);
    tv.vault.identify(&second, &person, 1).unwrap();
    assert!(tv.vault.alerts(&tv.admin).unwrap()[0]
        .detail
        .contains("rate exceeded"));
}

/// By default the terminal's operator gets decisions and subject IDs, not scores; an admin gets
/// scores rounded to two decimals; the CLI's JSON has no score for the operator.
#[test]
fn scores_go_only_to_roles_that_may_see_them_rounded_to_two_decimals() {
    let (tv, subject, person, second) = throttled_vault(facevault::VaultConfig::new(64, "test-model"));
    let as_operator = tv.vault.verify(&second, &subject, &person).unwrap();
    assert!(as_operator.matched && as_operator.score.is_none());
    let found = tv.vault.identify(&second, &person, 1).unwrap();
    assert_eq!((found[0].subject, found[0].score), (subject, None));
    let as_admin = tv.vault.verify(&tv.admin, &subject, &person);
    // Admins do not run lookups; the score policy is about who may see scores at all.
    assert!(matches!(as_admin, Err(Error::Forbidden { .. })));

    let cli = CliVault::init(DIM);
    let probe = cli.file("p.f32", &le_bytes(&Rng::new(1).gaussian_vec(DIM)));
    let subject = cli.enrol_file(&probe, &[]);
    let answer = cli
        .operator(&["verify", "--subject", &subject, "--probe", &probe])
        .ok()
        .clone();
    assert_eq!(answer["match"], true);
    assert!(answer.get("score").is_none(), "{answer}");
    let shown_dir = tempfile::tempdir().unwrap();
    let shown = CliVault {
        db: shown_dir.path().join("vault.db"),
        key: shown_dir.path().join("master.key"),
        dir: shown_dir,
    };
    shown
        .run(
            None,
            &[
                "init",
                "--dim",
                "8",
                "--admin",
                ADMIN,
                "--score-roles",
                "operator",
                "--profile",
                &shown.file("profile.json", profile_json().as_bytes()),
            ],
        )
        .ok();
    shown.add_user(OPERATOR, "operator");
    shown
        .admin(&[
            "notice",
            "publish",
            "--file",
            &shown.file("n.json", notice_json(NOTICE_VERSION).as_bytes()),
        ])
        .ok();
    shown
        .admin(&[
            "pia",
            "add",
            "--file",
            &shown.file("pia.json", assessment_json().as_bytes()),
        ])
        .ok();
    let probe = shown.file("p.f32", &le_bytes(&[0.6, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]));
    let subject = shown.enrol_file(
        &shown.file("t.f32", &le_bytes(&[0.8, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])),
        &[],
    );
    let answer = shown
        .as_user(OPERATOR, &["verify", "--subject", &subject, "--probe", &probe])
        .ok()
        .clone();
    // cos = 0.96 exactly; two decimals.
    assert_eq!(answer["score"], 0.96);
}

/// A single row put back from an older copy of the same vault (a consent from before its
/// withdrawal, an erased subject's row, a principal before its lock), or a deleted principal,
/// consent or notice, is refused as rolled back: the rows no longer add up to the state digest
/// of the last commit.
#[test]
fn a_row_put_back_from_an_older_copy_or_deleted_is_refused_as_rolled_back() {
    let tv = TestVault::new(DIM);
    let person = Rng::new(21).gaussian_vec(DIM);
    tv.vault.enrol(&tv.admin, &consent(), &person).unwrap();
    let erased = tv
        .vault
        .enrol(&tv.admin, &consent(), &Rng::new(22).gaussian_vec(DIM))
        .unwrap();
    let tv = tv.reopen();
    let older = tv.dir.path().join("older.db");
    copy_db(&tv.path, &older);
    tv.vault.erase(&tv.admin, &erased).unwrap();
    for _ in 0..5 {
        let _ = tv.vault.login(OPERATOR, &Password::new("not the password"));
    }
    let TestVault { vault, path, dir, .. } = tv;
    vault.close().unwrap();
    let current = dir.path().join("current.db");
    copy_db(&path, &current);

    let restore = |statement: &str| refused_as_rows_rolled_back(&path, &current, &older, statement);
    restore(
        "INSERT INTO main.subjects SELECT * FROM old.subjects WHERE id NOT IN (SELECT id FROM main.subjects)",
    );
    restore("DELETE FROM main.consents; INSERT INTO main.consents SELECT * FROM old.consents");
    restore("DELETE FROM main.principals WHERE name = 'gate'; INSERT INTO main.principals SELECT * FROM old.principals WHERE name = 'gate'");
    restore("DELETE FROM main.principals WHERE name = 'gate'");
    restore("DELETE FROM main.notices");
    copy_db(&current, &path);
    Vault::open(&path, &FixedKey::new(KEY)).unwrap().close().unwrap();
}

/// Issue 14, item 9: `stats`, the re-notice list and the notice and consent reads behind them
/// check every row's MAC, with or without the gallery: an edited consent's notice version, or an
/// edited subject expiry, is an integrity error, not a wrong count.
#[test]
fn stats_and_the_renotice_list_check_what_they_read() {
    let cli = CliVault::init(DIM);
    cli.enrol("a.f32", &Rng::new(41).gaussian_vec(DIM), &[]);
    cli.admin(&["stats"]).ok();
    cli.admin(&["notice", "due"]).ok();
    let conn = raw_db(&cli.db);
    let consent_mac: Vec<u8> = conn
        .query_row("SELECT mac FROM consents LIMIT 1", [], |r| r.get(0))
        .unwrap();
    // The notice version edited, the MAC left: the digest (over MACs) still adds up, the row
    // does not.
    conn.execute("UPDATE consents SET notice_version = 'other'", [])
        .unwrap();
    drop(conn);
    cli.admin(&["stats"]).fails(4, "integrity");
    cli.admin(&["notice", "due"]).fails(4, "integrity");
    let conn = raw_db(&cli.db);
    conn.execute(
        "UPDATE consents SET notice_version = ?1, mac = ?2",
        rusqlite::params![NOTICE_VERSION, consent_mac],
    )
    .unwrap();
    conn.execute("UPDATE subjects SET expires_at = expires_at + 1", [])
        .unwrap();
    drop(conn);
    let message = cli.admin(&["stats"]).fails(4, "integrity");
    assert!(message.contains("subjects"), "{message}");
}

/// Issue 14, item 7: after a withdrawal and a purge (the erase and the rekey are above and in
/// tests/erase.rs), none of the erased subjects' wrapped keys or ciphertexts survive in the file,
/// its WAL or free pages; and the vault purges by itself: at an opening that loads the gallery,
/// and when the host's timer calls `purge_expired`, audited as `system`.
#[test]
fn withdrawn_and_purged_subjects_leave_no_byte_and_the_vault_purges_by_itself() {
    let tv = TestVault::new(64);
    let mut rng = Rng::new(51);
    let short = facevault::Enrolment {
        retention_secs: Some(3600),
        ..consent()
    };
    let withdrawn = tv
        .vault
        .enrol(&tv.admin, &consent(), &rng.gaussian_vec(64))
        .unwrap();
    let expiring = tv.vault.enrol(&tv.admin, &short, &rng.gaussian_vec(64)).unwrap();
    let expiring_later = tv.vault.enrol(&tv.admin, &short, &rng.gaussian_vec(64)).unwrap();
    let kept = tv
        .vault
        .enrol(&tv.admin, &consent(), &rng.gaussian_vec(64))
        .unwrap();
    let tv = tv.reopen();
    let secrets = |subject: &facevault::SubjectId| stored_secrets(&tv.path, subject);
    let needles =
        windows::<16>(&[secrets(&withdrawn), secrets(&expiring), secrets(&expiring_later)].concat());
    tv.vault.withdraw_consent(&tv.admin, &withdrawn).unwrap();
    tv.clock.advance(3_600_001);
    // The host's timer: no session, audited as the vault's own.
    let purged = tv.vault.purge_expired().unwrap();
    assert_eq!(purged.len(), 2, "{purged:?}");
    assert!(purged.contains(&expiring) && purged.contains(&expiring_later));
    assert!(tv.vault.purge_expired().unwrap().is_empty());
    for file in [read_or_empty(&tv.path), read_or_empty(&tv.wal_path())] {
        assert!(
            find_any(&file, &needles).is_none(),
            "an erased subject's bytes survived"
        );
    }
    let audit = tv.vault.audit_log(&tv.admin).unwrap();
    assert!(audit
        .iter()
        .any(|r| r.actor == "system" && r.action == "purge" && r.detail == "purged=2"));

    // At open: a subject that expired while the vault was closed is erased before any lookup.
    let late = tv
        .vault
        .enrol(
            &tv.admin,
            &facevault::Enrolment {
                retention_secs: Some(60),
                ..consent()
            },
            &rng.gaussian_vec(64),
        )
        .unwrap();
    let TestVault {
        vault,
        path,
        clock,
        dir,
        ..
    } = tv;
    vault.close().unwrap();
    clock.advance(61_000);
    let vault = Vault::open_with_clock(&path, &FixedKey::new(KEY), clock.clone()).unwrap();
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    let listed: Vec<_> = vault
        .subjects(&admin)
        .unwrap()
        .into_iter()
        .map(|s| s.subject)
        .collect();
    assert_eq!(listed, vec![kept]);
    assert!(!listed.contains(&late));
    drop(dir);
}

/// Issue 14, item 7: while open, the vault purges by itself at its purge interval, as `system`;
/// with no interval it does not. (The clock is the test's; the interval is real time.)
#[test]
fn an_open_vault_purges_expired_subjects_at_its_interval() {
    use std::collections::BTreeSet;
    let tv = TestVault::new(16);
    let mut rng = Rng::new(52);
    let lasting = |secs| facevault::Enrolment {
        retention_secs: Some(secs),
        ..consent()
    };
    let first = tv
        .vault
        .enrol(&tv.admin, &lasting(60), &rng.gaussian_vec(16))
        .unwrap();
    let second = tv
        .vault
        .enrol(&tv.admin, &lasting(120), &rng.gaussian_vec(16))
        .unwrap();
    let kept = tv
        .vault
        .enrol(&tv.admin, &consent(), &rng.gaussian_vec(16))
        .unwrap();
    let TestVault {
        vault,
        path,
        clock,
        dir,
        ..
    } = tv;
    vault.close().unwrap();
    let open = |interval: Option<std::time::Duration>| {
        Vault::open_with(
            &path,
            &FixedKey::new(KEY),
            OpenOptions {
                clock: clock.clone(),
                purge_interval: interval,
                ..OpenOptions::default()
            },
        )
        .unwrap()
    };
    let listed = |vault: &Vault| -> BTreeSet<facevault::SubjectId> {
        let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        vault
            .subjects(&admin)
            .unwrap()
            .into_iter()
            .map(|s| s.subject)
            .collect()
    };
    let system_purges = |vault: &Vault| -> Vec<String> {
        audited(vault, "system", "purge")
            .into_iter()
            .filter_map(|r| r.subject)
            .collect()
    };

    // No interval: a subject that expires while the vault is open stays until a purge.
    let vault = open(None);
    clock.advance(61_000);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(listed(&vault), BTreeSet::from([first, second, kept]));
    vault.close().unwrap();

    // A 20 ms interval: the opening purges the first; the timer, the second once it expires.
    // The wait is bounded only so that a broken timer fails the test instead of hanging it.
    let vault = open(Some(std::time::Duration::from_millis(20)));
    assert_eq!(listed(&vault), BTreeSet::from([second, kept]));
    clock.advance(60_000);
    let mut waits = 0;
    while listed(&vault).len() == 2 {
        assert!(waits < 3000, "no purge after {waits} waits of 10 ms");
        std::thread::sleep(std::time::Duration::from_millis(10));
        waits += 1;
    }
    assert_eq!(listed(&vault), BTreeSet::from([kept]));
    assert_eq!(system_purges(&vault), vec![first.to_string(), second.to_string()]);
    vault.close().unwrap();
    drop(dir);
}

/// Issue 14, item 10: a bundle carries its vault's signature and creation time; the recipient
/// checks both against the signing key the vault's `stats` shows.
#[test]
fn a_bundle_opens_only_as_the_signed_work_of_the_expected_vault() {
    let (cli, secret, public) = CliVault::with_exporter(DIM);
    cli.enrol("a.f32", &Rng::new(61).gaussian_vec(DIM), &["--transfer-consent"]);
    let out = cli.dir.path().join("out.fvb");
    cli.export(&out, "network", &public, &[]).ok();
    let signing_key = cli.stats()["signing_key"].as_str().unwrap().to_string();
    assert_eq!(signing_key.len(), 64);
    let open = |extra: &[&str]| {
        let mut args = vec![
            "open-bundle",
            "--in",
            out.to_str().unwrap(),
            "--recipient-secret",
            &secret,
        ];
        args.extend(extra);
        cli.run(None, &args)
    };
    let opened = open(&["--expect-vault", &signing_key, "--max-age-days", "1"])
        .ok()
        .clone();
    assert_eq!(opened["signed_by"], signing_key.as_str());
    assert_eq!(opened["subjects"].as_array().unwrap().len(), 1);
    let other = "00".repeat(32);
    assert!(open(&["--expect-vault", &other])
        .fails(4, "bundle_rejected")
        .contains("another vault"));
    // Another vault's bundle is refused against this vault's key.
    let (elsewhere, _, other_public) = CliVault::with_exporter(DIM);
    elsewhere.enrol("b.f32", &Rng::new(62).gaussian_vec(DIM), &["--transfer-consent"]);
    let foreign = cli.dir.path().join("foreign.fvb");
    let _ = other_public;
    elsewhere.export(&foreign, "network", &public, &[]).ok();
    let run = cli.run(
        None,
        &[
            "open-bundle",
            "--in",
            foreign.to_str().unwrap(),
            "--recipient-secret",
            &secret,
            "--expect-vault",
            &signing_key,
        ],
    );
    run.fails(4, "bundle_rejected");
}

/// The settings (an older threshold with its then-valid MAC) and the audit sealer's state (an
/// older head, to cut the log back to it) are bound to the state digest too: put back from an
/// older copy, each is refused as rolled back; so is the verification key deleted before hand-over.
#[test]
fn older_settings_or_an_older_audit_head_put_back_are_refused() {
    let tv = TestVault::new(DIM);
    let tv = tv.reopen();
    let older = tv.dir.path().join("older.db");
    copy_db(&tv.path, &older);
    tv.vault.set_threshold(&tv.admin, 0.9).unwrap();
    for _ in 0..3 {
        tv.vault.stats(&tv.admin).unwrap();
    }
    let TestVault { vault, path, dir, .. } = tv;
    vault.close().unwrap();
    let current = dir.path().join("current.db");
    copy_db(&path, &current);
    let restore = |statement: &str| refused_as_rows_rolled_back(&path, &current, &older, statement);
    restore(
        "UPDATE main.meta SET value = (SELECT value FROM old.meta WHERE key = 'threshold') WHERE key = 'threshold';
         UPDATE main.meta SET value = (SELECT value FROM old.meta WHERE key = 'settings_mac') WHERE key = 'settings_mac';",
    );
    restore(
        "DELETE FROM main.audit WHERE seq > (SELECT value FROM old.meta WHERE key = 'audit_head_seq');
         DELETE FROM main.meta WHERE key LIKE 'audit_%';
         INSERT INTO main.meta SELECT * FROM old.meta WHERE key LIKE 'audit_%';",
    );
    restore("DELETE FROM main.meta WHERE key = 'audit_verification_key'");
}

/// A change the rollback counter could not count is committed all the same: the CLI exits 4 with
/// `rollback_counter`, and carries the command's answer (as `output_failed` does), so that a
/// harness does not make the change twice. The counter file is made immutable (`chattr +i`) to
/// make its writes fail; where the file system cannot, the test says so and stops.
#[test]
fn a_change_the_counter_could_not_count_reports_its_answer() {
    let cli = CliVault::init(DIM);
    let counter = std::fs::read_dir(cli.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with(".counter"))
        .unwrap();
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&counter)
            .status()
            .is_ok_and(|status| status.success())
    };
    if !chattr("+i") {
        eprintln!("skipped: chattr +i is not available on this file system");
        return;
    }
    let file = cli.file("face.f32", &le_bytes(&Rng::new(71).gaussian_vec(DIM)));
    let run = cli.admin(&CliVault::consented("enrol", &file));
    assert!(chattr("-i"), "could not make the counter file writable again");
    run.fails(4, "rollback_counter");
    let subject = run.stderr["answer"]["subject"].as_str().unwrap().to_string();
    let listed = cli.admin(&["subjects"]).ok()["subjects"].clone();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["subject"] == subject.as_str()));
}
