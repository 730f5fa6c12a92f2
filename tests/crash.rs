//! Crashes and the audit: the record of a data change is committed with the change itself, so a
//! crash never loses it; lookup records are group-committed, so a crash loses at most those queued
//! in the last flush interval. The crash is real: a child process aborts with work in flight.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use facevault::{FixedKey, Password, Vault, FLUSH_INTERVAL};

const CHILD_DIR: &str = "FACEVAULT_CRASH_CHILD_DIR";
const CHILD_WAIT_MS: &str = "FACEVAULT_CRASH_CHILD_WAIT_MS";
const LOOKUPS: usize = 200;

/// The child process that the tests below start (ignored in an ordinary run, where it has no
/// vault to crash in): enrols one subject, runs LOOKUPS verifies, optionally waits, then aborts
/// without closing anything.
#[test]
#[ignore = "run only as the crashing child of the tests below"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("started by crash_after, which names the vault's folder");
    let wait_ms: u64 = std::env::var(CHILD_WAIT_MS).unwrap().parse().unwrap();
    let path = std::path::Path::new(&dir).join("vault.db");
    let vault = Vault::open(&path, &FixedKey::new(KEY)).unwrap();
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    let operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
    let person = Rng::new(1).gaussian_vec(16);
    let subject = vault.enrol(&admin, &consent(), &person).unwrap();
    for _ in 0..LOOKUPS {
        assert!(vault.verify(&operator, &subject, &person).unwrap().matched);
    }
    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    std::process::abort();
}

/// Makes a vault, lets a child process crash in it, and returns the audit records that survived.
fn crash_after(wait_ms: u64) -> Vec<facevault::AuditRecord> {
    let tv = TestVault::new(16);
    let dir = tv.dir;
    tv.vault.close().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_WAIT_MS, wait_ms.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    // SIGABRT, not a test failure (exit 101): the child got through its lookups.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(6),
        "the child was meant to abort: {status:?}"
    );
    let vault = Vault::open(&dir.path().join("vault.db"), &FixedKey::new(KEY)).unwrap();
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    let verified = vault.verify_audit(&admin).unwrap();
    let log = vault.audit_log(&admin).unwrap();
    assert_eq!(
        verified as usize + 1,
        log.len(),
        "the chain verifies after the crash"
    );
    log
}

fn count(log: &[facevault::AuditRecord], action: &str) -> usize {
    log.iter().filter(|r| r.action == action).count()
}

#[test]
fn a_crash_never_loses_a_data_change_record_and_at_most_the_unflushed_lookups() {
    let log = crash_after(0);
    assert_eq!(
        count(&log, "enrol"),
        1,
        "the enrolment and its record are one transaction"
    );
    let lookups = count(&log, "verify");
    eprintln!("{lookups} of {LOOKUPS} lookup records survived a crash right after them");
    // The log is whole and in order: the vault's first records, the enrolment, the lookup
    // records that were committed (any number, the last batch may be lost), each an allowed
    // match of the enrolled subject, and the parent's own audit check; nothing else, nothing torn.
    let enrolment = log.iter().position(|r| r.action == "enrol").unwrap();
    let subject = log[enrolment].subject.clone();
    let after: Vec<&str> = log[enrolment + 1..].iter().map(|r| r.action.as_str()).collect();
    let mut expected = vec!["verify"; lookups];
    expected.push("audit_verify");
    assert_eq!(after, expected);
    for record in &log[enrolment + 1..enrolment + 1 + lookups] {
        assert_eq!(record.subject, subject);
        assert_eq!(record.outcome, facevault::Outcome::Allowed);
        assert!(record.detail.starts_with("match=true"), "{}", record.detail);
    }
}

#[test]
fn lookups_older_than_the_flush_interval_survive_a_crash() {
    let wait = 6 * FLUSH_INTERVAL.as_millis() as u64;
    let log = crash_after(wait);
    assert_eq!(count(&log, "enrol"), 1);
    assert_eq!(
        count(&log, "verify"),
        LOOKUPS,
        "every lookup queued over {wait} ms before the crash"
    );
}
