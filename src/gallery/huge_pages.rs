//! Huge pages for the gallery's big buffers. A gallery is hundreds of megabytes read at random
//! rows (verify, the fast scan's re-rank) or end to end (the exact scan): with 4 KiB pages nearly
//! every row costs a TLB miss and a page walk, and opening faults in every page one at a time.
//! Asking Linux for 2 MiB pages takes one system call, `madvise`, which Rust can only reach
//! through `unsafe`: this module is its only caller, so the `unsafe` allowed here covers that
//! call and nothing else.
#![allow(unsafe_code)]

/// Asks the kernel to back `buffer`'s whole 2 MiB pages with huge pages, before it is first
/// touched. Only a hint: where transparent huge pages are off, or on other systems, nothing
/// changes.
pub(crate) fn advise<T>(buffer: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = buffer.as_ptr() as usize;
        let end = start + std::mem::size_of_val(buffer);
        let first = start.next_multiple_of(HUGE_PAGE);
        let last = end - end % HUGE_PAGE;
        if first < last {
            // SAFETY: [first, last) lies inside `buffer`'s allocation, which stays alive for the
            // call; MADV_HUGEPAGE changes how the kernel backs those pages, never their contents
            // or validity, and a failure (EINVAL where THP is off) only means the hint is ignored.
            unsafe {
                libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty, smaller than a huge page, and spanning several: the advice never changes what the
    /// buffer holds, before or after it is written.
    #[test]
    fn advice_leaves_every_buffer_as_it_was() {
        advise::<u64>(&[]);
        let small = vec![7u8; 100];
        advise(&small);
        assert!(small.iter().all(|byte| *byte == 7));
        let mut large: Vec<u32> = Vec::with_capacity(3 << 20);
        advise(large.spare_capacity_mut());
        large.extend(0..3 << 20);
        advise(&large);
        assert!(large.iter().enumerate().all(|(i, value)| *value as usize == i));
    }
}
