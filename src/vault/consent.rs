//! The law's operations on the data (Articles 5 to 8): notices, enrolment with consent, consent
//! renewal and withdrawal, transfer consent, erasure and purge. Each is a door operation whose
//! legal checks are the plain functions of `crate::policy`.

use serde::{Deserialize, Serialize};

use crate::wiped::{self, WipedVec};

use super::{
    as_slices, invalid, subject_mac_fields, AuditEntry, Core, OperationContext, Vault,
    MAX_TEMPLATES_PER_SUBJECT, SYSTEM,
};
use crate::access::Action;
use crate::crypto::{self, DataKey, PersonalBinding};
use crate::error::{Error, Result};
use crate::policy::{self, Enrolment, EnrolmentTerms, Guardian, Notice, Refusal};
use crate::store::{self, ConsentRow, NoticeRow, SubjectFacts, SubjectRow};
use crate::subject::SubjectId;
use crate::template::{RowCount, TemplateInput};
use crate::vault::Session;

/// Consent kinds as stored.
pub(super) const PROCESSING: &str = "processing";
pub(super) const TRANSFER: &str = "transfer";

/// The answer to publishing a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedNotice {
    /// The version now current.
    pub version: String,
    /// How many enrolled subjects consented under an older version and are due to be told.
    pub renotice_due: usize,
}

/// Subjects due to be told of the current notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenoticeDue {
    /// The current notice version, if one is published.
    pub version: Option<String>,
    /// Subjects whose latest consent names an older version.
    pub subjects: Vec<SubjectId>,
}

/// A separate consent to transfer a subject's face data off the device (Art. 8).
#[derive(Clone, Default)]
pub struct TransferConsent {
    /// How it was obtained. Stored encrypted.
    pub method: Option<String>,
    /// For a child: the parent or guardian who gave it. Stored encrypted.
    pub guardian: Option<Guardian>,
}

impl std::fmt::Debug for TransferConsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransferConsent([REDACTED])")
    }
}

/// Personal data kept beside a subject's templates, sealed under its data key.
#[derive(Serialize, Deserialize)]
struct SubjectPersonal {
    birth_date: Option<String>,
}

/// The evidence of a consent, sealed under the subject's data key: it goes with the face data.
#[derive(Serialize, Deserialize)]
pub(super) struct Evidence {
    pub method: Option<String>,
    pub guardian: Option<Guardian>,
}

/// The most JSON one sealed record holds: its texts are at most 4 KiB each, and escaping at most
/// sextuples them.
const MAX_SEALED_JSON: usize = 64 * 1024;

/// JSON in a buffer of exactly its size, zeroed on drop (these hold personal data).
fn sealed_json<T: Serialize>(value: &T) -> Result<WipedVec<u8>> {
    wiped::json(value, MAX_SEALED_JSON).map_err(|too_large| {
        invalid(
            "personal data",
            format!("{} bytes as JSON, more than {MAX_SEALED_JSON}", too_large.0),
        )
    })
}

pub(super) fn optional_time(value: Option<i64>) -> Vec<u8> {
    match value {
        Some(at) => [&[1u8][..], &at.to_le_bytes()].concat(),
        None => vec![0],
    }
}

/// The MACed fields of a consent: a forged, edited or re-attributed consent is caught.
pub(super) fn consent_mac_fields(row: &ConsentRow) -> Vec<Vec<u8>> {
    vec![
        row.id.to_le_bytes().to_vec(),
        row.subject.to_vec(),
        row.kind.as_bytes().to_vec(),
        row.notice_version.as_bytes().to_vec(),
        row.given_at.to_le_bytes().to_vec(),
        vec![u8::from(row.by_guardian)],
        optional_time(row.withdrawn_at),
        optional_time(row.erased_at),
        row.evidence.clone().unwrap_or_default(),
    ]
}

pub(super) fn notice_mac_fields(row: &NoticeRow) -> Vec<Vec<u8>> {
    vec![
        row.seq.to_le_bytes().to_vec(),
        row.version.as_bytes().to_vec(),
        row.published_at.to_le_bytes().to_vec(),
        row.body.as_bytes().to_vec(),
    ]
}

impl OperationContext<'_> {
    /// The current notice, its MAC checked.
    pub(super) fn current_notice(&self) -> Result<Option<NoticeRow>> {
        let Some(row) = store::current_notice(self.tx)? else {
            return Ok(None);
        };
        if !self
            .keys
            .record_mac_matches("notice", &as_slices(&notice_mac_fields(&row)), &row.mac)
        {
            return Err(Error::Integrity {
                table: "notices",
                record: row.version,
            });
        }
        Ok(Some(row))
    }

    /// Whether a notice was published as `version`; the row found is MAC-checked.
    pub(super) fn notice_published(&self, version: &str) -> Result<bool> {
        let Some(row) = store::notice_by_version(self.tx, version)? else {
            return Ok(false);
        };
        if !self
            .keys
            .record_mac_matches("notice", &as_slices(&notice_mac_fields(&row)), &row.mac)
        {
            return Err(Error::Integrity {
                table: "notices",
                record: row.version,
            });
        }
        Ok(true)
    }

    /// Enrolled subjects whose latest active processing consent names a notice other than
    /// `current`: due to be told of it. Every subject row and consent read is MAC-checked.
    pub(super) fn renotice_due_subjects(&self, current: &str) -> Result<Vec<SubjectId>> {
        let mut subjects = Vec::new();
        self.for_each_subject(|subject, _| subjects.push(subject))?;
        let mut due = Vec::new();
        for subject in subjects {
            let consents = self.consents(&subject)?;
            let latest = consents
                .iter()
                .filter(|consent| consent.kind == PROCESSING && consent.withdrawn_at.is_none())
                .max_by_key(|consent| consent.id);
            if latest.is_some_and(|consent| consent.notice_version != current) {
                due.push(subject);
            }
        }
        Ok(due)
    }

    /// A subject's consents, oldest first, each MAC checked.
    pub(super) fn consents(&self, subject: &SubjectId) -> Result<Vec<ConsentRow>> {
        let rows = store::consents_of(self.tx, subject.as_bytes())?;
        for row in &rows {
            if !self
                .keys
                .record_mac_matches("consent", &as_slices(&consent_mac_fields(row)), &row.mac)
            {
                return Err(Error::Integrity {
                    table: "consents",
                    record: row.id.to_string(),
                });
            }
        }
        Ok(rows)
    }

    pub(super) fn write_consent(&self, row: &mut ConsentRow, insert: bool) -> Result<()> {
        row.mac = self
            .keys
            .record_mac("consent", &as_slices(&consent_mac_fields(row)));
        if insert {
            store::insert_consent(self.tx, row)
        } else {
            store::update_consent(self.tx, row)
        }
    }

    fn record_consent(
        &self,
        subject: &SubjectId,
        key: &DataKey,
        kind: &str,
        notice_version: &str,
        evidence: &Evidence,
    ) -> Result<()> {
        let id = store::next_consent_id(self.tx)?;
        let plain = sealed_json(evidence)?;
        let binding = PersonalBinding {
            vault_id: &self.settings.vault_id,
            subject: subject.as_bytes(),
            table: b"consent",
            row: id,
        };
        let mut row = ConsentRow {
            id,
            subject: *subject.as_bytes(),
            kind: kind.to_string(),
            notice_version: notice_version.to_string(),
            given_at: self.now,
            by_guardian: evidence.guardian.is_some(),
            withdrawn_at: None,
            erased_at: None,
            evidence: Some(crypto::seal_personal(key, &binding, &plain)?),
            mac: Vec::new(),
        };
        self.write_consent(&mut row, true)
    }

    /// Opens a consent's sealed evidence (only while its subject's key exists).
    pub(super) fn open_evidence(&self, key: &DataKey, row: &ConsentRow) -> Result<Option<Evidence>> {
        let Some(sealed) = &row.evidence else {
            return Ok(None);
        };
        let binding = PersonalBinding {
            vault_id: &self.settings.vault_id,
            subject: &row.subject,
            table: b"consent",
            row: row.id,
        };
        let damaged = || Error::Integrity {
            table: "consents",
            record: row.id.to_string(),
        };
        let plain = crypto::open_personal(key, &binding, sealed).ok_or_else(damaged)?;
        serde_json::from_slice(&plain).map(Some).map_err(|_| damaged())
    }

    /// Creates a subject with its wrapped key, sealed personal data and consents.
    fn enrol_subject(
        &mut self,
        enrolment: &Enrolment,
        terms: &EnrolmentTerms,
    ) -> Result<(SubjectId, DataKey)> {
        let subject = SubjectId::random()?;
        let key = DataKey::random()?;
        let wrapped = self
            .keys
            .wrap(&self.settings.vault_id, subject.as_bytes(), &key)?;
        let personal = match enrolment.birth_date {
            Some(birth) => {
                let personal = SubjectPersonal {
                    birth_date: Some(birth.to_string()),
                };
                let binding = PersonalBinding {
                    vault_id: &self.settings.vault_id,
                    subject: subject.as_bytes(),
                    table: b"subject",
                    row: 0,
                };
                Some(crypto::seal_personal(&key, &binding, &sealed_json(&personal)?)?)
            }
            None => None,
        };
        let mut row = SubjectRow {
            id: *subject.as_bytes(),
            facts: SubjectFacts {
                created_at: self.now,
                expires_at: terms.expires_at,
                minor: terms.minor,
                // Every new subject is enrolled with exactly one template.
                templates: 1,
            },
            wrapped_key: Some(wrapped),
            personal,
            mac: Vec::new(),
        };
        row.mac = self
            .keys
            .record_mac("subject", &subject_mac_fields(&row.id, &row.facts).slices());
        store::insert_subject(self.tx, &row)?;
        let evidence = Evidence {
            method: enrolment.consent_method.clone(),
            guardian: enrolment.guardian.clone(),
        };
        let version = enrolment.notice_version.as_deref().unwrap_or_default();
        self.record_consent(&subject, &key, PROCESSING, version, &evidence)?;
        if enrolment.transfer_consent {
            self.record_consent(&subject, &key, TRANSFER, version, &evidence)?;
        }
        Ok((subject, key))
    }

    /// The law's verdict on an enrolment, against the current notice.
    fn enrolment_terms(&self, enrolment: &Enrolment) -> Result<EnrolmentTerms> {
        self.admit_enrolment()?;
        let current = self.current_notice()?.map(|n| n.version);
        policy::may_enrol(
            enrolment,
            current.as_deref(),
            |version| self.notice_published(version),
            self.settings.ceilings,
            self.settings.utc_offset_minutes,
            self.now,
        )
    }

    /// Every subject past its retention, with its expiry, in ID order. The loaded gallery's
    /// expiries were authenticated at open; without it every subject row is read and its MAC
    /// checked, so that an expiry pushed back in the file cannot keep a subject from the purge.
    fn expired_subjects(&self) -> Result<Vec<(SubjectId, i64)>> {
        if let Some(galleries) = self.galleries {
            return Ok(galleries
                .subjects()
                .into_iter()
                .filter(|(_, expires_at)| !policy::is_within_retention(*expires_at, self.now))
                .collect());
        }
        let mut expired = Vec::new();
        self.for_each_subject(|subject, facts| {
            if !policy::is_within_retention(facts.expires_at, self.now) {
                expired.push((subject, facts.expires_at));
            }
        })?;
        Ok(expired)
    }

    /// Erases a subject's face data: its wrapped key first, then its templates and row; its
    /// consents keep the facts (kind, notice, times) and lose their encrypted evidence.
    pub(super) fn shred_subject(&mut self, subject: &SubjectId, withdrawal: bool) -> Result<usize> {
        self.subject_row(subject)?;
        let mut consents = self.consents(subject)?;
        let templates = store::erase_subject(self.tx, subject.as_bytes())?;
        for consent in &mut consents {
            if withdrawal && consent.withdrawn_at.is_none() {
                consent.withdrawn_at = Some(self.now);
            }
            consent.erased_at.get_or_insert(self.now);
            consent.evidence = None;
            self.write_consent(consent, false)?;
        }
        self.pending.erased.push(*subject);
        Ok(templates)
    }
}

fn enrolment_detail(enrolment: &Enrolment, terms: &EnrolmentTerms) -> String {
    format!(
        "notice={} minor={} expires_at={} transfer_consent={}",
        enrolment.notice_version.as_deref().unwrap_or_default(),
        terms.minor,
        terms.expires_at,
        enrolment.transfer_consent
    )
}

impl Vault {
    /// Publishes a new notice version (Art. 5). Subjects consented under an older one become
    /// "re-notice due" but stay in use.
    pub fn publish_notice(&self, session: &Session, notice: &Notice) -> Result<PublishedNotice> {
        self.authorised_operation(session, Action::PublishNotice, None, |act| {
            policy::check_notice(notice)?;
            for text in [
                &notice.version,
                &notice.processor_name,
                &notice.processor_contact,
                &notice.purpose,
                &notice.method,
                &notice.retention,
                &notice.necessity_and_impact,
                &notice.rights,
            ] {
                policy::check_text("notice item", text)?;
            }
            if store::notice_published(act.tx, &notice.version)? {
                return Err(Error::NoticeExists(notice.version.clone()));
            }
            let seq = act.current_notice()?.map_or(1, |n| n.seq + 1);
            let mut row = NoticeRow {
                seq,
                version: notice.version.clone(),
                published_at: act.now,
                body: serde_json::to_string(notice).map_err(|_| Error::Crypto)?,
                mac: Vec::new(),
            };
            row.mac = act
                .keys
                .record_mac("notice", &as_slices(&notice_mac_fields(&row)));
            store::insert_notice(act.tx, &row)?;
            let renotice_due = act.renotice_due_subjects(&notice.version)?.len();
            let detail = format!("version={} renotice_due={renotice_due}", notice.version);
            let published = PublishedNotice {
                version: notice.version.clone(),
                renotice_due,
            };
            Ok((published, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Lists the subjects due to be told of the current notice.
    pub fn renotice_due(&self, session: &Session) -> Result<RenoticeDue> {
        self.authorised_operation(session, Action::RenoticeDue, None, |act| {
            let version = act.current_notice()?.map(|n| n.version);
            let subjects = match &version {
                Some(version) => act.renotice_due_subjects(version)?,
                None => Vec::new(),
            };
            let detail = format!("renotice_due={}", subjects.len());
            Ok((
                RenoticeDue { version, subjects },
                vec![AuditEntry::new(None, detail)],
            ))
        })
    }

    /// Enrols a new subject from one template, with the consent the law requires (Art. 6): a
    /// separate processing consent naming the current notice, a guardian's for a child under 14
    /// (Art. 7), and an expiry no later than the vault's ceiling (Art. 8).
    pub fn enrol<'t>(
        &self,
        session: &Session,
        enrolment: &Enrolment,
        template: impl Into<TemplateInput<'t>>,
    ) -> Result<SubjectId> {
        let template = template.into();
        self.authorised_operation(session, Action::Enrol, None, |act| {
            let terms = act.enrolment_terms(enrolment)?;
            let (model, row) = act.normalise_templates(template, RowCount::One)?;
            let (subject, key) = act.enrol_subject(enrolment, &terms)?;
            let mut next_id = act.next_template_id()?;
            act.store_template(model, subject, terms.expires_at, &key, &row, &mut next_id)?;
            act.set_next_template_id(next_id)?;
            let mut entries = vec![AuditEntry::new(
                Some(subject),
                enrolment_detail(enrolment, &terms),
            )];
            act.count_for_filing(&mut entries)?;
            Ok((subject, entries))
        })
    }

    /// Enrols each row of `templates` as a new subject under the same consent terms, all or
    /// nothing, and returns their IDs in row order. Each subject gets its own consent records and
    /// audit record.
    pub fn enrol_batch<'t>(
        &self,
        session: &Session,
        enrolment: &Enrolment,
        templates: impl Into<TemplateInput<'t>>,
    ) -> Result<Vec<SubjectId>> {
        let templates = templates.into();
        self.authorised_operation(session, Action::EnrolBatch, None, |act| {
            let terms = act.enrolment_terms(enrolment)?;
            let (model, rows) = act.normalise_templates(templates, RowCount::AtLeastOne)?;
            let dim = act.settings.models[model].dim;
            act.pending.new_rows.reserve(rows.len());
            let mut next_id = act.next_template_id()?;
            let mut subjects = Vec::with_capacity(rows.len() / dim);
            let mut entries = Vec::with_capacity(rows.len() / dim);
            let detail = enrolment_detail(enrolment, &terms);
            let total = rows.len() / dim;
            for (done, row) in rows.chunks_exact(dim).enumerate() {
                act.report_progress("enrol_batch", done, total);
                let (subject, key) = act.enrol_subject(enrolment, &terms)?;
                act.store_template(model, subject, terms.expires_at, &key, row, &mut next_id)?;
                subjects.push(subject);
                entries.push(AuditEntry::new(Some(subject), detail.clone()));
            }
            act.report_progress("enrol_batch", total, total);
            act.set_next_template_id(next_id)?;
            act.count_for_filing(&mut entries)?;
            Ok((subjects, entries))
        })
    }

    /// Adds another template to an enrolled subject within its retention; its consent covers it.
    pub fn add_template<'t>(
        &self,
        session: &Session,
        subject: &SubjectId,
        template: impl Into<TemplateInput<'t>>,
    ) -> Result<()> {
        let template = template.into();
        self.authorised_operation(session, Action::Enrol, Some(*subject), |act| {
            act.admit_enrolment()?;
            let live = act.live_subject(subject)?;
            let expires_at = live.facts.expires_at;
            if live.facts.templates >= MAX_TEMPLATES_PER_SUBJECT as i64 {
                let reason = format!("the subject already holds the maximum of {MAX_TEMPLATES_PER_SUBJECT}");
                return Err(invalid("template", reason));
            }
            let (model, row) = act.normalise_templates(template, RowCount::One)?;
            let key = act.subject_key(subject)?;
            let mut next_id = act.next_template_id()?;
            act.store_template(model, *subject, expires_at, &key, &row, &mut next_id)?;
            act.set_next_template_id(next_id)?;
            let mut subject_row = act.subject_row(subject)?;
            subject_row.facts.templates += 1;
            let mac = act.keys.record_mac(
                "subject",
                &subject_mac_fields(&subject_row.id, &subject_row.facts).slices(),
            );
            store::set_subject_templates(act.tx, subject.as_bytes(), subject_row.facts.templates, &mac)?;
            let detail = format!("templates=+1 model={}", act.settings.models[model].name);
            let mut entries = vec![AuditEntry::new(Some(*subject), detail)];
            // A subject left bare by a model's retirement counts again once it holds a template.
            act.count_for_filing(&mut entries)?;
            Ok(((), entries))
        })
    }

    /// Records a fresh processing consent under the current notice, clearing "re-notice due".
    /// Only the notice version, method and guardian of `renewal` are used.
    pub fn renew_consent(&self, session: &Session, subject: &SubjectId, renewal: &Enrolment) -> Result<()> {
        self.authorised_operation(session, Action::RenewConsent, Some(*subject), |act| {
            act.live_subject(subject)?;
            let minor = act.subject_row(subject)?.facts.minor;
            let current = act.current_notice()?.map(|n| n.version);
            policy::may_renew(
                renewal,
                current.as_deref(),
                |version| act.notice_published(version),
                minor,
            )?;
            let key = act.subject_key(subject)?;
            let version = renewal.notice_version.as_deref().unwrap_or_default();
            let evidence = Evidence {
                method: renewal.consent_method.clone(),
                guardian: renewal.guardian.clone(),
            };
            act.record_consent(subject, &key, PROCESSING, version, &evidence)?;
            Ok((
                (),
                vec![AuditEntry::new(Some(*subject), format!("notice={version}"))],
            ))
        })
    }

    /// Withdraws a subject's consent (Art. 6): its face data is erased at once (wrapped key
    /// first), its consent and audit history stay, and the withdrawal is final.
    pub fn withdraw_consent(&self, session: &Session, subject: &SubjectId) -> Result<()> {
        self.authorised_operation(session, Action::WithdrawConsent, Some(*subject), |act| {
            let templates = act.shred_subject(subject, true)?;
            Ok((
                (),
                vec![AuditEntry::new(
                    Some(*subject),
                    format!("erased templates={templates}"),
                )],
            ))
        })
    }

    /// Erases a subject (its wrapped data key first, then its templates). It stops matching at
    /// once, and the WAL is truncated so no copy of the key or ciphertext lingers there.
    pub fn erase(&self, session: &Session, subject: &SubjectId) -> Result<()> {
        self.authorised_operation(session, Action::Erase, Some(*subject), |act| {
            let templates = act.shred_subject(subject, false)?;
            Ok((
                (),
                vec![AuditEntry::new(Some(*subject), format!("templates={templates}"))],
            ))
        })
    }

    /// Erases every subject past its retention, as [`Vault::erase`] does (wrapped key first, then
    /// templates, row and sealed evidence). Its consents are marked erased but
    /// not withdrawn: they ran their course, nobody withdrew them.
    ///
    /// Returns the subjects erased, in ID order, so that the device's own records (a badge map,
    /// say) can follow without reading the audit log.
    pub fn purge(&self, session: &Session) -> Result<Vec<SubjectId>> {
        self.authorised_operation(session, Action::Purge, None, purge_expired)
    }

    /// Erases every subject past its retention as the vault's own duty (Art. 8), with no
    /// session: audited with the actor `system`. The vault runs it at an opening that loads the
    /// gallery when a subject has expired, and every [`OpenOptions::purge_interval`](super::OpenOptions::purge_interval) while open;
    /// a host may call it too (the C ABI's `fv_purge_expired`). Returns the subjects erased; when
    /// none has expired it writes nothing.
    pub fn purge_expired(&self) -> Result<Vec<SubjectId>> {
        self.core.purge_expired()
    }

    /// Records a subject's separate consent to transfer its face data off the device (Art. 8);
    /// a child's must come from a guardian (Art. 7).
    pub fn grant_transfer(
        &self,
        session: &Session,
        subject: &SubjectId,
        consent: &TransferConsent,
    ) -> Result<()> {
        self.authorised_operation(session, Action::GrantTransfer, Some(*subject), |act| {
            act.live_subject(subject)?;
            let minor = act.subject_row(subject)?.facts.minor;
            policy::may_grant_transfer(consent.method.as_deref(), consent.guardian.as_ref(), minor)?;
            let version = act
                .current_notice()?
                .map(|n| n.version)
                .ok_or(Refusal::NoNotice)?;
            let key = act.subject_key(subject)?;
            let evidence = Evidence {
                method: consent.method.clone(),
                guardian: consent.guardian.clone(),
            };
            act.record_consent(subject, &key, TRANSFER, &version, &evidence)?;
            let detail = format!("notice={version} by_guardian={}", consent.guardian.is_some());
            Ok(((), vec![AuditEntry::new(Some(*subject), detail)]))
        })
    }

    /// Withdraws a subject's transfer consents; its face data stays on the device. Returns how
    /// many active transfer consents there were.
    pub fn withdraw_transfer(&self, session: &Session, subject: &SubjectId) -> Result<usize> {
        self.authorised_operation(session, Action::WithdrawTransfer, Some(*subject), |act| {
            act.subject_row(subject)?;
            let mut withdrawn = 0;
            for mut consent in act.consents(subject)? {
                if consent.kind == TRANSFER && consent.withdrawn_at.is_none() {
                    consent.withdrawn_at = Some(act.now);
                    act.write_consent(&mut consent, false)?;
                    withdrawn += 1;
                }
            }
            Ok((
                withdrawn,
                vec![AuditEntry::new(Some(*subject), format!("withdrawn={withdrawn}"))],
            ))
        })
    }
}

impl Core {
    /// [`Vault::purge_expired`], for the vault and its purge timer.
    pub(super) fn purge_expired(&self) -> Result<Vec<SubjectId>> {
        let due = match &self.read_state().galleries {
            Some(galleries) => {
                let now = self.clock.now();
                galleries
                    .subjects()
                    .iter()
                    .any(|(_, expires_at)| !policy::is_within_retention(*expires_at, now))
            }
            None => true,
        };
        if !due {
            return Ok(Vec::new());
        }
        self.operation(SYSTEM, Action::Purge, None, purge_expired)
    }
}

/// A purge's body: every subject past its retention shredded, each audited.
fn purge_expired(act: &mut OperationContext<'_>) -> Result<(Vec<SubjectId>, Vec<AuditEntry>)> {
    let expired = act.expired_subjects()?;
    let mut entries = Vec::with_capacity(expired.len() + 1);
    for (done, (subject, expires_at)) in expired.iter().enumerate() {
        act.report_progress("purge", done, expired.len());
        let templates = act.shred_subject(subject, false)?;
        let detail = format!("expired_at={expires_at} templates={templates}");
        entries.push(AuditEntry::new(Some(*subject), detail));
    }
    act.report_progress("purge", expired.len(), expired.len());
    entries.push(AuditEntry::new(None, format!("purged={}", expired.len())));
    let purged = expired.into_iter().map(|(subject, _)| subject).collect();
    Ok((purged, entries))
}
