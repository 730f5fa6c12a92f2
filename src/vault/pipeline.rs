//! Two threads over one pass of a table: this one steps SQLite and hands rows over in batches,
//! a helper does the work on them (cryptography, mostly), in the same order. Opening a 1M vault
//! runs three such passes; on two cores each takes about as long as the slower of its halves
//! instead of their sum. A pass expected to fill less than one batch runs on the calling thread
//! alone: the helper could only start once the reading was done, and a thread costs more than a
//! few thousand rows' work. It also spares a small vault's opening from a C caller's thread the
//! handle std keeps for any thread that starts one (valgrind reports it at exit).

use std::cell::RefCell;
use std::sync::mpsc;

use crate::error::{Error, Result};

/// Batches handed over and not yet taken, before the reading thread waits.
const BATCHES_IN_FLIGHT: usize = 4;

/// What crosses between the threads: rows in table order.
pub(super) trait Batch: Default + Send {
    fn len(&self) -> usize;
    fn clear(&mut self);
}

impl<T: Send> Batch for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn clear(&mut self) {
        Vec::clear(self);
    }
}

/// Two byte strings a row, one after another in one buffer: the variable-length fields of a
/// batch's rows without an allocation a row.
#[derive(Default)]
pub(super) struct PairedBytes {
    /// Each row's two lengths.
    lens: Vec<(usize, usize)>,
    bytes: Vec<u8>,
}

impl PairedBytes {
    pub(super) fn push(&mut self, first: &[u8], second: &[u8]) {
        self.lens.push((first.len(), second.len()));
        self.bytes.extend_from_slice(first);
        self.bytes.extend_from_slice(second);
    }

    /// The rows' pairs, in the order pushed.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = self.bytes.as_slice();
        self.lens.iter().map(move |&(first_len, second_len)| {
            let (first, tail) = rest.split_at(first_len);
            let (second, tail) = tail.split_at(second_len);
            rest = tail;
            (first, second)
        })
    }
}

impl Batch for PairedBytes {
    fn len(&self) -> usize {
        self.lens.len()
    }

    fn clear(&mut self) {
        self.lens.clear();
        self.bytes.clear();
    }
}

/// The reading thread's end of a pipeline: full batches go to the helper, emptied ones come
/// back to be filled again; or, in a pass too small for a helper, each batch is worked on here.
pub(super) struct BatchPipe<'w, B> {
    /// Rows a batch holds before it is handed over.
    batch_rows: usize,
    route: Route<'w, B>,
}

/// The work on one batch, as [`pipelined`] runs it.
type Work<'w, B> = dyn FnMut(&mut B) -> Result<()> + 'w;

enum Route<'w, B> {
    Helper {
        full: mpsc::SyncSender<B>,
        emptied: mpsc::Receiver<B>,
    },
    Here(RefCell<&'w mut Work<'w, B>>),
}

impl<B: Batch> BatchPipe<'_, B> {
    /// [`BatchPipe::hand_over`] once `batch` holds a batch's rows.
    pub(super) fn hand_over_when_full(&self, batch: &mut B) -> Result<()> {
        if batch.len() < self.batch_rows {
            return Ok(());
        }
        self.hand_over(batch)
    }

    /// Hands `batch` to the helper and leaves an empty one in its place. Fails once the helper
    /// has stopped, having found damage: reading on would be wasted.
    pub(super) fn hand_over(&self, batch: &mut B) -> Result<()> {
        if batch.len() == 0 {
            return Ok(());
        }
        match &self.route {
            Route::Here(work) => {
                // Never borrowed twice: `work` does not reach the pipe.
                let worked = (work.borrow_mut())(batch);
                batch.clear();
                worked
            }
            Route::Helper { full, emptied } => {
                let empty = emptied.try_recv().unwrap_or_default();
                // The helper stops only on an error of its own, which `pipelined` returns
                // instead of this one.
                full.send(std::mem::replace(batch, empty))
                    .map_err(|_| Error::Integrity {
                        table: "(a pass over a table)",
                        record: "(its helper stopped)".into(),
                    })
            }
        }
    }
}

/// Runs `read` here and `work` on a helper thread, which takes every batch `read` hands over
/// (of `batch_rows` rows, the last one short), in order. The helper's error comes first: it is
/// about a row handed over before anything `read` was looking at when it stopped. When
/// `expected_rows` is less than a batch, `work` runs here instead, on each batch as it is handed
/// over; a wrong expectation costs time, never a row.
pub(super) fn pipelined<B: Batch>(
    expected_rows: usize,
    batch_rows: usize,
    read: impl FnOnce(&BatchPipe<B>) -> Result<()>,
    mut work: impl FnMut(&mut B) -> Result<()> + Send,
) -> Result<()> {
    if expected_rows < batch_rows {
        let belt = BatchPipe {
            batch_rows,
            route: Route::Here(RefCell::new(&mut work)),
        };
        return read(&belt);
    }
    let (full, taken) = mpsc::sync_channel::<B>(BATCHES_IN_FLIGHT);
    let (give_back, emptied) = mpsc::sync_channel::<B>(BATCHES_IN_FLIGHT + 1);
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("facevault-open".into())
            .spawn_scoped(scope, move || {
                for mut batch in taken {
                    work(&mut batch)?;
                    batch.clear();
                    // The reader may have stopped taking batches back; it then makes new ones.
                    let _ = give_back.try_send(batch);
                }
                Ok(())
            })?;
        let belt = BatchPipe {
            batch_rows,
            route: Route::Helper { full, emptied },
        };
        let read = read(&belt);
        // Closing the channel lets the helper finish what it holds and return.
        drop(belt);
        let worked = helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        worked.and(read)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts rows `0..rows` through a pipeline expecting `expected` of them, in batches of 10;
    /// returns what the work saw, in order, and whether it ran on the calling thread throughout.
    fn run(expected: usize, rows: u32, fail_at: Option<u32>) -> (Result<()>, Vec<u32>, bool) {
        let caller = std::thread::current().id();
        let mut seen = Vec::new();
        let mut here = true;
        let outcome = pipelined(
            expected,
            10,
            |belt| {
                let mut batch = Vec::new();
                for row in 0..rows {
                    batch.push(row);
                    belt.hand_over_when_full(&mut batch)?;
                }
                belt.hand_over(&mut batch)
            },
            |batch: &mut Vec<u32>| {
                here &= std::thread::current().id() == caller;
                assert!(batch.len() <= 10);
                for &row in batch.iter() {
                    if Some(row) == fail_at {
                        return Err(Error::Integrity {
                            table: "test",
                            record: row.to_string(),
                        });
                    }
                    seen.push(row);
                }
                Ok(())
            },
        );
        (outcome, seen, here)
    }

    #[test]
    fn paired_bytes_give_back_each_rows_pair_as_pushed() {
        let rows: [(&[u8], &[u8]); 4] = [
            (b"subjects", b"mac one"),
            (b"", b"x"),
            (b"consents", b""),
            (b"ab", b"cd"),
        ];
        let mut pairs = PairedBytes::default();
        for (first, second) in rows {
            pairs.push(first, second);
        }
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs.iter().collect::<Vec<_>>(), rows);
        pairs.clear();
        assert_eq!((pairs.len(), pairs.iter().count()), (0, 0));
    }

    #[test]
    fn every_row_reaches_the_work_in_order_on_either_route() {
        let all: Vec<u32> = (0..95).collect();
        let (outcome, seen, here) = run(95, 95, None);
        assert!(outcome.is_ok());
        assert_eq!(seen, all);
        assert!(!here, "a pass of several batches has a helper");
        let (outcome, seen, here) = run(9, 95, None);
        assert!(outcome.is_ok());
        assert_eq!(seen, all, "a wrong expectation loses no row");
        assert!(
            here,
            "a pass expected to fill less than a batch runs on the calling thread"
        );
        let (outcome, seen, _) = run(0, 0, None);
        assert!(outcome.is_ok() && seen.is_empty());
    }

    #[test]
    fn the_works_error_stops_the_pass_on_either_route() {
        for expected in [0, 1000] {
            let (outcome, seen, _) = run(expected, 95, Some(42));
            assert!(
                matches!(&outcome, Err(Error::Integrity { record, .. }) if record == "42"),
                "{outcome:?}"
            );
            assert_eq!(seen, (0..42).collect::<Vec<u32>>());
        }
    }
}
