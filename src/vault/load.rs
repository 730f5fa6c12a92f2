//! Opening's heavy half: every subject and template read from the database and decrypted into
//! fresh galleries, one per face model.
//!
//! Each pass over a table runs on two threads. This one steps SQLite, checks what needs only the
//! row, and keeps the indexes; a helper thread does the cryptography (MACs, key unwrapping,
//! template decryption) and builds the rows and their codes. Rows cross in batches, in table
//! order, so the helper sees them in the same order this thread did, and the gallery comes out
//! exactly as a single thread would build it. The first damaged record in table order is the one
//! named, whichever thread finds it: a record the helper rejects was handed over before anything
//! this thread rejects.

use crate::crypto::{self, DataKey, TemplateBinding, VaultKeys};
use crate::error::{Error, Result};
use crate::gallery::{pages, Gallery, SubjectIndex};
use crate::store::{self, Store, SubjectKeyRow, TemplateRow};
use crate::subject::SubjectId;
use crate::wiped::WipedVec;

use super::models::Galleries;
use super::pipeline::{pipelined, Batch, PairedBytes};
use super::{subject_mac_fields, Settings};

/// Rows per hand-over: enough to make a channel message rare, few enough (about 130 KB of
/// templates at d=512) to stay in the second-level cache between the threads.
const BATCH_ROWS: usize = 64;
/// Templates (and subjects) the gallery has room for beyond those loaded: 8 MiB of rows at d=512.
/// Past it, the next enrolment grows the gallery, copying it while lookups wait.
const GROWTH_ROOM: usize = 4096;

/// A subject while the gallery loads: its unwrapped key, and its templates counted against the
/// MACed count.
struct LoadingSubject {
    id: SubjectId,
    key: DataKey,
    expected: i64,
    seen: i64,
}

/// Decrypts every template into a fresh gallery of its model: first every subject row (its MAC
/// checked, its data key unwrapped), then every template, each in one sequential pass over its
/// table. A template without its subject or of a model the settings do not list (or list as
/// retired), a subject with a count that differs from its rows, and any record that fails
/// authentication, is named as damage.
pub(super) fn galleries(store: &Store, settings: &Settings, keys: &VaultKeys) -> Result<Galleries> {
    let mut by_model = Vec::with_capacity(settings.models.len());
    for model in &settings.models {
        let seed = u64::from_le_bytes(crypto::random_array()?);
        by_model.push(Gallery::new(model.dim, settings.scan, seed));
    }
    // Sized once, so that loading never doubles a buffer, with room for GROWTH_ROOM more: the
    // enrolments of a working day then publish without copying the gallery under its write lock.
    let (subject_count, template_count) = store::counts(store.conn())?;
    let in_use: Vec<usize> = (0..settings.models.len())
        .filter(|&index| settings.models[index].retired_at.is_none())
        .collect();
    // Per model, the templates to load, where known.
    let mut to_load = vec![None; by_model.len()];
    if let [only] = in_use[..] {
        to_load[only] = Some(template_count);
        by_model[only].reserve_subjects(subject_count + GROWTH_ROOM);
    } else {
        // Counting per model reads the model index, not the templates.
        for (name, count) in store::templates_per_model(store.conn())? {
            if let Some(index) = settings.models.iter().position(|model| *model.name == name) {
                to_load[index] = Some(count);
                by_model[index].reserve_subjects(count + GROWTH_ROOM);
            }
        }
    }
    for (gallery, rows) in by_model.iter_mut().zip(&to_load) {
        if let Some(rows) = rows {
            gallery.reserve(rows + GROWTH_ROOM);
        }
    }
    let fresh_memory: Vec<pages::Span> = by_model
        .iter()
        .zip(&to_load)
        .filter_map(|(gallery, rows)| Some(gallery.memory_to_load((*rows)?)))
        .flatten()
        .collect();
    // The subjects in table order, found by ID through the gallery's own kind of index (one
    // cache miss a lookup, on huge pages): at a million subjects a general hash map's two
    // misses and 4 KiB pages cost more than decrypting the templates.
    let mut loading: Vec<LoadingSubject> = Vec::with_capacity(subject_count);
    pages::advise_huge(loading.spare_capacity_mut());
    let mut position = SubjectIndex::default();
    position.reserve(subject_count);
    // While the two loading threads work, a third faults in the pages the templates will fill,
    // ahead of the thread writing them (see `pages`).
    pages::populating_while(&fresh_memory, || {
        read_subjects(store, settings, keys, subject_count, &mut position, &mut loading).and_then(|()| {
            read_templates(
                store,
                settings,
                template_count,
                &position,
                &mut loading,
                &mut by_model,
            )
        })
    })?;
    let mut miscounted: Vec<&SubjectId> = loading
        .iter()
        .filter(|loaded| loaded.seen != loaded.expected)
        .map(|loaded| &loaded.id)
        .collect();
    miscounted.sort_unstable();
    if let Some(subject) = miscounted.first() {
        return Err(Error::Integrity {
            table: "subjects",
            record: subject.to_string(),
        });
    }
    // A subject may hold no template only once its only model was retired with force.
    let bare = loading
        .iter()
        .filter(|loaded| loaded.expected == 0)
        .filter_map(|loaded| Some((loaded.id, position.get(&loaded.id)?.expires_at)))
        .collect();
    Ok(Galleries::new(by_model, bare))
}

/// Indexes each subject by its place in `loading` here; checks its MAC and unwraps its key
/// into `loading` on the helper.
fn read_subjects(
    store: &Store,
    settings: &Settings,
    keys: &VaultKeys,
    expected_subjects: usize,
    position: &mut SubjectIndex,
    loading: &mut Vec<LoadingSubject>,
) -> Result<()> {
    let damaged = |id: &[u8]| Error::Integrity {
        table: "subjects",
        record: SubjectId::from_bytes(id).map_or_else(|| "?".into(), |id| id.to_string()),
    };
    let unwrapper = keys.unwrapper();
    let check_and_unwrap = |batch: &mut Vec<(SubjectId, SubjectKeyRow)>| {
        for (subject, row) in batch.iter() {
            let fields = subject_mac_fields(subject.as_bytes(), &row.facts);
            if !keys.record_mac_matches("subject", &fields.slices(), &row.mac) {
                return Err(damaged(&row.id));
            }
            let key = row
                .wrapped_key
                .as_deref()
                .and_then(|wrapped| unwrapper.unwrap(&settings.vault_id, subject.as_bytes(), wrapped))
                .ok_or_else(|| damaged(&row.id))?;
            loading.push(LoadingSubject {
                id: *subject,
                key,
                expected: row.facts.templates,
                seen: 0,
            });
        }
        Ok(())
    };
    pipelined(
        expected_subjects,
        BATCH_ROWS,
        |belt| {
            let mut batch = Vec::with_capacity(BATCH_ROWS);
            let mut next = 0;
            store::for_each_subject(store.conn(), |row| {
                let subject = SubjectId::from_bytes(&row.id).ok_or_else(|| damaged(&row.id))?;
                if position.contains(&subject) || !position.add_row(subject, row.facts.expires_at, next) {
                    return Err(damaged(&row.id));
                }
                next += 1;
                batch.push((subject, row));
                belt.hand_over_when_full(&mut batch)
            })?;
            belt.hand_over(&mut batch)
        },
        check_and_unwrap,
    )
}

/// Templates waiting for the helper: who each belongs to, and its nonce and ciphertext.
#[derive(Default)]
struct SealedTemplates {
    items: Vec<SealedTemplate>,
    /// Each item's nonce and ciphertext.
    sealed: PairedBytes,
}

struct SealedTemplate {
    id: i64,
    /// Its model's index in the settings.
    model: usize,
    /// Its subject's place in `loading`.
    owner: usize,
}

impl Batch for SealedTemplates {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn clear(&mut self) {
        self.items.clear();
        self.sealed.clear();
    }
}

/// Records each template's row here (its subject, found by ID, and expiry); decrypts it into the
/// gallery, rotated and coded, on the helper.
fn read_templates(
    store: &Store,
    settings: &Settings,
    expected_templates: usize,
    position: &SubjectIndex,
    loading: &mut [LoadingSubject],
    galleries: &mut [Gallery],
) -> Result<()> {
    let damaged = |id: i64| Error::Integrity {
        table: "templates",
        record: id.to_string(),
    };
    let (mut rows, mut ledgers): (Vec<_>, Vec<_>) =
        galleries.iter_mut().map(Gallery::split_for_loading).unzip();
    // Decrypted from the batch into one scratch buffer, and from there into the gallery.
    let mut scratch = WipedVec::default();
    let decrypt = |batch: &mut SealedTemplates| {
        for (item, (nonce, ciphertext)) in batch.items.iter().zip(batch.sealed.iter()) {
            let owner = loading.get_mut(item.owner).ok_or_else(|| damaged(item.id))?;
            owner.seen += 1;
            let model = &settings.models[item.model];
            let binding = TemplateBinding {
                vault_id: &settings.vault_id,
                subject: owner.id.as_bytes(),
                template_id: item.id,
                model: &model.name,
                dim: model.dim,
            };
            let plain = crypto::open_template_in(&owner.key, &binding, nonce, ciphertext, &mut scratch)
                .ok_or_else(|| damaged(item.id))?;
            if !rows[item.model].push_le_bytes(plain) {
                return Err(damaged(item.id));
            }
        }
        Ok(())
    };
    pipelined(
        expected_templates,
        BATCH_ROWS,
        |belt| {
            let mut batch = SealedTemplates::default();
            store::for_each_template(store.conn(), |row: TemplateRow<'_>| {
                let subject = SubjectId::from_bytes(row.subject).ok_or_else(|| damaged(row.id))?;
                let model = settings
                    .stored_model(row.model, row.dim)
                    .ok_or_else(|| damaged(row.id))?;
                // A template whose subject row is gone is damage: a vault never makes one.
                let found = position.get(&subject).ok_or_else(|| damaged(row.id))?;
                let owner = found.iter().next().ok_or_else(|| damaged(row.id))?;
                if !ledgers[model].record(subject, found.expires_at, row.id) {
                    return Err(damaged(row.id));
                }
                batch.items.push(SealedTemplate {
                    id: row.id,
                    model,
                    owner,
                });
                batch.sealed.push(row.nonce, row.ciphertext);
                belt.hand_over_when_full(&mut batch)
            })?;
            belt.hand_over(&mut batch)
        },
        decrypt,
    )
}
