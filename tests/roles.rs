//! Issue 14, item 8: roles as permissions. Every role tries every operation; each is refused as
//! `Forbidden` exactly when the table in the README says the role may not, and is never refused
//! as `Forbidden` when it says the role may. A role changed by an admin applies to a session
//! that is already open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use facevault::{
    Action, Destination, Error, ExportRequest, FixedKey, Password, RecipientSecretKey, Role, Session,
    SubjectId, TransferConsent, Vault, ALL_ROLES,
};

const DIM: usize = 16;

/// Every operation a caller can ask for, with the action the door checks for it.
const OPERATIONS: [(&str, Action); 44] = [
    ("add_user", Action::AddUser),
    ("set_role", Action::SetRole),
    ("unlock_user", Action::UnlockUser),
    ("set_threshold", Action::SetThreshold),
    ("publish_notice", Action::PublishNotice),
    ("renotice_due", Action::RenoticeDue),
    ("enrol", Action::Enrol),
    ("add_template", Action::Enrol),
    ("enrol_batch", Action::EnrolBatch),
    ("renew_consent", Action::RenewConsent),
    ("withdraw_consent", Action::WithdrawConsent),
    ("grant_transfer", Action::GrantTransfer),
    ("withdraw_transfer", Action::WithdrawTransfer),
    ("erase", Action::Erase),
    ("purge", Action::Purge),
    ("verify", Action::Verify),
    ("identify", Action::Identify),
    ("identify_batch", Action::Identify),
    ("export", Action::Export),
    ("stats", Action::Stats),
    ("subjects", Action::ListSubjects),
    ("verify_audit", Action::AuditVerify),
    ("audit_page", Action::AuditShow),
    ("export_audit", Action::AuditExport),
    ("hand_over_audit_key", Action::AuditHandover),
    ("alerts", Action::ListAlerts),
    ("reset_throttle", Action::ResetThrottle),
    ("rekey", Action::Rekey),
    ("backup", Action::Backup),
    ("add_model", Action::AddModel),
    ("model_status", Action::ModelStatus),
    ("retire_model", Action::RetireModel),
    ("set_profile", Action::SetProfile),
    ("profile", Action::ShowProfile),
    ("add_assessment", Action::AddAssessment),
    ("assessments", Action::ListAssessments),
    ("record_incident", Action::RecordIncident),
    ("set_calendar", Action::SetCalendar),
    ("filing_status", Action::FilingStatus),
    ("filing_report", Action::FilingReport),
    ("record_filing", Action::RecordFiling),
    ("decommission", Action::Decommission),
    ("compliance", Action::Compliance),
    ("compact", Action::Compact),
];

/// Runs operation `name` as `session` on `subject` (a fresh one, enrolled for the call).
fn run(
    vault: &Vault,
    session: &Session,
    name: &str,
    subject: &SubjectId,
    probe: &[f32],
) -> Result<(), Error> {
    let recipient = RecipientSecretKey::generate().unwrap().public_key();
    let password = Password::new("another password 1");
    match name {
        "add_user" => vault.add_user(session, &format!("new-{}", subject), Role::Operator, &password),
        "set_role" => vault.set_role(session, "spare", Role::Auditor),
        "unlock_user" => vault.unlock_user(session, "spare"),
        "set_threshold" => vault.set_threshold(session, 0.4),
        // The current version again: an admin is refused as `notice_exists`, not as forbidden,
        // and the notice the enrolments name stays current.
        "publish_notice" => vault.publish_notice(session, &notice(NOTICE_VERSION)).map(drop),
        "renotice_due" => vault.renotice_due(session).map(drop),
        "enrol" => vault.enrol(session, &consent(), probe).map(drop),
        "add_template" => vault.add_template(session, subject, probe),
        "enrol_batch" => vault.enrol_batch(session, &consent(), probe).map(drop),
        "renew_consent" => vault.renew_consent(session, subject, &consent()),
        "withdraw_consent" => vault.withdraw_consent(session, subject),
        "grant_transfer" => vault.grant_transfer(
            session,
            subject,
            &TransferConsent {
                method: Some("form".into()),
                guardian: None,
            },
        ),
        "withdraw_transfer" => vault.withdraw_transfer(session, subject).map(drop),
        "erase" => vault.erase(session, subject).map(drop),
        "purge" => vault.purge(session).map(drop),
        "verify" => vault.verify(session, subject, probe).map(drop),
        "identify" => vault.identify(session, probe, 1).map(drop),
        "identify_batch" => vault.identify_batch(session, probe, 1).map(drop),
        "export" => vault
            .export(
                session,
                &ExportRequest {
                    destination: Destination::Local,
                    recipient,
                    subjects: vec![*subject],
                    model: None,
                },
            )
            .map(drop),
        "stats" => vault.stats(session).map(drop),
        "subjects" => vault.subjects(session).map(drop),
        "verify_audit" => vault.verify_audit(session).map(drop),
        "audit_page" => vault.audit_page(session, 0, 10).map(drop),
        "export_audit" => vault.export_audit(session, &mut Vec::new()).map(drop),
        "hand_over_audit_key" => vault.hand_over_audit_key(session, |_| Ok(())),
        "alerts" => vault.alerts(session).map(drop),
        "reset_throttle" => vault.reset_throttle(session, subject),
        "rekey" => vault.rekey(session, &FixedKey::new(KEY)),
        "compact" => vault.compact(session).map(drop),
        "backup" => {
            let dir = tempfile::tempdir().unwrap();
            vault
                .backup_to_file(session, &dir.path().join("backup"))
                .map(drop)
        }
        "add_model" => vault.add_model(session, &format!("model-{subject}"), 8, 0.5),
        "model_status" => vault.model_status(session).map(drop),
        // A model the vault does not have: an admin is refused as `invalid_argument`, not as
        // forbidden, and the vault keeps its models.
        "retire_model" => vault.retire_model(session, "no-such-model", false).map(drop),
        // The profile and the assessment the vault already has: it goes on enrolling.
        "set_profile" => vault.set_profile(session, &profile()).map(drop),
        "profile" => vault.profile(session).map(drop),
        "add_assessment" => vault.add_assessment(session, &assessment(&profile())).map(drop),
        "assessments" => vault.assessments(session).map(drop),
        // A description that is blank: an admin is refused as `invalid_argument`, not as
        // forbidden, and enrolment goes on.
        "record_incident" => vault.record_incident(
            session,
            &facevault::Incident {
                occurred_on: "2026-01-01".into(),
                description: String::new(),
            },
        ),
        "set_calendar" => vault.set_calendar(session, &facevault::Calendar::default()),
        "filing_status" => vault.filing_status(session).map(drop),
        "filing_report" => vault.filing_report(session).map(drop),
        // No filing is due: an admin is refused as `invalid_argument`, not as forbidden.
        "record_filing" => vault
            .record_filing(session, facevault::FilingKind::Initial, None, "SH-0001")
            .map(drop),
        // A wrong confirmation: an admin is refused as `invalid_argument`, not as forbidden, and
        // the vault is not decommissioned.
        "decommission" => vault
            .decommission(session, "DECOMMISSION no-such-vault")
            .map(drop),
        "compliance" => vault.compliance(session).map(drop),
        other => panic!("no operation {other}"),
    }
}

fn forbidden(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::Forbidden { .. }))
}

/// The table in the README: for each action, the roles marked as allowed.
fn readme_table() -> Vec<(String, Vec<Role>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("| operation |")
        .expect("the README has the roles table");
    let mut lines = readme[start..].lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('|')
        .map(|cell| cell.trim().to_string())
        .filter(|cell| !cell.is_empty())
        .collect();
    lines.next(); // the separator
    let roles: Vec<Role> = header[1..].iter().map(|name| name.parse().unwrap()).collect();
    lines
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let action = cells[1].trim_matches('`').to_string();
            let allowed = roles
                .iter()
                .zip(&cells[2..])
                .filter(|(_, cell)| **cell == "yes")
                .map(|(role, _)| *role)
                .collect();
            (action, allowed)
        })
        .collect()
}

#[test]
fn the_readme_table_is_the_code_s_table() {
    let table = readme_table();
    let mut actions: Vec<Action> = OPERATIONS.iter().map(|(_, action)| *action).collect();
    actions.dedup();
    for action in actions {
        let row = table
            .iter()
            .find(|(name, _)| name == action.as_str())
            .unwrap_or_else(|| panic!("the README's table has no row for {}", action.as_str()));
        for role in ALL_ROLES {
            assert_eq!(
                row.1.contains(&role),
                role.permits(action),
                "README and code disagree on {role} × {}",
                action.as_str()
            );
        }
    }
}

/// Every role × every operation: refused as forbidden exactly when the role may not, and each
/// refusal audited as forbidden.
#[test]
fn every_role_tries_every_operation() {
    let tv = TestVault::new(DIM);
    let (vault, admin) = (&tv.vault, &tv.admin);
    let mut rng = Rng::new(31);
    vault
        .add_user(admin, "spare", Role::Operator, &Password::new("spare password 1"))
        .unwrap();
    let mut checked = 0;
    for role in ALL_ROLES {
        let name = format!("as-{role}");
        let password = Password::new("role password 1");
        vault.add_user(admin, &name, role, &password).unwrap();
        let session = vault.login(&name, &password).unwrap();
        for (operation, action) in OPERATIONS {
            let probe = rng.gaussian_vec(DIM);
            let subject = vault.enrol(admin, &consent(), &probe).unwrap();
            let result = run(vault, &session, operation, &subject, &probe);
            let may = role.permits(action);
            assert_eq!(forbidden(&result), !may, "{role} × {operation}: {result:?}");
            checked += 1;
        }
        vault.logout(&session).unwrap();
    }
    assert_eq!(checked, ALL_ROLES.len() * OPERATIONS.len());
    let expected = ALL_ROLES
        .iter()
        .flat_map(|role| OPERATIONS.iter().map(move |(_, action)| !role.permits(*action)))
        .filter(|refused| *refused)
        .count();
    let audit = vault.audit_log(admin).unwrap();
    let refused = audit.iter().filter(|r| r.detail.starts_with("forbidden")).count();
    assert_eq!(refused, expected);
}

/// An admin changes a role while its session is open: the session's next call takes the new
/// role, for lookups and operations alike.
#[test]
fn a_role_changed_mid_session_applies_to_the_open_session() {
    let tv = TestVault::new(DIM);
    let (vault, admin) = (&tv.vault, &tv.admin);
    let probe = Rng::new(5).gaussian_vec(DIM);
    let subject = vault.enrol(admin, &consent(), &probe).unwrap();
    let gate = &tv.operator;
    assert!(vault.verify(gate, &subject, &probe).unwrap().matched);
    vault.set_role(admin, OPERATOR, Role::Auditor).unwrap();
    assert!(matches!(
        vault.verify(gate, &subject, &probe),
        Err(Error::Forbidden {
            role: Role::Auditor,
            ..
        })
    ));
    vault.verify_audit(gate).unwrap();
    vault.set_role(admin, OPERATOR, Role::Operator).unwrap();
    assert!(vault.verify(gate, &subject, &probe).unwrap().matched);
    assert!(matches!(vault.verify_audit(gate), Err(Error::Forbidden { .. })));
    // An admin cannot demote themselves, and the change is in the MACed row: it survives a
    // reopening.
    assert!(vault.set_role(admin, ADMIN, Role::Auditor).is_err());
    vault.set_role(admin, OPERATOR, Role::Exporter).unwrap();
    let tv = tv.reopen_as_admin();
    assert_eq!(
        tv.vault
            .login(OPERATOR, &Password::new(OPERATOR_PASSWORD))
            .unwrap()
            .role(),
        Role::Exporter
    );
}

trait ReopenAsAdmin {
    fn reopen_as_admin(self) -> TestVault;
}

impl ReopenAsAdmin for TestVault {
    fn reopen_as_admin(self) -> TestVault {
        let TestVault {
            dir,
            path,
            clock,
            vault,
            ..
        } = self;
        vault.close().unwrap();
        let vault = Vault::open_with_clock(&path, &FixedKey::new(KEY), clock.clone()).unwrap();
        let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        let operator = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        TestVault {
            dir,
            path,
            clock,
            vault,
            admin,
            operator,
        }
    }
}
