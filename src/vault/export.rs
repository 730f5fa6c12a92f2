//! Export (Art. 8): face data leaves the device only in a bundle sealed to a named recipient, only
//! for subjects within their retention, and — for anything that leaves the device — only for
//! subjects with an active, separate transfer consent (a guardian's for a child).

use std::path::Path;

use base64::Engine;

use crate::wiped::{self, WipedVec};

use super::consent::TRANSFER;
use super::{AuditEntry, OperationContext, Vault};
use crate::access::Action;
use crate::bundle::{
    self, BundleContents, BundleSubject, ConsentEvidence, RecipientPublicKey, BUNDLE_VERSION,
    MAX_BUNDLE_BYTES, MAX_BUNDLE_PLAINTEXT,
};
use crate::crypto;
use crate::error::{Error, Result};
use crate::keys::NewFile;
use crate::policy::{self, Destination, ExportFacts};
use crate::store::{self, ConsentRow, SubjectRow};
use crate::subject::SubjectId;
use crate::vault::Session;

/// What to export, and to whom.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Where the bundle goes: it decides whether transfer consent is needed.
    pub destination: Destination,
    /// The recipient whose key seals the bundle.
    pub recipient: RecipientPublicKey,
    /// The subjects to export; empty means every subject the law allows that holds a template
    /// of the model.
    pub subjects: Vec<SubjectId>,
    /// The face model whose templates go (a bundle holds one model's); `None` for the default
    /// model. A named subject holding none of it is refused ([`Error::NoTemplateOfModel`]).
    pub model: Option<String>,
}

/// A sealed bundle and what went into it.
pub struct ExportedBundle {
    /// The bundle's bytes (see `docs/format.md`).
    pub bytes: Vec<u8>,
    /// Subjects in the bundle.
    pub exported: usize,
    /// Enrolled subjects left out because the law does not allow them to go.
    pub held_back: usize,
}

impl std::fmt::Debug for ExportedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedBundle")
            .field("bytes", &self.bytes.len())
            .field("exported", &self.exported)
            .field("held_back", &self.held_back)
            .finish()
    }
}

impl Vault {
    /// Exports face data in a bundle sealed to `request.recipient`. Naming a subject the law does
    /// not let go refuses the whole export and produces no bytes; naming none exports those that
    /// may go and counts the rest as held back. Expired subjects never go anywhere.
    ///
    /// The audit records that the bundle was made and handed to the caller; a caller that then
    /// fails to deliver it should use [`Vault::export_to_file`] instead, which records the export
    /// only once the bundle is on the disk.
    pub fn export(&self, session: &Session, request: &ExportRequest) -> Result<ExportedBundle> {
        self.authorised_operation(session, Action::Export, None, |act| bundle_of(act, request))
    }

    /// [`Vault::export`] into a new file at `path` (mode 0600), which must not exist; a symbolic
    /// link there, even a dangling one, is refused. The bundle is written and synced to the disk
    /// before the export's audit records commit, so the log never says that face data left when
    /// no bundle was written: if the file cannot be made or written, the attempt is recorded as
    /// failed and no file is left; if the records cannot commit, the file is removed.
    pub fn export_to_file(
        &self,
        session: &Session,
        request: &ExportRequest,
        path: &Path,
    ) -> Result<ExportedFile> {
        let (file, exported) = self.authorised_operation(session, Action::Export, None, |act| {
            let (bundle, entries) = bundle_of(act, request)?;
            let mut file = NewFile::create(path, 0o600)?;
            file.write_synced(&bundle.bytes)?;
            file.place()?;
            let exported = ExportedFile {
                exported: bundle.exported,
                held_back: bundle.held_back,
                bytes: bundle.bytes.len(),
            };
            // Dropped unkept if the audit records fail to commit: the file goes with them.
            Ok(((file, exported), entries))
        })?;
        file.keep();
        Ok(exported)
    }
}

/// What [`Vault::export_to_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFile {
    /// Subjects in the bundle.
    pub exported: usize,
    /// Enrolled subjects left out because the law does not allow them to go.
    pub held_back: usize,
    /// The bundle's size in bytes.
    pub bytes: usize,
}

/// Chooses what the law lets go, seals it, and names the audit records of the export.
fn bundle_of(
    act: &mut OperationContext<'_>,
    request: &ExportRequest,
) -> Result<(ExportedBundle, Vec<AuditEntry>)> {
    {
        let named = !request.subjects.is_empty();
        let model_index = act.settings.model_of(request.model.as_deref())?;
        let model = act.settings.models[model_index].clone();
        let holders = store::subjects_with_model(act.tx, &model.name)?;
        let mut candidates = if named {
            request.subjects.clone()
        } else {
            holders
                .iter()
                .filter_map(|id| SubjectId::from_bytes(id))
                .collect()
        };
        // Each subject once, in the order first named.
        let mut seen = std::collections::HashSet::new();
        candidates.retain(|subject| seen.insert(*subject));
        let mut chosen: Vec<(SubjectId, SubjectRow, Vec<ConsentRow>)> = Vec::new();
        for subject in &candidates {
            let row = act.subject_row(subject)?;
            if holders.binary_search(subject.as_bytes()).is_err() {
                return Err(Error::NoTemplateOfModel {
                    subject: *subject,
                    model: model.name.to_string(),
                });
            }
            let expires_at = row.facts.expires_at;
            let consents = act.consents(subject)?;
            let active_transfers: Vec<&ConsentRow> = consents
                .iter()
                .filter(|c| c.kind == TRANSFER && c.withdrawn_at.is_none())
                .collect();
            let facts = ExportFacts {
                subject: *subject,
                expires_at,
                minor: row.facts.minor,
                transfer_consent: !active_transfers.is_empty(),
                transfer_by_guardian: active_transfers.iter().any(|c| c.by_guardian),
            };
            match policy::may_export(&facts, request.destination, act.now) {
                Ok(()) => chosen.push((*subject, row, consents)),
                Err(refusal) if named => return Err(Error::Refused(refusal)),
                Err(_) => {}
            }
        }
        let held_back = candidates.len() - chosen.len();

        let dim = model.dim;
        let mut subjects = Vec::with_capacity(chosen.len());
        for (done, (subject, row, consents)) in chosen.iter().enumerate() {
            act.report_progress("export", done, chosen.len());
            let key = act.subject_key(subject)?;
            let mut evidence = Vec::with_capacity(consents.len());
            for consent in consents {
                let opened = act.open_evidence(&key, consent)?;
                let (method, guardian) = opened.map_or((None, None), |e| (e.method, e.guardian));
                evidence.push(ConsentEvidence {
                    kind: consent.kind.clone(),
                    notice_version: consent.notice_version.clone(),
                    given_at: consent.given_at,
                    by_guardian: consent.by_guardian,
                    withdrawn_at: consent.withdrawn_at,
                    method,
                    guardian,
                });
            }
            // Read from the store, not the gallery: an opening without one exports too, and what
            // leaves is what the file holds, each template authenticated on the way.
            let mut templates = Vec::new();
            // Templates of the vault's other models: counted against the subject's MACed total,
            // not exported.
            let mut counted = 0usize;
            let mut plain = WipedVec::with_capacity(dim * 4);
            for stored in store::templates_of(act.tx, subject.as_bytes())? {
                let damaged = || Error::Integrity {
                    table: "templates",
                    record: stored.id.to_string(),
                };
                let index = act
                    .settings
                    .stored_model(&stored.model, stored.dim)
                    .ok_or_else(damaged)?;
                if index != model_index {
                    counted += 1;
                    continue;
                }
                let binding = act.binding(subject, stored.id, model_index);
                let bytes =
                    crypto::open_template_in(&key, &binding, &stored.nonce, &stored.ciphertext, &mut plain)
                        .ok_or_else(damaged)?;
                templates.push(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
            if (templates.len() + counted) as i64 != row.facts.templates {
                return Err(Error::Integrity {
                    table: "subjects",
                    record: subject.to_string(),
                });
            }
            subjects.push(BundleSubject {
                subject: subject.to_string(),
                enrolled_at: row.facts.created_at,
                expires_at: row.facts.expires_at,
                minor: row.facts.minor,
                consents: evidence,
                templates,
            });
        }
        act.report_progress("export", chosen.len(), chosen.len());
        let contents = BundleContents {
            format: "facevault-bundle".into(),
            version: BUNDLE_VERSION,
            vault_id: crate::crypto::hex(&act.settings.vault_id),
            created_at: act.now,
            destination: request.destination.as_str().into(),
            model: model.name.to_string(),
            dim,
            subjects,
        };
        // Exactly the plaintext's size, so it never reallocates and leaves copies behind.
        let plain =
            wiped::json(&contents, MAX_BUNDLE_PLAINTEXT).map_err(|too_large| Error::InvalidArgument {
                what: "export",
                reason: format!(
                    "the bundle would hold {} bytes, more than the {MAX_BUNDLE_BYTES} a bundle may; \
                         export fewer subjects at a time",
                    too_large.0
                ),
            })?;
        let bytes = bundle::seal(&request.recipient, &plain, act.keys, act.now)?;

        let destination = request.destination.as_str();
        let mut entries: Vec<AuditEntry> = chosen
            .iter()
            .map(|(subject, _, _)| AuditEntry::new(Some(*subject), format!("destination={destination}")))
            .collect();
        let summary = format!(
            "destination={destination} exported={} held_back={held_back}",
            chosen.len()
        );
        entries.push(AuditEntry::new(None, summary));
        let exported = ExportedBundle {
            bytes,
            exported: chosen.len(),
            held_back,
        };
        Ok((exported, entries))
    }
}
