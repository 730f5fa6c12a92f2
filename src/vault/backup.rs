//! Backup and restore (issue 15). A backup is a consistent snapshot of the database, sealed under
//! a key derived from the vault's root key, so that only a device holding the master key can
//! restore it. A restore never brings back a face that was erased, withdrawn or expired: it
//! erases again every subject the erasure ledger (outside the file) records, and purges what
//! expired meanwhile, before the restored vault answers anything.
//!
//! The file (`docs/format.md`, section 21): a 160-byte header, then the SQLite image in chunks of
//! at most 1 MiB, each sealed with AES-256-GCM under the backup key, the header as associated
//! data, and the nonce `prefix (7) ‖ u32be(chunk index) ‖ last (1)`, so that chunks cannot be
//! reordered, dropped or cut off at the end.

use std::io::{Read, Write};
use std::path::Path;

use aes_gcm::Aes256Gcm;
use serde::Serialize;
use zeroize::Zeroizing;

use super::ledger::{self, Outside};
use super::{AuditEntry, OpenOptions, Session, Vault};
use crate::access::{Action, Password, Role};
use crate::clock::UnixMillis;
use crate::crypto::{self, RootKey, VaultKeys, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::keys::{ErasureStorage, KeyProvider, MasterKey, NewFile, RollbackCounter};
use crate::store::{self, with_suffix, Store};

const MAGIC: &[u8; 8] = b"FVBACKUP";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 160;
const CHUNK_LEN: usize = 1 << 20;
const PREFIX_LEN: usize = 7;
const WRAPPED_ROOT_LEN: usize = 60;

/// What a backup's header says: whose it is, of when, and how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    /// The vault's ID, in hex.
    pub vault_id: String,
    /// The schema version of the database inside.
    pub format_version: u32,
    /// When the backup was made.
    pub created_at: UnixMillis,
    /// The vault's change number at the backup.
    pub change_number: u64,
    /// How many erasures the erasure ledger recorded at the backup.
    pub erasures_recorded: u64,
    /// The database image's size in bytes.
    pub database_bytes: u64,
    /// The backup file's size in bytes.
    pub file_bytes: u64,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// The backup's header.
    pub backup: BackupInfo,
    /// Changes made after the backup and lost with the state it replaced (the rollback
    /// counter's value less the backup's change number).
    pub changes_lost: u64,
    /// Subjects in the backup that the erasure ledger records as erased since: erased again.
    pub erased_again: usize,
    /// Subjects in the backup whose retention ended since: purged.
    pub purged: usize,
}

/// How [`Vault::restore`] goes about it.
pub struct RestoreOptions {
    /// Replace a vault that opens and works. Without it only a missing or damaged vault is
    /// replaced.
    pub force: bool,
    /// How the restored vault is opened at the end.
    pub open: OpenOptions,
}

struct Header {
    vault_id: [u8; 16],
    format_version: u32,
    created_at: i64,
    change_number: u64,
    erasures_recorded: u64,
    database_bytes: u64,
    digest: [u8; 32],
    wrapped_root: [u8; WRAPPED_ROOT_LEN],
    nonce_prefix: [u8; PREFIX_LEN],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |field: &[u8]| {
            bytes[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        };
        put(MAGIC);
        put(&[VERSION]);
        put(&self.vault_id);
        put(&self.format_version.to_le_bytes());
        put(&self.created_at.to_le_bytes());
        put(&self.change_number.to_le_bytes());
        put(&self.erasures_recorded.to_le_bytes());
        put(&self.database_bytes.to_le_bytes());
        put(&self.digest);
        put(&self.wrapped_root);
        put(&self.nonce_prefix);
        bytes
    }

    fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self> {
        if &bytes[..8] != MAGIC {
            return Err(rejected("not a facevault backup"));
        }
        if bytes[8] != VERSION {
            return Err(rejected(&format!(
                "backup format version {} is not this build's {VERSION}",
                bytes[8]
            )));
        }
        let mut at = 9;
        let mut take = |len: usize| {
            let field = &bytes[at..at + len];
            at += len;
            field
        };
        let array = <[u8; 8]>::try_from;
        let vault_id = take(16).try_into().map_err(|_| rejected("header"))?;
        let format_version = u32::from_le_bytes(take(4).try_into().map_err(|_| rejected("header"))?);
        let created_at = i64::from_le_bytes(array(take(8)).map_err(|_| rejected("header"))?);
        let change_number = u64::from_le_bytes(array(take(8)).map_err(|_| rejected("header"))?);
        let erasures_recorded = u64::from_le_bytes(array(take(8)).map_err(|_| rejected("header"))?);
        let database_bytes = u64::from_le_bytes(array(take(8)).map_err(|_| rejected("header"))?);
        let digest = take(32).try_into().map_err(|_| rejected("header"))?;
        let wrapped_root = take(WRAPPED_ROOT_LEN)
            .try_into()
            .map_err(|_| rejected("header"))?;
        let nonce_prefix = take(PREFIX_LEN).try_into().map_err(|_| rejected("header"))?;
        Ok(Self {
            vault_id,
            format_version,
            created_at,
            change_number,
            erasures_recorded,
            database_bytes,
            digest,
            wrapped_root,
            nonce_prefix,
        })
    }

    fn info(&self, file_bytes: u64) -> BackupInfo {
        BackupInfo {
            vault_id: crypto::hex(&self.vault_id),
            format_version: self.format_version,
            created_at: self.created_at,
            change_number: self.change_number,
            erasures_recorded: self.erasures_recorded,
            database_bytes: self.database_bytes,
            file_bytes,
        }
    }

    fn chunk_nonce(&self, index: u32, last: bool) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
        nonce[NONCE_LEN - 1] = u8::from(last);
        nonce
    }
}

fn rejected(what: &str) -> Error {
    Error::BackupRejected(what.to_string())
}

/// The size of the whole file for a database of `database_bytes`: header, chunks and their tags.
/// `None` for a size no file has (a hostile header's), which fuzzing found overflowing.
fn backup_file_len(database_bytes: u64) -> Option<u64> {
    let chunks = database_bytes.div_ceil(CHUNK_LEN as u64).max(1);
    database_bytes
        .checked_add(chunks.checked_mul(TAG_LEN as u64)?)?
        .checked_add(HEADER_LEN as u64)
}

/// Seals `image` into `out`: the header, then the chunks.
fn seal(out: &mut dyn Write, header: &Header, cipher: &Aes256Gcm, image: &[u8]) -> Result<()> {
    let aad = header.encode();
    out.write_all(&aad)?;
    let chunks: Vec<&[u8]> = if image.is_empty() {
        vec![&[][..]]
    } else {
        image.chunks(CHUNK_LEN).collect()
    };
    let mut buffer = Zeroizing::new(Vec::with_capacity(CHUNK_LEN));
    for (index, chunk) in chunks.iter().enumerate() {
        let index = u32::try_from(index).map_err(|_| Error::Crypto)?;
        let last = index as usize + 1 == chunks.len();
        buffer.clear();
        buffer.extend_from_slice(chunk);
        let tag = crypto::seal_in_place(cipher, &header.chunk_nonce(index, last), &aad, &mut buffer)?;
        out.write_all(&buffer)?;
        out.write_all(&tag)?;
    }
    Ok(())
}

/// Opens the sealed chunks from `input` into `out`; checks the length and the digest.
fn unseal(input: &mut dyn Read, header: &Header, cipher: &Aes256Gcm, out: &mut dyn Write) -> Result<()> {
    let aad = header.encode();
    let mut remaining = header.database_bytes;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = Zeroizing::new(vec![0u8; CHUNK_LEN + TAG_LEN]);
    let mut index = 0u32;
    loop {
        let len = usize::try_from(remaining.min(CHUNK_LEN as u64)).map_err(|_| rejected("size"))?;
        let last = remaining <= CHUNK_LEN as u64;
        let sealed = &mut buffer[..len + TAG_LEN];
        input
            .read_exact(sealed)
            .map_err(|_| rejected("the backup is cut short"))?;
        let (body, tag) = sealed.split_at_mut(len);
        crypto::open_in_place(cipher, &header.chunk_nonce(index, last), &aad, body, tag).ok_or_else(
            || {
                rejected(&format!(
                    "chunk {index} fails authentication (altered, or another vault's)"
                ))
            },
        )?;
        digest.update(body);
        out.write_all(body)?;
        remaining -= len as u64;
        if last {
            break;
        }
        index = index.checked_add(1).ok_or_else(|| rejected("size"))?;
    }
    if input.read(&mut [0u8; 1])? != 0 {
        return Err(rejected("bytes after the last chunk"));
    }
    if digest.finish().as_ref() != header.digest {
        return Err(rejected("the database digest does not match"));
    }
    Ok(())
}

/// Writes a sealed backup of the database `ledger` holds to a new file at `path`, synced; the
/// file is removed if it is dropped without [`NewFile::keep`].
pub(super) fn write_backup(
    ledger: &ledger::Ledger,
    vault_id: [u8; 16],
    path: &Path,
    now: UnixMillis,
) -> Result<(NewFile, BackupInfo)> {
    let image = ledger.store().snapshot()?;
    let conn = ledger.store().conn();
    let wrapped: Vec<u8> = store::meta_get(conn, "root_key")?;
    let header = Header {
        vault_id,
        format_version: u32::try_from(ledger.store().format_version()?).unwrap_or(0),
        created_at: now,
        change_number: ledger.changes(),
        erasures_recorded: ledger.erasures_recorded(),
        database_bytes: image.len() as u64,
        digest: ring::digest::digest(&ring::digest::SHA256, &image)
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto)?,
        wrapped_root: wrapped
            .try_into()
            .map_err(|_| Error::NotAVault("the wrapped root key is malformed".into()))?,
        nonce_prefix: crypto::random_array()?,
    };
    let mut file = NewFile::create(path, 0o600)?;
    {
        crate::faults::check(crate::faults::FaultKind::Write)?;
        let mut out = std::io::BufWriter::new(file.file());
        seal(&mut out, &header, &ledger.keys().backup_cipher(), &image)?;
        out.flush()?;
    }
    file.write_synced(&[])?;
    file.place()?;
    // The image is in memory: its size, and so the file's, is far from overflowing.
    let info = header.info(backup_file_len(header.database_bytes).unwrap_or(u64::MAX));
    Ok((file, info))
}

impl Vault {
    /// Writes a sealed backup of the vault to a new file at `path` (mode 0600): a consistent
    /// snapshot of the database, taken while lookups go on (writes wait for it), sealed under a
    /// key derived from the vault's root key. The file is synced before the backup's audit record
    /// commits; if the record cannot commit, the file is removed. Admins only.
    ///
    /// A backup opens only with the master key of its time: after a rekey, take a new one.
    pub fn backup_to_file(&self, session: &Session, path: &Path) -> Result<BackupInfo> {
        let vault_id = self.read_state().settings.vault_id;
        let (file, info) = self.file_operation(
            session,
            Action::Backup,
            |ledger, now| write_backup(ledger, vault_id, path, now),
            |(_, info)| {
                format!(
                    "file={} change={} erasures_recorded={} bytes={}",
                    path.display(),
                    info.change_number,
                    info.erasures_recorded,
                    info.file_bytes
                )
            },
        )?;
        file.keep();
        Ok(info)
    }

    /// Restores the backup at `backup` into a vault at `path`, and opens it: the backup is
    /// checked whole (its key from `keys`' master key, every chunk's tag, the digest), then
    /// every subject the erasure ledger records as erased, withdrawn or purged is erased again
    /// and every subject past its retention purged, before the vault answers anything. `admin`
    /// must log in to the restored vault as an admin. The restore is audited there, with the
    /// backup's time and the number of changes lost.
    ///
    /// A vault at `path` that opens and works is replaced only with `options.force`; a missing
    /// or damaged one is replaced. The restored database is made beside it and renamed over it
    /// at the end, so a failure leaves it as it was. The rollback counter is not lowered: the
    /// restored vault's change number is raised to it, so an older copy of the file stays
    /// refused, the replaced vault included.
    pub fn restore(
        backup: &Path,
        path: &Path,
        keys: &dyn KeyProvider,
        admin: &str,
        password: &Password,
        options: RestoreOptions,
    ) -> Result<(Vault, Restored)> {
        let master = keys.master_key()?;
        let mut input = std::io::BufReader::new(std::fs::File::open(backup)?);
        let mut header_bytes = [0u8; HEADER_LEN];
        input
            .read_exact(&mut header_bytes)
            .map_err(|_| rejected("shorter than a backup header"))?;
        let header = Header::decode(&header_bytes)?;
        let root =
            RootKey::unwrap(&master, &header.vault_id, &header.wrapped_root)?.ok_or(Error::WrongKey)?;
        drop(master);
        let vault_keys = VaultKeys::from_root(root, &header.vault_id)?;
        let file_bytes = std::fs::metadata(backup)?.len();
        if Some(file_bytes) != backup_file_len(header.database_bytes) {
            return Err(rejected("its length does not match its header"));
        }

        if path.exists() {
            let probe = OpenOptions {
                load_gallery: false,
                purge_interval: None,
                ..OpenOptions::default()
            };
            match Vault::open_with(path, keys, probe) {
                Ok(working) => {
                    working.close()?;
                    if !options.force {
                        return Err(Error::AlreadyExists(path.to_path_buf()));
                    }
                }
                Err(e @ Error::Busy(_)) => return Err(e),
                Err(_) => {}
            }
        }

        let staged = with_suffix(path, ".restoring");
        store::remove_database_files(&staged);
        let made = (|| {
            let mut file = NewFile::create(&staged, 0o600)?;
            {
                crate::faults::check(crate::faults::FaultKind::Write)?;
                let mut out = std::io::BufWriter::new(file.file());
                unseal(&mut input, &header, &vault_keys.backup_cipher(), &mut out)?;
                out.flush()?;
            }
            file.write_synced(&[])?;
            file.place()?;
            file.keep();
            Self::settle_restored(&staged, keys, &vault_keys, &header, admin, password, &options)
        })();
        let restored = match made {
            Ok(restored) => restored,
            Err(e) => {
                store::remove_database_files(&staged);
                return Err(e);
            }
        };
        for leftover in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(path, leftover));
        }
        crate::faults::check(crate::faults::FaultKind::Rename)?;
        std::fs::rename(&staged, path)?;
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
        let vault = Vault::open_with(path, keys, options.open)?;
        Ok((
            vault,
            Restored {
                backup: header.info(file_bytes),
                ..restored
            },
        ))
    }

    /// The staged restore, made whole: its change number raised to the counter's, opened, its
    /// admin checked, the ledger's erasures repeated and the expired purged, audited; closed.
    fn settle_restored(
        staged: &Path,
        keys: &dyn KeyProvider,
        vault_keys: &VaultKeys,
        header: &Header,
        admin: &str,
        password: &Password,
        options: &RestoreOptions,
    ) -> Result<Restored> {
        let vault_id = header.vault_id;
        let counter = Outside::of(keys, &vault_id)?.counter.read()?.unwrap_or(0);
        let from = {
            let mut store = Store::open(staged, &keys.master_key()?)?;
            ledger::rebase_change_number(&mut store, vault_keys, &vault_id, counter)?
        };
        // The staged vault counts its changes on a counter of its own: the device's stays where
        // it was until the restored vault has replaced the old one, so a restore that fails at
        // any point leaves the old vault opening as before.
        let staging = StagingKeys {
            keys,
            counter: Some(counter),
        };
        let vault = Vault::open_with(
            staged,
            &staging,
            OpenOptions {
                clock: options.open.clock.clone(),
                load_gallery: false,
                purge_interval: None,
                ..OpenOptions::default()
            },
        )?;
        let session = vault.login(admin, password)?;
        if vault.current_role(&session) != Role::Admin {
            let e = Error::Forbidden {
                role: vault.current_role(&session),
                action: Action::Restore,
            };
            vault.audit_attempt(admin, Action::Restore, None, super::Outcome::Denied, &e);
            return Err(e);
        }
        let erasures = super::lock(&vault.core.ledger).recorded_erasures()?;
        let changes_lost = counter.saturating_sub(from);
        let erased_again = vault.core.operation(admin, Action::Restore, None, |act| {
            let mut entries = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for erasure in &erasures {
                if !seen.insert(erasure.subject) || store::subject(act.tx, erasure.subject.as_bytes())?.is_none() {
                    continue;
                }
                let templates = act.shred_subject(&erasure.subject, false)?;
                entries.push(AuditEntry::new(
                    Some(erasure.subject),
                    format!(
                        "erased again: {} at {} templates={templates}",
                        erasure.kind.as_str(),
                        erasure.at
                    ),
                ));
            }
            let again = entries.len();
            entries.push(AuditEntry::new(
                None,
                format!(
                    "restored from the backup of {} (change {}); changes lost {changes_lost}; erased again {again}",
                    header.created_at, header.change_number
                ),
            ));
            Ok((again, entries))
        })?;
        let purged = vault.purge_expired()?.len();
        vault.close()?;
        Ok(Restored {
            backup: header.info(0),
            changes_lost,
            erased_again,
            purged,
        })
    }
}

/// The device's keys and erasure ledger, with a rollback counter in memory: what a restore's
/// staged vault opens with.
struct StagingKeys<'k> {
    keys: &'k dyn KeyProvider,
    /// Where the staged vault's counter starts: the device counter's value.
    counter: Option<u64>,
}

impl KeyProvider for StagingKeys<'_> {
    fn master_key(&self) -> Result<MasterKey> {
        self.keys.master_key()
    }

    fn rollback_counter(&self, _vault_id: &[u8; 16]) -> Result<Box<dyn RollbackCounter>> {
        Ok(Box::new(StagingCounter(self.counter)))
    }

    fn erasure_storage(&self, vault_id: &[u8; 16]) -> Result<Box<dyn ErasureStorage>> {
        self.keys.erasure_storage(vault_id)
    }
}

/// A rollback counter in memory.
struct StagingCounter(Option<u64>);

impl RollbackCounter for StagingCounter {
    fn read(&self) -> Result<Option<u64>> {
        Ok(self.0)
    }

    fn advance_to(&mut self, value: u64) -> Result<()> {
        self.0 = Some(self.0.map_or(value, |current| current.max(value)));
        Ok(())
    }

    fn describe(&self) -> String {
        "the restore's staging counter".into()
    }
}
