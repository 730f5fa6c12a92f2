//! Who may do what: roles, the actions they permit, and password credentials.
//!
//! Passwords are hashed with PBKDF2-HMAC-SHA256 and a random salt; verification is constant-time.
//! A failed login takes as long for an unknown user as for a known one, so the answer says nothing
//! about which names exist.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use ring::pbkdf2;
use zeroize::Zeroizing;

use crate::crypto;
use crate::error::{Error, Result};
use crate::store::LockState;

/// PBKDF2-HMAC-SHA256 iterations for new credentials (OWASP's 2023 recommendation). Each
/// credential stores its own count, so raising this later does not lock anyone out.
pub const PASSWORD_ITERATIONS: u32 = 600_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 1024;
const MAX_NAME_LEN: usize = 64;

/// Failed logins in a row that lock a principal.
pub const LOCKOUT_AFTER_FAILURES: i64 = 5;
/// How long the first lock lasts; each later one lasts twice as long as the one before.
pub const FIRST_LOCKOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Timed locks before the next lock lasts until an admin lifts it: with five, the locks last 1,
/// 2, 4, 8 and 16 minutes, and the 30th failure locks the principal for good.
pub const MAX_TIMED_LOCKOUTS: i64 = 5;

/// How lookups are throttled (Art. 14; NIST SP 800-63B's limits on biometric attempts). Fixed at
/// creation, MACed with the vault's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failed verifies of one subject in a row after which each further verify waits.
    pub verify_failures_before_delay: u32,
    /// Failed verifies of one subject in a row after which its face verification is off until
    /// an admin resets it.
    pub verify_failures_before_disable: u32,
    /// The first wait; each further failure (or miss) doubles it.
    pub first_delay: std::time::Duration,
    /// Identify probes one principal may send in a minute.
    pub identify_per_minute: u32,
    /// Identify probes in a row that match nobody after which the principal waits, and an alert
    /// is raised.
    pub identify_misses_before_delay: u32,
}

impl Default for ThrottlePolicy {
    /// NIST's 5 failures, 30 s doubling and a cap of 50 for verify; for identify, 1,200 probes a
    /// minute (20 a second: more than a camera at a door sends) and 200 misses in a row (a door
    /// where most faces are visitors may need more).
    fn default() -> Self {
        Self {
            verify_failures_before_delay: 5,
            verify_failures_before_disable: 50,
            first_delay: std::time::Duration::from_secs(30),
            identify_per_minute: 1_200,
            identify_misses_before_delay: 200,
        }
    }
}

impl ThrottlePolicy {
    pub(crate) fn check(&self) -> Result<()> {
        let ok = self.verify_failures_before_delay >= 1
            && self.verify_failures_before_disable > self.verify_failures_before_delay
            && self.first_delay >= std::time::Duration::from_secs(1)
            && self.identify_per_minute >= 1
            && self.identify_misses_before_delay >= 1;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "throttle policy",
                reason: "every limit must be at least 1, the disabling cap above the delay's, and the delay at least a second".into(),
            })
        }
    }

    pub(crate) fn mac_fields(&self) -> Vec<Vec<u8>> {
        vec![
            self.verify_failures_before_delay.to_le_bytes().to_vec(),
            self.verify_failures_before_disable.to_le_bytes().to_vec(),
            u64::try_from(self.first_delay.as_millis())
                .unwrap_or(u64::MAX)
                .to_le_bytes()
                .to_vec(),
            self.identify_per_minute.to_le_bytes().to_vec(),
            self.identify_misses_before_delay.to_le_bytes().to_vec(),
        ]
    }
}

/// The roles a vault shows match scores to; the others get the decision and the subject IDs only
/// (a score is an oracle for rebuilding a face by hill-climbing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role.
    pub const NONE: RoleSet = RoleSet(0);
    /// Admins only.
    pub const ADMIN: RoleSet = RoleSet(1);

    /// The set holding `roles`.
    pub fn of(roles: &[Role]) -> Self {
        Self(roles.iter().fold(0, |bits, role| bits | role.bit()))
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    pub(crate) fn from_bits(bits: u8) -> Self {
        Self(bits & 0x1f)
    }

    /// The roles' names, comma-separated.
    pub fn names(self) -> String {
        ALL_ROLES
            .iter()
            .filter(|role| self.contains(**role))
            .map(|role| role.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Every role, in a fixed order.
pub const ALL_ROLES: [Role; 5] = [
    Role::Admin,
    Role::Enroller,
    Role::Operator,
    Role::Auditor,
    Role::Exporter,
];

/// A principal's failed-login state after one more failure at `now`: the failure counted, and
/// a lock when it is the [`LOCKOUT_AFTER_FAILURES`]th in a row. A lock that has run out has
/// served its purpose: the count starts again from zero, the number of locks does not.
pub(crate) fn after_failed_login(state: LockState, now: i64) -> LockState {
    let mut next = state;
    if next.locked_until.is_some_and(|until| until <= now) {
        next.locked_until = None;
        next.failures = 0;
    }
    next.failures += 1;
    if next.failures >= LOCKOUT_AFTER_FAILURES {
        next.failures = 0;
        next.lockouts += 1;
        next.locked_until = Some(if next.lockouts > MAX_TIMED_LOCKOUTS {
            i64::MAX
        } else {
            let first = i64::try_from(FIRST_LOCKOUT.as_millis()).unwrap_or(i64::MAX);
            let doublings = u32::try_from(next.lockouts - 1).unwrap_or(u32::MAX).min(40);
            now.saturating_add(first.saturating_mul(1i64 << doublings))
        });
    }
    next
}

/// A principal's role. Duties are separated: whoever enrols does not match, and whoever matches
/// cannot change the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Manages users and settings; may enrol and erase (to act on a person's request) and read the audit.
    Admin,
    /// Enrols and erases subjects.
    Enroller,
    /// Runs verify and identify: the terminal's own account.
    Operator,
    /// Reads and verifies the audit log.
    Auditor,
    /// Exports templates (subject to transfer consent).
    Exporter,
}

impl Role {
    /// The role's name as stored and as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Enroller => "enroller",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Exporter => "exporter",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Admin => 1,
            Role::Enroller => 2,
            Role::Operator => 4,
            Role::Auditor => 8,
            Role::Exporter => 16,
        }
    }

    /// Whether this role may perform `action`.
    pub fn permits(self, action: Action) -> bool {
        use Action::*;
        // Acting on a person's consent (recording, renewing, withdrawing) belongs to whoever
        // enrols; matching belongs to the terminal's operator; export to its own role.
        let consent_duties = matches!(
            action,
            Enrol
                | EnrolBatch
                | Erase
                | WithdrawConsent
                | GrantTransfer
                | WithdrawTransfer
                | RenewConsent
                | Purge
                | RenoticeDue
        );
        // The processor's records are for whoever answers to the regulator, and the inspector.
        let governance_reads = matches!(
            action,
            ShowProfile | ListAssessments | FilingStatus | FilingReport | Compliance
        );
        match self {
            Role::Admin => {
                consent_duties
                    || matches!(
                        action,
                        AddUser
                            | SetRole
                            | UnlockUser
                            | ResetThrottle
                            | ListAlerts
                            | AuditHandover
                            | AuditExport
                            | Rekey
                            | Backup
                            | Restore
                            | AddModel
                            | RetireModel
                            | ModelStatus
                            | SetThreshold
                            | PublishNotice
                            | Stats
                            | AuditVerify
                            | AuditShow
                            | ListSubjects
                            | SetProfile
                            | AddAssessment
                            | RecordIncident
                            | SetCalendar
                            | RecordFiling
                            | Decommission
                            | Compact
                    )
                    || governance_reads
            }
            Role::Enroller => consent_duties || matches!(action, Stats | ListSubjects | ModelStatus),
            Role::Operator => matches!(action, Verify | Identify | Stats),
            Role::Auditor => {
                governance_reads
                    || matches!(
                        action,
                        AuditVerify
                            | AuditShow
                            | AuditExport
                            | ListAlerts
                            | RenoticeDue
                            | Stats
                            | ListSubjects
                    )
            }
            Role::Exporter => matches!(action, Export | Stats),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "admin" => Role::Admin,
            "enroller" => Role::Enroller,
            "operator" => Role::Operator,
            "auditor" => Role::Auditor,
            "exporter" => Role::Exporter,
            _ => {
                return Err(Error::InvalidArgument {
                    what: "role",
                    reason: "expected admin, enroller, operator, auditor or exporter".into(),
                })
            }
        })
    }
}

/// Every operation the vault's door knows, as named in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Creating the vault.
    Init,
    /// Opening the vault (recorded only when opening finds damage).
    Open,
    /// Authenticating a principal (recorded when it fails).
    Login,
    /// Adding a principal.
    AddUser,
    /// Changing the match threshold.
    SetThreshold,
    /// Enrolling one template.
    Enrol,
    /// Enrolling many subjects at once.
    EnrolBatch,
    /// 1:1 comparison.
    Verify,
    /// 1:N search.
    Identify,
    /// Erasing a subject.
    Erase,
    /// Reading counts.
    Stats,
    /// Checking the audit chain.
    AuditVerify,
    /// Publishing a notice version.
    PublishNotice,
    /// Listing subjects due to be told of a new notice.
    RenoticeDue,
    /// Recording a fresh processing consent under the current notice.
    RenewConsent,
    /// Withdrawing a subject's consent, which erases its face data.
    WithdrawConsent,
    /// Recording a separate transfer consent.
    GrantTransfer,
    /// Withdrawing a transfer consent.
    WithdrawTransfer,
    /// Erasing every subject past its retention.
    Purge,
    /// Exporting templates in a bundle.
    Export,
    /// Reading the audit log.
    AuditShow,
    /// Listing the enrolled subjects with their expiry.
    ListSubjects,
    /// Ending a session.
    Logout,
    /// Migrating the vault's file to a newer format version (recorded by the migration).
    Migrate,
    /// A principal locked after repeated failed logins (recorded by the login that locks it).
    Lockout,
    /// Lifting a principal's lock.
    UnlockUser,
    /// Handing the audit verification key to an auditor.
    AuditHandover,
    /// Exporting the audit log for verification off the device.
    AuditExport,
    /// Re-wrapping the vault's root key under a new master key.
    Rekey,
    /// An intrusion alert raised by throttling (recorded by the lookup that raised it).
    Alert,
    /// Clearing a subject's verify throttle.
    ResetThrottle,
    /// Listing the alerts.
    ListAlerts,
    /// Changing a principal's role.
    SetRole,
    /// Writing a sealed backup of the vault.
    Backup,
    /// Replacing the vault with a backup (recorded in the restored vault).
    Restore,
    /// Registering a new face model.
    AddModel,
    /// Reading the models' counts and the re-enrolment queue.
    ModelStatus,
    /// Retiring a face model, erasing its templates.
    RetireModel,
    /// Recording a deployment profile.
    SetProfile,
    /// Reading the deployment profile.
    ShowProfile,
    /// Recording an impact assessment.
    AddAssessment,
    /// Listing the impact assessments (and the incidents that call for new ones).
    ListAssessments,
    /// Recording a major security incident.
    RecordIncident,
    /// Loading the calendar of holidays and make-up working days.
    SetCalendar,
    /// Reading the filing status.
    FilingStatus,
    /// Writing the filing materials.
    FilingReport,
    /// Recording that a filing was made.
    RecordFiling,
    /// Decommissioning the vault.
    Decommission,
    /// Writing the compliance report.
    Compliance,
    /// Rewriting the database file from its rows.
    Compact,
}

impl Action {
    /// The action's name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Init => "init",
            Action::Open => "open",
            Action::Login => "login",
            Action::AddUser => "user_add",
            Action::SetThreshold => "set_threshold",
            Action::Enrol => "enrol",
            Action::EnrolBatch => "enrol_batch",
            Action::Verify => "verify",
            Action::Identify => "identify",
            Action::Erase => "erase",
            Action::Stats => "stats",
            Action::AuditVerify => "audit_verify",
            Action::PublishNotice => "notice_publish",
            Action::RenoticeDue => "renotice_due",
            Action::RenewConsent => "consent_renew",
            Action::WithdrawConsent => "consent_withdraw",
            Action::GrantTransfer => "transfer_grant",
            Action::WithdrawTransfer => "transfer_withdraw",
            Action::Purge => "purge",
            Action::Export => "export",
            Action::AuditShow => "audit_show",
            Action::ListSubjects => "subjects_list",
            Action::Logout => "logout",
            Action::Migrate => "migrate",
            Action::Lockout => "lockout",
            Action::UnlockUser => "user_unlock",
            Action::AuditHandover => "audit_handover",
            Action::AuditExport => "audit_export",
            Action::Rekey => "rekey",
            Action::Alert => "alert",
            Action::ResetThrottle => "throttle_reset",
            Action::ListAlerts => "alerts_list",
            Action::SetRole => "user_set_role",
            Action::Backup => "backup",
            Action::Restore => "restore",
            Action::AddModel => "model_add",
            Action::ModelStatus => "model_status",
            Action::RetireModel => "model_retire",
            Action::SetProfile => "profile_set",
            Action::ShowProfile => "profile_show",
            Action::AddAssessment => "pia_add",
            Action::ListAssessments => "pia_list",
            Action::RecordIncident => "pia_incident",
            Action::SetCalendar => "filing_calendar",
            Action::FilingStatus => "filing_status",
            Action::FilingReport => "filing_report",
            Action::RecordFiling => "filing_record",
            Action::Decommission => "decommission",
            Action::Compact => "compact",
            Action::Compliance => "compliance",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password. Never printed; the bytes are reached only through [`Password::expose_secret`].
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(Zeroizing::new(password.into()))
    }

    /// The password's bytes.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// A stored password hash.
pub(crate) struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub hash: Vec<u8>,
}

/// Checks a new password's length before it is hashed.
pub(crate) fn check_new_password(password: &Password) -> Result<()> {
    let len = password.0.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(Error::InvalidArgument {
            what: "password",
            reason: format!("must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
        });
    }
    Ok(())
}

/// Checks a principal name: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub(crate) fn check_principal_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "user name",
            reason: format!(
                "use 1 to {MAX_NAME_LEN} of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            ),
        })
    }
}

pub(crate) fn hash_password(password: &Password) -> Result<Credential> {
    let salt = crypto::random_array::<SALT_LEN>()?.to_vec();
    let mut hash = vec![0u8; HASH_LEN];
    let rounds = new_credential_rounds();
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(rounds),
        &salt,
        password.expose_secret(),
        &mut hash,
    );
    Ok(Credential {
        salt,
        iterations: rounds,
        hash,
    })
}

/// The rounds a new credential is hashed with: [`PASSWORD_ITERATIONS`]. A build with the
/// test-only feature `fault-injection` takes fewer from `FACEVAULT_TEST_PASSWORD_ROUNDS`, for the
/// crash sweep, which logs in after each of its ten thousand kills; the rounds are stored with
/// each credential, so logins check what was stored either way.
fn new_credential_rounds() -> u32 {
    #[cfg(feature = "fault-injection")]
    if let Some(rounds) = std::env::var("FACEVAULT_TEST_PASSWORD_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
    {
        return rounds;
    }
    PASSWORD_ITERATIONS
}

/// Constant-time check of a password against a credential.
pub(crate) fn password_matches(password: &Password, credential: &Credential) -> bool {
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(credential.iterations),
        &credential.salt,
        password.expose_secret(),
        &credential.hash,
    )
    .is_ok()
}

/// Spends the time a real check would, so that an unknown user cannot be told from a wrong password.
pub(crate) fn burn_password_check(password: &Password) {
    let decoy = Credential {
        salt: vec![0; SALT_LEN],
        iterations: PASSWORD_ITERATIONS,
        hash: vec![0; HASH_LEN],
    };
    let _ = password_matches(password, &decoy);
}

fn iterations(count: u32) -> NonZeroU32 {
    NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_right_password() {
        let credential = hash_password(&Password::new("correct horse")).unwrap();
        assert!(password_matches(&Password::new("correct horse"), &credential));
        assert!(!password_matches(&Password::new("correct horsf"), &credential));
        let again = hash_password(&Password::new("correct horse")).unwrap();
        assert_ne!(credential.salt, again.salt);
        assert_ne!(credential.hash, again.hash);
    }

    #[test]
    fn separation_of_duties() {
        assert!(Role::Operator.permits(Action::Verify));
        assert!(Role::Operator.permits(Action::Identify));
        assert!(!Role::Operator.permits(Action::Enrol));
        assert!(!Role::Operator.permits(Action::Erase));
        assert!(!Role::Operator.permits(Action::AuditShow));
        assert!(!Role::Enroller.permits(Action::Identify));
        assert!(!Role::Admin.permits(Action::Identify));
        assert!(!Role::Auditor.permits(Action::Enrol));
        assert!(Role::Admin.permits(Action::AddUser));
        assert!(!Role::Enroller.permits(Action::AddUser));
        assert!(Role::Exporter.permits(Action::Export));
        assert!(!Role::Admin.permits(Action::Export));
        assert!(!Role::Operator.permits(Action::WithdrawConsent));
        assert!(Role::Enroller.permits(Action::WithdrawConsent));
        assert!(!Role::Enroller.permits(Action::PublishNotice));
    }

    #[test]
    fn role_names_round_trip() {
        for role in [
            Role::Admin,
            Role::Enroller,
            Role::Operator,
            Role::Auditor,
            Role::Exporter,
        ] {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_principal_name("gate-01.operator").is_ok());
        for bad in ["", "Admin", "-x", "a b", "a\"b", &"a".repeat(65)] {
            assert!(check_principal_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_new_password(&Password::new("short")).is_err());
        assert!(check_new_password(&Password::new("long enough")).is_ok());
        assert_eq!(format!("{:?}", Password::new("hunter22")), "Password([REDACTED])");
    }

    #[test]
    fn five_failures_lock_for_a_minute_and_each_lock_doubles_until_an_admin_must_unlock() {
        let mut state = LockState::default();
        let mut now = 1_000_000i64;
        let mut lock_lengths = Vec::new();
        for _ in 0..MAX_TIMED_LOCKOUTS + 1 {
            for failure in 1..=LOCKOUT_AFTER_FAILURES {
                state = after_failed_login(state, now);
                let locked = state.locked_until.is_some();
                assert_eq!(locked, failure == LOCKOUT_AFTER_FAILURES, "failure {failure}");
            }
            let until = state.locked_until.unwrap();
            lock_lengths.push(if until == i64::MAX {
                -1
            } else {
                (until - now) / 1000
            });
            if until != i64::MAX {
                now = until;
            }
        }
        assert_eq!(lock_lengths, vec![60, 120, 240, 480, 960, -1]);
        // A lock for good stays whatever the time.
        assert_eq!(
            after_failed_login(state, i64::MAX - 1).locked_until,
            Some(i64::MAX)
        );
    }
}
