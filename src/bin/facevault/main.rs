//! `facevault`: the command-line shell over the library, for device test harnesses.
//!
//! It parses, calls the vault, and prints exactly one JSON object: the answer on stdout, or
//! `{"error", "message"}` on stderr with a stable exit code (2 bad usage or input, 3 refused,
//! 4 integrity, 1 anything else). Passwords come from the environment, never from argv.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use facevault::{
    Action, Error, ErrorClass, KeyFile, Password, Role, SubjectId, TemplateInput, Vault,
    VaultConfig,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

const PASSWORD_VAR: &str = "FACEVAULT_PASSWORD";
const NEW_PASSWORD_VAR: &str = "FACEVAULT_NEW_PASSWORD";

/// An encrypted, law-enforcing face-template store.
#[derive(Parser)]
#[command(name = "facevault", version, about)]
struct Cli {
    /// The vault's database file.
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// The 32-byte master key file (mode 0600); `init` creates it when missing.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
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
        #[arg(long, default_value_t = facevault::DEFAULT_THRESHOLD)]
        threshold: f32,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Enrol one template (a raw little-endian f32 file of one row).
    Enroll {
        /// The template file.
        #[arg(long, value_name = "FILE")]
        template: PathBuf,
        /// Add the template to this enrolled subject instead of creating a new one.
        #[arg(long, value_name = "ID")]
        subject: Option<String>,
    },
    /// Enrol every row of a file as a new subject, all or nothing.
    EnrollBatch {
        /// The templates file: rows of raw little-endian f32.
        #[arg(long, value_name = "FILE")]
        templates: PathBuf,
    },
    /// 1:1: does the probe match this subject?
    Verify {
        /// The subject claimed.
        #[arg(long, value_name = "ID")]
        subject: String,
        /// The probe file: one row of raw little-endian f32.
        #[arg(long, value_name = "FILE")]
        probe: PathBuf,
    },
    /// 1:N: who is this?
    Identify {
        /// The probe file: one row of raw little-endian f32.
        #[arg(long, value_name = "FILE")]
        probe: PathBuf,
        /// How many candidates at most.
        #[arg(long, default_value_t = 1)]
        k: usize,
    },
    /// Erase a subject: its key, its templates, at once.
    Erase {
        /// The subject.
        #[arg(long, value_name = "ID")]
        subject: String,
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
    if let Command::Init {
        dim,
        admin,
        model,
        threshold,
    } = &cli.command
    {
        let password = password_from(PASSWORD_VAR)?;
        let keys = KeyFile::open_or_create(&cli.key_file)?;
        let config = VaultConfig {
            dim: *dim,
            model: model.clone(),
            threshold: *threshold,
        };
        let vault = Vault::create(&cli.db, &keys, &config, admin, &password)?;
        vault.close()?;
        return Ok(
            json!({"dim": dim, "model": model, "threshold": decimal(*threshold), "admin": admin}),
        );
    }

    // Everything the command needs from argv and files is gathered before the vault is opened,
    // so a usage error touches nothing. Template bytes are not checked here: the vault checks
    // (and audits) them.
    let request = Request::parse(&cli.command)?;
    let keys = KeyFile::new(&cli.key_file);
    let mut vault = Vault::open(&cli.db, &keys)?;
    let Some(user) = cli.as_user.as_deref() else {
        return Err(vault.refuse_unauthenticated(request.action()).into());
    };
    let password = password_from(PASSWORD_VAR)?;
    let session = vault.login(user, &password)?;
    let answer = request.execute(&mut vault, &session)?;
    vault.close()?;
    Ok(answer)
}

/// A command with its arguments checked and its files read.
enum Request {
    AddUser {
        name: String,
        role: Role,
        password: Password,
    },
    Enrol {
        subject: Option<SubjectId>,
        template: Zeroizing<Vec<u8>>,
    },
    EnrolBatch {
        templates: Zeroizing<Vec<u8>>,
    },
    Verify {
        subject: SubjectId,
        probe: Zeroizing<Vec<u8>>,
    },
    Identify {
        probe: Zeroizing<Vec<u8>>,
        k: usize,
    },
    Erase {
        subject: SubjectId,
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
        Ok(match command {
            Command::Init { .. } => return Err(Failure::usage("init takes no --as")),
            Command::User {
                command: UserCommand::Add { name, role },
            } => Request::AddUser {
                name: name.clone(),
                role: role.parse()?,
                password: password_from(NEW_PASSWORD_VAR)?,
            },
            Command::Enroll { template, subject } => Request::Enrol {
                subject: subject.as_deref().map(str::parse).transpose()?,
                template: read_file(template)?,
            },
            Command::EnrollBatch { templates } => Request::EnrolBatch {
                templates: read_file(templates)?,
            },
            Command::Verify { subject, probe } => Request::Verify {
                subject: subject.parse()?,
                probe: read_file(probe)?,
            },
            Command::Identify { probe, k } => Request::Identify {
                probe: read_file(probe)?,
                k: *k,
            },
            Command::Erase { subject } => Request::Erase {
                subject: subject.parse()?,
            },
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
            Request::Enrol { .. } => Action::Enrol,
            Request::EnrolBatch { .. } => Action::EnrolBatch,
            Request::Verify { .. } => Action::Verify,
            Request::Identify { .. } => Action::Identify,
            Request::Erase { .. } => Action::Erase,
            Request::Stats => Action::Stats,
            Request::SetThreshold { .. } => Action::SetThreshold,
            Request::AuditVerify => Action::AuditVerify,
            Request::AuditShow => Action::AuditShow,
        }
    }

    fn execute(self, vault: &mut Vault, session: &facevault::Session) -> Result<Value, Error> {
        Ok(match self {
            Request::AddUser {
                name,
                role,
                password,
            } => {
                vault.add_user(session, &name, role, &password)?;
                json!({"user": name, "role": role.as_str()})
            }
            Request::Enrol { subject, template } => {
                let subject =
                    vault.enrol(session, subject.as_ref(), TemplateInput::LeBytes(&template))?;
                json!({"subject": subject})
            }
            Request::EnrolBatch { templates } => {
                let subjects = vault.enrol_batch(session, TemplateInput::LeBytes(&templates))?;
                json!({"enrolled": subjects.len(), "subjects": subjects})
            }
            Request::Verify { subject, probe } => {
                json!(vault.verify(session, &subject, TemplateInput::LeBytes(&probe))?)
            }
            Request::Identify { probe, k } => {
                json!({"candidates": vault.identify(session, TemplateInput::LeBytes(&probe), k)?})
            }
            Request::Erase { subject } => {
                vault.erase(session, &subject)?;
                json!({"erased": subject})
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

/// Reads a whole file into a buffer sized up front and zeroed on drop: template bytes are biometric.
fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let unreadable =
        |e: std::io::Error| Failure::usage(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    let len = usize::try_from(len)
        .map_err(|_| Failure::usage(format!("{} is too large", path.display())))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(len));
    file.take(len as u64)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(bytes)
}
