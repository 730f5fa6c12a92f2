//! Injected I/O faults, for the fault sweep (`tests/faults.rs`; feature `fault-injection`, never
//! in a release). Every write, sync, truncate, delete and rename the vault makes counts as one
//! fault point, in the order they happen: SQLite's through the VFS every connection opens with
//! (`crate::vfs`, which asks [`fails`] at each), the vault's own files
//! (the rollback counter, the erasure ledger, backups, the whole-file layer's and a restore's
//! renames) through [`check`]. [`arm`] makes the n-th point fail, once or from then on; the test
//! runs an operation with the fault at n = 1, 2, … until it completes, and checks after each
//! failure that the vault is exactly as before or exactly as after.
//!
//! A VFS wrapper rather than failpoints in the vault's code: it fails SQLite's own writes at
//! every point SQLite makes one (the WAL frames, the checkpoint, the truncation), which no
//! failpoint in this crate can reach, and it needs no change to the code under test.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What kind of I/O a fault point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Writing bytes.
    Write,
    /// Flushing to the disk (fsync).
    Sync,
    /// Cutting a file's length.
    Truncate,
    /// Deleting a file (SQLite's journals).
    Delete,
    /// Renaming a file over another.
    Rename,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static SEEN: AtomicU64 = AtomicU64::new(0);
static FAIL_AT: AtomicU64 = AtomicU64::new(0);
static PERSISTENT: AtomicBool = AtomicBool::new(false);
static FIRED: AtomicU64 = AtomicU64::new(0);

/// Starts counting fault points from zero; the `fail_at`-th (from 1) fails, and with
/// `persistent` every one after it too. The plan is process-wide: a test that arms it runs alone.
pub fn arm(fail_at: u64, persistent: bool) {
    SEEN.store(0, Ordering::SeqCst);
    FIRED.store(0, Ordering::SeqCst);
    FAIL_AT.store(fail_at, Ordering::SeqCst);
    PERSISTENT.store(persistent, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
}

/// What happened while armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultReport {
    /// Fault points passed, the failed ones included.
    pub points: u64,
    /// Points that failed.
    pub fired: u64,
}

/// Stops injecting and counting; says what happened since [`arm`].
pub fn disarm() -> FaultReport {
    ARMED.store(false, Ordering::SeqCst);
    FaultReport {
        points: SEEN.load(Ordering::SeqCst),
        fired: FIRED.load(Ordering::SeqCst),
    }
}

/// Counts one fault point of `kind`; true when it is to fail.
pub(crate) fn fails(_kind: FaultKind) -> bool {
    if !ARMED.load(Ordering::SeqCst) {
        return false;
    }
    let seen = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
    let at = FAIL_AT.load(Ordering::SeqCst);
    let fail = at != 0 && (seen == at || (seen > at && PERSISTENT.load(Ordering::SeqCst)));
    if fail {
        FIRED.fetch_add(1, Ordering::SeqCst);
    }
    fail
}

/// A fault point of the vault's own file I/O: an injected error when it is to fail.
pub(crate) fn check(kind: FaultKind) -> std::io::Result<()> {
    if fails(kind) {
        Err(std::io::Error::other(format!("injected {kind:?} fault")))
    } else {
        Ok(())
    }
}
