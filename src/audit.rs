//! The audit log: a hash-chained, MACed record of every attempt, allowed or refused, sealed so
//! that whoever takes the device today cannot rewrite yesterday (forward-secure sealing, after
//! systemd's Forward Secure Sealing).
//!
//! - Each record's `hash` is SHA-256 over the previous record's hash and the record's own fields:
//!   the chain. Anyone can recompute it, so editing, inserting, dropping or reordering a record
//!   breaks it from that record on, unless every later hash is recomputed too.
//! - Each record's `mac` is an HMAC of its hash under the key of its epoch. The log is cut into
//!   epochs (a number of records, or of minutes); the key of epoch `e + 1` is a one-way step from
//!   the key of epoch `e`, after which the vault erases the older key. The first key, of epoch 0,
//!   leaves the device once, as the auditor's verification key; from it the auditor derives every
//!   epoch's key and checks every record against its own epoch's key.
//! - The last record of an epoch is an `audit_epoch_close` record sealed under that epoch's key;
//!   the next record must be of the next epoch. So records cannot be moved into a later epoch
//!   and re-sealed with a later key (CVE-2023-31439 was a verifier that allowed this): the
//!   close record that would have to precede them needs the earlier key.
//!
//! The device itself holds only the current epoch's key: it checks the chain over every record
//! and the MACs of the current epoch.

use ring::{digest, hmac};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::clock::UnixMillis;
use crate::error::Error;

/// Length of a record's hash and MAC.
pub(crate) const HASH_LEN: usize = 32;

/// The hash the first record chains from.
pub(crate) const GENESIS_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

/// The action of the record that ends an epoch.
pub const EPOCH_CLOSE_ACTION: &str = "audit_epoch_close";

const LINK_LABEL: &[u8] = b"facevault v2 audit link";
const MAC_LABEL: &[u8] = b"facevault v2 audit record";
const STEP_LABEL: &[u8] = b"facevault v2 audit epoch step";

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
    /// The sealing epoch: whose key the record's MAC is made with.
    pub epoch: u64,
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

impl AuditRecord {
    fn closes_epoch(&self) -> bool {
        self.action == EPOCH_CLOSE_ACTION
    }
}

/// A record with its hash and MAC, as stored, exported and read back for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealedRecord {
    pub record: AuditRecord,
    pub hash: Vec<u8>,
    pub mac: Vec<u8>,
}

/// One epoch's MAC key. Never printed; zeroed when dropped.
pub(crate) struct EpochKey {
    epoch: u64,
    bytes: Zeroizing<[u8; 32]>,
}

impl EpochKey {
    pub(crate) fn new(epoch: u64, bytes: Zeroizing<[u8; 32]>) -> Self {
        Self { epoch, bytes }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The next epoch's key: `HMAC(key, label ‖ u64le(epoch + 1))`, a one-way step. The caller
    /// drops (and so zeroes) this one once the step is committed.
    pub(crate) fn next(&self) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_slice());
        let mut context = hmac::Context::with_key(&key);
        context.update(STEP_LABEL);
        context.update(&(self.epoch + 1).to_le_bytes());
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(context.sign().as_ref());
        Self {
            epoch: self.epoch + 1,
            bytes,
        }
    }

    fn mac(&self, hash: &[u8]) -> [u8; HASH_LEN] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_slice());
        let mut context = hmac::Context::with_key(&key);
        context.update(MAC_LABEL);
        context.update(hash);
        let mut mac = [0u8; HASH_LEN];
        mac.copy_from_slice(context.sign().as_ref());
        mac
    }

    fn mac_matches(&self, hash: &[u8], mac: &[u8]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_slice());
        hmac::verify(&key, &[MAC_LABEL, hash].concat(), mac).is_ok()
    }
}

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochKey {{ epoch: {}, .. }}", self.epoch)
    }
}

/// Feeds `record`'s text fields to `update`, each present one as `0x01 ‖ u64le(len) ‖ bytes` and
/// an absent subject as `0x00`, in the order of formats 1 and 2 alike.
fn encode_fields(record: &AuditRecord, mut update: impl FnMut(&[u8])) {
    for field in [
        Some(record.actor.as_str()),
        Some(record.action.as_str()),
        record.subject.as_deref(),
        Some(record.outcome.as_str()),
        Some(record.detail.as_str()),
    ] {
        match field {
            Some(text) => {
                update(&[1]);
                update(&(text.len() as u64).to_le_bytes());
                update(text.as_bytes());
            }
            None => update(&[0]),
        }
    }
}

/// The chain hash of `record` after `previous`. Every field is length-prefixed so that no two
/// different records encode to the same bytes.
pub(crate) fn link(previous: &[u8], record: &AuditRecord) -> [u8; HASH_LEN] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(LINK_LABEL);
    context.update(previous);
    context.update(&record.seq.to_le_bytes());
    context.update(&record.at.to_le_bytes());
    context.update(&record.epoch.to_le_bytes());
    encode_fields(record, |bytes| context.update(bytes));
    let mut hash = [0u8; HASH_LEN];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// A point of the chain: a record (or the genesis, before record 1), what the next record must
/// chain from and which epoch it must be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainPoint {
    pub seq: u64,
    pub hash: [u8; HASH_LEN],
    /// The epoch of the record at this point (0 at the genesis).
    pub epoch: u64,
    /// Whether that record closed its epoch.
    pub closes_epoch: bool,
}

impl ChainPoint {
    /// Before the first record.
    pub(crate) fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH,
            epoch: 0,
            closes_epoch: false,
        }
    }

    /// The point at a record.
    pub(crate) fn at(record: &AuditRecord, hash: [u8; HASH_LEN]) -> Self {
        Self {
            seq: record.seq,
            hash,
            epoch: record.epoch,
            closes_epoch: record.closes_epoch(),
        }
    }

    /// The epoch the next record must be in.
    fn next_epoch(&self) -> u64 {
        self.epoch + u64::from(self.closes_epoch)
    }
}

/// When the sealer closes an epoch: after this many records, or once this much time has passed
/// since the epoch's first record, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochPolicy {
    /// Records per epoch, at most (the close record included).
    pub max_records: u64,
    /// Milliseconds an epoch lasts, at most.
    pub max_millis: i64,
}

impl Default for EpochPolicy {
    /// 10,000 records or one day: a device taken keeps the power to rewrite at most a day of its
    /// own log, and a busy turnstile closes an epoch every hour or so.
    fn default() -> Self {
        Self {
            max_records: 10_000,
            max_millis: 24 * 3600 * 1000,
        }
    }
}

/// The sealer's state as stored between transactions.
pub(crate) struct SealerState {
    pub key: EpochKey,
    pub head: ChainPoint,
    pub records_in_epoch: u64,
    pub epoch_started_at: UnixMillis,
    pub policy: EpochPolicy,
}

/// The one owner of the audit key while a transaction writes: it numbers each record, puts it in
/// its epoch (closing the epoch first when it is due), chains and MACs it. The store only inserts
/// what it returns; the caller saves [`Sealer::into_state`] in the same transaction.
pub(crate) struct Sealer {
    state: SealerState,
}

impl Sealer {
    pub(crate) fn new(state: SealerState) -> Self {
        Self { state }
    }

    /// Seals `record` (its `seq` and `epoch` are assigned here). When the epoch is due to close,
    /// a close record is sealed first, and both are returned in order.
    pub(crate) fn seal(&mut self, record: AuditRecord, out: &mut Vec<SealedRecord>) {
        let state = &self.state;
        let due = state.records_in_epoch + 1 >= state.policy.max_records
            || record.at.saturating_sub(state.epoch_started_at) >= state.policy.max_millis;
        if due && state.records_in_epoch > 0 {
            self.close_epoch(record.at, out);
        }
        out.push(self.push(record));
    }

    /// Closes the current epoch now: seals its close record under its key, then steps the key.
    pub(crate) fn close_epoch(&mut self, at: UnixMillis, out: &mut Vec<SealedRecord>) {
        let records = self.state.records_in_epoch + 1;
        let close = AuditRecord {
            seq: 0,
            at,
            epoch: 0,
            actor: "-".into(),
            action: EPOCH_CLOSE_ACTION.into(),
            subject: None,
            outcome: Outcome::Allowed,
            detail: format!(
                "epoch={} records={records} next={}",
                self.state.key.epoch(),
                self.state.key.epoch() + 1
            ),
        };
        out.push(self.push(close));
        self.state.key = self.state.key.next();
        self.state.records_in_epoch = 0;
        self.state.epoch_started_at = at;
    }

    fn push(&mut self, mut record: AuditRecord) -> SealedRecord {
        let state = &mut self.state;
        record.seq = state.head.seq + 1;
        record.epoch = state.key.epoch();
        if state.records_in_epoch == 0 {
            state.epoch_started_at = record.at;
        }
        let hash = link(&state.head.hash, &record);
        let mac = state.key.mac(&hash);
        state.head = ChainPoint::at(&record, hash);
        state.records_in_epoch += 1;
        SealedRecord {
            record,
            hash: hash.to_vec(),
            mac: mac.to_vec(),
        }
    }

    pub(crate) fn into_state(self) -> SealerState {
        self.state
    }
}

/// Whose keys check the MACs.
pub(crate) enum MacCheck<'a> {
    /// The auditor's: the verification key (epoch 0), stepped forward to each record's epoch.
    /// Every MAC is checked.
    Auditor(EpochKey),
    /// The device's: only the current epoch's key. MACs of earlier epochs cannot be checked
    /// (their keys are erased); a record of a later epoch than the key cannot exist.
    Device(&'a EpochKey),
}

/// Walks the chain from `start` (the genesis, or a point already checked: `records` are those
/// after it) and returns the point reached, or the first record at which it breaks: an edited,
/// inserted, dropped or reordered record fails its hash or leaves a gap; a record in the wrong
/// epoch, or with a MAC not of its own epoch's key, fails; and the end must be `head`, the head
/// the vault (or an earlier export) recorded, when there is one.
pub(crate) fn verify_chain(
    check: MacCheck<'_>,
    start: &ChainPoint,
    records: impl IntoIterator<Item = Result<SealedRecord, Error>>,
    head: Option<(u64, &[u8])>,
) -> Result<ChainPoint, Error> {
    let mut point = start.clone();
    let (mut auditor_key, device_key) = match check {
        MacCheck::Auditor(key) => (Some(key), None),
        MacCheck::Device(key) => (None, Some(key)),
    };
    for sealed in records {
        let sealed = sealed?;
        let record = &sealed.record;
        let seq = point.seq + 1;
        let tampered = Error::AuditTampered { seq };
        if record.seq != seq || record.epoch != point.next_epoch() {
            return Err(tampered);
        }
        let hash = link(&point.hash, record);
        if !macs_equal(&hash, &sealed.hash) {
            return Err(tampered);
        }
        let mac_ok = match (&mut auditor_key, device_key) {
            (Some(key), _) => {
                while key.epoch() < record.epoch {
                    *key = key.next();
                }
                key.epoch() == record.epoch && key.mac_matches(&hash, &sealed.mac)
            }
            (None, Some(key)) => match record.epoch.cmp(&key.epoch()) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Equal => key.mac_matches(&hash, &sealed.mac),
                std::cmp::Ordering::Greater => false,
            },
            (None, None) => false,
        };
        if !mac_ok {
            return Err(tampered);
        }
        point = ChainPoint::at(record, hash);
    }
    if let Some((head_seq, head_hash)) = head {
        if point.seq != head_seq || !macs_equal(&point.hash, head_hash) {
            // Records past the last one verified were cut off (or the head itself was edited).
            return Err(Error::AuditTampered { seq: point.seq + 1 });
        }
    }
    if let Some(key) = device_key {
        // The chain must end in the epoch whose key the device holds: a cut across an epoch's
        // end, or a key put back from an older epoch, shows here.
        if point.next_epoch() != key.epoch() {
            return Err(Error::AuditTampered { seq: point.seq + 1 });
        }
    }
    Ok(point)
}

fn macs_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Format version 1's record MAC: HMAC over the previous MAC and the record (without an epoch).
/// Read only to check a version-1 chain before it is migrated.
pub(crate) fn legacy_chain_mac(key: &hmac::Key, previous_mac: &[u8], record: &AuditRecord) -> [u8; HASH_LEN] {
    let mut context = hmac::Context::with_key(key);
    context.update(b"facevault v1 audit record");
    context.update(previous_mac);
    context.update(&record.seq.to_le_bytes());
    context.update(&record.at.to_le_bytes());
    encode_fields(record, |bytes| context.update(bytes));
    let mut mac = [0u8; HASH_LEN];
    mac.copy_from_slice(context.sign().as_ref());
    mac
}

/// Checks a version-1 chain: each record's MAC chained from the last, ending at `head`.
pub(crate) fn verify_legacy_chain(
    key: &hmac::Key,
    records: &[(AuditRecord, Vec<u8>)],
    head: (u64, &[u8]),
) -> Result<(), Error> {
    let mut previous = vec![0u8; HASH_LEN];
    for (index, (record, mac)) in records.iter().enumerate() {
        let seq = index as u64 + 1;
        let expected = legacy_chain_mac(key, &previous, record);
        if record.seq != seq || !macs_equal(&expected, mac) {
            return Err(Error::AuditTampered { seq });
        }
        previous = mac.clone();
    }
    let last = records.len() as u64;
    if last != head.0 || (last > 0 && !macs_equal(&previous, head.1)) {
        return Err(Error::AuditTampered { seq: last + 1 });
    }
    Ok(())
}

/// The audit verification key: the key of epoch 0, from which the key of every later epoch is
/// derived. It leaves the vault once ([`crate::Vault::hand_over_audit_key`], `facevault init
/// --audit-key-out`), for an auditor, who checks exported logs with it ([`check_audit_export`]).
/// Never printed; zeroed when dropped.
pub struct AuditVerificationKey(Zeroizing<[u8; 32]>);

impl AuditVerificationKey {
    pub(crate) fn from_secret(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key bytes.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a key file: exactly 32 bytes, readable by its owner only.
    pub fn read_from_file(path: &std::path::Path) -> Result<Self, Error> {
        crate::keys::read_secret_file(path).map(Self)
    }

    /// Writes the key to a new file, mode 0600; refuses to overwrite one.
    pub fn write_to_file(&self, path: &std::path::Path) -> Result<(), Error> {
        crate::keys::write_new_file(path, self.0.as_slice(), 0o600)
    }
}

impl std::fmt::Debug for AuditVerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditVerificationKey([REDACTED])")
    }
}

/// The first line of an audit export.
const EXPORT_FORMAT: &str = "facevault-audit-export";
const EXPORT_VERSION: u64 = 1;

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[derive(Serialize, serde::Deserialize)]
struct ExportHeader {
    format: String,
    version: u64,
    vault_id: String,
    exported_at: UnixMillis,
}

#[derive(Serialize, serde::Deserialize)]
struct ExportRecord {
    seq: u64,
    at: UnixMillis,
    epoch: u64,
    actor: String,
    action: String,
    subject: Option<String>,
    outcome: String,
    detail: String,
    hash: String,
    mac: String,
}

#[derive(Serialize, serde::Deserialize)]
struct ExportHead {
    head_seq: u64,
    head_hash: String,
}

/// Writes an export: the header, the records `for_each` visits, and the head. Returns how many
/// records it wrote.
pub(crate) fn write_export(
    out: &mut dyn std::io::Write,
    vault_id: &[u8; 16],
    now: UnixMillis,
    for_each: impl FnOnce(&mut dyn FnMut(SealedRecord) -> Result<(), Error>) -> Result<(), Error>,
    head: &crate::AuditCheckpoint,
) -> Result<u64, Error> {
    let header = ExportHeader {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        vault_id: crate::crypto::hex(vault_id),
        exported_at: now,
    };
    write_line(out, &header)?;
    let mut count = 0u64;
    for_each(&mut |sealed| {
        let record = sealed.record;
        write_line(
            out,
            &ExportRecord {
                seq: record.seq,
                at: record.at,
                epoch: record.epoch,
                actor: record.actor,
                action: record.action,
                subject: record.subject,
                outcome: record.outcome.as_str().into(),
                detail: record.detail,
                hash: crate::crypto::hex(&sealed.hash),
                mac: crate::crypto::hex(&sealed.mac),
            },
        )?;
        count += 1;
        Ok(())
    })?;
    write_line(
        out,
        &ExportHead {
            head_seq: head.seq,
            head_hash: crate::crypto::hex(&head.hash),
        },
    )?;
    out.flush()?;
    Ok(count)
}

/// One JSON value written as one line.
fn write_line<T: Serialize>(out: &mut dyn std::io::Write, value: &T) -> Result<(), Error> {
    let mut text = serde_json::to_vec(value).map_err(|e| Error::Io(std::io::Error::other(e)))?;
    text.push(b'\n');
    out.write_all(&text)?;
    Ok(())
}

/// What [`check_audit_export`] verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditExportCheck {
    /// The vault the log is from, in hex.
    pub vault_id: String,
    /// Records verified, each against its own epoch's key.
    pub records: u64,
    /// Epochs the log spans.
    pub epochs: u64,
    /// The chain's head: record it, and check the next export against it.
    pub head_seq: u64,
    /// The head's hash, in hex.
    pub head_hash: String,
}

/// Verifies an exported audit log off the device, with the verification key: every record's
/// chain hash, its epoch, and its MAC under its own epoch's key; the head the export ends with;
/// and, when `recorded_head` is given (a head hash from an earlier export or verification), that
/// the log still contains that record: a log cut back to before it is caught. A log that does
/// not verify is [`Error::AuditTampered`] at the first bad record; a file that is not an export
/// is [`Error::InvalidArgument`].
pub fn check_audit_export(
    text: &str,
    key: &AuditVerificationKey,
    recorded_head: Option<&[u8; 32]>,
) -> Result<AuditExportCheck, Error> {
    let malformed = |reason: String| Error::InvalidArgument {
        what: "audit export",
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let (_, first) = lines
        .next()
        .ok_or_else(|| malformed("the file is empty".into()))?;
    let header: ExportHeader =
        serde_json::from_str(first).map_err(|e| malformed(format!("line 1 is not an export header: {e}")))?;
    if header.format != EXPORT_FORMAT || header.version != EXPORT_VERSION {
        return Err(malformed(format!(
            "not a facevault audit export of version {EXPORT_VERSION}"
        )));
    }
    let mut records = Vec::new();
    let mut head = None;
    for (index, line) in lines {
        if head.is_some() {
            return Err(malformed(format!("line {} follows the head line", index + 1)));
        }
        if let Ok(found) = serde_json::from_str::<ExportHead>(line) {
            head = Some(found);
            continue;
        }
        let record: ExportRecord =
            serde_json::from_str(line).map_err(|e| malformed(format!("line {}: {e}", index + 1)))?;
        let seq = record.seq;
        let bad = || Error::AuditTampered { seq };
        records.push(SealedRecord {
            hash: unhex(&record.hash).ok_or_else(bad)?,
            mac: unhex(&record.mac).ok_or_else(bad)?,
            record: AuditRecord {
                seq,
                at: record.at,
                epoch: record.epoch,
                outcome: Outcome::parse(&record.outcome).ok_or_else(bad)?,
                actor: record.actor,
                action: record.action,
                subject: record.subject,
                detail: record.detail,
            },
        });
    }
    let head = head.ok_or_else(|| malformed("the head line is missing: the file was cut short".into()))?;
    let head_hash = unhex(&head.head_hash).ok_or_else(|| malformed("the head hash is not hex".into()))?;
    let first_key = EpochKey::new(0, Zeroizing::new(*key.expose_secret()));
    let mut on_chain = recorded_head.is_some_and(|recorded| *recorded == GENESIS_HASH);
    if let Some(recorded) = recorded_head {
        on_chain |= records.iter().any(|sealed| sealed.hash[..] == recorded[..]);
    }
    let end = verify_chain(
        MacCheck::Auditor(first_key),
        &ChainPoint::genesis(),
        records.into_iter().map(Ok),
        Some((head.head_seq, &head_hash)),
    )?;
    if recorded_head.is_some() && !on_chain {
        return Err(Error::AuditTampered { seq: end.seq + 1 });
    }
    Ok(AuditExportCheck {
        vault_id: header.vault_id,
        records: end.seq,
        epochs: end.next_epoch() + 1,
        head_seq: end.seq,
        head_hash: crate::crypto::hex(&end.hash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn first_key() -> EpochKey {
        EpochKey::new(0, Zeroizing::new([5; 32]))
    }

    fn record(n: u64) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at: 1_000 + n as i64,
            epoch: 0,
            actor: format!("user{}", n % 3),
            action: "verify".into(),
            subject: n.is_multiple_of(2).then(|| format!("{n:032x}")),
            outcome: if n.is_multiple_of(5) {
                Outcome::Denied
            } else {
                Outcome::Allowed
            },
            detail: format!("detail {n}"),
        }
    }

    /// `n` records sealed with epochs of `per_epoch` records; returns them, the head and the
    /// sealer's current key.
    fn chain(n: u64, per_epoch: u64) -> (Vec<SealedRecord>, ChainPoint, EpochKey) {
        let mut sealer = Sealer::new(SealerState {
            key: first_key(),
            head: ChainPoint::genesis(),
            records_in_epoch: 0,
            epoch_started_at: 0,
            policy: EpochPolicy {
                max_records: per_epoch,
                max_millis: i64::MAX,
            },
        });
        let mut out = Vec::new();
        for i in 1..=n {
            sealer.seal(record(i), &mut out);
        }
        let state = sealer.into_state();
        (out, state.head, state.key)
    }

    fn audit(records: Vec<SealedRecord>, head: &ChainPoint) -> Result<ChainPoint, Error> {
        verify_chain(
            MacCheck::Auditor(first_key()),
            &ChainPoint::genesis(),
            records.into_iter().map(Ok),
            Some((head.seq, &head.hash)),
        )
    }

    fn tampered_at(result: Result<ChainPoint, Error>) -> Option<u64> {
        match result {
            Err(Error::AuditTampered { seq }) => Some(seq),
            _ => None,
        }
    }

    #[test]
    fn an_intact_chain_verifies_for_the_auditor_and_the_device() {
        let (records, head, current) = chain(40, 7);
        assert!(records.iter().any(|r| r.record.epoch == 6));
        assert_eq!(audit(records.clone(), &head).unwrap(), head);
        let on_device = verify_chain(
            MacCheck::Device(&current),
            &ChainPoint::genesis(),
            records.into_iter().map(Ok),
            Some((head.seq, &head.hash)),
        );
        assert_eq!(on_device.unwrap(), head);
        let (none, head, _) = chain(0, 7);
        assert_eq!(audit(none, &head).unwrap().seq, 0);
    }

    #[test]
    fn each_epoch_ends_with_a_close_record_sealed_under_its_own_key() {
        let (records, _, current) = chain(20, 5);
        let closes: Vec<u64> = records
            .iter()
            .filter(|r| r.record.action == EPOCH_CLOSE_ACTION)
            .map(|r| r.record.seq)
            .collect();
        // Four records and a close per epoch: 20 records fill four epochs and start a fifth.
        assert_eq!(closes, vec![5, 10, 15, 20]);
        assert_eq!(records.len(), 24);
        assert_eq!(current.epoch(), 4);
        // The key of each epoch is the one-way step of the last: epoch 2's from epoch 0's key.
        let mut key = first_key();
        key = key.next().next();
        let sealed = &records[12];
        assert_eq!(sealed.record.epoch, 2);
        assert!(key.mac_matches(&sealed.hash, &sealed.mac));
        assert!(!first_key().mac_matches(&sealed.hash, &sealed.mac));
    }

    #[test]
    fn a_cut_tail_is_caught_against_the_recorded_head() {
        let (mut records, head, _) = chain(10, 100);
        records.pop();
        assert_eq!(tampered_at(audit(records, &head)), Some(10));
    }

    #[test]
    fn a_reorder_is_caught_at_the_first_moved_record() {
        let (mut records, head, _) = chain(10, 100);
        records.swap(3, 6);
        assert_eq!(tampered_at(audit(records, &head)), Some(4));
    }

    /// CVE-2023-31439's case: whoever holds today's key re-seals yesterday's records as today's.
    /// The re-sealed records carry a later epoch than the chain allows at their place.
    #[test]
    fn records_resealed_with_a_later_key_are_caught() {
        let (records, _, current) = chain(30, 10);
        // Rewrite records 4.. (epoch 0) with an edit, sealed under the current key and epoch.
        let mut forged: Vec<SealedRecord> = records[..3].to_vec();
        let mut point = ChainPoint::at(&records[2].record, records[2].hash[..].try_into().unwrap());
        for original in &records[3..] {
            let mut record = original.record.clone();
            record.epoch = current.epoch();
            record.detail.push_str(" (forged)");
            let hash = link(&point.hash, &record);
            let mac = current.mac(&hash);
            point = ChainPoint::at(&record, hash);
            forged.push(SealedRecord {
                record,
                hash: hash.to_vec(),
                mac: mac.to_vec(),
            });
        }
        assert_eq!(tampered_at(audit(forged.clone(), &point)), Some(4));
        // Keeping the old epoch numbers instead fails each record's MAC under its epoch's key.
        for sealed in &mut forged[3..] {
            sealed.record.epoch = records[sealed.record.seq as usize - 1].record.epoch;
        }
        assert_eq!(tampered_at(audit(forged, &point)), Some(4));
    }

    #[test]
    fn the_device_checks_current_macs_and_the_chain_but_not_older_macs() {
        let (mut records, head, current) = chain(30, 10);
        // A forged MAC in the current epoch is caught on the device.
        let last = records.len() - 1;
        records[last].mac[0] ^= 1;
        let on_device = |records: Vec<SealedRecord>| {
            verify_chain(
                MacCheck::Device(&current),
                &ChainPoint::genesis(),
                records.into_iter().map(Ok),
                Some((head.seq, &head.hash)),
            )
        };
        assert_eq!(tampered_at(on_device(records.clone())), Some(head.seq));
        records[last].mac[0] ^= 1;
        // An old epoch's MAC cannot be checked on the device; the auditor catches it.
        records[2].mac[0] ^= 1;
        assert!(on_device(records.clone()).is_ok());
        assert_eq!(tampered_at(audit(records, &head)), Some(3));
    }

    proptest! {
        #[test]
        fn any_single_edit_is_caught_at_its_record(at in 0usize..20, field in 0usize..7) {
            let (mut records, head, _) = chain(20, 6);
            let record = &mut records[at].record;
            match field {
                0 => record.at += 1,
                1 => record.actor.push('x'),
                2 => record.action = "identify".into(),
                3 => record.subject = if record.subject.is_some() { None } else { Some("ab".into()) },
                4 => record.outcome = if record.outcome == Outcome::Allowed { Outcome::Failed } else { Outcome::Allowed },
                5 => record.epoch += 1,
                _ => record.detail.push('!'),
            }
            prop_assert_eq!(tampered_at(audit(records, &head)), Some(at as u64 + 1));
        }

        #[test]
        fn any_single_removal_or_insertion_is_caught(at in 0usize..20, insert in any::<bool>()) {
            let (mut records, head, _) = chain(20, 6);
            // A copy put in before its original passes as that record; the original then
            // stands where the next one should.
            let expected = if insert {
                let copy = records[at].clone();
                records.insert(at, copy);
                at as u64 + 2
            } else {
                records.remove(at);
                at as u64 + 1
            };
            prop_assert_eq!(tampered_at(audit(records, &head)), Some(expected));
        }
    }
}
