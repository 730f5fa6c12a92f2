//! The audit on the lookup path. A verify or identify is audited like every operation, but it must
//! not wait for the disk: its record goes into a queue that a writer thread group-commits, chained
//! like every other record, at most [`FLUSH_INTERVAL`] after it was queued or as soon as
//! [`FLUSH_BATCH`] records are waiting, and always on flush, close and drop. Data changes do not
//! use this queue: their records are written inside their own transaction. So a crash can lose at
//! most the match records of the last flush interval, never the record of a data change.
//!
//! A write that fails (the database is locked by another process past the busy timeout, the disk
//! is full) keeps its records and is tried again. At close the writer makes
//! [`CLOSE_ATTEMPTS`] attempts; records still unwritten after them are counted, and close reports
//! them as [`Error::AuditNotWritten`]: a lost record is never silent.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ledger::Ledger;
use super::throttle::{self, ThrottleChange, ThrottleKey};
use crate::access::Action;
use crate::audit::{AuditRecord, Outcome};
use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::subject::SubjectId;

/// The longest a queued match record waits before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// The most match records written in one transaction; a full batch is written at once.
pub const FLUSH_BATCH: usize = 1000;
/// Attempts at close to write what is left, each waiting up to the store's busy timeout.
pub const CLOSE_ATTEMPTS: usize = 3;

/// A lookup's audit record before formatting: turning it into text is the writer thread's work,
/// not the caller's.
pub(super) struct LookupEvent {
    pub at: UnixMillis,
    pub actor: ActorName,
    pub action: Action,
    pub subject: Option<SubjectId>,
    pub outcome: Outcome,
    pub detail: LookupDetail,
}

/// The principal's name, copied into the event. Sharing the session's `Arc<str>` instead would
/// bounce its reference count between the caller's core and the writer's on every lookup.
pub(super) enum ActorName {
    Short { len: u8, bytes: [u8; SHORT_NAME] },
    Long(Box<str>),
}

/// Every principal name fits (`access` allows 64 bytes); `Long` is there so nothing else can fail.
const SHORT_NAME: usize = 64;

impl ActorName {
    pub(super) fn new(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= SHORT_NAME => {
                let mut bytes = [0u8; SHORT_NAME];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                ActorName::Short { len, bytes }
            }
            _ => ActorName::Long(name.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // The bytes are a whole `str`, so they are UTF-8.
            ActorName::Short { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("-")
            }
            ActorName::Long(name) => name,
        }
    }
}

/// What a lookup found, or why it was refused, or a throttle it moved.
pub(super) enum LookupDetail {
    Verified {
        matched: bool,
        score: f64,
    },
    Identified {
        k: usize,
        candidates: Vec<SubjectId>,
    },
    Refused(String),
    /// A throttle's new state, to store; with an alert, also an `alert` record.
    Throttle(ThrottleChange),
}

/// What the writer does for one queued event: a record to append, a throttle row to store.
struct Pending {
    record: Option<AuditRecord>,
    throttle: Option<ThrottleChange>,
}

impl LookupEvent {
    fn into_pending(self) -> Pending {
        let detail = match self.detail {
            LookupDetail::Verified { matched, score } => format!("match={matched} score={score}"),
            LookupDetail::Identified { k, candidates } => identified_detail(k, &candidates),
            LookupDetail::Refused(detail) => detail,
            LookupDetail::Throttle(change) => {
                let subject = match &change.key {
                    ThrottleKey::Subject(subject) => Some(*subject),
                    ThrottleKey::Principal(_) => None,
                };
                let record = change.alert.clone().map(|alert| {
                    super::record(
                        self.at,
                        self.actor.as_str(),
                        Action::Alert,
                        subject,
                        Outcome::Denied,
                        alert,
                    )
                });
                return Pending {
                    record,
                    throttle: Some(change),
                };
            }
        };
        Pending {
            record: Some(super::record(
                self.at,
                self.actor.as_str(),
                self.action,
                self.subject,
                self.outcome,
                detail,
            )),
            throttle: None,
        }
    }
}

/// The candidates an identify record names one by one; the rest are a count and a digest, so a
/// record stays a few hundred bytes at any k.
pub const LISTED_CANDIDATES: usize = 10;

/// `k=K candidates=[id,...]`, and past [`LISTED_CANDIDATES`] ` more=N more_sha256=HEX`: the
/// SHA-256 of the remaining IDs' 16 bytes each, in rank order, which an auditor holding the
/// answer can recompute.
fn identified_detail(k: usize, candidates: &[SubjectId]) -> String {
    let listed = &candidates[..candidates.len().min(LISTED_CANDIDATES)];
    let names: Vec<String> = listed.iter().map(SubjectId::to_string).collect();
    let mut detail = format!("k={k} candidates=[{}]", names.join(","));
    let rest = &candidates[listed.len()..];
    if !rest.is_empty() {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for subject in rest {
            digest.update(subject.as_bytes());
        }
        let hex: String = digest
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        detail.push_str(&format!(" more={} more_sha256={hex}", rest.len()));
    }
    detail
}

/// What the vault hands the writer: the records waiting, and who is waiting for them.
#[derive(Default)]
struct Queue {
    events: Vec<LookupEvent>,
    /// When the oldest waiting record was queued: the writer writes by `oldest + FLUSH_INTERVAL`.
    oldest: Option<Instant>,
    /// Callers of `flush`, each told when everything queued before it is committed.
    flushes: Vec<Arc<FlushReply>>,
    closed: bool,
}

/// The queue and the condition the writer sleeps on. A lookup wakes the writer only when it is
/// the first record of a batch or fills one, so the lookup path makes no system call otherwise.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while the queue is held, and a Vec of events is consistent in any case.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The writer's answer to one `flush`: a slot and a condition, rather than a channel, whose
/// receiving end would make std keep a handle to the calling thread (which C firmware owns).
#[derive(Default)]
struct FlushReply {
    answer: Mutex<Option<Result<()>>>,
    ready: Condvar,
}

impl FlushReply {
    fn send(&self, answer: Result<()>) {
        *self
            .answer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(answer);
        self.ready.notify_one();
    }

    /// Waits for the answer; the writer answers every flush it takes, or drops it only by
    /// stopping, which `closed` reports before a flush is queued.
    fn wait(&self) -> Result<()> {
        let mut answer = self
            .answer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            if let Some(answer) = answer.take() {
                return answer;
            }
            answer = self
                .ready
                .wait(answer)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// The ledger, shared between the vault and the match-log writer.
pub(super) type SharedLedger = Arc<Mutex<Ledger>>;

/// Locks the ledger. A panic while it was held cannot have left a transaction open (transactions
/// roll back when dropped), so a poisoned lock is still a consistent store.
pub(super) fn lock(ledger: &SharedLedger) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The queue and its writer thread.
pub(super) struct MatchLog {
    shared: Arc<Shared>,
    /// The writer returns, when it stops, the error that lost records, if any did.
    worker: Option<JoinHandle<Result<()>>>,
}

impl MatchLog {
    pub(super) fn start(ledger: SharedLedger) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let for_worker = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("facevault-match-log".into())
            .spawn(move || run(&ledger, &for_worker))?;
        Ok(Self {
            shared,
            worker: Some(worker),
        })
    }

    /// Queues a throttle's change (and its alert); returns at once.
    pub(super) fn push_throttle(&self, at: UnixMillis, actor: &str, change: ThrottleChange) {
        self.push(LookupEvent {
            at,
            actor: ActorName::new(actor),
            action: Action::Alert,
            subject: None,
            outcome: Outcome::Denied,
            detail: LookupDetail::Throttle(change),
        });
    }

    /// Queues a record; returns at once.
    pub(super) fn push(&self, record: LookupEvent) {
        let mut queue = self.shared.lock();
        queue.events.push(record);
        let wake = if queue.events.len() == 1 {
            queue.oldest = Some(Instant::now());
            true
        } else {
            queue.events.len() == FLUSH_BATCH
        };
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Writes what is queued and stops the writer; fails with [`Error::AuditNotWritten`] if any
    /// record could not be written.
    pub(super) fn close(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        match self.worker.take() {
            Some(worker) => worker.join().unwrap_or_else(|_| Err(writer_gone())),
            None => Ok(()),
        }
    }

    /// Writes every queued record now and waits until they are committed.
    pub(super) fn flush(&self) -> Result<()> {
        let reply = Arc::new(FlushReply::default());
        let mut queue = self.shared.lock();
        if queue.closed {
            return Err(writer_gone());
        }
        queue.flushes.push(Arc::clone(&reply));
        drop(queue);
        self.shared.wake.notify_one();
        reply.wait()
    }
}

impl Drop for MatchLog {
    fn drop(&mut self) {
        // The writer writes what is left and stops; a caller who wants to know whether that
        // worked calls `close`.
        let _ = self.stop();
    }
}

fn writer_gone() -> Error {
    Error::AuditNotWritten {
        lost: 0,
        cause: "the match-log writer thread has stopped".into(),
    }
}

/// Marks the queue closed and answers any flush still waiting when the writer stops, however it
/// stops: a flush never waits for a writer that is gone.
struct AnswerWhenGone<'a>(&'a Shared);

impl Drop for AnswerWhenGone<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.closed = true;
        for reply in queue.flushes.drain(..) {
            reply.send(Err(writer_gone()));
        }
    }
}

fn run(ledger: &SharedLedger, shared: &Shared) -> Result<()> {
    let _answer_when_gone = AnswerWhenGone(shared);
    // Records taken from the queue but not yet committed: a failed write (a full disk, say) keeps
    // them and tries again one interval later, rather than spinning on the store lock.
    let mut batch: Vec<Pending> = Vec::new();
    let mut retry_at: Option<Instant> = None;
    let mut spare: Vec<LookupEvent> = Vec::with_capacity(FLUSH_BATCH);
    let mut queue = shared.lock();
    queue.events.reserve(FLUSH_BATCH);
    loop {
        let now = Instant::now();
        let due = [queue.oldest.map(|oldest| oldest + FLUSH_INTERVAL), retry_at]
            .into_iter()
            .flatten()
            .min();
        // After a failed write only a flush, a close or the retry time brings the next attempt.
        let batch_full = queue.events.len() >= FLUSH_BATCH && retry_at.is_none();
        let write_now =
            queue.closed || !queue.flushes.is_empty() || batch_full || due.is_some_and(|due| due <= now);
        if !write_now {
            queue = match due {
                Some(due) => {
                    shared
                        .wake
                        .wait_timeout(queue, due - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
                None => shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
            continue;
        }
        let mut events = std::mem::replace(&mut queue.events, std::mem::take(&mut spare));
        let flushes = std::mem::take(&mut queue.flushes);
        let closed = queue.closed;
        queue.oldest = None;
        drop(queue);
        // Formatting is the writer's work, off the lookup path.
        batch.extend(events.drain(..).map(LookupEvent::into_pending));
        // The emptied queue goes back for the next batch, so lookups never grow a fresh one.
        spare = events;
        let mut written = write(ledger, &mut batch);
        if closed {
            for _ in 1..CLOSE_ATTEMPTS {
                if written.is_ok() {
                    break;
                }
                std::thread::sleep(FLUSH_INTERVAL);
                written = write(ledger, &mut batch);
            }
        }
        let failure = written.as_ref().err().map(ToString::to_string);
        retry_at = failure.is_some().then(|| Instant::now() + FLUSH_INTERVAL);
        let mut written = Some(written);
        for reply in flushes {
            // The first caller gets the error itself, any other one its description.
            let answer = match (written.take(), &failure) {
                (Some(result), _) => result,
                (None, Some(cause)) => Err(Error::Io(std::io::Error::other(format!(
                    "the match-log records could not be written: {cause}"
                )))),
                (None, None) => Ok(()),
            };
            reply.send(answer);
        }
        if closed {
            return match failure {
                Some(cause) => Err(Error::AuditNotWritten {
                    lost: batch.iter().filter(|pending| pending.record.is_some()).count(),
                    cause,
                }),
                None => Ok(()),
            };
        }
        queue = shared.lock();
    }
}

/// Appends the batch to the chain in one transaction; the batch is emptied only once committed.
fn write(ledger: &SharedLedger, batch: &mut Vec<Pending>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut ledger = lock(ledger);
    ledger.write(|writing| {
        for pending in batch.iter() {
            if let Some(change) = &pending.throttle {
                throttle::store_change(writing.tx, writing.keys, change)?;
            }
            if let Some(record) = &pending.record {
                writing.audit(record.clone())?;
            }
        }
        Ok(())
    })?;
    // An epoch that closed inside this batch leaves its old key in the WAL until this runs; if
    // it cannot run now, it stays due for the next write and for close.
    let _ = ledger.truncate_wal_if_due();
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Regression (outside test, defect 4): an identify record listed every candidate, 1,000 IDs
    /// at k=1000. Ten are listed; the rest are a count and a digest an auditor can recompute.
    #[test]
    fn an_identify_record_names_ten_candidates_and_digests_the_rest() {
        let ids: Vec<SubjectId> = (0..1000u32)
            .map(|n| {
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&n.to_le_bytes());
                SubjectId::from_bytes(&bytes).unwrap()
            })
            .collect();
        let detail = identified_detail(1000, &ids);
        assert!(detail.len() < 500, "{detail}");
        assert!(
            detail.starts_with(&format!("k=1000 candidates=[{},", ids[0])),
            "{detail}"
        );
        assert!(
            detail.contains(&format!("{}] more=990 more_sha256=", ids[9])),
            "{detail}"
        );
        // Recomputed another way: one digest of the rest's bytes laid end to end.
        let rest: Vec<u8> = ids[10..].iter().flat_map(|id| *id.as_bytes()).collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, &rest);
        let hex = digest.as_ref().iter().fold(String::new(), |mut hex, byte| {
            hex.push_str(&format!("{byte:02x}"));
            hex
        });
        assert!(detail.ends_with(&hex));
        assert_eq!(identified_detail(3, &ids[..3]).matches(',').count(), 2);
        assert!(!identified_detail(10, &ids[..10]).contains("more"));
    }
}
