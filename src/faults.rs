//! Injected I/O faults, for the fault sweep (`tests/faults.rs`; feature `fault-injection`, never
//! in a release). Every write, sync, truncate, delete and rename the vault makes counts as one
//! fault point, in the order they happen: SQLite's through a VFS that wraps the platform's
//! (`facevault-faults`, which every connection opens with in this build), the vault's own files
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

/// The VFS every connection of this build opens with.
pub(crate) const VFS_NAME: &str = "facevault-faults";

/// Registers the faulting VFS (once) and returns its name.
pub(crate) fn vfs() -> &'static str {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(vfs::register);
    VFS_NAME
}

#[allow(unsafe_code)]
mod vfs {
    //! A SQLite VFS that forwards everything to the default one, and fails writes, syncs,
    //! truncations and deletions where [`super::fails`] says.

    use std::ffi::{c_char, c_int, c_void};
    use std::ptr;

    use rusqlite::ffi;

    use super::FaultKind;

    /// An open file of this VFS: SQLite's header, then the default VFS's own file, whose size
    /// it gives as `szOsFile`, right after it.
    #[repr(C)]
    struct ShimFile {
        base: ffi::sqlite3_file,
        real: *mut ffi::sqlite3_file,
    }

    const NAME: &[u8] = b"facevault-faults\0";

    /// The default VFS, kept in the new one's `pAppData`.
    unsafe fn inner(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
        // SAFETY: `vfs` is the VFS `register` built, whose `pAppData` is the default VFS, which
        // SQLite never frees.
        unsafe { (*vfs).pAppData.cast() }
    }

    /// The wrapped file of a file this VFS opened.
    unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
        // SAFETY: SQLite hands the io methods only files this VFS opened, each a `ShimFile`
        // (`szOsFile` reserves its size) whose `real` was set by `open` before `pMethods`.
        unsafe { (*file.cast::<ShimFile>()).real }
    }

    /// The wrapped file's methods.
    unsafe fn methods(file: *mut ffi::sqlite3_file) -> *const ffi::sqlite3_io_methods {
        // SAFETY: as `real`; a file whose open succeeded has its methods set.
        unsafe { (*real(file)).pMethods }
    }

    pub(super) fn register() {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, static for the process; the
        // new VFS is leaked, so it outlives every connection, as SQLite requires.
        unsafe {
            let default = ffi::sqlite3_vfs_find(ptr::null());
            if default.is_null() {
                return;
            }
            let shim_size = std::mem::size_of::<ShimFile>() as c_int;
            let vfs = Box::new(ffi::sqlite3_vfs {
                iVersion: 2,
                szOsFile: shim_size + (*default).szOsFile,
                mxPathname: (*default).mxPathname,
                pNext: ptr::null_mut(),
                zName: NAME.as_ptr().cast(),
                pAppData: default.cast(),
                xOpen: Some(open),
                xDelete: Some(delete),
                xAccess: Some(access),
                xFullPathname: Some(full_pathname),
                xDlOpen: None,
                xDlError: None,
                xDlSym: None,
                xDlClose: None,
                xRandomness: Some(randomness),
                xSleep: Some(sleep),
                xCurrentTime: Some(current_time),
                xGetLastError: Some(last_error),
                xCurrentTimeInt64: Some(current_time_int64),
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            });
            ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0);
        }
    }

    static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
        iVersion: 3,
        xClose: Some(close),
        xRead: Some(read),
        xWrite: Some(write),
        xTruncate: Some(truncate),
        xSync: Some(sync),
        xFileSize: Some(file_size),
        xLock: Some(lock),
        xUnlock: Some(unlock),
        xCheckReservedLock: Some(check_reserved_lock),
        xFileControl: Some(file_control),
        xSectorSize: Some(sector_size),
        xDeviceCharacteristics: Some(device_characteristics),
        xShmMap: Some(shm_map),
        xShmLock: Some(shm_lock),
        xShmBarrier: Some(shm_barrier),
        xShmUnmap: Some(shm_unmap),
        xFetch: Some(fetch),
        xUnfetch: Some(unfetch),
    };

    unsafe extern "C" fn open(
        vfs: *mut ffi::sqlite3_vfs,
        name: ffi::sqlite3_filename,
        file: *mut ffi::sqlite3_file,
        flags: c_int,
        out_flags: *mut c_int,
    ) -> c_int {
        // SAFETY: `file` has `szOsFile` bytes (SQLite allocates them): a `ShimFile`, then room
        // for the default VFS's file, which is opened there.
        unsafe {
            let shim = file.cast::<ShimFile>();
            let real = file
                .cast::<u8>()
                .add(std::mem::size_of::<ShimFile>())
                .cast::<ffi::sqlite3_file>();
            (*shim).real = real;
            (*shim).base.pMethods = ptr::null();
            let inner = inner(vfs);
            let Some(open) = (*inner).xOpen else {
                return ffi::SQLITE_CANTOPEN;
            };
            let rc = open(inner, name, real, flags, out_flags);
            if rc == ffi::SQLITE_OK && !(*real).pMethods.is_null() {
                (*shim).base.pMethods = &METHODS;
            }
            rc
        }
    }

    unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
        if super::fails(FaultKind::Delete) {
            return ffi::SQLITE_IOERR_DELETE;
        }
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner)
                .xDelete
                .map_or(ffi::SQLITE_IOERR_DELETE, |f| f(inner, name, sync_dir))
        }
    }

    unsafe extern "C" fn access(
        vfs: *mut ffi::sqlite3_vfs,
        name: *const c_char,
        flags: c_int,
        out: *mut c_int,
    ) -> c_int {
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner)
                .xAccess
                .map_or(ffi::SQLITE_IOERR, |f| f(inner, name, flags, out))
        }
    }

    unsafe extern "C" fn full_pathname(
        vfs: *mut ffi::sqlite3_vfs,
        name: *const c_char,
        n_out: c_int,
        out: *mut c_char,
    ) -> c_int {
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner)
                .xFullPathname
                .map_or(ffi::SQLITE_IOERR, |f| f(inner, name, n_out, out))
        }
    }

    unsafe extern "C" fn randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner).xRandomness.map_or(0, |f| f(inner, n, out))
        }
    }

    unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner).xSleep.map_or(0, |f| f(inner, micros))
        }
    }

    unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner).xCurrentTime.map_or(ffi::SQLITE_ERROR, |f| f(inner, out))
        }
    }

    unsafe extern "C" fn last_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner).xGetLastError.map_or(0, |f| f(inner, n, out))
        }
    }

    unsafe extern "C" fn current_time_int64(
        vfs: *mut ffi::sqlite3_vfs,
        out: *mut ffi::sqlite3_int64,
    ) -> c_int {
        // SAFETY: forwarded unchanged to the default VFS.
        unsafe {
            let inner = inner(vfs);
            (*inner)
                .xCurrentTimeInt64
                .map_or(ffi::SQLITE_ERROR, |f| f(inner, out))
        }
    }

    /// Forwards an io method to the wrapped file's, or answers `$missing` when it has none.
    macro_rules! forward {
        ($file:expr, $method:ident, $missing:expr $(, $arg:expr)*) => {{
            // SAFETY: `$file` is a file this VFS opened (see `real`); the wrapped file's method
            // gets the wrapped file and the arguments SQLite gave, unchanged.
            unsafe {
                let real = real($file);
                match (*methods($file)).$method {
                    Some(method) => method(real $(, $arg)*),
                    None => $missing,
                }
            }
        }};
    }

    unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
        forward!(file, xClose, ffi::SQLITE_OK)
    }

    unsafe extern "C" fn read(
        file: *mut ffi::sqlite3_file,
        out: *mut c_void,
        n: c_int,
        offset: i64,
    ) -> c_int {
        forward!(file, xRead, ffi::SQLITE_IOERR_READ, out, n, offset)
    }

    unsafe extern "C" fn write(
        file: *mut ffi::sqlite3_file,
        data: *const c_void,
        n: c_int,
        offset: i64,
    ) -> c_int {
        if super::fails(FaultKind::Write) {
            return ffi::SQLITE_IOERR_WRITE;
        }
        forward!(file, xWrite, ffi::SQLITE_IOERR_WRITE, data, n, offset)
    }

    unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
        if super::fails(FaultKind::Truncate) {
            return ffi::SQLITE_IOERR_TRUNCATE;
        }
        forward!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
    }

    unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
        if super::fails(FaultKind::Sync) {
            return ffi::SQLITE_IOERR_FSYNC;
        }
        forward!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
    }

    unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, out: *mut i64) -> c_int {
        forward!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, out)
    }

    unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
        forward!(file, xLock, ffi::SQLITE_IOERR_LOCK, level)
    }

    unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
        forward!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
    }

    unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
        forward!(file, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, out)
    }

    unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
        forward!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
    }

    unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
        forward!(file, xSectorSize, 4096)
    }

    unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
        forward!(file, xDeviceCharacteristics, 0)
    }

    unsafe extern "C" fn shm_map(
        file: *mut ffi::sqlite3_file,
        page: c_int,
        size: c_int,
        extend: c_int,
        out: *mut *mut c_void,
    ) -> c_int {
        forward!(file, xShmMap, ffi::SQLITE_IOERR_SHMMAP, page, size, extend, out)
    }

    unsafe extern "C" fn shm_lock(
        file: *mut ffi::sqlite3_file,
        offset: c_int,
        n: c_int,
        flags: c_int,
    ) -> c_int {
        forward!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
    }

    unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
        forward!(file, xShmBarrier, ())
    }

    unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
        forward!(file, xShmUnmap, ffi::SQLITE_OK, delete)
    }

    unsafe extern "C" fn fetch(
        file: *mut ffi::sqlite3_file,
        offset: i64,
        n: c_int,
        out: *mut *mut c_void,
    ) -> c_int {
        // A wrapped file without memory mapping answers "no map": SQLite then reads.
        // SAFETY: `out` is SQLite's pointer to fill.
        let none = unsafe {
            *out = ptr::null_mut();
            ffi::SQLITE_OK
        };
        forward!(file, xFetch, none, offset, n, out)
    }

    unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
        forward!(file, xUnfetch, ffi::SQLITE_OK, offset, page)
    }
}
