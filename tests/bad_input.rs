//! Bad input through the binary: each malformed template or probe exits 2 with a JSON error that
//! names the problem, writes nothing, and is recorded in the audit as a refusal.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

const DIM: usize = 16;

fn bad_inputs() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = Rng::new(3).gaussian_vec(DIM);
    let mut nan = good.clone();
    nan[5] = f32::NAN;
    let mut inf = good.clone();
    inf[9] = f32::INFINITY;
    let mut truncated = le_bytes(&good);
    truncated.pop();
    vec![
        ("wrong-dim.f32", le_bytes(&good[..DIM - 1]), "wrong_dimension"),
        (
            "too-long.f32",
            le_bytes(&[good.clone(), good.clone()].concat()),
            "wrong_dimension",
        ),
        ("nan.f32", le_bytes(&nan), "not_a_number"),
        ("inf.f32", le_bytes(&inf), "infinite_value"),
        ("zero.f32", le_bytes(&[0.0; DIM]), "zero_vector"),
        ("truncated.f32", truncated, "truncated_template"),
        ("empty.f32", Vec::new(), "empty_template"),
    ]
}

/// The last audit record before the `audit show` that read it.
fn last_audit(cli: &CliVault) -> serde_json::Value {
    cli.audit().last().unwrap().clone()
}

#[test]
fn bad_templates_exit_2_name_the_problem_write_nothing_and_are_audited() {
    let cli = CliVault::init(DIM);
    let good = cli.file("good.f32", &le_bytes(&Rng::new(3).gaussian_vec(DIM)));
    let subject = cli.enrol_file(&good, &[]);
    for (name, bytes, code) in bad_inputs() {
        let file = cli.file(name, &bytes);
        let before = std::fs::read(&cli.db).unwrap();
        let runs: [(&str, &dyn Fn() -> Run); 4] = [
            ("enrol", &|| {
                cli.admin(&[
                    "enroll",
                    "--template",
                    &file,
                    "--notice",
                    NOTICE_VERSION,
                    "--consent-method",
                    CONSENT_METHOD,
                ])
            }),
            ("enrol", &|| {
                cli.admin(&["enroll", "--template", &file, "--subject", &subject])
            }),
            ("verify", &|| {
                cli.operator(&["verify", "--subject", &subject, "--probe", &file])
            }),
            ("identify", &|| cli.operator(&["identify", "--probe", &file])),
        ];
        for (action, run) in runs {
            let message = run().fails(2, code);
            assert!(!message.is_empty());
            let record = last_audit(&cli);
            assert_eq!(record["action"], action, "{name}");
            assert_eq!(record["outcome"], "denied", "{name}");
            assert!(
                record["detail"].as_str().unwrap().starts_with(code),
                "{name}: {record}"
            );
        }
        // Only audit records were added: the templates are as they were.
        let conn = raw_db(&cli.db);
        let templates: i64 = conn
            .query_row("SELECT count(*) FROM templates", [], |r| r.get(0))
            .unwrap();
        let subjects: i64 = conn
            .query_row("SELECT count(*) FROM subjects", [], |r| r.get(0))
            .unwrap();
        assert_eq!((templates, subjects), (1, 1), "{name}");
        assert_ne!(
            std::fs::read(&cli.db).unwrap(),
            before,
            "the refusals were audited"
        );
    }
}

#[test]
fn a_batch_with_one_bad_row_enrols_nothing() {
    let cli = CliVault::init(DIM);
    let mut rng = Rng::new(9);
    let mut rows: Vec<f32> = (0..10 * DIM).map(|_| rng.gaussian()).collect();
    rows[7 * DIM + 2] = f32::NAN;
    let file = cli.file("batch.f32", &le_bytes(&rows));
    let message = cli
        .admin(&[
            "enroll-batch",
            "--templates",
            &file,
            "--notice",
            NOTICE_VERSION,
            "--consent-method",
            CONSENT_METHOD,
        ])
        .fails(2, "not_a_number");
    assert!(message.contains("row 7"), "{message}");
    let mut short = le_bytes(&rows[..DIM * 3]);
    short.truncate(short.len() - 4);
    let file = cli.file("short.f32", &short);
    cli.admin(&[
        "enroll-batch",
        "--templates",
        &file,
        "--notice",
        NOTICE_VERSION,
        "--consent-method",
        CONSENT_METHOD,
    ])
    .fails(2, "truncated_template");
    assert_eq!(cli.stats()["templates"], 0);
    assert_eq!(last_audit(&cli)["outcome"], "allowed"); // the stats call itself
}

#[test]
fn malformed_arguments_exit_2_before_anything_is_opened() {
    let cli = CliVault::init(DIM);
    let probe = cli.file("p.f32", &le_bytes(&Rng::new(1).gaussian_vec(DIM)));
    cli.operator(&["verify", "--subject", "not-hex", "--probe", &probe])
        .fails(2, "invalid_argument");
    cli.operator(&[
        "verify",
        "--subject",
        &"ab".repeat(16),
        "--probe",
        "/nonexistent.f32",
    ])
    .fails(2, "usage");
    cli.operator(&["identify", "--probe", &probe, "--k", "0"])
        .fails(2, "invalid_argument");
    cli.operator(&["frobnicate"]).fails(2, "usage");
    cli.admin(&["user", "add", "x", "--role", "root"])
        .fails(2, "invalid_argument");
    let unknown = "00".repeat(16);
    let message = cli
        .operator(&["verify", "--subject", &unknown, "--probe", &probe])
        .fails(2, "unknown_subject");
    assert!(message.contains(&unknown));
    cli.admin(&["erase", "--subject", &unknown])
        .fails(2, "unknown_subject");
}

#[test]
fn init_refuses_an_existing_vault_and_bad_settings() {
    let cli = CliVault::init(DIM);
    cli.run(None, &["init", "--dim", "16", "--admin", "again"])
        .fails(2, "already_exists");
    let dir = tempfile::tempdir().unwrap();
    let fresh = CliVault {
        db: dir.path().join("v.db"),
        key: dir.path().join("k.key"),
        dir,
    };
    fresh
        .run(None, &["init", "--dim", "0", "--admin", "a"])
        .fails(2, "invalid_argument");
    fresh
        .run(
            None,
            &["init", "--dim", "8", "--admin", "a", "--threshold", "1.5"],
        )
        .fails(2, "invalid_argument");
    fresh
        .run(None, &["init", "--dim", "8", "--admin", "Bad Name"])
        .fails(2, "invalid_argument");
    assert!(!fresh.db.exists(), "a refused init leaves no file behind");
}
