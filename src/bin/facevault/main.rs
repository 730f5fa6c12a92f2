//! `facevault`: the command-line shell over the library, for device test harnesses.
//!
//! It parses, calls the vault, and prints exactly one JSON object: the answer on stdout, or
//! `{"error", "message"}` on stderr with a stable exit code (2 bad usage or input, 3 refused,
//! 4 integrity, 1 anything else). Passwords come from the environment, never from argv. Every
//! file it reads is checked to be a regular file of a bounded size before a byte is read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use facevault::{
    Action, AuditCheckpoint, AuditVerificationKey, Destination, Enrolment, EpochPolicy, Error, ErrorClass,
    ExportRequest, Guardian, KeyFile, Notice, OpenOptions, Password, RecipientPublicKey, RecipientSecretKey,
    Role, RoleSet, Session, SubjectId, TemplateInput, ThrottlePolicy, TransferConsent, Vault, VaultConfig,
};
use serde_json::{json, Value};

mod compliance_page;
mod human;
use zeroize::Zeroizing;

const PASSWORD_VAR: &str = "FACEVAULT_PASSWORD";
const NEW_PASSWORD_VAR: &str = "FACEVAULT_NEW_PASSWORD";
const DAY_SECS: i64 = 86_400;
/// The largest file of one template or probe: one row at the largest dimension.
const MAX_ROW_FILE: u64 = facevault::MAX_DIM as u64 * 4;
/// The largest batch file (`enrol-batch`, `identify-batch`): 2 GiB, a million 512-value rows.
const MAX_BATCH_FILE: u64 = 2 << 30;
/// The largest notice file: eight items of at most 4 KiB, escaped.
const MAX_NOTICE_FILE: u64 = 64 * 1024;
/// The largest audit export `audit check` reads: about eight million records.
const MAX_AUDIT_EXPORT: u64 = 4 << 30;

/// An encrypted, law-enforcing face-template store.
#[derive(Parser)]
#[command(name = "facevault", version, about)]
struct Cli {
    /// The vault's database file.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// The 32-byte master key file (mode 0600); `init` creates it when missing.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The user to act as; the password is read from FACEVAULT_PASSWORD.
    #[arg(long = "as", value_name = "USER", global = true)]
    as_user: Option<String>,
    /// Print short tables for people (the default on a terminal).
    #[arg(long, global = true, conflicts_with = "json")]
    human: bool,
    /// Print one JSON object (the default when the output is not a terminal).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a vault (and the key file if missing) with its first admin, whose password is read
    /// from FACEVAULT_PASSWORD.
    #[command(
        after_help = "Example:\n  FACEVAULT_PASSWORD=... facevault --db vault.db --key-file master.key init --dim 512 --admin admin --model arcface-r100"
    )]
    Init(InitArgs),
    /// Manage users.
    #[command(
        after_help = "Example:\n  FACEVAULT_PASSWORD=... FACEVAULT_NEW_PASSWORD=... facevault --db vault.db --key-file master.key --as admin user add gate-01 --role operator"
    )]
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Notices to data subjects (Art. 5).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin notice publish --file notice-2026-12.json"
    )]
    Notice {
        #[command(subcommand)]
        command: NoticeCommand,
    },
    /// Face models: add a new one beside the old, see who still needs re-enrolling, retire the
    /// old one.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin model add arcface-v2 --dim 512 --threshold 0.42\n  facevault --db vault.db --key-file master.key --as admin model status\n  facevault --db vault.db --key-file master.key --as admin model retire arcface-r100"
    )]
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// The deployment profile (Arts. 3-4, 10, 13): who processes, for what one purpose, where,
    /// and the alternative to face recognition.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin profile set --file profile.json\n  facevault --db vault.db --key-file master.key --as auditor profile show"
    )]
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Impact assessments (Art. 9): enrolment waits for one that covers the current purpose and
    /// method.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin pia add --file pia-2026-11.json --report pia-2026-11.pdf\n  facevault --db vault.db --key-file master.key --as auditor pia list\n  facevault --db vault.db --key-file master.key --as admin pia incident --on 2027-03-02 --description \"controller stolen from the lobby\""
    )]
    Pia {
        #[command(subcommand)]
        command: PiaCommand,
    },
    /// Filing with the cyberspace administration (Art. 15): the count against the threshold,
    /// the deadlines in working days, the materials.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as auditor filing status\n  facevault --db vault.db --key-file master.key --as admin filing calendar --file calendar-2026.json\n  facevault --db vault.db --key-file master.key --as auditor filing report --out filing.json\n  facevault --db vault.db --key-file master.key --as admin filing done --kind initial --reference \"SH-CAC-2027-0042\""
    )]
    Filing {
        #[command(subcommand)]
        command: FilingCommand,
    },
    /// Decommission the vault (admins, Art. 15): crypto-erase every subject and start the
    /// deregistration clock. The audit log and the records stay; nothing is enrolled or matched
    /// again.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin decommission --confirm \"DECOMMISSION 36bdcf7a4d585a182d111ada9aa2e62d\""
    )]
    Decommission {
        /// Exactly "DECOMMISSION <vault id>" (the ID as `stats` shows it).
        #[arg(long, value_name = "TEXT")]
        confirm: String,
    },
    /// The compliance report, article by article (admins, auditors; Art. 16); --html also writes
    /// it as one self-contained page for an inspector.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as auditor compliance --html compliance.html"
    )]
    Compliance {
        /// Also write the report as a self-contained HTML page (no scripts, no outside assets).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Enrol one template (a raw little-endian f32 file of one row): a new subject with its
    /// consent, or another template of an enrolled subject.
    #[command(visible_alias = "enroll")]
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk enrol --template face.f32 --notice 2026-12 --consent-method \"signed form, desk 3\""
    )]
    Enrol {
        /// The template file.
        #[arg(long, value_name = "FILE")]
        template: PathBuf,
        /// Add the template to this enrolled subject instead of creating a new one.
        #[arg(long, value_name = "ID")]
        subject: Option<String>,
        /// The face model that made the template; refused unless it is the vault's.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        #[command(flatten)]
        consent: ConsentArgs,
    },
    /// Enrol every row of a file as a new subject under the same consent terms, all or nothing.
    #[command(visible_alias = "enroll-batch")]
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk enrol-batch --templates staff.f32 --notice 2026-12 --consent-method \"signed forms, HR\""
    )]
    EnrolBatch {
        /// The templates file: rows of raw little-endian f32.
        #[arg(long, value_name = "FILE")]
        templates: PathBuf,
        /// The face model that made the templates; refused unless it is the vault's.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        #[command(flatten)]
        consent: ConsentArgs,
    },
    /// 1:1: does the probe match this subject?
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as gate-01 verify --subject 5cf7976a0054ab5af3f38c207848cefa --probe capture.f32"
    )]
    Verify {
        /// The subject claimed.
        #[arg(long, value_name = "ID")]
        subject: String,
        /// The probe file: one row of raw little-endian f32.
        #[arg(long, value_name = "FILE")]
        probe: PathBuf,
        /// The face model that made the probe; refused unless it is the vault's.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
    },
    /// 1:N: who is this?
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as gate-01 identify --probe capture.f32 --k 3"
    )]
    Identify {
        /// The probe file: one row of raw little-endian f32.
        #[arg(long, value_name = "FILE")]
        probe: PathBuf,
        /// How many candidates at most.
        #[arg(long, default_value_t = 1)]
        k: usize,
        /// The face model that made the probe; refused unless it is the vault's.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Threads the scan may use (the answer is the same at any number).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        threads: u16,
    },
    /// 1:N for every row of a file, in one pass over the gallery.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as gate-01 identify-batch --probes captures.f32 --k 1"
    )]
    IdentifyBatch {
        /// The probes: rows of raw little-endian f32.
        #[arg(long, value_name = "FILE")]
        probes: PathBuf,
        /// How many candidates at most for each probe.
        #[arg(long, default_value_t = 1)]
        k: usize,
        /// The face model that made the probes; refused unless it is the vault's.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
    },
    /// Erase a subject: its key, its templates, at once.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk erase --subject 5cf7976a0054ab5af3f38c207848cefa"
    )]
    Erase {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
    },
    /// Record, renew or withdraw consents.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk consent withdraw --subject 5cf7976a0054ab5af3f38c207848cefa"
    )]
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Erase every subject past its retention.
    #[command(after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk purge")]
    Purge,
    /// Export templates in a bundle sealed to a recipient's X25519 public key.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as exporter export --to network --out out.bundle --recipient-key regulator.key.pub"
    )]
    Export {
        /// `local` (a backup that stays on this device) or `network` (anything that leaves it).
        #[arg(long = "to")]
        destination: String,
        /// Where to write the bundle (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The recipient's 32-byte X25519 public key file.
        #[arg(long, value_name = "FILE")]
        recipient_key: PathBuf,
        /// A subject to export (repeatable); none means every subject the law lets go.
        #[arg(long = "subject", value_name = "ID")]
        subjects: Vec<String>,
        /// The face model whose templates go (a bundle holds one model's); the default model
        /// when not given.
        #[arg(long)]
        model: Option<String>,
    },
    /// Write a recipient key pair: FILE (32-byte secret, mode 0600) and FILE.pub.
    #[command(after_help = "Example:\n  facevault keygen-recipient --out regulator.key")]
    KeygenRecipient {
        /// The secret key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Open a bundle with the recipient's secret key and print its contents.
    #[command(
        after_help = "Example:\n  facevault open-bundle --in out.bundle --recipient-secret regulator.key"
    )]
    OpenBundle {
        /// The bundle.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The recipient's secret key file.
        #[arg(long, value_name = "FILE")]
        recipient_secret: PathBuf,
        /// Refuse the bundle unless the vault with this signing key (64 hex digits, as its
        /// `stats` shows `signing_key`) made and signed it.
        #[arg(long, value_name = "HEX")]
        expect_vault: Option<String>,
        /// Refuse a bundle made more than this many days ago (by this machine's clock).
        #[arg(long, value_name = "N")]
        max_age_days: Option<u32>,
    },
    /// Counts and settings.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as gate-01 stats --human"
    )]
    Stats,
    /// List the enrolled subjects with their expiry (admins, enrollers, auditors).
    #[command(after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk subjects")]
    Subjects,
    /// Change the match threshold (admins).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin set-threshold 0.45"
    )]
    SetThreshold {
        /// The new threshold (cosine similarity, 0 to 1).
        #[arg(allow_negative_numbers = true)]
        threshold: f32,
        /// The model whose threshold it is; the default model when not given.
        #[arg(long)]
        model: Option<String>,
    },
    /// A subject's throttle: `subject reset-throttle --subject ID` (admins).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin subject reset-throttle --subject 5cf7976a0054ab5af3f38c207848cefa"
    )]
    Subject {
        #[command(subcommand)]
        command: SubjectCommand,
    },
    /// The intrusion alerts throttling raised (admins, auditors).
    #[command(after_help = "Example:\n  facevault --db vault.db --key-file master.key --as auditor alerts")]
    Alerts,
    /// Re-wrap the vault's keys under a new master key, created in FILE the way `init` creates
    /// one (admins). The old key file opens nothing afterwards.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin rekey --new-key-file master-2027.key"
    )]
    Rekey {
        /// The new key file to create (mode 0600).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Rewrite the database file from its rows (admins): no byte a row no longer holds stays in
    /// the file, and the file shrinks to what its rows need. Run it once after updating from a
    /// build older than 2026-12-05 (SECURITY.md, section 1.5). Needs about the file's size in
    /// free memory, and as much again on disk while it runs.
    #[command(after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin compact")]
    Compact,
    /// Write a sealed backup of the vault to a new file (admins): only a device with this
    /// master key can restore it. Lookups go on meanwhile.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin backup --out vault-2026-12-04.fvbackup"
    )]
    Backup {
        /// The backup file to create (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup into --db (an admin of the backup): every subject erased since the backup
    /// is erased again, and the expired purged, before it answers anything.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin restore --in vault-2026-12-04.fvbackup"
    )]
    Restore {
        /// The backup file.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Replace a vault that still opens and works (otherwise only a missing or damaged one).
        #[arg(long)]
        force: bool,
    },
    /// Inspect the audit log.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as auditor audit verify"
    )]
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `init`'s settings.
#[derive(Args)]
struct InitArgs {
    /// Values per template.
    #[arg(long)]
    dim: usize,
    /// The first admin's user name.
    #[arg(long)]
    admin: String,
    /// The face model the templates come from.
    #[arg(long, default_value = "unspecified")]
    model: String,
    /// Match threshold (cosine similarity).
    #[arg(long, default_value_t = facevault::DEFAULT_THRESHOLD, allow_negative_numbers = true)]
    threshold: f32,
    /// How identify scans: `fast` (compressed codes, then an exact re-rank) or `exact`.
    #[arg(long, default_value = "fast")]
    scan: String,
    /// The longest an adult's face data may be kept, in days.
    #[arg(long, default_value_t = 365)]
    max_retention_days: i64,
    /// The longest the face data of someone enrolled under 14 may be kept, in days.
    #[arg(long, default_value_t = 180)]
    max_minor_retention_days: i64,
    /// The device's offset from UTC in minutes, for counting ages (default: China, +480).
    #[arg(long, default_value_t = 480, allow_negative_numbers = true)]
    utc_offset_minutes: i32,
    /// Write the audit verification key here (mode 0600), for the auditor; the vault keeps no
    /// copy. Without it the key waits in the vault for `audit handover`.
    #[arg(long, value_name = "FILE")]
    audit_key_out: Option<PathBuf>,
    /// An audit epoch ends after this many records (the sealing key then moves on).
    #[arg(long, value_name = "N", default_value_t = EpochPolicy::default().max_records)]
    audit_epoch_records: u64,
    /// An audit epoch ends after this many minutes.
    #[arg(long, value_name = "M", default_value_t = EpochPolicy::default().max_millis / 60_000)]
    audit_epoch_minutes: i64,
    /// The roles shown match scores, comma-separated (`none` for none); the others get
    /// decisions and subject IDs.
    #[arg(long, value_name = "ROLES", default_value = "admin")]
    score_roles: String,
    /// Decimals a shown score is rounded to.
    #[arg(long, value_name = "N", default_value_t = facevault::DEFAULT_SCORE_DECIMALS)]
    score_decimals: u8,
    /// Identify probes one user may send in a minute.
    #[arg(long, value_name = "N", default_value_t = ThrottlePolicy::default().identify_per_minute)]
    identify_per_minute: u32,
    /// Identify probes in a row matching nobody after which the user is throttled (and an
    /// alert raised).
    #[arg(long, value_name = "N", default_value_t = ThrottlePolicy::default().identify_misses_before_delay)]
    identify_misses: u32,
    /// The deployment profile (JSON; see the README). Without one the vault enrols and matches
    /// no one until `profile set`.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Distinct persons stored at which Art. 15's filing falls due.
    #[arg(long, value_name = "N", default_value_t = facevault::DEFAULT_FILING_THRESHOLD)]
    filing_threshold: u64,
}

/// The consent a new subject's enrolment carries.
#[derive(Args, Default)]
struct ConsentArgs {
    /// The notice version the person was informed by (the current one).
    #[arg(long, value_name = "VERSION")]
    notice: Option<String>,
    /// How the separate consent was obtained.
    #[arg(long, value_name = "TEXT")]
    consent_method: Option<String>,
    /// The person's birth date; without it the enroller declares an adult.
    #[arg(long, value_name = "YYYY-MM-DD")]
    birth_date: Option<String>,
    /// For a child under 14: the consenting parent or guardian, as "NAME, RELATIONSHIP".
    #[arg(long, value_name = "TEXT")]
    guardian: Option<String>,
    /// Keep the face data this many days (capped by the vault's ceiling, the default).
    #[arg(long, value_name = "N", conflicts_with = "retention_secs")]
    retention_days: Option<i64>,
    /// Keep the face data this many seconds (capped by the vault's ceiling).
    #[arg(long, value_name = "N")]
    retention_secs: Option<i64>,
    /// The person also gave the separate consent to transfer face data off the device.
    #[arg(long)]
    transfer_consent: bool,
}

impl ConsentArgs {
    fn given(&self) -> bool {
        self.notice.is_some()
            || self.consent_method.is_some()
            || self.birth_date.is_some()
            || self.guardian.is_some()
            || self.retention_days.is_some()
            || self.retention_secs.is_some()
            || self.transfer_consent
    }

    fn enrolment(&self) -> Result<Enrolment, Failure> {
        let retention_secs = match (self.retention_days, self.retention_secs) {
            (Some(days), _) => Some(
                days.checked_mul(DAY_SECS)
                    .ok_or_else(|| Failure::usage("retention too long"))?,
            ),
            (None, secs) => secs,
        };
        Ok(Enrolment {
            notice_version: self.notice.clone(),
            consent_method: self.consent_method.clone(),
            birth_date: self
                .birth_date
                .as_deref()
                .map(facevault::parse_date)
                .transpose()?,
            guardian: self.guardian.as_deref().map(parse_guardian).transpose()?,
            retention_secs,
            transfer_consent: self.transfer_consent,
        })
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the new user's password is read from FACEVAULT_NEW_PASSWORD.
    #[command(
        after_help = "Example:\n  FACEVAULT_NEW_PASSWORD=... facevault --db vault.db --key-file master.key --as admin user add gate-01 --role operator"
    )]
    Add {
        /// The new user's name.
        name: String,
        /// admin, enroller, operator, auditor or exporter.
        #[arg(long)]
        role: String,
    },
    /// Change a user's role; the user's open sessions take it at their next call (admins).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin user set-role gate-01 --role auditor"
    )]
    SetRole {
        /// The user's name.
        name: String,
        /// admin, enroller, operator, auditor or exporter.
        #[arg(long)]
        role: String,
    },
    /// Lift a user's lock after repeated failed logins (admins).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin user unlock gate-01"
    )]
    Unlock {
        /// The locked user's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum SubjectCommand {
    /// Turn face verification of a throttled or disabled subject back on.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin subject reset-throttle --subject ID"
    )]
    ResetThrottle {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Register a new face model (admins): enrolment then takes its templates beside the others',
    /// under the consents already given, and probes that name it (--model) match only its
    /// templates.
    Add {
        /// The model's name, as templates and probes name it.
        name: String,
        /// Values per template.
        #[arg(long)]
        dim: usize,
        /// Its match threshold (cosine similarity, 0 to 1).
        #[arg(long)]
        threshold: f32,
    },
    /// Counts per model, and the re-enrolment queue: subjects with an active consent who hold no
    /// template of the newest model (admins, enrollers).
    Status,
    /// Crypto-erase every template of a model and retire it (admins). Refused while it is the
    /// only model some subjects hold, unless --force, which lists them.
    Retire {
        /// The model.
        name: String,
        /// Retire it even though some subjects hold no other model; they stay enrolled with no
        /// template, waiting to be re-enrolled.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Show the current deployment profile (admins, auditors).
    Show,
    /// Record a new deployment profile from a JSON file (admins); see the README for its keys.
    Set {
        /// The profile file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PiaCommand {
    /// Record an impact assessment from a JSON file (admins); see the README for its keys.
    Add {
        /// The assessment file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The full report: its SHA-256 must be the file's report_sha256, or fills it in when
        /// the file leaves it out.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// List every impact assessment recorded, and every major security incident (admins,
    /// auditors).
    List,
    /// Record a major security incident (admins): enrolment waits for a new assessment (Art. 9).
    Incident {
        /// When it happened, YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        on: String,
        /// What happened.
        #[arg(long)]
        description: String,
    },
}

#[derive(Subcommand)]
enum FilingCommand {
    /// Persons stored, the threshold, when it was reached, and each filing's deadline and
    /// working days left (admins, auditors).
    Status,
    /// Write Art. 15's filing materials, items (1) to (5), as JSON (admins, auditors).
    Report {
        /// The file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Record that a filing was made (admins): its clock stops, and the compliance report no
    /// longer lists it as due.
    Done {
        /// Which filing: initial, change or deregistration.
        #[arg(long)]
        kind: String,
        /// The authority's reference (a receipt or filing number).
        #[arg(long)]
        reference: String,
        /// The day it was made, YYYY-MM-DD (today when not given).
        #[arg(long, value_name = "DATE")]
        on: Option<String>,
    },
    /// Load the calendar of public holidays and make-up working days (admins): JSON with the
    /// keys source, holidays and workdays, each day YYYY-MM-DD.
    Calendar {
        /// The calendar file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum NoticeCommand {
    /// Publish a notice version from a JSON file with the keys version, processor_name,
    /// processor_contact, purpose, method, retention, necessity_and_impact and rights.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin notice publish --file notice-2026-12.json"
    )]
    Publish {
        /// The notice file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// List subjects consented under an older notice than the current one.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin notice due"
    )]
    Due,
}

#[derive(Subcommand)]
enum ConsentCommand {
    /// Record a subject's separate consent to transfer face data off the device.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk consent grant-transfer --subject ID --consent-method \"signed form\""
    )]
    GrantTransfer {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
        /// How the consent was obtained.
        #[arg(long, value_name = "TEXT")]
        consent_method: Option<String>,
        /// For a child: the consenting parent or guardian, as "NAME, RELATIONSHIP".
        #[arg(long, value_name = "TEXT")]
        guardian: Option<String>,
    },
    /// Withdraw a subject's transfer consent (its face data stays on the device).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk consent withdraw-transfer --subject ID"
    )]
    WithdrawTransfer {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
    },
    /// Withdraw a subject's consent: its face data is erased at once, for good.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk consent withdraw --subject ID"
    )]
    Withdraw {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
    },
    /// Record a fresh processing consent under the current notice.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as desk consent renew --subject ID --notice 2026-12 --consent-method \"signed form\""
    )]
    Renew {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
        /// The current notice version.
        #[arg(long, value_name = "VERSION")]
        notice: String,
        /// How the consent was obtained.
        #[arg(long, value_name = "TEXT")]
        consent_method: String,
        /// For a child: the consenting parent or guardian, as "NAME, RELATIONSHIP".
        #[arg(long, value_name = "TEXT")]
        guardian: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the chain, from record 1 or from a checkpoint an earlier `audit verify` printed;
    /// names the first bad record. Prints the verified head, the next run's checkpoint.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as auditor audit verify --from 1200 --mac 3f9a...(the 64 hex digits printed last time)"
    )]
    Verify {
        /// Start after this record, which must carry the hash given with --hash.
        #[arg(long, value_name = "SEQ", requires = "hash")]
        from: Option<u64>,
        /// The checkpoint record's chain hash, as `audit verify` printed it (64 hex digits).
        #[arg(long, value_name = "HEX", requires = "from")]
        hash: Option<String>,
    },
    /// Write the whole log as JSON lines, with each record's epoch, hash and MAC and the chain's
    /// head, for `audit check` off the device (admins, auditors).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as auditor audit export --out audit-2026-12.jsonl"
    )]
    Export {
        /// The file to write (new, mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify an exported log with the verification key, without the device: every record
    /// against its own epoch's key, and, with --head, that the log still reaches a head recorded
    /// earlier.
    #[command(
        after_help = "Example:\n  facevault audit check audit-2026-12.jsonl --verification-key auditor.key --head 3f9a...(the head_hash of the last check)"
    )]
    Check {
        /// The exported log.
        file: PathBuf,
        /// The audit verification key file.
        #[arg(long, value_name = "FILE")]
        verification_key: PathBuf,
        /// A head hash recorded earlier (64 hex digits).
        #[arg(long, value_name = "HEX")]
        head: Option<String>,
    },
    /// Hand the audit verification key to the auditor, once: written to a new file (mode 0600)
    /// and deleted from the vault (admins).
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as admin audit handover --out auditor.key"
    )]
    Handover {
        /// The key file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the records, oldest first: all of them, or a page.
    #[command(
        after_help = "Example:\n  facevault --db vault.db --key-file master.key --as auditor audit show --after 1000 --limit 100"
    )]
    Show {
        /// Start after this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
        /// At most this many records.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

/// A failure as the CLI reports it.
struct Failure {
    code: &'static str,
    message: String,
    exit: u8,
    extra: Option<(&'static str, Value)>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let exit = match error.class() {
            ErrorClass::BadInput => 2,
            ErrorClass::Refused => 3,
            ErrorClass::Integrity => 4,
            _ => 1,
        };
        let extra = match &error {
            Error::AuditTampered { seq } => Some(("seq", json!(seq))),
            Error::Throttled { retry_after_ms, .. } => Some(("retry_after_ms", json!(retry_after_ms))),
            _ => None,
        };
        Failure {
            code: error.code(),
            message: error.to_string(),
            exit,
            extra,
        }
    }
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self::bad_input("usage", message)
    }

    fn bad_input(code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            exit: 2,
            extra: None,
        }
    }

    /// The same failure, its message followed by what it means for the command.
    fn context(mut self, meaning: &str) -> Self {
        self.message = format!("{}: {meaning}", self.message);
        self
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let message = e.render().to_string();
            let first_line = message
                .lines()
                .next()
                .unwrap_or("bad usage")
                .trim_start_matches("error: ");
            return report(Failure::usage(first_line));
        }
    };
    use std::io::IsTerminal;
    let human = cli.human || (!cli.json && std::io::stdout().is_terminal());
    match run(cli) {
        Ok(answer) => print_answer(answer, human),
        Err(failure) => report(failure),
    }
}

/// Prints the answer. The command is done by now (a change is committed), so an answer that
/// cannot be written is reported on stderr with the answer in it: a harness that retried on a
/// bare failure would enrol the same person twice.
fn print_answer(answer: Value, human: bool) -> ExitCode {
    let text = if human {
        human::render(&answer)
    } else {
        answer.to_string()
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe means the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => report(Failure {
            code: "output_failed",
            message: format!(
                "the command was carried out, but its answer could not be written to stdout ({e}); \
                 it is under \"answer\""
            ),
            exit: 1,
            extra: Some(("answer", answer)),
        }),
    }
}

fn report(failure: Failure) -> ExitCode {
    let mut body = json!({"error": failure.code, "message": failure.message});
    if let (Some((key, value)), Some(map)) = (failure.extra, body.as_object_mut()) {
        map.insert(key.to_string(), value);
    }
    let _ = writeln!(std::io::stderr().lock(), "{body}");
    ExitCode::from(failure.exit)
}

fn run(cli: Cli) -> Result<Value, Failure> {
    let Cli {
        db,
        key_file,
        as_user,
        command,
        ..
    } = cli;
    // The recipient's tools work on bundles and keys alone, with no vault.
    let acts_as_nobody = matches!(
        command,
        Command::Init { .. }
            | Command::KeygenRecipient { .. }
            | Command::OpenBundle { .. }
            | Command::Audit {
                command: AuditCommand::Check { .. }
            }
    );
    if acts_as_nobody && as_user.is_some() {
        return Err(Failure::usage("this command takes no --as"));
    }
    match command {
        Command::KeygenRecipient { out } => {
            let public = RecipientSecretKey::generate()?.write_pair(&out)?;
            return Ok(json!({"secret": out, "public": public}));
        }
        Command::OpenBundle {
            input,
            recipient_secret,
            expect_vault,
            max_age_days,
        } => {
            use facevault::Clock;
            let expect = facevault::BundleExpectations {
                vault_key: expect_vault
                    .as_deref()
                    .map(|hex| parse_hash(hex, "--expect-vault"))
                    .transpose()?,
                fresh_at: max_age_days
                    .map(|days| (facevault::SystemClock.now(), i64::from(days) * 86_400_000)),
            };
            let secret = RecipientSecretKey::from_file(&recipient_secret)?;
            let bundle = read_input(&input, facevault::MAX_BUNDLE_BYTES as u64)?;
            let (contents, origin) = facevault::open_bundle_checked(&secret, &bundle, &expect)?;
            let mut value = serde_json::to_value(&contents).map_err(|e| Failure::usage(e.to_string()))?;
            if let Some(map) = value.as_object_mut() {
                map.insert("signed_by".into(), json!(origin.vault_key.map(|key| hex(&key))));
            }
            return Ok(value);
        }
        Command::Audit {
            command:
                AuditCommand::Check {
                    file,
                    verification_key,
                    head,
                },
        } => {
            let key = AuditVerificationKey::read_from_file(&verification_key)?;
            let head = head.as_deref().map(|hex| parse_hash(hex, "--head")).transpose()?;
            let text = read_input(&file, MAX_AUDIT_EXPORT)?;
            let text = std::str::from_utf8(&text)
                .map_err(|_| Failure::bad_input("invalid_argument", "the audit export is not UTF-8 text"))?;
            let checked = facevault::check_audit_export(text, &key, head.as_ref())?;
            return Ok(json!({"ok": true, "check": checked}));
        }
        _ => {}
    }
    let db = db.ok_or_else(|| Failure::usage("--db FILE is required"))?;
    let key_file = key_file.ok_or_else(|| Failure::usage("--key-file FILE is required"))?;
    if let Command::Init(init) = command {
        return init.run(&db, &key_file);
    }
    if let Command::Restore { input, force } = command {
        let user =
            as_user.ok_or_else(|| Failure::usage("restore needs --as ADMIN, an admin of the backup"))?;
        let password = password_from(PASSWORD_VAR)?;
        let options = facevault::RestoreOptions {
            force,
            open: OpenOptions {
                load_gallery: false,
                purge_interval: None,
                ..OpenOptions::default()
            },
        };
        let (vault, restored) =
            Vault::restore(&input, &db, &KeyFile::new(&key_file), &user, &password, options)?;
        vault.close()?;
        return Ok(json!({"restored": restored}));
    }

    // Everything the command needs from argv and files is gathered before the vault is opened,
    // so a usage error touches nothing. Template bytes are not checked here: the vault checks
    // (and audits) them.
    let (action, job) = prepare(command)?;
    let keys = KeyFile::new(&key_file);
    // Only a lookup needs the templates decrypted into memory; every other command opens in
    // milliseconds, whatever the vault holds.
    let options = OpenOptions {
        load_gallery: matches!(action, Action::Verify | Action::Identify),
        ..OpenOptions::default()
    };
    let vault = Vault::open_with(&db, &keys, options)?;
    let Some(user) = as_user else {
        return Err(vault.refuse_unauthenticated(action).into());
    };
    let password = password_from(PASSWORD_VAR)?;
    let session = vault.login(&user, &password)?;
    let bar = progress_bar(&vault);
    let answer = job(&vault, &session);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match vault.close() {
        // A lookup whose audit record was lost is not reported as answered; a change the
        // rollback counter could not count is reported too (the change itself is committed).
        Err(lost @ Error::AuditNotWritten { .. }) => Err(lost.into()),
        // Its answer goes with it, as `output_failed`'s does: a harness must not retry a change
        // that was made.
        Err(counter @ Error::RollbackCounter(_)) => {
            let mut failure = Failure::from(counter);
            if let Ok(answer) = answer {
                failure.extra = Some(("answer", answer));
            }
            Err(failure)
        }
        // A WAL that cannot be truncated now (another process is reading the vault) is truncated
        // by a later close: the operation itself is done.
        _ => Ok(answer?),
    }
}

/// A progress bar on stderr for the bulk operations (batch enrolment, purge, export), when
/// stderr is a terminal; nothing otherwise, so a harness reading a pipe sees none.
fn progress_bar(vault: &Vault) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::hidden();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    let shown = bar.clone();
    vault.set_progress(Some(std::sync::Arc::new(move |operation, done, total| {
        shown.set_message(operation);
        shown.set_length(total as u64);
        shown.set_position(done as u64);
    })));
    Some(bar)
}

/// A command ready to run against the open vault and an authenticated session.
type Job = Box<dyn FnOnce(&Vault, &Session) -> Result<Value, Error>>;

fn job(
    action: Action,
    run: impl FnOnce(&Vault, &Session) -> Result<Value, Error> + 'static,
) -> Result<(Action, Job), Failure> {
    Ok((action, Box::new(run)))
}

/// Checks a command's arguments and reads its files, and returns what to do once the vault is
/// open: each command written once, its action (for a refusal before login) beside it.
fn prepare(command: Command) -> Result<(Action, Job), Failure> {
    let subject = |text: &str| -> Result<SubjectId, Failure> { Ok(text.parse()?) };
    match command {
        Command::Init(_)
        | Command::KeygenRecipient { .. }
        | Command::OpenBundle { .. }
        | Command::Audit {
            command: AuditCommand::Check { .. },
        } => Err(Failure::usage("this command does not open a vault")),
        Command::User {
            command: UserCommand::SetRole { name, role },
        } => {
            let role: Role = role.parse()?;
            job(Action::SetRole, move |vault, session| {
                vault.set_role(session, &name, role)?;
                Ok(json!({"user": name, "role": role.as_str()}))
            })
        }
        Command::User {
            command: UserCommand::Unlock { name },
        } => job(Action::UnlockUser, move |vault, session| {
            vault.unlock_user(session, &name)?;
            Ok(json!({"user": name, "unlocked": true}))
        }),
        Command::Subject {
            command: SubjectCommand::ResetThrottle { subject: id },
        } => {
            let id = subject(&id)?;
            job(Action::ResetThrottle, move |vault, session| {
                vault.reset_throttle(session, &id)?;
                Ok(json!({"subject": id, "throttle": "cleared"}))
            })
        }
        Command::Alerts => job(Action::ListAlerts, |vault, session| {
            Ok(json!({"alerts": vault.alerts(session)?}))
        }),
        Command::Compact => job(Action::Compact, |vault, session| {
            Ok(json!({"compacted": vault.compact(session)?}))
        }),
        Command::Backup { out } => job(Action::Backup, move |vault, session| {
            Ok(json!({"backup": vault.backup_to_file(session, &out)?}))
        }),
        Command::Restore { .. } => Err(Failure::usage("restore does not open a vault first")),
        Command::Rekey { new_key_file } => job(Action::Rekey, move |vault, session| {
            let new_keys = KeyFile::create(&new_key_file)?;
            vault.rekey(session, &new_keys).inspect_err(|_| {
                // Not committed: the new key never protected the vault.
                let _ = std::fs::remove_file(&new_key_file);
            })?;
            Ok(json!({"rekeyed": true, "key_file": new_key_file}))
        }),
        Command::Audit {
            command: AuditCommand::Export { out },
        } => job(Action::AuditExport, move |vault, session| {
            let head = vault.export_audit_to_file(session, &out)?;
            Ok(json!({"out": out, "head": {"seq": head.seq, "hash": hex(&head.hash)}}))
        }),
        Command::Audit {
            command: AuditCommand::Handover { out },
        } => job(Action::AuditHandover, move |vault, session| {
            vault.hand_over_audit_key(session, |key| key.write_to_file(&out))?;
            Ok(json!({"verification_key": out}))
        }),
        Command::User {
            command: UserCommand::Add { name, role },
        } => {
            let role: Role = role.parse()?;
            let password = password_from(NEW_PASSWORD_VAR)?;
            job(Action::AddUser, move |vault, session| {
                vault.add_user(session, &name, role, &password)?;
                Ok(json!({"user": name, "role": role.as_str()}))
            })
        }
        Command::Notice {
            command: NoticeCommand::Publish { file },
        } => {
            let notice = read_notice(&file)?;
            job(Action::PublishNotice, move |vault, session| {
                Ok(json!(vault.publish_notice(session, &notice)?))
            })
        }
        Command::Notice {
            command: NoticeCommand::Due,
        } => job(Action::RenoticeDue, |vault, session| {
            Ok(json!(vault.renotice_due(session)?))
        }),
        Command::Enrol {
            template,
            subject: Some(id),
            model,
            consent,
        } => {
            if consent.given() {
                return Err(Failure::usage(
                    "consent options apply to a new subject; an enrolled subject's consent covers its templates",
                ));
            }
            let subject = subject(&id)?;
            let template = TemplateFile::read(&template, model, MAX_ROW_FILE)?;
            job(Action::Enrol, move |vault, session| {
                vault.add_template(session, &subject, template.input())?;
                Ok(json!({"subject": subject}))
            })
        }
        Command::Enrol {
            template,
            subject: None,
            model,
            consent,
        } => {
            let enrolment = consent.enrolment()?;
            let template = TemplateFile::read(&template, model, MAX_ROW_FILE)?;
            job(Action::Enrol, move |vault, session| {
                let subject = vault.enrol(session, &enrolment, template.input())?;
                Ok(json!({"subject": subject}))
            })
        }
        Command::EnrolBatch {
            templates,
            model,
            consent,
        } => {
            let enrolment = consent.enrolment()?;
            let templates = TemplateFile::read(&templates, model, MAX_BATCH_FILE)?;
            job(Action::EnrolBatch, move |vault, session| {
                let subjects = vault.enrol_batch(session, &enrolment, templates.input())?;
                Ok(json!({"enrolled": subjects.len(), "subjects": subjects}))
            })
        }
        Command::Verify {
            subject: id,
            probe,
            model,
        } => {
            let subject = subject(&id)?;
            let probe = TemplateFile::read(&probe, model, MAX_ROW_FILE)?;
            job(Action::Verify, move |vault, session| {
                Ok(json!(vault.verify(session, &subject, probe.input())?))
            })
        }
        Command::Identify {
            probe,
            k,
            model,
            threads,
        } => {
            let probe = TemplateFile::read(&probe, model.clone(), MAX_ROW_FILE)?;
            job(Action::Identify, move |vault, session| {
                vault.set_lookup_threads(usize::from(threads))?;
                let candidates = vault.identify(session, probe.input(), k)?;
                let model = model.unwrap_or_else(|| vault.default_model());
                Ok(json!({"model": model, "candidates": candidates}))
            })
        }
        Command::IdentifyBatch { probes, k, model } => {
            let probes = TemplateFile::read(&probes, model.clone(), MAX_BATCH_FILE)?;
            job(Action::Identify, move |vault, session| {
                let results = vault.identify_batch(session, probes.input(), k)?;
                let model = model.unwrap_or_else(|| vault.default_model());
                Ok(json!({"model": model, "results": results}))
            })
        }
        Command::Erase { subject: id } => {
            let subject = subject(&id)?;
            job(Action::Erase, move |vault, session| {
                vault.erase(session, &subject)?;
                Ok(json!({"erased": subject}))
            })
        }
        Command::Consent { command } => match command {
            ConsentCommand::GrantTransfer {
                subject: id,
                consent_method,
                guardian,
            } => {
                let subject = subject(&id)?;
                let consent = TransferConsent {
                    method: consent_method,
                    guardian: guardian.as_deref().map(parse_guardian).transpose()?,
                };
                job(Action::GrantTransfer, move |vault, session| {
                    vault.grant_transfer(session, &subject, &consent)?;
                    Ok(json!({"subject": subject, "transfer_consent": true}))
                })
            }
            ConsentCommand::WithdrawTransfer { subject: id } => {
                let subject = subject(&id)?;
                job(Action::WithdrawTransfer, move |vault, session| {
                    let withdrawn = vault.withdraw_transfer(session, &subject)?;
                    Ok(json!({"subject": subject, "transfer_consents_withdrawn": withdrawn}))
                })
            }
            ConsentCommand::Withdraw { subject: id } => {
                let subject = subject(&id)?;
                job(Action::WithdrawConsent, move |vault, session| {
                    vault.withdraw_consent(session, &subject)?;
                    Ok(json!({"subject": subject, "withdrawn": true}))
                })
            }
            ConsentCommand::Renew {
                subject: id,
                notice,
                consent_method,
                guardian,
            } => {
                let subject = subject(&id)?;
                let renewal = Enrolment {
                    guardian: guardian.as_deref().map(parse_guardian).transpose()?,
                    ..Enrolment::with_consent(notice, consent_method)
                };
                job(Action::RenewConsent, move |vault, session| {
                    vault.renew_consent(session, &subject, &renewal)?;
                    Ok(json!({"subject": subject, "notice": renewal.notice_version}))
                })
            }
        },
        Command::Purge => job(Action::Purge, |vault, session| {
            let purged = vault.purge(session)?;
            Ok(json!({"purged": purged.len(), "subjects": purged}))
        }),
        Command::Export {
            destination,
            out,
            recipient_key,
            subjects,
            model,
        } => {
            let request = ExportRequest {
                destination: destination.parse::<Destination>()?,
                recipient: RecipientPublicKey::from_file(&recipient_key)?,
                subjects: subjects.iter().map(|id| subject(id)).collect::<Result<_, _>>()?,
                model,
            };
            job(Action::Export, move |vault, session| {
                let written = vault.export_to_file(session, &request, &out)?;
                Ok(
                    json!({"exported": written.exported, "held_back": written.held_back, "bytes": written.bytes}),
                )
            })
        }
        Command::Stats => job(Action::Stats, |vault, session| Ok(json!(vault.stats(session)?))),
        Command::SetThreshold { threshold, model } => job(Action::SetThreshold, move |vault, session| {
            vault.set_model_threshold(session, model.as_deref(), threshold)?;
            let model = model.unwrap_or_else(|| vault.default_model());
            let threshold = vault.model_threshold(&model).unwrap_or(f64::NAN);
            Ok(json!({"model": model, "threshold": threshold}))
        }),
        Command::Model {
            command: ModelCommand::Add { name, dim, threshold },
        } => job(Action::AddModel, move |vault, session| {
            vault.add_model(session, &name, dim, threshold)?;
            Ok(json!({"model_added": {"name": name, "dim": dim, "threshold": vault.model_threshold(&name)}}))
        }),
        Command::Model {
            command: ModelCommand::Status,
        } => job(Action::ModelStatus, |vault, session| {
            Ok(json!(vault.model_status(session)?))
        }),
        Command::Model {
            command: ModelCommand::Retire { name, force },
        } => job(Action::RetireModel, move |vault, session| {
            Ok(json!({"model_retired": vault.retire_model(session, &name, force)?}))
        }),
        Command::Audit {
            command: AuditCommand::Verify { from, hash },
        } => {
            let checkpoint = match (from, hash) {
                (Some(seq), Some(hash)) => Some(AuditCheckpoint {
                    seq,
                    hash: parse_hash(&hash, "--hash")?,
                }),
                _ => None,
            };
            job(Action::AuditVerify, move |vault, session| {
                let verified = vault.verify_audit_from(session, checkpoint.as_ref())?;
                let head = verified.head;
                Ok(
                    json!({"ok": true, "entries": verified.entries, "head": {"seq": head.seq, "hash": hex(&head.hash)}}),
                )
            })
        }
        Command::Audit {
            command: AuditCommand::Show { after, limit },
        } => job(Action::AuditShow, move |vault, session| {
            let entries = match limit {
                Some(limit) => vault.audit_page(session, after, limit)?,
                None => vault.audit_page(session, after, usize::MAX)?,
            };
            Ok(json!({"entries": entries}))
        }),
        Command::Subjects => job(Action::ListSubjects, |vault, session| {
            Ok(json!({"subjects": vault.subjects(session)?}))
        }),
        Command::Profile {
            command: ProfileCommand::Show,
        } => job(Action::ShowProfile, |vault, session| {
            let profile = vault.profile(session)?;
            Ok(json!({
                "profile": profile,
                "matching_refused": vault.deployment_refusal().map(|r| r.to_string()),
                "enrolment_refused": vault.enrolment_refusal().map(|r| r.to_string()),
            }))
        }),
        Command::Profile {
            command: ProfileCommand::Set { file },
        } => {
            let profile = read_profile(&file)?;
            job(Action::SetProfile, move |vault, session| {
                Ok(json!({"profile_recorded": vault.set_profile(session, &profile)?}))
            })
        }
        Command::Pia {
            command: PiaCommand::Add { file, report },
        } => {
            let assessment = read_assessment(&file, report.as_deref())?;
            job(Action::AddAssessment, move |vault, session| {
                Ok(json!({"assessment_recorded": vault.add_assessment(session, &assessment)?}))
            })
        }
        Command::Pia {
            command: PiaCommand::List,
        } => job(Action::ListAssessments, |vault, session| {
            Ok(json!({"assessments": vault.assessments(session)?, "incidents": vault.incidents(session)?}))
        }),
        Command::Pia {
            command: PiaCommand::Incident { on, description },
        } => {
            let incident = facevault::Incident {
                occurred_on: on,
                description,
            };
            job(Action::RecordIncident, move |vault, session| {
                vault.record_incident(session, &incident)?;
                Ok(
                    json!({"incident": incident, "enrolment_refused": vault.enrolment_refusal().map(|r| r.to_string())}),
                )
            })
        }
        Command::Filing {
            command: FilingCommand::Status,
        } => job(Action::FilingStatus, |vault, session| {
            Ok(json!(vault.filing_status(session)?))
        }),
        Command::Filing {
            command: FilingCommand::Report { out },
        } => {
            refuse_existing(&out)?;
            job(Action::FilingReport, move |vault, session| {
                let report = vault.filing_report(session)?;
                let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::InvalidArgument {
                    what: "filing report",
                    reason: e.to_string(),
                })?;
                write_new_file(&out, &json)?;
                Ok(json!({"filing_report": out, "missing": report.missing}))
            })
        }
        Command::Filing {
            command: FilingCommand::Calendar { file },
        } => {
            let bytes = read_input(&file, MAX_NOTICE_FILE)?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| Failure::usage(format!("{} is not UTF-8", file.display())))?;
            let calendar = facevault::Calendar::from_json(text)?;
            job(Action::SetCalendar, move |vault, session| {
                vault.set_calendar(session, &calendar)?;
                let file = calendar.to_file();
                Ok(
                    json!({"calendar": {"holidays": file.holidays.len(), "workdays": file.workdays.len(), "source": file.source}}),
                )
            })
        }
        Command::Filing {
            command: FilingCommand::Done { kind, reference, on },
        } => {
            let kind: facevault::FilingKind = kind.parse()?;
            job(Action::RecordFiling, move |vault, session| {
                Ok(json!({"filing_made": vault.record_filing(session, kind, on.as_deref(), &reference)?}))
            })
        }
        Command::Decommission { confirm } => job(Action::Decommission, move |vault, session| {
            Ok(json!({"decommissioned": vault.decommission(session, &confirm)?}))
        }),
        Command::Compliance { html } => {
            if let Some(out) = &html {
                refuse_existing(out)?;
            }
            job(Action::Compliance, move |vault, session| {
                let report = vault.compliance(session)?;
                if let Some(out) = &html {
                    write_new_file(out, compliance_page::render(&report).as_bytes())?;
                }
                Ok(json!({"compliance": report, "html": html}))
            })
        }
    }
}

/// Refuses to overwrite a file before the vault is opened.
fn refuse_existing(path: &Path) -> Result<(), Failure> {
    if path.exists() {
        return Err(Error::AlreadyExists(path.to_path_buf()).into());
    }
    Ok(())
}

/// Writes a new file (never over an existing one), synced.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn read_profile(path: &Path) -> Result<facevault::DeploymentProfile, Failure> {
    let bytes = read_input(path, MAX_NOTICE_FILE)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Failure::usage(format!("{} is not UTF-8", path.display())))?;
    Ok(facevault::DeploymentProfile::from_json(text)?)
}

/// Reads an assessment; with `report`, its SHA-256 is checked against (or fills in) the file's
/// `report_sha256`.
fn read_assessment(path: &Path, report: Option<&Path>) -> Result<facevault::Assessment, Failure> {
    let bytes = read_input(path, MAX_NOTICE_FILE)?;
    let mut value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::usage(format!("{} is not an assessment: {e}", path.display())))?;
    if let Some(report) = report {
        let digest = sha256_file(report)?;
        match value.get("report_sha256").and_then(Value::as_str) {
            Some(given) if given != digest => {
                return Err(Failure::bad_input(
                    "report_mismatch",
                    format!(
                        "{} has SHA-256 {digest}, but the assessment names {given}",
                        report.display()
                    ),
                ))
            }
            _ => {}
        }
        if let Some(object) = value.as_object_mut() {
            object.insert("report_sha256".into(), Value::String(digest));
        }
    }
    Ok(facevault::Assessment::from_json(&value.to_string())?)
}

/// The SHA-256 of a file, hex, read in blocks (a report may be large).
fn sha256_file(path: &Path) -> Result<String, Failure> {
    let unreadable = |e: std::io::Error| Failure::usage(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(Failure::bad_input(
            "not_a_file",
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut block = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut block).map_err(unreadable)?;
        if read == 0 {
            break;
        }
        context.update(&block[..read]);
    }
    Ok(hex(context.finish().as_ref()))
}

impl InitArgs {
    fn run(self, db: &Path, key_file: &Path) -> Result<Value, Failure> {
        let password = password_from(PASSWORD_VAR)?;
        let days = |n: i64| {
            n.checked_mul(DAY_SECS)
                .ok_or_else(|| Failure::usage("retention too long"))
        };
        let config = VaultConfig {
            dim: self.dim,
            model: self.model.clone(),
            threshold: self.threshold,
            max_retention_secs: days(self.max_retention_days)?,
            max_minor_retention_secs: days(self.max_minor_retention_days)?,
            utc_offset_minutes: self.utc_offset_minutes,
            scan: self.scan.parse()?,
            throttle: ThrottlePolicy {
                identify_per_minute: self.identify_per_minute,
                identify_misses_before_delay: self.identify_misses,
                ..ThrottlePolicy::default()
            },
            score_roles: parse_roles(&self.score_roles)?,
            score_decimals: self.score_decimals,
            audit_epochs: EpochPolicy {
                max_records: self.audit_epoch_records,
                max_millis: self
                    .audit_epoch_minutes
                    .checked_mul(60_000)
                    .ok_or_else(|| Failure::usage("--audit-epoch-minutes is too large"))?,
            },
            profile: self.profile.as_deref().map(read_profile).transpose()?,
            filing_threshold: self.filing_threshold,
        };
        if db.exists() {
            return Err(Error::AlreadyExists(db.to_path_buf()).into());
        }
        if let Some(out) = self.audit_key_out.as_ref().filter(|out| out.exists()) {
            return Err(Error::AlreadyExists(out.clone()).into());
        }
        let new_key = !key_file.exists();
        let keys = KeyFile::open_or_create(key_file)?;
        let vault = Vault::create(db, &keys, &config, &self.admin, &password).inspect_err(|_| {
            if new_key {
                // A key that never protected a vault is worth nothing; leave no stray secret.
                let _ = std::fs::remove_file(key_file);
            }
        })?;
        let threshold = vault.threshold();
        let vault_refusal = vault.enrolment_refusal().map(|refusal| refusal.to_string());
        if let Some(out) = &self.audit_key_out {
            let handed_over = vault
                .login(&self.admin, &password)
                .and_then(|admin| vault.hand_over_audit_key(&admin, |key| key.write_to_file(out)));
            if let Err(e) = handed_over {
                let _ = vault.close();
                return Err(Failure::from(e).context("the vault was created, but its audit verification key was not written; run `audit handover`"));
            }
        }
        // The vault is created and committed; a WAL that cannot be truncated now is truncated by
        // the next close, so this does not turn a success into a failure.
        let _ = vault.close();
        Ok(json!({
            "dim": self.dim,
            "model": self.model,
            "threshold": threshold,
            "max_retention_days": self.max_retention_days,
            "max_minor_retention_days": self.max_minor_retention_days,
            "scan": self.scan,
            "admin": self.admin,
            "audit_verification_key": self.audit_key_out,
            "profile": config.profile.is_some(),
            "filing_threshold": self.filing_threshold,
            "deployment_refused": vault_refusal,
        }))
    }
}

/// A template or probe file's bytes, with the model the caller says made them.
struct TemplateFile {
    bytes: Zeroizing<Vec<u8>>,
    model: Option<String>,
}

impl TemplateFile {
    fn read(path: &Path, model: Option<String>, limit: u64) -> Result<Self, Failure> {
        Ok(Self {
            bytes: read_input(path, limit)?,
            model,
        })
    }

    fn input(&self) -> TemplateInput<'_> {
        let input = TemplateInput::le_bytes(&self.bytes);
        match &self.model {
            Some(model) => input.from_model(model),
            None => input,
        }
    }
}

fn password_from(variable: &str) -> Result<Password, Failure> {
    match std::env::var(variable) {
        Ok(password) => Ok(Password::new(password)),
        Err(_) => Err(Failure::usage(format!(
            "set {variable} to the password (it is never read from argv)"
        ))),
    }
}

/// `admin,auditor`, or `none`.
fn parse_roles(text: &str) -> Result<RoleSet, Failure> {
    if text == "none" {
        return Ok(RoleSet::NONE);
    }
    let roles = text
        .split(',')
        .map(|role| role.trim().parse::<Role>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RoleSet::of(&roles))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 32-byte audit chain hash from its 64 hex digits.
fn parse_hash(hex: &str, option: &str) -> Result<[u8; 32], Failure> {
    let bad = || {
        Failure::usage(format!(
            "{option} takes the 64 hex digits of a head hash facevault printed"
        ))
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut mac = [0u8; 32];
    for (byte, pair) in mac.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// "NAME, RELATIONSHIP": split at the last comma, so a name may itself hold commas.
fn parse_guardian(text: &str) -> Result<Guardian, Failure> {
    let (name, relationship) = text.rsplit_once(',').ok_or_else(|| {
        Failure::usage("--guardian takes \"NAME, RELATIONSHIP\", e.g. \"Wang Fang, mother\"")
    })?;
    Ok(Guardian {
        name: name.trim().to_string(),
        relationship: relationship.trim().to_string(),
    })
}

/// Reads a notice file: a JSON object of texts. Missing items read as empty, so that the vault
/// refuses (and audits) an incomplete notice; an unknown or repeated key, or a value that is not
/// text, is a usage error.
fn read_notice(path: &Path) -> Result<Notice, Failure> {
    let bytes = read_input(path, MAX_NOTICE_FILE)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::usage(format!("{} is not a notice: {e}", path.display())))
}

/// Reads a whole input file into a buffer sized up front and zeroed on drop (template bytes are
/// biometric). Only a regular file of at most `limit` bytes is read: a FIFO or a device would
/// block or never end, and a huge file would exhaust memory. The open does not block
/// (`O_NONBLOCK`), and the type and size are taken from the opened handle.
fn read_input(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let unreadable = |e: std::io::Error| Failure::usage(format!("cannot read {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(Failure::bad_input(
            "not_a_file",
            format!("{} is not a regular file", path.display()),
        ));
    }
    let len = metadata.len();
    if len > limit {
        return Err(Failure::bad_input(
            "file_too_large",
            format!(
                "{} holds {len} bytes; at most {limit} are read here",
                path.display()
            ),
        ));
    }
    let capacity =
        usize::try_from(len).map_err(|_| Failure::usage(format!("{} is too large", path.display())))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    // At most `len` bytes, however the file changes meanwhile: the buffer never grows.
    file.take(len).read_to_end(&mut bytes).map_err(unreadable)?;
    Ok(bytes)
}
