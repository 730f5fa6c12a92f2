//! The crash sweep (issue 16): a driver process loops through the vault's writing operations
//! (enrol, enrol-batch, add a template, erase, withdraw, lookups with their audit, backup,
//! compaction),
//! keeping a journal of what it began and what returned, while this test kills it with SIGKILL
//! at random moments. After each kill the vault must open with its key, pass
//! `PRAGMA integrity_check`, verify its audit chain, and hold exactly what the journal says: every
//! operation that returned is there, none that failed is, and the one the kill cut short is there
//! whole or not at all. A backup file is whole wherever it is found. Every 50 kills, and at the
//! end, no 16 bytes of any erased subject's key or templates may remain in the file or its WAL.
//!
//!     FACEVAULT_CRASH_KILLS=10000 cargo test --release --features fault-injection \
//!         --test crash_sweep -- --nocapture
//!
//! runs the full sweep (the default is 200 kills). The vault's users hash their passwords with
//! 1,000 rounds (`FACEVAULT_TEST_PASSWORD_ROUNDS`, honoured only by this test-only feature), so
//! that each of the driver's restarts does not spend half a second logging in.
#![cfg(all(feature = "fault-injection", not(feature = "sqlcipher")))]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use std::sync::Arc;

use facevault::{KeyFile, OpenOptions, Password, SubjectId, Vault};

const DIM: usize = 16;
const PASSWORD_ROUNDS: &str = "1000";
/// The driver keeps the vault around this size: above it, it erases more than it enrols.
const TARGET_SUBJECTS: usize = 40;

/// The driver, run by the sweep as its child process with `FACEVAULT_CRASH_DIR` set; it runs
/// until it is killed.
#[test]
#[ignore = "the crash sweep's child process: it runs until killed"]
fn crash_driver() {
    let dir = std::env::var("FACEVAULT_CRASH_DIR").expect("run by the crash sweep");
    let seed: u64 = std::env::var("FACEVAULT_CRASH_SEED").unwrap().parse().unwrap();
    drive(Path::new(&dir), seed);
}

fn options() -> OpenOptions {
    OpenOptions {
        purge_interval: None,
        ..OpenOptions::default()
    }
}

fn drive(dir: &Path, seed: u64) {
    let keys = KeyFile::new(dir.join("master.key"));
    let vault = Vault::open_with(&dir.join("vault.db"), &keys, options()).unwrap();
    let admin = vault.login(ADMIN, &Password::new(FILE_ADMIN_PASSWORD)).unwrap();
    let gate = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
    let mut live: Vec<SubjectId> = vault
        .subjects(&admin)
        .unwrap()
        .into_iter()
        .map(|entry| entry.subject)
        .collect();
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("journal"))
        .unwrap();
    // One write per line: a kill leaves whole lines, or a last one without its newline.
    let mut note = |line: String| journal.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut rng = Rng::new(seed);
    for step in 0u64.. {
        let seq = seed * 1_000_000 + step;
        let pick = rng.next_u64() % 100;
        let grow = live.len() < TARGET_SUBJECTS;
        let target = (!live.is_empty()).then(|| (rng.next_u64() as usize) % live.len());
        match (pick, target) {
            (0..=29, _) if grow || target.is_none() => {
                note(format!("begin {seq} enrol"));
                match vault.enrol(&admin, &consent(), &rng.gaussian_vec(DIM)) {
                    Ok(subject) => {
                        live.push(subject);
                        note(format!("done {seq} {subject}"));
                    }
                    Err(e) => note(format!("failed {seq} {}", e.code())),
                }
            }
            (30..=39, _) if grow || target.is_none() => {
                note(format!("begin {seq} enrol_batch"));
                let rows: Vec<f32> = (0..3).flat_map(|_| rng.gaussian_vec(DIM)).collect();
                match vault.enrol_batch(&admin, &consent(), &rows) {
                    Ok(subjects) => {
                        let ids: Vec<String> = subjects.iter().map(SubjectId::to_string).collect();
                        live.extend(subjects);
                        note(format!("done {seq} {}", ids.join(",")));
                    }
                    Err(e) => note(format!("failed {seq} {}", e.code())),
                }
            }
            (0..=54, Some(index)) => {
                let subject = live.swap_remove(index);
                let withdraw = pick % 2 == 1;
                let name = if withdraw { "withdraw" } else { "erase" };
                note(format!("begin {seq} {name} {subject}"));
                let result = if withdraw {
                    vault.withdraw_consent(&admin, &subject)
                } else {
                    vault.erase(&admin, &subject)
                };
                match result {
                    Ok(()) => note(format!("done {seq}")),
                    Err(e) => note(format!("failed {seq} {}", e.code())),
                }
            }
            (55..=69, Some(index)) => {
                let subject = live[index];
                note(format!("begin {seq} add_template {subject}"));
                match vault.add_template(&admin, &subject, &rng.gaussian_vec(DIM)) {
                    Ok(()) => note(format!("done {seq}")),
                    Err(e) => note(format!("failed {seq} {}", e.code())),
                }
            }
            (70..=94, _) => {
                note(format!("begin {seq} lookups"));
                for _ in 0..3 {
                    let _ = vault.identify(&gate, &rng.gaussian_vec(DIM), 1);
                }
                match vault.flush_audit() {
                    Ok(()) => note(format!("done {seq}")),
                    Err(e) => note(format!("failed {seq} {}", e.code())),
                }
            }
            (95..=96, _) => {
                note(format!("begin {seq} compact"));
                match vault.compact(&admin) {
                    Ok(compacted) => note(format!("done {seq} {}", compacted.file_bytes_after)),
                    Err(e) => note(format!("failed {seq} {}", e.code())),
                }
            }
            _ => {
                let file = dir.join(format!("backup-{seq}.fvbackup"));
                note(format!("begin {seq} backup {}", file.display()));
                match vault.backup_to_file(&admin, &file) {
                    Ok(info) => note(format!("done {seq} {}", info.file_bytes)),
                    Err(e) => note(format!("failed {seq} {}", e.code())),
                }
            }
        }
    }
}

/// What the journal says the vault holds: each subject with its template count.
#[derive(Default)]
struct Model {
    live: BTreeMap<SubjectId, i64>,
    erased: HashSet<SubjectId>,
    /// Each subject's wrapped key and template ciphertexts, read while it lived, to look for
    /// once it is erased.
    secrets: HashMap<SubjectId, Vec<Vec<u8>>>,
    /// Journal entries already applied.
    applied: usize,
    /// Operations that returned, failed, or were cut short.
    counts: BTreeMap<&'static str, u64>,
}

/// One operation as the journal has it.
#[derive(Debug)]
struct Entry {
    op: String,
    arg: Option<String>,
    /// `Some(Ok(detail))` when it returned, `Some(Err(code))` when it failed, `None` when the
    /// kill came first.
    outcome: Option<Result<String, String>>,
}

fn read_journal(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap();
    // A line the kill cut off has no newline: it was never written.
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut entries: Vec<Entry> = Vec::new();
    for line in whole.lines() {
        let mut words = line.splitn(4, ' ');
        let (kind, _seq) = (words.next().unwrap(), words.next().unwrap());
        match kind {
            "begin" => entries.push(Entry {
                op: words.next().unwrap().to_string(),
                arg: words.next().map(str::to_string),
                outcome: None,
            }),
            "done" => {
                entries.last_mut().unwrap().outcome = Some(Ok(words.next().unwrap_or("").to_string()));
            }
            "failed" => entries.last_mut().unwrap().outcome = Some(Err(words.next().unwrap().to_string())),
            other => panic!("journal line {other:?}"),
        }
    }
    entries
}

fn id(text: &str) -> SubjectId {
    text.parse().unwrap()
}

/// A backup file is whole: its length is what its header says.
fn backup_is_whole(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    if bytes.len() < 160 {
        return false;
    }
    let n = u64::from_le_bytes(bytes[53..61].try_into().unwrap());
    let chunks = n.div_ceil(1 << 20).max(1);
    bytes.len() as u64 == 160 + n + 16 * chunks
}

impl Model {
    /// Applies the journal's new entries; the last may have been cut short by the kill, and is
    /// resolved against `vault`, which must then hold exactly what the model does.
    fn check(&mut self, entries: &[Entry], held: &BTreeMap<SubjectId, i64>) {
        let new = &entries[self.applied..];
        for (i, entry) in new.iter().enumerate() {
            let last = i + 1 == new.len();
            let outcome = match &entry.outcome {
                Some(outcome) => outcome.clone(),
                None => {
                    assert!(last, "only the last operation can be cut short: {entry:?}");
                    *self.counts.entry("cut short").or_default() += 1;
                    self.resolve(entry, held);
                    continue;
                }
            };
            let Ok(detail) = outcome else {
                *self.counts.entry("failed").or_default() += 1;
                continue;
            };
            *self.counts.entry("returned").or_default() += 1;
            match entry.op.as_str() {
                "enrol" | "enrol_batch" => {
                    for subject in detail.split(',') {
                        self.live.insert(id(subject), 1);
                    }
                }
                "erase" | "withdraw" => {
                    let subject = id(entry.arg.as_deref().unwrap());
                    self.live.remove(&subject);
                    self.erased.insert(subject);
                }
                "add_template" => *self.live.get_mut(&id(entry.arg.as_deref().unwrap())).unwrap() += 1,
                "backup" => {
                    let file = PathBuf::from(entry.arg.as_deref().unwrap());
                    assert_eq!(std::fs::metadata(&file).unwrap().len().to_string(), detail);
                    assert!(backup_is_whole(&file));
                }
                _ => {}
            }
        }
        self.applied = entries.len();
        assert_eq!(&self.live, held, "the vault holds what the journal says");
    }

    /// An operation the kill cut short: the vault shows it done whole, or not at all.
    fn resolve(&mut self, entry: &Entry, held: &BTreeMap<SubjectId, i64>) {
        let extra: Vec<SubjectId> = held
            .keys()
            .filter(|s| !self.live.contains_key(s))
            .copied()
            .collect();
        match entry.op.as_str() {
            "enrol" | "enrol_batch" => {
                let whole = if entry.op == "enrol" { 1 } else { 3 };
                assert!(
                    extra.is_empty() || extra.len() == whole,
                    "{} cut short left {} new subjects",
                    entry.op,
                    extra.len()
                );
                for subject in extra {
                    assert_eq!(held[&subject], 1);
                    self.live.insert(subject, 1);
                }
            }
            "erase" | "withdraw" => {
                let subject = id(entry.arg.as_deref().unwrap());
                if !held.contains_key(&subject) {
                    self.live.remove(&subject);
                    self.erased.insert(subject);
                }
            }
            "add_template" => {
                let subject = id(entry.arg.as_deref().unwrap());
                let before = self.live[&subject];
                let now = held[&subject];
                assert!(
                    now == before || now == before + 1,
                    "add_template cut short: {before} -> {now}"
                );
                self.live.insert(subject, now);
            }
            "backup" => {
                let file = PathBuf::from(entry.arg.as_deref().unwrap());
                assert!(
                    !file.exists() || backup_is_whole(&file),
                    "a backup cut short left a partial file at {file:?}"
                );
            }
            _ => {}
        }
    }
}

fn kills() -> usize {
    std::env::var("FACEVAULT_CRASH_KILLS")
        .ok()
        .and_then(|kills| kills.parse().ok())
        .unwrap_or(200)
}

#[test]
fn a_driver_killed_at_random_moments_never_loses_or_half_writes_an_operation() {
    std::env::set_var("FACEVAULT_TEST_PASSWORD_ROUNDS", PASSWORD_ROUNDS);
    let dir = tempfile::tempdir().unwrap();
    let (db, key) = (dir.path().join("vault.db"), dir.path().join("master.key"));
    key_file_vault(dir.path(), DIM, Arc::new(facevault::SystemClock))
        .0
        .close()
        .unwrap();
    std::fs::write(dir.path().join("journal"), "").unwrap();
    let keys = KeyFile::new(&key);
    let mut model = Model::default();
    let mut rng = Rng::new(2026);
    let total = kills();
    // Each check verifies the audit chain from the head the last one reached: the log grows by
    // every operation, and verifying it all after each kill would make the sweep quadratic.
    let mut audit_head: Option<facevault::AuditCheckpoint> = None;
    let started = std::time::Instant::now();
    for kill in 0..total {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_driver",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("FACEVAULT_CRASH_DIR", dir.path())
            .env("FACEVAULT_CRASH_SEED", (kill + 1).to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from the driver's start-up (its opening) to a few dozen operations in.
        std::thread::sleep(std::time::Duration::from_micros(rng.next_u64() % 80_000));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "the driver stopped by itself: {status:?}"
        );

        let integrity: String = raw_db(&db)
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "kill {kill}");
        let vault = Vault::open_with(&db, &keys, options())
            .unwrap_or_else(|e| panic!("kill {kill}: the vault does not open: {e:?}"));
        let admin = vault.login(ADMIN, &Password::new(FILE_ADMIN_PASSWORD)).unwrap();
        let verified = vault
            .verify_audit_from(&admin, audit_head.as_ref())
            .unwrap_or_else(|e| panic!("kill {kill}: the audit chain: {e:?}"));
        audit_head = Some(verified.head);
        let held: BTreeMap<SubjectId, i64> = vault
            .subjects(&admin)
            .unwrap()
            .into_iter()
            .map(|entry| (entry.subject, entry.templates as i64))
            .collect();
        let entries = read_journal(&dir.path().join("journal"));
        model.check(&entries, &held);
        for subject in model.live.keys() {
            model
                .secrets
                .entry(*subject)
                .or_insert_with(|| stored_secrets(&db, subject));
        }
        // Scanned while the vault is open again: its opening truncates the WAL that a kill after
        // an erasure's commit can leave holding older frames of the erased. Templates added later are not in the first reading: read again while it lives, now
        // and then.
        if kill % 50 == 49 || kill + 1 == total {
            for (subject, secrets) in model.secrets.iter_mut() {
                if model.live.contains_key(subject) {
                    *secrets = stored_secrets(&db, subject);
                }
            }
            let erased: Vec<Vec<u8>> = model
                .erased
                .iter()
                .filter_map(|subject| model.secrets.get(subject))
                .flatten()
                .cloned()
                .collect();
            assert_gone_from_files(
                &db,
                &windows::<16>(&erased),
                &format!("kill {kill}: erased bytes"),
            );
        }
        vault.close().unwrap();
        // Old backups go, so the folder stays small.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "fvbackup") {
                assert!(
                    backup_is_whole(&path),
                    "kill {kill}: a partial backup at {path:?}"
                );
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    let counts: Vec<String> = model.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "{total} kills in {:.0} s: operations {}; {} subjects held, {} erased, none lost or half-written",
        started.elapsed().as_secs_f64(),
        counts.join(", "),
        model.live.len(),
        model.erased.len()
    );
}
