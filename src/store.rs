//! The SQLite store: the schema and the queries the vault runs. It knows rows and bytes, never
//! plaintext and never a vault key: everything secret arrives here already sealed, audit records
//! already chained and MACed by the vault's sealer. The one key it handles is the whole-file
//! layer's (feature `sqlcipher`), which SQLCipher needs before it reads a page. Migrations between schema versions are code
//! (`vault/migrate.rs`), since they re-wrap and re-MAC; this file holds their SQL.
//!
//! One file in WAL mode with `synchronous=FULL` (an acknowledged operation survives power loss) and
//! `secure_delete=ON` (deleted cells are overwritten). It is read with ordinary reads, not a memory
//! map: a file truncated under a mapping kills the process with SIGBUS instead of returning an error. After an erasure the vault truncates the WAL,
//! since old WAL frames may still hold a deleted wrapped key until a truncating checkpoint.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use crate::audit::{AuditRecord, Outcome, SealedRecord};
use crate::error::{Error, Result, StorageError};
use crate::keys::MasterKey;

/// The newest schema this build writes and reads.
pub(crate) const FORMAT_VERSION: i64 = 4;

/// The oldest schema this build migrates from.
pub(crate) const OLDEST_FORMAT_VERSION: i64 = 1;

/// The page size of a new vault's file, in bytes.
pub(crate) const PAGE_SIZE: u32 = 16384;

/// The schema of format version 4, as a new vault is created with it: version 2's tables,
/// [`MODELS_TABLE`] and [`GOVERNANCE_TABLE`].
const VERSION_2_TABLES: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value ANY NOT NULL
) STRICT;

CREATE TABLE subjects (
    id          BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    minor       INTEGER NOT NULL CHECK (minor IN (0, 1)),
    templates   INTEGER NOT NULL,
    wrapped_key BLOB CHECK (wrapped_key IS NULL OR length(wrapped_key) = 60),
    personal    BLOB,
    mac         BLOB NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE notices (
    seq          INTEGER PRIMARY KEY NOT NULL,
    version      TEXT NOT NULL UNIQUE,
    published_at INTEGER NOT NULL,
    body         TEXT NOT NULL,
    mac          BLOB NOT NULL
) STRICT;

CREATE TABLE consents (
    id             INTEGER PRIMARY KEY NOT NULL,
    subject_id     BLOB NOT NULL CHECK (length(subject_id) = 16),
    kind           TEXT NOT NULL CHECK (kind IN ('processing', 'transfer')),
    notice_version TEXT NOT NULL,
    given_at       INTEGER NOT NULL,
    by_guardian    INTEGER NOT NULL CHECK (by_guardian IN (0, 1)),
    withdrawn_at   INTEGER,
    erased_at      INTEGER,
    evidence       BLOB,
    mac            BLOB NOT NULL
) STRICT;
CREATE INDEX consents_by_subject ON consents(subject_id);

CREATE TABLE templates (
    id         INTEGER PRIMARY KEY NOT NULL,
    subject_id BLOB NOT NULL REFERENCES subjects(id),
    model      TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX templates_by_subject ON templates(subject_id);

CREATE TABLE principals (
    name       TEXT PRIMARY KEY NOT NULL,
    role       TEXT NOT NULL,
    salt       BLOB NOT NULL,
    iterations INTEGER NOT NULL,
    hash       BLOB NOT NULL,
    mac        BLOB NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    lockouts     INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER
) STRICT;

CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY NOT NULL,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL,
    epoch   INTEGER NOT NULL,
    hash    BLOB NOT NULL CHECK (length(hash) = 32),
    mac     BLOB NOT NULL CHECK (length(mac) = 32)
) STRICT;

CREATE TABLE throttles (
    kind            TEXT NOT NULL CHECK (kind IN ('subject', 'principal')),
    key             BLOB NOT NULL,
    failures        INTEGER NOT NULL,
    next_allowed_at INTEGER NOT NULL,
    disabled        INTEGER NOT NULL CHECK (disabled IN (0, 1)),
    window_start    INTEGER NOT NULL,
    window_count    INTEGER NOT NULL,
    mac             BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT, WITHOUT ROWID;
"#;

/// The face models a vault takes templates of (format version 3): each with its dimension and
/// threshold, in the order they were added. The settings MAC covers every row.
const MODELS_TABLE: &str = r#"
CREATE TABLE models (
    seq        INTEGER PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    dim        INTEGER NOT NULL,
    threshold  REAL NOT NULL,
    added_at   INTEGER NOT NULL,
    retired_at INTEGER
) STRICT;
CREATE INDEX templates_by_model ON templates(model);
"#;

/// The processor's records (format version 4): deployment profiles, impact assessments, major
/// security incidents, the working-day calendar, filing clocks and filings made, each a MACed JSON body, appended and never deleted
/// (Art. 9 keeps assessments at least three years; the vault keeps them all). The state digest
/// covers every row.
const GOVERNANCE_TABLE: &str = r#"
CREATE TABLE governance (
    seq         INTEGER PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('profile', 'assessment', 'incident', 'calendar', 'filing', 'filed')),
    recorded_at INTEGER NOT NULL,
    body        TEXT NOT NULL,
    mac         BLOB NOT NULL
) STRICT;
"#;

/// The table changes from version 3 to 4; the migration code adds the filing threshold to the
/// MACed settings.
pub(crate) const MIGRATE_V3_TO_V4: &str = GOVERNANCE_TABLE;

/// The table changes from version 2 to 3; the migration code moves the one model's settings
/// from `meta` into the new table.
pub(crate) const MIGRATE_V2_TO_V3: &str = MODELS_TABLE;

/// The table changes from version 1 to 2; the migration code fills the new audit table.
pub(crate) const MIGRATE_V1_TO_V2: &str = r#"
ALTER TABLE audit RENAME TO audit_v1;
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY NOT NULL,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL,
    epoch   INTEGER NOT NULL,
    hash    BLOB NOT NULL CHECK (length(hash) = 32),
    mac     BLOB NOT NULL CHECK (length(mac) = 32)
) STRICT;
ALTER TABLE principals ADD COLUMN lockouts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE principals ADD COLUMN locked_until INTEGER;

CREATE TABLE throttles (
    kind            TEXT NOT NULL CHECK (kind IN ('subject', 'principal')),
    key             BLOB NOT NULL,
    failures        INTEGER NOT NULL,
    next_allowed_at INTEGER NOT NULL,
    disabled        INTEGER NOT NULL CHECK (disabled IN (0, 1)),
    window_start    INTEGER NOT NULL,
    window_count    INTEGER NOT NULL,
    mac             BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT, WITHOUT ROWID;
"#;

/// Each table of the current format with its columns, in order (section 6 of `docs/format.md`).
const COLUMNS: [(&str, &[&str]); 9] = [
    ("meta", &["key", "value"]),
    (
        "subjects",
        &[
            "id",
            "created_at",
            "expires_at",
            "minor",
            "templates",
            "wrapped_key",
            "personal",
            "mac",
        ],
    ),
    ("notices", &["seq", "version", "published_at", "body", "mac"]),
    (
        "consents",
        &[
            "id",
            "subject_id",
            "kind",
            "notice_version",
            "given_at",
            "by_guardian",
            "withdrawn_at",
            "erased_at",
            "evidence",
            "mac",
        ],
    ),
    (
        "templates",
        &[
            "id",
            "subject_id",
            "model",
            "dim",
            "nonce",
            "ciphertext",
            "created_at",
        ],
    ),
    (
        "principals",
        &[
            "name",
            "role",
            "salt",
            "iterations",
            "hash",
            "mac",
            "failures",
            "created_at",
            "lockouts",
            "locked_until",
        ],
    ),
    (
        "audit",
        &[
            "seq", "at", "actor", "action", "subject", "outcome", "detail", "epoch", "hash", "mac",
        ],
    ),
    (
        "models",
        &["seq", "name", "dim", "threshold", "added_at", "retired_at"],
    ),
    ("governance", &["seq", "kind", "recorded_at", "body", "mac"]),
];

/// Checks that every table of the current format is there with its columns, in order: a table
/// dropped or altered in the file is refused at open ([`Error::Integrity`], record `columns`)
/// rather than by the first statement that needs it. (`throttles` is checked by reading it.)
pub(crate) fn check_columns(conn: &Connection) -> Result<()> {
    let mut statement = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    for (table, expected) in COLUMNS {
        let found: Vec<String> = statement
            .query_map([table], |row| row.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        if found != expected {
            return Err(Error::Integrity {
                table,
                record: "columns".into(),
            });
        }
    }
    Ok(())
}

/// An open database file.
pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
    /// The database file, held under an exclusive advisory lock (`flock`) for as long as the
    /// store is open: one process, and one opening, per vault, so that two never work on
    /// copies that drift apart. Declared after `conn` so that it is closed after it: closing
    /// a descriptor of the file drops the process's POSIX locks on it, which SQLite's are.
    _exclusive: std::fs::File,
    /// A plain file opened by a build with the whole-file layer, not yet encrypted.
    plain: bool,
}

/// How long an opening tries for the exclusive lock before it is refused as [`Error::Busy`].
/// Another process that has the vault open holds the lock for as long as it runs, and is
/// refused after this wait. But a vault this process has just closed can be held for a moment
/// longer: a child process that another thread forks (a firmware's `system()`, a test
/// harness's CLI run) shares the lock's open file until it execs, and only then lets it go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Takes the exclusive lock on `file`, trying for [`LOCK_WAIT`] before it fails with
/// [`Error::Busy`].
fn lock_exclusively(file: std::fs::File, path: &Path) -> Result<std::fs::File> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Busy(path.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::Io(e)),
        }
    }
}

impl Store {
    /// Creates a new, empty database at `path` (owner-only permissions) with the current schema,
    /// encrypted as a whole under `master` in a build with the `sqlcipher` feature.
    pub(crate) fn create(path: &Path, master: &MasterKey) -> Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // SQLite gives the WAL and shared-memory files the database file's permissions.
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(path.to_path_buf()),
            _ => Error::Io(e),
        })?;
        let created = lock_exclusively(file, path)
            .and_then(|file| Self::connect(path, file, master))
            .and_then(|store| {
                // Before the first table, the only moment SQLite takes it: a template row (about
                // 2.1 KB at d=512) fills half a 4 KB page, so 16 KB pages hold seven rows at 92%
                // instead of one at 52%, and the opening scan reads half the bytes.
                store
                    .conn
                    .execute_batch(&format!("PRAGMA page_size={PAGE_SIZE};"))?;
                store.configure()?;
                Ok(store)
            });
        let created = created.and_then(|mut store| {
            let tx = store.transaction()?;
            tx.execute_batch(VERSION_2_TABLES)?;
            tx.execute_batch(MODELS_TABLE)?;
            tx.execute_batch(GOVERNANCE_TABLE)?;
            tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
            tx.commit()?;
            Ok(store)
        });
        if created.is_err() {
            // Only the file this call made is removed; nothing that existed before is touched.
            remove_database_files(path);
        }
        created
    }

    /// Opens an existing database without changing it. A version older than [`FORMAT_VERSION`] is
    /// migrated by the vault once it has checked the key.
    pub(crate) fn open(path: &Path, master: &MasterKey) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::NotAVault(format!(
                "{} does not exist or is not a file",
                path.display()
            )));
        }
        // Locked before SQLite reads a byte: a vault open elsewhere is refused untouched.
        let file = lock_exclusively(std::fs::File::open(path)?, path)?;
        #[cfg(feature = "sqlcipher")]
        if whole_file::is_plain(&file)? {
            // A plain vault, from a build without the layer: opened as it is, and encrypted as a
            // whole once the vault has checked it (Store::encrypt_as_a_whole).
            let mut store = Self::connect_unkeyed(path, file)?;
            store.check_schema()?;
            store.configure()?;
            store.plain = true;
            return Ok(store);
        }
        let store = Self::connect(path, file, master)?;
        // With the whole-file layer a wrong key and a file that is not a database look alike: no
        // page decrypts.
        if cfg!(feature = "sqlcipher") && matches!(store.format_version(), Err(Error::NotAVault(_))) {
            return Err(Error::WrongKey);
        }
        store.check_schema()?;
        store.configure()?;
        Ok(store)
    }

    /// The file's format version, once it is known to be a facevault schema this build reads. It
    /// is read before any pragma that could write (journal_mode), so that a file that is not a
    /// vault is refused untouched.
    fn check_schema(&self) -> Result<i64> {
        let version = self.format_version()?;
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count == 1)?;
        if version < OLDEST_FORMAT_VERSION || !has_meta {
            return Err(Error::NotAVault(format!(
                "{} has no facevault schema",
                self.path.display()
            )));
        }
        if version > FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(version)
    }

    /// A connection to `path`, keyed for the whole-file layer when the build has it.
    fn connect(path: &Path, exclusive: std::fs::File, master: &MasterKey) -> Result<Self> {
        let store = Self::connect_unkeyed(path, exclusive)?;
        #[cfg(feature = "sqlcipher")]
        whole_file::key(&store.conn, master)?;
        #[cfg(not(feature = "sqlcipher"))]
        let _ = master;
        Ok(store)
    }

    fn connect_unkeyed(path: &Path, exclusive: std::fs::File) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags_and_vfs(path, flags, crate::vfs::name())?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            _exclusive: exclusive,
            plain: false,
        })
    }

    /// Whether this is a plain file that a build with the whole-file layer (feature `sqlcipher`)
    /// opened, for the vault to encrypt once it has checked it.
    #[cfg_attr(not(feature = "sqlcipher"), allow(dead_code))]
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    /// Encrypts a plain vault as a whole, under `master`'s file key: SQLCipher copies it into a
    /// new keyed file beside it, which is synced and then renamed over it. A crash before the
    /// rename leaves the plain vault as it was (and a stale copy, removed by the next try);
    /// after it, the encrypted one. The lock is held on both files throughout, so no other
    /// opening sees either half-made. The plain file's blocks are freed, not overwritten: a
    /// file system or flash that keeps them keeps them (SECURITY.md).
    #[cfg(feature = "sqlcipher")]
    pub(crate) fn encrypt_as_a_whole(&mut self, master: &MasterKey) -> Result<()> {
        let version = self.format_version()?;
        let copy = with_suffix(&self.path, ".encrypting");
        let copy_lock = whole_file::export_encrypted_copy(&self.conn, &copy, master, version)?;
        let plain = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        plain.close().map_err(|(_, e)| Error::from(e))?;
        for leftover in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(&self.path, leftover));
        }
        crate::faults::check(crate::faults::FaultKind::Rename)?;
        std::fs::rename(&copy, &self.path)?;
        if let Some(parent) = self.path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
        let encrypted = Self::connect(&self.path, copy_lock, master)?;
        encrypted.check_schema()?;
        encrypted.configure()?;
        *self = encrypted;
        Ok(())
    }

    /// The whole database as one plain SQLite image in memory, consistent: SQLite's online backup
    /// into an in-memory database. With the whole-file layer, SQLCipher's export into an unkeyed
    /// one instead, since its backup API does not cross keys. The caller seals the bytes.
    pub(crate) fn snapshot(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        #[cfg(not(feature = "sqlcipher"))]
        {
            let mut memory = Connection::open_in_memory()?;
            rusqlite::backup::Backup::new(&self.conn, &mut memory)?.run_to_completion(
                256,
                std::time::Duration::ZERO,
                None,
            )?;
            let image = memory.serialize(rusqlite::DatabaseName::Main)?;
            let mut image = zeroize::Zeroizing::new(image.to_vec());
            // The backup API copies pages as they are, stale bytes between their cells included.
            crate::vfs::scrub_image(&mut image);
            Ok(image)
        }
        #[cfg(feature = "sqlcipher")]
        {
            let version = self.format_version()?;
            self.conn
                .execute_batch("ATTACH DATABASE ':memory:' AS snapshot KEY '';")?;
            let image = (|| -> Result<zeroize::Zeroizing<Vec<u8>>> {
                self.conn
                    .query_row("SELECT sqlcipher_export('snapshot')", [], |_| Ok(()))?;
                self.conn
                    .execute_batch(&format!("PRAGMA snapshot.user_version = {version};"))?;
                let image = self
                    .conn
                    .serialize(rusqlite::DatabaseName::Attached("snapshot"))?;
                Ok(zeroize::Zeroizing::new(image.to_vec()))
            })();
            let _ = self.conn.execute_batch("DETACH DATABASE snapshot;");
            image
        }
    }

    /// Re-encrypts every page of the file under `new_master`'s file key, in one transaction:
    /// after a crash the file opens under the old key or the new one, never both or neither.
    #[cfg(feature = "sqlcipher")]
    pub(crate) fn rekey_file(&self, new_master: &MasterKey) -> Result<()> {
        whole_file::rekey(&self.conn, new_master)
    }

    fn configure(&self) -> Result<()> {
        let conn = &self.conn;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::NotAVault(format!(
                "{} cannot be put in WAL mode",
                self.path.display()
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             PRAGMA secure_delete=ON;
             PRAGMA journal_size_limit=1048576;
             PRAGMA foreign_keys=ON;
             PRAGMA temp_store=MEMORY;
             PRAGMA cell_size_check=ON;",
        )?;
        Ok(())
    }

    pub(crate) fn format_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => Error::NotAVault(format!(
                    "{} is not a SQLite database, or is one encrypted as a whole, which only a build with the sqlcipher feature opens",
                    self.path.display()
                )),
                _ => Error::from(e),
            })
    }

    /// Starts a write transaction; it rolls back when dropped uncommitted. It takes the write
    /// lock at once (`BEGIN IMMEDIATE`), waiting under the busy timeout: a deferred transaction
    /// that read first and wrote later would fail at once, without waiting, whenever another
    /// connection had committed in between.
    pub(crate) fn transaction(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Rebuilds the database file from its rows (`VACUUM`): SQLite copies every row into a new
    /// database (in memory: `temp_store=MEMORY`) and writes its pages back over the file's, through
    /// the WAL, and the file ends where the rows do. Nothing a row no longer holds is copied: not
    /// the bytes between a page's cells, not a free page. Rowids may change where a table has no
    /// integer key, which nothing here uses.
    pub(crate) fn rebuild_from_rows(&self) -> Result<()> {
        self.conn.execute_batch("VACUUM")?;
        Ok(())
    }

    /// The database file's size in bytes (without its WAL).
    pub(crate) fn file_bytes(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// Copies the WAL into the database and truncates it to zero bytes, so no frame holding an
    /// erased key or ciphertext survives in the WAL file.
    pub(crate) fn checkpoint_truncate(&self) -> Result<()> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy != 0 {
            return Err(Error::Storage(StorageError::Busy {
                detail: "the WAL could not be truncated: another connection is reading".into(),
            }));
        }
        Ok(())
    }
}

// --- row MACs: the state digest ---------------------------------------------------------------

/// The tables whose rows carry a MAC and together make the vault's state: the state digest covers
/// every row of them, so a row deleted from the file, or put back from an older copy, is caught.
///
/// `governance` is there from format version 4 on: in a file of an older version, which has no
/// such table, it adds nothing, and the migration to version 4 creates it (empty) and watches it.
pub(crate) const STATE_TABLES: [&str; 6] = [
    "subjects",
    "consents",
    "notices",
    "principals",
    "throttles",
    "governance",
];

/// The `meta` values the state digest covers too, as if each were a row of a table of its own
/// (`meta:<key>`): the settings' MAC, the audit sealer's state MAC and the verification key waiting
/// for hand-over. An older copy of any of them, put back with its then-valid MAC, or one deleted,
/// no longer adds up.
pub(crate) const STATE_META_KEYS: [&str; 3] = ["settings_mac", "audit_state_mac", "audit_verification_key"];

/// Records, for this connection only, the MAC of every row inserted into, deleted from or updated
/// in the state tables (the old and the new MAC of an update), so that the ledger can bring the
/// state digest up to date in the same transaction. Temporary triggers: nothing of them is in
/// the file.
pub(crate) fn watch_row_macs(conn: &Connection) -> Result<()> {
    let mut sql =
        String::from("CREATE TEMP TABLE IF NOT EXISTS changed_macs(tbl TEXT NOT NULL, mac BLOB NOT NULL);");
    for table in present_state_tables(conn)? {
        sql.push_str(&format!(
            "CREATE TEMP TRIGGER IF NOT EXISTS {table}_inserted AFTER INSERT ON main.{table}
                 BEGIN INSERT INTO changed_macs VALUES ('{table}', NEW.mac); END;
             CREATE TEMP TRIGGER IF NOT EXISTS {table}_deleted AFTER DELETE ON main.{table}
                 BEGIN INSERT INTO changed_macs VALUES ('{table}', OLD.mac); END;
             CREATE TEMP TRIGGER IF NOT EXISTS {table}_updated AFTER UPDATE OF mac ON main.{table}
                 BEGIN INSERT INTO changed_macs VALUES ('{table}', OLD.mac), ('{table}', NEW.mac); END;"
        ));
    }
    let watched = STATE_META_KEYS.map(|key| format!("'{key}'")).join(", ");
    sql.push_str(&format!(
        "CREATE TEMP TRIGGER IF NOT EXISTS meta_inserted AFTER INSERT ON main.meta WHEN NEW.key IN ({watched})
             BEGIN INSERT INTO changed_macs VALUES ('meta:' || NEW.key, NEW.value); END;
         CREATE TEMP TRIGGER IF NOT EXISTS meta_deleted AFTER DELETE ON main.meta WHEN OLD.key IN ({watched})
             BEGIN INSERT INTO changed_macs VALUES ('meta:' || OLD.key, OLD.value); END;
         CREATE TEMP TRIGGER IF NOT EXISTS meta_updated AFTER UPDATE OF value ON main.meta WHEN NEW.key IN ({watched})
             BEGIN INSERT INTO changed_macs VALUES ('meta:' || OLD.key, OLD.value), ('meta:' || NEW.key, NEW.value); END;"
    ));
    conn.execute_batch(&sql)?;
    Ok(())
}

/// The state tables the file has: all of them from format version 4 on (which `check_columns`
/// holds a vault to at open); an older file lacks `governance`.
fn present_state_tables(conn: &Connection) -> Result<Vec<&'static str>> {
    let mut present = Vec::with_capacity(STATE_TABLES.len());
    let mut statement =
        conn.prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1")?;
    for table in STATE_TABLES {
        if statement.exists([table])? {
            present.push(table);
        }
    }
    Ok(present)
}

/// The MACs the triggers recorded since the last call, which it clears.
pub(crate) fn take_changed_macs(conn: &Connection) -> Result<Vec<(String, Vec<u8>)>> {
    let changed = conn
        .prepare_cached("SELECT tbl, mac FROM temp.changed_macs")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    if !changed.is_empty() {
        conn.prepare_cached("DELETE FROM temp.changed_macs")?
            .execute([])?;
    }
    Ok(changed)
}

/// Visits the MAC of every row of the state tables, and the state `meta` values.
pub(crate) fn for_each_row_mac(
    conn: &Connection,
    mut visit: impl FnMut(&str, &[u8]) -> Result<()>,
) -> Result<()> {
    for table in present_state_tables(conn)? {
        let mut statement = conn.prepare(&format!("SELECT mac FROM {table}"))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let mac = row.get_ref(0)?;
            visit(table, mac.as_blob().unwrap_or_default())?;
        }
    }
    for key in STATE_META_KEYS {
        if let Some(value) = meta_get_optional::<Vec<u8>>(conn, key)? {
            visit(&format!("meta:{key}"), &value)?;
        }
    }
    Ok(())
}

// --- meta -------------------------------------------------------------------------------------

// The statements run per record (meta, audit, consents) are cached: a batch enrolment runs each
// of them once per subject, and parsing SQL would otherwise cost more than the work itself.

pub(crate) fn meta_set(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

pub(crate) fn meta_get<T: rusqlite::types::FromSql>(conn: &Connection, key: &str) -> Result<T> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()
        .map_err(|e| match e {
            rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
                Error::NotAVault(format!("metadata {key:?} has the wrong type"))
            }
            other => Error::from(other),
        })?
        .ok_or_else(|| Error::NotAVault(format!("metadata {key:?} is missing")))
}

/// A metadata value, or `None` when the key is absent.
pub(crate) fn meta_get_optional<T: rusqlite::types::FromSql>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>> {
    let present = conn
        .prepare_cached("SELECT 1 FROM meta WHERE key = ?1")?
        .query_row([key], |_| Ok(()))
        .optional()?
        .is_some();
    if present {
        meta_get(conn, key).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn meta_delete(conn: &Connection, key: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

/// The whole-file layer (feature `sqlcipher`): SQLCipher encrypts every page of the database, the
/// WAL's included, under a key from the master key (`crypto::FileKey`), so that what the
/// per-subject envelope leaves readable (counts, expiry times, the audit, the schema) is not.
#[cfg(feature = "sqlcipher")]
mod whole_file {
    use std::path::Path;

    use rusqlite::Connection;
    use zeroize::Zeroizing;

    use super::{lock_exclusively, remove_database_files, PAGE_SIZE};
    use crate::crypto::FileKey;
    use crate::error::{Error, Result};
    use crate::keys::MasterKey;

    /// The first 16 bytes of a plain SQLite file; SQLCipher's file starts with its random salt.
    const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

    /// Whether the file is a plain (unencrypted) SQLite database.
    pub(super) fn is_plain(file: &std::fs::File) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let mut header = [0u8; 16];
        match file.read_exact_at(&mut header, 0) {
            Ok(()) => Ok(&header == PLAIN_HEADER),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// An error of a statement that holds the file key, without the statement: rusqlite puts
    /// the SQL text of a statement that fails to prepare into its error, and errors are printed.
    fn without_sql(error: rusqlite::Error) -> Error {
        match error {
            rusqlite::Error::SqlInputError { error, msg, .. } => {
                Error::from(rusqlite::Error::SqliteFailure(error, Some(msg)))
            }
            other => Error::from(other),
        }
    }

    #[cfg(test)]
    #[test]
    fn a_keyed_statement_s_error_does_not_carry_the_statement() {
        let failed = rusqlite::Error::SqlInputError {
            error: rusqlite::ffi::Error::new(1),
            msg: "near \"x\": syntax error".into(),
            sql: "PRAGMA key = \"x'00112233'\"".into(),
            offset: 13,
        };
        assert!(failed.to_string().contains("00112233"));
        let shown = without_sql(failed).to_string();
        assert!(
            shown.contains("syntax error") && !shown.contains("00112233"),
            "{shown}"
        );
    }

    /// `PRAGMA <name> = "<key>"` in a buffer that is zeroed when dropped.
    fn keyed_statement(prefix: &str, master: &MasterKey, suffix: &str) -> Result<Zeroizing<String>> {
        let key = FileKey::derive(master)?;
        let literal = key.sqlcipher_literal();
        let mut statement = Zeroizing::new(String::with_capacity(
            prefix.len() + literal.len() + suffix.len() + 2,
        ));
        statement.push_str(prefix);
        statement.push('"');
        statement.push_str(&literal);
        statement.push('"');
        statement.push_str(suffix);
        Ok(statement)
    }

    /// Keys a new connection. SQLCipher must know the page size before it reads the first page;
    /// it is the plain file's 16 KB.
    pub(super) fn key(conn: &Connection, master: &MasterKey) -> Result<()> {
        let suffix = format!("; PRAGMA cipher_page_size = {PAGE_SIZE};");
        conn.execute_batch(&keyed_statement("PRAGMA key = ", master, &suffix)?)
            .map_err(without_sql)?;
        Ok(())
    }

    pub(super) fn rekey(conn: &Connection, new_master: &MasterKey) -> Result<()> {
        conn.execute_batch(&keyed_statement("PRAGMA rekey = ", new_master, ";")?)
            .map_err(without_sql)?;
        Ok(())
    }

    /// Copies the open plain database into a new file at `copy`, encrypted under `master`'s
    /// file key, synced; returns the copy, locked. A stale copy from an earlier try is replaced.
    pub(super) fn export_encrypted_copy(
        conn: &Connection,
        copy: &Path,
        master: &MasterKey,
        version: i64,
    ) -> Result<std::fs::File> {
        remove_database_files(copy);
        let copy_lock = {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(copy)?;
            lock_exclusively(file, copy)?
        };
        let copied = (|| -> Result<()> {
            let copy_name = copy
                .to_str()
                .ok_or_else(|| Error::NotAVault(format!("{} is not a UTF-8 path", copy.display())))?;
            let attach = keyed_statement("ATTACH DATABASE ?1 AS encrypted KEY ", master, "")?;
            conn.execute(&attach, [copy_name]).map_err(without_sql)?;
            conn.execute_batch(&format!(
                "PRAGMA encrypted.cipher_page_size = {PAGE_SIZE};
                 SELECT sqlcipher_export('encrypted');
                 PRAGMA encrypted.user_version = {version};
                 DETACH DATABASE encrypted;"
            ))?;
            copy_lock.sync_all()?;
            Ok(())
        })();
        match copied {
            Ok(()) => Ok(copy_lock),
            Err(e) => {
                let _ = conn.execute_batch("DETACH DATABASE encrypted;");
                remove_database_files(copy);
                Err(e)
            }
        }
    }
}

/// Removes a database file and its WAL, shared-memory and journal files, if present.
pub(crate) fn remove_database_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}

/// `path` with `suffix` appended to its file name: SQLite's companion files, a copy beside it.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

// --- subjects and templates -------------------------------------------------------------------

/// What a subject row's MAC covers besides its ID: an edited expiry or minor flag, or a deleted
/// template (the count), is caught.
#[derive(Clone, Copy)]
pub(crate) struct SubjectFacts {
    pub created_at: i64,
    pub expires_at: i64,
    pub minor: bool,
    /// How many templates it holds.
    pub templates: i64,
}

/// A subject row as stored.
pub(crate) struct SubjectRow {
    pub id: [u8; 16],
    pub facts: SubjectFacts,
    pub wrapped_key: Option<Vec<u8>>,
    pub personal: Option<Vec<u8>>,
    pub mac: Vec<u8>,
}

pub(crate) fn insert_subject(conn: &Connection, row: &SubjectRow) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO subjects(id, created_at, expires_at, minor, templates, wrapped_key, personal, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    statement.execute(params![
        &row.id[..],
        row.facts.created_at,
        row.facts.expires_at,
        row.facts.minor,
        row.facts.templates,
        row.wrapped_key,
        row.personal,
        row.mac
    ])?;
    Ok(())
}

/// Records a subject's new template count and the MAC that covers it.
pub(crate) fn set_subject_templates(
    conn: &Connection,
    id: &[u8; 16],
    templates: i64,
    mac: &[u8],
) -> Result<()> {
    conn.execute(
        "UPDATE subjects SET templates = ?1, mac = ?2 WHERE id = ?3",
        params![templates, mac, &id[..]],
    )?;
    Ok(())
}

/// The subject's row; `None` when there is no such subject.
pub(crate) fn subject(conn: &Connection, id: &[u8; 16]) -> Result<Option<SubjectRow>> {
    Ok(conn
        .query_row(
            "SELECT created_at, expires_at, minor, templates, wrapped_key, personal, mac FROM subjects WHERE id = ?1",
            [&id[..]],
            |row| {
                Ok(SubjectRow {
                    id: *id,
                    facts: SubjectFacts {
                        created_at: row.get(0)?,
                        expires_at: row.get(1)?,
                        minor: row.get(2)?,
                        templates: row.get(3)?,
                    },
                    wrapped_key: row.get(4)?,
                    personal: row.get(5)?,
                    mac: row.get(6)?,
                })
            },
        )
        .optional()?)
}

/// A template row as the opening reads it, borrowed from SQLite's row buffer.
pub(crate) struct TemplateRow<'a> {
    pub id: i64,
    pub subject: &'a [u8],
    pub model: &'a str,
    pub dim: i64,
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
}

/// A subject row as the opening reads it: what its MAC covers and its wrapped key, but not its
/// sealed personal data. The ID is as stored, not yet checked to be 16 bytes.
pub(crate) struct SubjectKeyRow {
    pub id: Vec<u8>,
    pub facts: SubjectFacts,
    pub mac: Vec<u8>,
    pub wrapped_key: Option<Vec<u8>>,
}

pub(crate) struct NewTemplate<'a> {
    pub id: i64,
    pub subject: &'a [u8; 16],
    pub model: &'a str,
    pub dim: usize,
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
    pub created_at: i64,
}

pub(crate) fn insert_template(conn: &Connection, template: &NewTemplate<'_>) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO templates(id, subject_id, model, dim, nonce, ciphertext, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    statement.execute(params![
        template.id,
        &template.subject[..],
        template.model,
        template.dim as i64,
        template.nonce,
        template.ciphertext,
        template.created_at
    ])?;
    Ok(())
}

/// The highest template ID stored, or 0.
pub(crate) fn highest_template_id(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM templates", [], |row| row.get(0))?)
}

/// How many subjects and templates are stored.
pub(crate) fn counts(conn: &Connection) -> Result<(usize, usize)> {
    let (subjects, templates): (i64, i64) = conn.query_row(
        "SELECT (SELECT count(*) FROM subjects), (SELECT count(*) FROM templates)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok((
        usize::try_from(subjects).unwrap_or(0),
        usize::try_from(templates).unwrap_or(0),
    ))
}

/// How many subjects the vault holds.
pub(crate) fn subject_count(conn: &Connection) -> Result<usize> {
    let subjects: i64 = conn.query_row("SELECT count(*) FROM subjects", [], |row| row.get(0))?;
    Ok(usize::try_from(subjects).unwrap_or(0))
}

/// Every enrolled subject's ID, in key order.
pub(crate) fn subject_ids(conn: &Connection) -> Result<Vec<[u8; 16]>> {
    let mut statement = conn.prepare("SELECT id FROM subjects ORDER BY id")?;
    let ids = statement
        .query_map([], |row| row.get::<_, [u8; 16]>(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// A subject's stored templates, as (ID, model, dim, nonce, ciphertext), oldest first.
pub(crate) fn templates_of(conn: &Connection, subject: &[u8; 16]) -> Result<Vec<StoredTemplate>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, model, dim, nonce, ciphertext FROM templates WHERE subject_id = ?1 ORDER BY id",
    )?;
    let rows = statement
        .query_map([&subject[..]], |row| {
            Ok(StoredTemplate {
                id: row.get(0)?,
                model: row.get(1)?,
                dim: row.get(2)?,
                nonce: row.get(3)?,
                ciphertext: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// One template row, owned: see [`templates_of`].
pub(crate) struct StoredTemplate {
    pub id: i64,
    pub model: String,
    pub dim: i64,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Visits every subject row, in key order: one sequential pass over the table.
pub(crate) fn for_each_subject(
    conn: &Connection,
    mut visit: impl FnMut(SubjectKeyRow) -> Result<()>,
) -> Result<()> {
    let mut statement =
        conn.prepare("SELECT id, created_at, expires_at, minor, templates, mac, wrapped_key FROM subjects")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        visit(SubjectKeyRow {
            id: row.get(0)?,
            facts: SubjectFacts {
                created_at: row.get(1)?,
                expires_at: row.get(2)?,
                minor: row.get(3)?,
                templates: row.get(4)?,
            },
            mac: row.get(5)?,
            wrapped_key: row.get(6)?,
        })?;
    }
    Ok(())
}

/// Visits every template row in storage order: one sequential pass over the table, each row
/// lent rather than copied.
pub(crate) fn for_each_template(
    conn: &Connection,
    mut visit: impl FnMut(TemplateRow<'_>) -> Result<()>,
) -> Result<()> {
    let mut statement =
        conn.prepare("SELECT id, subject_id, model, dim, nonce, ciphertext FROM templates ORDER BY id")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let wrong_type = |index: usize, value: rusqlite::types::ValueRef<'_>| {
            let found = value.data_type();
            move |e: rusqlite::types::FromSqlError| {
                rusqlite::Error::FromSqlConversionFailure(index, found, Box::new(e))
            }
        };
        let blob = |index: usize| -> Result<&[u8]> {
            let value = row.get_ref(index)?;
            Ok(value.as_blob().map_err(wrong_type(index, value))?)
        };
        let model = row.get_ref(2)?;
        visit(TemplateRow {
            id: row.get(0)?,
            subject: blob(1)?,
            model: model.as_str().map_err(wrong_type(2, model))?,
            dim: row.get(3)?,
            nonce: blob(4)?,
            ciphertext: blob(5)?,
        })?;
    }
    Ok(())
}

/// A face model's row (format version 3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelRow {
    pub seq: i64,
    pub name: String,
    pub dim: i64,
    pub threshold: f64,
    pub added_at: i64,
    pub retired_at: Option<i64>,
}

/// Every model, in the order they were added.
pub(crate) fn models(conn: &Connection) -> Result<Vec<ModelRow>> {
    let mut statement =
        conn.prepare("SELECT seq, name, dim, threshold, added_at, retired_at FROM models ORDER BY seq")?;
    let rows = statement
        .query_map([], |row| {
            Ok(ModelRow {
                seq: row.get(0)?,
                name: row.get(1)?,
                dim: row.get(2)?,
                threshold: row.get(3)?,
                added_at: row.get(4)?,
                retired_at: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

// --- governance records ------------------------------------------------------------------------

/// A governance record as stored: a profile, an assessment, a calendar or a filing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GovernanceRow {
    pub seq: i64,
    pub kind: String,
    pub recorded_at: i64,
    pub body: String,
    pub mac: Vec<u8>,
}

/// Every governance record, oldest first.
pub(crate) fn governance_records(conn: &Connection) -> Result<Vec<GovernanceRow>> {
    let mut statement =
        conn.prepare_cached("SELECT seq, kind, recorded_at, body, mac FROM governance ORDER BY seq")?;
    let rows = statement
        .query_map([], |row| {
            Ok(GovernanceRow {
                seq: row.get(0)?,
                kind: row.get(1)?,
                recorded_at: row.get(2)?,
                body: row.get(3)?,
                mac: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Appends a governance record.
pub(crate) fn insert_governance(conn: &Connection, row: &GovernanceRow) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO governance(seq, kind, recorded_at, body, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![row.seq, row.kind, row.recorded_at, row.body, row.mac])?;
    Ok(())
}

/// The distinct persons whose face data the vault stores: enrolled subjects holding a template
/// (one left bare by a model's retirement holds none).
pub(crate) fn persons_stored(conn: &Connection) -> Result<u64> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM subjects WHERE templates > 0")?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Subjects holding an active (not withdrawn, not erased) transfer consent.
pub(crate) fn active_transfer_consents(conn: &Connection) -> Result<u64> {
    let count: i64 = conn.query_row(
        "SELECT count(DISTINCT subject_id) FROM consents
         WHERE kind = 'transfer' AND withdrawn_at IS NULL AND erased_at IS NULL",
        [],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Replaces every model row with `rows`.
pub(crate) fn set_models(conn: &Connection, rows: &[ModelRow]) -> Result<()> {
    conn.execute("DELETE FROM models", [])?;
    let mut statement = conn.prepare_cached(
        "INSERT INTO models(seq, name, dim, threshold, added_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for row in rows {
        statement.execute(params![
            row.seq,
            row.name,
            row.dim,
            row.threshold,
            row.added_at,
            row.retired_at
        ])?;
    }
    Ok(())
}

/// How many templates each model has, by name.
pub(crate) fn templates_per_model(conn: &Connection) -> Result<Vec<(String, usize)>> {
    let mut statement =
        conn.prepare("SELECT model, count(*) FROM templates GROUP BY model ORDER BY model")?;
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(|(model, count)| (model, usize::try_from(count).unwrap_or(0)))
        .collect())
}

/// Each subject with at least one template of `model`, in ID order, with how many it has of
/// that model and how many of every other.
pub(crate) fn holders_of_model(conn: &Connection, model: &str) -> Result<Vec<([u8; 16], usize, usize)>> {
    let mut statement = conn.prepare(
        "SELECT subject_id, sum(model = ?1), sum(model != ?1) FROM templates
         GROUP BY subject_id HAVING sum(model = ?1) > 0 ORDER BY subject_id",
    )?;
    let rows = statement
        .query_map([model], |row| {
            Ok((
                row.get::<_, [u8; 16]>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(|(id, of_model, others)| {
            (
                id,
                usize::try_from(of_model).unwrap_or(0),
                usize::try_from(others).unwrap_or(0),
            )
        })
        .collect())
}

/// The subjects holding a template of `model`, in ID order.
pub(crate) fn subjects_with_model(conn: &Connection, model: &str) -> Result<Vec<[u8; 16]>> {
    let mut statement =
        conn.prepare("SELECT DISTINCT subject_id FROM templates WHERE model = ?1 ORDER BY subject_id")?;
    let ids = statement
        .query_map([model], |row| row.get::<_, [u8; 16]>(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Deletes every template of `model` that `subject` holds; returns how many went.
pub(crate) fn delete_templates_of_model(conn: &Connection, subject: &[u8; 16], model: &str) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM templates WHERE subject_id = ?1 AND model = ?2",
        params![&subject[..], model],
    )?)
}

/// Replaces a template's nonce and ciphertext (a subject's data key changed).
pub(crate) fn reseal_template(conn: &Connection, id: i64, nonce: &[u8], ciphertext: &[u8]) -> Result<()> {
    conn.execute(
        "UPDATE templates SET nonce = ?1, ciphertext = ?2 WHERE id = ?3",
        params![nonce, ciphertext, id],
    )?;
    Ok(())
}

/// Replaces a subject's sealed personal data.
pub(crate) fn set_subject_personal(conn: &Connection, id: &[u8; 16], personal: Option<&[u8]>) -> Result<()> {
    conn.execute(
        "UPDATE subjects SET personal = ?1 WHERE id = ?2",
        params![personal, &id[..]],
    )?;
    Ok(())
}

/// Replaces a subject's wrapped data key and MAC (a migration re-wraps every key).
pub(crate) fn update_subject_key(
    conn: &Connection,
    id: &[u8],
    wrapped_key: Option<&[u8]>,
    mac: &[u8],
) -> Result<()> {
    conn.execute(
        "UPDATE subjects SET wrapped_key = ?1, mac = ?2 WHERE id = ?3",
        params![wrapped_key, mac, id],
    )?;
    Ok(())
}

/// Erases a subject: the wrapped data key first (crypto-shredding), then its templates, then the
/// subject row. Returns how many templates went.
pub(crate) fn erase_subject(conn: &Connection, id: &[u8; 16]) -> Result<usize> {
    conn.execute("UPDATE subjects SET wrapped_key = NULL WHERE id = ?1", [&id[..]])?;
    let templates = conn.execute("DELETE FROM templates WHERE subject_id = ?1", [&id[..]])?;
    conn.execute("DELETE FROM subjects WHERE id = ?1", [&id[..]])?;
    Ok(templates)
}

// --- notices and consents ---------------------------------------------------------------------

/// A published notice as stored.
pub(crate) struct NoticeRow {
    pub seq: i64,
    pub version: String,
    pub published_at: i64,
    pub body: String,
    pub mac: Vec<u8>,
}

/// A notice row from `SELECT seq, version, published_at, body, mac`.
fn notice_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<NoticeRow> {
    Ok(NoticeRow {
        seq: row.get(0)?,
        version: row.get(1)?,
        published_at: row.get(2)?,
        body: row.get(3)?,
        mac: row.get(4)?,
    })
}

pub(crate) fn insert_notice(conn: &Connection, row: &NoticeRow) -> Result<()> {
    conn.execute(
        "INSERT INTO notices(seq, version, published_at, body, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![row.seq, row.version, row.published_at, row.body, row.mac],
    )?;
    Ok(())
}

/// The most recently published notice.
pub(crate) fn current_notice(conn: &Connection) -> Result<Option<NoticeRow>> {
    Ok(conn
        .query_row(
            "SELECT seq, version, published_at, body, mac FROM notices ORDER BY seq DESC LIMIT 1",
            [],
            notice_row,
        )
        .optional()?)
}

/// The notice published as `version`, if any.
pub(crate) fn notice_by_version(conn: &Connection, version: &str) -> Result<Option<NoticeRow>> {
    Ok(conn
        .query_row(
            "SELECT seq, version, published_at, body, mac FROM notices WHERE version = ?1",
            [version],
            notice_row,
        )
        .optional()?)
}

pub(crate) fn notice_published(conn: &Connection, version: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM notices WHERE version = ?1", [version], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Every notice, oldest first.
pub(crate) fn all_notices(conn: &Connection) -> Result<Vec<NoticeRow>> {
    let mut statement =
        conn.prepare("SELECT seq, version, published_at, body, mac FROM notices ORDER BY seq")?;
    let rows = statement.query_map([], notice_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(crate) fn update_notice_mac(conn: &Connection, seq: i64, mac: &[u8]) -> Result<()> {
    conn.execute("UPDATE notices SET mac = ?1 WHERE seq = ?2", params![mac, seq])?;
    Ok(())
}

/// A consent as stored.
#[derive(Clone)]
pub(crate) struct ConsentRow {
    pub id: i64,
    pub subject: [u8; 16],
    pub kind: String,
    pub notice_version: String,
    pub given_at: i64,
    pub by_guardian: bool,
    pub withdrawn_at: Option<i64>,
    pub erased_at: Option<i64>,
    pub evidence: Option<Vec<u8>>,
    pub mac: Vec<u8>,
}

pub(crate) fn next_consent_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM consents")?
        .query_row([], |row| row.get(0))?)
}

pub(crate) fn insert_consent(conn: &Connection, row: &ConsentRow) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO consents(id, subject_id, kind, notice_version, given_at, by_guardian, withdrawn_at,
                              erased_at, evidence, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    statement.execute(params![
        row.id,
        &row.subject[..],
        row.kind,
        row.notice_version,
        row.given_at,
        row.by_guardian,
        row.withdrawn_at,
        row.erased_at,
        row.evidence,
        row.mac
    ])?;
    Ok(())
}

/// Rewrites a consent's mutable columns (withdrawal, erasure, evidence) and its MAC.
pub(crate) fn update_consent(conn: &Connection, row: &ConsentRow) -> Result<()> {
    conn.execute(
        "UPDATE consents SET withdrawn_at = ?1, erased_at = ?2, evidence = ?3, mac = ?4 WHERE id = ?5",
        params![row.withdrawn_at, row.erased_at, row.evidence, row.mac, row.id],
    )?;
    Ok(())
}

/// The IDs of every subject that has consents, erased ones included.
pub(crate) fn consent_subjects(conn: &Connection) -> Result<Vec<[u8; 16]>> {
    let mut statement = conn.prepare("SELECT DISTINCT subject_id FROM consents ORDER BY subject_id")?;
    let ids = statement
        .query_map([], |row| row.get::<_, [u8; 16]>(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// A subject's consents, oldest first.
pub(crate) fn consents_of(conn: &Connection, subject: &[u8; 16]) -> Result<Vec<ConsentRow>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, kind, notice_version, given_at, by_guardian, withdrawn_at, erased_at, evidence, mac
         FROM consents WHERE subject_id = ?1 ORDER BY id",
    )?;
    let rows = statement
        .query_map([&subject[..]], |row| {
            Ok(ConsentRow {
                id: row.get(0)?,
                subject: *subject,
                kind: row.get(1)?,
                notice_version: row.get(2)?,
                given_at: row.get(3)?,
                by_guardian: row.get(4)?,
                withdrawn_at: row.get(5)?,
                erased_at: row.get(6)?,
                evidence: row.get(7)?,
                mac: row.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

// --- principals -------------------------------------------------------------------------------

/// A principal row as stored.
pub(crate) struct PrincipalRow {
    pub role: String,
    pub salt: Vec<u8>,
    pub iterations: i64,
    pub hash: Vec<u8>,
    pub lock: LockState,
    pub mac: Vec<u8>,
}

/// A principal's failed-login state, covered by the row's MAC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LockState {
    /// Consecutive failed logins since the last success or lock.
    pub failures: i64,
    /// Locks so far; each lasts twice as long as the last.
    pub lockouts: i64,
    /// Until when it is locked (`i64::MAX`: until an admin unlocks it).
    pub locked_until: Option<i64>,
}

pub(crate) fn insert_principal(
    conn: &Connection,
    name: &str,
    row: &PrincipalRow,
    created_at: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO principals(name, role, salt, iterations, hash, mac, created_at, failures, lockouts, locked_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            name,
            row.role,
            row.salt,
            row.iterations,
            row.hash,
            row.mac,
            created_at,
            row.lock.failures,
            row.lock.lockouts,
            row.lock.locked_until
        ],
    )?;
    Ok(())
}

/// Rewrites a principal's failed-login state and its MAC.
pub(crate) fn update_principal_lock(
    conn: &Connection,
    name: &str,
    lock: &LockState,
    mac: &[u8],
) -> Result<()> {
    conn.execute(
        "UPDATE principals SET failures = ?1, lockouts = ?2, locked_until = ?3, mac = ?4 WHERE name = ?5",
        params![lock.failures, lock.lockouts, lock.locked_until, mac, name],
    )?;
    Ok(())
}

/// Rewrites a principal's role and its MAC.
pub(crate) fn update_principal_role(conn: &Connection, name: &str, role: &str, mac: &[u8]) -> Result<()> {
    conn.execute(
        "UPDATE principals SET role = ?1, mac = ?2 WHERE name = ?3",
        params![role, mac, name],
    )?;
    Ok(())
}

/// Every principal's name, in order.
pub(crate) fn principal_names(conn: &Connection) -> Result<Vec<String>> {
    let mut statement = conn.prepare("SELECT name FROM principals ORDER BY name")?;
    let names = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

pub(crate) fn find_principal(conn: &Connection, name: &str) -> Result<Option<PrincipalRow>> {
    Ok(conn
        .query_row(
            "SELECT role, salt, iterations, hash, mac, failures, lockouts, locked_until FROM principals WHERE name = ?1",
            [name],
            |row| {
                Ok(PrincipalRow {
                    role: row.get(0)?,
                    salt: row.get(1)?,
                    iterations: row.get(2)?,
                    hash: row.get(3)?,
                    mac: row.get(4)?,
                    lock: LockState {
                        failures: row.get(5)?,
                        lockouts: row.get(6)?,
                        locked_until: row.get(7)?,
                    },
                })
            },
        )
        .optional()?)
}

// --- throttles --------------------------------------------------------------------------------

/// A stored throttle row: its kind (`subject` or `principal`), key, state and MAC.
pub(crate) struct ThrottleRow {
    pub kind: String,
    pub key: Vec<u8>,
    pub failures: i64,
    pub next_allowed_at: i64,
    pub disabled: bool,
    pub window_start: i64,
    pub window_count: i64,
    pub mac: Vec<u8>,
}

pub(crate) fn upsert_throttle(conn: &Connection, row: &ThrottleRow) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO throttles(kind, key, failures, next_allowed_at, disabled, window_start, window_count, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(kind, key) DO UPDATE SET failures = excluded.failures,
             next_allowed_at = excluded.next_allowed_at, disabled = excluded.disabled,
             window_start = excluded.window_start, window_count = excluded.window_count, mac = excluded.mac",
    )?
    .execute(params![
        row.kind,
        row.key,
        row.failures,
        row.next_allowed_at,
        row.disabled,
        row.window_start,
        row.window_count,
        row.mac
    ])?;
    Ok(())
}

pub(crate) fn delete_throttle(conn: &Connection, kind: &str, key: &[u8]) -> Result<()> {
    conn.prepare_cached("DELETE FROM throttles WHERE kind = ?1 AND key = ?2")?
        .execute(params![kind, key])?;
    Ok(())
}

pub(crate) fn throttles(conn: &Connection) -> Result<Vec<ThrottleRow>> {
    let mut statement = conn.prepare(
        "SELECT kind, key, failures, next_allowed_at, disabled, window_start, window_count, mac FROM throttles",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok(ThrottleRow {
                kind: row.get(0)?,
                key: row.get(1)?,
                failures: row.get(2)?,
                next_allowed_at: row.get(3)?,
                disabled: row.get(4)?,
                window_start: row.get(5)?,
                window_count: row.get(6)?,
                mac: row.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The audit records of one action (the alerts), oldest first.
pub(crate) fn audit_records_of_action(conn: &Connection, action: &str) -> Result<Vec<AuditRecord>> {
    let mut records = Vec::new();
    let mut statement = conn.prepare("SELECT seq FROM audit WHERE action = ?1 ORDER BY seq")?;
    let seqs: Vec<i64> = statement
        .query_map([action], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for seq in seqs {
        if let Some(sealed) = audit_record(conn, u64::try_from(seq).unwrap_or(0))? {
            records.push(sealed.record);
        }
    }
    Ok(records)
}

// --- audit ------------------------------------------------------------------------------------

/// Inserts a record the sealer has numbered, chained and MACed.
pub(crate) fn insert_audit(conn: &Connection, sealed: &SealedRecord) -> Result<()> {
    let record = &sealed.record;
    conn.prepare_cached(
        "INSERT INTO audit(seq, at, actor, action, subject, outcome, detail, epoch, hash, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        to_i64(record.seq),
        record.at,
        record.actor,
        record.action,
        record.subject,
        record.outcome.as_str(),
        record.detail,
        to_i64(record.epoch),
        sealed.hash,
        sealed.mac
    ])?;
    Ok(())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The stored record `seq`, if there is one.
pub(crate) fn audit_record(conn: &Connection, seq: u64) -> Result<Option<SealedRecord>> {
    let mut found = None;
    audit_records(conn, seq.saturating_sub(1), Some(1), |record| {
        let record = record?;
        if record.record.seq == seq {
            found = Some(record);
        }
        Ok(())
    })?;
    Ok(found)
}

/// Reads audit records in sequence order, starting after `after_seq`, at most `limit` of them.
pub(crate) fn audit_records(
    conn: &Connection,
    after_seq: u64,
    limit: Option<usize>,
    mut visit: impl FnMut(Result<SealedRecord>) -> Result<()>,
) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, at, actor, action, subject, outcome, detail, epoch, hash, mac FROM audit
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    // SQLite reads a negative LIMIT as none.
    let limit = limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let mut rows = statement.query(params![to_i64(after_seq), limit])?;
    while let Some(row) = rows.next()? {
        let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
        let epoch = u64::try_from(row.get::<_, i64>(7)?);
        let outcome = Outcome::parse(&row.get::<_, String>(5)?);
        let record = match (outcome, epoch) {
            (Some(outcome), Ok(epoch)) => Ok(SealedRecord {
                record: AuditRecord {
                    seq,
                    at: row.get(1)?,
                    epoch,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    subject: row.get(4)?,
                    outcome,
                    detail: row.get(6)?,
                },
                hash: row.get(8)?,
                mac: row.get(9)?,
            }),
            _ => Err(Error::AuditTampered { seq }),
        };
        visit(record)?;
    }
    Ok(())
}

/// Every record of a version-1 audit table (`audit_v1` during the migration), with its MAC.
pub(crate) fn legacy_audit_records(conn: &Connection) -> Result<Vec<(AuditRecord, Vec<u8>)>> {
    let mut statement = conn
        .prepare("SELECT seq, at, actor, action, subject, outcome, detail, mac FROM audit_v1 ORDER BY seq")?;
    let mut rows = statement.query([])?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
        let outcome = Outcome::parse(&row.get::<_, String>(5)?).ok_or(Error::AuditTampered { seq })?;
        records.push((
            AuditRecord {
                seq,
                at: row.get(1)?,
                epoch: 0,
                actor: row.get(2)?,
                action: row.get(3)?,
                subject: row.get(4)?,
                outcome,
                detail: row.get(6)?,
            },
            row.get(7)?,
        ));
    }
    Ok(records)
}
