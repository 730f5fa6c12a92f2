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
