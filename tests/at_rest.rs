//! Templates at rest: nothing of a template's bytes, raw or normalised, reaches the database file
//! or its WAL, and neither does the master key.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn no_12_byte_window_of_any_template_reaches_the_file_or_the_wal() {
    let dim = 512;
    let tv = TestVault::new(dim);
    let mut faces = Faces::new(dim, 16, 7);
    // Templates as a model hands them over: not unit length, so raw and normalised bytes differ.
    let people: Vec<Vec<f32>> = (0..300)
        .map(|i| {
            faces
                .person()
                .iter()
                .map(|v| v * (1.5 + i as f32 / 100.0))
                .collect()
        })
        .collect();
    let batch: Vec<f32> = people[..200].concat();
    tv.vault.enrol_batch(&tv.admin, &consent(), &batch).unwrap();
    let mut second_templates = Vec::new();
    for person in &people[200..] {
        let subject = tv.vault.enrol(&tv.admin, &consent(), person).unwrap();
        let another = faces.capture(person, 0.5);
        tv.vault.add_template(&tv.admin, &subject, &another).unwrap();
        second_templates.push(another);
    }
    let mut sources: Vec<Vec<u8>> = Vec::new();
    for template in people.iter().chain(&second_templates) {
        sources.push(le_bytes(template));
        sources.push(le_bytes(&normalised(template)));
    }
    sources.push(KEY.to_vec());
    let needles = windows::<12>(&sources);
    assert!(
        needles.len() > 1_000_000,
        "the search covers every window: {}",
        needles.len()
    );

    // While open, the WAL holds the recent pages.
    let wal = read_or_empty(&tv.wal_path());
    assert!(!wal.is_empty(), "the WAL should hold the enrolments before close");
    for (name, bytes) in [("database", std::fs::read(&tv.path).unwrap()), ("WAL", wal)] {
        assert_eq!(
            find_any(&bytes, &needles),
            None,
            "template bytes found in the {name} file"
        );
    }

    let tv = tv.reopen();
    assert_eq!(tv.vault.stats(&tv.admin).unwrap().templates, 400);
    for path in [tv.path.clone(), tv.wal_path(), with_suffix(&tv.path, "-journal")] {
        assert_eq!(
            find_any(&read_or_empty(&path), &needles),
            None,
            "template bytes found in {path:?}"
        );
    }
}
