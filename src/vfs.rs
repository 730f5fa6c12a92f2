//! The VFS every vault connection opens with: the platform's, wrapped, so that no page the vault
//! writes to its database file keeps stale bytes in its unallocated area.
//!
//! `secure_delete` zeroes a deleted cell and a freed page. It does not reach the copies that
//! SQLite's b-tree rebalancing leaves behind: a page rebuilt with fewer cells (SQLite 3.46's
//! `rebuildPage`) keeps its old bytes between its cell pointers and its first cell, copies of
//! cells that moved to a sibling. If such a row (a wrapped key, a template's ciphertext) is
//! deleted later, its copy stays in the file. So every whole b-tree page written to the main
//! database file (a checkpoint copying it from the WAL, or a commit outside WAL mode) has that
//! area zeroed on its way to the disk. SQLite never reads those bytes, so the page means exactly
//! what it meant. WAL frames are written as they are (each frame's checksum covers its bytes);
//! the truncating checkpoint that follows every erasure empties the WAL. With the whole-file
//! layer (`sqlcipher`) the pages arrive encrypted and are passed on unchanged.
//!
//! In a `fault-injection` build the same VFS fails writes, syncs, truncations and deletions
//! where `crate::faults` says (the fault sweep).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use rusqlite::ffi;

use crate::faults::{self, FaultKind};

/// Whether this build scrubs: not with the whole-file layer, whose pages arrive encrypted.
const SCRUBS: bool = !cfg!(feature = "sqlcipher");

/// The database header's length, at the start of page 1.
const HEADER_LEN: usize = 100;

/// Registers the VFS (once) and returns its name.
pub(crate) fn name() -> &'static str {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(register);
    "facevault"
}

/// Whether a write of `len` bytes at `offset` is one whole database page: a power of two from
/// 512 to 65536 bytes, at a multiple of itself.
fn is_whole_page(len: usize, offset: i64) -> bool {
    len.is_power_of_two()
        && (512..=65536).contains(&len)
        && u64::try_from(offset).is_ok_and(|offset| offset % len as u64 == 0)
}

/// Whether page 1 (or at least its first [`HEADER_LEN`] bytes) turns auto-vacuum on: the
/// largest root page, bytes 52-55, is then not zero.
fn auto_vacuum(first_page: &[u8]) -> bool {
    first_page.get(52..56).is_some_and(|field| field != [0; 4])
}

/// Zeroes the unallocated area of every b-tree page of a whole database image (a backup's
/// snapshot, copied page for page from SQLite's cache), as writing each page to the file would.
/// (The whole-file layer's snapshot is an export, not a page copy.)
#[cfg(not(feature = "sqlcipher"))]
pub(crate) fn scrub_image(image: &mut [u8]) {
    let Some(size) = image
        .get(16..18)
        .map(|size| match u16::from_be_bytes([size[0], size[1]]) {
            1 => 65536,
            size => usize::from(size),
        })
    else {
        return;
    };
    if auto_vacuum(image) || !is_whole_page(size, 0) {
        return;
    }
    for (index, page) in image.chunks_exact_mut(size).enumerate() {
        if let Some(area) = unallocated_area(page, index == 0) {
            page[area].fill(0);
        }
    }
}

/// Zeroes the unallocated area of a b-tree page, in place; true when it held anything.
#[cfg(test)]
fn scrub_unallocated(page: &mut [u8], first: bool) -> bool {
    match scrubbed_copy(page, first) {
        Some(copy) => {
            page.copy_from_slice(&copy);
            true
        }
        None => false,
    }
}

/// `page` with its unallocated area zeroed, or `None` when there is nothing to zero or it is not
/// a b-tree page this can read. `first`: page 1.
fn scrubbed_copy(page: &[u8], first: bool) -> Option<Vec<u8>> {
    let area = unallocated_area(page, first)?;
    if page[area.clone()].iter().all(|byte| *byte == 0) {
        return None;
    }
    let mut copy = page.to_vec();
    copy[area].fill(0);
    Some(copy)
}

/// Where a b-tree page's unallocated area lies: from the end of its cell pointer array to the
/// start of its cell content area. `None` unless the page reads as a b-tree page whose header,
/// first freeblock and every cell pointer agree, so that no other kind of page (overflow,
/// freelist) is ever changed. `first`: page 1, whose b-tree header follows the database header.
fn unallocated_area(page: &[u8], first: bool) -> Option<std::ops::Range<usize>> {
    let at = if first { HEADER_LEN } else { 0 };
    let header_len = match *page.get(at)? {
        2 | 5 => 12,
        10 | 13 => 8,
        _ => return None,
    };
    let word = |offset: usize| -> Option<usize> {
        let bytes = page.get(offset..offset + 2)?;
        Some(usize::from(u16::from_be_bytes([bytes[0], bytes[1]])))
    };
    let cells = word(at + 3)?;
    let content_start = match word(at + 5)? {
        0 => 65536,
        start => start,
    };
    let pointers_start = at + header_len;
    let pointers_end = pointers_start + 2 * cells;
    if pointers_end > content_start || content_start > page.len() {
        return None;
    }
    let in_content = |offset: usize| (content_start..page.len()).contains(&offset);
    let first_freeblock = word(at + 1)?;
    if first_freeblock != 0 && !in_content(first_freeblock) {
        return None;
    }
    for cell in 0..cells {
        if !in_content(word(pointers_start + 2 * cell)?) {
            return None;
        }
    }
    Some(pointers_end..content_start)
}

/// An open file of this VFS: SQLite's header, then the default VFS's own file, whose size
/// it gives as `szOsFile`, right after it.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Whether this file's page writes are scrubbed: a main database file, of a build without
    /// the whole-file layer, whose header does not turn on auto-vacuum.
    scrub: bool,
}

const NAME: &[u8] = b"facevault\0";

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

/// The registered VFS, in static memory: it must outlive every connection, and a leaked box
/// would show as memory in use at exit (the C ABI's test runs under valgrind). SQLite links it
/// into its list through `pNext`, so it sits in an `UnsafeCell`.
struct Registered(std::cell::UnsafeCell<ffi::sqlite3_vfs>);

// SAFETY: after `register` builds it, once, only SQLite touches it, under its own mutex.
unsafe impl Sync for Registered {}
// SAFETY: as for `Sync`; its pointers are to the default VFS and to statics, valid everywhere.
unsafe impl Send for Registered {}

static VFS: std::sync::OnceLock<Registered> = std::sync::OnceLock::new();

fn register() {
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, static for the process; the new
    // VFS lives in a static, so it outlives every connection, as SQLite requires.
    unsafe {
        let default = ffi::sqlite3_vfs_find(ptr::null());
        if default.is_null() {
            return;
        }
        let shim_size = std::mem::size_of::<ShimFile>() as c_int;
        let vfs = VFS.get_or_init(|| {
            Registered(std::cell::UnsafeCell::new(ffi::sqlite3_vfs {
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
            }))
        });
        ffi::sqlite3_vfs_register(vfs.0.get(), 0);
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
        (*shim).scrub = false;
        (*shim).base.pMethods = ptr::null();
        let inner = inner(vfs);
        let Some(open) = (*inner).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = open(inner, name, real, flags, out_flags);
        if rc == ffi::SQLITE_OK && !(*real).pMethods.is_null() {
            (*shim).base.pMethods = &METHODS;
            (*shim).scrub = SCRUBS && flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !auto_vacuum_on_disk(file);
        }
        rc
    }
}

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    if faults::fails(FaultKind::Delete) {
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

unsafe extern "C" fn current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut ffi::sqlite3_int64) -> c_int {
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

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, out: *mut c_void, n: c_int, offset: i64) -> c_int {
    forward!(file, xRead, ffi::SQLITE_IOERR_READ, out, n, offset)
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    n: c_int,
    offset: i64,
) -> c_int {
    if faults::fails(FaultKind::Write) {
        return ffi::SQLITE_IOERR_WRITE;
    }
    // SAFETY: `file` is a file this VFS opened (see `real`), a `ShimFile` whose methods SQLite
    // calls from one thread at a time, so reading and clearing its `scrub` races with nothing;
    // SQLite passes `n` readable bytes at `data`, which the slice borrows for this call only.
    let scrubbed = unsafe {
        let shim = file.cast::<ShimFile>();
        match usize::try_from(n) {
            Ok(len) if (*shim).scrub && is_whole_page(len, offset) => {
                let page = std::slice::from_raw_parts(data.cast::<u8>(), len);
                if offset == 0 && auto_vacuum(page) {
                    // A database that turns auto-vacuum on has pointer-map pages, which the
                    // scrubbing does not tell from b-tree pages: it stops for this file.
                    (*shim).scrub = false;
                    None
                } else {
                    scrubbed_copy(page, offset == 0)
                }
            }
            _ => None,
        }
    };
    match &scrubbed {
        Some(page) => forward!(
            file,
            xWrite,
            ffi::SQLITE_IOERR_WRITE,
            page.as_ptr().cast(),
            n,
            offset
        ),
        None => forward!(file, xWrite, ffi::SQLITE_IOERR_WRITE, data, n, offset),
    }
}

/// Whether the main database file's header turns auto-vacuum on (see [`auto_vacuum`]); a file
/// too short to have a header (a new one) has it off.
unsafe fn auto_vacuum_on_disk(file: *mut ffi::sqlite3_file) -> bool {
    let mut header = [0u8; HEADER_LEN];
    // `header` has room for the bytes read; a short read fills the rest with zeros and says so.
    let rc = forward!(
        file,
        xRead,
        ffi::SQLITE_IOERR_READ,
        header.as_mut_ptr().cast(),
        HEADER_LEN as c_int,
        0
    );
    match rc {
        ffi::SQLITE_OK | ffi::SQLITE_IOERR_SHORT_READ => auto_vacuum(&header),
        // Unreadable now: taken as on, so that nothing is scrubbed.
        _ => true,
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    if faults::fails(FaultKind::Truncate) {
        return ffi::SQLITE_IOERR_TRUNCATE;
    }
    forward!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    if faults::fails(FaultKind::Sync) {
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

unsafe extern "C" fn shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A table leaf page of `size` bytes with `cells` cells of `cell_len` bytes packed at its
    /// end, the rest of the page filled with `stale`.
    fn leaf(size: usize, cells: usize, cell_len: usize, stale: u8, first: bool) -> Vec<u8> {
        let at = if first { HEADER_LEN } else { 0 };
        let mut page = vec![stale; size];
        let content_start = size - cells * cell_len;
        page[at] = 13;
        page[at + 1..at + 3].copy_from_slice(&0u16.to_be_bytes());
        page[at + 3..at + 5].copy_from_slice(&(cells as u16).to_be_bytes());
        page[at + 5..at + 7].copy_from_slice(&(content_start as u16).to_be_bytes());
        page[at + 7] = 0;
        for cell in 0..cells {
            let offset = content_start + cell * cell_len;
            page[at + 8 + 2 * cell..at + 10 + 2 * cell].copy_from_slice(&(offset as u16).to_be_bytes());
            page[offset..offset + cell_len].fill(0x40 + cell as u8);
        }
        page
    }

    #[test]
    fn the_unallocated_area_is_zeroed_and_nothing_else_changes() {
        for first in [false, true] {
            let mut page = leaf(4096, 5, 300, 0xEE, first);
            let before = page.clone();
            let at = if first { HEADER_LEN } else { 0 };
            let area = at + 8 + 10..4096 - 5 * 300;
            assert!(scrub_unallocated(&mut page, first));
            assert!(page[area.clone()].iter().all(|byte| *byte == 0));
            assert_eq!(page[..area.start], before[..area.start], "header and pointers");
            assert_eq!(page[area.end..], before[area.end..], "the cells");
            // Scrubbed already: nothing more to do.
            assert!(!scrub_unallocated(&mut page, first));
        }
    }

    #[test]
    fn pages_that_are_not_consistent_b_tree_pages_are_left_alone() {
        let scrubbable = leaf(4096, 5, 300, 0xEE, false);
        let mut cases = Vec::new();
        // An overflow or freelist trunk page: a page number in its first four bytes.
        let mut overflow = vec![0xEE; 4096];
        overflow[..4].copy_from_slice(&77u32.to_be_bytes());
        cases.push(overflow);
        // A cell pointer below the content area, or past the page.
        let mut low = scrubbable.clone();
        low[8..10].copy_from_slice(&100u16.to_be_bytes());
        cases.push(low);
        let mut past = scrubbable.clone();
        past[8..10].copy_from_slice(&5000u16.to_be_bytes());
        cases.push(past);
        // Pointers that would run into the content area.
        let mut crowded = scrubbable.clone();
        crowded[3..5].copy_from_slice(&2000u16.to_be_bytes());
        cases.push(crowded);
        // A first freeblock outside the content area.
        let mut freeblock = scrubbable.clone();
        freeblock[1..3].copy_from_slice(&50u16.to_be_bytes());
        cases.push(freeblock);
        for mut page in cases {
            let before = page.clone();
            assert!(!scrub_unallocated(&mut page, false));
            assert_eq!(page, before);
        }
        // Page 1's b-tree header follows the database header: read from byte 0, the page is not
        // a b-tree page.
        let mut first = leaf(4096, 5, 300, 0xEE, true);
        first[..16].copy_from_slice(b"SQLite format 3\0");
        let before = first.clone();
        assert!(!scrub_unallocated(&mut first, false));
        assert_eq!(first, before);
        assert!(scrub_unallocated(&mut first, true));
    }

    #[cfg(not(feature = "sqlcipher"))]
    #[test]
    fn a_whole_image_is_scrubbed_page_by_page() {
        let mut first = leaf(4096, 2, 100, 0xEE, true);
        first[..16].copy_from_slice(b"SQLite format 3\0");
        first[16..18].copy_from_slice(&4096u16.to_be_bytes());
        first[18..HEADER_LEN].fill(0);
        let second = leaf(4096, 3, 500, 0xDD, false);
        let mut overflow = vec![0xCC; 4096];
        overflow[..4].copy_from_slice(&2u32.to_be_bytes());
        let mut image = [first.clone(), second.clone(), overflow.clone()].concat();
        scrub_image(&mut image);
        let (mut first_scrubbed, mut second_scrubbed) = (first, second);
        assert!(scrub_unallocated(&mut first_scrubbed, true));
        assert!(scrub_unallocated(&mut second_scrubbed, false));
        assert_eq!(image, [first_scrubbed, second_scrubbed, overflow].concat());
    }

    #[test]
    fn only_whole_pages_at_their_own_offsets_count() {
        assert!(is_whole_page(16384, 16384 * 7));
        assert!(is_whole_page(512, 0));
        assert!(!is_whole_page(16384, 100));
        assert!(!is_whole_page(24, 0), "a WAL frame header");
        assert!(!is_whole_page(16384 + 24, 0));
        assert!(!is_whole_page(131072, 0));
        assert!(!is_whole_page(4096, -4096));
        assert!(auto_vacuum(&[[0u8; 52].as_slice(), &[0, 0, 0, 3]].concat()));
        assert!(!auto_vacuum(&[0u8; 100]));
    }
}
