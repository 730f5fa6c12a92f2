#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod audit;
mod bundle;
mod clock;
mod crypto;
mod error;
#[cfg(feature = "ffi")]
pub mod ffi;
mod gallery;
mod keys;
mod policy;
mod store;
mod subject;
mod template;
mod vault;
mod vfs;
mod wiped;

#[cfg(feature = "fault-injection")]
pub mod faults;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
/// Without the feature, the fault points cost nothing.
#[cfg(not(feature = "fault-injection"))]
mod faults {
    #[allow(dead_code)]
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum FaultKind {
        Write,
        Sync,
        Truncate,
        Delete,
        Rename,
    }

    #[inline(always)]
    pub(crate) fn check(_kind: FaultKind) -> std::io::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn fails(_kind: FaultKind) -> bool {
        false
    }
}
mod xorshift;

pub use access::{
    Action, Password, Role, RoleSet, ThrottlePolicy, ALL_ROLES, FIRST_LOCKOUT, LOCKOUT_AFTER_FAILURES,
    MAX_TIMED_LOCKOUTS, PASSWORD_ITERATIONS,
};
pub use audit::{
    check_audit_export, AuditExportCheck, AuditRecord, AuditVerificationKey, EpochPolicy, Outcome,
    EPOCH_CLOSE_ACTION,
};
pub use bundle::{
    open as open_bundle, open_checked as open_bundle_checked, BundleContents, BundleExpectations,
    BundleOrigin, BundleSubject, ConsentEvidence, RecipientPublicKey, RecipientSecretKey, MAX_BUNDLE_BYTES,
};
pub use clock::{Clock, ManualClock, SystemClock, UnixMillis};
pub use error::{
    BundleProblem, Error, ErrorClass, KeyFileProblem, Result, StorageError, TemplateError, ThrottleScope,
};
pub use gallery::ScanMode;
pub use keys::{
    counter_path, erasure_path, CounterFile, ErasureFile, ErasureStorage, FixedKey, KeyFile, KeyProvider,
    MasterKey, RollbackCounter, MASTER_KEY_LEN,
};
pub use policy::deployment::{Assessment, DeploymentProfile, Incident, Place};
pub use policy::filing::{Calendar, CalendarFile, DEFAULT_FILING_THRESHOLD};
pub use policy::{
    parse_date, Destination, Enrolment, Guardian, Notice, Refusal, RetentionCeilings,
    MAX_RETENTION_CEILING_SECS,
};
pub use subject::SubjectId;
pub use template::{TemplateInput, MAX_ROWS_PER_CALL};
pub use vault::consent::{PublishedNotice, RenoticeDue, TransferConsent};
pub use vault::{
    decommission_confirmation, ArticleReport, AssessmentRecorded, ComplianceReport, CountItem,
    Decommissioned, FilingClock, FilingEvent, FilingKind, FilingMade, FilingReport, FilingStatus,
    ProcessorItem, ProfileRecorded, Proof, PurposeItem, Recorded, RulesItem, EXPIRY_WARNING_DAYS,
};
pub use vault::{
    AuditCheckpoint, AuditVerification, BackupInfo, Candidate, Compacted, ExportRequest, ExportedBundle,
    ExportedFile, ModelInfo, ModelStatus, OpenOptions, Progress, RestoreOptions, Restored, RetiredModel,
    Session, Stats, SubjectEntry, Vault, VaultConfig, Verification, DEFAULT_PURGE_INTERVAL,
    DEFAULT_SCORE_DECIMALS, DEFAULT_SCORE_ROLES, DEFAULT_THRESHOLD, FLUSH_BATCH, FLUSH_INTERVAL, MAX_DIM,
    MAX_K, MAX_LOOKUP_THREADS, MAX_MODELS, MAX_SCORE_DECIMALS, MAX_TEMPLATES_PER_SUBJECT,
};
