//! Face models (format version 3). A vault takes templates of one model at its creation and of
//! each model an admin adds later, so that a terminal can move to a better model without
//! re-enrolling everyone at once: a subject holds templates of both with the consent it already
//! has (the consent covers face recognition for the notice's purpose, not one model), each
//! model's templates are matched only against probes of that model, in a gallery of its own, and
//! the old model is retired once its holders are re-enrolled.

use std::sync::Arc;

use serde::Serialize;

use super::{
    check_threshold, invalid, shortest_f64, subject_mac_fields, AuditEntry, OperationContext, Vault,
    MAX_MODEL_NAME_LEN,
};
use crate::access::Action;
use crate::clock::UnixMillis;
use crate::crypto::{self, DataKey, PersonalBinding};
use crate::error::{Error, Result};
use crate::gallery::Gallery;
use crate::policy;
use crate::store::{self, ModelRow};
use crate::subject::SubjectId;
use crate::vault::Session;
use crate::wiped::WipedVec;

/// The most models a vault holds, retired ones included: a model change a year for the life of
/// a terminal, with room to spare.
pub const MAX_MODELS: usize = 16;

/// One face model's settings.
#[derive(Clone)]
pub(super) struct ModelSettings {
    pub(super) seq: i64,
    /// Shared with every answer that names it, so that naming costs no allocation.
    pub(super) name: Arc<str>,
    pub(super) dim: usize,
    pub(super) threshold: f32,
    /// `shortest_f64(threshold)`, which decisions compare reported scores with.
    pub(super) threshold_decimal: f64,
    pub(super) added_at: UnixMillis,
    /// Set once its templates are erased: it takes no more templates or probes.
    pub(super) retired_at: Option<UnixMillis>,
}

impl ModelSettings {
    pub(super) fn new(seq: i64, name: &str, dim: usize, threshold: f32, added_at: UnixMillis) -> Self {
        Self {
            seq,
            name: Arc::from(name),
            dim,
            threshold,
            threshold_decimal: shortest_f64(threshold),
            added_at,
            retired_at: None,
        }
    }

    /// The model a stored row describes; `None` when a value is out of range.
    pub(super) fn from_row(row: ModelRow) -> Option<Self> {
        let dim = usize::try_from(row.dim)
            .ok()
            .filter(|dim| (1..=super::MAX_DIM).contains(dim))?;
        let threshold = row.threshold as f32;
        check_name(&row.name).ok()?;
        check_threshold(threshold).ok()?;
        Some(Self {
            retired_at: row.retired_at,
            ..Self::new(row.seq, &row.name, dim, threshold, row.added_at)
        })
    }

    pub(super) fn row(&self) -> ModelRow {
        ModelRow {
            seq: self.seq,
            name: self.name.to_string(),
            dim: self.dim as i64,
            threshold: f64::from(self.threshold),
            added_at: self.added_at,
            retired_at: self.retired_at,
        }
    }

    /// What the settings MAC covers of it (format version 3).
    pub(super) fn mac_fields(&self) -> [Vec<u8>; 6] {
        [
            self.seq.to_le_bytes().to_vec(),
            self.name.as_bytes().to_vec(),
            (self.dim as u64).to_le_bytes().to_vec(),
            self.threshold.to_bits().to_le_bytes().to_vec(),
            self.added_at.to_le_bytes().to_vec(),
            super::consent::optional_time(self.retired_at),
        ]
    }
}

/// The model input that names none is taken to be: the oldest model not retired, so that a
/// firmware that never names a model keeps working with the model it was built for until that
/// model is retired.
pub(super) fn default_model(models: &[ModelSettings]) -> usize {
    models
        .iter()
        .position(|model| model.retired_at.is_none())
        .unwrap_or(0)
}

/// A retired model, for the in-memory state once the retirement commits.
pub(super) struct Retirement {
    pub(super) index: usize,
    pub(super) at: UnixMillis,
    /// Its holders left with no template, with their expiry.
    pub(super) left_bare: Vec<(SubjectId, UnixMillis)>,
    /// The seed of its empty gallery.
    pub(super) seed: u64,
}

/// A model name: 1 to 64 printable ASCII characters, no spaces.
pub(super) fn check_name(name: &str) -> Result<()> {
    let ok =
        !name.is_empty() && name.len() <= MAX_MODEL_NAME_LEN && name.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "model name",
            format!("must be 1 to {MAX_MODEL_NAME_LEN} printable ASCII characters without spaces"),
        ))
    }
}

/// The decrypted templates, one gallery per model.
pub(super) struct Galleries {
    /// In the settings' model order; a retired model's is empty.
    by_model: Vec<Gallery>,
    /// Subjects that hold no template (their only model was retired with force), with their
    /// expiry: in no gallery, but enrolled, and purged when they expire like any other.
    bare: Vec<(SubjectId, UnixMillis)>,
}

impl Galleries {
    pub(super) fn new(by_model: Vec<Gallery>, bare: Vec<(SubjectId, UnixMillis)>) -> Self {
        Self { by_model, bare }
    }

    pub(super) fn model(&self, index: usize) -> &Gallery {
        &self.by_model[index]
    }

    pub(super) fn model_mut(&mut self, index: usize) -> &mut Gallery {
        &mut self.by_model[index]
    }

    pub(super) fn add_model(&mut self, gallery: Gallery) {
        self.by_model.push(gallery);
    }

    /// Starts fetching where each gallery indexes `subject`, for a verify about to look.
    pub(super) fn prefetch_slots(&self, subject: &SubjectId) {
        for gallery in &self.by_model {
            gallery.prefetch_slot(subject);
        }
    }

    /// Whether any gallery holds a template of `subject`.
    pub(super) fn holds(&self, subject: &SubjectId) -> bool {
        self.by_model.iter().any(|gallery| gallery.contains(subject))
    }

    /// Drops every row of `subject`, in every gallery.
    pub(super) fn remove_subject(&mut self, subject: &SubjectId) {
        for gallery in &mut self.by_model {
            gallery.remove_subject(subject);
        }
        self.bare.retain(|(bare, _)| bare != subject);
    }

    /// Empties a retired model's gallery (its rows are zeroed as they go); its holders of no
    /// other model become bare.
    pub(super) fn retire(&mut self, index: usize, left_bare: &[(SubjectId, UnixMillis)], empty: Gallery) {
        self.by_model[index] = empty;
        self.bare.extend_from_slice(left_bare);
    }

    /// A bare subject has a template again.
    pub(super) fn clothe(&mut self, subject: &SubjectId) {
        self.bare.retain(|(bare, _)| bare != subject);
    }

    /// Every enrolled subject with its expiry, in ID order, each once.
    pub(super) fn subjects(&self) -> Vec<(SubjectId, UnixMillis)> {
        let mut all: Vec<(SubjectId, UnixMillis)> = self
            .by_model
            .iter()
            .flat_map(Gallery::subjects)
            .chain(self.bare.iter().copied())
            .collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all.dedup_by_key(|(id, _)| *id);
        all
    }

    pub(super) fn subject_count(&self) -> usize {
        if self
            .by_model
            .iter()
            .filter(|gallery| gallery.template_count() > 0)
            .count()
            <= 1
        {
            let galleries: usize = self.by_model.iter().map(Gallery::subject_count).sum();
            return galleries + self.bare.len();
        }
        self.subjects().len()
    }

    pub(super) fn template_count(&self) -> usize {
        self.by_model.iter().map(Gallery::template_count).sum()
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.by_model.iter().map(Gallery::memory_bytes).sum()
    }

    pub(super) fn model_count(&self) -> usize {
        self.by_model.len()
    }
}

/// A face model as [`Vault::model_status`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Its name, as templates and probes name it.
    pub name: String,
    /// Values per template.
    pub dim: usize,
    /// Its match threshold.
    pub threshold: f64,
    /// When it was added (the vault's creation, for the first).
    pub added_at: UnixMillis,
    /// When it was retired, its templates erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<UnixMillis>,
    /// Templates of it stored.
    pub templates: usize,
    /// Subjects holding at least one of them.
    pub subjects: usize,
}

/// The vault's models and the re-enrolment queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStatus {
    /// Every model, retired ones included, in the order they were added.
    pub models: Vec<ModelInfo>,
    /// The newest model not retired: the one everyone should be enrolled in.
    pub newest: String,
    /// The model input that names none is taken to be: the oldest not retired.
    pub default: String,
    /// The re-enrolment queue: subjects within their retention, and so with an active consent,
    /// who hold no template of the newest model, in ID order.
    pub reenrolment_due: Vec<SubjectId>,
}

/// What [`Vault::retire_model`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetiredModel {
    /// The model.
    pub model: String,
    /// Templates erased.
    pub templates_erased: usize,
    /// Subjects whose data key was replaced: every holder of the model, so that a copy of an
    /// erased template left anywhere no longer opens.
    pub subjects_rekeyed: usize,
    /// Subjects left with no template at all (only with `force`): still enrolled, with their
    /// consent, waiting to be re-enrolled with the newest model. In ID order.
    pub left_without_templates: Vec<SubjectId>,
}

impl Vault {
    /// Registers a new face model: from now on enrolment takes its templates beside the others',
    /// under the consents subjects already have, and lookups that name it match only its
    /// templates, against `threshold`. Admins only.
    pub fn add_model(&self, session: &Session, name: &str, dim: usize, threshold: f32) -> Result<()> {
        self.authorised_operation(session, Action::AddModel, None, |act| {
            check_name(name)?;
            if !(1..=super::MAX_DIM).contains(&dim) {
                return Err(invalid("dimension", format!("must be 1 to {}", super::MAX_DIM)));
            }
            let threshold = check_threshold(threshold)?;
            let models = &act.settings.models;
            if models.iter().any(|model| &*model.name == name) {
                return Err(invalid(
                    "model name",
                    format!("the vault already has (or had) a model named {name:?}; a retired model's name is not reused"),
                ));
            }
            if models.len() >= MAX_MODELS {
                return Err(invalid(
                    "model",
                    format!("the vault already holds its maximum of {MAX_MODELS} models, retired ones included"),
                ));
            }
            let seq = models.last().map_or(1, |model| model.seq + 1);
            let model = ModelSettings::new(seq, name, dim, threshold, act.now);
            let mut updated = act.settings.clone();
            updated.models.push(model.clone());
            updated.write(act.tx, act.keys)?;
            let seed = u64::from_le_bytes(crypto::random_array()?);
            act.pending.new_model = Some((model, seed));
            let detail = format!("model={name} dim={dim} threshold={threshold}");
            Ok(((), vec![AuditEntry::new(None, detail)]))
        })
    }

    /// The vault's models with their counts, and the re-enrolment queue: the subjects with an
    /// active consent who hold no template of the newest model. Admins only.
    pub fn model_status(&self, session: &Session) -> Result<ModelStatus> {
        self.authorised_operation(session, Action::ModelStatus, None, |act| {
            let settings = act.settings;
            let per_model = store::templates_per_model(act.tx)?;
            let newest = settings
                .models
                .iter()
                .rev()
                .find(|model| model.retired_at.is_none())
                .unwrap_or(settings.default_model());
            let mut models = Vec::with_capacity(settings.models.len());
            for model in &settings.models {
                let templates = per_model
                    .iter()
                    .find(|(name, _)| name.as_str() == &*model.name)
                    .map_or(0, |(_, count)| *count);
                models.push(ModelInfo {
                    name: model.name.to_string(),
                    dim: model.dim,
                    threshold: model.threshold_decimal,
                    added_at: model.added_at,
                    retired_at: model.retired_at,
                    templates,
                    subjects: store::subjects_with_model(act.tx, &model.name)?.len(),
                });
            }
            let mut holders = store::subjects_with_model(act.tx, &newest.name)?;
            holders.sort_unstable();
            let mut reenrolment_due = Vec::new();
            // Every subject row is read and its MAC checked: withdrawing consent erases a
            // subject, so an enrolled subject within its retention has an active consent.
            act.for_each_subject(|subject, facts| {
                let live = policy::is_within_retention(facts.expires_at, act.now);
                if live && holders.binary_search(subject.as_bytes()).is_err() {
                    reenrolment_due.push(subject);
                }
            })?;
            reenrolment_due.sort_unstable();
            let detail = format!("newest={} reenrolment_due={}", newest.name, reenrolment_due.len());
            let status = ModelStatus {
                models,
                newest: newest.name.to_string(),
                default: settings.default_model().name.to_string(),
                reenrolment_due,
            };
            Ok((status, vec![AuditEntry::new(None, detail)]))
        })
    }

    /// Retires a model: every template of it is erased, and each holder's data key is replaced
    /// (its other templates, birth date and consent evidence sealed again under the new key), so
    /// that no copy of an erased template left anywhere opens again: a crypto-erasure. The model
    /// then takes no templates or probes. Refused for the last model not retired, and while it
    /// is the only model some subject holds ([`Error::ModelInUse`]) unless `force`, which leaves
    /// those subjects enrolled with no template, listed in the answer, for re-enrolment. Admins
    /// only.
    pub fn retire_model(&self, session: &Session, name: &str, force: bool) -> Result<RetiredModel> {
        self.authorised_operation(session, Action::RetireModel, None, |act| {
            let settings = act.settings;
            let index = settings
                .models
                .iter()
                .position(|model| &*model.name == name)
                .ok_or_else(|| invalid("model", format!("the vault has no model named {name:?}")))?;
            if settings.models[index].retired_at.is_some() {
                return Err(invalid("model", format!("{name:?} is already retired")));
            }
            if settings.models.iter().filter(|model| model.retired_at.is_none()).count() == 1 {
                return Err(invalid(
                    "model",
                    format!("{name:?} is the vault's only model in use; add its successor first"),
                ));
            }
            let holders = store::holders_of_model(act.tx, name)?;
            let sole: Vec<SubjectId> = holders
                .iter()
                .filter(|(_, _, others)| *others == 0)
                .filter_map(|(id, _, _)| SubjectId::from_bytes(id))
                .collect();
            if !sole.is_empty() && !force {
                return Err(Error::ModelInUse {
                    model: name.to_string(),
                    subjects: sole.len(),
                });
            }
            let mut entries = Vec::with_capacity(holders.len() + 1);
            let mut erased = 0;
            let mut left_bare = Vec::with_capacity(sole.len());
            for (done, (id, _, _)) in holders.iter().enumerate() {
                act.report_progress("retire_model", done, holders.len());
                let subject = SubjectId::from_bytes(id).ok_or_else(|| Error::Integrity {
                    table: "templates",
                    record: crypto::hex(id),
                })?;
                let (count, remaining, expires_at) = act.erase_model_templates(&subject, name)?;
                erased += count;
                if remaining == 0 {
                    left_bare.push((subject, expires_at));
                }
                entries.push(AuditEntry::new(
                    Some(subject),
                    format!("model={name} templates_erased={count} templates_left={remaining} data key replaced"),
                ));
            }
            act.report_progress("retire_model", holders.len(), holders.len());
            let mut updated = settings.clone();
            updated.models[index].retired_at = Some(act.now);
            updated.write(act.tx, act.keys)?;
            let seed = u64::from_le_bytes(crypto::random_array()?);
            act.pending.retired_model = Some(Retirement {
                index,
                at: act.now,
                left_bare,
                seed,
            });
            // The old wrapped keys must leave the WAL.
            act.pending.secret_replaced = true;
            let retired = RetiredModel {
                model: name.to_string(),
                templates_erased: erased,
                subjects_rekeyed: holders.len(),
                left_without_templates: sole,
            };
            entries.push(AuditEntry::new(
                None,
                format!(
                    "model={name} retired: templates_erased={erased} subjects_rekeyed={} left_without_templates={} force={force}",
                    holders.len(),
                    retired.left_without_templates.len()
                ),
            ));
            Ok((retired, entries))
        })
    }
}

impl OperationContext<'_> {
    /// Erases `subject`'s templates of `model` and replaces its data key, sealing what remains
    /// under the new one. Returns the templates erased, the templates left, and its expiry.
    fn erase_model_templates(
        &mut self,
        subject: &SubjectId,
        model: &str,
    ) -> Result<(usize, i64, UnixMillis)> {
        let mut row = self.subject_row(subject)?;
        let old_key = self.subject_key(subject)?;
        let new_key = DataKey::random()?;
        let id = *subject.as_bytes();
        let erased = store::delete_templates_of_model(self.tx, &id, model)?;
        for stored in store::templates_of(self.tx, &id)? {
            let damaged = || Error::Integrity {
                table: "templates",
                record: stored.id.to_string(),
            };
            let index = self
                .settings
                .stored_model(&stored.model, stored.dim)
                .ok_or_else(damaged)?;
            let binding = self.binding(subject, stored.id, index);
            let mut values = WipedVec::new(vec![0.0f32; binding.dim]);
            crypto::open_template(&old_key, &binding, &stored.nonce, &stored.ciphertext, &mut values)
                .ok_or_else(damaged)?;
            let sealed = crypto::seal_template(&new_key, &binding, &values)?;
            store::reseal_template(self.tx, stored.id, &sealed.nonce, &sealed.ciphertext)?;
        }
        if let Some(personal) = &row.personal {
            let binding = PersonalBinding {
                vault_id: &self.settings.vault_id,
                subject: &id,
                table: b"subject",
                row: 0,
            };
            let plain =
                crypto::open_personal(&old_key, &binding, personal).ok_or_else(|| Error::Integrity {
                    table: "subjects",
                    record: subject.to_string(),
                })?;
            let sealed = crypto::seal_personal(&new_key, &binding, &plain)?;
            store::set_subject_personal(self.tx, &id, Some(&sealed))?;
        }
        for mut consent in self.consents(subject)? {
            let Some(sealed) = &consent.evidence else {
                continue;
            };
            let binding = PersonalBinding {
                vault_id: &self.settings.vault_id,
                subject: &id,
                table: b"consent",
                row: consent.id,
            };
            let plain =
                crypto::open_personal(&old_key, &binding, sealed).ok_or_else(|| Error::Integrity {
                    table: "consents",
                    record: consent.id.to_string(),
                })?;
            consent.evidence = Some(crypto::seal_personal(&new_key, &binding, &plain)?);
            self.write_consent(&mut consent, false)?;
        }
        row.facts.templates -= erased as i64;
        let wrapped = self.keys.wrap(&self.settings.vault_id, &id, &new_key)?;
        let mac = self
            .keys
            .record_mac("subject", &subject_mac_fields(&id, &row.facts).slices());
        store::update_subject_key(self.tx, &id, Some(&wrapped), &mac)?;
        store::set_subject_templates(self.tx, &id, row.facts.templates, &mac)?;
        Ok((erased, row.facts.templates, row.facts.expires_at))
    }
}
