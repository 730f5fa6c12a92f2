//! A face-model change (issue 15): a second model beside the first, subjects re-enrolled with it
//! under the consent they already have, lookups matched within the probe's model only, and the
//! old model retired, its templates crypto-erased.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::*;
use facevault::{Error, SubjectId, TemplateError, TemplateInput};

const DIM_A: usize = 64;
const DIM_B: usize = 48;
const MODEL_B: &str = "model-b";

fn count(path: &std::path::Path, sql: &str) -> i64 {
    raw_db(path).query_row(sql, [], |row| row.get(0)).unwrap()
}

fn b(values: &[f32]) -> TemplateInput<'_> {
    TemplateInput::values(values).from_model(MODEL_B)
}

#[test]
fn a_model_change_needs_no_new_consent_and_retiring_the_old_model_erases_exactly_its_templates() {
    let tv = TestVault::new(DIM_A);
    let model_a = tv.vault.default_model();
    let mut faces_a = Faces::new(DIM_A, 16, 1);
    let mut faces_b = Faces::new(DIM_B, 16, 2);
    let people_a: Vec<Vec<f32>> = (0..1000).map(|_| faces_a.person()).collect();
    let people_b: Vec<Vec<f32>> = (0..1000).map(|_| faces_b.person()).collect();
    let subjects = tv
        .vault
        .enrol_batch(&tv.admin, &consent(), &people_a.concat())
        .unwrap();

    tv.vault.add_model(&tv.admin, MODEL_B, DIM_B, 0.5).unwrap();
    // A model's name is not reused, and its dimension and threshold are checked.
    assert!(matches!(
        tv.vault.add_model(&tv.admin, MODEL_B, DIM_B, 0.5),
        Err(Error::InvalidArgument {
            what: "model name",
            ..
        })
    ));
    assert!(tv.vault.add_model(&tv.admin, "model-c", 0, 0.5).is_err());
    assert!(tv.vault.add_model(&tv.admin, "model-c", DIM_B, 1.5).is_err());
    assert!(tv.vault.add_model(&tv.operator, "model-c", DIM_B, 0.5).is_err());

    let consents_before = count(&tv.path, "SELECT count(*) FROM consents");
    for (subject, person) in subjects.iter().zip(&people_b).take(600) {
        tv.vault.add_template(&tv.admin, subject, b(person)).unwrap();
    }
    assert_eq!(
        count(&tv.path, "SELECT count(*) FROM consents"),
        consents_before,
        "re-enrolment with the new model asks for no new consent"
    );

    let status = tv.vault.model_status(&tv.admin).unwrap();
    assert_eq!(status.newest, MODEL_B);
    assert_eq!(status.default, model_a);
    let counts: Vec<(&str, usize, usize)> = status
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.templates, m.subjects))
        .collect();
    assert_eq!(counts, [(model_a.as_str(), 1000, 1000), (MODEL_B, 600, 600)]);
    let mut still_due = subjects[600..].to_vec();
    still_due.sort_unstable();
    assert_eq!(status.reenrolment_due, still_due, "the 400 not yet re-enrolled");

    // A B probe matches only B templates: the 600, each found, and never one of the 400.
    let first_600: HashSet<SubjectId> = subjects[..600].iter().copied().collect();
    for i in (0..1000).step_by(37) {
        let probe = faces_b.capture(&people_b[i], 0.3);
        let found = tv.vault.identify(&tv.operator, b(&probe), 5).unwrap();
        assert!(found
            .iter()
            .all(|c| &*c.model == MODEL_B && first_600.contains(&c.subject)));
        if i < 600 {
            assert_eq!(found[0].subject, subjects[i]);
            let verified = tv.vault.verify(&tv.operator, &subjects[i], b(&probe)).unwrap();
            assert!(verified.matched);
            assert_eq!(&*verified.model, MODEL_B);
        } else {
            assert!(matches!(
                tv.vault.verify(&tv.operator, &subjects[i], b(&probe)),
                Err(Error::NoTemplateOfModel { subject, .. }) if subject == subjects[i]
            ));
        }
        // An A probe, untagged, still finds everyone among the A templates.
        let probe = faces_a.capture(&people_a[i], 0.3);
        let found = tv.vault.identify(&tv.operator, &probe, 1).unwrap();
        assert_eq!(
            (found[0].subject, &*found[0].model),
            (subjects[i], model_a.as_str())
        );
    }
    // A probe of the wrong length for its model, and a model the vault does not have.
    assert!(matches!(
        tv.vault.identify(&tv.operator, b(&people_a[0]), 1),
        Err(Error::InvalidTemplate(TemplateError::WrongDimension { .. }))
    ));
    assert!(matches!(
        tv.vault.identify(
            &tv.operator,
            TemplateInput::values(&people_b[0]).from_model("model-z"),
            1
        ),
        Err(Error::InvalidTemplate(TemplateError::WrongModel { .. }))
    ));

    // Retiring A is refused while 400 subjects hold nothing else, and changes nothing.
    assert!(matches!(
        tv.vault.retire_model(&tv.admin, &model_a, false),
        Err(Error::ModelInUse { subjects: 400, .. })
    ));
    assert_eq!(count(&tv.path, "SELECT count(*) FROM templates"), 1600);

    let a_templates: Vec<Vec<u8>> = {
        let conn = raw_db(&tv.path);
        let mut statement = conn
            .prepare("SELECT ciphertext FROM templates WHERE model = ?1")
            .unwrap();
        let rows = statement
            .query_map([&model_a], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows
    };
    assert_eq!(a_templates.len(), 1000);
    let old_keys: Vec<Vec<u8>> = subjects[..600]
        .iter()
        .map(|subject| stored_secrets(&tv.path, subject)[0].clone())
        .collect();

    let retired = tv.vault.retire_model(&tv.admin, &model_a, true).unwrap();
    assert_eq!(retired.templates_erased, 1000);
    assert_eq!(retired.subjects_rekeyed, 1000);
    assert_eq!(retired.left_without_templates, still_due);
    assert_eq!(
        count(&tv.path, "SELECT count(*) FROM templates"),
        600,
        "exactly A's templates went"
    );
    assert_eq!(
        count(
            &tv.path,
            &format!("SELECT count(*) FROM templates WHERE model = '{MODEL_B}'")
        ),
        600
    );
    for (subject, old_key) in subjects[..600].iter().zip(&old_keys) {
        assert_ne!(
            &stored_secrets(&tv.path, subject)[0],
            old_key,
            "every holder's data key is replaced"
        );
    }
    assert_gone_from_files(&tv.path, &windows::<16>(&a_templates), "retired templates");
    assert!(matches!(
        tv.vault.identify(
            &tv.operator,
            TemplateInput::values(&people_a[0]).from_model(&model_a),
            1
        ),
        Err(Error::InvalidTemplate(TemplateError::RetiredModel { .. }))
    ));
    assert!(
        tv.vault.retire_model(&tv.admin, MODEL_B, true).is_err(),
        "the last model in use stays"
    );
    assert!(!audited(&tv.vault, ADMIN, "model_add").is_empty());
    let allowed = audited(&tv.vault, ADMIN, "model_retire")
        .into_iter()
        .filter(|record| record.outcome == facevault::Outcome::Allowed)
        .count();
    assert_eq!(allowed, 1001, "one record per holder and one for the model");

    // Reopened: the B templates open under the new keys, the 400 stay enrolled with none, B is
    // the default model, and a bare subject re-enrolled leaves the queue.
    let tv = tv.reopen();
    assert_eq!(tv.vault.default_model(), MODEL_B);
    let stats = tv.vault.stats(&tv.admin).unwrap();
    assert_eq!((stats.subjects, stats.templates), (1000, 600));
    assert_eq!(stats.models, [MODEL_B]);
    for i in (0..600).step_by(41) {
        let probe = faces_b.capture(&people_b[i], 0.3);
        assert_eq!(
            tv.vault.identify(&tv.operator, &probe, 1).unwrap()[0].subject,
            subjects[i]
        );
    }
    tv.vault
        .add_template(&tv.admin, &subjects[700], &people_b[700])
        .unwrap();
    let status = tv.vault.model_status(&tv.admin).unwrap();
    assert_eq!(status.reenrolment_due.len(), 399);
    assert_eq!(status.models[0].retired_at, Some(START));
    let probe = faces_b.capture(&people_b[700], 0.3);
    assert!(
        tv.vault
            .verify(&tv.operator, &subjects[700], &probe)
            .unwrap()
            .matched
    );

    // A bare subject is purged when it expires like any other.
    tv.clock.advance(11 * 366 * 86_400_000);
    let purged = tv.vault.purge(&tv.admin).unwrap();
    assert_eq!(purged.len(), 1000);
    assert_eq!(count(&tv.path, "SELECT count(*) FROM subjects"), 0);
}

/// Each model has its own threshold; an edit to a model row in the file is caught at open.
#[test]
fn each_model_has_its_threshold_and_an_edited_model_row_is_refused_at_open() {
    let tv = TestVault::new(DIM_A);
    tv.vault.add_model(&tv.admin, MODEL_B, DIM_B, 0.5).unwrap();
    tv.vault
        .set_model_threshold(&tv.admin, Some(MODEL_B), 0.75)
        .unwrap();
    assert_eq!(tv.vault.model_threshold(MODEL_B), Some(0.75));
    assert_eq!(tv.vault.threshold(), 0.4);
    let tv = tv.reopen();
    assert_eq!(tv.vault.model_threshold(MODEL_B), Some(0.75));
    let path = tv.path.clone();
    tv.vault.close().unwrap();
    raw_db(&path)
        .execute("UPDATE models SET threshold = 0.1 WHERE name = ?1", [MODEL_B])
        .unwrap();
    let reopened = facevault::Vault::open(&path, &facevault::FixedKey::new(KEY));
    assert!(matches!(reopened, Err(Error::Integrity { table: "meta", .. })));
}

/// The model commands through the CLI: each answer names its model, and the exit codes are the
/// contract's.
#[test]
fn the_cli_adds_lists_and_retires_models_and_every_answer_names_its_model() {
    let cli = CliVault::init(8);
    let mut faces_a = Faces::new(8, 4, 3);
    let mut faces_b = Faces::new(6, 4, 4);
    let (a1, a2) = (faces_a.person(), faces_a.person());
    let b2 = faces_b.person();
    let s1 = cli.enrol("a1.f32", &a1, &[]);
    let s2 = cli.enrol("a2.f32", &a2, &[]);
    let added = cli.admin(&["model", "add", MODEL_B, "--dim", "6", "--threshold", "0.5"]);
    assert_eq!(added.ok()["model_added"]["dim"], 6);
    cli.admin(&["model", "add", MODEL_B, "--dim", "6", "--threshold", "0.5"])
        .fails(2, "invalid_argument");
    let b2_file = cli.file("b2.f32", &le_bytes(&b2));
    cli.admin(&[
        "enrol",
        "--subject",
        &s2,
        "--template",
        &b2_file,
        "--model",
        MODEL_B,
    ])
    .ok();

    let status = cli.admin(&["model", "status"]);
    let status = status.ok();
    assert_eq!(status["newest"], MODEL_B);
    assert_eq!(status["default"], "test-model");
    assert_eq!(status["reenrolment_due"], serde_json::json!([s1]));
    assert_eq!(status["models"][1]["templates"], 1);

    let probe = cli.file("probe-b.f32", &le_bytes(&faces_b.capture(&b2, 0.2)));
    let found = cli.operator(&["identify", "--probe", &probe, "--model", MODEL_B]);
    let found = found.ok();
    assert_eq!(found["model"], MODEL_B);
    assert_eq!(found["candidates"][0]["subject"], s2.as_str());
    assert_eq!(found["candidates"][0]["model"], MODEL_B);
    cli.operator(&["verify", "--subject", &s1, "--probe", &probe, "--model", MODEL_B])
        .fails(2, "no_template_of_model");
    let probe_a = cli.file("probe-a.f32", &le_bytes(&faces_a.capture(&a1, 0.2)));
    let verified = cli.operator(&["verify", "--subject", &s1, "--probe", &probe_a]);
    assert_eq!(verified.ok()["model"], "test-model");
    cli.operator(&["identify", "--probe", &probe_a, "--model", "model-z"])
        .fails(2, "wrong_model");
    cli.admin(&["set-threshold", "0.6", "--model", MODEL_B]).ok();

    cli.admin(&["model", "retire", "test-model"])
        .fails(3, "model_in_use");
    let retired = cli.admin(&["model", "retire", "test-model", "--force"]);
    let retired = &retired.ok()["model_retired"];
    assert_eq!(retired["templates_erased"], 2);
    assert_eq!(retired["left_without_templates"], serde_json::json!([s1]));
    cli.operator(&[
        "verify",
        "--subject",
        &s1,
        "--probe",
        &probe_a,
        "--model",
        "test-model",
    ])
    .fails(2, "retired_model");
    let stats = cli.stats();
    assert_eq!(
        (stats["model"].as_str(), stats["subjects"].as_u64()),
        (Some(MODEL_B), Some(2))
    );
    assert_eq!(stats["threshold"], 0.6);
    let actions: Vec<String> = cli
        .audit()
        .iter()
        .filter(|r| r["outcome"] == "allowed")
        .map(|r| r["action"].as_str().unwrap().to_string())
        .filter(|a| a.starts_with("model_"))
        .collect();
    assert_eq!(
        actions,
        [
            "model_add",
            "model_status",
            "model_retire",
            "model_retire",
            "model_retire"
        ]
    );
}
