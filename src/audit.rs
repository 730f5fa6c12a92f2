//! The audit log: a hash-chained, MACed record of every attempt, allowed or refused.
//!
//! Each record's MAC covers its own fields and the previous record's MAC, so editing, removing or
//! reordering any record breaks the chain at that point. The vault also keeps the chain's head
//! (last sequence number and MAC) in its metadata, so that cutting records off the end is caught
//! too. The MAC key is derived from the master key; making it forward-secure is future work
//! (see SECURITY.md).

use ring::hmac;
use serde::Serialize;

use crate::clock::UnixMillis;
use crate::error::Error;

/// Length of a record's MAC.
pub(crate) const MAC_LEN: usize = 32;

/// The MAC the first record chains from.
pub(crate) const GENESIS_MAC: [u8; MAC_LEN] = [0; MAC_LEN];

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was carried out.
    Allowed,
    /// It was refused: authentication, access control, bad input or the law.
    Denied,
    /// It was allowed but could not be completed (storage failure, damaged data).
    Failed,
}

impl Outcome {
    /// The outcome's name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "allowed" => Some(Outcome::Allowed),
            "denied" => Some(Outcome::Denied),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// One audit record, as stored and as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at: UnixMillis,
    /// The principal who asked, or `-` when none was authenticated.
    pub actor: String,
    /// The operation.
    pub action: String,
    /// The subject concerned, if any.
    pub subject: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// A short description: the error code for refusals, counts or matched subjects otherwise.
    /// Never a template value, key or password.
    pub detail: String,
}

/// A record and its stored MAC, as read back for verification.
pub(crate) struct StoredRecord {
    pub record: AuditRecord,
    pub mac: Vec<u8>,
}

/// The MAC of `record` chained to the previous record's MAC. Every field is length-prefixed so
/// that no two different records encode to the same bytes.
pub(crate) fn chain_mac(key: &hmac::Key, previous_mac: &[u8], record: &AuditRecord) -> [u8; MAC_LEN] {
    let mut context = hmac::Context::with_key(key);
    context.update(b"facevault v1 audit record");
    context.update(previous_mac);
    context.update(&record.seq.to_le_bytes());
    context.update(&record.at.to_le_bytes());
    for field in [
        Some(record.actor.as_str()),
        Some(record.action.as_str()),
        record.subject.as_deref(),
        Some(record.outcome.as_str()),
        Some(record.detail.as_str()),
    ] {
        match field {
            Some(text) => {
                context.update(&[1]);
                context.update(&(text.len() as u64).to_le_bytes());
                context.update(text.as_bytes());
            }
            None => context.update(&[0]),
        }
    }
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(context.sign().as_ref());
    mac
}

/// The chain's head as recorded in the vault's metadata, or a point of the chain to start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub seq: u64,
    pub mac: Vec<u8>,
}

impl ChainHead {
    /// Before the first record.
    pub(crate) fn genesis() -> Self {
        Self {
            seq: 0,
            mac: GENESIS_MAC.to_vec(),
        }
    }
}

/// Walks the chain in order from `start` (the genesis, or a point already checked: `records` are
/// those after `start.seq`, the first chained to `start.mac`) and returns the sequence number of
/// the last record verified, or the first at which it breaks: an edited record fails its own MAC,
/// a removed one leaves a gap, a reordered one fails the chain, and a cut-off tail falls short of
/// the recorded head.
pub(crate) fn verify_chain_from(
    key: &hmac::Key,
    start: &ChainHead,
    records: impl IntoIterator<Item = Result<StoredRecord, Error>>,
    head: &ChainHead,
) -> Result<u64, Error> {
    let mut previous_mac = start.mac.clone();
    let mut expected_seq = start.seq + 1;
    for stored in records {
        let stored = stored?;
        if stored.record.seq != expected_seq {
            return Err(Error::AuditTampered { seq: expected_seq });
        }
        let mac = chain_mac(key, &previous_mac, &stored.record);
        // The MAC is not secret, but comparing without an early exit costs nothing and removes the question.
        let tag_ok = macs_equal(&mac, &stored.mac);
        if !tag_ok {
            return Err(Error::AuditTampered { seq: expected_seq });
        }
        previous_mac = stored.mac;
        expected_seq += 1;
    }
    let verified = expected_seq - 1;
    if verified != head.seq || (verified > start.seq && !macs_equal(&previous_mac, &head.mac)) {
        // Records past `verified` were cut off (or the head itself was edited).
        return Err(Error::AuditTampered { seq: verified + 1 });
    }
    Ok(verified)
}

fn macs_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[5; 32])
    }

    fn chain(n: u64) -> (Vec<StoredRecord>, ChainHead) {
        let key = key();
        let mut previous = GENESIS_MAC.to_vec();
        let mut out = Vec::new();
        for seq in 1..=n {
            let record = AuditRecord {
                seq,
                at: 1_000 + seq as i64,
                actor: format!("user{}", seq % 3),
                action: "verify".into(),
                subject: (seq % 2 == 0).then(|| format!("{seq:032x}")),
                outcome: if seq % 5 == 0 {
                    Outcome::Denied
                } else {
                    Outcome::Allowed
                },
                detail: format!("detail {seq}"),
            };
            let mac = chain_mac(&key, &previous, &record).to_vec();
            previous = mac.clone();
            out.push(StoredRecord { record, mac });
        }
        (
            out,
            ChainHead {
                seq: n,
                mac: previous,
            },
        )
    }

    fn verify(records: Vec<StoredRecord>, head: &ChainHead) -> Result<u64, Error> {
        verify_chain_from(&key(), &ChainHead::genesis(), records.into_iter().map(Ok), head)
    }

    #[test]
    fn intact_chain_verifies() {
        let (records, head) = chain(10);
        assert!(matches!(verify(records, &head), Ok(10)));
        let (records, head) = chain(0);
        assert!(matches!(verify(records, &head), Ok(0)));
    }

    #[test]
    fn cut_tail_is_caught() {
        let (mut records, head) = chain(10);
        records.pop();
        assert!(matches!(
            verify(records, &head),
            Err(Error::AuditTampered { seq: 10 })
        ));
    }

    #[test]
    fn reorder_is_caught_at_first_moved_record() {
        let (mut records, head) = chain(10);
        records.swap(3, 6);
        // Seq numbers travel with the rows, so the gap shows at the first moved position.
        assert!(matches!(
            verify(records, &head),
            Err(Error::AuditTampered { seq: 4 })
        ));
    }

    proptest! {
        #[test]
        fn any_single_edit_is_caught_at_its_record(at in 0usize..20, field in 0usize..6) {
            let (mut records, head) = chain(20);
            let record = &mut records[at].record;
            match field {
                0 => record.at += 1,
                1 => record.actor.push('x'),
                2 => record.action = "identify".into(),
                3 => record.subject = if record.subject.is_some() { None } else { Some("ab".into()) },
                4 => record.outcome = if record.outcome == Outcome::Allowed { Outcome::Failed } else { Outcome::Allowed },
                _ => record.detail.push('!'),
            }
            let expected = at as u64 + 1;
            let found = match verify(records, &head) {
                Err(Error::AuditTampered { seq }) => Some(seq),
                _ => None,
            };
            prop_assert_eq!(found, Some(expected));
        }

        #[test]
        fn any_single_removal_is_caught(at in 0usize..20) {
            let (mut records, head) = chain(20);
            records.remove(at);
            let expected = at as u64 + 1;
            let found = match verify(records, &head) {
                Err(Error::AuditTampered { seq }) => Some(seq),
                _ => None,
            };
            prop_assert_eq!(found, Some(expected));
        }
    }
}
