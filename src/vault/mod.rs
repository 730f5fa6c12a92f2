//! The vault: the one door to the data. Every operation goes through [`Vault::authorised_operation`]: the caller's
//! session is checked, its role authorised, the operation carried out inside one SQLite
//! transaction together with its audit records, and the in-memory gallery brought in step only
//! after that transaction commits. A refusal rolls back whatever was begun and is audited in a
//! transaction of its own, so nothing is ever half-written and nothing goes unrecorded.
//!
//! This file holds the door, opening and closing, users, matching and the audit; `consent.rs` the
//! law's operations on the data (notices, enrolment, consent, retention); `export.rs` export;
//! `load.rs` the decryption of every template into the gallery at open.

mod backup;
pub(crate) mod consent;
mod erasures;
mod export;
mod governance;
mod ledger;
mod load;
mod match_log;
mod migrate;
mod models;
mod pipeline;
mod purge_timer;
mod report;
mod throttle;

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use rusqlite::Transaction;
use serde::Serialize;

use crate::wiped::WipedVec;

use crate::access::{self, Action, Credential, Password, Role, RoleSet, ThrottlePolicy};
use crate::audit::{self, AuditRecord, EpochPolicy, MacCheck, Outcome};
use crate::clock::{Clock, SystemClock, UnixMillis};
use crate::crypto::{self, DataKey, RootKey, TemplateBinding, VaultKeys};
use crate::error::TemplateError;
use crate::error::{Error, ErrorClass, Result};
use crate::gallery::{Gallery, Lookup, ScanMode};
use crate::keys::{KeyProvider, MasterKey};
use crate::policy::deployment::DeploymentProfile;
use crate::policy::{self, Refusal, RetentionCeilings, RetentionCheck};
use crate::store::{self, LockState, NewTemplate, PrincipalRow, Store, SubjectFacts, SubjectRow};
use crate::subject::SubjectId;
use crate::template::{self, RowCount, TemplateInput};

pub use backup::{BackupInfo, RestoreOptions, Restored};
pub use export::{ExportRequest, ExportedBundle, ExportedFile};
use governance::Governance;
pub use governance::{
    decommission_confirmation, AssessmentRecorded, Decommissioned, FilingClock, FilingEvent, FilingKind,
    FilingMade, FilingStatus, ProfileRecorded, Recorded,
};
pub use match_log::{FLUSH_BATCH, FLUSH_INTERVAL};
use models::{Galleries, ModelSettings};
pub use models::{ModelInfo, ModelStatus, RetiredModel, MAX_MODELS};
pub use report::{
    ArticleReport, ComplianceReport, CountItem, FilingReport, ProcessorItem, Proof, PurposeItem, RulesItem,
    EXPIRY_WARNING_DAYS,
};

use erasures::{Erasure, ErasureKind};
use ledger::{Ledger, Outside};
use match_log::{lock, ActorName, LookupDetail, LookupEvent, MatchLog, SharedLedger};
use purge_timer::PurgeTimer;
use throttle::Throttles;

/// The match threshold used when `init` is given none: a cosine similarity that separates genuine
/// pairs (typically 0.5–0.8 for ArcFace-style 512-d embeddings) from impostors (0.0–0.3).
pub const DEFAULT_THRESHOLD: f32 = 0.40;
/// The largest template dimension a vault accepts.
pub const MAX_DIM: usize = 4096;
/// The most candidates one identify returns.
pub const MAX_K: usize = 1000;
/// The most candidates one [`Vault::identify_batch`] may ask for: probes × k. An answer, and the
/// memory behind it, grow with both (about 80 MB at this cap, through the CLI's JSON); a larger
/// batch is made as several calls.
pub const MAX_CANDIDATES_PER_CALL: usize = 100_000;
/// The most threads [`Vault::set_lookup_threads`] takes.
pub const MAX_LOOKUP_THREADS: usize = 64;
/// The most templates one subject may hold.
pub const MAX_TEMPLATES_PER_SUBJECT: usize = 32;
/// Scores leave the vault rounded to this many decimals unless configured otherwise
/// ([`VaultConfig::score_decimals`]): an exact score is an oracle for template-reconstruction
/// (hill-climbing) attacks.
pub const DEFAULT_SCORE_DECIMALS: u8 = 2;
/// The most decimals a vault may show.
pub const MAX_SCORE_DECIMALS: u8 = 4;
/// The roles that see scores unless configured otherwise: admins, who tune the threshold. The
/// terminal's operator gets the decision and the subject IDs.
pub const DEFAULT_SCORE_ROLES: RoleSet = RoleSet::ADMIN;
const MAX_MODEL_NAME_LEN: usize = 64;
/// The actor recorded for an attempt made without an authenticated principal.
const ANONYMOUS: &str = "-";
/// The actor recorded for what the vault does as its own duty (a purge at open or on a timer).
const SYSTEM: &str = "system";
/// The actor recorded for a login attempt under a name that is not a principal.
const UNKNOWN_USER: &str = "<unknown user>";

/// What a new vault is fixed to at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultConfig {
    /// Values per template; fixed for the vault's life.
    pub dim: usize,
    /// The face model the templates come from; templates of another model are refused.
    pub model: String,
    /// Cosine similarity at or above which verify answers `match` and identify lists a candidate.
    pub threshold: f32,
    /// The longest an adult's face data may be kept, in seconds (Art. 8).
    pub max_retention_secs: i64,
    /// The longest the face data of someone enrolled under 14 may be kept, in seconds (Art. 7, 8).
    pub max_minor_retention_secs: i64,
    /// The device's offset from UTC in minutes, for the civil date on which ages are counted.
    pub utc_offset_minutes: i32,
    /// How identify scans: the default, [`ScanMode::Fast`], is several times faster than
    /// [`ScanMode::Exact`] and gives its answers unless a row's error bound is missed (a chance
    /// below about 7e-4 per row and lookup; see [`ScanMode::Fast`]).
    pub scan: ScanMode,
    /// When the audit log's sealing key moves on (forward-secure sealing): whoever takes the
    /// device can rewrite at most the current epoch.
    pub audit_epochs: EpochPolicy,
    /// How verifies of a subject and identifies of a principal are throttled.
    pub throttle: ThrottlePolicy,
    /// The roles that see match scores; the others get decisions and subject IDs only.
    pub score_roles: RoleSet,
    /// Decimals a shown score is rounded to (0 to [`MAX_SCORE_DECIMALS`]); decisions are taken
    /// on the rounded score.
    pub score_decimals: u8,
    /// The deployment profile recorded at creation (Arts. 3–4, 10, 13). Without one the vault
    /// enrols and matches no one until an admin records one ([`Vault::set_profile`]).
    pub profile: Option<DeploymentProfile>,
    /// Distinct persons stored at which Art. 15's filing falls due: 100,000 unless changed
    /// (for tests, or a stricter policy).
    pub filing_threshold: u64,
}

impl VaultConfig {
    /// A configuration for `dim`-value templates of `model`, with the default threshold and
    /// retention ceilings, in China Standard Time.
    pub fn new(dim: usize, model: impl Into<String>) -> Self {
        Self {
            dim,
            model: model.into(),
            threshold: DEFAULT_THRESHOLD,
            max_retention_secs: policy::DEFAULT_MAX_RETENTION_SECS,
            max_minor_retention_secs: policy::DEFAULT_MAX_MINOR_RETENTION_SECS,
            utc_offset_minutes: policy::DEFAULT_UTC_OFFSET_MINUTES,
            scan: ScanMode::default(),
            audit_epochs: EpochPolicy::default(),
            throttle: ThrottlePolicy::default(),
            score_roles: DEFAULT_SCORE_ROLES,
            score_decimals: DEFAULT_SCORE_DECIMALS,
            profile: None,
            filing_threshold: policy::filing::DEFAULT_FILING_THRESHOLD,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(1..=MAX_DIM).contains(&self.dim) {
            return Err(invalid("dimension", format!("must be 1 to {MAX_DIM}")));
        }
        let model_ok = !self.model.is_empty()
            && self.model.len() <= MAX_MODEL_NAME_LEN
            && self.model.bytes().all(|b| b.is_ascii_graphic());
        if !model_ok {
            return Err(invalid(
                "model name",
                format!("must be 1 to {MAX_MODEL_NAME_LEN} printable ASCII characters without spaces"),
            ));
        }
        let ceilings = [self.max_retention_secs, self.max_minor_retention_secs];
        if ceilings
            .iter()
            .any(|secs| !(1..=policy::MAX_RETENTION_CEILING_SECS).contains(secs))
        {
            return Err(invalid(
                "retention ceiling",
                format!(
                    "must be a positive period of at most {} days (ten years)",
                    policy::MAX_RETENTION_CEILING_SECS / 86_400
                ),
            ));
        }
        if self.max_minor_retention_secs > self.max_retention_secs {
            return Err(invalid(
                "minor retention ceiling",
                "may not exceed the adult ceiling".into(),
            ));
        }
        self.throttle.check()?;
        if self.score_decimals > MAX_SCORE_DECIMALS {
            return Err(invalid(
                "score decimals",
                format!("must be 0 to {MAX_SCORE_DECIMALS}"),
            ));
        }
        if self.audit_epochs.max_records < 2 || self.audit_epochs.max_millis < 1000 {
            return Err(invalid(
                "audit epoch",
                "must last at least 2 records and at least one second".into(),
            ));
        }
        if !(-1440..=1440).contains(&self.utc_offset_minutes) {
            return Err(invalid("UTC offset", "must be within ±24 hours".into()));
        }
        if self.filing_threshold == 0 || i64::try_from(self.filing_threshold).is_err() {
            return Err(invalid("filing threshold", "must be a positive count".into()));
        }
        if let Some(profile) = &self.profile {
            policy::deployment::check_profile(profile)?;
        }
        check_threshold(self.threshold).map(drop)
    }
}

fn invalid(what: &'static str, reason: String) -> Error {
    Error::InvalidArgument { what, reason }
}

fn check_k(k: usize) -> Result<()> {
    if (1..=MAX_K).contains(&k) {
        Ok(())
    } else {
        Err(invalid("k", format!("must be 1 to {MAX_K}")))
    }
}

fn check_lookup_threads(threads: usize) -> Result<()> {
    if (1..=MAX_LOOKUP_THREADS).contains(&threads) {
        Ok(())
    } else {
        Err(invalid("threads", format!("must be 1 to {MAX_LOOKUP_THREADS}")))
    }
}

/// A threshold is a cosine similarity from 0 to 1. A negative one would accept a probe pointing
/// away from every template, which no face model's genuine pairs do: it is a slip, not a setting.
/// Negative zero is taken as zero, so that the stored bits and the audit say `0`.
fn check_threshold(threshold: f32) -> Result<f32> {
    if threshold.is_finite() && (0.0..=1.0).contains(&threshold) {
        Ok(threshold + 0.0)
    } else {
        Err(invalid(
            "threshold",
            "must be a cosine similarity from 0 to 1".into(),
        ))
    }
}

/// An authenticated principal, valid only for the vault opening that issued it, until it is
/// logged out ([`Vault::logout`]) or its lifetime ([`OpenOptions::session_lifetime`]) runs out.
#[derive(Debug)]
pub struct Session {
    name: Arc<str>,
    /// The role at login; [`Vault::set_role`] can change it for live sessions (see `authorise`).
    role: Role,
    /// The vault's role generation at login: while it is unchanged, `role` is current.
    role_generation: u64,
    opening: [u8; 16],
    /// When it expires, if the vault gives sessions a lifetime.
    expires_at: Option<UnixMillis>,
    /// Set by [`Vault::logout`]. A flag in the session itself, so that checking it on every
    /// lookup is one atomic load, with no lock and no table shared between threads.
    ended: AtomicBool,
}

impl Session {
    /// Whether it is still good at `now`.
    fn is_live(&self, now: UnixMillis) -> bool {
        !self.ended.load(Ordering::Relaxed) && self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    /// The principal's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The principal's role when it logged in. An admin's [`Vault::set_role`] since then applies
    /// to the session's calls, but does not change this.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// The answer to a 1:1 verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// The subject the probe was compared against.
    pub subject: SubjectId,
    /// The face model of the probe, whose templates it was compared with.
    pub model: Arc<str>,
    /// Whether the best score reached the model's threshold.
    #[serde(rename = "match")]
    pub matched: bool,
    /// The best score over the subject's templates, rounded to the vault's score decimals;
    /// `None` for a role the vault does not show scores to ([`VaultConfig::score_roles`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// One answer of a 1:N identification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The subject.
    pub subject: SubjectId,
    /// The face model of the probe, whose templates it matched.
    pub model: Arc<str>,
    /// Its best score, rounded to the vault's score decimals; `None` for a role the vault does
    /// not show scores to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// An enrolled subject as [`Vault::subjects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectEntry {
    /// The subject.
    pub subject: SubjectId,
    /// When it was enrolled, in milliseconds since the Unix epoch.
    pub enrolled_at: UnixMillis,
    /// When its face data expires (Art. 8).
    pub expires_at: UnixMillis,
    /// Enrolled under 14.
    pub minor: bool,
    /// Templates held.
    pub templates: usize,
}

/// A point of the audit chain: a record's sequence number and MAC. Kept by an auditor after a
/// verification, it lets the next one start there instead of at record 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    /// The record's sequence number (0 for the chain's start).
    pub seq: u64,
    /// The record's chain hash (all zeros for the chain's start). Not secret: a head recorded
    /// by an auditor, against which a later export is checked for a cut tail.
    pub hash: [u8; 32],
}

/// What [`Vault::verify_audit_from`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Records verified in this call, after the starting point.
    pub entries: u64,
    /// The chain's head, now verified: the next verification may start here.
    pub head: AuditCheckpoint,
}

/// What [`Vault::compact`] did: the database file's size before and after (its WAL checkpointed
/// into it both times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compacted {
    /// The file's size before, in bytes.
    pub file_bytes_before: u64,
    /// The file's size after, in bytes.
    pub file_bytes_after: u64,
}

/// Counts and settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Enrolled subjects (including any past retention and not yet purged).
    pub subjects: usize,
    /// Stored templates.
    pub templates: usize,
    /// Values per template of the default model.
    pub dim: usize,
    /// The default model: the one input that names none is taken to be.
    pub model: String,
    /// The default model's match threshold.
    pub threshold: f64,
    /// Every model in use (not retired), oldest first; [`Vault::model_status`] gives more.
    pub models: Vec<String>,
    /// Subjects past their retention, waiting for `purge` (they already never match).
    pub expired: usize,
    /// Subjects consented under an older notice than the current one.
    pub renotice_due: usize,
    /// The current notice version, if one is published.
    pub notice: Option<String>,
    /// Bytes of memory the decrypted gallery holds (0 when it was not loaded).
    pub memory_bytes: usize,
    /// Whether this opening loaded the gallery ([`OpenOptions::load_gallery`]). Without it the
    /// counts are the stored rows', each subject row's MAC checked.
    pub gallery_loaded: bool,
    /// The f32 kernel this CPU runs (`avx512f`, `avx2+fma` or `portable`): the exact scan, verify
    /// and the fast scan's re-rank.
    pub kernel: &'static str,
    /// The fast scan's table-lookup kernel in use (`avx512`, `avx2` or `portable`): the fastest
    /// this CPU runs, unless the environment variable `FACEVAULT_KERNEL` names another.
    pub code_kernel: &'static str,
    /// The CPU's model ("model name" in /proc/cpuinfo on Linux; "unknown" where it cannot be
    /// read), so that the kernels' speed can be read against it.
    pub cpu: String,
    /// How identify scans.
    pub scan: ScanMode,
    /// The vault's bundle-signing public key (Ed25519), hex: a recipient checks bundles against
    /// it (`open-bundle --expect-vault`).
    pub signing_key: String,
    /// The vault's ID, hex: it names the files kept beside the key file (the rollback counter,
    /// the erasure ledger) and is in every backup's header.
    pub vault_id: String,
}

/// The vault's fixed and adjustable settings, MACed in the metadata so that an edit to the file
/// (a lowered threshold, a longer retention, a model row added or removed) is caught at open.
#[derive(Clone)]
struct Settings {
    vault_id: [u8; 16],
    /// Every face model the vault has taken, in the order they were added (format version 3; a
    /// vault of an older version has one). Each has its own gallery.
    models: Vec<ModelSettings>,
    ceilings: RetentionCeilings,
    utc_offset_minutes: i32,
    scan: ScanMode,
    /// How lookups are throttled (format version 2).
    throttle: ThrottlePolicy,
    /// Who sees match scores, and to how many decimals (format version 2).
    score_roles: RoleSet,
    score_decimals: u8,
    /// Distinct persons stored at which Art. 15's filing is due (format version 4).
    filing_threshold: u64,
}

impl Settings {
    /// The index of the default model, the one input that names none is taken to be: the
    /// oldest not retired.
    fn default_index(&self) -> usize {
        models::default_model(&self.models)
    }

    /// The default model.
    fn default_model(&self) -> &ModelSettings {
        &self.models[self.default_index()]
    }

    /// The index of the model a stored template of `name` and `dim` belongs to: one the vault
    /// has not retired, of that dimension. `None` is damage: a vault never stores another.
    fn stored_model(&self, name: &str, dim: i64) -> Option<usize> {
        self.models.iter().position(|model| {
            &*model.name == name && model.retired_at.is_none() && i64::try_from(model.dim) == Ok(dim)
        })
    }

    /// The model `input` names (or the default model when it names none), its index among the
    /// vault's models and its rows validated against its dimension and normalised.
    fn normalise_templates(
        &self,
        input: TemplateInput<'_>,
        count: RowCount,
    ) -> Result<(usize, WipedVec<f32>)> {
        let index = self.model_of(input.declared_model())?;
        let model = &self.models[index];
        let rows = template::normalise_rows(input, model.dim, &model.name, count)?;
        Ok((index, rows))
    }

    /// The index of the model a caller names, or of the default model; a model the vault does
    /// not have, or has retired, is refused.
    fn model_of(&self, declared: Option<&str>) -> Result<usize> {
        let Some(name) = declared else {
            return Ok(self.default_index());
        };
        match self.models.iter().position(|model| &*model.name == name) {
            Some(index) if self.models[index].retired_at.is_none() => Ok(index),
            Some(_) => Err(TemplateError::RetiredModel {
                model: name.to_string(),
            }
            .into()),
            None => Err(TemplateError::WrongModel {
                expected: self.active_model_names(),
                got: name.to_string(),
            }
            .into()),
        }
    }

    /// The models not retired, by name, comma-separated.
    fn active_model_names(&self) -> String {
        let names: Vec<&str> = self
            .models
            .iter()
            .filter(|model| model.retired_at.is_none())
            .map(|model| &*model.name)
            .collect();
        names.join(", ")
    }

    /// The fields the settings MAC covers. Format versions 1 and 2 had one model, whose
    /// dimension, name and threshold came second to fourth; version 1 stopped after the scan
    /// mode. Version 3 covers every model row, after the rest.
    fn mac_fields(&self, format: i64) -> Vec<Vec<u8>> {
        let mut fields = vec![self.vault_id.to_vec()];
        if format < 3 {
            let model = &self.models[0];
            fields.push((model.dim as u64).to_le_bytes().to_vec());
            fields.push(model.name.as_bytes().to_vec());
            fields.push(model.threshold.to_bits().to_le_bytes().to_vec());
        }
        fields.extend([
            self.ceilings.adult_secs.to_le_bytes().to_vec(),
            self.ceilings.minor_secs.to_le_bytes().to_vec(),
            i64::from(self.utc_offset_minutes).to_le_bytes().to_vec(),
            self.scan.as_str().as_bytes().to_vec(),
        ]);
        if format >= 2 {
            fields.extend(self.throttle.mac_fields());
            fields.push(vec![self.score_roles.bits(), self.score_decimals]);
        }
        if format >= 3 {
            fields.push((self.models.len() as u64).to_le_bytes().to_vec());
            for model in &self.models {
                fields.extend(model.mac_fields());
            }
        }
        if format >= 4 {
            fields.push(self.filing_threshold.to_le_bytes().to_vec());
        }
        fields
    }

    /// Scores rounded to the configured decimals.
    fn round_score(&self, score: f32) -> f64 {
        let scale = 10f64.powi(i32::from(self.score_decimals));
        (f64::from(score) * scale).round() / scale
    }

    /// Half a unit of the last reported decimal: raw scores this far below the threshold may
    /// round up to it, and are decided on their rounded value like every other.
    fn rounding_margin(&self) -> f32 {
        (0.5 * 10f64.powi(-i32::from(self.score_decimals))) as f32
    }

    fn write(&self, conn: &rusqlite::Connection, keys: &VaultKeys) -> Result<()> {
        self.write_format(conn, keys, store::FORMAT_VERSION)
    }

    /// The settings as a vault of `format` stores them (a migration writes each version's).
    fn write_format(&self, conn: &rusqlite::Connection, keys: &VaultKeys, format: i64) -> Result<()> {
        if format >= 3 {
            let rows: Vec<store::ModelRow> = self.models.iter().map(ModelSettings::row).collect();
            store::set_models(conn, &rows)?;
        } else {
            let model = &self.models[0];
            store::meta_set(conn, "dim", model.dim as i64)?;
            store::meta_set(conn, "model", &*model.name)?;
            store::meta_set(conn, "threshold", f64::from(model.threshold))?;
        }
        store::meta_set(conn, "max_retention_secs", self.ceilings.adult_secs)?;
        store::meta_set(conn, "max_minor_retention_secs", self.ceilings.minor_secs)?;
        store::meta_set(conn, "utc_offset_minutes", i64::from(self.utc_offset_minutes))?;
        store::meta_set(conn, "scan_mode", self.scan.as_str())?;
        let throttle = &self.throttle;
        store::meta_set(
            conn,
            "throttle_verify_delay_after",
            i64::from(throttle.verify_failures_before_delay),
        )?;
        store::meta_set(
            conn,
            "throttle_verify_disable_after",
            i64::from(throttle.verify_failures_before_disable),
        )?;
        store::meta_set(
            conn,
            "throttle_first_delay_ms",
            i64::try_from(throttle.first_delay.as_millis()).unwrap_or(i64::MAX),
        )?;
        store::meta_set(
            conn,
            "throttle_identify_per_minute",
            i64::from(throttle.identify_per_minute),
        )?;
        store::meta_set(
            conn,
            "throttle_identify_misses",
            i64::from(throttle.identify_misses_before_delay),
        )?;
        store::meta_set(conn, "score_roles", i64::from(self.score_roles.bits()))?;
        store::meta_set(conn, "score_decimals", i64::from(self.score_decimals))?;
        if format >= 4 {
            store::meta_set(
                conn,
                "filing_threshold",
                i64::try_from(self.filing_threshold).unwrap_or(i64::MAX),
            )?;
        }
        store::meta_set(
            conn,
            "settings_mac",
            keys.record_mac("settings", &as_slices(&self.mac_fields(format))),
        )
    }

    fn read(conn: &rusqlite::Connection, vault_id: [u8; 16], keys: &VaultKeys) -> Result<Self> {
        Self::read_format(conn, vault_id, keys, store::FORMAT_VERSION)
    }

    /// The settings as a vault of `format` stores them (version 1 has no throttle or score
    /// policy: the defaults stand in).
    fn read_format(
        conn: &rusqlite::Connection,
        vault_id: [u8; 16],
        keys: &VaultKeys,
        format: i64,
    ) -> Result<Self> {
        let damaged = || Error::Integrity {
            table: "meta",
            record: "settings".into(),
        };
        let small = |key: &str| -> Result<u32> {
            let value: i64 = store::meta_get(conn, key)?;
            u32::try_from(value).map_err(|_| damaged())
        };
        let (throttle, score_roles, score_decimals) = if format >= 2 {
            let first_delay_ms: i64 = store::meta_get(conn, "throttle_first_delay_ms")?;
            let throttle = ThrottlePolicy {
                verify_failures_before_delay: small("throttle_verify_delay_after")?,
                verify_failures_before_disable: small("throttle_verify_disable_after")?,
                first_delay: std::time::Duration::from_millis(
                    u64::try_from(first_delay_ms).map_err(|_| damaged())?,
                ),
                identify_per_minute: small("throttle_identify_per_minute")?,
                identify_misses_before_delay: small("throttle_identify_misses")?,
            };
            let roles = u8::try_from(small("score_roles")?).map_err(|_| damaged())?;
            let decimals = u8::try_from(small("score_decimals")?).map_err(|_| damaged())?;
            (throttle, RoleSet::from_bits(roles), decimals)
        } else {
            (
                ThrottlePolicy::default(),
                DEFAULT_SCORE_ROLES,
                DEFAULT_SCORE_DECIMALS,
            )
        };
        let models = if format >= 3 {
            store::models(conn)?
                .into_iter()
                .map(ModelSettings::from_row)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(damaged)?
        } else {
            // Versions 1 and 2 kept their one model in `meta`.
            let threshold: f64 = store::meta_get(conn, "threshold")?;
            let row = store::ModelRow {
                seq: 1,
                name: store::meta_get(conn, "model")?,
                dim: store::meta_get(conn, "dim")?,
                threshold,
                added_at: store::meta_get(conn, "created_at")?,
                retired_at: None,
            };
            vec![ModelSettings::from_row(row).ok_or_else(damaged)?]
        };
        let offset: i64 = store::meta_get(conn, "utc_offset_minutes")?;
        let filing_threshold = if format >= 4 {
            let threshold: i64 = store::meta_get(conn, "filing_threshold")?;
            u64::try_from(threshold).map_err(|_| damaged())?
        } else {
            policy::filing::DEFAULT_FILING_THRESHOLD
        };
        let settings = Self {
            vault_id,
            models,
            ceilings: RetentionCeilings {
                adult_secs: store::meta_get(conn, "max_retention_secs")?,
                minor_secs: store::meta_get(conn, "max_minor_retention_secs")?,
            },
            utc_offset_minutes: i32::try_from(offset).unwrap_or(i32::MAX),
            scan: store::meta_get::<String>(conn, "scan_mode")?
                .parse()
                .map_err(|_| damaged())?,
            throttle,
            score_roles,
            score_decimals,
            filing_threshold,
        };
        let mac: Vec<u8> = store::meta_get(conn, "settings_mac")?;
        let intact = !settings.models.is_empty()
            && keys.record_mac_matches("settings", &as_slices(&settings.mac_fields(format)), &mac);
        if !intact || settings.score_decimals > MAX_SCORE_DECIMALS {
            return Err(damaged());
        }
        Ok(settings)
    }
}

/// Checks, at open, every `meta` key the settings MAC does not cover: each must be present and
/// of its type (else [`Error::NotAVault`]). `next_template_id` is not authenticated, so it is held
/// to what the file itself shows: above every template ID there is (else [`Error::Integrity`]),
/// since a lowered one would make the next enrolment collide with a stored template.
fn check_metadata(conn: &rusqlite::Connection) -> Result<()> {
    let _created_at: i64 = store::meta_get(conn, "created_at")?;
    let next_template_id: i64 = store::meta_get(conn, "next_template_id")?;
    if next_template_id < 1 || next_template_id <= store::highest_template_id(conn)? {
        return Err(Error::Integrity {
            table: "meta",
            record: "next_template_id".into(),
        });
    }
    Ok(())
}

/// The audit log ends where the sealer's MACed state says: its head record is there, with the
/// head's hash, and nothing follows it. A log dropped, cut or added to is refused at open
/// ([`Error::AuditTampered`]) rather than found by the next write or the next verification.
fn check_audit_head(conn: &rusqlite::Connection, head: &audit::ChainPoint) -> Result<()> {
    let tampered = |seq| Error::AuditTampered { seq };
    // A damaged page is reported as what it is; a table that is not there, as a log cut off.
    let read = |seq: u64| match store::audit_record(conn, seq) {
        Err(e @ Error::Storage(crate::error::StorageError::Corrupt { .. })) => Err(e),
        Err(_) => Ok(None),
        Ok(found) => Ok(found),
    };
    if head.seq > 0 {
        match read(head.seq)? {
            Some(record) if record.hash.as_slice() == head.hash.as_slice() => {}
            Some(_) => return Err(tampered(head.seq)),
            // Cut off: named where the log now ends, as a verification names it.
            None => {
                let last: i64 = conn
                    .query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |row| row.get(0))
                    .unwrap_or(0);
                let first_missing = u64::try_from(last).unwrap_or(0).min(head.seq - 1) + 1;
                return Err(tampered(first_missing));
            }
        }
    }
    match read(head.seq + 1)? {
        None => Ok(()),
        Some(_) => Err(tampered(head.seq + 1)),
    }
}

fn as_slices(fields: &[Vec<u8>]) -> Vec<&[u8]> {
    fields.iter().map(Vec::as_slice).collect()
}

/// A principal row's MAC: its name, role and credential, and its failed-login state, so that
/// neither a role nor a lock can be edited in the file.
fn principal_mac(keys: &VaultKeys, name: &str, row: &PrincipalRow) -> Vec<u8> {
    keys.record_mac("principal", &as_slices(&principal_mac_fields(name, row)))
}

fn principal_mac_fields(name: &str, row: &PrincipalRow) -> Vec<Vec<u8>> {
    vec![
        name.as_bytes().to_vec(),
        row.role.as_bytes().to_vec(),
        row.salt.clone(),
        u64::try_from(row.iterations).unwrap_or(0).to_le_bytes().to_vec(),
        row.hash.clone(),
        row.lock.failures.to_le_bytes().to_vec(),
        row.lock.lockouts.to_le_bytes().to_vec(),
        row.lock
            .locked_until
            .map_or_else(Vec::new, |until| until.to_le_bytes().to_vec()),
    ]
}

/// The MACed fields of a subject row, its ID and its facts, held in place: opening a 1M vault
/// checks a million of them, and five small allocations each cost more than the MAC.
struct SubjectMacFields {
    id: [u8; 16],
    created_at: [u8; 8],
    expires_at: [u8; 8],
    minor: [u8; 1],
    templates: [u8; 8],
}

impl SubjectMacFields {
    fn slices(&self) -> [&[u8]; 5] {
        [
            &self.id,
            &self.created_at,
            &self.expires_at,
            &self.minor,
            &self.templates,
        ]
    }
}

fn subject_mac_fields(id: &[u8; 16], facts: &SubjectFacts) -> SubjectMacFields {
    SubjectMacFields {
        id: *id,
        created_at: facts.created_at.to_le_bytes(),
        expires_at: facts.expires_at.to_le_bytes(),
        minor: [u8::from(facts.minor)],
        templates: facts.templates.to_le_bytes(),
    }
}

/// One audit entry an operation asks the door to write when it succeeds.
struct AuditEntry {
    subject: Option<SubjectId>,
    detail: String,
    /// An alert the operation raised ([`Action::Alert`]), rather than a record of the operation.
    alert: bool,
}

impl AuditEntry {
    fn new(subject: Option<SubjectId>, detail: impl Into<String>) -> Self {
        Self {
            subject,
            detail: detail.into(),
            alert: false,
        }
    }

    /// An alert, listed by [`Vault::alerts`].
    fn alert(detail: impl Into<String>) -> Self {
        Self {
            subject: None,
            detail: detail.into(),
            alert: true,
        }
    }
}

/// Changes to the in-memory state that wait for their transaction to commit.
#[derive(Default)]
struct ChangesAfterCommit {
    new_rows: WipedVec<f32>,
    /// For each new row, in order: its model's index, its subject, the subject's expiry, and
    /// the template ID. Each row is its model's dimension long.
    new_row_owners: Vec<(usize, SubjectId, UnixMillis, i64)>,
    erased: Vec<SubjectId>,
    /// A model's index and its new threshold.
    threshold: Option<(usize, f32)>,
    /// A model added, with the seed of its gallery's rotation.
    new_model: Option<(ModelSettings, u64)>,
    /// A model retired.
    retired_model: Option<models::Retirement>,
    /// A stored secret (a wrapped root key, an audit key) was replaced or deleted: its old
    /// bytes must leave the WAL.
    secret_replaced: bool,
    /// Close the audit epoch after this operation's records.
    close_epoch: bool,
    /// Subjects whose verify throttle an admin cleared.
    throttles_reset: Vec<SubjectId>,
    /// A principal's new role.
    role_change: Option<(String, Role)>,
    /// The governance records with one or more appended.
    governance: Option<Governance>,
}

/// What an operation's body may touch: the open transaction and read-only views of the rest.
struct OperationContext<'a> {
    tx: &'a Transaction<'a>,
    keys: &'a VaultKeys,
    settings: &'a Settings,
    /// The governance records as they were before this operation.
    governance: &'a Governance,
    /// The galleries, when this opening loaded them: data changes read the store, which is the
    /// truth; this is only for what the galleries answer more cheaply (a count, the expired).
    galleries: Option<&'a Galleries>,
    now: UnixMillis,
    pending: ChangesAfterCommit,
    /// Templates stored before this operation, counted on first need.
    stored_templates: Option<usize>,
    /// The vault's progress observer, if any.
    progress: Option<Progress>,
}

impl OperationContext<'_> {
    fn normalise_templates(
        &self,
        input: TemplateInput<'_>,
        count: RowCount,
    ) -> Result<(usize, WipedVec<f32>)> {
        self.settings.normalise_templates(input, count)
    }

    fn binding<'b>(&'b self, subject: &'b SubjectId, template_id: i64, model: usize) -> TemplateBinding<'b> {
        let model = &self.settings.models[model];
        TemplateBinding {
            vault_id: &self.settings.vault_id,
            subject: subject.as_bytes(),
            template_id,
            model: &model.name,
            dim: model.dim,
        }
    }

    /// Seals and stores one normalised row of model `model`, and queues it for its gallery.
    fn store_template(
        &mut self,
        model: usize,
        subject: SubjectId,
        expires_at: UnixMillis,
        key: &DataKey,
        row: &[f32],
        next_id: &mut i64,
    ) -> Result<()> {
        let stored = match (self.stored_templates, self.galleries) {
            (Some(stored), _) => stored,
            (None, Some(galleries)) => galleries.template_count(),
            (None, None) => store::counts(self.tx)?.1,
        };
        self.stored_templates = Some(stored);
        if stored + self.pending.new_row_owners.len() >= Gallery::MAX_ROWS {
            let reason = format!(
                "the vault already holds its maximum of {} templates",
                Gallery::MAX_ROWS
            );
            return Err(invalid("template", reason));
        }
        let template_id = *next_id;
        *next_id += 1;
        let sealed = crypto::seal_template(key, &self.binding(&subject, template_id, model), row)?;
        let settings = &self.settings.models[model];
        store::insert_template(
            self.tx,
            &NewTemplate {
                id: template_id,
                subject: subject.as_bytes(),
                model: &settings.name,
                dim: settings.dim,
                nonce: &sealed.nonce,
                ciphertext: &sealed.ciphertext,
                created_at: self.now,
            },
        )?;
        self.pending.new_rows.extend_from_slice(row);
        self.pending
            .new_row_owners
            .push((model, subject, expires_at, template_id));
        Ok(())
    }

    /// The stored row of an enrolled subject, its MAC checked.
    fn subject_row(&self, subject: &SubjectId) -> Result<SubjectRow> {
        let row = store::subject(self.tx, subject.as_bytes())?.ok_or(Error::UnknownSubject(*subject))?;
        if !self.keys.record_mac_matches(
            "subject",
            &subject_mac_fields(&row.id, &row.facts).slices(),
            &row.mac,
        ) {
            return Err(Error::Integrity {
                table: "subjects",
                record: subject.to_string(),
            });
        }
        Ok(row)
    }

    /// An enrolled subject's data key.
    fn subject_key(&self, subject: &SubjectId) -> Result<DataKey> {
        let row = self.subject_row(subject)?;
        row.wrapped_key
            .as_deref()
            .and_then(|wrapped| {
                self.keys
                    .unwrap(&self.settings.vault_id, subject.as_bytes(), wrapped)
            })
            .ok_or_else(|| Error::Integrity {
                table: "subjects",
                record: subject.to_string(),
            })
    }

    /// Tells the progress observer, if there is one, that `done` of `total` items of `operation`
    /// are done: at the first, every [`PROGRESS_EVERY`] and the last.
    fn report_progress(&self, operation: &'static str, done: usize, total: usize) {
        if let Some(progress) = &self.progress {
            if done == total || done.is_multiple_of(PROGRESS_EVERY) {
                progress(operation, done, total);
            }
        }
    }

    /// Visits every subject row in ID order, each MAC checked (a damaged row stops the visit).
    fn for_each_subject(&self, mut visit: impl FnMut(SubjectId, &SubjectFacts)) -> Result<()> {
        store::for_each_subject(self.tx, |row| {
            let damaged = || Error::Integrity {
                table: "subjects",
                record: row.id.iter().map(|b| format!("{b:02x}")).collect(),
            };
            let id: [u8; 16] = row.id.as_slice().try_into().map_err(|_| damaged())?;
            let fields = subject_mac_fields(&id, &row.facts);
            if !self
                .keys
                .record_mac_matches("subject", &fields.slices(), &row.mac)
            {
                return Err(damaged());
            }
            visit(SubjectId::from_bytes(&id).ok_or_else(damaged)?, &row.facts);
            Ok(())
        })
    }

    /// The stored row of a subject within its retention, its MAC checked; refuses a subject that
    /// is not enrolled, or is past its retention.
    fn live_subject(&self, subject: &SubjectId) -> Result<SubjectRow> {
        let row = self.subject_row(subject)?;
        if !policy::is_within_retention(row.facts.expires_at, self.now) {
            return Err(Error::Refused(Refusal::RetentionExpired { subject: *subject }));
        }
        Ok(row)
    }

    fn next_template_id(&self) -> Result<i64> {
        store::meta_get(self.tx, "next_template_id")
    }

    fn set_next_template_id(&self, id: i64) -> Result<()> {
        store::meta_set(self.tx, "next_template_id", id)
    }
}

/// How [`Vault::open_with`] opens a vault.
pub struct OpenOptions {
    /// Where the vault's time comes from.
    pub clock: Arc<dyn Clock>,
    /// Threads each identify may scan with (1 to [`MAX_LOOKUP_THREADS`]); the answers are the
    /// same at any number.
    pub threads: usize,
    /// How long a session from [`Vault::login`] lasts; `None` (the default) for as long as the
    /// vault is open. A desk's session might last a shift; a camera's, the device's uptime.
    pub session_lifetime: Option<std::time::Duration>,
    /// Whether to decrypt every template into the gallery (the default). Without it the opening
    /// takes milliseconds whatever the vault holds, and every operation works except verify and
    /// identify, which are refused: for a tool that enrols, erases, purges, exports or reads the
    /// audit, and then closes.
    pub load_gallery: bool,
    /// How often the vault erases expired subjects by itself, on a thread of its own, while it
    /// is open (Art. 8); `None` for only at the opening and when the host calls
    /// [`Vault::purge_expired`]. The default is [`DEFAULT_PURGE_INTERVAL`]. A purge takes the
    /// store's lock like any write; lookups go on.
    pub purge_interval: Option<std::time::Duration>,
}

/// How often an open vault purges expired subjects by itself unless told otherwise
/// ([`OpenOptions::purge_interval`]): hourly, so that data leaves within an hour of its expiry.
pub const DEFAULT_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            threads: 1,
            session_lifetime: None,
            load_gallery: true,
            purge_interval: Some(DEFAULT_PURGE_INTERVAL),
        }
    }
}

/// An open vault.
///
/// # Threads
///
/// A `Vault` is `Send + Sync`: share it (`Arc<Vault>`, or a scoped borrow) between a camera
/// thread that verifies and identifies and a desk thread that logs in and enrols; its own purge
/// timer thread erases expired subjects ([`OpenOptions::purge_interval`]). Every method takes
/// `&self`.
///
/// - Lookups (verify, identify, identify_batch) run concurrently with each other and with
///   everything else. Each holds a shared read lock on the gallery for its scan, and its scratch
///   space (the normalised probe, the short list) belongs to its thread. It queues its audit
///   record for the match-log writer and never waits for the disk.
/// - Operations that write (enrol, erase, withdraw, purge, consent, notices, users, settings,
///   export, the audit reads) run one at a time: each holds the store's lock for its transaction.
///   The gallery is locked for writing only after the transaction commits, only to publish the
///   change (a few microseconds for one subject; longer for a batch enrolment or a large purge),
///   and a lookup sees the gallery wholly before or wholly after it. A lookup that starts after
///   an erasure returns never sees the erased subject.
/// - `login` reads the principal under the store's lock and hashes the password outside every
///   lock: a login does not hold up lookups or other operations for its 600,000 rounds.
///
/// This is an `RwLock` rather than a copy-on-write snapshot because a gallery is up to a few
/// gigabytes: copying it per change is out of the question, and a change is small.
pub struct Vault {
    /// What writes need, shared with the purge timer's thread.
    core: Arc<Core>,
    /// The queue that audits lookups without waiting for the disk.
    match_log: MatchLog,
    /// Random per opening; sessions carry it, so a session cannot outlive or cross openings.
    opening: [u8; 16],
    /// Threads one identify may scan with; see [`Vault::set_lookup_threads`].
    lookup_threads: AtomicUsize,
    /// How long a session lasts, in milliseconds; `None` for the whole opening.
    session_lifetime: Option<i64>,
    /// Purges expired subjects every [`OpenOptions::purge_interval`]; stopped before the close.
    purge_timer: Option<PurgeTimer>,
}

/// The part of an open vault that writes: the ledger and the state it publishes to lookups. The
/// vault and its purge timer share it.
struct Core {
    /// The store, the keys, the audit sealer and the rollback counter: every write goes through it.
    ledger: SharedLedger,
    /// Verify and identify throttles, checked by every lookup.
    throttles: Throttles,
    /// Moves on each role change; a session from an earlier generation looks its role up in
    /// `changed_roles`, so a change applies to sessions already open, at the cost of one atomic
    /// load per call while nothing changes.
    role_generation: AtomicU64,
    changed_roles: RwLock<std::collections::HashMap<String, Role>>,
    /// What lookups read, published by writers after they commit.
    state: RwLock<LookupState>,
    clock: Arc<dyn Clock>,
    /// Told how far a bulk operation has got; see [`Vault::set_progress`].
    progress: RwLock<Option<Progress>>,
}

impl Core {
    fn new(ledger: SharedLedger, clock: Arc<dyn Clock>, throttles: Throttles, state: LookupState) -> Self {
        Self {
            ledger,
            throttles,
            role_generation: AtomicU64::new(0),
            changed_roles: RwLock::default(),
            state: RwLock::new(state),
            clock,
            progress: RwLock::new(None),
        }
    }

    /// The operation and its audit records (as `actor`) in one transaction, then the in-memory
    /// state; a refusal audited on its own. Callers authorise first, or act as the vault itself.
    fn operation<T>(
        &self,
        actor: &str,
        action: Action,
        subject: Option<SubjectId>,
        body: impl FnOnce(&mut OperationContext<'_>) -> Result<(T, Vec<AuditEntry>)>,
    ) -> Result<T> {
        let mut ledger = lock(&self.ledger);
        // Read under the ledger's lock, so that operations' times follow their commit order.
        let now = self.clock.now();
        let progress = self
            .progress
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let outcome = {
            let state = self.read_state();
            ledger.write(|w| {
                let mut act = OperationContext {
                    tx: w.tx,
                    keys: w.keys,
                    settings: &state.settings,
                    governance: &state.governance,
                    galleries: state.galleries.as_ref(),
                    now,
                    pending: ChangesAfterCommit::default(),
                    stored_templates: None,
                    progress,
                };
                let (value, entries) = body(&mut act)?;
                let pending = act.pending;
                for subject in &pending.erased {
                    store::delete_throttle(w.tx, "subject", subject.as_bytes())?;
                    w.note_erasure(Erasure {
                        subject: *subject,
                        at: now,
                        kind: ErasureKind::of(action),
                    });
                }
                for entry in entries {
                    w.audit(record(
                        now,
                        actor,
                        if entry.alert { Action::Alert } else { action },
                        entry.subject,
                        Outcome::Allowed,
                        entry.detail,
                    ))?;
                }
                if pending.close_epoch {
                    w.close_epoch(now)?;
                }
                Ok((value, pending))
            })
        };
        match outcome {
            Ok((value, pending)) => {
                self.apply(&mut ledger, pending);
                Ok(value)
            }
            Err(e) => {
                let detail = format!("{}: {e}", e.code());
                let attempt = record(self.clock.now(), actor, action, subject, outcome_of(&e), detail);
                write_attempt(&mut ledger, attempt);
                Err(e)
            }
        }
    }

    /// Brings the in-memory state in step with a committed transaction; the caller holds the
    /// ledger's lock.
    fn apply(&self, ledger: &mut Ledger, pending: ChangesAfterCommit) {
        let changes_gallery = !pending.new_row_owners.is_empty() || !pending.erased.is_empty();
        let changes_models =
            pending.threshold.is_some() || pending.new_model.is_some() || pending.retired_model.is_some();
        if changes_gallery || changes_models || pending.governance.is_some() {
            let mut state = self
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let state = &mut *state;
            if let Some((model, seed)) = pending.new_model {
                if let Some(galleries) = &mut state.galleries {
                    galleries.add_model(Gallery::new(model.dim, state.settings.scan, seed));
                }
                state.settings.models.push(model);
            }
            if let Some(models::Retirement {
                index,
                at,
                left_bare,
                seed,
            }) = pending.retired_model
            {
                let model = &mut state.settings.models[index];
                model.retired_at = Some(at);
                let empty = Gallery::new(model.dim, state.settings.scan, seed);
                if let Some(galleries) = &mut state.galleries {
                    galleries.retire(index, &left_bare, empty);
                }
            }
            if let Some(galleries) = &mut state.galleries {
                let mut per_model = vec![0; galleries.model_count()];
                for &(model, ..) in &pending.new_row_owners {
                    per_model[model] += 1;
                }
                for (model, rows) in per_model.into_iter().enumerate().filter(|(_, rows)| *rows > 0) {
                    galleries.model_mut(model).reserve(rows);
                }
                let mut offset = 0;
                for &(model, subject, expires_at, template_id) in &pending.new_row_owners {
                    let dim = state.settings.models[model].dim;
                    let row = &pending.new_rows[offset..offset + dim];
                    offset += dim;
                    let gallery = galleries.model_mut(model);
                    let pushed = gallery.push(subject, expires_at, template_id, row);
                    debug_assert!(pushed, "store_template keeps the gallery below Gallery::MAX_ROWS");
                    galleries.clothe(&subject);
                }
                for subject in &pending.erased {
                    galleries.remove_subject(subject);
                }
            }
            if let Some(governance) = pending.governance {
                state.governance = governance;
            }
            if let Some((index, threshold)) = pending.threshold {
                let model = &mut state.settings.models[index];
                model.threshold = threshold;
                model.threshold_decimal = shortest_f64(threshold);
            }
        }
        if let Some((name, role)) = pending.role_change {
            self.changed_roles
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(name, role);
            self.role_generation.fetch_add(1, Ordering::AcqRel);
        }
        self.throttles.forget_subjects(&pending.erased);
        self.throttles.forget_subjects(&pending.throttles_reset);
        if !pending.erased.is_empty() || pending.secret_replaced {
            ledger.require_truncation();
        }
        // The change is committed either way; a WAL that could not be truncated now is retried
        // after the next write and at close.
        let _ = ledger.truncate_wal_if_due();
    }

    /// The lookup state for reading. A panic while it was written cannot have been inside the
    /// gallery's update halfway (those updates do not panic), so a poisoned lock is still whole.
    fn read_state(&self) -> RwLockReadGuard<'_, LookupState> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An observer of bulk operations' progress: called with the operation's name (`enrol_batch`,
/// `purge`, `export`), the items done and the items in all, from the thread doing the work.
pub type Progress = Arc<dyn Fn(&'static str, usize, usize) + Send + Sync>;

/// Bulk operations report their progress at most once per this many items.
const PROGRESS_EVERY: usize = 256;

/// The settings, the governance records and the galleries: what a lookup reads, under the
/// vault's read lock.
struct LookupState {
    settings: Settings,
    /// The processor's records and the gates they put on enrolment and matching.
    governance: Governance,
    /// `None` when opened without them ([`OpenOptions::load_gallery`]).
    galleries: Option<Galleries>,
}

thread_local! {
    /// Each thread's normalised probe, kept between its lookups (zeroed after each) so that a
    /// lookup allocates nothing for it, and concurrent lookups share no scratch.
    static PROBE: RefCell<WipedVec<f32>> = RefCell::new(WipedVec::default());
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read_state();
        f.debug_struct("Vault")
            .field("models", &state.settings.active_model_names())
            .field(
                "templates",
                &state.galleries.as_ref().map(Galleries::template_count),
            )
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Creates a vault at `path` with its first principal, an admin. Refuses to overwrite a file.
    pub fn create(
        path: &Path,
        keys: &dyn KeyProvider,
        config: &VaultConfig,
        admin: &str,
        admin_password: &Password,
    ) -> Result<Vault> {
        Self::create_with_clock(path, keys, config, admin, admin_password, Arc::new(SystemClock))
    }

    /// [`Vault::create`] with a given clock.
    pub fn create_with_clock(
        path: &Path,
        keys: &dyn KeyProvider,
        config: &VaultConfig,
        admin: &str,
        admin_password: &Password,
        clock: Arc<dyn Clock>,
    ) -> Result<Vault> {
        Gallery::check_code_kernel()?;
        config.validate()?;
        access::check_principal_name(admin)?;
        access::check_new_password(admin_password)?;
        let master = keys.master_key()?;
        // Hashed before the file exists: nothing slow happens while it is half-made.
        let admin_row = new_principal_row(Role::Admin, admin_password)?;
        let mut store = Store::create(path, &master)?;
        let built = (|| {
            let vault_id: [u8; 16] = crypto::random_array()?;
            let root = RootKey::random()?;
            let wrapped_root = root.wrap(&master, &vault_id)?;
            let vault_keys = VaultKeys::from_root(root, &vault_id)?;
            let now = clock.now();
            let first_model = ModelSettings::new(1, &config.model, config.dim, config.threshold + 0.0, now);
            let settings = Settings {
                vault_id,
                models: vec![first_model],
                ceilings: RetentionCeilings {
                    adult_secs: config.max_retention_secs,
                    minor_secs: config.max_minor_retention_secs,
                },
                utc_offset_minutes: config.utc_offset_minutes,
                scan: config.scan,
                throttle: config.throttle,
                score_roles: config.score_roles,
                score_decimals: config.score_decimals,
                filing_threshold: config.filing_threshold,
            };
            {
                let tx = store.transaction()?;
                store::meta_set(&tx, "vault_id", &vault_id[..])?;
                store::meta_set(&tx, "root_key", wrapped_root)?;
                tx.commit()?;
            }
            let outside = Outside::of(keys, &vault_id)?;
            let mut ledger = Ledger::create(store, vault_keys, vault_id, outside, config.audit_epochs)?;
            let governance = ledger.write(|w| {
                store::meta_set(w.tx, "created_at", now)?;
                store::meta_set(w.tx, "next_template_id", 1i64)?;
                settings.write(w.tx, w.keys)?;
                insert_principal(w.tx, w.keys, admin, admin_row, now)?;
                let detail = format!(
                    "dim={} model={} threshold={} max_retention_secs={} max_minor_retention_secs={} scan={} audit_epoch_records={} audit_epoch_secs={}",
                    config.dim,
                    config.model,
                    config.threshold + 0.0,
                    config.max_retention_secs,
                    config.max_minor_retention_secs,
                    config.scan.as_str(),
                    config.audit_epochs.max_records,
                    config.audit_epochs.max_millis / 1000,
                );
                w.audit(record(now, admin, Action::Init, None, Outcome::Allowed, detail))?;
                let mut governance = Governance::empty();
                if let Some(profile) = &config.profile {
                    let detail = governance.record_initial_profile(w.tx, w.keys, now, profile)?;
                    w.audit(record(now, admin, Action::SetProfile, None, Outcome::Allowed, detail))?;
                }
                Ok(governance)
            })?;
            Ok::<_, Error>((ledger, settings, governance))
        })();
        match built {
            Ok((ledger, settings, governance)) => {
                let gallery = Gallery::new(
                    config.dim,
                    settings.scan,
                    u64::from_le_bytes(crypto::random_array()?),
                );
                let ledger = Arc::new(Mutex::new(ledger));
                let throttles = Throttles::new(settings.throttle, Vec::new());
                let state = LookupState {
                    settings,
                    governance,
                    galleries: Some(Galleries::new(vec![gallery], Vec::new())),
                };
                let mut vault = Vault {
                    match_log: MatchLog::start(ledger.clone())?,
                    core: Arc::new(Core::new(ledger, clock, throttles, state)),
                    opening: crypto::random_array()?,
                    lookup_threads: AtomicUsize::new(1),
                    session_lifetime: None,
                    purge_timer: None,
                };
                vault.start_purge_timer(Some(DEFAULT_PURGE_INTERVAL))?;
                Ok(vault)
            }
            Err(e) => {
                store::remove_database_files(path);
                Err(e)
            }
        }
    }

    /// Opens an existing vault with the system clock.
    pub fn open(path: &Path, keys: &dyn KeyProvider) -> Result<Vault> {
        Self::open_with_clock(path, keys, Arc::new(SystemClock))
    }

    /// Opens an existing vault with a given clock, on one thread.
    pub fn open_with_clock(path: &Path, keys: &dyn KeyProvider, clock: Arc<dyn Clock>) -> Result<Vault> {
        Self::open_with(
            path,
            keys,
            OpenOptions {
                clock,
                ..OpenOptions::default()
            },
        )
    }

    /// Opens an existing vault. The key is checked before anything is read or written, and the
    /// rollback counter before anything is written: an older copy of the file is refused
    /// ([`Error::RolledBack`]). A vault of an older format version is then migrated, in one
    /// transaction, audited. Every template is then decrypted into the gallery, and any record
    /// that fails authentication stops the opening with an [`Error::Integrity`] naming it. The
    /// decryption runs on one helper thread beside the calling one, which reads the file; the
    /// helper is gone when this returns. `options.threads` is the number of threads each
    /// identify may scan with ([`Vault::set_lookup_threads`]).
    pub fn open_with(path: &Path, keys: &dyn KeyProvider, options: OpenOptions) -> Result<Vault> {
        let OpenOptions {
            clock,
            threads,
            session_lifetime,
            load_gallery,
            purge_interval,
        } = options;
        let session_lifetime =
            session_lifetime.map(|lifetime| i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX).max(1));
        check_lookup_threads(threads)?;
        Gallery::check_code_kernel()?;
        let master = keys.master_key()?;
        let mut store = Store::open(path, &master)?;
        let vault_id: Vec<u8> = store::meta_get(store.conn(), "vault_id")?;
        let vault_id: [u8; 16] = vault_id
            .try_into()
            .map_err(|_| Error::NotAVault("the vault ID is malformed".into()))?;
        let outside = Outside::of(keys, &vault_id)?;
        let mut ledger = if store.format_version()? == 1 {
            // A counter that has counted changes saw this vault in format 2 already: an older
            // format is a copy put back. Refused before the migration touches the file.
            if let Some(seen) = outside.counter.read()?.filter(|seen| *seen > 0) {
                return Err(Error::RolledBack {
                    database: 0,
                    counter: seen,
                });
            }
            let legacy = VaultKeys::derive_v1(MasterKey::from_bytes(*master.expose_secret()), &vault_id)?;
            let key_check: Vec<u8> = store::meta_get(store.conn(), "key_check")?;
            if !legacy.matches_key_check_value(&key_check) {
                return Err(Error::WrongKey);
            }
            drop(legacy);
            // The counter exists, at 0, before the migration commits: a crash after the commit
            // then finds the migrated vault ahead of it, which is accepted, not a counter missing.
            let mut outside = outside;
            outside.counter.advance_to(0)?;
            let vault_keys = migrate::v1_to_v2(
                &mut store,
                &master,
                &vault_id,
                EpochPolicy::default(),
                clock.now(),
            )?;
            Ledger::after_migration(store, vault_keys, vault_id, outside)?
        } else {
            let (root, rekey) = unwrap_root_key(store.conn(), &master, &vault_id)?;
            let mut ledger = Ledger::open(store, VaultKeys::from_root(root, &vault_id)?, vault_id, outside)?;
            if let Some(rekey) = rekey {
                ledger.write(|w| {
                    store::meta_set(w.tx, "root_key", rekey.root_key)?;
                    store::meta_delete(w.tx, "root_key_next")?;
                    w.audit(record(
                        clock.now(),
                        SYSTEM,
                        Action::Rekey,
                        None,
                        Outcome::Allowed,
                        rekey.detail,
                    ))
                })?;
            }
            ledger
        };
        // A crash between an erasure's commit and its WAL truncation left the erased subject's
        // older frames in the WAL: they go first. (If this fails, the next write tries again.)
        ledger.require_truncation();
        let _ = ledger.truncate_wal_if_due();
        if ledger.store().format_version()? == 2 {
            migrate::v2_to_v3(&mut ledger, path, vault_id, clock.now())?;
        }
        if ledger.store().format_version()? == 3 {
            migrate::v3_to_v4(&mut ledger, path, vault_id, clock.now())?;
        }

        let read = store::check_columns(ledger.store().conn())
            .and_then(|()| Settings::read(ledger.store().conn(), vault_id, ledger.keys()))
            .and_then(|settings| {
                check_metadata(ledger.store().conn())?;
                let sealer = ledger::load_sealer_state(ledger.store().conn(), ledger.keys(), &vault_id)?;
                check_audit_head(ledger.store().conn(), &sealer.head)?;
                let throttles = throttle::load(ledger.store().conn(), ledger.keys())?;
                let governance = Governance::load(ledger.store().conn(), ledger.keys())?;
                Ok((settings, throttles, governance))
            });
        let (settings, throttles, governance) = match read {
            Ok(read) => read,
            Err(e) => {
                let detail = format!("{}: {e}", e.code());
                write_attempt(
                    &mut ledger,
                    record(
                        clock.now(),
                        ANONYMOUS,
                        Action::Open,
                        None,
                        Outcome::Failed,
                        detail,
                    ),
                );
                return Err(e);
            }
        };
        #[cfg(feature = "sqlcipher")]
        if ledger.store().is_plain() {
            ledger.encrypt_store_as_a_whole(&master)?;
            let detail = "the plain file was encrypted as a whole (sqlcipher)".to_string();
            ledger.write(|w| {
                w.audit(record(
                    clock.now(),
                    SYSTEM,
                    Action::Migrate,
                    None,
                    Outcome::Allowed,
                    detail,
                ))
            })?;
        }
        drop(master);
        let galleries = if load_gallery {
            match load::galleries(ledger.store(), &settings, ledger.keys()) {
                Ok(galleries) => Some(galleries),
                Err(e) => {
                    if e.class() == ErrorClass::Integrity {
                        let detail = format!("{}: {e}", e.code());
                        let attempt = record(
                            clock.now(),
                            ANONYMOUS,
                            Action::Open,
                            None,
                            Outcome::Failed,
                            detail,
                        );
                        write_attempt(&mut ledger, attempt);
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        let ledger = Arc::new(Mutex::new(ledger));
        let throttles = Throttles::new(settings.throttle, throttles);
        let state = LookupState {
            settings,
            governance,
            galleries,
        };
        let mut vault = Vault {
            match_log: MatchLog::start(ledger.clone())?,
            core: Arc::new(Core::new(ledger, clock, throttles, state)),
            opening: crypto::random_array()?,
            lookup_threads: AtomicUsize::new(threads),
            session_lifetime,
            purge_timer: None,
        };
        if load_gallery {
            // Art. 8 by itself: subjects that expired while the vault was closed are erased now,
            // not when someone next runs a purge. A purge that fails (a damaged consent of an
            // expired subject, a store held by another process) is audited and does not stop the
            // opening: the expired never match in any case, and the next purge tries again.
            let _ = vault.purge_expired();
        }
        vault.start_purge_timer(purge_interval)?;
        Ok(vault)
    }

    fn start_purge_timer(&mut self, interval: Option<std::time::Duration>) -> Result<()> {
        if let Some(interval) = interval {
            self.purge_timer = Some(PurgeTimer::start(self.core.clone(), interval)?);
        }
        Ok(())
    }

    /// Authenticates a principal. Failures are audited and say nothing about why they failed.
    /// The password is hashed outside every lock: lookups and other operations go on meanwhile.
    ///
    /// After [`access::LOCKOUT_AFTER_FAILURES`] failures in a row the principal is locked, for
    /// [`access::FIRST_LOCKOUT`] the first time and twice as long each time after; after
    /// [`access::MAX_TIMED_LOCKOUTS`] timed locks, until an admin unlocks it
    /// ([`Vault::unlock_user`]). A locked principal is refused ([`Error::LockedOut`]) even with
    /// the right password, without hashing it. The count and the lock are in the principal's MACed
    /// row, written in the same transaction as the failure's audit record: a restart, a reopen or
    /// a crash keeps them.
    pub fn login(&self, name: &str, password: &Password) -> Result<Session> {
        // The ledger's lock only to read and check the row: the password is hashed outside it.
        let found = {
            let ledger = lock(&self.core.ledger);
            checked_principal(ledger.store().conn(), ledger.keys(), name)
        };
        let row = match found {
            Ok(None) => {
                access::burn_password_check(password);
                // The name typed is not recorded: it may be a password typed into the wrong field.
                let detail = "authentication_failed: unknown user";
                self.audit_attempt_detail(UNKNOWN_USER, Action::Login, None, Outcome::Denied, detail);
                return Err(Error::AuthenticationFailed);
            }
            Err(e @ Error::Integrity { .. }) => {
                self.audit_attempt(name, Action::Login, None, Outcome::Failed, &e);
                return Err(e);
            }
            Err(e) => return Err(e),
            Ok(Some(row)) => row,
        };
        let now = self.core.clock.now();
        if let Some(until) = row.lock.locked_until.filter(|until| now < *until) {
            let e = Error::LockedOut {
                until: (until != i64::MAX).then_some(until),
            };
            self.audit_attempt(name, Action::Login, None, Outcome::Denied, &e);
            return Err(e);
        }
        let credential = Credential {
            salt: row.salt.clone(),
            iterations: u32::try_from(row.iterations).unwrap_or(0),
            hash: row.hash.clone(),
        };
        let matched = access::password_matches(password, &credential);
        if !matched || row.lock.failures != 0 || row.lock.locked_until.is_some() {
            // The state is read again under the lock: another login may have moved it while
            // this one hashed.
            let verdict = self.record_login(name, matched)?;
            if let Some(e) = verdict {
                return Err(e);
            }
        }
        let role: Role = row.role.parse().map_err(|_| Error::Integrity {
            table: "principals",
            record: name.to_string(),
        })?;
        let expires_at = self.session_lifetime.map(|lifetime| now.saturating_add(lifetime));
        Ok(Session {
            name: Arc::from(name),
            role,
            role_generation: self.core.role_generation.load(Ordering::Acquire),
            opening: self.opening,
            expires_at,
            ended: AtomicBool::new(false),
        })
    }

    /// Records a login's outcome in the principal's lock state, with its audit records, in one
    /// transaction. Returns the refusal to give, if any.
    fn record_login(&self, name: &str, matched: bool) -> Result<Option<Error>> {
        let mut ledger = lock(&self.core.ledger);
        let now = self.core.clock.now();
        let written = ledger.write(|w| {
            let mut row = checked_principal(w.tx, w.keys, name)?.ok_or(Error::AuthenticationFailed)?;
            if let Some(until) = row.lock.locked_until.filter(|until| now < *until) {
                // Locked by a concurrent failure while this one hashed.
                let e = Error::LockedOut {
                    until: (until != i64::MAX).then_some(until),
                };
                let detail = format!("{}: {e}", e.code());
                w.audit(record(now, name, Action::Login, None, Outcome::Denied, detail))?;
                return Ok(Some(e));
            }
            let (lock_state, verdict) = if matched {
                (LockState::default(), None)
            } else {
                let next = access::after_failed_login(row.lock, now);
                let detail = format!("authentication_failed: wrong password failures={}", next.failures);
                w.audit(record(now, name, Action::Login, None, Outcome::Denied, detail))?;
                if let Some(until) = next
                    .locked_until
                    .filter(|_| row.lock.locked_until != next.locked_until)
                {
                    let detail = match until {
                        i64::MAX => format!("locked until an admin unlocks it (lockout {})", next.lockouts),
                        until => format!("locked until {until} (lockout {})", next.lockouts),
                    };
                    w.audit(record(now, name, Action::Lockout, None, Outcome::Allowed, detail))?;
                }
                (next, Some(Error::AuthenticationFailed))
            };
            row.lock = lock_state;
            let mac = principal_mac(w.keys, name, &row);
            store::update_principal_lock(w.tx, name, &row.lock, &mac)?;
            Ok(verdict)
        });
        match written {
            Ok(verdict) => Ok(verdict),
            Err(e) => {
                drop(ledger);
                self.audit_attempt(name, Action::Login, None, outcome_of(&e), &e);
                Err(e)
            }
        }
    }

    /// Clears a subject's verify throttle: its face verification works again (after the person
    /// was checked by other means, say). Admins only.
    pub fn reset_throttle(&self, session: &Session, subject: &SubjectId) -> Result<()> {
        self.authorised_operation(session, Action::ResetThrottle, Some(*subject), |act| {
            act.subject_row(subject)?;
            store::delete_throttle(act.tx, "subject", subject.as_bytes())?;
            act.pending.throttles_reset.push(*subject);
            Ok((
                (),
                vec![AuditEntry::new(Some(*subject), "verify throttle cleared")],
            ))
        })
    }

    /// The intrusion alerts throttling raised, oldest first. Admins and auditors.
    pub fn alerts(&self, session: &Session) -> Result<Vec<AuditRecord>> {
        self.match_log.flush()?;
        self.authorised_operation(session, Action::ListAlerts, None, |act| {
            let alerts = store::audit_records_of_action(act.tx, Action::Alert.as_str())?;
            let detail = format!("alerts={}", alerts.len());
            Ok((alerts, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Lifts a principal's lock and clears its failure count. Admins only.
    pub fn unlock_user(&self, session: &Session, name: &str) -> Result<()> {
        self.authorised_operation(session, Action::UnlockUser, None, |act| {
            let mut row = checked_principal(act.tx, act.keys, name)?
                .ok_or_else(|| invalid("user", format!("there is no user named {name:?}")))?;
            let before = row.lock;
            row.lock = LockState::default();
            let mac = principal_mac(act.keys, name, &row);
            store::update_principal_lock(act.tx, name, &row.lock, &mac)?;
            let detail = format!(
                "user={name} failures={} lockouts={} was_locked={}",
                before.failures,
                before.lockouts,
                before.locked_until.is_some_and(|until| act.now < until)
            );
            Ok(((), vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Ends a session: every later call with it is refused ([`Error::SessionEnded`]). Audited.
    pub fn logout(&self, session: &Session) -> Result<()> {
        if session.opening != self.opening {
            let e = Error::ForeignSession;
            self.audit_attempt(&session.name, Action::Logout, None, Outcome::Denied, &e);
            return Err(e);
        }
        session.ended.store(true, Ordering::Relaxed);
        self.audit_attempt_detail(&session.name, Action::Logout, None, Outcome::Allowed, "");
        Ok(())
    }

    /// Records an attempt at `action` made without any principal, and returns the refusal to give.
    pub fn refuse_unauthenticated(&self, action: Action) -> Error {
        let e = Error::AuthenticationRequired;
        self.audit_attempt(ANONYMOUS, action, None, Outcome::Denied, &e);
        e
    }

    /// Adds a principal. Admins only.
    pub fn add_user(&self, session: &Session, name: &str, role: Role, password: &Password) -> Result<()> {
        // Hashed outside every lock, and only for a caller the door will let in (it refuses the
        // others before the body runs).
        let row = if self.current_role(session).permits(Action::AddUser) {
            access::check_principal_name(name)
                .and_then(|()| access::check_new_password(password))
                .and_then(|()| new_principal_row(role, password))
        } else {
            Err(Error::AuthenticationRequired)
        };
        self.authorised_operation(session, Action::AddUser, None, |act| {
            let row = row?;
            if store::find_principal(act.tx, name)?.is_some() {
                return Err(Error::PrincipalExists(name.to_string()));
            }
            insert_principal(act.tx, act.keys, name, row, act.now)?;
            Ok((
                (),
                vec![AuditEntry::new(None, format!("user={name} role={role}"))],
            ))
        })
    }

    /// The default model's match threshold, as the shortest decimal that reads back as the
    /// stored value.
    pub fn threshold(&self) -> f64 {
        let state = self.read_state();
        state.settings.default_model().threshold_decimal
    }

    /// The default model: the one input that names no model is taken to be (the oldest not
    /// retired).
    pub fn default_model(&self) -> String {
        let state = self.read_state();
        state.settings.default_model().name.to_string()
    }

    /// A model's match threshold, as the shortest decimal that reads back as the stored value;
    /// `None` if the vault has no such model.
    pub fn model_threshold(&self, model: &str) -> Option<f64> {
        let state = self.read_state();
        let found = state.settings.models.iter().find(|m| &*m.name == model);
        found.map(|m| m.threshold_decimal)
    }

    /// Sets (or, with `None`, removes) the observer told how far a batch enrolment, a purge or an
    /// export has got: a progress bar, say. It runs on the operation's thread, inside its
    /// transaction, so it should be quick.
    pub fn set_progress(&self, observer: Option<Progress>) {
        *self
            .core
            .progress
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = observer;
    }

    /// Changes the default model's match threshold (a cosine similarity from 0 to 1). Admins
    /// only.
    pub fn set_threshold(&self, session: &Session, threshold: f32) -> Result<()> {
        self.set_model_threshold(session, None, threshold)
    }

    /// Changes a model's match threshold (`None`: the default model's). Admins only.
    pub fn set_model_threshold(&self, session: &Session, model: Option<&str>, threshold: f32) -> Result<()> {
        self.authorised_operation(session, Action::SetThreshold, None, |act| {
            let threshold = check_threshold(threshold)?;
            let index = act.settings.model_of(model)?;
            let mut updated = act.settings.clone();
            let changed = &mut updated.models[index];
            let old = changed.threshold;
            changed.threshold = threshold;
            changed.threshold_decimal = shortest_f64(threshold);
            updated.write(act.tx, act.keys)?;
            act.pending.threshold = Some((index, threshold));
            // The shortest decimal that reads back as the same f32: every change that moves a
            // decision shows, however small.
            let detail = format!(
                "model={} threshold {old} -> {threshold}",
                updated.models[index].name
            );
            Ok(((), vec![AuditEntry::new(None, detail)]))
        })
    }

    /// 1:1: compares `probe` with `subject`'s templates. A subject past its retention is refused
    /// ([`Refusal::RetentionExpired`]) whether or not a purge has run.
    pub fn verify<'t>(
        &self,
        session: &Session,
        subject: &SubjectId,
        probe: impl Into<TemplateInput<'t>>,
    ) -> Result<Verification> {
        let probe = probe.into();
        self.lookup(session, Action::Verify, Some(*subject), |act, buffer| {
            probe.prefetch();
            let index = act.settings.model_of(probe.declared_model())?;
            let gallery = act.galleries.model(index);
            gallery.prefetch_subject(subject);
            let (model, probe) = act.normalise_probe(index, probe, buffer)?;
            let score = match gallery.verify(subject, probe, act.retention()) {
                Lookup::Score(score) => score,
                Lookup::Expired => {
                    return Err(Error::Refused(Refusal::RetentionExpired { subject: *subject }))
                }
                Lookup::Unknown if act.galleries.holds(subject) => {
                    return Err(Error::NoTemplateOfModel {
                        subject: *subject,
                        model: model.name.to_string(),
                    })
                }
                Lookup::Unknown => return Err(Error::UnknownSubject(*subject)),
            };
            // The decision is taken on the score as reported, so that a caller never sees
            // "score 0.4, no match" at a threshold of 0.4.
            let score = act.settings.round_score(score);
            let matched = score >= model.threshold_decimal;
            // Throttled subjects are refused here, after the scoring, so that the work and the
            // one critical section are the same for a match, a failure and a refusal.
            act.throttles.gate_verify(subject, matched, act.now, |change| {
                act.match_log.push_throttle(act.now, act.principal, change)
            })?;
            let detail = LookupDetail::Verified { matched, score };
            let verification = Verification {
                subject: *subject,
                model: model.name.clone(),
                matched,
                score: act.show_scores.then_some(score),
            };
            Ok((verification, detail))
        })
    }

    /// 1:N: the `k` best subjects at or above the threshold, best first. Subjects past their
    /// retention are never candidates.
    pub fn identify<'t>(
        &self,
        session: &Session,
        probe: impl Into<TemplateInput<'t>>,
        k: usize,
    ) -> Result<Vec<Candidate>> {
        let probe = probe.into();
        self.lookup(session, Action::Identify, None, |act, buffer| {
            check_k(k)?;
            let index = act.settings.model_of(probe.declared_model())?;
            let (model, probe) = act.normalise_probe(index, probe, buffer)?;
            act.admit_identify(1)?;
            let found = act.galleries.model(index).identify_with_threads(
                probe,
                k,
                model.threshold - act.settings.rounding_margin(),
                act.retention(),
                act.threads,
            );
            Ok(act.candidates(model, k, found))
        })
    }

    /// 1:N for many probes at once, in one pass over the gallery: `probes` holds whole rows, and
    /// the answer for each is what [`Vault::identify`] gives for it, in probe order. Each probe is
    /// audited as an identify of its own; a bad row refuses the whole batch, before any lookup.
    pub fn identify_batch<'t>(
        &self,
        session: &Session,
        probes: impl Into<TemplateInput<'t>>,
        k: usize,
    ) -> Result<Vec<Vec<Candidate>>> {
        let probes = probes.into();
        self.lookup_many(session, Action::Identify, None, |act, _| {
            check_k(k)?;
            let (index, probes) = act.normalise_templates(probes, RowCount::AtLeastOne)?;
            let model = &act.settings.models[index];
            let rows = probes.len() / model.dim;
            if rows.saturating_mul(k) > MAX_CANDIDATES_PER_CALL {
                return Err(invalid(
                    "batch",
                    format!(
                        "{rows} probes at k={k} ask for more than {MAX_CANDIDATES_PER_CALL} candidates in one call; \
                         send fewer probes or a smaller k"
                    ),
                ));
            }
            act.admit_identify(rows)?;
            let floor = model.threshold - act.settings.rounding_margin();
            let found = act.galleries.model(index).identify_batch(&probes, k, floor, act.retention());
            Ok(found
                .into_iter()
                .map(|found| act.candidates(model, k, found))
                .unzip::<_, _, Vec<_>, Vec<_>>())
        })
    }

    /// Lets one identify scan with up to `threads` threads (1, the default, scans on the caller's
    /// thread only). The answers are the same at any setting; it trades other work on the device
    /// for a faster single lookup of a large gallery. Not stored: it lasts for this opening.
    pub fn set_lookup_threads(&self, threads: usize) -> Result<()> {
        check_lookup_threads(threads)?;
        self.lookup_threads.store(threads, Ordering::Relaxed);
        Ok(())
    }

    /// Counts and settings.
    pub fn stats(&self, session: &Session) -> Result<Stats> {
        self.authorised_operation(session, Action::Stats, None, |act| {
            // Every row read here is MAC-checked, as on the paths that change data.
            let notice = act.current_notice()?.map(|n| n.version);
            let renotice_due = match &notice {
                Some(version) => act.renotice_due_subjects(version)?.len(),
                None => 0,
            };
            let (subjects, templates, expired, memory_bytes) = match act.galleries {
                Some(galleries) => {
                    let expired = galleries
                        .subjects()
                        .iter()
                        .filter(|(_, expires_at)| !policy::is_within_retention(*expires_at, act.now))
                        .count();
                    let counts = (galleries.subject_count(), galleries.template_count());
                    (counts.0, counts.1, expired, galleries.memory_bytes())
                }
                None => {
                    let (mut subjects, mut templates, mut expired) = (0, 0, 0);
                    act.for_each_subject(|_, facts| {
                        subjects += 1;
                        templates += usize::try_from(facts.templates).unwrap_or(0);
                        expired += usize::from(!policy::is_within_retention(facts.expires_at, act.now));
                    })?;
                    (subjects, templates, expired, 0)
                }
            };
            let default_model = act.settings.default_model();
            let stats = Stats {
                subjects,
                templates,
                dim: default_model.dim,
                model: default_model.name.to_string(),
                threshold: default_model.threshold_decimal,
                models: act
                    .settings
                    .models
                    .iter()
                    .filter(|m| m.retired_at.is_none())
                    .map(|m| m.name.to_string())
                    .collect(),
                expired,
                renotice_due,
                notice,
                memory_bytes,
                gallery_loaded: act.galleries.is_some(),
                kernel: Gallery::kernel_name(),
                code_kernel: Gallery::code_kernel_name(),
                cpu: Gallery::cpu_model(),
                scan: act.settings.scan,
                signing_key: crate::crypto::hex(&act.keys.signing_public_key()),
                vault_id: crate::crypto::hex(&act.settings.vault_id),
            };
            Ok((stats, vec![AuditEntry::new(None, "")]))
        })
    }

    /// Checks the whole audit chain and returns how many records verified; names the first bad
    /// record otherwise. [`Vault::verify_audit_from`] also returns the head, to start from next time.
    pub fn verify_audit(&self, session: &Session) -> Result<u64> {
        Ok(self.verify_audit_from(session, None)?.entries)
    }

    /// Checks the audit chain from `from`, a point an auditor verified before (see
    /// [`AuditVerification::head`]), or from record 1 when `None`: on the device, that every
    /// later record chains from the last, is in the epoch the chain allows at its place, and ends
    /// at the recorded head in the current epoch; and the MACs of the current epoch's records,
    /// the only ones whose key the device still holds. Earlier epochs' MACs are checked by
    /// [`check_audit_export`] with the verification key. A checkpoint that is not a record of
    /// this chain, with that hash, is refused as tampering at its sequence number.
    pub fn verify_audit_from(
        &self,
        session: &Session,
        from: Option<&AuditCheckpoint>,
    ) -> Result<AuditVerification> {
        self.match_log.flush()?;
        self.authorised_operation(session, Action::AuditVerify, None, |act| {
            let state = ledger::load_sealer_state(act.tx, act.keys, &act.settings.vault_id)?;
            let start = match from {
                None => audit::ChainPoint::genesis(),
                Some(checkpoint) if checkpoint.seq == 0 && checkpoint.hash == audit::GENESIS_HASH => {
                    audit::ChainPoint::genesis()
                }
                Some(checkpoint) => match store::audit_record(act.tx, checkpoint.seq)? {
                    Some(stored) if stored.hash[..] == checkpoint.hash[..] => {
                        audit::ChainPoint::at(&stored.record, checkpoint.hash)
                    }
                    _ => return Err(Error::AuditTampered { seq: checkpoint.seq }),
                },
            };
            let mut records = Vec::new();
            store::audit_records(act.tx, start.seq, None, |record| {
                records.push(record);
                Ok(())
            })?;
            let head = (state.head.seq, &state.head.hash[..]);
            let end = audit::verify_chain(MacCheck::Device(&state.key), &start, records, Some(head))?;
            let verification = AuditVerification {
                entries: end.seq - start.seq,
                head: AuditCheckpoint {
                    seq: end.seq,
                    hash: end.hash,
                },
            };
            let detail = match start.seq {
                0 => format!("entries={}", verification.entries),
                from => format!("from={from} entries={}", verification.entries),
            };
            Ok((verification, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Hands the audit verification key (the key of epoch 0, from which every epoch's key is
    /// derived) to an auditor, once. `deliver` receives it inside the transaction that deletes
    /// the vault's sealed copy, so a delivery that fails (a file that cannot be written) leaves
    /// the key in the vault; one that succeeds leaves the vault without it. The current epoch is
    /// closed at the same time, so the device no longer holds any key the auditor's derives
    /// before it. Admins only.
    pub fn hand_over_audit_key(
        &self,
        session: &Session,
        deliver: impl FnOnce(&audit::AuditVerificationKey) -> Result<()>,
    ) -> Result<()> {
        self.match_log.flush()?;
        self.authorised_operation(session, Action::AuditHandover, None, |act| {
            let key = ledger::stored_verification_key(act.tx, act.keys, &act.settings.vault_id)?.ok_or_else(
                || {
                    invalid(
                        "audit hand-over",
                        "the audit verification key was handed over already; the vault keeps no copy".into(),
                    )
                },
            )?;
            store::meta_delete(act.tx, "audit_verification_key")?;
            deliver(&audit::AuditVerificationKey::from_secret(key))?;
            act.pending.secret_replaced = true;
            act.pending.close_epoch = true;
            Ok((
                (),
                vec![AuditEntry::new(None, "the verification key left the vault")],
            ))
        })
    }

    /// Writes the whole audit log to `out` as JSON lines (format in `docs/format.md`): a header
    /// with the vault's ID, one line per record with its epoch, hash and MAC, and the chain's
    /// head. [`check_audit_export`] verifies it off the device. Admins and auditors.
    pub fn export_audit(&self, session: &Session, out: &mut dyn std::io::Write) -> Result<AuditCheckpoint> {
        self.match_log.flush()?;
        self.authorised_operation(session, Action::AuditExport, None, |act| {
            let head = write_audit_export(act, out)?;
            let detail = format!("head_seq={} head={}", head.seq, crate::crypto::hex(&head.hash));
            Ok((head, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// [`Vault::export_audit`] into a new file (mode 0600), synced before the export's own
    /// record commits; the file is removed if anything fails.
    pub fn export_audit_to_file(&self, session: &Session, path: &Path) -> Result<AuditCheckpoint> {
        self.match_log.flush()?;
        let (file, head) = self.authorised_operation(session, Action::AuditExport, None, |act| {
            let mut file = crate::keys::NewFile::create(path, 0o600)?;
            let head = {
                let mut out = std::io::BufWriter::new(file.file());
                let head = write_audit_export(act, &mut out)?;
                std::io::Write::flush(&mut out)?;
                head
            };
            file.write_synced(&[])?;
            file.place()?;
            let detail = format!("head_seq={} head={}", head.seq, crate::crypto::hex(&head.hash));
            Ok(((file, head), vec![AuditEntry::new(None, detail)]))
        })?;
        file.keep();
        Ok(head)
    }

    /// Re-wraps the vault's root key under the master key of `new_keys`, and moves the rollback
    /// counter to `new_keys`' counter. Nothing else changes: every data key, MAC and audit record
    /// hangs from the root key, not the master key. From the commit on the old master key opens
    /// nothing; before it, the new one opens nothing; a crash in between leaves exactly one of
    /// them working. The old wrapped root key is overwritten in the file and truncated out of
    /// the WAL. Admins only.
    ///
    /// With the whole-file layer (feature `sqlcipher`) the file's key changes too, in three
    /// steps that each leave exactly one master key working: the root key is wrapped under the
    /// new master beside the old wrap; SQLCipher re-encrypts every page under the new file key
    /// in one transaction; the old wrap is removed. An opening after a crash keeps whichever
    /// wrap the key that opened the file holds ([`Vault::open_with`]).
    pub fn rekey(&self, session: &Session, new_keys: &dyn KeyProvider) -> Result<()> {
        let new_master = new_keys.master_key()?;
        let vault_id = self.read_state().settings.vault_id;
        let Outside {
            counter: mut new_counter,
            erasures: mut new_erasures,
        } = Outside::of(new_keys, &vault_id)?;
        // The erasure ledger goes to the new key's place before the commit, so that a crash
        // after it finds the ledger there; the move after the commit adds what came meanwhile.
        lock(&self.core.ledger).copy_erasures_to(new_erasures.as_mut())?;
        let whole_file = cfg!(feature = "sqlcipher");
        let counter = self.authorised_operation(session, Action::Rekey, None, |act| {
            let wrapped = act.keys.root().wrap(&new_master, &act.settings.vault_id)?;
            store::meta_set(
                act.tx,
                if whole_file { "root_key_next" } else { "root_key" },
                wrapped,
            )?;
            // The new counter starts where the database is, before the commit: a crash after
            // the commit then finds the database one change ahead of it, which is accepted.
            let committed: i64 = store::meta_get(act.tx, "change_number")?;
            new_counter.advance_to(u64::try_from(committed).unwrap_or(0))?;
            act.pending.secret_replaced = !whole_file;
            let detail = match whole_file {
                false => format!(
                    "root key re-wrapped under a new master key; counter now {}",
                    new_counter.describe()
                ),
                true => {
                    "root key wrapped under a new master key beside the old; the file is re-encrypted next"
                        .into()
                }
            };
            Ok((new_counter, vec![AuditEntry::new(None, detail)]))
        })?;
        let outside = Outside {
            counter,
            erasures: new_erasures,
        };
        #[cfg(feature = "sqlcipher")]
        {
            let finished = {
                let mut ledger = lock(&self.core.ledger);
                self.rekey_whole_file(&mut ledger, &session.name, &new_master, outside)
            };
            if let Err(e) = &finished {
                self.audit_attempt(&session.name, Action::Rekey, None, Outcome::Failed, e);
            }
            finished
        }
        #[cfg(not(feature = "sqlcipher"))]
        {
            lock(&self.core.ledger).replace_outside(outside)
        }
    }

    /// Rewrites the database file from its rows and truncates the WAL (SQLite's `VACUUM`, then a
    /// truncating checkpoint through facevault's VFS). Afterwards no byte that a row no longer
    /// holds is left in the file: not in the free space of a page, not on a free page, not past
    /// the rows' last page, which is where the file now ends. Admins only; audited with the
    /// file's size before and after.
    ///
    /// Pages written since facevault's VFS came in (2026-12-05) have their free space zeroed as
    /// they are written. A vault written by an older build may still hold, in pages no change has
    /// rewritten since, copies of cells that SQLite's rebalancing left behind: once, a purged
    /// subject's wrapped key (SECURITY.md, section 1.5). Compacting once after the update clears
    /// them. Lookups go on meanwhile, from memory; other writes and the lookups' queued audit
    /// records wait. SQLite builds the new database in memory, so it needs about the file's size
    /// in free memory, and as much again in the WAL on disk until the checkpoint.
    pub fn compact(&self, session: &Session) -> Result<Compacted> {
        let (file_bytes_before, file_bytes_after) = self.file_operation(
            session,
            Action::Compact,
            |ledger, _| ledger.compact(),
            |(before, after)| format!("file rewritten from its rows: {before} -> {after} bytes"),
        )?;
        Ok(Compacted {
            file_bytes_before,
            file_bytes_after,
        })
    }

    /// Steps two and three of a rekey with the whole-file layer, under the ledger's lock.
    #[cfg(feature = "sqlcipher")]
    fn rekey_whole_file(
        &self,
        ledger: &mut Ledger,
        actor: &str,
        new_master: &MasterKey,
        outside: Outside,
    ) -> Result<()> {
        ledger.store().rekey_file(new_master)?;
        ledger.replace_outside(outside)?;
        let now = self.core.clock.now();
        ledger.write(|w| {
            let next: Vec<u8> = store::meta_get(w.tx, "root_key_next")?;
            store::meta_set(w.tx, "root_key", next)?;
            store::meta_delete(w.tx, "root_key_next")?;
            let detail = "the file re-encrypted under the new master key; the old wrap removed".to_string();
            w.audit(record(now, actor, Action::Rekey, None, Outcome::Allowed, detail))
        })?;
        ledger.require_truncation();
        ledger.truncate_wal_if_due()
    }

    /// Up to `limit` audit records after sequence number `after` (0 for the first), oldest
    /// first: the log read a page at a time.
    pub fn audit_page(&self, session: &Session, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.match_log.flush()?;
        self.authorised_operation(session, Action::AuditShow, None, |act| {
            let mut records = Vec::new();
            store::audit_records(act.tx, after, Some(limit), |stored| {
                records.push(stored?.record);
                Ok(())
            })?;
            let detail = match after {
                0 => format!("entries={}", records.len()),
                after => format!("after={after} entries={}", records.len()),
            };
            Ok((records, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Every enrolled subject with its expiry, in ID order, each row's MAC checked: for the
    /// device's own records (a badge map) to be brought in step. Admins, enrollers, auditors.
    pub fn subjects(&self, session: &Session) -> Result<Vec<SubjectEntry>> {
        self.authorised_operation(session, Action::ListSubjects, None, |act| {
            let mut entries = Vec::new();
            act.for_each_subject(|subject, facts| {
                entries.push(SubjectEntry {
                    subject,
                    enrolled_at: facts.created_at,
                    expires_at: facts.expires_at,
                    minor: facts.minor,
                    templates: usize::try_from(facts.templates).unwrap_or(0),
                });
            })?;
            let detail = format!("subjects={}", entries.len());
            Ok((entries, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Every audit record, oldest first.
    pub fn audit_log(&self, session: &Session) -> Result<Vec<AuditRecord>> {
        self.audit_page(session, 0, usize::MAX)
    }

    /// The door for lookups (verify, identify): session check → authorisation → the lookup in
    /// memory → its audit record, allowed or refused, queued for the match-log writer rather than
    /// written before answering.
    fn lookup<T>(
        &self,
        session: &Session,
        action: Action,
        subject: Option<SubjectId>,
        body: impl FnOnce(&LookupContext<'_>, &mut WipedVec<f32>) -> Result<(T, LookupDetail)>,
    ) -> Result<T> {
        self.lookup_many(session, action, subject, |look, buffer| {
            body(look, buffer).map(|(value, detail)| (value, std::iter::once(detail)))
        })
    }

    /// [`Vault::lookup`] for a body that makes several lookups (a batch): one record each when
    /// it succeeds, one record of the refusal when it does not.
    fn lookup_many<T, D: IntoIterator<Item = LookupDetail>>(
        &self,
        session: &Session,
        action: Action,
        subject: Option<SubjectId>,
        body: impl FnOnce(&LookupContext<'_>, &mut WipedVec<f32>) -> Result<(T, D)>,
    ) -> Result<T> {
        let state = self.read_state();
        // A verify's one certain cache miss, the subject's index slot, is under way while the
        // door checks the session.
        if let (Some(subject), Some(galleries)) = (&subject, &state.galleries) {
            galleries.prefetch_slots(subject);
        }
        let now = self.core.clock.now();
        let result = if let Err(e) = self.authorise(session, action, now) {
            Err(e)
        } else {
            let answer = match (&state.galleries, &state.governance.matching) {
                // Arts. 3-4, 10, 13, 15: a deployment the law forbids matches no one.
                (_, Some(refusal)) => Err(Error::Refused(refusal.clone())),
                (Some(galleries), None) => {
                    let look = LookupContext {
                        settings: &state.settings,
                        galleries,
                        threads: self.lookup_threads.load(Ordering::Relaxed),
                        now,
                        show_scores: state.settings.score_roles.contains(session.role),
                        throttles: &self.core.throttles,
                        principal: &session.name,
                        match_log: &self.match_log,
                    };
                    PROBE.with(|probe| {
                        let mut probe = probe.borrow_mut();
                        let answer = body(&look, &mut probe);
                        // Zeroed in place: the next lookup empties it before it writes.
                        probe.wipe();
                        answer
                    })
                }
                (None, None) => Err(invalid(
                    "lookup",
                    "this vault was opened without its gallery (OpenOptions::load_gallery): it cannot verify or identify"
                        .into(),
                )),
            };
            answer
        };
        drop(state);
        let record = |outcome, detail| LookupEvent {
            at: now,
            actor: ActorName::new(&session.name),
            action,
            subject,
            outcome,
            detail,
        };
        match result {
            Ok((value, details)) => {
                for detail in details {
                    self.settle_identify_throttle(session, &detail, now);
                    self.match_log.push(record(Outcome::Allowed, detail));
                }
                Ok(value)
            }
            Err(e) => {
                let detail = LookupDetail::Refused(format!("{}: {e}", e.code()));
                self.match_log.push(record(outcome_of(&e), detail));
                Err(e)
            }
        }
    }

    /// Counts an answered identify in its principal's throttle: a miss or a hit. Changes (and
    /// alerts) go to the match-log writer with the lookups' records. (A verify settles its
    /// subject's throttle inside the lookup, `Throttles::gate_verify`.)
    fn settle_identify_throttle(&self, session: &Session, detail: &LookupDetail, now: UnixMillis) {
        let emit = |change| self.match_log.push_throttle(now, &session.name, change);
        if let LookupDetail::Identified { candidates, .. } = detail {
            self.core
                .throttles
                .settle_identify(&session.name, [candidates.is_empty()], now, emit);
        }
    }

    /// Writes every queued lookup record now.
    pub fn flush_audit(&self) -> Result<()> {
        self.match_log.flush()
    }

    /// The door: session check → authorisation → the operation and its audit records in one
    /// transaction → the in-memory state, after commit. A refusal is audited on its own.
    ///
    /// The store's lock is held from the transaction's start to the gallery's update, so that
    /// changes reach the gallery in the order they committed; the gallery itself is locked for
    /// writing only to publish the change.
    fn authorised_operation<T>(
        &self,
        session: &Session,
        action: Action,
        subject: Option<SubjectId>,
        body: impl FnOnce(&mut OperationContext<'_>) -> Result<(T, Vec<AuditEntry>)>,
    ) -> Result<T> {
        if let Err(e) = self.authorise(session, action, self.core.clock.now()) {
            self.audit_attempt(&session.name, action, subject, Outcome::Denied, &e);
            return Err(e);
        }
        self.core.operation(&session.name, action, subject, body)
    }

    /// An operation on the database file as a whole, outside a transaction of its own (a
    /// backup's snapshot, a compaction): the door as for any operation, then the queued lookup
    /// records written (so that the file holds them too), then `work` under the ledger's lock at
    /// the operation's time. A failure is audited as such; a success is recorded, with the
    /// detail `describe` gives, in a transaction after it. If that record cannot commit, what
    /// `work` returned is dropped and the error returned.
    fn file_operation<T>(
        &self,
        session: &Session,
        action: Action,
        work: impl FnOnce(&mut Ledger, UnixMillis) -> Result<T>,
        describe: impl FnOnce(&T) -> String,
    ) -> Result<T> {
        let now = self.core.clock.now();
        if let Err(e) = self.authorise(session, action, now) {
            self.audit_attempt(&session.name, action, None, outcome_of(&e), &e);
            return Err(e);
        }
        self.match_log.flush()?;
        let worked = work(&mut lock(&self.core.ledger), now);
        let done = match worked {
            Ok(done) => done,
            Err(e) => {
                self.audit_attempt(&session.name, action, None, outcome_of(&e), &e);
                return Err(e);
            }
        };
        let detail = describe(&done);
        self.core.operation(&session.name, action, None, |_| {
            Ok(((), vec![AuditEntry::new(None, detail)]))
        })?;
        Ok(done)
    }

    /// The one authorisation check, for operations and lookups alike: the session belongs to
    /// this opening and is live, and its principal's current role permits the action
    /// ([`Role::permits`], the table in the README).
    fn authorise(&self, session: &Session, action: Action, now: UnixMillis) -> Result<()> {
        let role = self.current_role(session);
        if session.opening != self.opening {
            Err(Error::ForeignSession)
        } else if !session.is_live(now) {
            Err(Error::SessionEnded)
        } else if !role.permits(action) {
            Err(Error::Forbidden { role, action })
        } else {
            Ok(())
        }
    }

    /// The session's principal's role now: the one at login unless an admin changed it since.
    fn current_role(&self, session: &Session) -> Role {
        if session.role_generation == self.core.role_generation.load(Ordering::Acquire) {
            return session.role;
        }
        self.core
            .changed_roles
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&*session.name)
            .copied()
            .unwrap_or(session.role)
    }

    /// Changes a principal's role; sessions it already has take the new role at their next call.
    /// Admins only; an admin cannot change their own role (a vault keeps an admin).
    pub fn set_role(&self, session: &Session, name: &str, role: Role) -> Result<()> {
        self.authorised_operation(session, Action::SetRole, None, |act| {
            if name == session.name() {
                return Err(invalid("user", "an admin cannot change their own role".into()));
            }
            let mut row = checked_principal(act.tx, act.keys, name)?
                .ok_or_else(|| invalid("user", format!("there is no user named {name:?}")))?;
            let before = std::mem::replace(&mut row.role, role.as_str().to_string());
            let mac = principal_mac(act.keys, name, &row);
            store::update_principal_role(act.tx, name, &row.role, &mac)?;
            act.pending.role_change = Some((name.to_string(), role));
            Ok((
                (),
                vec![AuditEntry::new(
                    None,
                    format!("user={name} role {before} -> {role}"),
                )],
            ))
        })
    }

    /// The lookup state for reading ([`Core::read_state`]).
    fn read_state(&self) -> RwLockReadGuard<'_, LookupState> {
        self.core.read_state()
    }

    fn audit_attempt(
        &self,
        actor: &str,
        action: Action,
        subject: Option<SubjectId>,
        outcome: Outcome,
        error: &Error,
    ) {
        let detail = format!("{}: {error}", error.code());
        self.audit_attempt_detail(actor, action, subject, outcome, &detail);
    }

    fn audit_attempt_detail(
        &self,
        actor: &str,
        action: Action,
        subject: Option<SubjectId>,
        outcome: Outcome,
        detail: &str,
    ) {
        let attempt = record(
            self.core.clock.now(),
            actor,
            action,
            subject,
            outcome,
            detail.to_string(),
        );
        write_attempt(&mut lock(&self.core.ledger), attempt);
    }

    /// Closes the vault: writes the queued lookup records, then truncates the WAL. Fails with
    /// [`Error::AuditNotWritten`] when lookup records could not be written (they are lost, and the
    /// lookups they record must not be reported as done); otherwise with
    /// [`Error::RollbackCounter`] when the counter could not be brought up to the last change;
    /// and otherwise with the truncation's error (the WAL is then truncated by a later opening's
    /// close).
    pub fn close(self) -> Result<()> {
        let Vault {
            core,
            match_log,
            purge_timer,
            ..
        } = self;
        // The timer first: a purge under way finishes and is logged before the log closes.
        drop(purge_timer);
        let logged = match_log.close();
        let mut ledger = lock(&core.ledger);
        let counted = ledger.settle_counter();
        let checkpointed = ledger.store().checkpoint_truncate();
        logged.and(counted).and(checkpointed)
    }
}

/// Writes the audit export of the chain as it stands in `act`'s transaction; returns its head.
fn write_audit_export(act: &OperationContext<'_>, out: &mut dyn std::io::Write) -> Result<AuditCheckpoint> {
    let state = ledger::load_sealer_state(act.tx, act.keys, &act.settings.vault_id)?;
    let head = AuditCheckpoint {
        seq: state.head.seq,
        hash: state.head.hash,
    };
    audit::write_export(
        out,
        &act.settings.vault_id,
        act.now,
        |visit| store::audit_records(act.tx, 0, None, |record| visit(record?)),
        &head,
    )?;
    Ok(head)
}

/// How a failed attempt is recorded: refused (bad input, access, the law) or failed (damage, I/O).
fn outcome_of(error: &Error) -> Outcome {
    match error.class() {
        ErrorClass::BadInput | ErrorClass::Refused => Outcome::Denied,
        ErrorClass::Integrity | ErrorClass::Other => Outcome::Failed,
    }
}

/// What a lookup may read: no transaction, nothing to write (throttle changes go to the
/// match-log writer).
struct LookupContext<'a> {
    settings: &'a Settings,
    galleries: &'a Galleries,
    /// Threads a single identify may use.
    threads: usize,
    now: UnixMillis,
    /// Whether the caller's role sees scores.
    show_scores: bool,
    throttles: &'a Throttles,
    principal: &'a str,
    match_log: &'a MatchLog,
}

impl<'a> LookupContext<'a> {
    fn normalise_templates(
        &self,
        input: TemplateInput<'_>,
        count: RowCount,
    ) -> Result<(usize, WipedVec<f32>)> {
        self.settings.normalise_templates(input, count)
    }

    /// The retention rule at this lookup's moment, for the gallery to apply to every row (Art. 8).
    fn retention(&self) -> RetentionCheck {
        RetentionCheck::at(self.now)
    }

    /// One probe of the model at `index`, normalised into `buffer`.
    fn normalise_probe<'b>(
        &self,
        index: usize,
        input: TemplateInput<'_>,
        buffer: &'b mut WipedVec<f32>,
    ) -> Result<(&'a ModelSettings, &'b [f32])> {
        let model = &self.settings.models[index];
        template::normalise_rows_into(input, model.dim, &model.name, RowCount::One, buffer)?;
        Ok((model, buffer.as_slice()))
    }

    /// Counts `probes` identifies against the principal's throttle; refused while it waits.
    fn admit_identify(&self, probes: usize) -> Result<()> {
        self.throttles
            .admit_identify(self.principal, probes, self.now, |change| {
                self.match_log.push_throttle(self.now, self.principal, change)
            })
    }

    /// The candidates to report from a gallery answer, with their scores rounded and those that
    /// round below the threshold left out (scores shown only to a role that may see them), and
    /// the audit detail that names them.
    fn candidates(
        &self,
        model: &ModelSettings,
        k: usize,
        found: Vec<(SubjectId, f32)>,
    ) -> (Vec<Candidate>, LookupDetail) {
        let candidates: Vec<Candidate> = found
            .into_iter()
            .map(|(subject, score)| (subject, self.settings.round_score(score)))
            .filter(|(_, score)| *score >= model.threshold_decimal)
            .map(|(subject, score)| Candidate {
                subject,
                model: model.name.clone(),
                score: self.show_scores.then_some(score),
            })
            .collect();
        let detail = LookupDetail::Identified {
            k,
            candidates: candidates.iter().map(|c| c.subject).collect(),
        };
        (candidates, detail)
    }
}

/// Writes one audit record in a transaction of its own. If even that fails (the disk is full, say)
/// the caller still has its original error to report; there is nothing better to do with this one.
/// What an opening must do to finish or abandon a rekey that a crash cut short.
struct UnfinishedRekey {
    /// The wrapped root key to keep.
    root_key: Vec<u8>,
    detail: String,
}

/// The root key, unwrapped by `master`. A rekey of a file encrypted as a whole (feature
/// `sqlcipher`) keeps two wraps while it re-encrypts the file: `root_key` under the old master
/// and `root_key_next` under the new. Whichever master the file opened with is the one that
/// holds; the other wrap goes, in the opening's first write.
fn unwrap_root_key(
    conn: &rusqlite::Connection,
    master: &MasterKey,
    vault_id: &[u8; 16],
) -> Result<(RootKey, Option<UnfinishedRekey>)> {
    let wrapped: Vec<u8> = store::meta_get(conn, "root_key")?;
    let next: Option<Vec<u8>> = store::meta_get_optional(conn, "root_key_next")?;
    if let Some(root) = RootKey::unwrap(master, vault_id, &wrapped)? {
        let abandoned = next.map(|_| UnfinishedRekey {
            root_key: wrapped,
            detail: "a rekey cut short before the file was re-encrypted was abandoned: the old master key still holds".into(),
        });
        return Ok((root, abandoned));
    }
    match next {
        Some(next) => match RootKey::unwrap(master, vault_id, &next)? {
            Some(root) => Ok((
                root,
                Some(UnfinishedRekey {
                    root_key: next,
                    detail: "a rekey cut short after the file was re-encrypted was finished: the new master key holds".into(),
                }),
            )),
            None => Err(Error::WrongKey),
        },
        None => Err(Error::WrongKey),
    }
}

fn write_attempt(ledger: &mut Ledger, attempt: AuditRecord) {
    let written = ledger.write(|w| w.audit(attempt).map(drop));
    drop(written);
    let _ = ledger.truncate_wal_if_due();
}

pub(super) fn record(
    at: UnixMillis,
    actor: &str,
    action: Action,
    subject: Option<SubjectId>,
    outcome: Outcome,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at,
        epoch: 0,
        actor: actor.to_string(),
        action: action.as_str().to_string(),
        subject: subject.map(|s| s.to_string()),
        outcome,
        detail,
    }
}

/// A principal's row, its MAC checked (`Integrity` if it fails); `None` when there is no such
/// principal.
fn checked_principal(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    name: &str,
) -> Result<Option<PrincipalRow>> {
    let Some(row) = store::find_principal(conn, name)? else {
        return Ok(None);
    };
    if !keys.record_mac_matches(
        "principal",
        &as_slices(&principal_mac_fields(name, &row)),
        &row.mac,
    ) {
        return Err(Error::Integrity {
            table: "principals",
            record: name.to_string(),
        });
    }
    Ok(Some(row))
}

/// A new principal's row: its credential hashed (the slow part), not yet MACed.
fn new_principal_row(role: Role, password: &Password) -> Result<PrincipalRow> {
    let credential = access::hash_password(password)?;
    Ok(PrincipalRow {
        role: role.as_str().to_string(),
        salt: credential.salt,
        iterations: i64::from(credential.iterations),
        hash: credential.hash,
        lock: LockState::default(),
        mac: Vec::new(),
    })
}

fn insert_principal(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    name: &str,
    mut row: PrincipalRow,
    now: UnixMillis,
) -> Result<()> {
    row.mac = principal_mac(keys, name, &row);
    store::insert_principal(conn, name, &row, now)
}

/// The f64 nearest to `value`'s shortest decimal form, so that a threshold typed as 0.4 is shown
/// as 0.4 and not as 0.4000000059604645.
pub(crate) fn shortest_f64(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use super::*;
    use crate::{Enrolment, FixedKey, Notice};

    const WINDOW: usize = 16;

    fn notice() -> Notice {
        Notice {
            version: "1".into(),
            processor_name: "test".into(),
            processor_contact: "test".into(),
            purpose: "test".into(),
            method: "1:N".into(),
            retention: "one test".into(),
            necessity_and_impact: "synthetic".into(),
            rights: "none".into(),
        }
    }

    /// Every window of the codes that looks like sign bits: at least `MIN_DISTINCT` different
    /// byte values among its 16. The rest lie in a partial block, whose padding rows hold
    /// constant nibbles (a window there can be `21 00 00 … 00`), and a file has such
    /// low-entropy runs for reasons of its own. Sixteen random bytes have fewer than ten
    /// distinct values with a chance of 1e-8.
    fn code_windows(vault: &Vault) -> HashSet<[u8; WINDOW]> {
        const MIN_DISTINCT: usize = 10;
        vault
            .read_state()
            .galleries
            .as_ref()
            .unwrap()
            .model(0)
            .code_bytes()
            .windows(WINDOW)
            .filter(|window| {
                let mut seen = [false; 256];
                window.iter().for_each(|byte| seen[usize::from(*byte)] = true);
                seen.iter().filter(|present| **present).count() >= MIN_DISTINCT
            })
            .map(|window| <[u8; WINDOW]>::try_from(window).unwrap())
            .collect()
    }

    fn found_in(path: &Path, needles: &HashSet<[u8; WINDOW]>) -> bool {
        let bytes = std::fs::read(path).unwrap_or_default();
        bytes
            .windows(WINDOW)
            .any(|window| needles.contains(<&[u8; WINDOW]>::try_from(window).unwrap()))
    }

    /// Records a profile the law allows and an assessment of it, so the vault enrols and matches.
    fn govern(vault: &Vault, admin: &Session) {
        use crate::policy::deployment::tests::{assessment, door};
        vault.set_profile(admin, &door()).unwrap();
        vault.add_assessment(admin, &assessment(&door())).unwrap();
    }

    /// Where [`a_refused_kernel_stops_create_and_open`] tells its child process the vault to open.
    const REFUSED_KERNEL_VAULT: &str = "FACEVAULT_TEST_REFUSED_KERNEL_VAULT";

    /// A `FACEVAULT_KERNEL` that names no kernel stops `Vault::create` and `Vault::open` with an
    /// error that names the variable. The choice is read once a process, so the refusal is
    /// checked in a child: this test binary, re-run on the ignored test below with the variable
    /// set.
    #[test]
    fn a_refused_kernel_stops_create_and_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let key = FixedKey::new([7; 32]);
        let password = Password::new("admin password");
        let vault = Vault::create(&path, &key, &VaultConfig::new(8, "m"), "admin", &password).unwrap();
        let admin = vault.login("admin", &password).unwrap();
        let stats = vault.stats(&admin).unwrap();
        assert!(
            ["avx512", "avx2", "portable"].contains(&stats.code_kernel),
            "{}",
            stats.code_kernel
        );
        assert!(!stats.cpu.is_empty());
        vault.close().unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "vault::tests::refused_kernel_child",
                "--ignored",
                "--nocapture",
            ])
            .env(crate::gallery::KERNEL_VARIABLE, "sse9")
            .env(REFUSED_KERNEL_VAULT, &path)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&child.stdout);
        assert!(
            child.status.success(),
            "{report}{}",
            String::from_utf8_lossy(&child.stderr)
        );
        assert!(report.contains("1 passed"), "{report}");
    }

    /// The child of [`a_refused_kernel_stops_create_and_open`]; does nothing run by itself.
    #[test]
    #[ignore = "run by a_refused_kernel_stops_create_and_open, with FACEVAULT_KERNEL set"]
    fn refused_kernel_child() {
        let Some(existing) = std::env::var_os(REFUSED_KERNEL_VAULT) else {
            return;
        };
        let refused = |result: Result<Vault>| match result {
            Err(Error::InvalidArgument { what, reason }) => {
                assert_eq!(what, "FACEVAULT_KERNEL");
                assert!(reason.contains("names no kernel"), "{reason}");
            }
            Err(other) => panic!("refused for the wrong reason: {other}"),
            Ok(_) => panic!("a vault opened with FACEVAULT_KERNEL=sse9"),
        };
        let key = FixedKey::new([7; 32]);
        refused(Vault::open(Path::new(&existing), &key));
        let dir = tempfile::tempdir().unwrap();
        let config = VaultConfig::new(8, "m");
        let password = Password::new("admin password");
        let new_path = dir.path().join("new.db");
        refused(Vault::create(&new_path, &key, &config, "admin", &password));
        assert!(!new_path.exists());
    }

    /// A lookup normalises its probe into a buffer the vault keeps; it is emptied and zeroed
    /// after every lookup, answered or refused, so no probe outlives its call.
    #[test]
    fn no_probe_is_left_in_the_vault_after_a_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let key = FixedKey::new([7; 32]);
        let password = Password::new("admin password");
        let vault = Vault::create(&path, &key, &VaultConfig::new(8, "m"), "admin", &password).unwrap();
        let admin = vault.login("admin", &password).unwrap();
        vault.publish_notice(&admin, &notice()).unwrap();
        govern(&vault, &admin);
        let face = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let subject = vault
            .enrol(&admin, &Enrolment::with_consent("1", "form"), &face)
            .unwrap();
        let gate_password = Password::new("gate password");
        vault
            .add_user(&admin, "gate", Role::Operator, &gate_password)
            .unwrap();
        let gate = vault.login("gate", &gate_password).unwrap();
        // The buffer still spans the probe it held, and every value of it is zero: a buffer
        // that was only emptied, or not touched, fails this.
        let wiped = || {
            PROBE.with(|probe| {
                let probe = probe.borrow();
                probe.len() == 8 && probe.iter().all(|v| v.to_bits() == 0)
            })
        };
        assert!(vault.verify(&gate, &subject, &face).unwrap().matched);
        assert!(wiped());
        assert_eq!(vault.identify(&gate, &face, 1).unwrap()[0].subject, subject);
        assert!(wiped());
        // A refused probe is wiped too: seven values were normalised before the NaN was found.
        let mut bad = face;
        bad[7] = f32::NAN;
        assert!(vault.verify(&gate, &subject, &bad).is_err());
        assert!(PROBE.with(|probe| probe.borrow().iter().all(|v| v.to_bits() == 0)));
    }

    /// The fast scan's codes derive from templates: they must never reach the database or its WAL,
    /// neither while the vault is open nor after it is closed.
    #[test]
    fn no_code_byte_reaches_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let wal = dir.path().join("vault.db-wal");
        let key = FixedKey::new([7; 32]);
        let password = Password::new("admin password");
        let config = VaultConfig::new(128, "m");
        let vault = Vault::create(&path, &key, &config, "admin", &password).unwrap();
        let admin = vault.login("admin", &password).unwrap();
        vault.publish_notice(&admin, &notice()).unwrap();
        govern(&vault, &admin);
        let mut generator = crate::xorshift::XorShift64::new(3);
        let rows: Vec<f32> = (0..128 * 300).map(|_| generator.next_signed_unit()).collect();
        let subjects = vault
            .enrol_batch(&admin, &Enrolment::with_consent("1", "form"), &rows)
            .unwrap();
        vault.flush_audit().unwrap();
        let first = code_windows(&vault);
        assert!(first.len() > 4_000, "only {} windows", first.len());
        assert!(!found_in(&path, &first) && !found_in(&wal, &first));
        vault.erase(&admin, &subjects[5]).unwrap();
        vault.close().unwrap();
        assert!(!found_in(&path, &first) && !found_in(&wal, &first));

        // A reopening builds new codes from a fresh seed; they stay off the disk too.
        let vault = Vault::open(&path, &key).unwrap();
        let second = code_windows(&vault);
        assert!(first.is_disjoint(&second), "codes repeat between openings");
        assert!(!found_in(&path, &second) && !found_in(&wal, &second));
    }
}
