//! Where the device master key comes from. The key-encryption key (KEK) never touches the database:
//! a [`KeyProvider`] hands it to the vault at open. [`KeyFile`] serves ordinary devices; a TPM, TEE
//! or secure-element provider implements the same trait.

use crate::faults::{self, FaultKind};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto;
use crate::error::{Error, KeyFileProblem, Result};

/// Length of the master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// The 256-bit device master key. Cannot be printed, cloned or serialised; the bytes are reached
/// only through [`MasterKey::expose_secret`].
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key bytes. Every use is a place a secret is handled; `grep expose_secret` finds them.
    pub fn expose_secret(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// A source of the device master key, and the keeper of each vault's rollback counter.
pub trait KeyProvider {
    /// Fetches the master key.
    fn master_key(&self) -> Result<MasterKey>;

    /// The rollback counter of the vault `vault_id`: a number outside the database that only
    /// grows, which the database's own change number may not fall behind. A secure element's or
    /// TPM's monotonic counter is the strong form; [`KeyFile`] keeps a file beside the key.
    fn rollback_counter(&self, vault_id: &[u8; 16]) -> Result<Box<dyn RollbackCounter>>;

    /// Where the vault `vault_id` keeps its erasure ledger: the record of every subject erased,
    /// withdrawn or purged, outside the database, so that a restored backup erases again what
    /// was erased after the backup was taken. [`KeyFile`] keeps a file beside the key.
    fn erasure_storage(&self, vault_id: &[u8; 16]) -> Result<Box<dyn ErasureStorage>>;
}

/// The bytes of a vault's erasure ledger, kept outside the database. The vault writes and checks
/// the records (a MAC chain under its own keys; `docs/format.md`, section 3.4); this only keeps
/// them.
pub trait ErasureStorage: Send {
    /// Every byte appended so far; empty for a ledger never written.
    fn read_all(&self) -> Result<Vec<u8>>;

    /// Writes `bytes` at `offset`, the end of what the vault read as whole (anything after it, a
    /// record torn by a power cut, is cut off), durably before it returns.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()>;

    /// Where it lives, for messages.
    fn describe(&self) -> String;
}

/// The erasure ledger file for vault `vault_id` beside the key file at `key_path`:
/// `<key file>.<vault id in hex>.erasures`.
pub fn erasure_path(key_path: &Path, vault_id: &[u8; 16]) -> PathBuf {
    beside_key(key_path, vault_id, "erasures")
}

/// `<key file>.<vault id in hex>.<kind>`: a file a key file keeps for one vault.
fn beside_key(key_path: &Path, vault_id: &[u8; 16], kind: &str) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".");
    name.push(crate::crypto::hex(vault_id));
    name.push(".");
    name.push(kind);
    PathBuf::from(name)
}

/// An erasure ledger in a file (mode 0600), written at its end and synced on every write.
pub struct ErasureFile {
    path: PathBuf,
}

impl ErasureFile {
    /// The ledger at `path` (the file may not exist yet).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn problem(&self, what: impl std::fmt::Display) -> Error {
        Error::ErasureLedger(format!("{}: {what}", self.path.display()))
    }
}

impl ErasureStorage for ErasureFile {
    fn read_all(&self) -> Result<Vec<u8>> {
        let (mut file, _) = match open_regular_file(&self.path) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(self.problem("is not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.problem(e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| self.problem(e))?;
        Ok(bytes)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let mut options = OpenOptions::new();
        options.write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let mut file = options.open(&self.path).map_err(|e| self.problem(e))?;
        faults::check(FaultKind::Truncate).map_err(|e| self.problem(e))?;
        file.set_len(offset).map_err(|e| self.problem(e))?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| self.problem(e))?;
        faults::check(FaultKind::Write).map_err(|e| self.problem(e))?;
        file.write_all(bytes).map_err(|e| self.problem(e))?;
        faults::check(FaultKind::Sync).map_err(|e| self.problem(e))?;
        file.sync_data().map_err(|e| self.problem(e))?;
        if offset == 0 {
            sync_parent(&self.path).map_err(|e| self.problem(e))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("the erasure ledger {}", self.path.display())
    }
}

/// Syncs the directory holding `path`, so that a file just created there survives a power cut.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

type ErasureMap = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 16], Vec<u8>>>>;

/// An erasure ledger held in memory ([`FixedKey`]'s), shared like its counters.
struct MemoryErasures {
    ledgers: ErasureMap,
    vault_id: [u8; 16],
}

impl MemoryErasures {
    fn ledgers(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 16], Vec<u8>>> {
        self.ledgers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ErasureStorage for MemoryErasures {
    fn read_all(&self) -> Result<Vec<u8>> {
        Ok(self.ledgers().get(&self.vault_id).cloned().unwrap_or_default())
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let mut ledgers = self.ledgers();
        let ledger = ledgers.entry(self.vault_id).or_default();
        ledger.truncate(usize::try_from(offset).unwrap_or(usize::MAX));
        ledger.extend_from_slice(bytes);
        Ok(())
    }

    fn describe(&self) -> String {
        "the process's in-memory erasure ledger (FixedKey)".into()
    }
}

/// A monotonic counter kept outside the database (SQLCipher's point: an older copy of a file still
/// verifies, so only something outside the file can tell it is older). The vault advances it after
/// every commit and checks it at open.
pub trait RollbackCounter: Send {
    /// The value reached, or `None` if this counter was never set (a new vault, or one made before
    /// counters existed).
    fn read(&self) -> Result<Option<u64>>;

    /// Raises the counter to `value`. It never lowers it: a smaller `value` changes nothing.
    fn advance_to(&mut self, value: u64) -> Result<()>;

    /// Where it lives, for messages.
    fn describe(&self) -> String;
}

/// The rollback counter file for vault `vault_id` beside the key file at `key_path`:
/// `<key file>.<vault id in hex>.counter`.
pub fn counter_path(key_path: &Path, vault_id: &[u8; 16]) -> PathBuf {
    beside_key(key_path, vault_id, "counter")
}

/// A counter file: 32 bytes, `"fvcount1"` ‖ vault ID (16) ‖ u64le(value), rewritten in place and
/// synced on every advance. One 32-byte write at offset 0 lies within one disk sector, so a power
/// cut leaves the old value or the new one.
pub struct CounterFile {
    path: PathBuf,
    vault_id: [u8; 16],
    /// The value last read or written, so that an advance to it is free.
    known: Option<u64>,
}

const COUNTER_MAGIC: &[u8; 8] = b"fvcount1";
const COUNTER_FILE_LEN: usize = 32;

impl CounterFile {
    /// The counter at `path` for vault `vault_id` (the file may not exist yet).
    pub fn new(path: PathBuf, vault_id: [u8; 16]) -> Self {
        Self {
            path,
            vault_id,
            known: None,
        }
    }

    fn problem(&self, what: impl std::fmt::Display) -> Error {
        Error::RollbackCounter(format!("{}: {what}", self.path.display()))
    }
}

impl RollbackCounter for CounterFile {
    fn read(&self) -> Result<Option<u64>> {
        let (mut file, metadata) = match open_regular_file(&self.path) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(self.problem("is not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.problem(e)),
        };
        if metadata.len() != COUNTER_FILE_LEN as u64 {
            return Err(self.problem("is not a facevault counter file (wrong length)"));
        }
        let mut bytes = [0u8; COUNTER_FILE_LEN];
        file.read_exact(&mut bytes).map_err(|e| self.problem(e))?;
        if &bytes[..8] != COUNTER_MAGIC || bytes[8..24] != self.vault_id {
            return Err(self.problem("is not this vault's counter file"));
        }
        let mut value = [0u8; 8];
        value.copy_from_slice(&bytes[24..]);
        Ok(Some(u64::from_le_bytes(value)))
    }

    fn advance_to(&mut self, value: u64) -> Result<()> {
        let current = match self.known {
            Some(known) => Some(known),
            None => self.read()?,
        };
        if current.is_some_and(|current| current >= value) {
            self.known = current;
            return Ok(());
        }
        let mut bytes = [0u8; COUNTER_FILE_LEN];
        bytes[..8].copy_from_slice(COUNTER_MAGIC);
        bytes[8..24].copy_from_slice(&self.vault_id);
        bytes[24..].copy_from_slice(&value.to_le_bytes());
        if current.is_none() {
            write_new_file(&self.path, &bytes, 0o600)?;
        } else {
            let mut file = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| self.problem(e))?;
            faults::check(FaultKind::Write).map_err(|e| self.problem(e))?;
            file.write_all(&bytes).map_err(|e| self.problem(e))?;
            faults::check(FaultKind::Sync).map_err(|e| self.problem(e))?;
            file.sync_data().map_err(|e| self.problem(e))?;
        }
        self.known = Some(value);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("the counter file {}", self.path.display())
    }
}

type CounterMap = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 16], u64>>>;

/// The counters [`FixedKey::new`]s share: one per vault ID, for the life of the process.
fn process_counters() -> CounterMap {
    static COUNTERS: std::sync::OnceLock<CounterMap> = std::sync::OnceLock::new();
    std::sync::Arc::clone(COUNTERS.get_or_init(Default::default))
}

/// The erasure ledgers [`FixedKey::new`]s share: one per vault ID, for the life of the process.
fn process_erasures() -> ErasureMap {
    static ERASURES: std::sync::OnceLock<ErasureMap> = std::sync::OnceLock::new();
    std::sync::Arc::clone(ERASURES.get_or_init(Default::default))
}

/// A counter held in memory: it catches a rollback within one process (a test's, or a host's
/// that reopens a vault), and knows nothing of the vault before the process began, when it reads
/// as 0.
struct MemoryCounter {
    values: CounterMap,
    vault_id: [u8; 16],
}

impl MemoryCounter {
    fn values(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 16], u64>> {
        self.values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RollbackCounter for MemoryCounter {
    fn read(&self) -> Result<Option<u64>> {
        Ok(Some(self.values().get(&self.vault_id).copied().unwrap_or(0)))
    }

    fn advance_to(&mut self, value: u64) -> Result<()> {
        let mut values = self.values();
        let slot = values.entry(self.vault_id).or_insert(value);
        *slot = (*slot).max(value);
        Ok(())
    }

    fn describe(&self) -> String {
        "the process's in-memory counter (FixedKey)".into()
    }
}

/// A master key in a 32-byte file that only its owner may read (mode 0600).
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// A provider reading the key at `path`; the file is checked each time the key is fetched.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Creates a key file with 32 fresh random bytes, mode 0600. Refuses to overwrite a file.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let key = Zeroizing::new(crypto::random_array::<MASTER_KEY_LEN>()?);
        write_new_file(&path, key.as_slice(), 0o600)?;
        Ok(Self { path })
    }

    /// Opens the key file at `path` if it exists, or creates one.
    pub fn open_or_create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if path.exists() {
            let provider = Self::new(path);
            provider.master_key()?;
            Ok(provider)
        } else {
            Self::create(path)
        }
    }

    /// Where the key lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl KeyProvider for KeyFile {
    fn master_key(&self) -> Result<MasterKey> {
        Ok(MasterKey(read_secret_file(&self.path)?))
    }

    fn rollback_counter(&self, vault_id: &[u8; 16]) -> Result<Box<dyn RollbackCounter>> {
        Ok(Box::new(CounterFile::new(
            counter_path(&self.path, vault_id),
            *vault_id,
        )))
    }

    fn erasure_storage(&self, vault_id: &[u8; 16]) -> Result<Box<dyn ErasureStorage>> {
        Ok(Box::new(ErasureFile::new(erasure_path(&self.path, vault_id))))
    }
}

/// Writes `bytes` to a new file with the given Unix mode, synced to disk. Refuses to overwrite,
/// and to write through a symbolic link. The file appears whole or not at all ([`NewFile`]).
pub(crate) fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = NewFile::create(path, mode)?;
    file.write_synced(bytes)?;
    file.place()?;
    file.keep();
    Ok(())
}

fn sync_directory(path: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(directory) = path.parent() {
        let directory = if directory.as_os_str().is_empty() {
            Path::new(".")
        } else {
            directory
        };
        File::open(directory)?.sync_all()?;
    }
    Ok(())
}

/// A new file that appears under its name whole or not at all. It is written under a temporary
/// name beside it (`<name>.<random>.tmp`), then linked under its name ([`NewFile::place`]): a link,
/// unlike a rename, fails if the name exists, and a process killed part-way leaves at most the
/// temporary file, never a short file under the real name. Dropped before [`NewFile::keep`], it
/// removes what it made, placed or not: a write that fails half-way, or a refusal (an audit record
/// that does not commit) after the file was placed, leaves nothing.
///
/// The name is refused if anything is there, a symbolic link included, dangling or not; the
/// temporary file is created with `O_CREAT | O_EXCL`, which never follows a link.
pub(crate) struct NewFile {
    file: File,
    path: PathBuf,
    temporary: PathBuf,
    placed: bool,
    kept: bool,
}

impl NewFile {
    pub(crate) fn create(path: &Path, mode: u32) -> Result<Self> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(Error::AlreadyExists(path.to_path_buf()));
        }
        let suffix: [u8; 8] = crypto::random_array()?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.tmp", crate::crypto::hex(&suffix)));
        let temporary = PathBuf::from(temporary);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let file = options.open(&temporary).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", path.display()),
            ))
        })?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            temporary,
            placed: false,
            kept: false,
        })
    }

    /// Writes `bytes` and waits until they are on the disk.
    pub(crate) fn write_synced(&mut self, bytes: &[u8]) -> Result<()> {
        faults::check(FaultKind::Write)?;
        self.file.write_all(bytes)?;
        faults::check(FaultKind::Sync)?;
        self.file.sync_all()?;
        Ok(())
    }

    /// The open file, to write to; [`NewFile::write_synced`] then syncs it.
    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Links the written file under its name, and syncs the directory: from here on the file is
    /// there whole. Fails if the name was taken meanwhile.
    pub(crate) fn place(&mut self) -> Result<()> {
        faults::check(FaultKind::Rename)?;
        std::fs::hard_link(&self.temporary, &self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(self.path.clone()),
            _ => Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", self.path.display()),
            )),
        })?;
        self.placed = true;
        sync_directory(&self.path)
    }

    /// Keeps the placed file: it is done.
    pub(crate) fn keep(mut self) {
        self.kept = self.placed;
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.temporary);
        if self.placed && !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Opens a file for reading only if it is a regular file: a FIFO or a device would block the
/// caller or never end. The open itself does not block (`O_NONBLOCK`, which changes nothing for
/// a regular file), and the type is checked on the handle, so a file swapped after a check of
/// the path cannot slip through.
pub(crate) fn open_regular_file(path: &Path) -> std::io::Result<Option<(File, std::fs::Metadata)>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    Ok(metadata.is_file().then_some((file, metadata)))
}

/// Opens a key file: it must exist and be a regular file.
fn open_key_file(path: &Path) -> Result<(File, std::fs::Metadata)> {
    let problem = |problem| Error::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    open_regular_file(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => problem(KeyFileProblem::Missing),
            _ => Error::Io(e),
        })?
        .ok_or_else(|| problem(KeyFileProblem::NotAFile))
}

/// Reads a 32-byte secret from a regular file that only its owner may read.
pub(crate) fn read_secret_file(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let problem = |problem| Error::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    let (mut file, metadata) = open_key_file(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(problem(KeyFileProblem::TooOpen));
        }
    }
    read_exactly_32(&mut file, metadata.len()).ok_or_else(|| problem(KeyFileProblem::WrongLength))?
}

/// Reads a 32-byte public value (no permission check: it is not secret).
pub(crate) fn read_public_file(path: &Path) -> Result<[u8; 32]> {
    let problem = |problem| Error::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    let (mut file, metadata) = open_key_file(path)?;
    let len = metadata.len();
    let bytes = read_exactly_32(&mut file, len).ok_or_else(|| problem(KeyFileProblem::WrongLength))??;
    Ok(*bytes)
}

/// `None` when the file is not exactly 32 bytes long (checked before and after reading, in case it
/// grows in between).
fn read_exactly_32(file: &mut File, len: u64) -> Option<Result<Zeroizing<[u8; 32]>>> {
    if len != 32 {
        return None;
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    if let Err(e) = file.read_exact(bytes.as_mut_slice()) {
        return Some(Err(Error::Io(e)));
    }
    match file.read(&mut [0u8; 1]) {
        Ok(0) => Some(Ok(bytes)),
        Ok(_) => None,
        Err(e) => Some(Err(Error::Io(e))),
    }
}

/// A fixed master key held in memory: for tests, and for hosts that fetch the key themselves. Its
/// rollback counters live in the process's memory, so they catch a rollback only within one
/// process: a host that uses it on a real device must keep its counters itself, in its own
/// [`KeyProvider`] (a secure element's monotonic counter, say).
pub struct FixedKey(MasterKey, CounterMap, ErasureMap);

impl FixedKey {
    /// A provider that always returns `bytes`, with the process's shared counters.
    pub fn new(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(
            MasterKey::from_bytes(bytes),
            process_counters(),
            process_erasures(),
        )
    }

    /// A provider with counters of its own, which start at 0: for a test or a simulation that
    /// opens several copies of one vault as if each were on a device of its own.
    pub fn with_own_counters(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(
            MasterKey::from_bytes(bytes),
            CounterMap::default(),
            ErasureMap::default(),
        )
    }
}

impl std::fmt::Debug for FixedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixedKey([REDACTED])")
    }
}

impl KeyProvider for FixedKey {
    fn master_key(&self) -> Result<MasterKey> {
        Ok(MasterKey::from_bytes(*self.0.expose_secret()))
    }

    fn rollback_counter(&self, vault_id: &[u8; 16]) -> Result<Box<dyn RollbackCounter>> {
        Ok(Box::new(MemoryCounter {
            values: std::sync::Arc::clone(&self.1),
            vault_id: *vault_id,
        }))
    }

    fn erasure_storage(&self, vault_id: &[u8; 16]) -> Result<Box<dyn ErasureStorage>> {
        Ok(Box::new(MemoryErasures {
            ledgers: std::sync::Arc::clone(&self.2),
            vault_id: *vault_id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_key() {
        let key = FixedKey::new([0x41; 32]);
        let shown = format!("{key:?} {:?}", key.master_key().ok());
        // The key bytes 0x41 would show as "65" in a derived Debug, or as "AAAA" as text.
        assert!(!shown.contains("65") && !shown.contains("41") && !shown.contains("AAAA"));
        assert!(shown.contains("REDACTED"));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_private_and_refused_when_open_or_short() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        KeyFile::create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let provider = KeyFile::new(&path);
        assert!(provider.master_key().is_ok());
        assert!(matches!(KeyFile::create(&path), Err(Error::AlreadyExists(_))));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            provider.master_key(),
            Err(Error::KeyFile {
                problem: KeyFileProblem::TooOpen,
                ..
            })
        ));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, [7u8; 31]).unwrap();
        assert!(matches!(
            provider.master_key(),
            Err(Error::KeyFile {
                problem: KeyFileProblem::WrongLength,
                ..
            })
        ));

        let missing = KeyFile::new(dir.path().join("nope"));
        assert!(matches!(
            missing.master_key(),
            Err(Error::KeyFile {
                problem: KeyFileProblem::Missing,
                ..
            })
        ));
    }
}
