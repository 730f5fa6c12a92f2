//! The one way a change reaches the disk. Every write transaction of the vault, an operation's,
//! a refusal's record or a batch of lookup records, runs through [`Ledger::write`]: it opens the
//! transaction, lends the body a [`Writing`] whose audit records are sealed by the audit sealer
//! (the only place an epoch key is used), saves the sealer's state, advances the database's
//! change number, commits, and then advances the rollback counter outside the database.
//!
//! The database's change number is MACed and may never be below the counter: an older copy of
//! the file, put back, has a lower one, and the opening refuses it ([`Error::RolledBack`]). The
//! counter is advanced after the commit, so a crash in between leaves the database one change
//! ahead of the counter, which the next opening accepts and catches up; the reverse order would
//! make such a crash look like a rollback.

use rusqlite::Transaction;

use crate::audit::{AuditRecord, ChainPoint, EpochKey, EpochPolicy, SealedRecord, Sealer, SealerState};
use crate::crypto::VaultKeys;
use crate::error::{Error, Result};
use crate::keys::{ErasureStorage, KeyProvider, RollbackCounter};
use crate::store::{self, Store};

use super::erasures::{Erasure, ErasureLedger};
use super::pipeline::{pipelined, PairedBytes};

const EPOCH_KEY_LABEL: &str = "audit epoch key";
const VERIFICATION_KEY_LABEL: &str = "audit verification key";

/// What a vault keeps outside its file, where its key provider says: the rollback counter and
/// the erasure ledger.
pub(crate) struct Outside {
    pub counter: Box<dyn RollbackCounter>,
    pub erasures: Box<dyn ErasureStorage>,
}

impl Outside {
    pub(crate) fn of(keys: &dyn KeyProvider, vault_id: &[u8; 16]) -> Result<Self> {
        Ok(Self {
            counter: keys.rollback_counter(vault_id)?,
            erasures: keys.erasure_storage(vault_id)?,
        })
    }
}

/// The store with everything a write needs: the vault's keys, its audit sealer's state (in the
/// store), its rollback counter and its erasure ledger.
pub(crate) struct Ledger {
    store: Store,
    keys: VaultKeys,
    vault_id: [u8; 16],
    counter: Box<dyn RollbackCounter>,
    erasures: ErasureLedger,
    /// The change number of the last commit.
    changes: u64,
    /// Why the counter could not be advanced after a commit, if it could not; it is tried again
    /// after the next commit and at close.
    counter_failure: Option<String>,
    /// An epoch key was replaced, or a secret erased: the WAL still holds the old bytes until a
    /// truncating checkpoint.
    truncate_due: bool,
}

/// What a write's body may use: its transaction and the audit.
pub(crate) struct Writing<'t> {
    pub tx: &'t Transaction<'t>,
    pub keys: &'t VaultKeys,
    sealer: Sealer,
    sealed: Vec<SealedRecord>,
    epoch_at_start: u64,
    audited: bool,
    erased: Vec<Erasure>,
}

impl Writing<'_> {
    /// Records in the erasure ledger, before the commit, that this write erases `erasure.subject`.
    pub(crate) fn note_erasure(&mut self, erasure: Erasure) {
        self.erased.push(erasure);
    }

    /// Seals `record` into the chain (closing the epoch first if it is due) and inserts it.
    /// Returns its sequence number.
    pub(crate) fn audit(&mut self, record: AuditRecord) -> Result<u64> {
        self.sealed.clear();
        self.sealer.seal(record, &mut self.sealed);
        self.insert_sealed()
    }

    /// Closes the current audit epoch now, whatever its size: after the verification key is
    /// handed over, so that the device no longer holds the key the auditor holds.
    pub(crate) fn close_epoch(&mut self, at: i64) -> Result<u64> {
        self.sealed.clear();
        self.sealer.close_epoch(at, &mut self.sealed);
        self.insert_sealed()
    }

    fn insert_sealed(&mut self) -> Result<u64> {
        for sealed in &self.sealed {
            store::insert_audit(self.tx, sealed)?;
        }
        self.audited = true;
        Ok(self.sealed.last().map_or(0, |sealed| sealed.record.seq))
    }
}

/// The sealer's state: epoch key, chain head and epoch bookkeeping, MACed together.
const STATE_KEYS: [&str; 7] = [
    "audit_epoch",
    "audit_head_seq",
    "audit_head_hash",
    "audit_epoch_records",
    "audit_epoch_started_at",
    "audit_epoch_max_records",
    "audit_epoch_max_millis",
];

impl Ledger {
    /// A new vault's ledger: sets its change number to 0 and the counter to match, stores the
    /// first epoch key, and the verification key (epoch 0's, the same) until it is handed over.
    pub(crate) fn create(
        mut store: Store,
        keys: VaultKeys,
        vault_id: [u8; 16],
        outside: Outside,
        policy: EpochPolicy,
    ) -> Result<Self> {
        let Outside {
            mut counter,
            erasures,
        } = outside;
        let (erasures, recorded) = ErasureLedger::open(erasures, &keys, &vault_id)?;
        if !recorded.is_empty() {
            return Err(Error::ErasureLedger(format!(
                "{} already lists erasures of this vault ID",
                erasures.describe()
            )));
        }
        if counter.read()?.is_some_and(|seen| seen > 0) {
            return Err(Error::RollbackCounter(format!(
                "{} has already counted changes of this vault ID",
                counter.describe()
            )));
        }
        let first = EpochKey::new(0, crate::crypto::random_secret()?);
        let tx = store.transaction()?;
        store_verification_key(&tx, &keys, &vault_id, first.bytes())?;
        let state = SealerState {
            key: first,
            head: ChainPoint::genesis(),
            records_in_epoch: 0,
            epoch_started_at: 0,
            policy,
        };
        save_sealer_state(&tx, &keys, &vault_id, &state, true)?;
        write_change_number(&tx, &keys, &vault_id, 0)?;
        let digest = compute_state_digest(&tx, &keys)?;
        write_state_digest(&tx, &keys, &vault_id, 0, &digest)?;
        tx.commit()?;
        store::watch_row_macs(store.conn())?;
        counter.advance_to(0)?;
        Ok(Self {
            store,
            keys,
            vault_id,
            counter,
            erasures,
            changes: 0,
            counter_failure: None,
            truncate_due: false,
        })
    }

    /// An existing vault's ledger: the database's change number must not be below the counter.
    pub(crate) fn open(store: Store, keys: VaultKeys, vault_id: [u8; 16], outside: Outside) -> Result<Self> {
        let Outside {
            mut counter,
            erasures,
        } = outside;
        let changes = read_change_number(store.conn(), &keys, &vault_id)?;
        match counter.read()? {
            None => {
                return Err(Error::RollbackCounter(format!(
                    "{} is missing, so an older copy of this vault could not be told from the current one",
                    counter.describe()
                )))
            }
            Some(seen) if changes < seen => {
                return Err(Error::RolledBack {
                    database: changes,
                    counter: seen,
                })
            }
            Some(_) => counter.advance_to(changes)?,
        }
        check_state_digest(store.conn(), &keys, &vault_id, changes)?;
        let (erasures, _) = ErasureLedger::open(erasures, &keys, &vault_id)?;
        store::watch_row_macs(store.conn())?;
        Ok(Self {
            store,
            keys,
            vault_id,
            counter,
            erasures,
            changes,
            counter_failure: None,
            truncate_due: false,
        })
    }

    /// A vault just migrated to this format: its counter starts at the migrated change number.
    pub(crate) fn after_migration(
        store: Store,
        keys: VaultKeys,
        vault_id: [u8; 16],
        mut outside: Outside,
    ) -> Result<Self> {
        let changes = read_change_number(store.conn(), &keys, &vault_id)?;
        outside.counter.advance_to(changes)?;
        Self::open(store, keys, vault_id, outside)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Swaps a plain file for one encrypted as a whole (feature `sqlcipher`), which changes no
    /// row. The new connection watches row MACs as the old one did.
    #[cfg(feature = "sqlcipher")]
    pub(crate) fn encrypt_store_as_a_whole(&mut self, master: &crate::keys::MasterKey) -> Result<()> {
        self.store.encrypt_as_a_whole(master)?;
        store::watch_row_macs(self.store.conn())
    }

    pub(crate) fn keys(&self) -> &VaultKeys {
        &self.keys
    }

    /// Runs `body` in one write transaction and commits it with its audit records, the sealer's
    /// new state and the next change number; then advances the rollback counter. Nothing is
    /// written if `body` fails.
    pub(crate) fn write<T>(&mut self, body: impl FnOnce(&mut Writing<'_>) -> Result<T>) -> Result<T> {
        let Ledger {
            store,
            keys,
            vault_id,
            changes,
            erasures,
            ..
        } = self;
        let tx = store.transaction()?;
        let state = load_sealer_state(&tx, keys, vault_id)?;
        let mut writing = Writing {
            tx: &tx,
            keys,
            epoch_at_start: state.key.epoch(),
            sealer: Sealer::new(state),
            sealed: Vec::new(),
            audited: false,
            erased: Vec::new(),
        };
        let value = body(&mut writing)?;
        let Writing {
            sealer,
            epoch_at_start,
            audited,
            erased,
            ..
        } = writing;
        let state = sealer.into_state();
        let epoch_changed = state.key.epoch() != epoch_at_start;
        if audited {
            save_sealer_state(&tx, keys, vault_id, &state, epoch_changed)?;
        }
        drop(state);
        let next = *changes + 1;
        let changed = store::take_changed_macs(&tx)?;
        let mut digest = read_state_digest(&tx)?;
        for (table, mac) in &changed {
            xor_into(&mut digest, &row_hash(keys, table.as_bytes(), mac));
        }
        write_state_digest(&tx, keys, vault_id, next, &digest)?;
        write_change_number(&tx, keys, vault_id, next)?;
        // Before the commit: a crash between leaves an erasure recorded that did not happen,
        // which a restore only repeats; the reverse order could lose one.
        erasures.append(keys, &erased)?;
        tx.commit()?;
        *changes = next;
        self.truncate_due |= epoch_changed;
        self.advance_counter();
        Ok(value)
    }

    fn advance_counter(&mut self) {
        self.counter_failure = self.counter.advance_to(self.changes).err().map(|e| e.to_string());
    }

    /// Asks for the WAL to be truncated after this write: an erasure's old bytes are in it.
    pub(crate) fn require_truncation(&mut self) {
        self.truncate_due = true;
    }

    /// Truncates the WAL if an erasure, an epoch's end or a replaced secret left old bytes in
    /// it; a truncation that cannot run now (a reader holds the WAL) stays due.
    pub(crate) fn truncate_wal_if_due(&mut self) -> Result<()> {
        if self.truncate_due {
            self.store.checkpoint_truncate()?;
            self.truncate_due = false;
        }
        Ok(())
    }

    /// Rewrites the database file from its rows and truncates the WAL (see
    /// [`Store::rebuild_from_rows`]); the file's size before and after, WAL checkpointed both
    /// times. Changes no row, so neither the change number nor the state digest moves.
    pub(crate) fn compact(&mut self) -> Result<(u64, u64)> {
        self.store.checkpoint_truncate()?;
        let before = self.store.file_bytes()?;
        self.store.rebuild_from_rows()?;
        self.store.checkpoint_truncate()?;
        Ok((before, self.store.file_bytes()?))
    }

    /// Tries once more to bring the counter up to the last commit; the error if it still cannot.
    pub(crate) fn settle_counter(&mut self) -> Result<()> {
        if self.counter_failure.is_some() {
            self.advance_counter();
        }
        match &self.counter_failure {
            Some(failure) => Err(Error::RollbackCounter(format!(
                "{} could not be advanced to change {}: {failure}",
                self.counter.describe(),
                self.changes
            ))),
            None => Ok(()),
        }
    }

    /// Moves to what a new key provider keeps outside the file (after a rekey): the erasure
    /// ledger is copied there whole, and the new counter brought up to date.
    pub(crate) fn replace_outside(&mut self, outside: Outside) -> Result<()> {
        self.erasures.move_to(outside.erasures)?;
        self.counter = outside.counter;
        self.advance_counter();
        Ok(())
    }

    /// Copies the erasure ledger to `storage` (a rekey's, before its commit).
    pub(crate) fn copy_erasures_to(&self, storage: &mut dyn ErasureStorage) -> Result<()> {
        self.erasures.copy_to(storage)
    }

    /// The change number of the last commit.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// Every erasure the erasure ledger records, read again and checked.
    pub(crate) fn recorded_erasures(&self) -> Result<Vec<Erasure>> {
        self.erasures.read_back(&self.keys, &self.vault_id)
    }

    /// How many erasures the erasure ledger records.
    pub(crate) fn erasures_recorded(&self) -> u64 {
        self.erasures.len()
    }
}

/// Raises a restored backup's change number to `to` (the rollback counter's), so that the
/// opening after it accepts the older state: a restore is the one way back, and it is audited.
/// The state digest is checked first and re-MACed under the new number. Returns the backup's
/// own change number.
pub(crate) fn rebase_change_number(
    store: &mut Store,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    to: u64,
) -> Result<u64> {
    let from = read_change_number(store.conn(), keys, vault_id)?;
    check_state_digest(store.conn(), keys, vault_id, from)?;
    if to > from {
        let digest = read_state_digest(store.conn())?;
        let tx = store.transaction()?;
        write_state_digest(&tx, keys, vault_id, to, &digest)?;
        write_change_number(&tx, keys, vault_id, to)?;
        tx.commit()?;
    }
    Ok(from)
}

/// Stores the verification key (epoch 0's) sealed, until it is handed over.
pub(crate) fn store_verification_key(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    key: &[u8; 32],
) -> Result<()> {
    let sealed = keys.seal_secret(vault_id, VERIFICATION_KEY_LABEL, 0, key)?;
    store::meta_set(conn, "audit_verification_key", sealed)
}

/// The verification key, if it has not been handed over yet.
pub(crate) fn stored_verification_key(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>> {
    let Some(sealed) = store::meta_get_optional::<Vec<u8>>(conn, "audit_verification_key")? else {
        return Ok(None);
    };
    keys.open_secret(vault_id, VERIFICATION_KEY_LABEL, 0, &sealed)
        .map(Some)
        .ok_or_else(|| Error::Integrity {
            table: "meta",
            record: "audit_verification_key".into(),
        })
}

fn state_fields(state: &SealerState) -> [Vec<u8>; 7] {
    [
        state.key.epoch().to_le_bytes().to_vec(),
        state.head.seq.to_le_bytes().to_vec(),
        state.head.hash.to_vec(),
        state.records_in_epoch.to_le_bytes().to_vec(),
        state.epoch_started_at.to_le_bytes().to_vec(),
        state.policy.max_records.to_le_bytes().to_vec(),
        state.policy.max_millis.to_le_bytes().to_vec(),
    ]
}

fn damaged_state() -> Error {
    Error::Integrity {
        table: "meta",
        record: "audit sealer state".into(),
    }
}

pub(crate) fn save_sealer_state(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    state: &SealerState,
    with_key: bool,
) -> Result<()> {
    let as_i64 = |value: u64| i64::try_from(value).map_err(|_| damaged_state());
    if with_key {
        let sealed = keys.seal_secret(vault_id, EPOCH_KEY_LABEL, state.key.epoch(), state.key.bytes())?;
        store::meta_set(conn, "audit_epoch_key", sealed)?;
    }
    store::meta_set(conn, STATE_KEYS[0], as_i64(state.key.epoch())?)?;
    store::meta_set(conn, STATE_KEYS[1], as_i64(state.head.seq)?)?;
    store::meta_set(conn, STATE_KEYS[2], &state.head.hash[..])?;
    store::meta_set(conn, STATE_KEYS[3], as_i64(state.records_in_epoch)?)?;
    store::meta_set(conn, STATE_KEYS[4], state.epoch_started_at)?;
    store::meta_set(conn, STATE_KEYS[5], as_i64(state.policy.max_records)?)?;
    store::meta_set(conn, STATE_KEYS[6], state.policy.max_millis)?;
    let fields = state_fields(state);
    let fields = super::as_slices(&fields);
    let mut mac_fields = vec![&vault_id[..]];
    mac_fields.extend(fields);
    store::meta_set(
        conn,
        "audit_state_mac",
        keys.record_mac("audit state", &mac_fields),
    )
}

pub(crate) fn load_sealer_state(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
) -> Result<SealerState> {
    let as_u64 = |value: i64| u64::try_from(value).map_err(|_| damaged_state());
    let epoch = as_u64(store::meta_get(conn, STATE_KEYS[0])?)?;
    let head_hash: Vec<u8> = store::meta_get(conn, STATE_KEYS[2])?;
    let sealed_key: Vec<u8> = store::meta_get(conn, "audit_epoch_key")?;
    let key = keys
        .open_secret(vault_id, EPOCH_KEY_LABEL, epoch, &sealed_key)
        .ok_or_else(damaged_state)?;
    let head_seq = as_u64(store::meta_get(conn, STATE_KEYS[1])?)?;
    let state = SealerState {
        key: EpochKey::new(epoch, key),
        head: ChainPoint {
            seq: head_seq,
            hash: head_hash.as_slice().try_into().map_err(|_| damaged_state())?,
            // The head's own epoch and whether it closed it are not needed to seal after it: the
            // sealer puts each record in its key's epoch.
            epoch,
            closes_epoch: false,
        },
        records_in_epoch: as_u64(store::meta_get(conn, STATE_KEYS[3])?)?,
        epoch_started_at: store::meta_get(conn, STATE_KEYS[4])?,
        policy: EpochPolicy {
            max_records: as_u64(store::meta_get(conn, STATE_KEYS[5])?)?,
            max_millis: store::meta_get(conn, STATE_KEYS[6])?,
        },
    };
    let fields = state_fields(&state);
    let fields = super::as_slices(&fields);
    let mut mac_fields = vec![&vault_id[..]];
    mac_fields.extend(fields);
    let mac: Vec<u8> = store::meta_get(conn, "audit_state_mac")?;
    if !keys.record_mac_matches("audit state", &mac_fields, &mac) {
        return Err(damaged_state());
    }
    Ok(state)
}

/// One row's share of the state digest: a MAC (under the record key) of its table and its own
/// MAC. Keyed, so that no one without the key can pick rows whose shares cancel.
fn row_hash(keys: &VaultKeys, table: &[u8], mac: &[u8]) -> [u8; 32] {
    keys.record_mac_array("state row", &[table, mac])
}

fn xor_into(digest: &mut [u8; 32], share: &[u8; 32]) {
    digest.iter_mut().zip(share).for_each(|(d, s)| *d ^= s);
}

/// Rows' MACs per hand-over in [`compute_state_digest`]: about 200 KB, so that a channel
/// message is rare next to the MACs it carries.
const DIGEST_BATCH_ROWS: usize = 4096;

/// The state digest recomputed from every row of the state tables: the rows are read here and
/// their shares (a MAC each: at a million subjects, two million) worked out on a helper thread;
/// XOR does not care about the order. There are about two rows a subject (its own and its
/// consent's); the subjects alone are counted, to decide whether a helper is worth its thread.
pub(crate) fn compute_state_digest(conn: &rusqlite::Connection, keys: &VaultKeys) -> Result<[u8; 32]> {
    let mut digest = [0u8; 32];
    // Each row's table name and MAC.
    let add_shares = |batch: &mut PairedBytes| {
        for (table, mac) in batch.iter() {
            xor_into(&mut digest, &row_hash(keys, table, mac));
        }
        Ok(())
    };
    pipelined(
        store::subject_count(conn)?,
        DIGEST_BATCH_ROWS,
        |belt| {
            let mut batch = PairedBytes::default();
            store::for_each_row_mac(conn, |table, mac| {
                batch.push(table.as_bytes(), mac);
                belt.hand_over_when_full(&mut batch)
            })?;
            belt.hand_over(&mut batch)
        },
        add_shares,
    )?;
    Ok(digest)
}

fn read_state_digest(conn: &rusqlite::Connection) -> Result<[u8; 32]> {
    let stored: Vec<u8> = store::meta_get(conn, "state_digest")?;
    stored.as_slice().try_into().map_err(|_| Error::Integrity {
        table: "meta",
        record: "state_digest".into(),
    })
}

fn state_digest_fields(vault_id: &[u8; 16], changes: u64, digest: &[u8; 32]) -> [Vec<u8>; 3] {
    [vault_id.to_vec(), changes.to_le_bytes().to_vec(), digest.to_vec()]
}

/// Stores the state digest, MACed together with the change number it belongs to: an older
/// digest cannot be put back without the older change number, which the counter refuses.
pub(crate) fn write_state_digest(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    changes: u64,
    digest: &[u8; 32],
) -> Result<()> {
    let fields = state_digest_fields(vault_id, changes, digest);
    let fields = super::as_slices(&fields);
    store::meta_set(conn, "state_digest", &digest[..])?;
    store::meta_set(conn, "state_digest_mac", keys.record_mac("state digest", &fields))
}

/// Recomputes the digest over every row and compares it with the stored one: a row deleted
/// from the file, or put back from an older copy of the vault (with its then-valid MAC), is
/// refused as [`Error::RowsRolledBack`].
fn check_state_digest(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    changes: u64,
) -> Result<()> {
    let stored = read_state_digest(conn)?;
    let fields = state_digest_fields(vault_id, changes, &stored);
    let fields = super::as_slices(&fields);
    let mac: Vec<u8> = store::meta_get(conn, "state_digest_mac")?;
    if !keys.record_mac_matches("state digest", &fields, &mac) {
        return Err(Error::Integrity {
            table: "meta",
            record: "state_digest".into(),
        });
    }
    if compute_state_digest(conn, keys)? != stored {
        return Err(Error::RowsRolledBack);
    }
    Ok(())
}

fn change_number_mac_fields(vault_id: &[u8; 16], number: u64) -> [Vec<u8>; 2] {
    [vault_id.to_vec(), number.to_le_bytes().to_vec()]
}

pub(crate) fn write_change_number(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    number: u64,
) -> Result<()> {
    let fields = change_number_mac_fields(vault_id, number);
    let fields = super::as_slices(&fields);
    store::meta_set(conn, "change_number", i64::try_from(number).unwrap_or(i64::MAX))?;
    store::meta_set(
        conn,
        "change_number_mac",
        keys.record_mac("change number", &fields),
    )
}

fn read_change_number(conn: &rusqlite::Connection, keys: &VaultKeys, vault_id: &[u8; 16]) -> Result<u64> {
    let damaged = || Error::Integrity {
        table: "meta",
        record: "change_number".into(),
    };
    let number: i64 = store::meta_get(conn, "change_number")?;
    let number = u64::try_from(number).map_err(|_| damaged())?;
    let mac: Vec<u8> = store::meta_get(conn, "change_number_mac")?;
    let fields = change_number_mac_fields(vault_id, number);
    let fields = super::as_slices(&fields);
    if !keys.record_mac_matches("change number", &fields, &mac) {
        return Err(damaged());
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RootKey;

    /// Over several hand-overs to the helper, and more than one table, the digest is every
    /// row's share folded in once, as one thread folds them; a row less changes it. A vault too
    /// small for the helper gets the same digest on one thread.
    #[test]
    fn the_digest_folds_every_row_once_across_batches() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE subjects(mac BLOB);
             CREATE TABLE consents(mac BLOB);
             CREATE TABLE meta(key TEXT PRIMARY KEY, value);",
        )
        .unwrap();
        let subjects = 3 * DIGEST_BATCH_ROWS + 5;
        for row in 0..subjects {
            // Distinct MACs: two equal shares would cancel out.
            conn.execute("INSERT INTO subjects VALUES (?1)", [(row as u64).to_le_bytes()])
                .unwrap();
        }
        for row in 0..7u8 {
            conn.execute("INSERT INTO consents VALUES (?1)", [[row; 32]])
                .unwrap();
        }
        conn.execute("INSERT INTO meta VALUES ('settings_mac', ?1)", [[9u8; 32]])
            .unwrap();
        let keys = VaultKeys::from_root(RootKey::random().unwrap(), &[7; 16]).unwrap();
        let mut one_thread = [0u8; 32];
        let mut rows = 0;
        store::for_each_row_mac(&conn, |table, mac| {
            rows += 1;
            xor_into(&mut one_thread, &row_hash(&keys, table.as_bytes(), mac));
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, subjects + 7 + 1);
        assert_eq!(compute_state_digest(&conn, &keys).unwrap(), one_thread);
        conn.execute(
            "DELETE FROM subjects WHERE rowid = ?1",
            [DIGEST_BATCH_ROWS as i64 + 1],
        )
        .unwrap();
        assert_ne!(compute_state_digest(&conn, &keys).unwrap(), one_thread);

        conn.execute("DELETE FROM subjects WHERE rowid > 100", [])
            .unwrap();
        let mut small = [0u8; 32];
        store::for_each_row_mac(&conn, |table, mac| {
            xor_into(&mut small, &row_hash(&keys, table.as_bytes(), mac));
            Ok(())
        })
        .unwrap();
        assert_ne!(small, [0u8; 32]);
        assert_eq!(compute_state_digest(&conn, &keys).unwrap(), small);
    }
}
