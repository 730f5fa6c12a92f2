//! Memory pages for the gallery's big buffers, through `madvise`.
//!
//! - **Huge pages.** A gallery is hundreds of megabytes read at random rows (verify, the fast
//!   scan's re-rank) or end to end (the exact scan): with 4 KiB pages nearly every row costs a TLB
//!   miss and a page walk, and opening faults in every page one at a time.
//! - **Pages faulted in ahead of the writes.** Opening a 1M vault writes 2.2 GB into fresh
//!   memory, and the kernel zeroes each page at its first write. On a virtual machine whose host
//!   has taken its free memory back, that first touch costs the host's fault as well: about 2 s a
//!   gigabyte, more than decrypting the templates. Loading therefore hands the ranges it will
//!   fill to a thread that faults them in while the decrypting thread writes behind it (see
//!   [`populate`]).
//!
//! Rust reaches `madvise` only through `unsafe`: this module is its only caller, so the `unsafe`
//! allowed here covers those calls and nothing else.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use crate::wiped::WipedVec;

const HUGE_PAGE: usize = 2 << 20;
/// A multiple of every base page size Linux uses (4, 16 and 64 KiB), so that the ranges handed
/// to `madvise` start and end on page boundaries on any of them.
const PAGE_GRANULE: usize = 64 << 10;

/// How much [`populate`] faults in between looks at its stop flag: a few milliseconds' work.
const POPULATE_STEP: usize = 16 << 20;

/// Asks the kernel to back `buffer`'s whole 2 MiB pages with huge pages, before it is first
/// touched. Only a hint: where transparent huge pages are off, or on other systems, nothing
/// changes.
pub(crate) fn advise_huge<T>(buffer: &[T]) {
    #[cfg(target_os = "linux")]
    {
        let start = buffer.as_ptr() as usize;
        let pages = whole_pages(start, start + std::mem::size_of_val(buffer), HUGE_PAGE);
        if !pages.is_empty() {
            // SAFETY: `pages` lies inside `buffer`'s allocation, which stays alive for the call;
            // MADV_HUGEPAGE changes how the kernel backs those pages, never their contents or
            // validity, and a failure (EINVAL where THP is off) only means the hint is ignored.
            unsafe {
                libc::madvise(pages.start as *mut libc::c_void, pages.len(), libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

/// A range of addresses a buffer is about to fill: plain numbers, holding no borrow, so that
/// another thread may fault its pages in while the buffer's owner writes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    len: usize,
}

impl Span {
    /// The first `values` of `buffer`'s spare capacity, or as much of it as there is.
    pub(crate) fn of_spare<T: zeroize::DefaultIsZeroes>(buffer: &WipedVec<T>, values: usize) -> Self {
        let start = buffer.as_slice().as_ptr_range().end as usize;
        let spare = buffer.capacity() - buffer.len();
        Self {
            start,
            len: values.min(spare) * std::mem::size_of::<T>(),
        }
    }

    /// Whether the span holds every byte of `values`.
    #[cfg(test)]
    pub(crate) fn holds<T>(&self, values: &[T]) -> bool {
        let range = values.as_ptr_range();
        self.start <= range.start as usize && range.end as usize <= self.start + self.len
    }

    /// The whole pages inside the span, in steps of at most `step` bytes.
    fn page_steps(self, step: usize) -> impl Iterator<Item = (usize, usize)> {
        let pages = whole_pages(self.start, self.start + self.len, PAGE_GRANULE);
        let last = pages.end;
        pages.step_by(step).map(move |from| (from, step.min(last - from)))
    }
}

/// The addresses of the whole `page`-aligned pages within `start..end`; empty when there are none.
fn whole_pages(start: usize, end: usize, page: usize) -> std::ops::Range<usize> {
    let first = start.next_multiple_of(page);
    first..(end - end % page).max(first)
}

/// Runs `fill`, which writes `spans`, while a helper thread faults their pages in ahead of it
/// (see [`populate`]). Spans of less than one populating step are left to `fill`'s own first
/// writes, with no thread: there the thread costs more than the faults, and a small vault's
/// opening from a C caller's thread then starts none (std keeps a handle for any such thread
/// that starts one, which valgrind reports at exit).
pub(crate) fn populating_while<R>(spans: &[Span], fill: impl FnOnce() -> R) -> R {
    let bytes: usize = spans.iter().map(|span| span.len).sum();
    if bytes < POPULATE_STEP {
        return fill();
    }
    let populated = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Without the thread, the writer faults in its own pages, as it would anyway.
        let _populating = std::thread::Builder::new()
            .name("facevault-pages".into())
            .spawn_scoped(scope, || populate(spans, &populated));
        let filled = fill();
        populated.store(true, Ordering::Relaxed);
        filled
    })
}

/// Faults in `spans`' pages, writable, in order and a step at a time, until they are all in or
/// `stop` is set. Nothing in them changes: `MADV_POPULATE_WRITE` does what a first write's fault
/// would (maps a zeroed page, a huge one where advised) without writing, and leaves a page
/// already there as it is. So the thread filling the buffers meanwhile finds its pages mapped
/// instead of stopping at each to have it zeroed. Where the kernel predates the call (Linux
/// 5.14), or on other systems, it does nothing and the writer faults its own pages, as before.
pub(crate) fn populate(spans: &[Span], stop: &AtomicBool) {
    for span in spans {
        for (from, len) in span.page_steps(POPULATE_STEP) {
            if stop.load(Ordering::Relaxed) || !populate_write(from, len) {
                return;
            }
        }
    }
}

/// False when the kernel refused, so that nothing more is asked of it.
#[cfg(target_os = "linux")]
fn populate_write(from: usize, len: usize) -> bool {
    // SAFETY: madvise reads and writes no memory of this process through the pointer: it only
    // asks the kernel to map pages. MADV_POPULATE_WRITE never changes what a page holds (a
    // missing page is mapped zeroed, exactly as the owner's first write would find it; a present
    // one is left as it is), so it is sound even while the buffer's owner writes to these
    // addresses, and even were the buffer freed meanwhile: then the call fails (ENOMEM on an
    // unmapped range) or maps pages that some other allocation would fault in at its first write
    // anyway, unchanged. A failure only ends the populating.
    unsafe { libc::madvise(from as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn populate_write(_from: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty, smaller than a huge page, and spanning several: the advice never changes what the
    /// buffer holds, before or after it is written.
    #[test]
    fn advice_leaves_every_buffer_as_it_was() {
        advise_huge::<u64>(&[]);
        let small = vec![7u8; 100];
        advise_huge(&small);
        assert!(small.iter().all(|byte| *byte == 7));
        let mut large: Vec<u32> = Vec::with_capacity(3 << 20);
        advise_huge(large.spare_capacity_mut());
        large.extend(0..3 << 20);
        advise_huge(&large);
        assert!(large.iter().enumerate().all(|(i, value)| *value as usize == i));
    }

    #[test]
    fn a_span_covers_the_spare_capacity_asked_for() {
        let mut buffer: WipedVec<u32> = WipedVec::with_capacity(1000);
        buffer.extend_from_slice(&[1, 2, 3]);
        let end_of_values = buffer.as_slice().as_ptr_range().end as usize;
        let span = Span::of_spare(&buffer, 100);
        assert_eq!(
            span,
            Span {
                start: end_of_values,
                len: 400
            }
        );
        // Never past the capacity.
        assert_eq!(Span::of_spare(&buffer, 5000).len, 997 * 4);
        // Whole granules only, in steps.
        let granule = PAGE_GRANULE;
        let steps: Vec<_> = Span {
            start: granule * 3 + 5,
            len: granule * 10,
        }
        .page_steps(granule * 4)
        .collect();
        assert_eq!(
            steps,
            [
                (granule * 4, granule * 4),
                (granule * 8, granule * 4),
                (granule * 12, granule)
            ]
        );
        assert_eq!(
            Span {
                start: granule + 1,
                len: granule
            }
            .page_steps(granule)
            .count(),
            0
        );
    }

    /// Pages faulted in while another thread writes the same buffer (through
    /// [`populating_while`]): every value written is
    /// there afterwards, the values written before are untouched, and the rest reads as zero.
    #[test]
    fn populating_while_writing_changes_nothing_written() {
        const VALUES: usize = 24 << 20;
        let mut buffer: WipedVec<u32> = WipedVec::with_capacity(VALUES);
        advise_huge(buffer.spare_capacity_mut());
        buffer.extend_from_slice(&(0..1000).collect::<Vec<u32>>());
        let before: Vec<u32> = (1000..VALUES as u32 / 2)
            .map(|value| value.wrapping_mul(2_654_435_761))
            .collect();
        let span = Span::of_spare(&buffer, VALUES);
        assert!(span.len >= POPULATE_STEP, "a helper thread populates");
        populating_while(&[span], || buffer.extend_from_slice(&before));
        assert!(buffer[..1000]
            .iter()
            .enumerate()
            .all(|(i, value)| *value as usize == i));
        assert!(buffer[1000..]
            .iter()
            .zip(1000u32..)
            .all(|(value, i)| *value == i.wrapping_mul(2_654_435_761)));
    }

    /// Linux 5.14 and later: the pages are resident afterwards, as `mincore` reports.
    #[cfg(target_os = "linux")]
    #[test]
    fn populated_pages_are_resident() {
        // Above glibc's largest mmap threshold (32 MiB), so always freshly mapped, not reused.
        const CAPACITY: usize = 40 << 20;
        const BYTES: usize = 8 << 20;
        let buffer: WipedVec<u8> = WipedVec::with_capacity(CAPACITY);
        let span = Span::of_spare(&buffer, BYTES);
        // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
        let page_size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let steps: Vec<_> = span.page_steps(BYTES).collect();
        let [(from, len)] = steps[..] else {
            panic!("an 8 MiB span is one step: {steps:?}");
        };
        let pages = len / page_size;
        let resident = || {
            let mut flags = vec![0u8; pages];
            // SAFETY: mincore writes one byte per page of [from, from + len), which lies inside
            // `buffer`'s live allocation, into `flags`, which holds exactly that many.
            let status = unsafe { libc::mincore(from as *mut libc::c_void, len, flags.as_mut_ptr()) };
            assert_eq!(status, 0);
            flags.iter().filter(|flag| *flag & 1 == 1).count()
        };
        assert!(
            resident() < pages,
            "fresh pages were all resident before populating"
        );
        if !populate_write(from, len) {
            eprintln!("skipped: this kernel has no MADV_POPULATE_WRITE (Linux 5.14)");
            return;
        }
        assert_eq!(resident(), pages);
        // Populating again, or with the stop flag set, is harmless.
        populate(&[span], &AtomicBool::new(true));
        populate(&[span], &AtomicBool::new(false));
        assert_eq!(resident(), pages);
    }
}
