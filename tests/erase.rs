//! Erasure: the subject stops matching at once, and its wrapped key and template ciphertexts are
//! gone from the database file and the WAL (crypto-shredding plus secure delete plus a truncating
//! checkpoint).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::*;
use facevault::Error;

#[test]
fn an_erased_subject_is_gone_from_matching_the_file_and_the_wal() {
    let dim = 128;
    let tv = TestVault::new(dim);
    let mut faces = Faces::new(dim, 8, 21);
    let people: Vec<Vec<f32>> = (0..60).map(|_| faces.person()).collect();
    let subjects = tv
        .vault
        .enrol_batch(&tv.admin, &consent(), &people.concat())
        .unwrap();
    let target = subjects[17];
    tv.vault
        .add_template(&tv.admin, &target, &faces.capture(&people[17], 0.4))
        .unwrap();
    let tv = tv.reopen();

    let secrets = stored_secrets(&tv.path, &target);
    assert_eq!(secrets.len(), 3, "one wrapped key and two templates");
    let needles: HashSet<[u8; 16]> = windows::<16>(&secrets);
    let probe = faces.capture(&people[17], 0.5);
    assert!(tv.vault.verify(&tv.operator, &target, &probe).unwrap().matched);
    assert_eq!(
        tv.vault.identify(&tv.operator, &probe, 1).unwrap()[0].subject,
        target
    );

    tv.vault.erase(&tv.admin, &target).unwrap();

    assert!(
        matches!(tv.vault.verify(&tv.operator, &target, &probe), Err(Error::UnknownSubject(s)) if s == target)
    );
    assert!(tv
        .vault
        .identify(&tv.operator, &probe, 10)
        .unwrap()
        .iter()
        .all(|c| c.subject != target));
    assert!(matches!(
        tv.vault.erase(&tv.admin, &target),
        Err(Error::UnknownSubject(_))
    ));
    // Everyone else is untouched.
    for (person, subject) in people.iter().zip(&subjects).filter(|(_, s)| **s != target) {
        assert_eq!(
            tv.vault.identify(&tv.operator, person, 1).unwrap()[0].subject,
            *subject
        );
    }
    let stats = tv.vault.stats(&tv.admin).unwrap();
    assert_eq!((stats.subjects, stats.templates), (59, 59));

    // Still open: the WAL has been truncated and neither file holds any 16 bytes of the secrets.
    assert_gone_from_files(&tv.path, &needles, "erased bytes");
    let tv = tv.reopen();
    assert_gone_from_files(&tv.path, &needles, "erased bytes");
    assert!(matches!(
        tv.vault.verify(&tv.operator, &target, &probe),
        Err(Error::UnknownSubject(_))
    ));
    let conn = raw_db(&tv.path);
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM templates WHERE subject_id = ?1",
            [&target.as_bytes()[..]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn erasure_is_audited_with_the_subject() {
    let tv = TestVault::new(16);
    let subject = tv
        .vault
        .enrol(&tv.admin, &consent(), &Rng::new(1).gaussian_vec(16))
        .unwrap();
    tv.vault.erase(&tv.admin, &subject).unwrap();
    let log = tv.vault.audit_log(&tv.admin).unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.subject.clone()),
        ("erase", Some(subject.to_string()))
    );
    assert_eq!(last.detail, "templates=1");
}
