//! The law's rules on the data (Articles 5 to 8 of the 2025 Measures) as plain functions over
//! records and a time. The vault's door calls them on every path; because they take plain values,
//! each article is provable by a unit test without a database. `deployment` holds the rules on
//! the deployment itself (Arts. 3–4, 9, 10, 13) and `filing` Art. 15's working-day clocks.

pub mod deployment;
pub mod filing;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::clock::UnixMillis;
use crate::error::Error;
use crate::subject::SubjectId;

/// Under this age (in whole years, on the enrolment day) a guardian must consent (Art. 7).
pub const GUARDIAN_CONSENT_AGE: u8 = 14;
/// Default retention ceiling for adults: one year. The law asks for the shortest time the purpose
/// needs (Art. 8); a deployment sets its own ceiling at `init`.
pub const DEFAULT_MAX_RETENTION_SECS: i64 = 365 * 24 * 3600;
/// Default, stricter retention ceiling for subjects enrolled under 14: 180 days.
pub const DEFAULT_MAX_MINOR_RETENTION_SECS: i64 = 180 * 24 * 3600;
/// The longest retention ceiling a vault may be given: ten years (3,653 days). Art. 8 asks for the
/// shortest time the purpose needs; no terminal's purpose needs a face kept longer, and a longer
/// figure is far more likely a typing slip than a decision.
pub const MAX_RETENTION_CEILING_SECS: i64 = 3653 * 24 * 3600;
/// China Standard Time: the civil date for ages is taken in this offset unless configured.
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 8 * 60;
const MAX_TEXT_LEN: usize = 4096;

/// Why the law (as configured in this vault) refuses an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Enrolment without a recorded, separate processing consent (Art. 6).
    #[error(
        "no separate processing consent was given: name the notice version and how consent was obtained"
    )]
    ConsentRequired,
    /// No notice has been published yet, so no consent can be informed (Art. 5).
    #[error("no notice has been published: publish one before enrolling anyone")]
    NoNotice,
    /// The consent names a notice version this vault never published.
    #[error("notice version {version:?} was never published")]
    UnknownNotice {
        /// The version named.
        version: String,
    },
    /// The consent names an older notice; consent must be informed by the current one.
    #[error("notice version {version:?} is superseded by {current:?}: consent must name the current notice")]
    SupersededNotice {
        /// The version named.
        version: String,
        /// The current version.
        current: String,
    },
    /// A notice is missing an item Art. 5 requires.
    #[error("the notice lacks {missing}, which Art. 5 requires")]
    NoticeIncomplete {
        /// The missing item.
        missing: &'static str,
    },
    /// A child under 14 without a guardian's consent (Art. 7).
    #[error("the subject is under {GUARDIAN_CONSENT_AGE}: a parent's or guardian's consent (who, relationship) is required")]
    GuardianConsentRequired,
    /// The subject's retention period is over (Art. 8).
    #[error("subject {subject}'s retention period has expired")]
    RetentionExpired {
        /// The subject.
        subject: SubjectId,
    },
    /// A network export of a subject with no active, separate transfer consent (Art. 8).
    #[error("subject {subject} has no active separate consent to transfer face data off the device")]
    TransferConsentRequired {
        /// The subject.
        subject: SubjectId,
    },
    /// No deployment profile declares the vault's purpose, place and alternative (Arts. 3-4).
    #[error(
        "Arts. 3-4: no deployment profile declares this vault's one purpose, its place and its alternative method: \
         record one (profile set) before enrolling or matching anyone"
    )]
    NoDeploymentProfile,
    /// The profile places the device inside a private space of a public place (Art. 13).
    #[error(
        "Art. 13: the deployment profile places the device inside a private space of a public place \
         (a hotel room, a public bath, a changing room or a toilet), where no face recognition device may be installed"
    )]
    PrivateSpace,
    /// A public place without the public-safety need Art. 13 requires.
    #[error(
        "Art. 13: a face recognition device in a public place must be needed for public safety, \
         and the deployment profile does not say it is"
    )]
    NotForPublicSafety,
    /// A public place without prominent signs (Art. 13).
    #[error("Art. 13: a face recognition device in a public place needs prominent signs at its capture area, and the deployment profile says none are posted")]
    NoSigns,
    /// No method offered to whoever declines face recognition (Art. 10).
    #[error("Art. 10: face recognition may not be the only method: the deployment profile offers no alternative to whoever declines it")]
    NoAlternativeMethod,
    /// No impact assessment covers the profile's current purpose and method (Art. 9).
    #[error(
        "Art. 9: no personal-information-protection impact assessment covers the deployment's current purpose and method: \
         record one (pia add) before enrolling anyone"
    )]
    AssessmentRequired,
    /// A major security incident was recorded after the newest impact assessment (Art. 9).
    #[error(
        "Art. 9: a major security incident was recorded after the last impact assessment: \
         record a new one (pia add) before enrolling anyone"
    )]
    AssessmentAfterIncident,
    /// The vault was decommissioned (Art. 15): it holds no face data and takes none.
    #[error("Art. 15: this vault was decommissioned: it holds no face data and enrols and matches no one")]
    Decommissioned,
}

impl Refusal {
    /// A stable snake_case identifier.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::ConsentRequired => "consent_required",
            Refusal::NoNotice => "no_notice",
            Refusal::UnknownNotice { .. } => "unknown_notice",
            Refusal::SupersededNotice { .. } => "superseded_notice",
            Refusal::NoticeIncomplete { .. } => "notice_incomplete",
            Refusal::GuardianConsentRequired => "guardian_consent_required",
            Refusal::RetentionExpired { .. } => "retention_expired",
            Refusal::TransferConsentRequired { .. } => "transfer_consent_required",
            Refusal::NoDeploymentProfile => "no_deployment_profile",
            Refusal::PrivateSpace => "private_space",
            Refusal::NotForPublicSafety => "not_for_public_safety",
            Refusal::NoSigns => "no_signs",
            Refusal::NoAlternativeMethod => "no_alternative_method",
            Refusal::AssessmentRequired => "assessment_required",
            Refusal::AssessmentAfterIncident => "assessment_after_incident",
            Refusal::Decommissioned => "decommissioned",
        }
    }
}

/// A notice to data subjects, with every item Art. 5 lists. Versions are published once and
/// never changed; a change is a new version.
///
/// As JSON, every key is text; an unknown or repeated key is refused, and a missing one reads as
/// empty, which [`check_notice`] then refuses by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notice {
    /// The version label consents refer to.
    pub version: String,
    /// The processor's name.
    pub processor_name: String,
    /// How to contact the processor.
    pub processor_contact: String,
    /// Why face data is processed.
    pub purpose: String,
    /// How it is processed.
    pub method: String,
    /// How long it is kept.
    pub retention: String,
    /// Why it is necessary, and its impact on the person.
    pub necessity_and_impact: String,
    /// How a person exercises their rights (withdrawal, erasure, access).
    pub rights: String,
}

/// Refuses a notice that lacks any item of Art. 5 (or is absurdly long).
pub fn check_notice(notice: &Notice) -> Result<(), Refusal> {
    let items: [(&'static str, &str); 8] = [
        ("a version", &notice.version),
        ("the processor's name", &notice.processor_name),
        ("the processor's contact", &notice.processor_contact),
        ("the purpose", &notice.purpose),
        ("the method", &notice.method),
        ("the retention period", &notice.retention),
        ("the necessity and impact", &notice.necessity_and_impact),
        ("how to exercise rights", &notice.rights),
    ];
    for (missing, text) in items {
        if text.trim().is_empty() {
            return Err(Refusal::NoticeIncomplete { missing });
        }
    }
    Ok(())
}

/// A parent or guardian who consents for a child.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guardian {
    /// Who (as the host identifies them).
    pub name: String,
    /// Their relationship to the child.
    pub relationship: String,
}

impl fmt::Debug for Guardian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Guardian([REDACTED])")
    }
}

/// How long a subject may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCeilings {
    /// For adults, in seconds.
    pub adult_secs: i64,
    /// For subjects enrolled under 14, in seconds.
    pub minor_secs: i64,
}

/// Everything the law needs to hear before a new subject is enrolled.
#[derive(Clone, Default)]
pub struct Enrolment {
    /// The notice version the person was informed by (must be the current one).
    pub notice_version: Option<String>,
    /// How consent was obtained (e.g. "signed form 2026-11-24 at desk 3"). Stored encrypted.
    pub consent_method: Option<String>,
    /// The person's birth date; without one the enroller declares an adult. Stored encrypted.
    pub birth_date: Option<Date>,
    /// The consenting parent or guardian, required under 14. Stored encrypted.
    pub guardian: Option<Guardian>,
    /// The retention period asked for, in seconds; capped by the vault's ceiling, which is also
    /// the default.
    pub retention_secs: Option<i64>,
    /// Whether the person (or, for a child, the guardian) also gave the separate consent to
    /// transfer their face data off the device.
    pub transfer_consent: bool,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolment")
            .field("notice_version", &self.notice_version)
            .field("retention_secs", &self.retention_secs)
            .field("transfer_consent", &self.transfer_consent)
            .finish_non_exhaustive()
    }
}

impl Enrolment {
    /// An enrolment with a processing consent given under `notice_version`, obtained as `method`.
    pub fn with_consent(notice_version: impl Into<String>, method: impl Into<String>) -> Self {
        Self {
            notice_version: Some(notice_version.into()),
            consent_method: Some(method.into()),
            ..Self::default()
        }
    }
}

/// What the law's check of an enrolment decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentTerms {
    /// The subject was under 14 on the enrolment day.
    pub minor: bool,
    /// When the subject's face data expires.
    pub expires_at: UnixMillis,
}

/// Art. 5-8 at enrolment: a separate consent naming the current notice, a guardian under 14, and
/// an expiry no later than the vault's ceiling.
pub fn may_enrol(
    enrolment: &Enrolment,
    current_notice: Option<&str>,
    published: impl Fn(&str) -> Result<bool, Error>,
    ceilings: RetentionCeilings,
    utc_offset_minutes: i32,
    now: UnixMillis,
) -> Result<EnrolmentTerms, Error> {
    let (Some(version), Some(method)) = (&enrolment.notice_version, &enrolment.consent_method) else {
        return Err(Error::Refused(Refusal::ConsentRequired));
    };
    if method.trim().is_empty() {
        return Err(Error::Refused(Refusal::ConsentRequired));
    }
    check_text("consent method", method)?;
    check_notice_version(version, current_notice, published)?;
    let minor = match enrolment.birth_date {
        Some(birth) => age_on(birth, civil_date(now, utc_offset_minutes)?)? < GUARDIAN_CONSENT_AGE,
        None => false,
    };
    check_guardian(enrolment.guardian.as_ref())?;
    if minor && enrolment.guardian.is_none() {
        return Err(Error::Refused(Refusal::GuardianConsentRequired));
    }
    let ceiling = if minor {
        ceilings.minor_secs
    } else {
        ceilings.adult_secs
    };
    let period = match enrolment.retention_secs {
        Some(secs) if secs <= 0 || secs > MAX_RETENTION_CEILING_SECS => {
            return Err(Error::InvalidArgument {
                what: "retention",
                reason: format!(
                    "must be a positive period of at most {MAX_RETENTION_CEILING_SECS} seconds (ten years)"
                ),
            })
        }
        // Within the vault's ceiling, the shorter of the two.
        Some(secs) => secs.min(ceiling),
        None => ceiling,
    };
    let expires_at = period
        .checked_mul(1000)
        .and_then(|millis| now.checked_add(millis))
        .ok_or_else(|| Error::InvalidArgument {
            what: "retention",
            reason: "the expiry would fall outside the clock's range".into(),
        })?;
    Ok(EnrolmentTerms { minor, expires_at })
}

/// Art. 5-7 when a subject is told of a new notice and consents again: the consent must name the
/// current notice and say how it was obtained, and a child's must come from a guardian.
pub fn may_renew(
    renewal: &Enrolment,
    current_notice: Option<&str>,
    published: impl Fn(&str) -> Result<bool, Error>,
    minor: bool,
) -> Result<(), Error> {
    let (Some(version), Some(method)) = (&renewal.notice_version, &renewal.consent_method) else {
        return Err(Error::Refused(Refusal::ConsentRequired));
    };
    if method.trim().is_empty() {
        return Err(Error::Refused(Refusal::ConsentRequired));
    }
    check_text("consent method", method)?;
    check_notice_version(version, current_notice, published)?;
    if minor && renewal.guardian.is_none() {
        return Err(Error::Refused(Refusal::GuardianConsentRequired));
    }
    check_guardian(renewal.guardian.as_ref())
}

/// Refuses a consent that names anything but the current notice.
fn check_notice_version(
    version: &str,
    current_notice: Option<&str>,
    published: impl Fn(&str) -> Result<bool, Error>,
) -> Result<(), Error> {
    let Some(current) = current_notice else {
        return Err(Error::Refused(Refusal::NoNotice));
    };
    if version == current {
        return Ok(());
    }
    // A failure to look the version up is that failure, never a refusal.
    Err(Error::Refused(if published(version)? {
        Refusal::SupersededNotice {
            version: version.to_string(),
            current: current.to_string(),
        }
    } else {
        Refusal::UnknownNotice {
            version: version.to_string(),
        }
    }))
}

pub(crate) fn check_guardian(guardian: Option<&Guardian>) -> Result<(), Error> {
    if let Some(guardian) = guardian {
        check_text("guardian name", &guardian.name)?;
        check_text("guardian relationship", &guardian.relationship)?;
        if guardian.name.trim().is_empty() || guardian.relationship.trim().is_empty() {
            return Err(Error::InvalidArgument {
                what: "guardian",
                reason: "give both who the guardian is and their relationship".into(),
            });
        }
    }
    Ok(())
}

/// Art. 7 and 8 when a separate transfer consent is recorded: its text is storable, a guardian
/// given is named with their relationship, and a child's transfer consent is a guardian's.
pub fn may_grant_transfer(
    method: Option<&str>,
    guardian: Option<&Guardian>,
    minor: bool,
) -> Result<(), Error> {
    if let Some(method) = method {
        check_text("consent method", method)?;
    }
    check_guardian(guardian)?;
    if minor && guardian.is_none() {
        return Err(Error::Refused(Refusal::GuardianConsentRequired));
    }
    Ok(())
}

/// Whether a subject's face data may still be used at `now` (Art. 8): it expires at `expires_at`,
/// to the millisecond, purge or no purge.
pub fn is_within_retention(expires_at: UnixMillis, now: UnixMillis) -> bool {
    now < expires_at
}

/// The retention rule of [`is_within_retention`] at one moment, as a value the door hands the
/// gallery: the scan applies it to every row's expiry without knowing the rule or the time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetentionCheck {
    now: UnixMillis,
}

impl RetentionCheck {
    pub(crate) fn at(now: UnixMillis) -> Self {
        Self { now }
    }

    /// Whether face data that expires at `expires_at` may still be used.
    #[inline(always)]
    pub(crate) fn allows(self, expires_at: UnixMillis) -> bool {
        is_within_retention(expires_at, self.now)
    }
}

/// Where an export goes (Art. 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// A backup that stays on this device.
    Local,
    /// Anything that leaves the device.
    Network,
}

impl Destination {
    /// The destination's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Local => "local",
            Destination::Network => "network",
        }
    }
}

impl std::str::FromStr for Destination {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "local" => Ok(Destination::Local),
            "network" => Ok(Destination::Network),
            _ => Err(Error::InvalidArgument {
                what: "destination",
                reason: "expected local or network".into(),
            }),
        }
    }
}

/// The facts about one subject an export decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportFacts {
    /// The subject.
    pub subject: SubjectId,
    /// When its retention ends.
    pub expires_at: UnixMillis,
    /// Enrolled under 14.
    pub minor: bool,
    /// It has an active (unwithdrawn) transfer consent.
    pub transfer_consent: bool,
    /// That transfer consent was given by a guardian.
    pub transfer_by_guardian: bool,
}

/// Art. 8 on export: nothing past its retention leaves anywhere; nothing leaves the device without
/// an active separate transfer consent, a guardian's for a child.
pub fn may_export(facts: &ExportFacts, destination: Destination, now: UnixMillis) -> Result<(), Refusal> {
    if !is_within_retention(facts.expires_at, now) {
        return Err(Refusal::RetentionExpired {
            subject: facts.subject,
        });
    }
    if destination == Destination::Network
        && (!facts.transfer_consent || (facts.minor && !facts.transfer_by_guardian))
    {
        return Err(Refusal::TransferConsentRequired {
            subject: facts.subject,
        });
    }
    Ok(())
}

/// Whole years from `birth` to `today`; a birth date in the future or over 150 years ago is refused.
pub fn age_on(birth: Date, today: Date) -> Result<u8, Error> {
    let invalid = |reason: &str| Error::InvalidArgument {
        what: "birth date",
        reason: reason.into(),
    };
    if birth > today {
        return Err(invalid("is in the future"));
    }
    let mut years = today.year() - birth.year();
    if (today.month() as u8, today.day()) < (birth.month() as u8, birth.day()) {
        years -= 1;
    }
    u8::try_from(years)
        .ok()
        .filter(|y| *y <= 150)
        .ok_or_else(|| invalid("is more than 150 years ago"))
}

/// The civil date at `now` in the given UTC offset.
pub fn civil_date(now: UnixMillis, utc_offset_minutes: i32) -> Result<Date, Error> {
    let offset = UtcOffset::from_whole_seconds(utc_offset_minutes.saturating_mul(60)).map_err(|_| {
        Error::InvalidArgument {
            what: "UTC offset",
            reason: "must be within ±25 hours".into(),
        }
    })?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000).map_err(|_| {
        Error::InvalidArgument {
            what: "time",
            reason: "out of range".into(),
        }
    })?;
    Ok(at.to_offset(offset).date())
}

/// Parses `json` as a `T`; what is not one is refused as `what` ("not a `noun`: …").
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    noun: &str,
    json: &str,
) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| Error::InvalidArgument {
        what,
        reason: format!("not {noun}: {e}"),
    })
}

/// Parses a `YYYY-MM-DD` birth date.
pub fn parse_date(text: &str) -> Result<Date, Error> {
    parse_date_of("birth date", text)
}

/// Parses a `YYYY-MM-DD` date, naming it `what` if it is not one.
pub(crate) fn parse_date_of(what: &'static str, text: &str) -> Result<Date, Error> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).map_err(|_| Error::InvalidArgument {
        what,
        reason: "expected YYYY-MM-DD".into(),
    })
}

/// Refuses text that is too long, or holds control characters or Unicode's bidirectional
/// formatting characters: it is stored and shown to people, and an override (U+202E, say) can make
/// a notice or a consent read as something other than what it says.
pub(crate) fn check_text(what: &'static str, text: &str) -> Result<(), Error> {
    if text.len() > MAX_TEXT_LEN || text.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(Error::InvalidArgument {
            what,
            reason: format!(
                "must be at most {MAX_TEXT_LEN} bytes without control or bidirectional formatting characters"
            ),
        });
    }
    Ok(())
}

/// Unicode's Bidi_Control characters: marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const DAY: i64 = 86_400_000;
    // 2026-11-24T00:00:00Z
    const NOW: UnixMillis = 1_795_478_400_000;
    const CEILINGS: RetentionCeilings = RetentionCeilings {
        adult_secs: 1000,
        minor_secs: 100,
    };

    fn notice() -> Notice {
        Notice {
            version: "2026-1".into(),
            processor_name: "Acme Gates".into(),
            processor_contact: "privacy@acme.example".into(),
            purpose: "building entry".into(),
            method: "1:N identification at the door".into(),
            retention: "until you leave, at most one year".into(),
            necessity_and_impact: "replaces badges; a leak would expose your face template".into(),
            rights: "withdraw at reception or privacy@acme.example".into(),
        }
    }

    fn enrol(e: &Enrolment) -> Result<EnrolmentTerms, Error> {
        may_enrol(
            e,
            Some("v2"),
            |v| Ok(v == "v1" || v == "v2"),
            CEILINGS,
            DEFAULT_UTC_OFFSET_MINUTES,
            NOW,
        )
    }

    fn refusal(result: Result<EnrolmentTerms, Error>) -> Refusal {
        match result {
            Err(Error::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn art5_a_notice_lacking_any_item_is_refused() {
        assert!(check_notice(&notice()).is_ok());
        let blanks: [fn(&mut Notice); 8] = [
            |n| n.version.clear(),
            |n| n.processor_name.clear(),
            |n| n.processor_contact = "  ".into(),
            |n| n.purpose.clear(),
            |n| n.method.clear(),
            |n| n.retention.clear(),
            |n| n.necessity_and_impact.clear(),
            |n| n.rights.clear(),
        ];
        for blank in blanks {
            let mut n = notice();
            blank(&mut n);
            assert!(matches!(check_notice(&n), Err(Refusal::NoticeIncomplete { .. })));
        }
    }

    #[test]
    fn art6_enrolment_needs_a_consent_naming_the_current_notice() {
        assert_eq!(refusal(enrol(&Enrolment::default())), Refusal::ConsentRequired);
        assert_eq!(
            refusal(enrol(&Enrolment::with_consent("v2", " "))),
            Refusal::ConsentRequired
        );
        assert!(matches!(
            refusal(enrol(&Enrolment::with_consent("v9", "form"))),
            Refusal::UnknownNotice { .. }
        ));
        assert!(matches!(
            refusal(enrol(&Enrolment::with_consent("v1", "form"))),
            Refusal::SupersededNotice { .. }
        ));
        let none = may_enrol(
            &Enrolment::with_consent("v1", "form"),
            None,
            |_| Ok(false),
            CEILINGS,
            0,
            NOW,
        );
        assert!(matches!(none, Err(Error::Refused(Refusal::NoNotice))));
        let terms = enrol(&Enrolment::with_consent("v2", "signed form")).unwrap();
        assert_eq!(
            terms,
            EnrolmentTerms {
                minor: false,
                expires_at: NOW + 1000 * 1000
            }
        );
    }

    /// Regression (review item 1): a failure to look a notice version up was read as "never
    /// published", turning a storage error into a legal refusal (exit 3, audited as denied).
    #[test]
    fn a_failed_notice_lookup_stays_a_failure_and_is_not_a_refusal() {
        let failing = |_: &str| -> Result<bool, Error> {
            Err(Error::Storage(crate::error::StorageError::Io {
                detail: "disk I/O error".into(),
            }))
        };
        let enrolled = may_enrol(
            &Enrolment::with_consent("v1", "form"),
            Some("v2"),
            failing,
            CEILINGS,
            0,
            NOW,
        );
        assert!(matches!(enrolled, Err(Error::Storage(_))), "{enrolled:?}");
        let renewed = may_renew(&Enrolment::with_consent("v1", "form"), Some("v2"), failing, false);
        assert!(matches!(renewed, Err(Error::Storage(_))), "{renewed:?}");
    }

    /// Review item 7: the rule that a child's transfer consent is a guardian's lived inline in
    /// the vault; it is a policy function now, like every other rule.
    #[test]
    fn art7_a_childs_transfer_consent_is_recorded_only_from_a_guardian() {
        let guardian = Guardian {
            name: "Wang Fang".into(),
            relationship: "mother".into(),
        };
        assert!(may_grant_transfer(Some("signed"), None, false).is_ok());
        assert!(matches!(
            may_grant_transfer(Some("signed"), None, true),
            Err(Error::Refused(Refusal::GuardianConsentRequired))
        ));
        assert!(may_grant_transfer(None, Some(&guardian), true).is_ok());
        let blank = Guardian {
            name: " ".into(),
            relationship: "mother".into(),
        };
        assert!(matches!(
            may_grant_transfer(None, Some(&blank), true),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(may_grant_transfer(Some("a\u{202E}b"), Some(&guardian), true).is_err());
    }

    #[test]
    fn art8_retention_is_bounded_at_ten_years_and_never_overflows() {
        let long = |secs| Enrolment {
            retention_secs: Some(secs),
            ..Enrolment::with_consent("v2", "form")
        };
        let ceilings = RetentionCeilings {
            adult_secs: MAX_RETENTION_CEILING_SECS,
            minor_secs: 100,
        };
        let enrol_long = |secs| may_enrol(&long(secs), Some("v2"), |_| Ok(true), ceilings, 0, NOW);
        assert_eq!(
            enrol_long(MAX_RETENTION_CEILING_SECS).unwrap().expires_at,
            NOW + MAX_RETENTION_CEILING_SECS * 1000
        );
        for secs in [MAX_RETENTION_CEILING_SECS + 1, i64::MAX, 0, -5] {
            assert!(
                matches!(enrol_long(secs), Err(Error::InvalidArgument { .. })),
                "{secs}"
            );
        }
        let late = may_enrol(&long(1000), Some("v2"), |_| Ok(true), CEILINGS, 0, i64::MAX - 10);
        assert!(matches!(late, Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn art7_under_14_on_the_enrolment_day_needs_a_guardian() {
        // In China Standard Time it is already 2026-11-24 at 00:00Z (08:00 local).
        let child = |birth| Enrolment {
            birth_date: Some(birth),
            ..Enrolment::with_consent("v2", "form")
        };
        assert_eq!(
            refusal(enrol(&child(date!(2012 - 11 - 25)))),
            Refusal::GuardianConsentRequired
        );
        assert!(!enrol(&child(date!(2012 - 11 - 24))).unwrap().minor, "14 today");
        let mut with_guardian = child(date!(2020 - 1 - 1));
        with_guardian.guardian = Some(Guardian {
            name: "Wang Fang".into(),
            relationship: "mother".into(),
        });
        let terms = enrol(&with_guardian).unwrap();
        assert!(terms.minor);
        assert_eq!(
            terms.expires_at,
            NOW + 100 * 1000,
            "a minor gets the minor ceiling"
        );
        assert!(enrol(&child(date!(2030 - 1 - 1))).is_err(), "born in the future");
    }

    #[test]
    fn art8_retention_is_capped_and_ends_to_the_millisecond() {
        let mut e = Enrolment::with_consent("v2", "form");
        e.retention_secs = Some(5);
        let terms = enrol(&e).unwrap();
        assert_eq!(terms.expires_at, NOW + 5000);
        assert!(is_within_retention(terms.expires_at, NOW + 4999));
        assert!(!is_within_retention(terms.expires_at, NOW + 5000));
        e.retention_secs = Some(1_000_000);
        assert_eq!(
            enrol(&e).unwrap().expires_at,
            NOW + 1000 * 1000,
            "capped by the ceiling"
        );
        e.retention_secs = Some(0);
        assert!(matches!(
            enrol(&e),
            Err(Error::InvalidArgument {
                what: "retention",
                ..
            })
        ));
    }

    #[test]
    fn art8_network_export_needs_an_active_transfer_consent() {
        let subject = SubjectId::from_bytes(&[1; 16]).unwrap();
        let facts = ExportFacts {
            subject,
            expires_at: NOW + DAY,
            minor: false,
            transfer_consent: false,
            transfer_by_guardian: false,
        };
        assert!(may_export(&facts, Destination::Local, NOW).is_ok());
        assert_eq!(
            may_export(&facts, Destination::Network, NOW),
            Err(Refusal::TransferConsentRequired { subject })
        );
        let consented = ExportFacts {
            transfer_consent: true,
            ..facts
        };
        assert!(may_export(&consented, Destination::Network, NOW).is_ok());
        let expired = ExportFacts {
            expires_at: NOW,
            ..consented
        };
        assert_eq!(
            may_export(&expired, Destination::Network, NOW),
            Err(Refusal::RetentionExpired { subject })
        );
        assert_eq!(
            may_export(&expired, Destination::Local, NOW),
            Err(Refusal::RetentionExpired { subject })
        );
    }

    #[test]
    fn art7_a_childs_transfer_consent_must_be_the_guardians() {
        let subject = SubjectId::from_bytes(&[2; 16]).unwrap();
        let child = ExportFacts {
            subject,
            expires_at: NOW + DAY,
            minor: true,
            transfer_consent: true,
            transfer_by_guardian: false,
        };
        assert!(may_export(&child, Destination::Network, NOW).is_err());
        assert!(may_export(
            &ExportFacts {
                transfer_by_guardian: true,
                ..child
            },
            Destination::Network,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn ages_count_whole_years() {
        assert_eq!(age_on(date!(2012 - 02 - 29), date!(2026 - 02 - 28)).unwrap(), 13);
        assert_eq!(age_on(date!(2012 - 02 - 29), date!(2026 - 03 - 01)).unwrap(), 14);
        assert_eq!(civil_date(NOW - 1, 0).unwrap(), date!(2026 - 11 - 23));
        assert_eq!(civil_date(NOW - 1, 480).unwrap(), date!(2026 - 11 - 24));
        assert!(parse_date("2026-13-01").is_err());
        assert_eq!(parse_date("2012-11-25").unwrap(), date!(2012 - 11 - 25));
    }
}
