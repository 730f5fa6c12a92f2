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

/// The unallocated area of each b-tree page of the database file at `path` (between its cell
/// pointers and its cells), as SQLite's file format lays it out.
#[cfg(not(feature = "sqlcipher"))]
fn unallocated_areas(path: &std::path::Path) -> Vec<(usize, Vec<u8>)> {
    let file = std::fs::read(path).unwrap();
    unallocated_ranges(&file)
        .into_iter()
        .map(|(page, range)| (page, file[range].to_vec()))
        .collect()
}

/// Each b-tree page's number and its unallocated area's place in `file`, a database image.
#[cfg(not(feature = "sqlcipher"))]
fn unallocated_ranges(file: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
    let page_size = match u16::from_be_bytes([file[16], file[17]]) {
        1 => 65536,
        size => usize::from(size),
    };
    let word = |page: &[u8], at: usize| usize::from(u16::from_be_bytes([page[at], page[at + 1]]));
    file.chunks(page_size)
        .enumerate()
        .filter_map(|(index, page)| {
            let at = if index == 0 { 100 } else { 0 };
            let header = match page[at] {
                2 | 5 => 12,
                10 | 13 => 8,
                _ => return None,
            };
            let pointers_end = at + header + 2 * word(page, at + 3);
            let content_start = match word(page, at + 5) {
                0 => 65536,
                start => start,
            };
            let start = index * page_size;
            Some((index + 1, start + pointers_end..start + content_start))
        })
        .collect()
}

/// A purge of half of 600 subjects in one transaction: as rows go, SQLite rebuilds pages, and a
/// rebuilt page kept the old bytes between its cell pointers and its cells, copies of cells that
/// moved, which `secure_delete` never reaches (one purged subject's wrapped key was found so
/// after a purge of 2,000). No b-tree page of the file may hold a byte there, and no 16 bytes of
/// a purged subject's wrapped key or ciphertexts may be left in the file or the WAL.
/// (Not with the whole-file layer: its pages are encrypted, and passed on as they are.)
#[cfg(not(feature = "sqlcipher"))]
#[test]
fn a_bulk_purge_leaves_no_stale_copy_in_any_page() {
    let dim = 64;
    let tv = TestVault::new(dim);
    let mut faces = Faces::new(dim, 8, 33);
    let short = facevault::Enrolment {
        retention_secs: Some(3600),
        ..consent()
    };
    let mut expiring = Vec::new();
    for _ in 0..3 {
        let people: Vec<Vec<f32>> = (0..100).map(|_| faces.person()).collect();
        expiring.extend(tv.vault.enrol_batch(&tv.admin, &short, &people.concat()).unwrap());
        let people: Vec<Vec<f32>> = (0..100).map(|_| faces.person()).collect();
        tv.vault
            .enrol_batch(&tv.admin, &consent(), &people.concat())
            .unwrap();
    }
    let secrets: Vec<Vec<u8>> = expiring
        .iter()
        .flat_map(|subject| stored_secrets(&tv.path, subject))
        .collect();
    assert_eq!(secrets.len(), 600, "a wrapped key and a template each");

    tv.clock.advance(3_600_001);
    assert_eq!(tv.vault.purge_expired().unwrap().len(), 300);

    let stale: Vec<usize> = unallocated_areas(&tv.path)
        .into_iter()
        .filter(|(_, area)| area.iter().any(|byte| *byte != 0))
        .map(|(page, _)| page)
        .collect();
    assert_eq!(stale, Vec::<usize>::new(), "pages with stale bytes");
    assert_gone_from_files(&tv.path, &windows::<16>(&secrets), "purged subjects' bytes");
}

/// What a build before facevault's VFS could leave: bytes of deleted rows in the free space of
/// pages that no change has rewritten since. They are planted here, in every b-tree page with room,
/// into a closed vault. Opening it and working with it leaves them where they are; `compact`
/// rewrites the file from its rows and leaves none, in the file or the WAL, and the vault opens
/// afterwards with everything it held, the compaction in its audit.
#[cfg(not(feature = "sqlcipher"))]
#[test]
fn compacting_clears_what_an_older_build_left_in_pages() {
    const RESIDUE: &[u8; 24] = b"a purged subject's key!!";
    let count_planted = |path: &std::path::Path| {
        let file = std::fs::read(path).unwrap();
        file.windows(RESIDUE.len())
            .filter(|window| window == RESIDUE)
            .count()
    };
    let dim = 64;
    let tv = TestVault::new(dim);
    let mut faces = Faces::new(dim, 8, 34);
    let people: Vec<Vec<f32>> = (0..300).map(|_| faces.person()).collect();
    let enrolled = tv
        .vault
        .enrol_batch(&tv.admin, &consent(), &people.concat())
        .unwrap();
    for subject in &enrolled[..150] {
        tv.vault.erase(&tv.admin, subject).unwrap();
    }
    let TestVault {
        dir,
        path,
        clock,
        vault,
        ..
    } = tv;
    vault.close().unwrap();
    let mut file = std::fs::read(&path).unwrap();
    let mut planted = 0;
    for (_, area) in unallocated_ranges(&file) {
        if area.len() >= RESIDUE.len() {
            file[area.start..area.start + RESIDUE.len()].copy_from_slice(RESIDUE);
            planted += 1;
        }
    }
    std::fs::write(&path, &file).unwrap();
    assert!(planted >= 3, "only {planted} pages had room");

    // Opened, enrolled into and closed: most pages are not rewritten, and keep what they held.
    let tv = TestVault::open(dir, path, clock);
    tv.vault
        .enrol(&tv.admin, &consent(), &faces.person()[..])
        .unwrap();
    let tv = tv.reopen();
    let kept = count_planted(&tv.path);
    assert!(
        kept > 0,
        "the planted bytes survive ordinary use ({planted} planted)"
    );

    let compacted = tv.vault.compact(&tv.admin).unwrap();
    assert!(
        compacted.file_bytes_after < compacted.file_bytes_before,
        "{compacted:?}: the erased subjects' pages are gone"
    );
    assert_eq!(count_planted(&tv.path), 0, "in the file after compacting");
    assert_eq!(count_planted(&tv.wal_path()), 0, "in the WAL after compacting");
    let tv = tv.reopen();
    assert_eq!(count_planted(&tv.path), 0, "in the file after closing");
    let stats = tv.vault.stats(&tv.admin).unwrap();
    assert_eq!(stats.subjects, 151);
    for (person, subject) in people.iter().zip(&enrolled).skip(150).step_by(30) {
        assert!(
            tv.vault
                .verify(&tv.operator, subject, &person[..])
                .unwrap()
                .matched
        );
    }
    tv.vault.verify_audit(&tv.admin).unwrap();
    let records = audited(&tv.vault, ADMIN, "compact");
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].detail,
        format!(
            "file rewritten from its rows: {} -> {} bytes",
            compacted.file_bytes_before, compacted.file_bytes_after
        )
    );
}

/// `facevault compact`: an admin's reports the file's size before and after; an operator's is
/// refused as forbidden, and both are in the audit.
#[test]
fn the_cli_compacts_for_an_admin_only() {
    let cli = CliVault::init(8);
    let subject = cli.enrol(ADMIN, &Rng::new(5).gaussian_vec(8), &[]);
    cli.admin(&["erase", "--subject", &subject]).ok();
    cli.operator(&["compact"]).fails(3, "forbidden");
    let compacted = cli.admin(&["compact"]).ok()["compacted"].clone();
    let (before, after) = (
        compacted["file_bytes_before"].as_u64().unwrap(),
        compacted["file_bytes_after"].as_u64().unwrap(),
    );
    assert!(0 < after && after <= before, "{compacted}");
    let audit = cli.admin(&["audit", "show"]).ok().clone();
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "compact")
        .map(|entry| entry["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["denied", "allowed"]);
}
