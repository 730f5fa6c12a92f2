//! The processor's duties (Arts. 3–4, 9, 10, 13, 15): the deployment profile, impact
//! assessments, the working-day calendar, Art. 15's filing clocks and decommissioning. Their
//! records are rows of the `governance` table (format version 4), each a MACed JSON body,
//! appended and never deleted; the vault keeps them in memory too ([`Governance`]), so that the
//! gates on enrolment and matching cost a lookup one branch.

use serde::{Deserialize, Serialize};

use super::{as_slices, invalid, AuditEntry, OperationContext, Session, Vault};
use crate::access::Action;
use crate::clock::UnixMillis;
use crate::crypto::{self, VaultKeys};
use crate::error::{Error, Result};
use crate::policy::deployment::{self, Assessment, DeploymentProfile, Incident};
use crate::policy::filing::{self, Calendar, CalendarFile, FILING_WORKING_DAYS};
use crate::policy::{self, Refusal};
use crate::store::{self, GovernanceRow};

const PROFILE: &str = "profile";
const ASSESSMENT: &str = "assessment";
const INCIDENT: &str = "incident";
const CALENDAR: &str = "calendar";
const FILING: &str = "filing";
const FILED: &str = "filed";

/// Which of Art. 15's filings a clock runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilingKind {
    /// The first filing, due once the vault stores the face data of the threshold's number of
    /// persons.
    Initial,
    /// A change filing, due after a material change to what was filed.
    Change,
    /// Deregistration, due after the vault stops processing (decommissioning).
    Deregistration,
}

impl FilingKind {
    /// Its name for people: "Initial filing", "Change filing", "Deregistration".
    pub fn title(self) -> &'static str {
        match self {
            FilingKind::Initial => "Initial filing",
            FilingKind::Change => "Change filing",
            FilingKind::Deregistration => "Deregistration",
        }
    }

    /// The name in records and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FilingKind::Initial => "initial",
            FilingKind::Change => "change",
            FilingKind::Deregistration => "deregistration",
        }
    }
}

impl std::str::FromStr for FilingKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "initial" => Ok(FilingKind::Initial),
            "change" => Ok(FilingKind::Change),
            "deregistration" => Ok(FilingKind::Deregistration),
            _ => Err(invalid(
                "filing",
                "expected initial, change or deregistration".into(),
            )),
        }
    }
}

/// A filing clock started, as recorded (the body of a `filing` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilingEvent {
    /// Which filing.
    pub kind: FilingKind,
    /// The device's civil date on which the clock started, `YYYY-MM-DD`.
    pub started_on: String,
    /// Persons stored at that moment.
    pub persons: u64,
    /// What started it.
    pub detail: String,
}

/// A filing made, as the processor records it (the body of a `filed` record): it stops the
/// clocks of its kind that started before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilingMade {
    /// Which filing was made.
    pub filing: FilingKind,
    /// The day it was made, `YYYY-MM-DD`.
    pub filed_on: String,
    /// The authority's reference (a receipt or filing number).
    pub reference: String,
}

/// A record with when it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded<T> {
    /// Its place among the governance records.
    pub seq: i64,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub recorded_at: UnixMillis,
    /// The record.
    #[serde(flatten)]
    pub record: T,
}

/// The governance records, read at open and kept in step with every change, with the gates they
/// put on enrolment and matching.
#[derive(Debug, Clone, Default)]
pub(super) struct Governance {
    profiles: Vec<Recorded<DeploymentProfile>>,
    assessments: Vec<Recorded<Assessment>>,
    incidents: Vec<Recorded<Incident>>,
    /// The calendar in force (the newest recorded), checked when it was read.
    calendar: Option<Calendar>,
    filings: Vec<Recorded<FilingEvent>>,
    made: Vec<Recorded<FilingMade>>,
    next_seq: i64,
    /// Why matching is refused, if it is.
    pub(super) matching: Option<Refusal>,
    /// Why enrolment is refused, if it is.
    pub(super) enrolment: Option<Refusal>,
}

fn mac_fields(row: &GovernanceRow) -> [Vec<u8>; 4] {
    [
        row.seq.to_le_bytes().to_vec(),
        row.kind.as_bytes().to_vec(),
        row.recorded_at.to_le_bytes().to_vec(),
        row.body.as_bytes().to_vec(),
    ]
}

impl Governance {
    /// Reads every record, each MAC checked and its body parsed; a record that fails either is
    /// damage ([`Error::Integrity`]).
    pub(super) fn load(conn: &rusqlite::Connection, keys: &VaultKeys) -> Result<Self> {
        let mut governance = Self::empty();
        for row in store::governance_records(conn)? {
            let damaged = || Error::Integrity {
                table: "governance",
                record: row.seq.to_string(),
            };
            if !keys.record_mac_matches("governance", &as_slices(&mac_fields(&row)), &row.mac)
                || row.seq < governance.next_seq
            {
                return Err(damaged());
            }
            governance.push(&row).map_err(|_| damaged())?;
        }
        governance.refresh();
        Ok(governance)
    }

    /// Takes in one stored row; a body that does not parse as its kind is refused.
    fn push(&mut self, row: &GovernanceRow) -> Result<()> {
        fn recorded<T: serde::de::DeserializeOwned>(row: &GovernanceRow) -> Result<Recorded<T>> {
            let record =
                serde_json::from_str(&row.body).map_err(|e| invalid("governance record", e.to_string()))?;
            Ok(Recorded {
                seq: row.seq,
                recorded_at: row.recorded_at,
                record,
            })
        }
        match row.kind.as_str() {
            PROFILE => self.profiles.push(recorded(row)?),
            ASSESSMENT => self.assessments.push(recorded(row)?),
            INCIDENT => self.incidents.push(recorded(row)?),
            CALENDAR => {
                let file: Recorded<CalendarFile> = recorded(row)?;
                self.calendar = Some(Calendar::from_file(&file.record)?);
            }
            FILING => self.filings.push(recorded(row)?),
            FILED => self.made.push(recorded(row)?),
            // The table's CHECK allows no other kind; one here is damage.
            _ => {
                return Err(invalid(
                    "governance record",
                    format!("unknown kind {:?}", row.kind),
                ))
            }
        }
        self.next_seq = row.seq + 1;
        Ok(())
    }

    /// Works the gates out again from the records.
    fn refresh(&mut self) {
        if self.decommissioned() {
            self.matching = Some(Refusal::Decommissioned);
            self.enrolment = Some(Refusal::Decommissioned);
            return;
        }
        let profile = self.profiles.last().map(|p| &p.record);
        let matching = deployment::matching_refusal(profile);
        let latest = self.assessments.last();
        let incident_since = self
            .incidents
            .last()
            .is_some_and(|incident| latest.is_none_or(|assessment| incident.seq > assessment.seq));
        let enrolment = deployment::enrolment_refusal(profile, latest.map(|a| &a.record), incident_since);
        (self.matching, self.enrolment) = (matching, enrolment);
    }

    /// The records of a new vault: none.
    pub(super) fn empty() -> Self {
        let mut governance = Self {
            next_seq: 1,
            ..Self::default()
        };
        governance.refresh();
        governance
    }

    /// Appends a record in the operation's transaction and takes it in.
    fn append<T: Serialize>(
        &mut self,
        act: &OperationContext<'_>,
        kind: &'static str,
        body: &T,
    ) -> Result<i64> {
        self.append_in(act.tx, act.keys, act.now, kind, body)
    }

    /// Records the profile a vault is created with, in the creating transaction.
    pub(super) fn record_initial_profile(
        &mut self,
        tx: &rusqlite::Connection,
        keys: &VaultKeys,
        now: UnixMillis,
        profile: &DeploymentProfile,
    ) -> Result<String> {
        let seq = self.append_in(tx, keys, now, PROFILE, profile)?;
        Ok(profile_detail(seq, profile, self))
    }

    fn append_in<T: Serialize>(
        &mut self,
        tx: &rusqlite::Connection,
        keys: &VaultKeys,
        now: UnixMillis,
        kind: &'static str,
        body: &T,
    ) -> Result<i64> {
        let body = serde_json::to_string(body).map_err(|e| invalid("governance record", e.to_string()))?;
        let mut row = GovernanceRow {
            seq: self.next_seq,
            kind: kind.to_string(),
            recorded_at: now,
            body,
            mac: Vec::new(),
        };
        row.mac = keys.record_mac("governance", &as_slices(&mac_fields(&row)));
        store::insert_governance(tx, &row)?;
        self.push(&row)?;
        self.refresh();
        Ok(row.seq)
    }

    /// The current deployment profile.
    pub(super) fn profile(&self) -> Option<&Recorded<DeploymentProfile>> {
        self.profiles.last()
    }

    /// The newest impact assessment.
    pub(super) fn latest_assessment(&self) -> Option<&Recorded<Assessment>> {
        self.assessments.last()
    }

    /// The newest major security incident recorded.
    pub(super) fn latest_incident(&self) -> Option<&Recorded<Incident>> {
        self.incidents.last()
    }

    /// How many major security incidents are recorded.
    pub(super) fn incident_count(&self) -> usize {
        self.incidents.len()
    }

    /// How many impact assessments are kept.
    pub(super) fn assessment_count(&self) -> usize {
        self.assessments.len()
    }

    /// Whether the vault was decommissioned.
    pub(super) fn decommissioned(&self) -> bool {
        self.filings
            .iter()
            .any(|filing| filing.record.kind == FilingKind::Deregistration)
    }

    /// When the initial filing's clock started, if the threshold was ever reached.
    pub(super) fn threshold_reached(&self) -> Option<&Recorded<FilingEvent>> {
        self.filings
            .iter()
            .find(|filing| filing.record.kind == FilingKind::Initial)
    }

    /// Every filing clock, with its deadline under the current calendar, as of `today`.
    fn clocks(&self, today: time::Date) -> Vec<FilingClock> {
        let none = Calendar::default();
        // Without a calendar, weekends only.
        let calendar = self.calendar.as_ref().unwrap_or(&none);
        self.filings
            .iter()
            .map(|filing| {
                let started = policy::parse_date_of("filing date", &filing.record.started_on).ok();
                let deadline = started.and_then(|day| calendar.add_working_days(day, FILING_WORKING_DAYS));
                let made = self
                    .made
                    .iter()
                    .find(|made| made.seq > filing.seq && made.record.filing == filing.record.kind)
                    .map(|made| made.record.clone());
                FilingClock {
                    made,
                    kind: filing.record.kind,
                    started_at: filing.recorded_at,
                    started_on: filing.record.started_on.clone(),
                    persons: filing.record.persons,
                    deadline: deadline.map(filing::format_date),
                    working_days_left: deadline.map(|deadline| calendar.working_days_left(today, deadline)),
                    calendar_covers_deadline: deadline.is_some_and(|deadline| {
                        calendar
                            .last_listed()
                            .is_some_and(|last| last.year() >= deadline.year())
                    }),
                    detail: filing.record.detail.clone(),
                }
            })
            .collect()
    }
}

/// One of Art. 15's filing clocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilingClock {
    /// Which filing.
    pub kind: FilingKind,
    /// When the clock started, in milliseconds since the Unix epoch.
    pub started_at: UnixMillis,
    /// The device's civil date on which it started.
    pub started_on: String,
    /// Persons stored then.
    pub persons: u64,
    /// The last day to file: the 30th working day after `started_on`, under the current calendar.
    pub deadline: Option<String>,
    /// Working days after today up to and including the deadline; 0 on it, negative after it.
    pub working_days_left: Option<i64>,
    /// Whether the calendar lists days of the deadline's year: if not, holidays after its last
    /// listed day are not known, and the deadline counts weekends only.
    pub calendar_covers_deadline: bool,
    /// What started it.
    pub detail: String,
    /// The filing that stopped it, once the processor has recorded it ([`Vault::record_filing`]).
    pub made: Option<FilingMade>,
}

impl FilingClock {
    /// The time left, for people: "12 working days left", "3 working days overdue", with a word
    /// when the calendar does not reach the deadline's year.
    pub fn time_left(&self) -> String {
        let left = self.working_days_left.unwrap_or_default();
        format!(
            "{} working days {}{}",
            left.abs(),
            if left < 0 { "overdue" } else { "left" },
            if self.calendar_covers_deadline {
                ""
            } else {
                " (no holiday calendar loaded for the deadline's year: weekends only)"
            }
        )
    }
}

/// [`Vault::filing_status`]: where the vault stands against Art. 15.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilingStatus {
    /// Distinct persons whose face data the vault stores now.
    pub persons: u64,
    /// The count at which filing is due.
    pub threshold: u64,
    /// When the count first reached the threshold; erasures afterwards do not undo it.
    pub reached_at: Option<UnixMillis>,
    /// The initial filing's deadline.
    pub deadline: Option<String>,
    /// Working days left to the initial filing's deadline.
    pub working_days_left: Option<i64>,
    /// Every filing clock: the initial filing, change filings, deregistration.
    pub clocks: Vec<FilingClock>,
    /// Where the calendar of holidays and make-up working days comes from, if one is loaded.
    pub calendar_source: Option<String>,
    /// The last day that calendar lists.
    pub calendar_through: Option<String>,
    /// Whether the vault was decommissioned.
    pub decommissioned: bool,
}

/// [`Vault::set_profile`]'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileRecorded {
    /// The record's place among the governance records.
    pub seq: i64,
    /// Why the law now refuses matching, if it does (the refusal's message, naming the article).
    pub matching_refused: Option<String>,
    /// Why the law now refuses enrolment, if it does.
    pub enrolment_refused: Option<String>,
    /// Whether the change is material after filing, and started a change-filing clock.
    pub change_filing_due: bool,
}

/// [`Vault::add_assessment`]'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssessmentRecorded {
    /// The record's place among the governance records.
    pub seq: i64,
    /// Whether it covers the current profile's purpose and method.
    pub covers_current_profile: bool,
    /// Why the law still refuses enrolment, if it does.
    pub enrolment_refused: Option<String>,
}

/// [`Vault::decommission`]'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decommissioned {
    /// Subjects crypto-erased.
    pub subjects_erased: usize,
    /// Templates erased with them.
    pub templates_erased: usize,
    /// The deregistration filing's clock.
    pub deregistration: FilingClock,
}

/// The confirmation [`Vault::decommission`] takes for the vault `vault_id`.
pub fn decommission_confirmation(vault_id: &str) -> String {
    format!("DECOMMISSION {vault_id}")
}

impl OperationContext<'_> {
    /// The device's civil date now.
    pub(super) fn today(&self) -> Result<time::Date> {
        policy::civil_date(self.now, self.settings.utc_offset_minutes)
    }

    /// Refuses enrolment where the deployment's law forbids it (Arts. 3–4, 9, 10, 13, 15).
    pub(super) fn admit_enrolment(&self) -> Result<()> {
        match &self.governance.enrolment {
            Some(refusal) => Err(Error::Refused(refusal.clone())),
            None => Ok(()),
        }
    }

    /// After face data was stored: once the persons stored first reach the filing threshold,
    /// records the moment, starting the initial filing's clock, and raises an alert (Art. 15).
    /// Counted only until then; the record is never undone.
    pub(super) fn count_for_filing(&mut self, entries: &mut Vec<AuditEntry>) -> Result<()> {
        let current = self.pending.governance.as_ref().unwrap_or(self.governance);
        if current.threshold_reached().is_some() {
            return Ok(());
        }
        let persons = store::persons_stored(self.tx)?;
        if persons < self.settings.filing_threshold {
            return Ok(());
        }
        let mut next = current.clone();
        let today = self.today()?;
        let event = FilingEvent {
            kind: FilingKind::Initial,
            started_on: filing::format_date(today),
            persons,
            detail: format!(
                "face data of {persons} persons stored (threshold {})",
                self.settings.filing_threshold
            ),
        };
        next.append(self, FILING, &event)?;
        let deadline = next
            .clocks(today)
            .into_iter()
            .find(|clock| clock.kind == FilingKind::Initial);
        let detail = format!(
            "Art. 15: filing due: the vault stores the face data of {persons} persons, reaching the filing threshold of {}; \
             file with the provincial cyberspace administration by {} (30 working days)",
            self.settings.filing_threshold,
            deadline.and_then(|clock| clock.deadline).unwrap_or_default()
        );
        entries.push(AuditEntry::alert(detail));
        self.pending.governance = Some(next);
        Ok(())
    }
}

impl Vault {
    /// Records a new deployment profile (Arts. 3–4, 10, 13). Admins only. A profile the law
    /// forbids is recorded too, since it is what the device's owner declares; the vault then
    /// enrols and matches no one, and says why. After filing, a change to the processor, the
    /// purpose, the method or the place starts a change-filing clock (Art. 15).
    pub fn set_profile(&self, session: &Session, profile: &DeploymentProfile) -> Result<ProfileRecorded> {
        self.authorised_operation(session, Action::SetProfile, None, |act| {
            deployment::check_profile(profile)?;
            let mut next = act.governance.clone();
            let material = next
                .profile()
                .is_some_and(|previous| previous.record.differs_materially(profile));
            let seq = next.append(act, PROFILE, profile)?;
            let mut entries = Vec::new();
            let change_filing_due = material && next.threshold_reached().is_some() && !next.decommissioned();
            if change_filing_due {
                let event = FilingEvent {
                    kind: FilingKind::Change,
                    started_on: filing::format_date(act.today()?),
                    persons: store::persons_stored(act.tx)?,
                    detail: format!("deployment profile {seq} changes what was filed"),
                };
                next.append(act, FILING, &event)?;
                entries.push(AuditEntry::alert(
                    "Art. 15: change filing due: the deployment profile changed the processor, purpose, method or place after filing",
                ));
            }
            let answer = ProfileRecorded {
                seq,
                matching_refused: next.matching.as_ref().map(ToString::to_string),
                enrolment_refused: next.enrolment.as_ref().map(ToString::to_string),
                change_filing_due,
            };
            entries.insert(0, AuditEntry::new(None, profile_detail(seq, profile, &next)));
            act.pending.governance = Some(next);
            Ok((answer, entries))
        })
    }

    /// The current deployment profile, if one is recorded. Admins and auditors.
    pub fn profile(&self, session: &Session) -> Result<Option<Recorded<DeploymentProfile>>> {
        self.authorised_operation(session, Action::ShowProfile, None, |act| {
            let profile = act.governance.profile().cloned();
            let detail = profile
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| format!("profile {}", p.seq));
            Ok((profile, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Why the law refuses this deployment matching (and so enrolment too), if it does: for
    /// firmware to show at boot. `None` when it may match.
    pub fn deployment_refusal(&self) -> Option<Refusal> {
        self.read_state().governance.matching.clone()
    }

    /// Why the law refuses enrolment now, if it does (Arts. 3–4, 9, 10, 13, 15).
    pub fn enrolment_refusal(&self) -> Option<Refusal> {
        self.read_state().governance.enrolment.clone()
    }

    /// Records an impact assessment (Art. 9). Admins only. It lets enrolment go on when it
    /// assessed the current profile's purpose and method.
    pub fn add_assessment(&self, session: &Session, assessment: &Assessment) -> Result<AssessmentRecorded> {
        self.authorised_operation(session, Action::AddAssessment, None, |act| {
            deployment::check_assessment(assessment)?;
            let mut next = act.governance.clone();
            let seq = next.append(act, ASSESSMENT, assessment)?;
            let covers = next
                .profile()
                .is_some_and(|profile| assessment.covers(&profile.record));
            let answer = AssessmentRecorded {
                seq,
                covers_current_profile: covers,
                enrolment_refused: next.enrolment.as_ref().map(ToString::to_string),
            };
            let detail = format!(
                "assessment {seq} of {}: purpose={:?} method={:?} report_sha256={} covers_current_profile={covers}",
                assessment.date, assessment.purpose, assessment.method, assessment.report_sha256
            );
            act.pending.governance = Some(next);
            Ok((answer, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Records a major security incident (Art. 9): enrolment stops until a new impact assessment
    /// is recorded. Matching goes on. Admins only.
    pub fn record_incident(&self, session: &Session, incident: &Incident) -> Result<()> {
        self.authorised_operation(session, Action::RecordIncident, None, |act| {
            deployment::check_incident(incident)?;
            let mut next = act.governance.clone();
            let seq = next.append(act, INCIDENT, incident)?;
            let detail = format!(
                "incident {seq} of {}: {:?}; enrolment waits for a new impact assessment",
                incident.occurred_on, incident.description
            );
            act.pending.governance = Some(next);
            let alert = AuditEntry::alert(format!("Art. 9: major security incident recorded ({detail})"));
            Ok(((), vec![AuditEntry::new(None, detail), alert]))
        })
    }

    /// Every major security incident recorded, oldest first. Admins and auditors.
    pub fn incidents(&self, session: &Session) -> Result<Vec<Recorded<Incident>>> {
        self.authorised_operation(session, Action::ListAssessments, None, |act| {
            let all = act.governance.incidents.clone();
            let detail = format!("incidents={}", all.len());
            Ok((all, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Every impact assessment recorded, oldest first. Admins and auditors.
    pub fn assessments(&self, session: &Session) -> Result<Vec<Recorded<Assessment>>> {
        self.authorised_operation(session, Action::ListAssessments, None, |act| {
            let all = act.governance.assessments.clone();
            let detail = format!("assessments={}", all.len());
            Ok((all, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Loads the calendar of public holidays and make-up working days that Art. 15's working
    /// days are counted by, replacing the last. Admins only.
    pub fn set_calendar(&self, session: &Session, calendar: &Calendar) -> Result<()> {
        self.authorised_operation(session, Action::SetCalendar, None, |act| {
            let mut next = act.governance.clone();
            let file = calendar.to_file();
            let seq = next.append(act, CALENDAR, &file)?;
            let detail = format!(
                "calendar {seq}: {} holidays, {} make-up working days, through {}, source {:?}",
                file.holidays.len(),
                file.workdays.len(),
                calendar
                    .last_listed()
                    .map(filing::format_date)
                    .unwrap_or_default(),
                file.source
            );
            act.pending.governance = Some(next);
            Ok(((), vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Where the vault stands against Art. 15: persons stored, the threshold, when it was
    /// reached, and every filing's deadline in working days. Admins and auditors.
    pub fn filing_status(&self, session: &Session) -> Result<FilingStatus> {
        self.authorised_operation(session, Action::FilingStatus, None, |act| {
            let status = act.filing_status()?;
            let detail = format!(
                "persons={} threshold={} reached_at={:?} deadline={:?}",
                status.persons, status.threshold, status.reached_at, status.deadline
            );
            Ok((status, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Records that a filing was made (Art. 15), on `filed_on` (today when `None`; not a day to
    /// come) under the authority's `reference`: the clocks of that kind started before it stop,
    /// and the compliance report no longer lists them as due. Refused when no clock of that kind
    /// is running. Admins only.
    pub fn record_filing(
        &self,
        session: &Session,
        filing: FilingKind,
        filed_on: Option<&str>,
        reference: &str,
    ) -> Result<FilingClock> {
        policy::check_text("filing reference", reference)?;
        if reference.trim().is_empty() {
            return Err(invalid(
                "filing reference",
                "give the authority's reference".into(),
            ));
        }
        self.authorised_operation(session, Action::RecordFiling, None, |act| {
            let today = act.today()?;
            let day = match filed_on {
                Some(text) => policy::parse_date_of("filing date", text)?,
                None => today,
            };
            if day > today {
                return Err(invalid("filing date", "is after today".into()));
            }
            let mut next = act.governance.clone();
            let running = next
                .clocks(today)
                .into_iter()
                .any(|clock| clock.kind == filing && clock.made.is_none());
            if !running {
                return Err(invalid(
                    "filing",
                    format!("no {} filing is due: its clock is not running", filing.as_str()),
                ));
            }
            let made = FilingMade {
                filing,
                filed_on: filing::format_date(day),
                reference: reference.to_string(),
            };
            let seq = next.append(act, FILED, &made)?;
            let clock = next
                .clocks(today)
                .into_iter()
                .rfind(|clock| clock.made.as_ref() == Some(&made))
                .ok_or_else(|| invalid("filing", "the filing stopped no clock".into()))?;
            let detail = format!(
                "record {seq}: {} filing made on {} (reference {:?}), deadline {}",
                filing.as_str(),
                made.filed_on,
                made.reference,
                clock.deadline.clone().unwrap_or_default()
            );
            act.pending.governance = Some(next);
            Ok((clock, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Decommissions the vault (Art. 15): every subject is crypto-erased, the deregistration
    /// filing's clock starts, and the vault keeps its audit log and its governance records but
    /// enrols and matches no one again. `confirmation` must read `DECOMMISSION <vault id>`
    /// ([`decommission_confirmation`], the ID as [`Vault::stats`] gives it). Admins only.
    pub fn decommission(&self, session: &Session, confirmation: &str) -> Result<Decommissioned> {
        self.authorised_operation(session, Action::Decommission, None, |act| {
            let expected = decommission_confirmation(&crypto::hex(&act.settings.vault_id));
            if confirmation != expected {
                return Err(invalid(
                    "confirmation",
                    format!("to decommission this vault, confirm with exactly \"{expected}\""),
                ));
            }
            if act.governance.decommissioned() {
                return Err(Error::Refused(Refusal::Decommissioned));
            }
            let mut subjects = Vec::new();
            act.for_each_subject(|subject, _| subjects.push(subject))?;
            let mut templates = 0;
            let mut entries = Vec::with_capacity(subjects.len() + 1);
            for (done, subject) in subjects.iter().enumerate() {
                act.report_progress("decommission", done, subjects.len());
                templates += act.shred_subject(subject, false)?;
                entries.push(AuditEntry::new(Some(*subject), "decommissioned: face data erased"));
            }
            act.report_progress("decommission", subjects.len(), subjects.len());
            let mut next = act.governance.clone();
            let today = act.today()?;
            let event = FilingEvent {
                kind: FilingKind::Deregistration,
                started_on: filing::format_date(today),
                persons: 0,
                detail: format!(
                    "decommissioned: {} subjects and {templates} templates crypto-erased",
                    subjects.len()
                ),
            };
            next.append(act, FILING, &event)?;
            let deregistration = next
                .clocks(today)
                .into_iter()
                .rfind(|clock| clock.kind == FilingKind::Deregistration)
                .ok_or_else(|| invalid("decommission", "the deregistration record is missing".into()))?;
            entries.push(AuditEntry::new(
                None,
                format!(
                    "Art. 15: decommissioned; {} subjects and {templates} templates erased; deregistration due by {}",
                    subjects.len(),
                    deregistration.deadline.clone().unwrap_or_default()
                ),
            ));
            act.pending.governance = Some(next);
            let answer = Decommissioned {
                subjects_erased: subjects.len(),
                templates_erased: templates,
                deregistration,
            };
            Ok((answer, entries))
        })
    }
}

impl OperationContext<'_> {
    /// The filing status as of now.
    pub(super) fn filing_status(&self) -> Result<FilingStatus> {
        let governance = self.governance;
        let today = self.today()?;
        let clocks = governance.clocks(today);
        let initial = clocks.iter().find(|clock| clock.kind == FilingKind::Initial);
        let calendar = governance.calendar.as_ref();
        Ok(FilingStatus {
            persons: store::persons_stored(self.tx)?,
            threshold: self.settings.filing_threshold,
            reached_at: governance.threshold_reached().map(|filing| filing.recorded_at),
            deadline: initial.and_then(|clock| clock.deadline.clone()),
            working_days_left: initial.and_then(|clock| clock.working_days_left),
            calendar_source: calendar.map(|c| c.source().to_string()),
            calendar_through: calendar.and_then(Calendar::last_listed).map(filing::format_date),
            decommissioned: governance.decommissioned(),
            clocks,
        })
    }
}

/// The audit detail of a recorded profile, with the gates it leaves.
fn profile_detail(seq: i64, profile: &DeploymentProfile, governance: &Governance) -> String {
    format!(
        "profile {seq}: place={} purpose={:?} method={:?} matching={} enrolment={}",
        profile.place.as_str(),
        profile.purpose,
        profile.method,
        refusal_code(&governance.matching),
        refusal_code(&governance.enrolment),
    )
}

fn refusal_code(refusal: &Option<Refusal>) -> &'static str {
    refusal.as_ref().map_or("allowed", Refusal::code)
}
