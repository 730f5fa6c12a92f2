//! The CLI as a hostile user drives it: odd files (FIFOs, sparse giants, dangling symlinks), huge
//! requests, an unwritable stdout, and values that look harmless but change decisions. Each is
//! refused with a named code before it costs memory or time, writes nothing that did not happen,
//! and is recorded honestly in the audit. Each test pins a defect an outside test found.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const DIM: usize = 16;

/// Runs the binary like [`CliVault::run`], but kills it and fails the test if it has not ended
/// within `deadline`: a command that blocks (on a FIFO, say) must fail the test, not hang it.
fn run_within(cli: &CliVault, key_file: &Path, args: &[&str], deadline: Duration) -> (i32, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_facevault"))
        .arg("--db")
        .arg(&cli.db)
        .arg("--key-file")
        .arg(key_file)
        .args(["--as", ADMIN])
        .args(args)
        .env("FACEVAULT_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > deadline {
            child.kill().unwrap();
            panic!("facevault {args:?} was still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let error = serde_json::from_slice(&output.stderr).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), error)
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

/// A sparse file of `len` bytes: it takes no disk, but reading it whole would take `len` of memory.
fn sparse(cli: &CliVault, name: &str, len: u64) -> String {
    let path = cli.dir.path().join(name);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path.to_str().unwrap().to_string()
}

/// Defect 5: a FIFO as a probe or key file blocked the process forever before its type was checked.
#[test]
fn a_fifo_as_a_probe_or_key_file_is_refused_at_once() {
    let cli = CliVault::init(DIM);
    let fifo = cli.dir.path().join("probe.fifo");
    mkfifo(&fifo);
    let deadline = Duration::from_secs(20);
    let (code, error) = run_within(
        &cli,
        &cli.key,
        &["identify", "--probe", fifo.to_str().unwrap()],
        deadline,
    );
    assert_eq!(
        (code, error["error"].as_str()),
        (2, Some("not_a_file")),
        "{error}"
    );
    let key_fifo = cli.dir.path().join("key.fifo");
    mkfifo(&key_fifo);
    let (code, error) = run_within(&cli, &key_fifo, &["stats"], deadline);
    assert_eq!((code, error["error"].as_str()), (4, Some("key_file")), "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("not a regular file"),
        "{error}"
    );
}

/// Defect 3: input files were read whole before any size check; a 64 GB sparse probe aborted the
/// process. Each input is now held to its bound from the file's metadata, unread.
#[test]
fn oversized_input_files_are_refused_unread() {
    let cli = CliVault::init(DIM);
    let subject = cli.enrol("t.f32", &Rng::new(1).gaussian_vec(DIM), &[]);
    let probe = sparse(&cli, "huge-probe.f32", 64 << 30);
    let message = cli
        .operator(&["identify", "--probe", &probe])
        .fails(2, "file_too_large");
    assert!(message.contains("68719476736 bytes"), "{message}");
    cli.operator(&["verify", "--subject", &subject, "--probe", &probe])
        .fails(2, "file_too_large");
    // A batch may be large, but not without bound.
    let batch = sparse(&cli, "huge-batch.f32", 3 << 30);
    cli.operator(&["identify-batch", "--probes", &batch])
        .fails(2, "file_too_large");
    cli.admin(&CliVault::consented("enrol-batch", &batch))
        .fails(2, "file_too_large");
    // A bundle bigger than any bundle facevault makes, with a real secret key to open it.
    let secret = cli.dir.path().join("recipient.key");
    cli.run(None, &["keygen-recipient", "--out", secret.to_str().unwrap()])
        .ok();
    let bundle = sparse(&cli, "huge.bundle", 1 << 30);
    cli.run(
        None,
        &[
            "open-bundle",
            "--in",
            &bundle,
            "--recipient-secret",
            secret.to_str().unwrap(),
        ],
    )
    .fails(2, "file_too_large");
    let notice = sparse(&cli, "huge-notice.json", 1 << 20);
    cli.admin(&["notice", "publish", "--file", &notice])
        .fails(2, "file_too_large");
}

/// An exporter, a recipient key pair and one subject who consented to transfer.
fn export_setup() -> (CliVault, String) {
    let (cli, _, public) = CliVault::with_exporter(DIM);
    cli.enrol("t.f32", &Rng::new(4).gaussian_vec(DIM), &["--transfer-consent"]);
    (cli, public)
}

fn export_outcomes(cli: &CliVault) -> Vec<(String, String)> {
    cli.audit()
        .iter()
        .filter(|r| r["action"] == "export")
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Defect 1: the export's records (`allowed`, face data gone) were committed before the bundle
/// file was made; a dangling symlink or a missing folder at `--out` then failed with the log
/// saying the data had left. Now the file is made and synced first, and a failure is recorded
/// as a failed attempt, with no file left behind.
#[test]
fn an_export_that_writes_no_bundle_is_recorded_as_failed_not_done() {
    let (cli, public) = export_setup();
    let dangling = cli.dir.path().join("out.bundle");
    std::os::unix::fs::symlink(cli.dir.path().join("nowhere/x"), &dangling).unwrap();
    let missing_folder = cli.dir.path().join("no-such-folder/out.bundle");
    for (out, exit, code) in [(&dangling, 2, "already_exists"), (&missing_folder, 1, "io")] {
        cli.export(out, "network", &public, &[]).fails(exit, code);
        let outcomes = export_outcomes(&cli);
        assert!(
            outcomes.iter().all(|(outcome, _)| outcome != "allowed"),
            "{outcomes:?}"
        );
        assert!(!missing_folder.exists());
    }
    assert_eq!(export_outcomes(&cli).len(), 2, "each attempt is recorded once");
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    // A good path works, and only then is the export recorded as done.
    let good = cli.dir.path().join("good.bundle");
    let done = cli.export(&good, "network", &public, &[]).ok().clone();
    assert_eq!(done["exported"], 1);
    assert_eq!(
        std::fs::metadata(&good).unwrap().len(),
        done["bytes"].as_u64().unwrap()
    );
    let allowed = export_outcomes(&cli)
        .into_iter()
        .filter(|(outcome, _)| outcome == "allowed")
        .count();
    assert_eq!(allowed, 2, "the subject's record and the summary");
}

/// Defect 1, second half: with a dangling symlink at FILE.pub, keygen-recipient refused with
/// `already_exists` but had already written the secret key FILE. A refusal writes nothing.
#[test]
fn keygen_recipient_refused_leaves_no_secret_key() {
    let cli = CliVault::init(DIM);
    let secret = cli.dir.path().join("recipient.key");
    let public = cli.dir.path().join("recipient.key.pub");
    std::os::unix::fs::symlink(cli.dir.path().join("nowhere"), &public).unwrap();
    cli.run(None, &["keygen-recipient", "--out", secret.to_str().unwrap()])
        .fails(2, "already_exists");
    assert!(!secret.exists(), "the secret key was written");
}

/// Defect 4: identify-batch cost exploded with k (2,000 probes at k=1000 took 68 s and 1.6 GB,
/// and each record listed 1,000 IDs). probes × k is capped, and a record names ten candidates
/// and digests the rest.
#[test]
fn identify_batch_is_capped_and_its_records_stay_small() {
    let cli = CliVault::init(DIM);
    let mut rng = Rng::new(8);
    let person = rng.gaussian_vec(DIM);
    // 30 captures of one person: all near each other, so every one is a candidate.
    let rows: Vec<f32> = (0..30)
        .flat_map(|_| {
            person
                .iter()
                .map(|v| v + 0.1 * rng.gaussian())
                .collect::<Vec<_>>()
        })
        .collect();
    let batch = cli.file("batch.f32", &le_bytes(&rows));
    cli.admin(&CliVault::consented("enrol-batch", &batch)).ok();
    let probes = cli.file("probes.f32", &le_bytes(&person.repeat(2000)));
    let message = cli
        .operator(&["identify-batch", "--probes", &probes, "--k", "1000"])
        .fails(2, "invalid_argument");
    assert!(message.contains("100000 candidates"), "{message}");

    let few = cli.file("few.f32", &le_bytes(&person.repeat(3)));
    let answer = cli
        .operator(&["identify-batch", "--probes", &few, "--k", "30"])
        .ok()
        .clone();
    assert_eq!(answer["results"][0].as_array().unwrap().len(), 30);
    let records: Vec<Value> = cli
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "identify" && r["outcome"] == "allowed")
        .collect();
    assert_eq!(records.len(), 3);
    let detail = records[0]["detail"].as_str().unwrap();
    assert!(detail.len() < 600, "{} bytes: {detail}", detail.len());
    assert_eq!(detail.matches(',').count(), 9, "ten listed: {detail}");
    assert!(detail.contains(" more=20 more_sha256="), "{detail}");
}

/// Defect 6: `set-threshold 0.4004` was logged as `0.400 -> 0.400`, and a negative threshold was
/// taken and logged as `-0.000`. The exact value is logged, and a negative one refused.
#[test]
fn threshold_changes_are_logged_exactly_and_negative_ones_refused() {
    let cli = CliVault::init(DIM);
    assert_eq!(cli.admin(&["set-threshold", "0.4004"]).ok()["threshold"], 0.4004);
    let message = cli
        .admin(&["set-threshold", "-0.0004"])
        .fails(2, "invalid_argument");
    assert!(message.contains("from 0 to 1"), "{message}");
    cli.admin(&["set-threshold", "-0"]).ok();
    let changes: Vec<String> = cli
        .audit()
        .iter()
        .filter(|r| r["action"] == "set_threshold" && r["outcome"] == "allowed")
        .map(|r| r["detail"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        changes,
        [
            "model=test-model threshold 0.4 -> 0.4004",
            "model=test-model threshold 0.4004 -> 0"
        ]
    );
    assert_eq!(cli.stats()["threshold"], 0.0);
}

/// Defect 7: retention had no upper bound; absurd ceilings and periods saturated to an expiry 292
/// million years away. Art. 8 asks for the shortest time the purpose needs: ten years at most.
#[test]
fn retention_beyond_ten_years_is_refused() {
    for days in ["3654", "106751991167"] {
        let dir = tempfile::tempdir().unwrap();
        let cli = CliVault {
            db: dir.path().join("v.db"),
            key: dir.path().join("k.key"),
            dir,
        };
        let message = cli
            .run(
                None,
                &[
                    "init",
                    "--dim",
                    "8",
                    "--admin",
                    ADMIN,
                    "--max-retention-days",
                    days,
                ],
            )
            .fails(2, "invalid_argument");
        assert!(message.contains("3653 days"), "{message}");
        assert!(!cli.db.exists() && !cli.key.exists());
    }
    let cli = CliVault::init(DIM);
    let template = cli.file("t.f32", &le_bytes(&Rng::new(5).gaussian_vec(DIM)));
    for period in [
        ["--retention-secs", "9223372036854775807"],
        ["--retention-days", "3654"],
    ] {
        let mut args = CliVault::consented("enrol", &template);
        args.extend(period);
        cli.admin(&args).fails(2, "invalid_argument");
    }
    assert_eq!(cli.stats()["subjects"], 0);
}

/// Defect 8: with stdout unwritable, `enroll` exited 1 in silence although the subject was
/// enrolled. The answer, with the subject's ID, now goes to stderr.
#[test]
fn a_committed_change_whose_answer_cannot_be_printed_says_what_was_done() {
    let cli = CliVault::init(DIM);
    let template = cli.file("t.f32", &le_bytes(&Rng::new(6).gaussian_vec(DIM)));
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_facevault"))
        .arg("--db")
        .arg(&cli.db)
        .arg("--key-file")
        .arg(&cli.key)
        .args(["--as", ADMIN, "enroll", "--template", &template])
        .args(["--notice", NOTICE_VERSION, "--consent-method", CONSENT_METHOD])
        .env("FACEVAULT_PASSWORD", ADMIN_PASSWORD)
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"], "output_failed");
    let subject = error["answer"]["subject"].as_str().unwrap();
    let enrolled: Vec<Value> = cli
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "enrol" && r["outcome"] == "allowed")
        .collect();
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0]["subject"], subject);
}

/// Defect 9: a repeated key in a notice, bidirectional overrides in its text, and a misleading
/// message for a tiny probe.
#[test]
fn duplicate_keys_bidi_overrides_and_tiny_probes_are_refused_plainly() {
    let cli = CliVault::init(DIM);
    let twice = notice_json("v2").replacen('{', "{\"version\":\"v3\",", 1);
    let file = cli.file("twice.json", twice.as_bytes());
    let message = cli
        .admin(&["notice", "publish", "--file", &file])
        .fails(2, "usage");
    assert!(message.contains("duplicate field `version`"), "{message}");

    let mut notice = notice("v2");
    notice.purpose = "entry \u{202E}gnidliub eht ot".into();
    let file = cli.file("bidi.json", serde_json::to_string(&notice).unwrap().as_bytes());
    let message = cli
        .admin(&["notice", "publish", "--file", &file])
        .fails(2, "invalid_argument");
    assert!(message.contains("bidirectional"), "{message}");
    assert!(cli.admin(&["notice", "due"]).ok()["version"] == NOTICE_VERSION);

    let tiny = cli.file("tiny.f32", &le_bytes(&[1e-30; DIM]));
    let message = cli
        .operator(&["identify", "--probe", &tiny])
        .fails(2, "zero_vector");
    assert!(message.contains("below 0.000001"), "{message}");
}
