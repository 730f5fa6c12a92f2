//! The audit log: every attempt is recorded, allowed or refused, and editing, deleting or
//! reordering any record makes `audit verify` fail naming the first bad sequence number.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rusqlite::params;

const DIM: usize = 8;

/// A vault whose audit holds a mix of allowed and refused attempts.
fn busy_vault() -> CliVault {
    let cli = CliVault::init(DIM);
    let mut rng = Rng::new(4);
    let template = cli.file("t.f32", &le_bytes(&rng.gaussian_vec(DIM)));
    let bad = cli.file("bad.f32", &le_bytes(&rng.gaussian_vec(DIM - 1)));
    let subject = cli.enrol_file(&template, &[]);
    cli.operator(&["verify", "--subject", &subject, "--probe", &template])
        .ok();
    cli.operator(&["identify", "--probe", &template, "--k", "3"]).ok();
    cli.admin(&[
        "enroll",
        "--template",
        &bad,
        "--notice",
        NOTICE_VERSION,
        "--consent-method",
        CONSENT_METHOD,
    ])
    .fails(2, "wrong_dimension");
    cli.operator(&["erase", "--subject", &subject])
        .fails(3, "forbidden");
    cli.run(Some((ADMIN, "wrong-password")), &["stats"])
        .fails(3, "authentication_failed");
    cli.admin(&["set-threshold", "0.45"]).ok();
    cli.admin(&["erase", "--subject", &subject]).ok();
    cli
}

#[test]
fn every_attempt_allowed_or_refused_is_recorded_in_order() {
    let cli = busy_vault();
    let records = cli.audit();
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (ADMIN, "init", "allowed"),
        (ADMIN, "user_add", "allowed"),
        (ADMIN, "notice_publish", "allowed"),
        (ADMIN, "profile_set", "allowed"),
        (ADMIN, "pia_add", "allowed"),
        (ADMIN, "enrol", "allowed"),
        (OPERATOR, "verify", "allowed"),
        (OPERATOR, "identify", "allowed"),
        (ADMIN, "enrol", "denied"),
        (OPERATOR, "erase", "denied"),
        (ADMIN, "login", "denied"),
        (ADMIN, "set_threshold", "allowed"),
        (ADMIN, "erase", "allowed"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(summary, expected);
    for (n, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], n as u64 + 1);
    }
    // The subject concerned is named; the threshold change says from what to what.
    assert_eq!(records[6]["subject"], records[5]["subject"]);
    assert_eq!(records[11]["detail"], "model=test-model threshold 0.4 -> 0.45");
    assert!(records[7]["detail"]
        .as_str()
        .unwrap()
        .contains(records[5]["subject"].as_str().unwrap()));
    let verified = cli.admin(&["audit", "verify"]).ok().clone();
    assert_eq!(verified["ok"], true);
    assert_eq!(
        verified["entries"],
        records.len() as u64 + 1,
        "the audit show is itself recorded"
    );
}

/// Runs `edit` on the vault's audit table and returns the seq `audit verify` names.
fn broken_at(edit: impl FnOnce(&rusqlite::Connection)) -> u64 {
    let cli = busy_vault();
    edit(&raw_db(&cli.db));
    let run = cli.admin(&["audit", "verify"]);
    let message = run.fails(4, "audit_tampered");
    let seq = run.stderr["seq"].as_u64().unwrap();
    assert!(message.contains(&format!("record {seq} ")), "{message}");
    seq
}

#[test]
fn an_edited_record_is_named() {
    assert_eq!(
        broken_at(|db| {
            db.execute("UPDATE audit SET outcome = 'allowed' WHERE seq = 9", [])
                .unwrap();
        }),
        9
    );
    assert_eq!(
        broken_at(|db| {
            db.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 3", [])
                .unwrap();
        }),
        3
    );
    assert_eq!(
        broken_at(|db| {
            db.execute("UPDATE audit SET at = at - 86400000 WHERE seq = 10", [])
                .unwrap();
        }),
        10
    );
}

#[test]
fn a_deleted_record_is_named() {
    assert_eq!(
        broken_at(|db| {
            db.execute("DELETE FROM audit WHERE seq = 5", []).unwrap();
        }),
        5
    );
    // The last record too: the chain head kept beside the log says how long it should be. (An
    // attacker who also rewinds the head to the new last record is rolling the file back; that
    // needs the monotonic counter outside the file, see SECURITY.md.)
    assert_eq!(
        broken_at(|db| {
            db.execute("DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)", [])
                .unwrap();
        }),
        13
    );
    assert_eq!(
        broken_at(|db| {
            db.execute("DELETE FROM audit", []).unwrap();
        }),
        1
    );
}

#[test]
fn reordered_records_are_named() {
    assert_eq!(
        broken_at(|db| {
            // Swap the contents of records 4 and 8, keeping their sequence numbers.
            let row = |seq: i64| -> (i64, String, String, Option<String>, String, String, Vec<u8>) {
                db.query_row(
                    "SELECT at, actor, action, subject, outcome, detail, mac FROM audit WHERE seq = ?1",
                    [seq],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    },
                )
                .unwrap()
            };
            let (four, eight) = (row(4), row(8));
            for (seq, r) in [(4, eight), (8, four)] {
                db.execute(
                "UPDATE audit SET at=?1, actor=?2, action=?3, subject=?4, outcome=?5, detail=?6, mac=?7 WHERE seq=?8",
                params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, seq],
            )
            .unwrap();
            }
        }),
        4
    );
    assert_eq!(
        broken_at(|db| {
            // Renumber instead: move record 2 to the end.
            db.execute("UPDATE audit SET seq = 1000 WHERE seq = 2", [])
                .unwrap();
        }),
        2
    );
}

/// Firmware issue: an auditor reads the log by pages and verifies it from the point checked last
/// time, not from record 1. A checkpoint that is not this chain's record with that hash is refused,
/// and an edit after the checkpoint is still found.
#[test]
fn the_log_reads_by_pages_and_verifies_from_a_checkpoint() {
    let cli = busy_vault();
    let first = cli.admin(&["audit", "verify"]).ok().clone();
    let head_seq = first["head"]["seq"].as_u64().unwrap();
    let head_mac = first["head"]["hash"].as_str().unwrap().to_string();
    assert_eq!(first["entries"].as_u64().unwrap(), head_seq);

    // Pages: 4 at a time, in order, without gaps, up to the head verified above (each page read
    // is itself recorded, so the log grows as it is read).
    let mut after = 0u64;
    let mut seen = Vec::new();
    while after < head_seq {
        let page = cli
            .admin(&["audit", "show", "--after", &after.to_string(), "--limit", "4"])
            .ok()["entries"]
            .as_array()
            .unwrap()
            .clone();
        assert!(!page.is_empty() && page.len() <= 4);
        seen.extend(page.iter().map(|r| r["seq"].as_u64().unwrap()));
        after = *seen.last().unwrap();
    }
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, expected);
    assert!(seen.len() as u64 >= head_seq && seen.len() as u64 <= head_seq + 3);

    // From the checkpoint, only what came since: that verify and the page reads above.
    let verify_from =
        |seq: u64, mac: &str| cli.admin(&["audit", "verify", "--from", &seq.to_string(), "--hash", mac]);
    let since = verify_from(head_seq, &head_mac).ok().clone();
    assert_eq!(
        since["entries"].as_u64().unwrap(),
        since["head"]["seq"].as_u64().unwrap() - head_seq
    );
    assert!(since["entries"].as_u64().unwrap() > 1);

    // A checkpoint with another hash, or past the end, is not this chain's.
    let last_digit = if head_mac.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last_digit}", &head_mac[..63]);
    let run = verify_from(head_seq, &wrong);
    run.fails(4, "audit_tampered");
    assert_eq!(run.stderr["seq"], head_seq);
    verify_from(999_999, &head_mac).fails(4, "audit_tampered");

    // An edit after the checkpoint is found from it.
    let edited = head_seq + 2;
    raw_db(&cli.db)
        .execute(
            "UPDATE audit SET detail = 'edited' WHERE seq = ?1",
            params![edited as i64],
        )
        .unwrap();
    let run = verify_from(head_seq, &head_mac);
    run.fails(4, "audit_tampered");
    assert_eq!(run.stderr["seq"], edited);
}
