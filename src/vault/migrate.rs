//! Migrations between format versions. Each is code, not only SQL: it checks every record under
//! the old keys, then re-wraps and re-MACs under the new ones, inside one transaction at open,
//! audited. A vault whose records do not verify under the old version is not migrated: the
//! opening fails with the error that names the damage, and the file is left as it was.

use std::path::Path;

use rusqlite::Transaction;

use super::consent::{consent_mac_fields, notice_mac_fields};
use super::ledger::{self, Ledger};
use super::{as_slices, record, subject_mac_fields, Settings, ANONYMOUS};
use crate::access::Action;
use crate::audit::{self, ChainPoint, EpochKey, EpochPolicy, Outcome, Sealer, SealerState};
use crate::clock::UnixMillis;
use crate::crypto::{RootKey, VaultKeys};
use crate::error::{Error, Result};
use crate::keys::MasterKey;
use crate::policy;
use crate::store::{self, LockState, PrincipalRow, Store};

/// Format version 1 to 2: a random root key (wrapped by the master key) replaces the master key
/// as the source of every key; every data key is re-wrapped and every record re-MACed under
/// it; principals gain their failed-login state; and the audit log, whose version-1 chain is
/// checked first, is re-sealed as epoch 0 of the forward-secure chain. Returns the new keys.
///
/// The re-sealed records keep their numbers, times and contents. What vouches for them from now
/// on is this migration, which checked their version-1 MACs: an auditor who exported the
/// version-1 log before can compare it record by record.
pub(super) fn v1_to_v2(
    store: &mut Store,
    master: &MasterKey,
    vault_id: &[u8; 16],
    policy: EpochPolicy,
    now: UnixMillis,
) -> Result<VaultKeys> {
    let old = VaultKeys::derive_v1(MasterKey::from_bytes(*master.expose_secret()), vault_id)?;
    let tx = store.transaction()?;
    let settings = Settings::read_format(&tx, *vault_id, &old, 1)?;
    let legacy_head: (i64, Vec<u8>) = (
        store::meta_get(&tx, "audit_head_seq")?,
        store::meta_get(&tx, "audit_head_mac")?,
    );
    tx.execute_batch(store::MIGRATE_V1_TO_V2)?;
    let legacy = store::legacy_audit_records(&tx)?;
    let head_seq = u64::try_from(legacy_head.0).map_err(|_| Error::AuditTampered { seq: 1 })?;
    audit::verify_legacy_chain(old.legacy_audit_key(), &legacy, (head_seq, &legacy_head.1))?;

    let root = RootKey::random()?;
    store::meta_set(&tx, "root_key", root.wrap(master, vault_id)?)?;
    let new = VaultKeys::from_root(root, vault_id)?;
    settings.write_format(&tx, &new, 2)?;
    let subjects = rewrap_subjects(&tx, &old, &new, vault_id)?;
    remac_principals(&tx, &old, &new)?;
    remac_consents_and_notices(&tx, &old, &new)?;
    store::meta_delete(&tx, "key_check")?;
    store::meta_delete(&tx, "audit_head_mac")?;

    // Epoch 0 holds the version-1 records, numbered as they were; its key waits, sealed, for
    // hand-over to an auditor (`audit handover`).
    let first = EpochKey::new(0, crate::crypto::random_secret()?);
    ledger::store_verification_key(&tx, &new, vault_id, first.bytes())?;
    let mut sealer = Sealer::new(SealerState {
        key: first,
        head: ChainPoint::genesis(),
        records_in_epoch: 0,
        epoch_started_at: 0,
        policy: EpochPolicy {
            max_records: u64::MAX,
            max_millis: i64::MAX,
        },
    });
    let mut sealed = Vec::with_capacity(legacy.len() + 1);
    let count = legacy.len();
    for (record, _) in legacy {
        sealer.seal(record, &mut sealed);
    }
    let detail = format!(
        "format 1 -> 2: root key created; {subjects} data keys re-wrapped; {count} audit records re-sealed after their format-1 chain verified"
    );
    sealer.seal(
        record(now, ANONYMOUS, Action::Migrate, None, Outcome::Allowed, detail),
        &mut sealed,
    );
    for record in &sealed {
        store::insert_audit(&tx, record)?;
    }
    let mut state = sealer.into_state();
    state.policy = policy;
    ledger::save_sealer_state(&tx, &new, vault_id, &state, true)?;
    drop(state);
    ledger::write_change_number(&tx, &new, vault_id, 1)?;
    let digest = ledger::compute_state_digest(&tx, &new)?;
    ledger::write_state_digest(&tx, &new, vault_id, 1, &digest)?;
    tx.execute_batch("DROP TABLE audit_v1;")?;
    tx.pragma_update(None, "user_version", 2)?;
    tx.commit()?;
    Ok(new)
}

fn damaged(table: &'static str, record: impl Into<String>) -> Error {
    Error::Integrity {
        table,
        record: record.into(),
    }
}

/// Checks each subject row under the old keys and re-wraps its data key under the new.
fn rewrap_subjects(
    tx: &Transaction<'_>,
    old: &VaultKeys,
    new: &VaultKeys,
    vault_id: &[u8; 16],
) -> Result<usize> {
    let ids = store::subject_ids(tx)?;
    for id in &ids {
        let row = store::subject(tx, id)?.ok_or_else(|| damaged("subjects", crate::crypto::hex(id)))?;
        let fields = subject_mac_fields(id, &row.facts);
        if !old.record_mac_matches("subject", &fields.slices(), &row.mac) {
            return Err(damaged("subjects", crate::crypto::hex(id)));
        }
        let wrapped = match &row.wrapped_key {
            Some(wrapped) => {
                let key = old
                    .unwrap(vault_id, id, wrapped)
                    .ok_or_else(|| damaged("subjects", crate::crypto::hex(id)))?;
                Some(new.wrap(vault_id, id, &key)?)
            }
            None => None,
        };
        let mac = new.record_mac("subject", &fields.slices());
        store::update_subject_key(tx, id, wrapped.as_deref(), &mac)?;
    }
    Ok(ids.len())
}

/// Format version 1's principal MAC covered the name, role, salt, iterations and hash.
fn remac_principals(tx: &Transaction<'_>, old: &VaultKeys, new: &VaultKeys) -> Result<()> {
    for name in store::principal_names(tx)? {
        let row = store::find_principal(tx, &name)?.ok_or_else(|| damaged("principals", name.clone()))?;
        let iterations = u64::try_from(row.iterations).unwrap_or(0).to_le_bytes();
        let v1_fields: [&[u8]; 5] = [
            name.as_bytes(),
            row.role.as_bytes(),
            &row.salt,
            &iterations,
            &row.hash,
        ];
        if !old.record_mac_matches("principal", &v1_fields, &row.mac) {
            return Err(damaged("principals", name));
        }
        let row = PrincipalRow {
            lock: LockState::default(),
            ..row
        };
        let mac = super::principal_mac(new, &name, &row);
        store::update_principal_lock(tx, &name, &row.lock, &mac)?;
    }
    Ok(())
}

fn remac_consents_and_notices(tx: &Transaction<'_>, old: &VaultKeys, new: &VaultKeys) -> Result<()> {
    for subject in store::consent_subjects(tx)? {
        for mut row in store::consents_of(tx, &subject)? {
            let fields = consent_mac_fields(&row);
            if !old.record_mac_matches("consent", &as_slices(&fields), &row.mac) {
                return Err(damaged("consents", row.id.to_string()));
            }
            row.mac = new.record_mac("consent", &as_slices(&fields));
            store::update_consent(tx, &row)?;
        }
    }
    for row in store::all_notices(tx)? {
        let fields = notice_mac_fields(&row);
        if !old.record_mac_matches("notice", &as_slices(&fields), &row.mac) {
            return Err(damaged("notices", row.version));
        }
        store::update_notice_mac(tx, row.seq, &new.record_mac("notice", &as_slices(&fields)))?;
    }
    Ok(())
}

/// The suffix of the sealed copy of a vault that a migration keeps beside it, made before the
/// migration starts: `vault.db.pre-v3.fvbackup` holds the version-2 vault, and `restore --in`
/// puts it back (the firmware that wrote it opens it; a newer one migrates it again).
pub(crate) fn sealed_copy_suffix(to: i64) -> String {
    format!(".pre-v{to}.fvbackup")
}

/// Format version 2 to 3: the one face model's name, dimension and threshold move from `meta`
/// into the new `models` table (which the settings MAC now covers row by row), so that models
/// can be added and retired. No template changes: each is already bound to its model's name and
/// dimension.
pub(super) fn v2_to_v3(ledger: &mut Ledger, path: &Path, vault_id: [u8; 16], now: UnixMillis) -> Result<()> {
    with_sealed_copy(ledger, path, vault_id, now, 3, |tx, keys| {
        let settings = Settings::read_format(tx, vault_id, keys, 2)?;
        tx.execute_batch(store::MIGRATE_V2_TO_V3)?;
        settings.write_format(tx, keys, 3)?;
        for key in ["dim", "model", "threshold"] {
            store::meta_delete(tx, key)?;
        }
        let model = &settings.models[0];
        Ok(format!(
            "model {} (dim={} threshold={}) moved to the models table",
            model.name, model.dim, model.threshold
        ))
    })
}

/// Format version 3 to 4: the `governance` table (deployment profiles, impact assessments, the
/// working-day calendar, filing events) is created empty, and the settings gain the filing
/// threshold ([`policy::filing::DEFAULT_FILING_THRESHOLD`]). The vault then has no profile: it
/// enrols and matches no one until an admin records one (and an assessment for enrolment).
pub(super) fn v3_to_v4(ledger: &mut Ledger, path: &Path, vault_id: [u8; 16], now: UnixMillis) -> Result<()> {
    with_sealed_copy(ledger, path, vault_id, now, 4, |tx, keys| {
        let mut settings = Settings::read_format(tx, vault_id, keys, 3)?;
        tx.execute_batch(store::MIGRATE_V3_TO_V4)?;
        // The new state table's rows count in the state digest from here on.
        store::watch_row_macs(tx)?;
        settings.filing_threshold = policy::filing::DEFAULT_FILING_THRESHOLD;
        settings.write_format(tx, keys, 4)?;
        Ok(format!(
            "governance table created; filing threshold {}; no deployment profile yet",
            settings.filing_threshold
        ))
    })
}

/// Runs one migration to format version `to` the way every migration from version 2 on runs: a
/// sealed copy of the vault as it was (a backup, `docs/format.md` section 21) is written beside it
/// first, and the migration runs only once that copy is synced; then `body` changes the tables
/// in one transaction, audited with the detail it returns.
fn with_sealed_copy(
    ledger: &mut Ledger,
    path: &Path,
    vault_id: [u8; 16],
    now: UnixMillis,
    to: i64,
    body: impl FnOnce(&Transaction<'_>, &VaultKeys) -> Result<String>,
) -> Result<()> {
    let copy_path = store::with_suffix(path, &sealed_copy_suffix(to));
    // A copy left by a migration that did not commit is of this same vault, older.
    match std::fs::remove_file(&copy_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let (copy, info) = super::backup::write_backup(ledger, vault_id, &copy_path, now)?;
    ledger.write(|w| {
        let change = body(w.tx, w.keys)?;
        w.tx.pragma_update(None, "user_version", to)?;
        let detail = format!(
            "format {} -> {to}: {change}; sealed copy of the format-{} vault at {} ({} bytes)",
            to - 1,
            to - 1,
            copy_path.display(),
            info.file_bytes
        );
        w.audit(record(
            now,
            ANONYMOUS,
            Action::Migrate,
            None,
            Outcome::Allowed,
            detail,
        ))
    })?;
    copy.keep();
    Ok(())
}
