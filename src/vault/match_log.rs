//! The audit on the lookup path. A verify or identify is audited like every operation, but it must
//! not wait for the disk: its record goes into a queue that a writer thread group-commits, chained
//! like every other record, at most [`FLUSH_INTERVAL`] after it was queued or as soon as
//! [`FLUSH_BATCH`] records are waiting, and always on flush, close and drop. Data changes do not
//! use this queue: their records are written inside their own transaction. So a crash can lose at
//! most the match records of the last flush interval, never the record of a data change.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ring::hmac;

use crate::access::Action;
use crate::audit::{AuditRecord, Outcome};
use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{self, Store};
use crate::subject::SubjectId;

/// The longest a queued match record waits before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// The most match records written in one transaction; a full batch is written at once.
pub const FLUSH_BATCH: usize = 1000;

/// A lookup's audit record before formatting: turning it into text is the writer thread's work,
/// not the caller's.
pub(super) struct LookupEvent {
    pub at: UnixMillis,
    pub actor: Arc<str>,
    pub action: Action,
    pub subject: Option<SubjectId>,
    pub outcome: Outcome,
    pub detail: LookupDetail,
}

/// What a lookup found, or why it was refused.
pub(super) enum LookupDetail {
    Verified { matched: bool, score: f64 },
    Identified { k: usize, candidates: Vec<SubjectId> },
    Refused(String),
}

impl LookupEvent {
    fn into_record(self) -> AuditRecord {
        let detail = match self.detail {
            LookupDetail::Verified { matched, score } => format!("match={matched} score={score:.3}"),
            LookupDetail::Identified { k, candidates } => {
                let found: Vec<String> = candidates.iter().map(SubjectId::to_string).collect();
                format!("k={k} candidates=[{}]", found.join(","))
            }
            LookupDetail::Refused(detail) => detail,
        };
        super::record(
            self.at,
            &self.actor,
            self.action,
            self.subject,
            self.outcome,
            detail,
        )
    }
}

enum Message {
    Record(LookupEvent),
    Flush(mpsc::SyncSender<Result<()>>),
}

/// The store, shared between the vault and the match-log writer.
pub(super) type SharedStore = Arc<Mutex<Store>>;

/// Locks the store. A panic while it was held cannot have left a transaction open (transactions
/// roll back when dropped), so a poisoned lock is still a consistent store.
pub(super) fn lock(store: &SharedStore) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The queue and its writer thread.
pub(super) struct MatchLog {
    sender: Option<Sender<Message>>,
    worker: Option<JoinHandle<()>>,
}

impl MatchLog {
    pub(super) fn start(store: SharedStore, audit_key: hmac::Key) -> Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("facevault-match-log".into())
            .spawn(move || run(&store, &audit_key, &receiver))?;
        Ok(Self {
            sender: Some(sender),
            worker: Some(worker),
        })
    }

    /// Queues a record; returns at once.
    pub(super) fn push(&self, record: LookupEvent) {
        if let Some(sender) = &self.sender {
            // The writer only stops when this log is dropped, so the send cannot fail while
            // `self` exists; if it somehow did there would be no one left to tell.
            let _ = sender.send(Message::Record(record));
        }
    }

    /// Writes every queued record now and waits until they are committed.
    pub(super) fn flush(&self) -> Result<()> {
        let (reply, done) = mpsc::sync_channel(1);
        let sender = self.sender.as_ref().ok_or_else(writer_gone)?;
        sender.send(Message::Flush(reply)).map_err(|_| writer_gone())?;
        done.recv().map_err(|_| writer_gone())?
    }
}

impl Drop for MatchLog {
    fn drop(&mut self) {
        // Closing the channel makes the writer write what is left and stop.
        drop(self.sender.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn writer_gone() -> Error {
    Error::Io(std::io::Error::other("the match-log writer thread has stopped"))
}

fn run(store: &SharedStore, audit_key: &hmac::Key, receiver: &Receiver<Message>) {
    let mut batch: Vec<AuditRecord> = Vec::new();
    let mut deadline = Instant::now();
    loop {
        let message = if batch.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        };
        match message {
            Ok(Message::Record(record)) => {
                if batch.is_empty() {
                    deadline = Instant::now() + FLUSH_INTERVAL;
                }
                batch.push(record.into_record());
                if batch.len() >= FLUSH_BATCH {
                    let _ = write(store, audit_key, &mut batch);
                }
            }
            Ok(Message::Flush(reply)) => {
                let _ = reply.send(write(store, audit_key, &mut batch));
            }
            Err(RecvTimeoutError::Timeout) => {
                // A failed write (a full disk, say) keeps the batch and tries again one interval
                // later, rather than spinning on the store lock.
                if write(store, audit_key, &mut batch).is_err() {
                    deadline = Instant::now() + FLUSH_INTERVAL;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = write(store, audit_key, &mut batch);
                return;
            }
        }
    }
}

/// Appends the batch to the chain in one transaction; the batch is emptied only once committed.
fn write(store: &SharedStore, audit_key: &hmac::Key, batch: &mut Vec<AuditRecord>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut store = lock(store);
    let tx = store.transaction()?;
    for record in batch.iter() {
        store::append_audit(&tx, audit_key, record.clone())?;
    }
    tx.commit()?;
    batch.clear();
    Ok(())
}
