//! The law on the deployment rather than on the data (Arts. 3–4, 9, 10 and 13): the profile a
//! vault declares, the impact assessment that must cover it, and the checks the vault runs on them
//! before it enrols or matches anyone. Plain values and functions, like the rest of `policy`, so
//! that each article is provable without a database.

use serde::{Deserialize, Serialize};
use time::Date;

use super::{check_text, from_json, parse_date_of, Refusal};
use crate::error::Error;

/// Where the terminal is installed (Art. 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// A place open to the public: a station, a street, a shop floor, a hotel lobby.
    Public,
    /// A place that is not public: an office, a residential building's entrance, a factory.
    NonPublic,
    /// A private space inside a public place: a hotel room, a public bath, a changing room or a
    /// toilet. Art. 13 forbids installing a device there.
    PrivateSpace,
}

impl Place {
    /// The name in the profile's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Public => "public",
            Place::NonPublic => "non_public",
            Place::PrivateSpace => "private_space",
        }
    }
}

/// What a deployment declares about itself: who processes, for what one purpose, where, and what
/// a person who declines face recognition gets instead. Given at `init --profile` and changed by
/// an admin (`profile set`); each version is kept.
///
/// As JSON every key is required except `public_safety` and `signs_posted` (false when absent);
/// an unknown key is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentProfile {
    /// The processor's name (Art. 15 (1)).
    pub processor_name: String,
    /// How to reach the processor.
    pub processor_contact: String,
    /// The one specific purpose (Art. 4).
    pub purpose: String,
    /// How face data is processed for it: 1:1 at a door, 1:N at a gate, and so on (Art. 4).
    pub method: String,
    /// Where the terminal is (Art. 13).
    pub place: Place,
    /// Whether the device is needed for public safety: the only ground Art. 13 allows in a
    /// public place.
    #[serde(default)]
    pub public_safety: bool,
    /// The area the camera captures, as set out on site (Art. 13).
    pub capture_area: String,
    /// Whether prominent signs tell people they enter the capture area (Art. 13).
    #[serde(default)]
    pub signs_posted: bool,
    /// The method offered to whoever declines face recognition, e.g. "IC card or PIN at the
    /// same gate" (Art. 10). Empty means none.
    pub alternative_method: String,
}

impl DeploymentProfile {
    /// Reads a profile from its JSON, and checks that it is whole ([`check_profile`]).
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let profile: Self = from_json("deployment profile", "a profile", json)?;
        check_profile(&profile)?;
        Ok(profile)
    }

    /// Whether `other` differs in what Art. 15's filing states: the processor, the purpose, the
    /// method or the place. Such a change after filing must itself be filed.
    pub fn differs_materially(&self, other: &DeploymentProfile) -> bool {
        self.processor_name != other.processor_name
            || self.processor_contact != other.processor_contact
            || self.purpose != other.purpose
            || self.method != other.method
            || self.place != other.place
    }
}

/// Refuses a profile that lacks what a deployment must say of itself: the processor, how to
/// reach them, the purpose, the method and the capture area. (What the law then makes of a whole
/// profile is [`deployment_refusal`]'s: a profile may truthfully describe a deployment the
/// law forbids, and the vault records it and refuses to operate.)
pub fn check_profile(profile: &DeploymentProfile) -> Result<(), Error> {
    let items: [(&'static str, &str); 6] = [
        ("processor_name", &profile.processor_name),
        ("processor_contact", &profile.processor_contact),
        ("purpose", &profile.purpose),
        ("method", &profile.method),
        ("capture_area", &profile.capture_area),
        ("alternative_method", &profile.alternative_method),
    ];
    for (what, text) in items {
        check_text("deployment profile", text)?;
        // An alternative may be absent (Art. 10 then refuses to operate); the rest may not.
        if text.trim().is_empty() && what != "alternative_method" {
            return Err(Error::InvalidArgument {
                what: "deployment profile",
                reason: format!("{what} is missing"),
            });
        }
    }
    Ok(())
}

/// Whether the law lets a deployment so described enrol and match anyone (Arts. 10 and 13).
/// `None` when it does; otherwise the first rule it breaks.
pub fn deployment_refusal(profile: &DeploymentProfile) -> Option<Refusal> {
    match profile.place {
        Place::PrivateSpace => return Some(Refusal::PrivateSpace),
        Place::Public if !profile.public_safety => return Some(Refusal::NotForPublicSafety),
        Place::Public if !profile.signs_posted => return Some(Refusal::NoSigns),
        Place::Public | Place::NonPublic => {}
    }
    if profile.alternative_method.trim().is_empty() {
        return Some(Refusal::NoAlternativeMethod);
    }
    None
}

/// A personal-information-protection impact assessment (Art. 9): what it assessed, its four
/// findings, who wrote it, and the SHA-256 of the full report (kept off the device). Each is
/// kept for at least three years: the vault has no call that deletes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assessment {
    /// When it was completed, `YYYY-MM-DD`.
    pub date: String,
    /// The purpose it assessed; it covers a profile with this exact purpose.
    pub purpose: String,
    /// The method it assessed; it covers a profile with this exact method.
    pub method: String,
    /// Art. 9 (1): whether the purpose and method are lawful, legitimate and necessary.
    pub lawful_and_necessary: String,
    /// Art. 9 (2): the impact on people's rights, and whether the measures that reduce it work.
    pub impact_and_mitigation: String,
    /// Art. 9 (3): the risks of leaks, tampering, loss or misuse, and the harm they could do.
    pub risks: String,
    /// Art. 9 (4): whether the protection measures are lawful, effective and proportionate.
    pub protection_measures: String,
    /// Who wrote it.
    pub author: String,
    /// The SHA-256 of the full report, 64 hex digits.
    pub report_sha256: String,
}

impl Assessment {
    /// Reads an assessment from its JSON, and checks that it is whole ([`check_assessment`]).
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let assessment: Self = from_json("impact assessment", "an assessment", json)?;
        check_assessment(&assessment)?;
        Ok(assessment)
    }

    /// The date it was completed.
    pub fn completed_on(&self) -> Result<Date, Error> {
        parse_date_of("impact assessment date", &self.date)
    }

    /// Whether it assessed this profile's purpose and method.
    pub fn covers(&self, profile: &DeploymentProfile) -> bool {
        self.purpose == profile.purpose && self.method == profile.method
    }
}

/// Refuses an assessment that lacks any item Art. 9 lists, an author, a date or the report's
/// digest.
pub fn check_assessment(assessment: &Assessment) -> Result<(), Error> {
    let items: [(&'static str, &str); 8] = [
        ("purpose", &assessment.purpose),
        ("method", &assessment.method),
        ("lawful_and_necessary", &assessment.lawful_and_necessary),
        ("impact_and_mitigation", &assessment.impact_and_mitigation),
        ("risks", &assessment.risks),
        ("protection_measures", &assessment.protection_measures),
        ("author", &assessment.author),
        ("report_sha256", &assessment.report_sha256),
    ];
    for (what, text) in items {
        check_text("impact assessment", text)?;
        if text.trim().is_empty() {
            return Err(Error::InvalidArgument {
                what: "impact assessment",
                reason: format!("{what} is missing"),
            });
        }
    }
    let digest = &assessment.report_sha256;
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(Error::InvalidArgument {
            what: "impact assessment",
            reason: "report_sha256 must be 64 lowercase hex digits".into(),
        });
    }
    assessment.completed_on().map(drop)
}

/// Whether the law lets this deployment enrol anyone: its profile permits it, and the newest
/// impact assessment covers its purpose and method (Art. 9). `latest_assessment` is the newest
/// assessment recorded; `incident_since` says whether a major security incident was recorded
/// after it, which calls for a new one.
pub fn enrolment_refusal(
    profile: Option<&DeploymentProfile>,
    latest_assessment: Option<&Assessment>,
    incident_since: bool,
) -> Option<Refusal> {
    let Some(profile) = profile else {
        return Some(Refusal::NoDeploymentProfile);
    };
    if let Some(refusal) = deployment_refusal(profile) {
        return Some(refusal);
    }
    match latest_assessment {
        Some(assessment) if assessment.covers(profile) && incident_since => {
            Some(Refusal::AssessmentAfterIncident)
        }
        Some(assessment) if assessment.covers(profile) => None,
        _ => Some(Refusal::AssessmentRequired),
    }
}

/// A major security incident (Art. 9): a leak, tampering, loss or unlawful access to face data,
/// as the processor records it. Enrolment then waits for a new impact assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// When it happened, `YYYY-MM-DD`.
    pub occurred_on: String,
    /// What happened.
    pub description: String,
}

/// Refuses an incident without a description or with a date that is not one.
pub fn check_incident(incident: &Incident) -> Result<(), Error> {
    check_text("incident", &incident.description)?;
    if incident.description.trim().is_empty() {
        return Err(Error::InvalidArgument {
            what: "incident",
            reason: "describe what happened".into(),
        });
    }
    parse_date_of("incident date", &incident.occurred_on).map(drop)
}

/// Whether the law lets this deployment match anyone (verify, identify).
pub fn matching_refusal(profile: Option<&DeploymentProfile>) -> Option<Refusal> {
    match profile {
        None => Some(Refusal::NoDeploymentProfile),
        Some(profile) => deployment_refusal(profile),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn door() -> DeploymentProfile {
        DeploymentProfile {
            processor_name: "Acme Property Ltd".into(),
            processor_contact: "dpo@acme.example".into(),
            purpose: "entry to building 3 for its residents".into(),
            method: "1:1 verification at the lobby gate".into(),
            place: Place::NonPublic,
            public_safety: false,
            capture_area: "1 m in front of the lobby gate".into(),
            signs_posted: true,
            alternative_method: "resident IC card at the same gate".into(),
        }
    }

    pub(crate) fn assessment(profile: &DeploymentProfile) -> Assessment {
        Assessment {
            date: "2026-11-20".into(),
            purpose: profile.purpose.clone(),
            method: profile.method.clone(),
            lawful_and_necessary: "yes".into(),
            impact_and_mitigation: "low".into(),
            risks: "theft of the device".into(),
            protection_measures: "encryption at rest".into(),
            author: "J. Doe".into(),
            report_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn art13_private_spaces_and_public_places_without_signs_or_public_safety_are_refused() {
        let private = DeploymentProfile {
            place: Place::PrivateSpace,
            ..door()
        };
        assert_eq!(deployment_refusal(&private), Some(Refusal::PrivateSpace));
        let public = DeploymentProfile {
            place: Place::Public,
            public_safety: true,
            ..door()
        };
        assert_eq!(deployment_refusal(&public), None);
        let unsigned = DeploymentProfile {
            signs_posted: false,
            ..public.clone()
        };
        assert_eq!(deployment_refusal(&unsigned), Some(Refusal::NoSigns));
        let convenience = DeploymentProfile {
            public_safety: false,
            ..public
        };
        assert_eq!(
            deployment_refusal(&convenience),
            Some(Refusal::NotForPublicSafety)
        );
        // A non-public place needs neither.
        let office = DeploymentProfile {
            signs_posted: false,
            ..door()
        };
        assert_eq!(deployment_refusal(&office), None);
        for refusal in [
            Refusal::PrivateSpace,
            Refusal::NoSigns,
            Refusal::NotForPublicSafety,
        ] {
            assert!(refusal.to_string().starts_with("Art. 13: "), "{refusal}");
        }
    }

    #[test]
    fn art10_no_alternative_method_is_refused() {
        let only_faces = DeploymentProfile {
            alternative_method: " ".into(),
            ..door()
        };
        let refusal = deployment_refusal(&only_faces);
        assert_eq!(refusal, Some(Refusal::NoAlternativeMethod));
        assert!(refusal.unwrap().to_string().starts_with("Art. 10: "));
        assert_eq!(
            matching_refusal(Some(&only_faces)),
            Some(Refusal::NoAlternativeMethod)
        );
    }

    #[test]
    fn art9_enrolment_needs_an_assessment_of_the_current_purpose_and_method() {
        let profile = door();
        assert_eq!(
            enrolment_refusal(None, None, false),
            Some(Refusal::NoDeploymentProfile)
        );
        assert_eq!(
            enrolment_refusal(Some(&profile), None, false),
            Some(Refusal::AssessmentRequired)
        );
        let pia = assessment(&profile);
        assert_eq!(enrolment_refusal(Some(&profile), Some(&pia), false), None);
        // A major security incident since calls for a new one.
        let refused = enrolment_refusal(Some(&profile), Some(&pia), true);
        assert_eq!(refused, Some(Refusal::AssessmentAfterIncident));
        assert!(refused.unwrap().to_string().starts_with("Art. 9: "));
        for changed in [
            DeploymentProfile {
                purpose: "staff attendance".into(),
                ..door()
            },
            DeploymentProfile {
                method: "1:N identification at the gate".into(),
                ..door()
            },
        ] {
            assert_eq!(
                enrolment_refusal(Some(&changed), Some(&pia), false),
                Some(Refusal::AssessmentRequired)
            );
            assert!(Refusal::AssessmentRequired.to_string().starts_with("Art. 9: "));
        }
        // Signs or the alternative may change without a new assessment.
        let resigned = DeploymentProfile {
            alternative_method: "PIN pad".into(),
            ..door()
        };
        assert_eq!(enrolment_refusal(Some(&resigned), Some(&pia), false), None);
        // Matching needs no assessment (Art. 9 binds the processing, which enrolment starts).
        assert_eq!(matching_refusal(Some(&profile)), None);
    }

    #[test]
    fn profiles_and_assessments_must_be_whole() {
        let json = serde_json::to_string(&door()).unwrap();
        assert_eq!(DeploymentProfile::from_json(&json).unwrap(), door());
        let missing = json.replace("\"purpose\":\"entry to building 3 for its residents\",", "");
        assert!(DeploymentProfile::from_json(&missing).is_err());
        let blank = serde_json::to_string(&DeploymentProfile {
            capture_area: "".into(),
            ..door()
        })
        .unwrap();
        let e = DeploymentProfile::from_json(&blank).unwrap_err();
        assert!(e.to_string().contains("capture_area"), "{e}");
        let unknown = json.replace("{", "{\"extra\":1,");
        assert!(DeploymentProfile::from_json(&unknown).is_err());
        let place = json.replace("non_public", "hotel_room");
        assert!(DeploymentProfile::from_json(&place).is_err());

        let pia = assessment(&door());
        let json = serde_json::to_string(&pia).unwrap();
        assert_eq!(Assessment::from_json(&json).unwrap(), pia);
        for broken in [
            Assessment {
                risks: "".into(),
                ..pia.clone()
            },
            Assessment {
                report_sha256: "AB".repeat(32),
                ..pia.clone()
            },
            Assessment {
                report_sha256: "ab".repeat(31),
                ..pia.clone()
            },
            Assessment {
                date: "2026-13-01".into(),
                ..pia.clone()
            },
        ] {
            let json = serde_json::to_string(&broken).unwrap();
            assert!(Assessment::from_json(&json).is_err(), "{json}");
        }
    }

    #[test]
    fn a_material_change_is_one_the_filing_states() {
        let base = door();
        assert!(!base.differs_materially(&DeploymentProfile {
            signs_posted: false,
            capture_area: "2 m".into(),
            ..door()
        }));
        assert!(base.differs_materially(&DeploymentProfile {
            processor_contact: "new@acme.example".into(),
            ..door()
        }));
        assert!(base.differs_materially(&DeploymentProfile {
            place: Place::Public,
            ..door()
        }));
    }
}
