//! The erasure ledger: every subject erased, withdrawn or purged, with when and how, kept outside
//! the database ([`ErasureStorage`], beside the key file for [`crate::KeyFile`]). A backup is a
//! copy of the database from its time; restoring it would bring back every face erased since. The
//! ledger is what a restore erases again. It holds subject IDs and times, never biometric data.
//!
//! The bytes (`docs/format.md`, section 3.4): a 24-byte header, `"fverase1"` ‖ vault ID, then
//! 64-byte records, subject ID (16) ‖ `i64le` time (8) ‖ kind (1) ‖ 7 zero bytes ‖ MAC (32). Each
//! MAC is a record MAC (label `"erasure"`) over the vault ID, the previous record's MAC (32 zero
//! bytes for the first) and the record's first 25 bytes: a chain, so a record edited, inserted or
//! reordered is caught. Records are written before the erasure's transaction commits, so a crash
//! can leave a recorded erasure that did not happen (a restore then erases that subject), never
//! the reverse.

use crate::access::Action;
use crate::crypto::VaultKeys;
use crate::error::{Error, Result};
use crate::keys::ErasureStorage;
use crate::subject::SubjectId;

const MAGIC: &[u8; 8] = b"fverase1";
const HEADER_LEN: usize = 24;
const RECORD_LEN: usize = 64;
const MAC_LABEL: &str = "erasure";

/// Why a subject's data was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErasureKind {
    Erase = 1,
    Withdraw = 2,
    Purge = 3,
}

impl ErasureKind {
    /// The kind of erasure an operation makes.
    pub(crate) fn of(action: Action) -> Self {
        match action {
            Action::WithdrawConsent => Self::Withdraw,
            Action::Purge => Self::Purge,
            _ => Self::Erase,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Erase),
            2 => Some(Self::Withdraw),
            3 => Some(Self::Purge),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Erase => "erase",
            Self::Withdraw => "withdraw",
            Self::Purge => "purge",
        }
    }
}

/// One recorded erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Erasure {
    pub subject: SubjectId,
    pub at: i64,
    pub kind: ErasureKind,
}

/// A vault's erasure ledger, its chain checked, ready to append to.
pub(crate) struct ErasureLedger {
    storage: Box<dyn ErasureStorage>,
    vault_id: [u8; 16],
    /// The end of the last whole record.
    end: u64,
    /// The last record's MAC: the chain's head.
    head: [u8; 32],
    records: u64,
}

impl ErasureLedger {
    /// Reads and checks the ledger; returns it with every erasure it records, oldest first. A
    /// torn last record (a power cut mid-write) is left out, and cut off by the next append.
    pub(crate) fn open(
        storage: Box<dyn ErasureStorage>,
        keys: &VaultKeys,
        vault_id: &[u8; 16],
    ) -> Result<(Self, Vec<Erasure>)> {
        let bytes = storage.read_all()?;
        let problem = |what: &str| Error::ErasureLedger(format!("{}: {what}", storage.describe()));
        let mut head = [0u8; 32];
        let mut erasures = Vec::new();
        if bytes.len() >= HEADER_LEN {
            if &bytes[..8] != MAGIC || bytes[8..HEADER_LEN] != vault_id[..] {
                return Err(problem("is not this vault's erasure ledger"));
            }
            for (index, record) in bytes[HEADER_LEN..].chunks_exact(RECORD_LEN).enumerate() {
                let (body, mac) = record.split_at(RECORD_LEN - 32);
                if !keys.record_mac_matches(MAC_LABEL, &[vault_id, &head, &body[..25]], mac)
                    || body[25..].iter().any(|&byte| byte != 0)
                {
                    return Err(problem(&format!("record {index} fails its MAC")));
                }
                let kind = ErasureKind::from_byte(body[24]).ok_or_else(|| problem("unknown kind"))?;
                let subject = SubjectId::from_bytes(&body[..16]).ok_or_else(|| problem("bad subject ID"))?;
                let mut at = [0u8; 8];
                at.copy_from_slice(&body[16..24]);
                erasures.push(Erasure {
                    subject,
                    at: i64::from_le_bytes(at),
                    kind,
                });
                head.copy_from_slice(mac);
            }
        } else if bytes[..bytes.len().min(8)] != MAGIC[..bytes.len().min(8)] {
            return Err(problem("is not a facevault erasure ledger"));
        }
        let end = match erasures.len() {
            0 if bytes.len() < HEADER_LEN => 0,
            records => (HEADER_LEN + RECORD_LEN * records) as u64,
        };
        let ledger = Self {
            storage,
            vault_id: *vault_id,
            end,
            head,
            records: erasures.len() as u64,
        };
        Ok((ledger, erasures))
    }

    /// Records `erasures`, durably, after the last whole record.
    pub(crate) fn append(&mut self, keys: &VaultKeys, erasures: &[Erasure]) -> Result<()> {
        if erasures.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(HEADER_LEN + RECORD_LEN * erasures.len());
        if self.end == 0 {
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&self.vault_id);
        }
        let mut head = self.head;
        for erasure in erasures {
            let mut record = [0u8; RECORD_LEN];
            record[..16].copy_from_slice(erasure.subject.as_bytes());
            record[16..24].copy_from_slice(&erasure.at.to_le_bytes());
            record[24] = erasure.kind as u8;
            let mac = keys.record_mac(MAC_LABEL, &[&self.vault_id, &head, &record[..25]]);
            record[32..].copy_from_slice(&mac);
            head.copy_from_slice(&mac);
            bytes.extend_from_slice(&record);
        }
        self.storage.write_at(self.end, &bytes)?;
        self.end += bytes.len() as u64;
        self.head = head;
        self.records += erasures.len() as u64;
        Ok(())
    }

    /// Every erasure recorded, read again from the storage and checked.
    pub(crate) fn read_back(&self, keys: &VaultKeys, vault_id: &[u8; 16]) -> Result<Vec<Erasure>> {
        Ok(Self::open(Box::new(Snapshot(self.storage.read_all()?)), keys, vault_id)?.1)
    }

    /// Where it lives, for messages.
    pub(crate) fn describe(&self) -> String {
        self.storage.describe()
    }

    /// How many erasures it records.
    pub(crate) fn len(&self) -> u64 {
        self.records
    }

    /// Moves the ledger to `storage` (a rekey's new key provider), whole: it is written there
    /// first, so a crash leaves it in the old place or in both.
    pub(crate) fn move_to(&mut self, mut storage: Box<dyn ErasureStorage>) -> Result<()> {
        self.copy_to(storage.as_mut())?;
        self.storage = storage;
        Ok(())
    }

    /// Writes the whole ledger to `storage`, replacing what it held.
    pub(crate) fn copy_to(&self, storage: &mut dyn ErasureStorage) -> Result<()> {
        let bytes = self.storage.read_all()?;
        let whole = &bytes[..usize::try_from(self.end).unwrap_or(usize::MAX).min(bytes.len())];
        storage.write_at(0, whole)
    }
}

/// Bytes already read, checked as a ledger.
struct Snapshot(Vec<u8>);

impl ErasureStorage for Snapshot {
    fn read_all(&self) -> Result<Vec<u8>> {
        Ok(self.0.clone())
    }

    fn write_at(&mut self, _offset: u64, _bytes: &[u8]) -> Result<()> {
        Err(Error::ErasureLedger(
            "a snapshot of the ledger is not written to".into(),
        ))
    }

    fn describe(&self) -> String {
        "the erasure ledger".into()
    }
}
