//! The crate's one error type. Every refusal and failure is a variant carrying typed data, with a
//! message a device engineer understands without the source. None carries a key, a password or a
//! template value: authentication failures say only that they failed, and template errors name the
//! position of a bad value, never the value.

use std::path::PathBuf;

use crate::access::{Action, Role};
use crate::policy::Refusal;
use crate::subject::SubjectId;

/// Everything that can go wrong in facevault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A template or probe was malformed.
    #[error("invalid template: {0}")]
    InvalidTemplate(#[from] TemplateError),

    /// An argument was out of range or malformed.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// The named subject is not enrolled in this vault.
    #[error("no subject {0} is enrolled in this vault")]
    UnknownSubject(SubjectId),

    /// The subject is enrolled but holds no template of the probe's model: it cannot be
    /// verified with that model until it is enrolled in it.
    #[error("subject {subject} holds no template of model {model:?}")]
    NoTemplateOfModel {
        /// The subject.
        subject: SubjectId,
        /// The probe's model.
        model: String,
    },

    /// A model cannot be retired while it is the only model some subjects hold, unless forced.
    #[error(
        "model {model:?} is the only model {subjects} subject(s) hold: re-enrol them with another model first, or retire it with force, which leaves them enrolled with no template"
    )]
    ModelInUse {
        /// The model.
        model: String,
        /// How many subjects hold no other model.
        subjects: usize,
    },

    /// The law, as this vault is configured, refuses the operation.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),

    /// A notice with that version was already published; a change needs a new version.
    #[error("notice version {0:?} was already published; publish changes as a new version")]
    NoticeExists(String),

    /// An export bundle could not be opened.
    #[error("bundle rejected: {0}")]
    Bundle(BundleProblem),

    /// A principal with that name already exists.
    #[error("a user named {0:?} already exists")]
    PrincipalExists(String),

    /// The principal name or password was wrong. Deliberately says no more than that.
    #[error("authentication failed")]
    AuthenticationFailed,

    /// The operation needs an authenticated principal and none was given.
    #[error("authentication required: this operation needs a user")]
    AuthenticationRequired,

    /// The principal's role does not allow the operation.
    #[error("role {role} may not {action}")]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// What it tried to do.
        action: Action,
    },

    /// A session from another vault (or an earlier opening of this one) was presented.
    #[error("the session does not belong to this open vault")]
    ForeignSession,

    /// The session was logged out, or its lifetime ran out: log in again.
    #[error("the session has ended (logged out or expired): log in again")]
    SessionEnded,

    /// The master key does not match the vault's key check value.
    #[error("wrong key: the master key does not open this vault")]
    WrongKey,

    /// A stored record failed authentication: it was edited, corrupted or moved.
    #[error("integrity check failed: {table} record {record} was altered, corrupted or moved")]
    Integrity {
        /// The table holding the record.
        table: &'static str,
        /// The record's key (a subject ID or a row number).
        record: String,
    },

    /// The audit chain is broken at `seq`: that record was edited, removed or reordered.
    #[error("audit log tampered: record {seq} was edited, removed or reordered")]
    AuditTampered {
        /// The first sequence number at which the chain does not verify.
        seq: u64,
    },

    /// The database is older than the vault's rollback counter says it must be: an earlier copy
    /// of the file was put back.
    #[error("rolled back: the database has reached change {database}, but the rollback counter has seen change {counter}; an older copy of the vault was put back")]
    RolledBack {
        /// The change number the database records.
        database: u64,
        /// The change number the counter outside the database has reached.
        counter: u64,
    },

    /// Rows of the vault's state (subjects, consents, notices, principals, throttles) do not add
    /// up to the digest the last commit recorded: a row was deleted from the file, or put back
    /// from an older copy of the vault.
    #[error("rolled back: rows of the vault were deleted or put back from an older copy (the state digest does not match)")]
    RowsRolledBack,

    /// The rollback counter outside the database is missing or unreadable, so a rolled-back copy
    /// could not be told from the current one.
    #[error("rollback counter: {0}")]
    RollbackCounter(String),

    /// The erasure ledger outside the database is unreadable, another vault's, or fails its MAC
    /// chain, or could not be written: an erasure that cannot be recorded there is not made.
    #[error("erasure ledger: {0}")]
    ErasureLedger(String),

    /// A backup that is not one, is another vault's, was made under another master key's root
    /// wrap, or fails authentication or its digest: nothing of it is restored.
    #[error("backup rejected: {0}")]
    BackupRejected(String),

    /// The principal is locked after repeated failed logins: the right password is refused too.
    /// `until` is when the lock lifts by itself; `None` when only an admin can lift it.
    #[error("{}", match until {
        Some(until) => format!("the user is locked after repeated failed logins until {until} (ms since the epoch)"),
        None => "the user is locked after repeated failed logins; an admin must unlock it (user unlock)".to_string(),
    })]
    LockedOut {
        /// When the lock lifts by itself, in milliseconds since the Unix epoch.
        until: Option<i64>,
    },

    /// Throttled: too many failed verifies of one subject, or too many identifies (or misses) by
    /// one principal. `retry_after_ms` is how long to wait; `None` when an admin must reset it
    /// (the terminal falls back to its other method).
    #[error("{}", match retry_after_ms {
        Some(ms) => format!("throttled ({}): try again in {} s", scope.as_str(), (ms + 999) / 1000),
        None => format!("throttled ({}): face verification is off until an admin resets it; use the other method", scope.as_str()),
    })]
    Throttled {
        /// What is throttled.
        scope: ThrottleScope,
        /// Milliseconds to wait.
        retry_after_ms: Option<i64>,
    },

    /// The key file is unusable.
    #[error("key file {path}: {problem}")]
    KeyFile {
        /// Where the key file is.
        path: PathBuf,
        /// What is wrong with it.
        problem: KeyFileProblem,
    },

    /// `create` was asked to make a vault where a file already exists.
    #[error("{0} already exists; refusing to overwrite it")]
    AlreadyExists(PathBuf),

    /// The vault is open already: in another process (the firmware, while the CLI tries), or in
    /// another opening in this one. Only one opening at a time works on a vault file.
    #[error("{} is open in another process or opening; close that first", .0.display())]
    Busy(PathBuf),

    /// The file is not a facevault database, or its metadata is damaged.
    #[error("not a facevault vault: {0}")]
    NotAVault(String),

    /// The vault was written by a newer version of facevault.
    #[error("vault format {found} is newer than this build supports ({supported})")]
    UnsupportedFormat {
        /// The file's format version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },

    /// The database file or the engine under it failed.
    #[error("storage error: {0}")]
    Storage(StorageError),

    /// Lookup audit records could not be written: the lookups they record were answered, but
    /// their records are lost. A caller that reports the lookup's answer must report this too.
    #[error("{lost} lookup audit record(s) could not be written: {cause}")]
    AuditNotWritten {
        /// How many records were lost.
        lost: usize,
        /// Why the writer failed.
        cause: String,
    },

    /// The file system failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// The system random number generator or a primitive failed.
    #[error("cryptographic primitive failed")]
    Crypto,
}

/// How the database failed, in terms a device engineer can act on (the engine's own error type
/// stays inside the crate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database file is damaged: a malformed page or record, a value of the wrong type, or a
    /// file that is not a database at all.
    #[error("the database file is damaged: {detail}")]
    Corrupt {
        /// What the engine found.
        detail: String,
    },
    /// The disk or file system failed: a read or write error, a full disk, a read-only or
    /// vanished file.
    #[error("the disk failed: {detail}")]
    Io {
        /// What the engine reported.
        detail: String,
    },
    /// Another connection kept the database locked past the busy timeout.
    #[error("the database is locked by another connection: {detail}")]
    Busy {
        /// What the engine reported.
        detail: String,
    },
    /// The engine refused a statement for another reason (a constraint, a misuse).
    #[error("the database engine refused the operation: {detail}")]
    Engine {
        /// What the engine reported.
        detail: String,
    },
}

impl StorageError {
    fn from_sqlite(error: &rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let detail = error.to_string();
        match error {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StorageError::Corrupt { detail },
                ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::PermissionDenied
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::NoLargeFileSupport => StorageError::Io { detail },
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StorageError::Busy { detail },
                _ => StorageError::Engine { detail },
            },
            // A STRICT table holds only its declared types, so a value of another type, or one out
            // of range, was written around the engine.
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..) => StorageError::Corrupt { detail },
            _ => StorageError::Engine { detail },
        }
    }
}

// Not part of the public error type: the engine's errors are translated at the crate's edge.
#[doc(hidden)]
impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Error::Storage(StorageError::from_sqlite(&error))
    }
}

/// What a throttle applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThrottleScope {
    /// Verifies of one subject.
    Subject,
    /// Identifies by one principal.
    Principal,
}

impl ThrottleScope {
    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleScope::Subject => "this subject's verifies",
            ThrottleScope::Principal => "this user's identifies",
        }
    }
}

/// What is wrong with a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileProblem {
    /// The file is not exactly 32 bytes long.
    #[error("must hold exactly 32 bytes")]
    WrongLength,
    /// Group or others may read or write it.
    #[error("is readable or writable by group or others; chmod 600 it")]
    TooOpen,
    /// It is not a regular file.
    #[error("is not a regular file")]
    NotAFile,
    /// It does not exist.
    #[error("does not exist")]
    Missing,
}

/// Why an export bundle was rejected. Decryption failures say nothing more: a wrong key and an
/// altered byte look the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleProblem {
    /// It does not start with the bundle magic.
    #[error("not a facevault bundle")]
    NotABundle,
    /// A format version this build does not read.
    #[error("unsupported bundle version {0}")]
    UnsupportedVersion(u8),
    /// Shorter than its header and tag.
    #[error("the bundle is truncated")]
    Truncated,
    /// The key is wrong or a byte was altered.
    #[error("it does not decrypt with this recipient key, or it was altered")]
    DecryptionFailed,
    /// Larger than any bundle facevault makes ([`crate::MAX_BUNDLE_BYTES`]).
    #[error("it is larger than the {} bytes a bundle may hold", crate::MAX_BUNDLE_BYTES)]
    TooLarge,
    /// It decrypted but its contents are not a valid bundle.
    #[error("its contents are malformed")]
    Malformed,
    /// Its signature does not verify: it was altered or forged.
    #[error("its signature does not verify: it was altered or forged")]
    BadSignature,
    /// A vault was expected, and the bundle is unsigned (format version 1).
    #[error("it is unsigned (format version 1), so where it comes from cannot be checked")]
    Unsigned,
    /// It is signed by another vault than the one expected.
    #[error("it is signed by another vault than the one expected")]
    WrongSigner,
    /// It is older than allowed, or dated in the future.
    #[error("it is older than allowed, or dated in the future")]
    Stale,
}

/// What is wrong with a template or probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// No bytes or no values at all.
    #[error("the template is empty")]
    Empty,
    /// A byte length that is not a whole number of f32 values, or of rows.
    #[error("the template data is truncated: {bytes} bytes is not a whole number of {dim}-value rows")]
    Truncated {
        /// The length received.
        bytes: usize,
        /// The vault's dimension.
        dim: usize,
    },
    /// The number of values does not match the vault's dimension.
    #[error("wrong dimension: the vault holds {expected}-value templates, got {got} values")]
    WrongDimension {
        /// The vault's dimension.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// A value is NaN.
    #[error("value {index} of row {row} is NaN")]
    NotANumber {
        /// Row within the input.
        row: usize,
        /// Position within the row.
        index: usize,
    },
    /// A value is infinite.
    #[error("value {index} of row {row} is infinite")]
    Infinite {
        /// Row within the input.
        row: usize,
        /// Position within the row.
        index: usize,
    },
    /// The row has zero length, or one too short to normalise without amplifying noise.
    #[error(
        "row {row} has a length below {} and cannot be normalised (a zero or near-zero vector)",
        crate::template::MIN_NORM
    )]
    ZeroVector {
        /// Row within the input.
        row: usize,
    },
    /// More rows than one call accepts.
    #[error("too many rows: at most {max} in one call")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// The template was produced by a face model the vault does not have.
    #[error("template is from model {got:?}, which this vault does not have (it takes {expected})")]
    WrongModel {
        /// The vault's models in use, comma-separated.
        expected: String,
        /// The template's model.
        got: String,
    },
    /// The template was produced by a face model the vault has retired.
    #[error("model {model:?} is retired: this vault no longer takes its templates or probes")]
    RetiredModel {
        /// The model.
        model: String,
    },
}

/// Broad classes of error, for callers that map errors to exit codes or status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller sent malformed input or bad arguments.
    BadInput,
    /// The request was well-formed but refused: access control or the law.
    Refused,
    /// Wrong key, tampering or corruption.
    Integrity,
    /// Anything else: I/O, the database engine, the platform.
    Other,
}

impl Error {
    /// A stable snake_case identifier, used in the CLI's JSON errors and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidTemplate(e) => match e {
                TemplateError::Empty => "empty_template",
                TemplateError::Truncated { .. } => "truncated_template",
                TemplateError::WrongDimension { .. } => "wrong_dimension",
                TemplateError::NotANumber { .. } => "not_a_number",
                TemplateError::Infinite { .. } => "infinite_value",
                TemplateError::ZeroVector { .. } => "zero_vector",
                TemplateError::TooManyRows { .. } => "too_many_rows",
                TemplateError::WrongModel { .. } => "wrong_model",
                TemplateError::RetiredModel { .. } => "retired_model",
            },
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::Refused(refusal) => refusal.code(),
            Error::NoticeExists(_) => "notice_exists",
            Error::Bundle(_) => "bundle_rejected",
            Error::UnknownSubject(_) => "unknown_subject",
            Error::NoTemplateOfModel { .. } => "no_template_of_model",
            Error::ModelInUse { .. } => "model_in_use",
            Error::PrincipalExists(_) => "user_exists",
            Error::AuthenticationFailed => "authentication_failed",
            Error::AuthenticationRequired => "authentication_required",
            Error::Forbidden { .. } => "forbidden",
            Error::ForeignSession => "foreign_session",
            Error::SessionEnded => "session_ended",
            Error::WrongKey => "wrong_key",
            Error::Integrity { .. } => "integrity",
            Error::AuditTampered { .. } => "audit_tampered",
            Error::KeyFile { .. } => "key_file",
            Error::RolledBack { .. } | Error::RowsRolledBack => "rolled_back",
            Error::ErasureLedger(_) => "erasure_ledger",
            Error::BackupRejected(_) => "backup_rejected",
            Error::RollbackCounter(_) => "rollback_counter",
            Error::LockedOut { .. } => "locked_out",
            Error::Throttled { .. } => "throttled",
            Error::AlreadyExists(_) => "already_exists",
            Error::Busy(_) => "busy",
            Error::NotAVault(_) => "not_a_vault",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::Storage(e) => match e {
                StorageError::Corrupt { .. } => "corrupt",
                StorageError::Io { .. } => "io",
                StorageError::Busy { .. } => "busy",
                StorageError::Engine { .. } => "storage",
            },
            Error::AuditNotWritten { .. } => "audit_not_written",
            Error::Io(_) => "io",
            Error::Crypto => "crypto",
        }
    }

    /// Which broad class the error falls in.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidTemplate(_)
            | Error::InvalidArgument { .. }
            | Error::UnknownSubject(_)
            | Error::NoTemplateOfModel { .. }
            | Error::PrincipalExists(_)
            | Error::NoticeExists(_)
            | Error::AlreadyExists(_) => ErrorClass::BadInput,
            Error::Refused(_)
            | Error::ModelInUse { .. }
            | Error::AuthenticationFailed
            | Error::AuthenticationRequired
            | Error::Forbidden { .. }
            | Error::ForeignSession
            | Error::SessionEnded
            | Error::LockedOut { .. }
            | Error::Throttled { .. } => ErrorClass::Refused,
            Error::WrongKey
            | Error::Integrity { .. }
            | Error::AuditTampered { .. }
            | Error::RolledBack { .. }
            | Error::RowsRolledBack
            | Error::RollbackCounter(_)
            | Error::ErasureLedger(_)
            | Error::BackupRejected(_)
            | Error::Bundle(_)
            | Error::NotAVault(_)
            | Error::Storage(StorageError::Corrupt { .. }) => ErrorClass::Integrity,
            Error::KeyFile { problem, .. } => match problem {
                KeyFileProblem::TooOpen => ErrorClass::Refused,
                KeyFileProblem::WrongLength | KeyFileProblem::NotAFile => ErrorClass::Integrity,
                KeyFileProblem::Missing => ErrorClass::BadInput,
            },
            Error::UnsupportedFormat { .. }
            | Error::Busy(_)
            | Error::Storage(_)
            | Error::AuditNotWritten { .. }
            | Error::Io(_)
            | Error::Crypto => ErrorClass::Other,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
