//! The 2025 Measures, article by article: each test is named after the duty it proves, and most
//! drive the built binary as a device test harness would.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use base64::Engine;
use common::*;
use facevault::{Destination, Enrolment, Error, ExportRequest, Guardian, RecipientSecretKey, Refusal};

const DIM: usize = 32;

fn today() -> time::Date {
    time::OffsetDateTime::now_utc()
        .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap())
        .date()
}

fn years_ago(years: i32) -> String {
    let today = today();
    let date = today
        .replace_year(today.year() - years)
        .unwrap_or(today.replace_day(28).unwrap());
    date.to_string()
}

fn templates_and_subjects(cli: &CliVault) -> (i64, i64) {
    let conn = raw_db(&cli.db);
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("templates"), count("subjects"))
}

fn last_audit(cli: &CliVault) -> serde_json::Value {
    cli.audit().last().unwrap().clone()
}

fn assert_refused_and_audited(cli: &CliVault, run: Run, code: &str, action: &str) {
    run.fails(3, code);
    let record = last_audit(cli);
    assert_eq!(
        (record["action"].as_str(), record["outcome"].as_str()),
        (Some(action), Some("denied"))
    );
    assert!(record["detail"].as_str().unwrap().starts_with(code), "{record}");
}

#[test]
fn art6_enrolment_without_separate_consent_is_refused_and_nothing_is_stored() {
    let cli = CliVault::init(DIM);
    let template = cli.file("t.f32", &le_bytes(&Rng::new(1).gaussian_vec(DIM)));
    for args in [
        vec!["enroll", "--template", &template],
        vec!["enroll", "--template", &template, "--notice", NOTICE_VERSION],
        vec![
            "enroll",
            "--template",
            &template,
            "--consent-method",
            CONSENT_METHOD,
        ],
        vec![
            "enroll",
            "--template",
            &template,
            "--notice",
            NOTICE_VERSION,
            "--consent-method",
            " ",
        ],
        vec!["enroll-batch", "--templates", &template],
    ] {
        let action = if args[0] == "enroll" {
            "enrol"
        } else {
            "enrol_batch"
        };
        assert_refused_and_audited(&cli, cli.admin(&args), "consent_required", action);
    }
    assert_eq!(templates_and_subjects(&cli), (0, 0));
}

#[test]
fn art5_consent_must_name_the_current_notice() {
    let cli = CliVault::init(DIM);
    let template = cli.file("t.f32", &le_bytes(&Rng::new(1).gaussian_vec(DIM)));
    let consent = |version: &str| {
        cli.admin(&[
            "enroll",
            "--template",
            &template,
            "--notice",
            version,
            "--consent-method",
            CONSENT_METHOD,
        ])
    };
    assert_refused_and_audited(&cli, consent("1999-1"), "unknown_notice", "enrol");
    let v2 = cli.file("v2.json", notice_json("2027-01").as_bytes());
    cli.admin(&["notice", "publish", "--file", &v2]).ok();
    assert_refused_and_audited(&cli, consent(NOTICE_VERSION), "superseded_notice", "enrol");
    assert_eq!(templates_and_subjects(&cli), (0, 0));
    consent("2027-01").ok();
    assert_eq!(templates_and_subjects(&cli), (1, 1));
}

#[test]
fn art5_a_notice_lacking_any_item_is_refused() {
    let cli = CliVault::init(DIM);
    for item in [
        "processor_name",
        "processor_contact",
        "purpose",
        "method",
        "retention",
        "necessity_and_impact",
        "rights",
    ] {
        let mut notice: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&notice_json(&format!("v-{item}"))).unwrap();
        notice.remove(item);
        let file = cli.file("incomplete.json", &serde_json::to_vec(&notice).unwrap());
        assert_refused_and_audited(
            &cli,
            cli.admin(&["notice", "publish", "--file", &file]),
            "notice_incomplete",
            "notice_publish",
        );
        notice.insert(item.into(), "   ".into());
        let file = cli.file("blank.json", &serde_json::to_vec(&notice).unwrap());
        cli.admin(&["notice", "publish", "--file", &file])
            .fails(3, "notice_incomplete");
    }
    let again = cli.file("again.json", notice_json(NOTICE_VERSION).as_bytes());
    cli.admin(&["notice", "publish", "--file", &again])
        .fails(2, "notice_exists");
    let unknown = cli.file("unknown.json", br#"{"version": "x", "colour": "blue"}"#);
    cli.admin(&["notice", "publish", "--file", &unknown])
        .fails(2, "usage");
    // Publishing is an admin's act.
    cli.operator(&["notice", "publish", "--file", &again])
        .fails(3, "forbidden");
}

#[test]
fn art5_a_new_notice_lists_the_subjects_due_for_renotice_without_stopping_their_use() {
    let cli = CliVault::init(DIM);
    let mut rng = Rng::new(2);
    let people: Vec<Vec<f32>> = (0..3).map(|_| rng.gaussian_vec(DIM)).collect();
    let subjects: Vec<String> = people
        .iter()
        .enumerate()
        .map(|(i, p)| cli.enrol(&format!("p{i}.f32"), p, &[]))
        .collect();
    let v2 = cli.file("v2.json", notice_json("2027-01").as_bytes());
    let published = cli.admin(&["notice", "publish", "--file", &v2]).ok().clone();
    assert_eq!(
        published,
        serde_json::json!({"version": "2027-01", "renotice_due": 3})
    );
    let due = cli.admin(&["notice", "due"]).ok().clone();
    let mut expected = subjects.clone();
    expected.sort();
    assert_eq!(due["subjects"], serde_json::json!(expected));
    assert_eq!(cli.stats()["renotice_due"], 3);
    assert_eq!(cli.stats()["notice"], "2027-01");
    // Still in use.
    let probe = cli.file("probe.f32", &le_bytes(&people[1]));
    assert_eq!(
        cli.operator(&["verify", "--subject", &subjects[1], "--probe", &probe])
            .ok()["match"],
        true
    );
    // Telling one of them and recording the new consent takes them off the list.
    cli.admin(&[
        "consent",
        "renew",
        "--subject",
        &subjects[1],
        "--notice",
        "2027-01",
        "--consent-method",
        "signed v2",
    ])
    .ok();
    cli.admin(&[
        "consent",
        "renew",
        "--subject",
        &subjects[0],
        "--notice",
        NOTICE_VERSION,
        "--consent-method",
        "x",
    ])
    .fails(3, "superseded_notice");
    let due = cli.admin(&["notice", "due"]).ok().clone();
    assert_eq!(due["subjects"].as_array().unwrap().len(), 2);
    assert!(!due["subjects"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(subjects[1])));
}

#[test]
fn art7_a_child_under_14_needs_a_guardians_consent() {
    let cli = CliVault::init(DIM);
    let template = cli.file("t.f32", &le_bytes(&Rng::new(3).gaussian_vec(DIM)));
    let child = years_ago(10);
    let base = [
        "enroll",
        "--template",
        template.as_str(),
        "--notice",
        NOTICE_VERSION,
        "--consent-method",
        CONSENT_METHOD,
    ];
    let mut no_guardian = base.to_vec();
    no_guardian.extend(["--birth-date", &child]);
    assert_refused_and_audited(
        &cli,
        cli.admin(&no_guardian),
        "guardian_consent_required",
        "enrol",
    );
    let mut batch = vec![
        "enroll-batch",
        "--templates",
        template.as_str(),
        "--notice",
        NOTICE_VERSION,
    ];
    batch.extend(["--consent-method", CONSENT_METHOD, "--birth-date", &child]);
    cli.admin(&batch).fails(3, "guardian_consent_required");
    assert_eq!(templates_and_subjects(&cli), (0, 0));

    let mut with_guardian = no_guardian.clone();
    with_guardian.extend(["--guardian", "Wang Fang, mother", "--retention-days", "3650"]);
    let subject = cli.admin(&with_guardian).ok()["subject"]
        .as_str()
        .unwrap()
        .to_string();
    // A 14-year-old needs no guardian; a birth date tomorrow is nonsense.
    let mut teenager = base.to_vec();
    let fourteen = years_ago(14);
    teenager.extend(["--birth-date", &fourteen]);
    cli.admin(&teenager).ok();
    let mut unborn = base.to_vec();
    let tomorrow = (today() + time::Duration::days(2)).to_string();
    unborn.extend(["--birth-date", &tomorrow]);
    cli.admin(&unborn).fails(2, "invalid_argument");
    let mut bad_guardian = no_guardian.clone();
    bad_guardian.extend(["--guardian", "no relationship given"]);
    cli.admin(&bad_guardian).fails(2, "usage");

    // A child's transfer consent must be the guardian's too.
    cli.admin(&["consent", "grant-transfer", "--subject", &subject])
        .fails(3, "guardian_consent_required");
    cli.admin(&[
        "consent",
        "grant-transfer",
        "--subject",
        &subject,
        "--guardian",
        "Wang Fang, mother",
    ])
    .ok();

    // Minors have their own, shorter retention ceiling (180 days by default), however long was asked.
    let conn = raw_db(&cli.db);
    let (created, expires, minor): (i64, i64, bool) = conn
        .query_row(
            "SELECT created_at, expires_at, minor FROM subjects WHERE minor = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(minor);
    assert_eq!(expires - created, 180 * 86_400_000);
}

#[test]
fn art8_an_expired_subject_never_matches_before_any_purge_and_purge_removes_it() {
    let cli = CliVault::init(DIM);
    let mut rng = Rng::new(4);
    let short = rng.gaussian_vec(DIM);
    let long = rng.gaussian_vec(DIM);
    let brief = cli.enrol(
        "short.f32",
        &short,
        &["--retention-secs", "2", "--transfer-consent"],
    );
    let stays = cli.enrol("long.f32", &long, &["--retention-days", "30"]);
    let probe = cli.file("probe.f32", &le_bytes(&short));
    assert_eq!(
        cli.operator(&["verify", "--subject", &brief, "--probe", &probe])
            .ok()["match"],
        true
    );
    let secrets = {
        let conn = raw_db(&cli.db);
        let id = hex_bytes(&brief);
        let key: Vec<u8> = conn
            .query_row("SELECT wrapped_key FROM subjects WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
        let ct: Vec<u8> = conn
            .query_row(
                "SELECT ciphertext FROM templates WHERE subject_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        vec![key, ct]
    };

    std::thread::sleep(std::time::Duration::from_millis(2_300));

    // Past its retention, before any purge: no export, and counted as expired. (These commands
    // open the vault without its gallery, which does not purge by itself.)
    cli.add_user("exp", "exporter");
    cli.run(
        None,
        &[
            "keygen-recipient",
            "--out",
            cli.dir.path().join("r.key").to_str().unwrap(),
        ],
    )
    .ok();
    let recipient = cli.dir.path().join("r.key.pub");
    let out = cli.dir.path().join("expired.bundle");
    let export = cli.as_user(
        "exp",
        &[
            "export",
            "--to",
            "network",
            "--out",
            out.to_str().unwrap(),
            "--recipient-key",
            recipient.to_str().unwrap(),
            "--subject",
            &brief,
        ],
    );
    export.fails(3, "retention_expired");
    assert!(!out.exists());
    let stats = cli.stats();
    assert_eq!(
        (stats["subjects"].as_u64(), stats["expired"].as_u64()),
        (Some(2), Some(1))
    );

    // A lookup's opening loads the gallery and purges what expired while the vault was closed
    // (issue 14: purge by itself), before it answers: the subject is gone, not just refused.
    // `art8_retention_with_a_manual_clock_ends_to_the_millisecond` shows the refusal of an
    // expired subject in an open vault, before any purge.
    cli.operator(&["verify", "--subject", &brief, "--probe", &probe])
        .fails(2, "unknown_subject");
    let record = last_audit(&cli);
    assert_eq!(
        (record["action"].as_str(), record["outcome"].as_str()),
        (Some("verify"), Some("denied"))
    );
    assert!(
        cli.operator(&["identify", "--probe", &probe, "--k", "5"]).ok()["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["subject"] != brief.as_str())
    );
    assert_eq!(cli.admin(&["purge"]).ok()["purged"], 0);
    assert_eq!(templates_and_subjects(&cli), (1, 1));
    let needles: HashSet<[u8; 16]> = windows::<16>(&secrets);
    for suffix in ["", "-wal"] {
        let bytes = read_or_empty(&with_suffix(&cli.db, suffix));
        assert_eq!(
            find_any(&bytes, &needles),
            None,
            "purged key or template left in the file{suffix}"
        );
    }
    let probe_long = cli.file("probe-long.f32", &le_bytes(&long));
    assert_eq!(
        cli.operator(&["verify", "--subject", &stays, "--probe", &probe_long])
            .ok()["match"],
        true
    );
    let purges: Vec<serde_json::Value> = cli
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "purge")
        .collect();
    let of_brief: Vec<&serde_json::Value> =
        purges.iter().filter(|r| r["subject"] == brief.as_str()).collect();
    assert_eq!(of_brief.len(), 1);
    assert_eq!(of_brief[0]["actor"], "system");
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn art8_retention_with_a_manual_clock_ends_to_the_millisecond() {
    let tv = TestVault::new(DIM);
    let person = Rng::new(5).gaussian_vec(DIM);
    let enrolment = Enrolment {
        retention_secs: Some(60),
        ..consent()
    };
    let subject = tv.vault.enrol(&tv.admin, &enrolment, &person).unwrap();
    tv.clock.advance(59_999);
    assert!(tv.vault.verify(&tv.operator, &subject, &person).unwrap().matched);
    tv.clock.advance(1);
    assert!(matches!(
        tv.vault.verify(&tv.operator, &subject, &person),
        Err(Error::Refused(Refusal::RetentionExpired { .. }))
    ));
    assert!(tv.vault.identify(&tv.operator, &person, 3).unwrap().is_empty());
    assert!(matches!(
        tv.vault.add_template(&tv.admin, &subject, &person),
        Err(Error::Refused(Refusal::RetentionExpired { .. }))
    ));
    // The expiry survives reopening (it is MACed with the subject row), and the reopening,
    // which loads the gallery, purges the subject by itself.
    let tv = tv.reopen();
    assert!(tv.vault.identify(&tv.operator, &person, 3).unwrap().is_empty());
    assert!(tv.vault.purge(&tv.admin).unwrap().is_empty());
    assert!(tv
        .vault
        .subjects(&tv.admin)
        .unwrap()
        .iter()
        .all(|s| s.subject != subject));
    // The vault's ceiling caps what is asked for: one year by default.
    let enrolment = Enrolment {
        retention_secs: Some(10 * 365 * 86_400),
        ..consent()
    };
    let subject = tv.vault.enrol(&tv.admin, &enrolment, &person).unwrap();
    tv.clock.advance(365 * 86_400_000 - 1);
    assert!(tv.vault.verify(&tv.operator, &subject, &person).unwrap().matched);
    tv.clock.advance(1);
    assert!(tv.vault.verify(&tv.operator, &subject, &person).is_err());
}

#[test]
fn art6_withdrawal_erases_at_once_keeps_the_history_and_is_final() {
    let cli = CliVault::init(DIM);
    let person = Rng::new(6).gaussian_vec(DIM);
    let subject = cli.enrol(
        "p.f32",
        &person,
        &["--transfer-consent", "--birth-date", "1990-05-17"],
    );
    let probe = cli.file("probe.f32", &le_bytes(&person));
    cli.operator(&["verify", "--subject", &subject, "--probe", &probe])
        .ok();
    cli.admin(&["consent", "withdraw", "--subject", &subject]).ok();

    cli.operator(&["verify", "--subject", &subject, "--probe", &probe])
        .fails(2, "unknown_subject");
    assert!(cli.operator(&["identify", "--probe", &probe]).ok()["candidates"]
        .as_array()
        .unwrap()
        .is_empty());
    cli.admin(&["consent", "withdraw", "--subject", &subject])
        .fails(2, "unknown_subject");
    cli.admin(&["enroll", "--template", &probe, "--subject", &subject])
        .fails(2, "unknown_subject");
    assert_eq!(templates_and_subjects(&cli), (0, 0));

    // The consent history stays: kind, notice and times, but no evidence and nothing biometric.
    let conn = raw_db(&cli.db);
    let mut statement = conn
        .prepare("SELECT kind, notice_version, given_at, withdrawn_at, erased_at, evidence FROM consents WHERE subject_id = ?1 ORDER BY id")
        .unwrap();
    type ConsentFacts = (String, String, i64, Option<i64>, Option<i64>, Option<Vec<u8>>);
    let rows: Vec<ConsentFacts> = statement
        .query_map([hex_bytes(&subject)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    for (kind, notice, given, withdrawn, erased, evidence) in &rows {
        assert!(kind == "processing" || kind == "transfer");
        assert_eq!(notice, NOTICE_VERSION);
        assert!(withdrawn.is_some_and(|w| w >= *given) && erased.is_some());
        assert!(evidence.is_none());
    }
    let audit = cli.audit();
    let about: Vec<&str> = audit
        .iter()
        .filter(|r| r["subject"] == subject.as_str())
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(about[..3], ["enrol", "verify", "consent_withdraw"]);
}

#[test]
fn art8_personal_data_beside_the_templates_is_encrypted_at_rest() {
    let cli = CliVault::init(DIM);
    let person = Rng::new(7).gaussian_vec(DIM);
    let child = years_ago(9);
    let guardian = "Zhang Wei-Distinctive, father";
    cli.enrol(
        "p.f32",
        &person,
        &["--birth-date", &child, "--guardian", guardian],
    );
    let db = [
        std::fs::read(&cli.db).unwrap(),
        read_or_empty(&with_suffix(&cli.db, "-wal")),
    ]
    .concat();
    let contains = |needle: &str| db.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(&child), "birth date stored in clear");
    assert!(!contains("Zhang Wei-Distinctive"), "guardian stored in clear");
    assert!(!contains(CONSENT_METHOD), "consent method stored in clear");
    // The search works: the notice, which is public, is stored in clear, unless the whole file
    // is encrypted (feature `sqlcipher`).
    assert_eq!(contains("Acme Gates Ltd"), !cfg!(feature = "sqlcipher"));
}

fn export_setup() -> (CliVault, String, String) {
    CliVault::with_exporter(DIM)
}

fn export(
    cli: &CliVault,
    name: &str,
    to: &str,
    public: &str,
    subjects: &[&str],
) -> (Run, std::path::PathBuf) {
    let out = cli.dir.path().join(name);
    (cli.export(&out, to, public, subjects), out)
}

#[test]
fn art8_network_export_refused_without_transfer_consent_writes_nothing() {
    let (cli, _, public) = export_setup();
    let mut rng = Rng::new(8);
    let consented = cli.enrol("a.f32", &rng.gaussian_vec(DIM), &["--transfer-consent"]);
    let not = cli.enrol("b.f32", &rng.gaussian_vec(DIM), &[]);
    let (run, out) = export(&cli, "refused.bundle", "network", &public, &[&consented, &not]);
    assert_refused_and_audited(&cli, run, "transfer_consent_required", "export");
    assert!(!out.exists(), "a refused export wrote {out:?}");
    // The same subjects may be backed up locally; only the network needs transfer consent.
    let (run, out) = export(&cli, "local.bundle", "local", &public, &[&consented, &not]);
    assert_eq!(run.ok()["exported"], 2);
    assert!(out.exists());
    // And only exporters export.
    let out = cli.dir.path().join("admin.bundle");
    cli.admin(&[
        "export",
        "--to",
        "local",
        "--out",
        out.to_str().unwrap(),
        "--recipient-key",
        &public,
    ])
    .fails(3, "forbidden");
}

#[test]
fn art8_a_bundle_holds_exactly_the_consented_templates_and_opens_only_with_the_recipients_key() {
    let (cli, secret, public) = export_setup();
    let mut rng = Rng::new(9);
    let people: Vec<Vec<f32>> = (0..5).map(|_| rng.gaussian_vec(DIM)).collect();
    let a = cli.enrol("a.f32", &people[0], &["--transfer-consent"]);
    let _b = cli.enrol("b.f32", &people[1], &[]);
    let c = cli.enrol("c.f32", &people[2], &["--transfer-consent"]);
    let d = cli.enrol("d.f32", &people[3], &[]);
    let e = cli.enrol(
        "e.f32",
        &people[4],
        &["--transfer-consent", "--retention-secs", "1"],
    );
    cli.admin(&[
        "consent",
        "grant-transfer",
        "--subject",
        &d,
        "--consent-method",
        "email of 2026-11-20",
    ])
    .ok();
    cli.admin(&["consent", "withdraw", "--subject", &c]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let (run, out) = export(&cli, "all.bundle", "network", &public, &[]);
    let summary = run.ok().clone();
    // a and d consented; b did not, c withdrew (and is gone), e expired.
    assert_eq!(
        (summary["exported"].as_u64(), summary["held_back"].as_u64()),
        (Some(2), Some(2))
    );
    let opened = cli.run(
        None,
        &[
            "open-bundle",
            "--in",
            out.to_str().unwrap(),
            "--recipient-secret",
            &secret,
        ],
    );
    let contents = opened.ok();
    let mut exported: Vec<&str> = contents["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    exported.sort();
    let mut expected = vec![a.as_str(), d.as_str()];
    expected.sort();
    assert_eq!(exported, expected);
    assert!(!exported.contains(&e.as_str()) && !exported.contains(&c.as_str()));
    assert_eq!(contents["destination"], "network");
    for subject in contents["subjects"].as_array().unwrap() {
        let index = if subject["subject"] == a.as_str() { 0 } else { 3 };
        let templates = subject["templates"].as_array().unwrap();
        assert_eq!(templates.len(), 1);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(templates[0].as_str().unwrap())
            .unwrap();
        assert_eq!(
            bytes,
            le_bytes(&normalised(&people[index])),
            "the exported template is the enrolled one"
        );
        let transfer = subject["consents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "transfer")
            .unwrap();
        assert!(transfer["withdrawn_at"].is_null());
        assert!(
            transfer["method"].is_string(),
            "consent evidence travels with the data"
        );
    }
    // Nothing of the device's keys is in it.
    let bundle = std::fs::read(&out).unwrap();
    let master = std::fs::read(&cli.key).unwrap();
    assert!(!bundle.windows(32).any(|w| w == master.as_slice()));

    // Another recipient's key opens nothing.
    let other = cli.dir.path().join("other.key");
    cli.run(None, &["keygen-recipient", "--out", other.to_str().unwrap()])
        .ok();
    cli.run(
        None,
        &[
            "open-bundle",
            "--in",
            out.to_str().unwrap(),
            "--recipient-secret",
            other.to_str().unwrap(),
        ],
    )
    .fails(4, "bundle_rejected");

    // Withdrawing the transfer consent holds the subject back from the next export.
    cli.admin(&["consent", "withdraw-transfer", "--subject", &d]).ok();
    let (run, _) = export(&cli, "after.bundle", "network", &public, &[]);
    assert_eq!(run.ok()["exported"], 1);
}

#[test]
fn art8_a_damaged_truncated_or_misaddressed_bundle_is_refused_cleanly() {
    let (cli, secret, public) = export_setup();
    cli.enrol("a.f32", &Rng::new(10).gaussian_vec(DIM), &["--transfer-consent"]);
    let (run, out) = export(&cli, "b.bundle", "network", &public, &[]);
    run.ok();
    let bundle = std::fs::read(&out).unwrap();
    let open = |bytes: &[u8], name: &str| {
        let path = cli.file(name, bytes);
        cli.run(
            None,
            &["open-bundle", "--in", &path, "--recipient-secret", &secret],
        )
    };
    open(&bundle, "intact.bundle").ok();
    for at in [0, 8, 9, 20, 45, 60, bundle.len() / 2, bundle.len() - 1] {
        let mut flipped = bundle.clone();
        flipped[at] ^= 0x01;
        open(&flipped, "flipped.bundle").fails(4, "bundle_rejected");
    }
    for len in [0, 7, 40, bundle.len() - 17] {
        let message = open(&bundle[..len], "short.bundle").fails(4, "bundle_rejected");
        assert!(!message.contains("panick"));
    }
    // Public key in place of the secret: refused as a key file, not a crash.
    cli.run(
        None,
        &[
            "open-bundle",
            "--in",
            out.to_str().unwrap(),
            "--recipient-secret",
            &public,
        ],
    )
    .fails(3, "key_file");
}

#[test]
fn art8_export_through_the_api_is_all_or_nothing_for_named_subjects() {
    let tv = TestVault::new(DIM);
    let mut rng = Rng::new(11);
    let with = tv
        .vault
        .enrol(
            &tv.admin,
            &Enrolment {
                transfer_consent: true,
                ..consent()
            },
            &rng.gaussian_vec(DIM),
        )
        .unwrap();
    let without = tv
        .vault
        .enrol(&tv.admin, &consent(), &rng.gaussian_vec(DIM))
        .unwrap();
    tv.vault
        .add_user(
            &tv.admin,
            "exp",
            facevault::Role::Exporter,
            &facevault::Password::new("exporter-pw"),
        )
        .unwrap();
    let exporter = tv
        .vault
        .login("exp", &facevault::Password::new("exporter-pw"))
        .unwrap();
    let recipient = RecipientSecretKey::generate().unwrap();
    let request = |subjects: Vec<facevault::SubjectId>| ExportRequest {
        destination: Destination::Network,
        recipient: recipient.public_key(),
        subjects,
        model: None,
    };
    match tv.vault.export(&exporter, &request(vec![with, without])) {
        Err(Error::Refused(Refusal::TransferConsentRequired { subject })) => assert_eq!(subject, without),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let bundle = tv.vault.export(&exporter, &request(vec![with])).unwrap();
    assert_eq!((bundle.exported, bundle.held_back), (1, 0));
    let contents = facevault::open_bundle(&recipient, &bundle.bytes).unwrap();
    assert_eq!(contents.subjects.len(), 1);
    assert_eq!(contents.subjects[0].subject, with.to_string());
    // A minor's transfer needs the guardian: a consent recorded without one does not count.
    let child = Enrolment {
        birth_date: Some(time::macros::date!(2020 - 01 - 01)),
        guardian: Some(Guardian {
            name: "Li Na".into(),
            relationship: "mother".into(),
        }),
        ..consent()
    };
    let minor = tv.vault.enrol(&tv.admin, &child, &rng.gaussian_vec(DIM)).unwrap();
    let no_guardian = facevault::TransferConsent {
        method: Some("verbal".into()),
        guardian: None,
    };
    assert!(matches!(
        tv.vault.grant_transfer(&tv.admin, &minor, &no_guardian),
        Err(Error::Refused(Refusal::GuardianConsentRequired))
    ));
    assert!(tv.vault.export(&exporter, &request(vec![minor])).is_err());
    let blank = facevault::TransferConsent {
        method: None,
        guardian: Some(Guardian {
            name: " ".into(),
            relationship: " ".into(),
        }),
    };
    assert!(matches!(
        tv.vault.grant_transfer(&tv.admin, &minor, &blank),
        Err(Error::InvalidArgument { what: "guardian", .. })
    ));
    // A subject named twice is exported once.
    let twice = tv.vault.export(&exporter, &request(vec![with, with])).unwrap();
    assert_eq!(twice.exported, 1);
}

// --- the processor's duties (Arts. 3-4, 9, 10, 13, 15, 16) -----------------------------------

/// The profiles the law forbids, each with the refusal code and the article its message names.
fn forbidden_profiles() -> Vec<(facevault::DeploymentProfile, &'static str, &'static str)> {
    use facevault::{DeploymentProfile, Place};
    vec![
        (
            DeploymentProfile {
                place: Place::PrivateSpace,
                capture_area: "inside the changing room".into(),
                ..profile()
            },
            "private_space",
            "Art. 13: ",
        ),
        (
            DeploymentProfile {
                place: Place::Public,
                public_safety: true,
                signs_posted: false,
                ..profile()
            },
            "no_signs",
            "Art. 13: ",
        ),
        (
            DeploymentProfile {
                place: Place::Public,
                public_safety: false,
                signs_posted: true,
                ..profile()
            },
            "not_for_public_safety",
            "Art. 13: ",
        ),
        (
            DeploymentProfile {
                alternative_method: String::new(),
                ..profile()
            },
            "no_alternative_method",
            "Art. 10: ",
        ),
    ]
}

#[test]
fn art3_4_10_13_each_forbidden_profile_is_refused_naming_its_article_and_the_device_can_still_wind_down() {
    // Through the API: a vault created with each forbidden profile, closed and opened again,
    // refuses enrolment and matching with the article named; so does one with no profile.
    let mut cases: Vec<(Option<facevault::DeploymentProfile>, &str, &str)> = forbidden_profiles()
        .into_iter()
        .map(|(profile, code, article)| (Some(profile), code, article))
        .collect();
    cases.push((None, "no_deployment_profile", "Arts. 3-4: "));
    let mut faces = Faces::new(DIM, 4, 71);
    for (profile, code, article) in cases {
        let config = facevault::VaultConfig {
            profile: profile.clone(),
            ..test_config(DIM)
        };
        let tv = TestVault::with(&config, &facevault::FixedKey::new(KEY)).reopen();
        let refusal = tv.vault.deployment_refusal().expect("refused at open");
        assert_eq!(refusal.code(), code);
        assert!(refusal.to_string().starts_with(article), "{refusal}");
        let person = faces.person();
        let refused = |result: Result<(), Error>| match result {
            Err(Error::Refused(r)) => assert_eq!(r.code(), code, "{r}"),
            other => panic!("{code}: {other:?}"),
        };
        refused(tv.vault.enrol(&tv.admin, &consent(), &person).map(drop));
        refused(tv.vault.identify(&tv.operator, &person, 1).map(drop));
        // It can still be wound down: purge, the audit read and exported, decommissioning.
        tv.vault.purge(&tv.admin).unwrap();
        tv.vault.verify_audit(&tv.admin).unwrap();
        let mut export = Vec::new();
        tv.vault.export_audit(&tv.admin, &mut export).unwrap();
        assert!(!export.is_empty());
        let id = tv.vault.stats(&tv.admin).unwrap().vault_id;
        tv.vault
            .decommission(&tv.admin, &facevault::decommission_confirmation(&id))
            .unwrap();
        // Every refusal was audited, with its code.
        let denied: Vec<_> = tv
            .vault
            .audit_log(&tv.admin)
            .unwrap()
            .into_iter()
            .filter(|r| r.detail.starts_with(code))
            .map(|r| r.action)
            .collect();
        assert_eq!(denied, ["enrol", "identify"], "{code}");
    }

    // Through the binary: a refusal exits 3 with its code and the article; a compliant profile
    // lets the same vault work again.
    let cli = CliVault::init(DIM);
    let template = cli.file("t.f32", &le_bytes(&faces.person()));
    let subject = cli.enrol("enrolled-before.f32", &faces.person(), &[]);
    for (profile, code, article) in forbidden_profiles() {
        let file = cli.file(
            "forbidden.json",
            serde_json::to_string(&profile).unwrap().as_bytes(),
        );
        let recorded = cli.admin(&["profile", "set", "--file", &file]);
        let recorded = &recorded.ok()["profile_recorded"];
        assert!(recorded["matching_refused"]
            .as_str()
            .unwrap()
            .starts_with(article));
        let message = cli.admin(&CliVault::consented("enrol", &template)).fails(3, code);
        assert!(message.contains(article), "{message}");
        cli.operator(&["verify", "--subject", &subject, "--probe", &template])
            .fails(3, code);
        cli.operator(&["identify", "--probe", &template]).fails(3, code);
        cli.admin(&["purge"]).ok();
        cli.admin(&["filing", "status"]).ok();
    }
    let compliant = cli.file("profile.json", profile_json().as_bytes());
    let recorded = cli.admin(&["profile", "set", "--file", &compliant]);
    assert_eq!(
        recorded.ok()["profile_recorded"]["enrolment_refused"],
        serde_json::Value::Null
    );
    cli.admin(&CliVault::consented("enrol", &template)).ok();
    cli.operator(&["verify", "--subject", &subject, "--probe", &template])
        .ok();
}

#[test]
fn art9_enrolment_needs_an_assessment_and_a_new_one_after_a_change_of_purpose() {
    let config = facevault::VaultConfig {
        profile: None,
        ..test_config(DIM)
    };
    let tv = TestVault::with(&config, &facevault::FixedKey::new(KEY));
    let mut faces = Faces::new(DIM, 4, 72);
    let refusal = |result: Result<facevault::SubjectId, Error>| match result {
        Err(Error::Refused(refusal)) => refusal,
        other => panic!("{other:?}"),
    };
    tv.vault.set_profile(&tv.admin, &profile()).unwrap();
    let refused = refusal(tv.vault.enrol(&tv.admin, &consent(), &faces.person()));
    assert_eq!(refused, Refusal::AssessmentRequired);
    assert!(refused.to_string().starts_with("Art. 9: "));

    // An assessment of another purpose does not cover it; one of this purpose and method does.
    let elsewhere = facevault::Assessment {
        purpose: "staff attendance".into(),
        ..assessment(&profile())
    };
    let recorded = tv.vault.add_assessment(&tv.admin, &elsewhere).unwrap();
    assert!(!recorded.covers_current_profile);
    refusal(tv.vault.enrol(&tv.admin, &consent(), &faces.person()));
    let recorded = tv
        .vault
        .add_assessment(&tv.admin, &assessment(&profile()))
        .unwrap();
    assert!(recorded.covers_current_profile && recorded.enrolment_refused.is_none());
    let person = faces.person();
    let subject = tv.vault.enrol(&tv.admin, &consent(), &person).unwrap();

    // A change of purpose stops enrolment until a new assessment; matching goes on.
    let new_purpose = facevault::DeploymentProfile {
        purpose: "entry to the Acme office building and its car park".into(),
        ..profile()
    };
    let changed = tv.vault.set_profile(&tv.admin, &new_purpose).unwrap();
    assert!(changed.enrolment_refused.unwrap().starts_with("Art. 9: "));
    assert_eq!(
        refusal(tv.vault.enrol(&tv.admin, &consent(), &faces.person())),
        Refusal::AssessmentRequired
    );
    assert!(tv.vault.verify(&tv.operator, &subject, &person).unwrap().matched);
    tv.vault
        .add_assessment(&tv.admin, &assessment(&new_purpose))
        .unwrap();
    tv.vault.enrol(&tv.admin, &consent(), &faces.person()).unwrap();

    // A major security incident stops enrolment until a new assessment; matching goes on.
    let incident = facevault::Incident {
        occurred_on: "2025-12-30".into(),
        description: "the controller's disk was copied during a repair".into(),
    };
    tv.vault.record_incident(&tv.admin, &incident).unwrap();
    let refused = refusal(tv.vault.enrol(&tv.admin, &consent(), &faces.person()));
    assert_eq!(refused, Refusal::AssessmentAfterIncident);
    assert!(refused.to_string().starts_with("Art. 9: "));
    assert!(tv.vault.verify(&tv.operator, &subject, &person).unwrap().matched);
    let alerts = tv.vault.alerts(&tv.admin).unwrap();
    assert!(alerts
        .iter()
        .any(|a| a.detail.contains("major security incident")));
    tv.vault
        .add_assessment(&tv.admin, &assessment(&new_purpose))
        .unwrap();
    tv.vault.enrol(&tv.admin, &consent(), &faces.person()).unwrap();

    // Every assessment and incident is kept, through erasure and a reopening; none can be
    // deleted.
    tv.vault.erase(&tv.admin, &subject).unwrap();
    let tv = tv.reopen();
    let kept = tv.vault.assessments(&tv.admin).unwrap();
    assert_eq!(kept.len(), 4);
    assert_eq!(kept[3].record, assessment(&new_purpose));
    assert_eq!(tv.vault.incidents(&tv.admin).unwrap()[0].record, incident);
    let stored: i64 = raw_db(&tv.path)
        .query_row(
            "SELECT count(*) FROM governance WHERE kind = 'assessment'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 4);
}

/// Milliseconds since the epoch of a time in China Standard Time.
fn cst(date: time::Date, hour: u8) -> i64 {
    let at = date
        .with_hms(hour, 0, 0)
        .unwrap()
        .assume_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[test]
fn art15_the_1000th_person_starts_the_filing_clock_over_weekends_holidays_and_a_make_up_saturday() {
    use time::macros::date;
    let config = facevault::VaultConfig {
        filing_threshold: 1000,
        ..test_config(8)
    };
    let tv = TestVault::with(&config, &facevault::FixedKey::new(KEY));
    // A week-long National Day holiday, and a make-up working Saturday after it.
    let calendar = facevault::Calendar::from_json(
        r#"{"source": "test calendar","holidays": ["2026-10-01","2026-10-02","2026-10-03","2026-10-04",
            "2026-10-05","2026-10-06","2026-10-07"], "workdays": ["2026-10-10"]}"#,
    )
    .unwrap();
    tv.vault.set_calendar(&tv.admin, &calendar).unwrap();
    // Friday 25 September 2026, 10:00 in Beijing.
    let reached = cst(date!(2026 - 09 - 25), 10);
    tv.clock.set(reached);
    let mut faces = Faces::new(8, 16, 73);
    let people: Vec<f32> = (0..999).flat_map(|_| faces.person()).collect();
    let mut subjects = tv.vault.enrol_batch(&tv.admin, &consent(), &people).unwrap();
    let status = tv.vault.filing_status(&tv.admin).unwrap();
    assert_eq!(
        (status.persons, status.threshold, status.reached_at),
        (999, 1000, None)
    );
    assert!(status.clocks.is_empty());

    subjects.push(tv.vault.enrol(&tv.admin, &consent(), &faces.person()).unwrap());
    let status = tv.vault.filing_status(&tv.admin).unwrap();
    assert_eq!((status.persons, status.reached_at), (1000, Some(reached)));
    // Sep 28-30 (3); Oct 1-7 off; Oct 8, 9 (5); Saturday Oct 10, made a working day (6); then
    // four full weeks to Nov 6 (26) and Nov 9-12 (30). Without the make-up Saturday it would be
    // Nov 13; counting weekends only, Nov 6.
    assert_eq!(status.deadline.as_deref(), Some("2026-11-12"));
    assert_eq!(status.working_days_left, Some(30));
    let alerts = tv.vault.alerts(&tv.admin).unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.detail.starts_with("Art. 15: filing due") && a.detail.contains("2026-11-12")),
        "{alerts:?}"
    );

    // Erasing people afterwards does not undo it; nor does a reopening. Days pass.
    for subject in &subjects[..10] {
        tv.vault.erase(&tv.admin, subject).unwrap();
    }
    tv.clock.set(cst(date!(2026 - 10 - 12), 9));
    let tv = tv.reopen();
    let status = tv.vault.filing_status(&tv.admin).unwrap();
    assert_eq!((status.persons, status.reached_at), (990, Some(reached)));
    assert_eq!(status.deadline.as_deref(), Some("2026-11-12"));
    // Oct 12 is the 7th working day: 23 left.
    assert_eq!(status.working_days_left, Some(23));
    assert_eq!(status.calendar_through.as_deref(), Some("2026-10-10"));
    // Crossing the threshold again starts nothing new.
    tv.vault
        .enrol_batch(&tv.admin, &consent(), &people[..8 * 20])
        .unwrap();
    let status = tv.vault.filing_status(&tv.admin).unwrap();
    assert_eq!(status.clocks.len(), 1);

    // The filing is made, and recorded: its clock stops. One that is not due is refused.
    let made = tv
        .vault
        .record_filing(
            &tv.admin,
            facevault::FilingKind::Initial,
            Some("2026-10-12"),
            "SH-CAC-2026-0042",
        )
        .unwrap();
    assert_eq!(made.made.as_ref().unwrap().reference, "SH-CAC-2026-0042");
    assert!(matches!(
        tv.vault
            .record_filing(&tv.admin, facevault::FilingKind::Change, None, "SH-CAC-2026-0043"),
        Err(Error::InvalidArgument { what: "filing", .. })
    ));
    assert!(matches!(
        tv.vault
            .record_filing(&tv.admin, facevault::FilingKind::Initial, Some("2026-10-13"), "x"),
        Err(Error::InvalidArgument {
            what: "filing date",
            ..
        })
    ));
    let compliance = tv.vault.compliance(&tv.admin).unwrap();
    let art15 = compliance
        .articles
        .iter()
        .find(|a| a.article == "Art. 15")
        .unwrap();
    assert!(art15.due.is_empty(), "{:?}", art15.due);
    assert!(art15
        .configured
        .iter()
        .any(|line| line.contains("SH-CAC-2026-0042")));

    // A material change to the profile after filing starts the change-filing clock.
    let moved = facevault::DeploymentProfile {
        processor_contact: "dpo@acme.example".into(),
        ..profile()
    };
    assert!(tv.vault.set_profile(&tv.admin, &moved).unwrap().change_filing_due);
    let status = tv.vault.filing_status(&tv.admin).unwrap();
    assert_eq!(status.clocks.len(), 2);
    assert_eq!(status.clocks[1].kind, facevault::FilingKind::Change);
    assert_eq!(status.clocks[1].started_on, "2026-10-12");
    assert!(status.clocks[1].made.is_none() && status.clocks[0].made.is_some());
    // A change that is not material (the signs' wording, the capture area) does not.
    let signs = facevault::DeploymentProfile {
        capture_area: "2 m in front of each lobby turnstile".into(),
        ..moved
    };
    assert!(!tv.vault.set_profile(&tv.admin, &signs).unwrap().change_filing_due);
}

#[test]
fn art15_the_filing_report_holds_the_five_items_from_the_vaults_records() {
    let cli = CliVault::init(DIM);
    let mut faces = Faces::new(DIM, 4, 74);
    for n in 0..3 {
        cli.enrol(&format!("p{n}.f32"), &faces.person(), &[]);
    }
    // The assessment's report digest taken from the report itself.
    let report_bytes = b"%PDF-1.7 the impact assessment report".to_vec();
    let report_file = cli.file("pia-report.pdf", &report_bytes);
    let mut pia: serde_json::Value = serde_json::from_str(&assessment_json()).unwrap();
    pia.as_object_mut().unwrap().remove("report_sha256");
    let pia_file = cli.file("pia-2.json", pia.to_string().as_bytes());
    let recorded = cli.admin(&["pia", "add", "--file", &pia_file, "--report", &report_file]);
    assert_eq!(
        recorded.ok()["assessment_recorded"]["covers_current_profile"],
        true
    );
    let digest: String = ring::digest::digest(&ring::digest::SHA256, &report_bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // A report that is not the one the assessment names is refused.
    let named = cli.file("pia-3.json", assessment_json().as_bytes());
    cli.admin(&["pia", "add", "--file", &named, "--report", &report_file])
        .fails(2, "report_mismatch");

    let out = cli.dir.path().join("filing.json");
    let written = cli.admin(&["filing", "report", "--out", out.to_str().unwrap()]);
    assert_eq!(written.ok()["missing"], serde_json::json!([]));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let profile = profile();
    // (1) the processor;
    assert_eq!(report["processor"]["name"], profile.processor_name);
    assert_eq!(report["processor"]["contact"], profile.processor_contact);
    // (2) the purpose and method;
    assert_eq!(report["purpose_and_method"]["purpose"], profile.purpose);
    assert_eq!(report["purpose_and_method"]["method"], profile.method);
    assert_eq!(report["purpose_and_method"]["place"], "non_public");
    // (3) the count and the security measures;
    assert_eq!(report["count_and_security"]["persons"], 3);
    assert_eq!(report["count_and_security"]["templates"], 3);
    let measures = report["count_and_security"]["security_measures"].to_string();
    for measure in ["AES-256-GCM", "audit log", "1 admin, 1 operator", "PBKDF2"] {
        assert!(measures.contains(measure), "{measure}: {measures}");
    }
    // (4) the processing rules, with the notice people are given;
    assert_eq!(report["processing_rules"]["notice"]["version"], NOTICE_VERSION);
    assert!(report["processing_rules"]["rules"]
        .to_string()
        .contains("365 days for adults"));
    // (5) the latest assessment, with its report's digest.
    assert_eq!(report["impact_assessment"]["report_sha256"], digest);
    assert_eq!(report["impact_assessment"]["author"], assessment(&profile).author);
    // The file is not overwritten.
    cli.admin(&["filing", "report", "--out", out.to_str().unwrap()])
        .fails(2, "already_exists");
}

#[test]
fn art15_decommissioning_erases_every_face_and_keeps_the_audit_and_records() {
    let tv = TestVault::new(64);
    let mut faces = Faces::new(64, 8, 75);
    let people: Vec<Vec<f32>> = (0..40).map(|_| faces.person()).collect();
    let subjects = tv
        .vault
        .enrol_batch(&tv.admin, &consent(), &people.concat())
        .unwrap();
    tv.vault
        .add_template(&tv.admin, &subjects[3], &people[3])
        .unwrap();
    let conn = raw_db(&tv.path);
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for sql in [
        "SELECT ciphertext FROM templates",
        "SELECT wrapped_key FROM subjects",
    ] {
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
        secrets.extend(rows.map(Result::unwrap));
    }
    drop(conn);
    assert_eq!(secrets.len(), 41 + 40);
    let needles: HashSet<[u8; 16]> = windows::<16>(&secrets);
    let id = tv.vault.stats(&tv.admin).unwrap().vault_id;

    // Only an admin, and only with the vault's own words.
    assert!(matches!(
        tv.vault
            .decommission(&tv.operator, &facevault::decommission_confirmation(&id)),
        Err(Error::Forbidden { .. })
    ));
    for wrong in [
        "DECOMMISSION".to_string(),
        facevault::decommission_confirmation("00"),
    ] {
        assert!(matches!(
            tv.vault.decommission(&tv.admin, &wrong),
            Err(Error::InvalidArgument {
                what: "confirmation",
                ..
            })
        ));
    }
    assert_eq!(tv.vault.stats(&tv.admin).unwrap().subjects, 40);

    let done = tv
        .vault
        .decommission(&tv.admin, &facevault::decommission_confirmation(&id))
        .unwrap();
    assert_eq!((done.subjects_erased, done.templates_erased), (40, 41));
    assert_eq!(done.deregistration.kind, facevault::FilingKind::Deregistration);
    assert!(done.deregistration.deadline.is_some());
    assert_gone_from_files(&tv.path, &needles, "decommissioned face data");
    let tv = tv.reopen();
    assert_gone_from_files(&tv.path, &needles, "decommissioned face data");
    let conn = raw_db(&tv.path);
    for table in ["subjects", "templates"] {
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "{table}");
    }
    drop(conn);

    // The audit and the records stay; nothing is enrolled or matched again.
    let records = tv.vault.verify_audit(&tv.admin).unwrap();
    assert!(records > 40);
    let log = tv.vault.audit_log(&tv.admin).unwrap();
    let decommission: Vec<&str> = log
        .iter()
        .filter(|r| r.action == "decommission")
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(decommission[..3], ["denied"; 3]);
    // The three refusals first (a role, two wrong confirmations), each audited; then one record
    // per subject erased and the summary.
    assert_eq!(decommission.len(), 44);
    assert!(decommission[3..].iter().all(|outcome| *outcome == "allowed"));
    assert_eq!(tv.vault.assessments(&tv.admin).unwrap().len(), 1);
    assert!(tv.vault.profile(&tv.admin).unwrap().is_some());
    let status = tv.vault.filing_status(&tv.admin).unwrap();
    assert!(status.decommissioned);
    assert_eq!(status.persons, 0);
    assert_eq!(tv.vault.deployment_refusal(), Some(Refusal::Decommissioned));
    match tv.vault.enrol(&tv.admin, &consent(), &people[0]) {
        Err(Error::Refused(refusal @ Refusal::Decommissioned)) => {
            assert!(refusal.to_string().starts_with("Art. 15: "))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        tv.vault.identify(&tv.operator, &people[0], 1),
        Err(Error::Refused(Refusal::Decommissioned))
    ));
    assert!(matches!(
        tv.vault
            .decommission(&tv.admin, &facevault::decommission_confirmation(&id)),
        Err(Error::Refused(Refusal::Decommissioned))
    ));
    // A new profile does not bring it back.
    tv.vault.set_profile(&tv.admin, &profile()).unwrap();
    assert_eq!(tv.vault.enrolment_refusal(), Some(Refusal::Decommissioned));
}

#[test]
fn art16_the_compliance_report_names_every_article_and_its_page_is_self_contained_html() {
    let cli = CliVault::init(DIM);
    let mut faces = Faces::new(DIM, 4, 76);
    cli.enrol("p.f32", &faces.person(), &[]);
    let page = cli.dir.path().join("compliance.html");
    let answer = cli.admin(&["compliance", "--html", page.to_str().unwrap()]);
    let report = &answer.ok()["compliance"];
    let articles = report["articles"].as_array().unwrap();
    let named: Vec<&str> = articles.iter().map(|a| a["article"].as_str().unwrap()).collect();
    assert_eq!(
        named,
        [
            "Arts. 3-4",
            "Art. 5",
            "Art. 6",
            "Art. 7",
            "Art. 8",
            "Art. 9",
            "Art. 10",
            "Art. 13",
            "Art. 14",
            "Art. 15",
            "Art. 16",
            "Art. 19"
        ]
    );
    assert!(report["audit_records_verified"].as_u64().unwrap() > 5);
    assert_eq!(report["filing"]["persons"], 1);

    // Each guarantee names a test that exists, in the file it names.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for article in articles {
        assert!(!article["holds"].as_array().unwrap().is_empty(), "{article}");
        for proof in article["holds"].as_array().unwrap() {
            let test = proof["test"].as_str().unwrap();
            let (file, name) = test.split_once("::").unwrap();
            let source = std::fs::read_to_string(root.join(file)).unwrap();
            assert!(source.contains(&format!("fn {name}()")), "{test} is not a test");
        }
    }

    // The page: well-formed (a strict XML reader finds every element closed and nested), with no
    // script, style sheet, image or anything else from outside, and every article of the report.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    let mut reader = quick_xml::Reader::from_str(&html);
    let mut open: Vec<String> = Vec::new();
    let mut elements = HashSet::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(start)) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
                elements.insert(name.clone());
                for attribute in start.attributes() {
                    let attribute = attribute.unwrap();
                    let value = String::from_utf8_lossy(&attribute.value).to_string();
                    assert!(!value.contains("http") && !value.contains("//"), "{value}");
                    assert!(!attribute.key.as_ref().starts_with(b"on"), "an event handler");
                }
                open.push(name);
            }
            Ok(quick_xml::events::Event::Empty(empty)) => {
                elements.insert(String::from_utf8(empty.name().as_ref().to_vec()).unwrap());
            }
            Ok(quick_xml::events::Event::End(end)) => {
                let name = String::from_utf8(end.name().as_ref().to_vec()).unwrap();
                assert_eq!(open.pop().as_deref(), Some(name.as_str()), "misnested </{name}>");
            }
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at {}: {e}", reader.buffer_position()),
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
    for needed in ["html", "head", "title", "meta", "style", "body", "section"] {
        assert!(elements.contains(needed), "no <{needed}>");
    }
    for banned in ["script", "link", "img", "iframe", "object", "embed"] {
        assert!(!elements.contains(banned), "<{banned}> in a self-contained page");
    }
    assert!(!html.contains("url("), "an outside asset in the style");
    for article in named {
        assert!(
            html.contains(&format!("<h2>{article} · ")),
            "{article} is not on the page"
        );
    }
    assert!(html.contains("class=\"bar\""), "the filing bars");
}
