//! Where the device master key comes from. The key-encryption key (KEK) never touches the database:
//! a [`KeyProvider`] hands it to the vault at open. [`KeyFile`] serves ordinary devices; a TPM, TEE
//! or secure-element provider implements the same trait.

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

/// A source of the device master key.
pub trait KeyProvider {
    /// Fetches the master key.
    fn master_key(&self) -> Result<MasterKey>;
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
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(path.clone()),
            _ => Error::Io(e),
        })?;
        file.write_all(key.as_slice())?;
        file.sync_all()?;
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

    fn problem(&self, problem: KeyFileProblem) -> Error {
        Error::KeyFile {
            path: self.path.clone(),
            problem,
        }
    }
}

impl KeyProvider for KeyFile {
    fn master_key(&self) -> Result<MasterKey> {
        let mut file = File::open(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => self.problem(KeyFileProblem::Missing),
            _ => Error::Io(e),
        })?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(self.problem(KeyFileProblem::NotAFile));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if metadata.permissions().mode() & 0o077 != 0 {
                return Err(self.problem(KeyFileProblem::TooOpen));
            }
        }
        if metadata.len() != MASTER_KEY_LEN as u64 {
            return Err(self.problem(KeyFileProblem::WrongLength));
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        file.read_exact(key.as_mut_slice())?;
        // A file that grew between the length check and the read is not a key file either.
        if file.read(&mut [0u8; 1])? != 0 {
            return Err(self.problem(KeyFileProblem::WrongLength));
        }
        Ok(MasterKey(key))
    }
}

/// A fixed master key held in memory: for tests, and for hosts that fetch the key themselves.
pub struct FixedKey(MasterKey);

impl FixedKey {
    /// A provider that always returns `bytes`.
    pub fn new(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(MasterKey::from_bytes(bytes))
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
        assert!(matches!(
            KeyFile::create(&path),
            Err(Error::AlreadyExists(_))
        ));

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
