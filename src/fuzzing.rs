//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`) and for the test that replays their
//! corpus (`tests/fuzz_corpus.rs`); feature `fuzzing`, never in a release. Each takes arbitrary
//! bytes and must return: never panic, hang, or allocate more than its input justifies. What
//! each parses is the product's own code, reached the way a hostile file reaches it.

use std::path::Path;

use crate::keys::{ErasureStorage, KeyProvider, MasterKey, RollbackCounter};
use crate::template::{self, RowCount, TemplateInput};
use crate::{Error, Result};

/// The master key of the fuzzed vaults and backups (the corpus's seed vault is made with it).
pub const FUZZ_KEY: [u8; 32] = [0x5a; 32];
/// The recipient secret key the bundle target opens with.
pub const FUZZ_RECIPIENT: [u8; 32] = [0x17; 32];

/// A template file (`.f32`): the first byte picks the dimension (1 to 256, or 512), the second
/// whether the caller names a model, the rest is the file.
pub fn template_file(data: &[u8]) {
    let [dim, named, rest @ ..] = data else {
        return;
    };
    let dim = if *dim == 0 { 512 } else { usize::from(*dim) };
    let mut input = TemplateInput::le_bytes(rest);
    if named % 2 == 1 {
        input = input.from_model("other-model");
    }
    for count in [RowCount::One, RowCount::AtLeastOne] {
        let _ = template::normalise_rows(input, dim, "fuzz-model", count);
    }
}

/// An export bundle, opened with [`FUZZ_RECIPIENT`].
pub fn bundle(data: &[u8]) {
    let secret = crate::RecipientSecretKey::from_bytes(FUZZ_RECIPIENT);
    let _ = crate::open_bundle(&secret, data);
    let expect = crate::BundleExpectations {
        vault_key: Some([0x33; 32]),
        fresh_at: Some((0, 1)),
    };
    let _ = crate::open_bundle_checked(&secret, data, &expect);
}

/// An audit export (JSON lines), checked with a fixed verification key, with and without a head.
pub fn audit_export(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = crate::AuditVerificationKey::from_bytes([0x44; 32]);
    let _ = crate::check_audit_export(text, &key, None);
    let _ = crate::check_audit_export(text, &key, Some(&[0x55; 32]));
}

/// A notice as `notice publish` reads it, then the law's check of it.
pub fn notice_json(data: &[u8]) {
    if let Ok(notice) = serde_json::from_slice::<crate::Notice>(data) {
        let _ = crate::policy::check_notice(&notice);
    }
}

/// A deployment profile, an impact assessment and a holiday calendar as `profile set`, `pia add`
/// and `filing calendar` read them, with the law's checks on each and the working-day arithmetic
/// over the calendar.
pub fn governance_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(profile) = crate::DeploymentProfile::from_json(text) {
        let _ = crate::policy::deployment::matching_refusal(Some(&profile));
        let _ = profile.differs_materially(&profile);
    }
    if let Ok(assessment) = crate::Assessment::from_json(text) {
        let _ = crate::policy::deployment::enrolment_refusal(None, Some(&assessment), false);
    }
    if let Ok(incident) = serde_json::from_str::<crate::Incident>(text) {
        let _ = crate::policy::deployment::check_incident(&incident);
    }
    if let Ok(calendar) = crate::Calendar::from_json(text) {
        let start = calendar.last_listed().unwrap_or(time::Date::MIN);
        for from in [start, time::Date::MIN, time::Date::MAX] {
            if let Some(deadline) =
                calendar.add_working_days(from, crate::policy::filing::FILING_WORKING_DAYS)
            {
                let _ = calendar.working_days_left(from, deadline);
            }
        }
    }
}

/// A backup file, restored into `scratch` (a folder of its own) under [`FUZZ_KEY`]; whether it
/// was restored.
pub fn backup(data: &[u8], scratch: &Path) -> Result<bool> {
    let file = scratch.join("fuzz.fvbackup");
    std::fs::write(&file, data)?;
    let target = scratch.join("restored.db");
    crate::store::remove_database_files(&target);
    let restored = crate::Vault::restore(
        &file,
        &target,
        &FuzzKeys,
        "admin",
        &crate::Password::new("admin password 1"),
        crate::RestoreOptions {
            force: true,
            open: crate::OpenOptions {
                purge_interval: None,
                ..crate::OpenOptions::default()
            },
        },
    );
    Ok(match restored {
        Ok((vault, _)) => vault.close().is_ok(),
        Err(_) => false,
    })
}

/// A database file, opened as a vault under [`FUZZ_KEY`] from `scratch` (a folder of its own):
/// it must give an error or a vault, and a vault it gives must close. Whether it opened.
pub fn vault_file(data: &[u8], scratch: &Path) -> Result<bool> {
    let path = scratch.join("fuzz.db");
    crate::store::remove_database_files(&path);
    std::fs::write(&path, data)?;
    let options = crate::OpenOptions {
        purge_interval: None,
        ..crate::OpenOptions::default()
    };
    Ok(match crate::Vault::open_with(&path, &FuzzKeys, options) {
        Ok(vault) => vault.close().is_ok(),
        Err(_) => false,
    })
}

/// [`FUZZ_KEY`], with a rollback counter that has seen nothing and an empty erasure ledger, in
/// memory: a fuzzed file is not refused for a counter before its contents are read.
struct FuzzKeys;

impl KeyProvider for FuzzKeys {
    fn master_key(&self) -> Result<MasterKey> {
        Ok(MasterKey::from_bytes(FUZZ_KEY))
    }

    fn rollback_counter(&self, _vault_id: &[u8; 16]) -> Result<Box<dyn RollbackCounter>> {
        Ok(Box::new(FuzzCounter))
    }

    fn erasure_storage(&self, _vault_id: &[u8; 16]) -> Result<Box<dyn ErasureStorage>> {
        Ok(Box::new(FuzzErasures(Vec::new())))
    }
}

struct FuzzCounter;

impl RollbackCounter for FuzzCounter {
    fn read(&self) -> Result<Option<u64>> {
        Ok(Some(0))
    }

    fn advance_to(&mut self, _value: u64) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "the fuzzing counter".into()
    }
}

struct FuzzErasures(Vec<u8>);

impl ErasureStorage for FuzzErasures {
    fn read_all(&self) -> Result<Vec<u8>> {
        Ok(self.0.clone())
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let offset = usize::try_from(offset).map_err(|_| Error::InvalidArgument {
            what: "offset",
            reason: "too large".into(),
        })?;
        self.0.truncate(offset);
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn describe(&self) -> String {
        "the fuzzing erasure ledger".into()
    }
}
