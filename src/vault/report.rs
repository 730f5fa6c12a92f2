//! What the processor hands to the regulator: Art. 15's filing materials and Art. 16's
//! compliance report, each filled from the vault's own records (the profile, the assessments,
//! the notice, the settings, the counts, the filing clocks, the audit log) at the moment asked.

use serde::Serialize;

use super::governance::{FilingStatus, Recorded};
use super::{AuditEntry, OperationContext, Session, Vault};
use crate::access::{Action, LOCKOUT_AFTER_FAILURES, PASSWORD_ITERATIONS};
use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::policy::deployment::{Assessment, DeploymentProfile};
use crate::policy::{self, Notice, Refusal, GUARDIAN_CONSENT_AGE};
use crate::store;

/// Subjects whose retention ends within this many days are listed as due in the compliance
/// report.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Art. 15's filing materials, items (1) to (5), from the vault's records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilingReport {
    /// When it was made, in milliseconds since the Unix epoch.
    pub generated_at: UnixMillis,
    /// The vault's ID, hex.
    pub vault_id: String,
    /// (1) The processor.
    pub processor: ProcessorItem,
    /// (2) The purpose and method of processing.
    pub purpose_and_method: PurposeItem,
    /// (3) The count stored and the security measures.
    pub count_and_security: CountItem,
    /// (4) The processing rules and operating procedures.
    pub processing_rules: RulesItem,
    /// (5) The impact assessment: the latest recorded, with the digest of its report.
    pub impact_assessment: Option<Recorded<Assessment>>,
    /// Items the vault's records could not fill (the filing is then not ready).
    pub missing: Vec<String>,
    /// Where the filing clocks stand.
    pub status: FilingStatus,
}

/// Item (1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessorItem {
    /// The processor's name.
    pub name: String,
    /// How to reach them.
    pub contact: String,
}

/// Item (2): the deployment profile in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurposeItem {
    /// The profile, as recorded.
    #[serde(flatten)]
    pub profile: DeploymentProfile,
    /// When it was recorded.
    pub profile_recorded_at: UnixMillis,
}

/// Item (3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountItem {
    /// Distinct persons whose face data is stored now.
    pub persons: u64,
    /// Templates stored now.
    pub templates: usize,
    /// The filing threshold, and when it was reached.
    pub filing_threshold: u64,
    /// When the count first reached it.
    pub reached_at: Option<UnixMillis>,
    /// The measures in force, read from the vault's settings.
    pub security_measures: Vec<String>,
}

/// Item (4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulesItem {
    /// The notice people are given now (Art. 5), if one is published.
    pub notice: Option<Notice>,
    /// The rules the vault enforces on every operation.
    pub rules: Vec<String>,
}

/// One article in the compliance report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArticleReport {
    /// "Art. 5", "Arts. 3–4".
    pub article: &'static str,
    /// What the article asks, in a line.
    pub title: &'static str,
    /// What this vault has configured or recorded for it.
    pub configured: Vec<String>,
    /// What holds, each with the test that proves it.
    pub holds: Vec<Proof>,
    /// What is due: re-notices, filings, assessments, expiries.
    pub due: Vec<String>,
}

/// A guarantee and the test in this repository that proves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proof {
    /// What holds.
    pub claim: &'static str,
    /// The test: `file::name`.
    pub test: &'static str,
}

/// The compliance report (Art. 16): article by article, what is configured, what holds and
/// what is due.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplianceReport {
    /// When it was made, in milliseconds since the Unix epoch.
    pub generated_at: UnixMillis,
    /// The device's civil date then.
    pub date: String,
    /// The vault's ID, hex.
    pub vault_id: String,
    /// Why the law refuses matching now, if it does.
    pub matching_refused: Option<String>,
    /// Why the law refuses enrolment now, if it does.
    pub enrolment_refused: Option<String>,
    /// Where the filing clocks stand.
    pub filing: FilingStatus,
    /// Audit records verified for this report, through the chain's head.
    pub audit_records_verified: u64,
    /// The articles.
    pub articles: Vec<ArticleReport>,
}

const fn proof(claim: &'static str, test: &'static str) -> Proof {
    Proof { claim, test }
}

impl OperationContext<'_> {
    /// The measures in force, for item (3) and Art. 14.
    fn security_measures(&self) -> Result<Vec<String>> {
        let sealer = super::ledger::load_sealer_state(self.tx, self.keys, &self.settings.vault_id)?;
        let throttle = &self.settings.throttle;
        let mut principals = std::collections::BTreeMap::<String, usize>::new();
        for name in store::principal_names(self.tx)? {
            if let Some(row) = store::find_principal(self.tx, &name)? {
                *principals.entry(row.role).or_default() += 1;
            }
        }
        let roles: Vec<String> = principals
            .iter()
            .map(|(role, count)| format!("{count} {role}"))
            .collect();
        Ok(vec![
            "templates encrypted at rest with AES-256-GCM, each subject under its own data key, wrapped by the device's master key; erasure destroys the wrapped key first".into(),
            format!(
                "whole database file encrypted as well (SQLCipher): {}",
                if cfg!(feature = "sqlcipher") { "yes" } else { "no" }
            ),
            format!(
                "tamper-evident audit log of every operation, allowed or refused: hash-chained, MACed, forward-secure epochs of at most {} records or {} s",
                sealer.policy.max_records,
                sealer.policy.max_millis / 1000
            ),
            format!("access control by role: {}", roles.join(", ")),
            format!(
                "passwords hashed with PBKDF2-HMAC-SHA256 ({PASSWORD_ITERATIONS} rounds); an account locks after {LOCKOUT_AFTER_FAILURES} failed logins"
            ),
            format!(
                "intrusion detection: a subject's verify throttled after {} failures and disabled after {}; identify limited to {} a minute per account, with alerts",
                throttle.verify_failures_before_delay,
                throttle.verify_failures_before_disable,
                throttle.identify_per_minute
            ),
            "a copy of an older database is refused (a rollback counter kept outside the file); every erasure is recorded in an erasure ledger outside the file".into(),
            format!(
                "match scores shown to {} only, rounded to {} decimals",
                self.settings.score_roles.names(),
                self.settings.score_decimals
            ),
        ])
    }

    /// The rules enforced, for item (4).
    fn processing_rules(&self) -> Vec<String> {
        let days = |secs: i64| secs / 86_400;
        let ceilings = self.settings.ceilings;
        let models: Vec<String> = self
            .settings
            .models
            .iter()
            .filter(|model| model.retired_at.is_none())
            .map(|model| format!("{} (d={})", model.name, model.dim))
            .collect();
        vec![
            "no enrolment without a separate processing consent naming the current notice (Arts. 5-6)".into(),
            format!("a child under {GUARDIAN_CONSENT_AGE} is enrolled only with a parent's or guardian's consent (Art. 7)"),
            format!(
                "retention at most {} days for adults and {} days for children, enforced on every read and purged hourly (Art. 8)",
                days(ceilings.adult_secs),
                days(ceilings.minor_secs)
            ),
            "face data stays on the device; an export over a network needs the subject's separate transfer consent (Art. 8)".into(),
            "withdrawing consent erases the subject's face data at once; the audit of earlier processing stays (Art. 6)".into(),
            "templates only (embedding vectors), never images; subjects are opaque random IDs (Art. 11)".into(),
            "1:1 verify and 1:N identify are each audited as such (Art. 19)".into(),
            format!("face models in use: {}", models.join(", ")),
        ]
    }

    /// The current notice's items.
    fn notice(&self) -> Result<Option<Notice>> {
        Ok(match self.current_notice()? {
            Some(row) => Some(serde_json::from_str(&row.body).map_err(|_| Error::Integrity {
                table: "notices",
                record: row.version,
            })?),
            None => None,
        })
    }

    fn filing_report(&self) -> Result<FilingReport> {
        let profile = self
            .governance
            .profile()
            .cloned()
            .ok_or(Error::Refused(Refusal::NoDeploymentProfile))?;
        let status = self.filing_status()?;
        let (_, templates) = store::counts(self.tx)?;
        let assessment = self.governance.latest_assessment().cloned();
        let mut missing = Vec::new();
        match &assessment {
            None => missing.push("(5) no impact assessment is recorded".to_string()),
            Some(a) if !a.record.covers(&profile.record) => missing.push(
                "(5) the latest impact assessment does not cover the current purpose and method".to_string(),
            ),
            Some(_) => {}
        }
        let notice = self.notice()?;
        if notice.is_none() {
            missing.push("(4) no notice is published".to_string());
        }
        Ok(FilingReport {
            generated_at: self.now,
            vault_id: crate::crypto::hex(&self.settings.vault_id),
            processor: ProcessorItem {
                name: profile.record.processor_name.clone(),
                contact: profile.record.processor_contact.clone(),
            },
            count_and_security: CountItem {
                persons: status.persons,
                templates,
                filing_threshold: status.threshold,
                reached_at: status.reached_at,
                security_measures: self.security_measures()?,
            },
            purpose_and_method: PurposeItem {
                profile: profile.record,
                profile_recorded_at: profile.recorded_at,
            },
            processing_rules: RulesItem {
                notice,
                rules: self.processing_rules(),
            },
            impact_assessment: assessment,
            missing,
            status,
        })
    }

    fn compliance_report(&self, audit_records_verified: u64) -> Result<ComplianceReport> {
        let governance = self.governance;
        let filing = self.filing_status()?;
        let today = self.today()?;
        let profile = governance.profile().map(|p| &p.record);
        let notice = self.current_notice()?;
        let renotice_due = match &notice {
            Some(row) => self.renotice_due_subjects(&row.version)?.len(),
            None => 0,
        };
        let (mut subjects, mut minors, mut expired, mut expiring) = (0usize, 0usize, 0usize, 0usize);
        let soon = self.now.saturating_add(EXPIRY_WARNING_DAYS * 86_400_000);
        self.for_each_subject(|_, facts| {
            subjects += 1;
            minors += usize::from(facts.minor);
            if !policy::is_within_retention(facts.expires_at, self.now) {
                expired += 1;
            } else if facts.expires_at <= soon {
                expiring += 1;
            }
        })?;
        let transfer_consents = store::active_transfer_consents(self.tx)?;
        let ceilings = self.settings.ceilings;
        let or_none = |text: Option<String>, none: &str| text.unwrap_or_else(|| none.to_string());
        let profile_lines = |lines: &dyn Fn(&DeploymentProfile) -> Vec<String>| {
            profile.map_or_else(|| vec!["no deployment profile is recorded".to_string()], lines)
        };
        let refusal_due = |refusal: &Option<Refusal>, wanted: &[Refusal]| -> Vec<String> {
            match refusal {
                Some(refusal) if wanted.contains(refusal) => vec![refusal.to_string()],
                _ => Vec::new(),
            }
        };
        let (mut filing_due, mut filings_made) = (Vec::new(), Vec::new());
        for clock in &filing.clocks {
            let kind = clock.kind.title();
            let deadline = clock.deadline.as_deref().unwrap_or_default();
            match &clock.made {
                Some(made) => filings_made.push(format!(
                    "{kind} (clock started {}, due by {deadline}) made on {}, reference {}",
                    clock.started_on, made.filed_on, made.reference
                )),
                None => filing_due.push(format!(
                    "{kind} (clock started {}) due by {deadline}: {}",
                    clock.started_on,
                    clock.time_left()
                )),
            }
        }
        let latest_assessment = governance.latest_assessment();
        let articles = vec![
            ArticleReport {
                article: "Arts. 3-4",
                title: "A specific purpose, full necessity, the least intrusive method, strict protection",
                configured: profile_lines(&|p| {
                    vec![
                        format!("processor: {} ({})", p.processor_name, p.processor_contact),
                        format!("purpose: {}", p.purpose),
                        format!("method: {}", p.method),
                    ]
                }),
                holds: vec![proof(
                    "a vault without a deployment profile enrols and matches no one",
                    "tests/compliance.rs::art3_4_10_13_each_forbidden_profile_is_refused_naming_its_article_and_the_device_can_still_wind_down",
                )],
                due: refusal_due(&governance.matching, &[Refusal::NoDeploymentProfile]),
            },
            ArticleReport {
                article: "Art. 5",
                title: "People are told who processes, why, how, for how long and their rights; told again of changes",
                configured: vec![or_none(
                    notice.as_ref().map(|n| format!("current notice: version {}", n.version)),
                    "no notice is published",
                )],
                holds: vec![
                    proof(
                        "a notice lacking any item Art. 5 lists is refused",
                        "tests/compliance.rs::art5_a_notice_lacking_any_item_is_refused",
                    ),
                    proof(
                        "consent must name the current notice",
                        "tests/compliance.rs::art5_consent_must_name_the_current_notice",
                    ),
                    proof(
                        "a new notice lists the subjects due to be told of it",
                        "tests/compliance.rs::art5_a_new_notice_lists_the_subjects_due_for_renotice_without_stopping_their_use",
                    ),
                ],
                due: if renotice_due > 0 {
                    vec![format!("{renotice_due} subjects consented under an older notice are due to be told of the current one")]
                } else {
                    Vec::new()
                },
            },
            ArticleReport {
                article: "Art. 6",
                title: "Separate, informed consent, which can be withdrawn conveniently",
                configured: vec![format!("{subjects} subjects enrolled, each under a recorded separate processing consent")],
                holds: vec![
                    proof(
                        "enrolment without a separate consent is refused and stores nothing",
                        "tests/compliance.rs::art6_enrolment_without_separate_consent_is_refused_and_nothing_is_stored",
                    ),
                    proof(
                        "withdrawal erases at once, keeps the history and is final",
                        "tests/compliance.rs::art6_withdrawal_erases_at_once_keeps_the_history_and_is_final",
                    ),
                ],
                due: Vec::new(),
            },
            ArticleReport {
                article: "Art. 7",
                title: "A guardian's consent for a child under 14, and stricter rules for children's data",
                configured: vec![
                    format!("{minors} subjects enrolled under {GUARDIAN_CONSENT_AGE}"),
                    format!("children's retention ceiling: {} days", ceilings.minor_secs / 86_400),
                ],
                holds: vec![proof(
                    "a child under 14 is enrolled only with a guardian's consent",
                    "tests/compliance.rs::art7_a_child_under_14_needs_a_guardians_consent",
                )],
                due: Vec::new(),
            },
            ArticleReport {
                article: "Art. 8",
                title: "Face data stays on the device unless separately consented; kept no longer than needed",
                configured: vec![
                    format!("adults' retention ceiling: {} days", ceilings.adult_secs / 86_400),
                    format!("{transfer_consents} subjects hold an active separate transfer consent"),
                ],
                holds: vec![
                    proof(
                        "an expired subject never matches, even before a purge, and the purge removes it",
                        "tests/compliance.rs::art8_an_expired_subject_never_matches_before_any_purge_and_purge_removes_it",
                    ),
                    proof(
                        "a network export without a transfer consent is refused and writes nothing",
                        "tests/compliance.rs::art8_network_export_refused_without_transfer_consent_writes_nothing",
                    ),
                    proof(
                        "no window of any template reaches the file or its WAL in the clear",
                        "tests/at_rest.rs::no_12_byte_window_of_any_template_reaches_the_file_or_the_wal",
                    ),
                ],
                due: [
                    (expiring > 0).then(|| {
                        format!("{expiring} subjects' retention ends within {EXPIRY_WARNING_DAYS} days")
                    }),
                    (expired > 0).then(|| format!("{expired} subjects are past their retention and wait for the next purge (they never match)")),
                ]
                .into_iter()
                .flatten()
                .collect(),
            },
            ArticleReport {
                article: "Art. 9",
                title: "An impact assessment before processing and after a change of purpose or method; records kept 3 years",
                configured: vec![
                    or_none(
                        latest_assessment.map(|a| {
                            format!(
                                "latest assessment: {} by {}, report SHA-256 {}; covers the current purpose and method: {}",
                                a.record.date,
                                a.record.author,
                                a.record.report_sha256,
                                if profile.is_some_and(|p| a.record.covers(p)) { "yes" } else { "no" }
                            )
                        }),
                        "no impact assessment is recorded",
                    ),
                    format!(
                        "assessments kept: {}, and the whole audit log; the vault has no call that deletes either",
                        governance.assessment_count()
                    ),
                    or_none(
                        governance.latest_incident().map(|incident| {
                            format!(
                                "major security incidents recorded: {}, the last on {}",
                                governance.incident_count(),
                                incident.record.occurred_on
                            )
                        }),
                        "no major security incident recorded",
                    ),
                ],
                holds: vec![
                    proof(
                        "enrolment waits for an assessment of the current purpose and method",
                        "tests/compliance.rs::art9_enrolment_needs_an_assessment_and_a_new_one_after_a_change_of_purpose",
                    ),
                    proof(
                        "assessments and the audit survive erasure, purge and decommissioning",
                        "tests/compliance.rs::art15_decommissioning_erases_every_face_and_keeps_the_audit_and_records",
                    ),
                ],
                due: refusal_due(
                    &governance.enrolment,
                    &[Refusal::AssessmentRequired, Refusal::AssessmentAfterIncident],
                ),
            },
            ArticleReport {
                article: "Art. 10",
                title: "Face recognition is never the only method: an alternative for whoever declines",
                configured: profile_lines(&|p| {
                    vec![if p.alternative_method.trim().is_empty() {
                        "no alternative method is offered".to_string()
                    } else {
                        format!("alternative method: {}", p.alternative_method)
                    }]
                }),
                holds: vec![proof(
                    "a deployment with no alternative method enrols and matches no one",
                    "src/policy/deployment.rs::art10_no_alternative_method_is_refused",
                )],
                due: refusal_due(&governance.matching, &[Refusal::NoAlternativeMethod]),
            },
            ArticleReport {
                article: "Art. 13",
                title: "Public places only for public safety, with a set capture area and prominent signs; never in private spaces",
                configured: profile_lines(&|p| {
                    vec![
                        format!("place: {}", p.place.as_str()),
                        format!("capture area: {}", p.capture_area),
                        format!("prominent signs posted: {}", if p.signs_posted { "yes" } else { "no" }),
                        format!("needed for public safety: {}", if p.public_safety { "yes" } else { "no" }),
                    ]
                }),
                holds: vec![proof(
                    "private spaces, and public places without signs or a public-safety need, are refused",
                    "src/policy/deployment.rs::art13_private_spaces_and_public_places_without_signs_or_public_safety_are_refused",
                )],
                due: refusal_due(
                    &governance.matching,
                    &[Refusal::PrivateSpace, Refusal::NoSigns, Refusal::NotForPublicSafety],
                ),
            },
            ArticleReport {
                article: "Art. 14",
                title: "Encryption, security audit, access control, authorisation, intrusion detection",
                configured: self.security_measures()?,
                holds: vec![
                    proof(
                        "a flipped byte in any ciphertext names the record",
                        "tests/tamper.rs::a_flipped_byte_in_any_template_ciphertext_or_nonce_names_the_record",
                    ),
                    proof(
                        "the exported audit log verifies off the device and names every kind of edit",
                        "tests/security.rs::the_exported_log_verifies_off_the_device_and_names_every_kind_of_edit",
                    ),
                    proof(
                        "every role tries every operation and gets exactly its table",
                        "tests/roles.rs::every_role_tries_every_operation",
                    ),
                    proof(
                        "an enumeration is throttled and alerted",
                        "tests/security.rs::an_enumeration_is_throttled_and_alerted_while_another_operator_is_served",
                    ),
                ],
                due: Vec::new(),
            },
            ArticleReport {
                article: "Art. 15",
                title: "File within 30 working days of storing 100,000 persons' face data; file changes; deregister on stopping",
                configured: [
                    format!("persons stored: {} of a filing threshold of {}", filing.persons, filing.threshold),
                    or_none(
                        filing.calendar_through.as_ref().map(|through| {
                            format!(
                                "holiday calendar through {through} ({})",
                                filing.calendar_source.clone().unwrap_or_default()
                            )
                        }),
                        "no holiday calendar loaded: working days count weekends only",
                    ),
                ]
                .into_iter()
                .chain(filings_made)
                .collect(),
                holds: vec![
                    proof(
                        "the threshold's moment and a deadline over weekends, holidays and make-up days are recorded, and erasure does not undo them",
                        "tests/compliance.rs::art15_the_1000th_person_starts_the_filing_clock_over_weekends_holidays_and_a_make_up_saturday",
                    ),
                    proof(
                        "the filing report holds the five items, from the vault's records",
                        "tests/compliance.rs::art15_the_filing_report_holds_the_five_items_from_the_vaults_records",
                    ),
                    proof(
                        "decommissioning erases every face and keeps the audit and records",
                        "tests/compliance.rs::art15_decommissioning_erases_every_face_and_keeps_the_audit_and_records",
                    ),
                ],
                due: filing_due,
            },
            ArticleReport {
                article: "Art. 16",
                title: "Regulators inspect; the processor cooperates",
                configured: vec![
                    format!("audit log: {audit_records_verified} records, chain verified for this report"),
                    "the audit log exports for verification off the device with the auditor's key (audit export)".into(),
                ],
                holds: vec![proof(
                    "this report names every article, and its page is valid, self-contained HTML",
                    "tests/compliance.rs::art16_the_compliance_report_names_every_article_and_its_page_is_self_contained_html",
                )],
                due: Vec::new(),
            },
            ArticleReport {
                article: "Art. 19",
                title: "Verify is 1:1, identify is 1:N, each audited as such",
                configured: vec!["verify (1:1) and identify (1:N) are the two matching operations".into()],
                holds: vec![proof(
                    "every attempt, allowed or refused, is recorded in order",
                    "tests/audit.rs::every_attempt_allowed_or_refused_is_recorded_in_order",
                )],
                due: Vec::new(),
            },
        ];
        Ok(ComplianceReport {
            generated_at: self.now,
            date: crate::policy::filing::format_date(today),
            vault_id: crate::crypto::hex(&self.settings.vault_id),
            matching_refused: governance.matching.as_ref().map(ToString::to_string),
            enrolment_refused: governance.enrolment.as_ref().map(ToString::to_string),
            filing,
            audit_records_verified,
            articles,
        })
    }
}

impl Vault {
    /// Art. 15's filing materials, items (1) to (5), filled from the vault's records. Refused
    /// without a deployment profile (item (1) and (2) come from it); items the records cannot
    /// fill are listed in [`FilingReport::missing`]. Admins and auditors.
    pub fn filing_report(&self, session: &Session) -> Result<FilingReport> {
        self.authorised_operation(session, Action::FilingReport, None, |act| {
            let report = act.filing_report()?;
            let detail = format!(
                "persons={} missing={}",
                report.count_and_security.persons,
                report.missing.len()
            );
            Ok((report, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// The compliance report (Art. 16): the audit chain is verified first, then each article's
    /// configuration, guarantees (with the tests that prove them) and what is due. Admins and
    /// auditors.
    pub fn compliance(&self, session: &Session) -> Result<ComplianceReport> {
        let verified = self.verify_audit(session)?;
        self.authorised_operation(session, Action::Compliance, None, |act| {
            let report = act.compliance_report(verified)?;
            let due: usize = report.articles.iter().map(|a| a.due.len()).sum();
            let detail = format!("articles={} due={due}", report.articles.len());
            Ok((report, vec![AuditEntry::new(None, detail)]))
        })
    }
}
