//! Two threads over one pass of a table: this one steps SQLite and hands rows over in batches,
//! a helper does the work on them (cryptography, mostly), in the same order. Opening a 1M vault
//! runs three such passes; on two cores each takes about as long as the slower of its halves
//! instead of their sum.

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

/// The reading thread's end of a pipeline: full batches go to the helper, emptied ones come
/// back to be filled again.
pub(super) struct BatchPipe<B> {
    full: mpsc::SyncSender<B>,
    emptied: mpsc::Receiver<B>,
}

impl<B: Batch> BatchPipe<B> {
    /// [`BatchPipe::hand_over`] once `batch` holds `full` rows.
    pub(super) fn hand_over_when_full(&self, batch: &mut B, full: usize) -> Result<()> {
        if batch.len() < full {
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
        let empty = self.emptied.try_recv().unwrap_or_default();
        // The helper stops only on an error of its own, which `pipelined` returns instead of
        // this one.
        self.full
            .send(std::mem::replace(batch, empty))
            .map_err(|_| Error::Integrity {
                table: "(a pass over a table)",
                record: "(its helper stopped)".into(),
            })
    }
}

/// Runs `read` here and `work` on a helper thread, which takes every batch `read` hands over,
/// in order. The helper's error comes first: it is about a row handed over before anything
/// `read` was looking at when it stopped.
pub(super) fn pipelined<B: Batch>(
    read: impl FnOnce(&BatchPipe<B>) -> Result<()>,
    mut work: impl FnMut(&mut B) -> Result<()> + Send,
) -> Result<()> {
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
        let belt = BatchPipe { full, emptied };
        let read = read(&belt);
        // Closing the channel lets the helper finish what it holds and return.
        drop(belt);
        let worked = helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        worked.and(read)
    })
}
