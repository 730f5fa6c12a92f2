//! `facevault`: the command-line shell over the library, for device test harnesses.
//!
//! It parses, calls the vault, and prints exactly one JSON object: the answer on stdout, or
//! `{"error", "message"}` on stderr with a stable exit code (2 bad usage or input, 3 refused,
//! 4 integrity, 1 anything else). Passwords come from the environment, never from argv.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use facevault::{
    Action, Destination, Enrolment, Error, ErrorClass, ExportRequest, Guardian, KeyFile, Notice, Password,
    RecipientPublicKey, RecipientSecretKey, Role, Session, SubjectId, TemplateInput, TransferConsent, Vault,
    VaultConfig,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

const PASSWORD_VAR: &str = "FACEVAULT_PASSWORD";
const NEW_PASSWORD_VAR: &str = "FACEVAULT_NEW_PASSWORD";
const DAY_SECS: i64 = 86_400;

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
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a vault (and the key file if missing) with its first admin, whose password is read
    /// from FACEVAULT_PASSWORD.
    Init {
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
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Notices to data subjects (Art. 5).
    Notice {
        #[command(subcommand)]
        command: NoticeCommand,
    },
    /// Enrol one template (a raw little-endian f32 file of one row): a new subject with its
    /// consent, or another template of an enrolled subject.
    Enroll {
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
    EnrollBatch {
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
    Erase {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
    },
    /// Record, renew or withdraw consents.
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Erase every subject past its retention.
    Purge,
    /// Export templates in a bundle sealed to a recipient's X25519 public key.
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
    },
    /// Write a recipient key pair: FILE (32-byte secret, mode 0600) and FILE.pub.
    KeygenRecipient {
        /// The secret key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Open a bundle with the recipient's secret key and print its contents.
    OpenBundle {
        /// The bundle.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The recipient's secret key file.
        #[arg(long, value_name = "FILE")]
        recipient_secret: PathBuf,
    },
    /// Counts and settings.
    Stats,
    /// Change the match threshold (admins).
    SetThreshold {
        /// The new threshold (cosine similarity, -1 to 1).
        #[arg(allow_negative_numbers = true)]
        threshold: f32,
    },
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
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
    Add {
        /// The new user's name.
        name: String,
        /// admin, enroller, operator, auditor or exporter.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum NoticeCommand {
    /// Publish a notice version from a JSON file with the keys version, processor_name,
    /// processor_contact, purpose, method, retention, necessity_and_impact and rights.
    Publish {
        /// The notice file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// List subjects consented under an older notice than the current one.
    Due,
}

#[derive(Subcommand)]
enum ConsentCommand {
    /// Record a subject's separate consent to transfer face data off the device.
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
    WithdrawTransfer {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
    },
    /// Withdraw a subject's consent: its face data is erased at once, for good.
    Withdraw {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
    },
    /// Record a fresh processing consent under the current notice.
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
    /// Check the whole chain; names the first bad record.
    Verify,
    /// Print every record.
    Show,
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
        Failure {
            code: "usage",
            message: message.into(),
            exit: 2,
            extra: None,
        }
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
    match run(cli) {
        Ok(answer) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{answer}").and_then(|()| out.flush()) {
                // A closed pipe means the reader has what it wanted.
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            }
        }
        Err(failure) => report(failure),
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
    let acts_as_nobody = matches!(
        cli.command,
        Command::Init { .. } | Command::KeygenRecipient { .. } | Command::OpenBundle { .. }
    );
    if acts_as_nobody && cli.as_user.is_some() {
        return Err(Failure::usage("this command takes no --as"));
    }
    // The recipient's tools work on bundles and keys alone, with no vault.
    match &cli.command {
        Command::KeygenRecipient { out } => {
            let public = RecipientSecretKey::generate()?.write_pair(out)?;
            return Ok(json!({"secret": out, "public": public}));
        }
        Command::OpenBundle {
            input,
            recipient_secret,
        } => {
            let secret = RecipientSecretKey::from_file(recipient_secret)?;
            let bundle = read_file(input)?;
            let contents = facevault::open_bundle(&secret, &bundle)?;
            return serde_json::to_value(&contents).map_err(|e| Failure::usage(e.to_string()));
        }
        _ => {}
    }
    let db = cli
        .db
        .as_deref()
        .ok_or_else(|| Failure::usage("--db FILE is required"))?;
    let key_file = cli
        .key_file
        .as_deref()
        .ok_or_else(|| Failure::usage("--key-file FILE is required"))?;

    if let Command::Init {
        dim,
        admin,
        model,
        threshold,
        max_retention_days,
        max_minor_retention_days,
        utc_offset_minutes,
        scan,
    } = &cli.command
    {
        let password = password_from(PASSWORD_VAR)?;
        let days = |n: i64| {
            n.checked_mul(DAY_SECS)
                .ok_or_else(|| Failure::usage("retention too long"))
        };
        let config = VaultConfig {
            dim: *dim,
            model: model.clone(),
            threshold: *threshold,
            max_retention_secs: days(*max_retention_days)?,
            max_minor_retention_secs: days(*max_minor_retention_days)?,
            utc_offset_minutes: *utc_offset_minutes,
            scan: scan.parse()?,
        };
        if db.exists() {
            return Err(Error::AlreadyExists(db.to_path_buf()).into());
        }
        let new_key = !key_file.exists();
        let keys = KeyFile::open_or_create(key_file)?;
        let vault = Vault::create(db, &keys, &config, admin, &password).inspect_err(|_| {
            if new_key {
                // A key that never protected a vault is worth nothing; leave no stray secret.
                let _ = std::fs::remove_file(key_file);
            }
        })?;
        // The vault is created and committed; a WAL that cannot be truncated now is truncated by
        // the next close, so this does not turn a success into a failure.
        let _ = vault.close();
        return Ok(json!({
            "dim": dim,
            "model": model,
            "threshold": decimal(*threshold),
            "max_retention_days": max_retention_days,
            "max_minor_retention_days": max_minor_retention_days,
            "scan": scan,
            "admin": admin,
        }));
    }

    // Everything the command needs from argv and files is gathered before the vault is opened,
    // so a usage error touches nothing. Template bytes are not checked here: the vault checks
    // (and audits) them.
    let request = Request::parse(&cli.command)?;
    let keys = KeyFile::new(key_file);
    let mut vault = Vault::open(db, &keys)?;
    let Some(user) = cli.as_user.as_deref() else {
        return Err(vault.refuse_unauthenticated(request.action()).into());
    };
    let password = password_from(PASSWORD_VAR)?;
    let session = vault.login(user, &password)?;
    let answer = request.execute(&mut vault, &session)?;
    // The operation is committed; a WAL that cannot be truncated now (another process is reading
    // the vault) is truncated by the next close, so this does not turn a success into a failure.
    let _ = vault.close();
    Ok(answer)
}

/// A command with its arguments checked and its files read.
enum Request {
    AddUser {
        name: String,
        role: Role,
        password: Password,
    },
    PublishNotice {
        notice: Notice,
    },
    NoticeDue,
    Enrol {
        enrolment: Enrolment,
        template: TemplateFile,
    },
    AddTemplate {
        subject: SubjectId,
        template: TemplateFile,
    },
    EnrolBatch {
        enrolment: Enrolment,
        templates: TemplateFile,
    },
    Verify {
        subject: SubjectId,
        probe: TemplateFile,
    },
    Identify {
        probe: TemplateFile,
        k: usize,
        threads: usize,
    },
    IdentifyBatch {
        probes: TemplateFile,
        k: usize,
    },
    Erase {
        subject: SubjectId,
    },
    GrantTransfer {
        subject: SubjectId,
        consent: TransferConsent,
    },
    WithdrawTransfer {
        subject: SubjectId,
    },
    Withdraw {
        subject: SubjectId,
    },
    Renew {
        subject: SubjectId,
        renewal: Enrolment,
    },
    Purge,
    Export {
        request: ExportRequest,
        out: PathBuf,
    },
    Stats,
    SetThreshold {
        threshold: f32,
    },
    AuditVerify,
    AuditShow,
}

impl Request {
    fn parse(command: &Command) -> Result<Self, Failure> {
        let subject = |text: &str| -> Result<SubjectId, Failure> { Ok(text.parse()?) };
        Ok(match command {
            Command::Init { .. } | Command::KeygenRecipient { .. } | Command::OpenBundle { .. } => {
                return Err(Failure::usage("this command does not open a vault"));
            }
            Command::User {
                command: UserCommand::Add { name, role },
            } => Request::AddUser {
                name: name.clone(),
                role: role.parse()?,
                password: password_from(NEW_PASSWORD_VAR)?,
            },
            Command::Notice {
                command: NoticeCommand::Publish { file },
            } => Request::PublishNotice {
                notice: read_notice(file)?,
            },
            Command::Notice {
                command: NoticeCommand::Due,
            } => Request::NoticeDue,
            Command::Enroll {
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
                Request::AddTemplate {
                    subject: subject(id)?,
                    template: TemplateFile::read(template, model)?,
                }
            }
            Command::Enroll {
                template,
                subject: None,
                model,
                consent,
            } => Request::Enrol {
                enrolment: consent.enrolment()?,
                template: TemplateFile::read(template, model)?,
            },
            Command::EnrollBatch {
                templates,
                model,
                consent,
            } => Request::EnrolBatch {
                enrolment: consent.enrolment()?,
                templates: TemplateFile::read(templates, model)?,
            },
            Command::Verify {
                subject: id,
                probe,
                model,
            } => Request::Verify {
                subject: subject(id)?,
                probe: TemplateFile::read(probe, model)?,
            },
            Command::Identify {
                probe,
                k,
                model,
                threads,
            } => Request::Identify {
                probe: TemplateFile::read(probe, model)?,
                k: *k,
                threads: usize::from(*threads),
            },
            Command::IdentifyBatch { probes, k, model } => Request::IdentifyBatch {
                probes: TemplateFile::read(probes, model)?,
                k: *k,
            },
            Command::Erase { subject: id } => Request::Erase {
                subject: subject(id)?,
            },
            Command::Consent { command } => match command {
                ConsentCommand::GrantTransfer {
                    subject: id,
                    consent_method,
                    guardian,
                } => Request::GrantTransfer {
                    subject: subject(id)?,
                    consent: TransferConsent {
                        method: consent_method.clone(),
                        guardian: guardian.as_deref().map(parse_guardian).transpose()?,
                    },
                },
                ConsentCommand::WithdrawTransfer { subject: id } => Request::WithdrawTransfer {
                    subject: subject(id)?,
                },
                ConsentCommand::Withdraw { subject: id } => Request::Withdraw {
                    subject: subject(id)?,
                },
                ConsentCommand::Renew {
                    subject: id,
                    notice,
                    consent_method,
                    guardian,
                } => Request::Renew {
                    subject: subject(id)?,
                    renewal: Enrolment {
                        guardian: guardian.as_deref().map(parse_guardian).transpose()?,
                        ..Enrolment::with_consent(notice.clone(), consent_method.clone())
                    },
                },
            },
            Command::Purge => Request::Purge,
            Command::Export {
                destination,
                out,
                recipient_key,
                subjects,
            } => {
                if out.exists() {
                    return Err(Error::AlreadyExists(out.clone()).into());
                }
                Request::Export {
                    request: ExportRequest {
                        destination: destination.parse::<Destination>()?,
                        recipient: RecipientPublicKey::from_file(recipient_key)?,
                        subjects: subjects.iter().map(|id| subject(id)).collect::<Result<_, _>>()?,
                    },
                    out: out.clone(),
                }
            }
            Command::Stats => Request::Stats,
            Command::SetThreshold { threshold } => Request::SetThreshold {
                threshold: *threshold,
            },
            Command::Audit {
                command: AuditCommand::Verify,
            } => Request::AuditVerify,
            Command::Audit {
                command: AuditCommand::Show,
            } => Request::AuditShow,
        })
    }

    fn action(&self) -> Action {
        match self {
            Request::AddUser { .. } => Action::AddUser,
            Request::PublishNotice { .. } => Action::PublishNotice,
            Request::NoticeDue => Action::RenoticeDue,
            Request::Enrol { .. } | Request::AddTemplate { .. } => Action::Enrol,
            Request::EnrolBatch { .. } => Action::EnrolBatch,
            Request::Verify { .. } => Action::Verify,
            Request::Identify { .. } | Request::IdentifyBatch { .. } => Action::Identify,
            Request::Erase { .. } => Action::Erase,
            Request::GrantTransfer { .. } => Action::GrantTransfer,
            Request::WithdrawTransfer { .. } => Action::WithdrawTransfer,
            Request::Withdraw { .. } => Action::WithdrawConsent,
            Request::Renew { .. } => Action::RenewConsent,
            Request::Purge => Action::Purge,
            Request::Export { .. } => Action::Export,
            Request::Stats => Action::Stats,
            Request::SetThreshold { .. } => Action::SetThreshold,
            Request::AuditVerify => Action::AuditVerify,
            Request::AuditShow => Action::AuditShow,
        }
    }

    fn execute(self, vault: &mut Vault, session: &Session) -> Result<Value, Failure> {
        Ok(match self {
            Request::AddUser { name, role, password } => {
                vault.add_user(session, &name, role, &password)?;
                json!({"user": name, "role": role.as_str()})
            }
            Request::PublishNotice { notice } => json!(vault.publish_notice(session, &notice)?),
            Request::NoticeDue => json!(vault.renotice_due(session)?),
            Request::Enrol { enrolment, template } => {
                let subject = vault.enrol(session, &enrolment, template.input())?;
                json!({"subject": subject})
            }
            Request::AddTemplate { subject, template } => {
                vault.add_template(session, &subject, template.input())?;
                json!({"subject": subject})
            }
            Request::EnrolBatch { enrolment, templates } => {
                let subjects = vault.enrol_batch(session, &enrolment, templates.input())?;
                json!({"enrolled": subjects.len(), "subjects": subjects})
            }
            Request::Verify { subject, probe } => {
                json!(vault.verify(session, &subject, probe.input())?)
            }
            Request::Identify { probe, k, threads } => {
                vault.set_lookup_threads(threads)?;
                json!({"candidates": vault.identify(session, probe.input(), k)?})
            }
            Request::IdentifyBatch { probes, k } => {
                json!({"results": vault.identify_batch(session, probes.input(), k)?})
            }
            Request::Erase { subject } => {
                vault.erase(session, &subject)?;
                json!({"erased": subject})
            }
            Request::GrantTransfer { subject, consent } => {
                vault.grant_transfer(session, &subject, &consent)?;
                json!({"subject": subject, "transfer_consent": true})
            }
            Request::WithdrawTransfer { subject } => {
                let withdrawn = vault.withdraw_transfer(session, &subject)?;
                json!({"subject": subject, "transfer_consents_withdrawn": withdrawn})
            }
            Request::Withdraw { subject } => {
                vault.withdraw_consent(session, &subject)?;
                json!({"subject": subject, "withdrawn": true})
            }
            Request::Renew { subject, renewal } => {
                vault.renew_consent(session, &subject, &renewal)?;
                json!({"subject": subject, "notice": renewal.notice_version})
            }
            Request::Purge => json!({"purged": vault.purge(session)?}),
            Request::Export { request, out } => {
                let bundle = vault.export(session, &request)?;
                write_new_private_file(&out, &bundle.bytes)?;
                json!({"exported": bundle.exported, "held_back": bundle.held_back, "bytes": bundle.bytes.len()})
            }
            Request::Stats => json!(vault.stats(session)?),
            Request::SetThreshold { threshold } => {
                vault.set_threshold(session, threshold)?;
                json!({"threshold": decimal(threshold)})
            }
            Request::AuditVerify => json!({"ok": true, "entries": vault.verify_audit(session)?}),
            Request::AuditShow => json!({"entries": vault.audit_log(session)?}),
        })
    }
}

/// A template or probe file's bytes, with the model the caller says made them.
struct TemplateFile {
    bytes: Zeroizing<Vec<u8>>,
    model: Option<String>,
}

impl TemplateFile {
    fn read(path: &Path, model: &Option<String>) -> Result<Self, Failure> {
        Ok(Self {
            bytes: read_file(path)?,
            model: model.clone(),
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

/// An f32 as the decimal it was typed as (0.4, not 0.4000000059604645).
fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

fn password_from(variable: &str) -> Result<Password, Failure> {
    match std::env::var(variable) {
        Ok(password) => Ok(Password::new(password)),
        Err(_) => Err(Failure::usage(format!(
            "set {variable} to the password (it is never read from argv)"
        ))),
    }
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

/// Reads a notice file. Missing items become empty, so that the vault refuses (and audits) an
/// incomplete notice; unknown keys or non-text values are a usage error.
fn read_notice(path: &Path) -> Result<Notice, Failure> {
    let bytes = read_file(path)?;
    let value: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::usage(format!("{} is not a JSON object: {e}", path.display())))?;
    const KEYS: [&str; 8] = [
        "version",
        "processor_name",
        "processor_contact",
        "purpose",
        "method",
        "retention",
        "necessity_and_impact",
        "rights",
    ];
    if let Some(unknown) = value.keys().find(|key| !KEYS.contains(&key.as_str())) {
        return Err(Failure::usage(format!("unknown notice key {unknown:?}")));
    }
    let item = |key: &str| -> Result<String, Failure> {
        match value.get(key) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(Failure::usage(format!("notice key {key:?} must be text"))),
        }
    };
    Ok(Notice {
        version: item("version")?,
        processor_name: item("processor_name")?,
        processor_contact: item("processor_contact")?,
        purpose: item("purpose")?,
        method: item("method")?,
        retention: item("retention")?,
        necessity_and_impact: item("necessity_and_impact")?,
        rights: item("rights")?,
    })
}

/// Reads a whole file into a buffer sized up front and zeroed on drop: template bytes are biometric.
fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let unreadable = |e: std::io::Error| Failure::usage(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    let len = usize::try_from(len).map_err(|_| Failure::usage(format!("{} is too large", path.display())))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(len));
    file.take(len as u64)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(bytes)
}

/// Writes a new file readable only by its owner; refuses to overwrite.
fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let failed = |e: std::io::Error| Failure {
        code: "io",
        message: format!("cannot write {}: {e}", path.display()),
        exit: 1,
        extra: None,
    };
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(failed)
}
