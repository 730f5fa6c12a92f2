//! Matching quality: noisy captures of enrolled people are identified as the right subject,
//! impostors do not verify, and the threshold decides both.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use facevault::{Error, SubjectId};

// ArcFace-style 512-d: at this dimension the generator's impostor scores stay in 0.0-0.3.
const DIM: usize = 512;

struct Gallery {
    tv: TestVault,
    faces: Faces,
    people: Vec<Vec<f32>>,
    subjects: Vec<SubjectId>,
}

fn gallery(n: usize) -> Gallery {
    let tv = TestVault::new(DIM);
    let mut faces = Faces::new(DIM, 16, 77);
    let people: Vec<Vec<f32>> = (0..n).map(|_| faces.person()).collect();
    let subjects = tv
        .vault
        .enrol_batch(&tv.admin, &consent(), &people.concat())
        .unwrap();
    // Matching runs on what was decrypted at open, not on what was just enrolled.
    Gallery {
        tv: tv.reopen(),
        faces,
        people,
        subjects,
    }
}

#[test]
fn noisy_probes_are_identified_as_the_right_subject() {
    let mut g = gallery(500);
    let mut rng = Rng::new(5);
    for _ in 0..200 {
        let who = (rng.next_u64() % g.people.len() as u64) as usize;
        let noise = 0.6 + 0.6 * rng.uniform() as f32;
        let probe = g.faces.capture(&g.people[who], noise);
        let candidates = g.tv.vault.identify(&g.tv.operator, &probe, 3).unwrap();
        assert_eq!(candidates[0].subject, g.subjects[who], "noise {noise}");
        assert!(
            candidates
                .windows(2)
                .all(|w| w[0].score.unwrap() >= w[1].score.unwrap()),
            "best first"
        );
        assert!(
            candidates.iter().all(|c| c.score.unwrap() >= 0.4),
            "{candidates:?}"
        );
        let verdict =
            g.tv.vault
                .verify(&g.tv.operator, &g.subjects[who], &probe)
                .unwrap();
        assert!(
            verdict.matched,
            "genuine probe rejected at noise {noise}: {}",
            verdict.score.unwrap()
        );
    }
}

#[test]
fn impostors_do_not_verify_or_identify() {
    let mut g = gallery(300);
    let mut rng = Rng::new(6);
    for _ in 0..200 {
        let stranger = g.faces.person();
        let probe = g.faces.capture(&stranger, 0.8);
        let claimed = g.subjects[(rng.next_u64() % g.subjects.len() as u64) as usize];
        let verdict = g.tv.vault.verify(&g.tv.operator, &claimed, &probe).unwrap();
        assert!(
            !verdict.matched,
            "impostor accepted with score {:?}",
            verdict.score
        );
        assert!(verdict.score.unwrap() < 0.4);
        let found = g.tv.vault.identify(&g.tv.operator, &probe, 5).unwrap();
        assert!(found.is_empty(), "impostor identified: {found:?}");
    }
}

#[test]
fn scores_are_rounded_and_identical_to_exact_cosine() {
    let mut g = gallery(50);
    let probe = g.faces.capture(&g.people[3], 1.0);
    let verdict = g.tv.vault.verify(&g.tv.operator, &g.subjects[3], &probe).unwrap();
    let exact = dot(&normalised(&probe), &normalised(&g.people[3]));
    assert!(
        (verdict.score.unwrap() - f64::from(exact)).abs() <= 0.0005 + 1e-6,
        "{} vs {exact}",
        verdict.score.unwrap()
    );
    let score = verdict.score.unwrap();
    assert_eq!(score, (score * 1000.0).round() / 1000.0);
}

#[test]
fn the_threshold_decides_and_its_change_is_audited() {
    let mut g = gallery(20);
    let probe = g.faces.capture(&g.people[0], 1.0);
    let score =
        g.tv.vault
            .verify(&g.tv.operator, &g.subjects[0], &probe)
            .unwrap()
            .score
            .unwrap() as f32;
    g.tv.vault.set_threshold(&g.tv.admin, score + 0.01).unwrap();
    assert!(
        !g.tv
            .vault
            .verify(&g.tv.operator, &g.subjects[0], &probe)
            .unwrap()
            .matched
    );
    assert!(g.tv.vault.identify(&g.tv.operator, &probe, 1).unwrap().is_empty());
    // The setting survives reopening.
    let Gallery { tv, .. } = g;
    let tv = tv.reopen();
    assert_eq!(tv.vault.stats(&tv.admin).unwrap().threshold as f32, score + 0.01);
    assert!(matches!(
        tv.vault.set_threshold(&tv.admin, 2.0),
        Err(Error::InvalidArgument {
            what: "threshold",
            ..
        })
    ));
    assert!(matches!(
        tv.vault.set_threshold(&tv.operator, 0.1),
        Err(Error::Forbidden { .. })
    ));
    let log = tv.vault.audit_log(&tv.admin).unwrap();
    let changes: Vec<_> = log
        .iter()
        .filter(|r| r.action == "set_threshold")
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        changes,
        [
            facevault::Outcome::Allowed,
            facevault::Outcome::Denied,
            facevault::Outcome::Denied
        ]
    );
}

#[test]
fn several_templates_per_subject_count_once_with_the_best_score() {
    let mut g = gallery(30);
    let extra = g.faces.capture(&g.people[4], 0.3);
    g.tv.vault
        .add_template(&g.tv.admin, &g.subjects[4], &extra)
        .unwrap();
    let candidates = g.tv.vault.identify(&g.tv.operator, &extra, 10).unwrap();
    assert_eq!(
        candidates.iter().filter(|c| c.subject == g.subjects[4]).count(),
        1
    );
    assert_eq!(candidates[0].subject, g.subjects[4]);
    assert_eq!(candidates[0].score, Some(1.0));
    let stats = g.tv.vault.stats(&g.tv.admin).unwrap();
    assert_eq!((stats.subjects, stats.templates), (30, 31));
}

#[test]
fn a_session_from_another_vault_or_opening_is_refused() {
    let a = gallery(3);
    let b = TestVault::new(DIM);
    let probe = a.people[0].clone();
    assert!(matches!(
        a.tv.vault.identify(&b.operator, &probe, 1),
        Err(Error::ForeignSession)
    ));
    // While it is open, the file cannot be opened again, in this process or another.
    let key = facevault::FixedKey::new(KEY);
    let busy = facevault::Vault::open(&a.tv.path, &key);
    assert!(
        matches!(busy, Err(Error::Busy(ref path)) if *path == a.tv.path),
        "{busy:?}"
    );
    // A later opening of the same file does not honour the first opening's sessions.
    let TestVault {
        dir: _dir,
        path,
        vault,
        operator,
        ..
    } = a.tv;
    vault.close().unwrap();
    let again = facevault::Vault::open(&path, &key).unwrap();
    assert!(matches!(
        again.identify(&operator, &probe, 1),
        Err(Error::ForeignSession)
    ));
    let own = again
        .login(OPERATOR, &facevault::Password::new(OPERATOR_PASSWORD))
        .unwrap();
    assert_eq!(again.identify(&own, &probe, 1).unwrap()[0].subject, a.subjects[0]);
}

#[test]
fn exact_and_fast_scans_give_the_same_answers_through_the_vault() {
    use facevault::{FixedKey, Password, ScanMode, Vault, VaultConfig};
    let mut faces = Faces::new(DIM, 16, 99);
    let people: Vec<Vec<f32>> = (0..400).map(|_| faces.person()).collect();
    let probes: Vec<Vec<f32>> = (0..100).map(|i| faces.capture(&people[i * 3], 1.2)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Vec::new();
    for scan in [ScanMode::Exact, ScanMode::Fast] {
        let path = dir.path().join(format!("{}.db", scan.as_str()));
        // The lowest threshold, so that every probe has its three candidates to compare.
        let config = VaultConfig {
            scan,
            threshold: 0.0,
            ..VaultConfig::new(DIM, "test-model")
        };
        let password = Password::new(ADMIN_PASSWORD);
        let vault = Vault::create(&path, &FixedKey::new(KEY), &config, ADMIN, &password).unwrap();
        let admin = vault.login(ADMIN, &password).unwrap();
        vault
            .add_user(
                &admin,
                OPERATOR,
                facevault::Role::Operator,
                &Password::new(OPERATOR_PASSWORD),
            )
            .unwrap();
        vault.publish_notice(&admin, &notice(NOTICE_VERSION)).unwrap();
        govern(&vault, &admin);
        vault.enrol_batch(&admin, &consent(), &people.concat()).unwrap();
        vault.close().unwrap();
        let vault = Vault::open(&path, &FixedKey::new(KEY)).unwrap();
        let operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
        let admin = vault.login(ADMIN, &password).unwrap();
        assert_eq!(vault.stats(&admin).unwrap().scan, scan);
        // Subject IDs differ between the two vaults; compare enrolment row order instead.
        let order: Vec<facevault::SubjectId> = {
            let log = vault.audit_log(&admin).unwrap();
            log.iter()
                .filter(|r| r.action == "enrol_batch")
                .map(|r| r.subject.clone().unwrap().parse().unwrap())
                .collect()
        };
        let rows: Vec<Vec<usize>> = probes
            .iter()
            .map(|probe| {
                vault
                    .identify(&operator, probe, 3)
                    .unwrap()
                    .iter()
                    .map(|c| order.iter().position(|s| *s == c.subject).unwrap())
                    .collect()
            })
            .collect();
        assert!(
            rows.iter().all(|row| row.len() == 3),
            "a probe had fewer than 3 candidates"
        );
        answers.push(rows);
    }
    assert_eq!(answers[0], answers[1]);
}

#[test]
fn a_batch_and_a_threaded_identify_answer_as_one_probe_at_a_time_and_each_probe_is_audited() {
    let mut g = gallery(300);
    let mut rng = Rng::new(9);
    let mut probes = Vec::new();
    for i in 0..20 {
        if i % 4 == 3 {
            // An impostor, which should find no one above the threshold.
            probes.extend(g.faces.person());
        } else {
            let who = (rng.next_u64() % g.people.len() as u64) as usize;
            probes.extend(g.faces.capture(&g.people[who], 0.8));
        }
    }
    let one_at_a_time: Vec<_> = probes
        .chunks_exact(DIM)
        .map(|probe| g.tv.vault.identify(&g.tv.operator, probe, 3).unwrap())
        .collect();
    assert!(one_at_a_time.iter().any(Vec::is_empty) && one_at_a_time.iter().any(|c| !c.is_empty()));
    let before = g.tv.vault.audit_log(&g.tv.admin).unwrap().len();
    let batch = g.tv.vault.identify_batch(&g.tv.operator, &probes, 3).unwrap();
    assert_eq!(batch, one_at_a_time);
    let log = g.tv.vault.audit_log(&g.tv.admin).unwrap();
    // 20 identify records, then the audit show that listed them.
    let identifies = log[before..].iter().filter(|r| r.action == "identify").count();
    assert_eq!(identifies, 20);

    g.tv.vault.set_lookup_threads(2).unwrap();
    for (probe, expected) in probes.chunks_exact(DIM).zip(&one_at_a_time) {
        assert_eq!(&g.tv.vault.identify(&g.tv.operator, probe, 3).unwrap(), expected);
    }
    for bad in [0, facevault::MAX_LOOKUP_THREADS + 1] {
        assert!(matches!(
            g.tv.vault.set_lookup_threads(bad),
            Err(Error::InvalidArgument { what: "threads", .. })
        ));
    }
    // A batch with one bad row is refused whole, and audited once.
    let mut bad = probes.clone();
    bad[DIM + 3] = f32::NAN;
    assert!(g.tv.vault.identify_batch(&g.tv.operator, &bad, 1).is_err());
    let after = g.tv.vault.audit_log(&g.tv.admin).unwrap();
    let refused: Vec<_> = after[log.len()..]
        .iter()
        .filter(|r| r.action == "identify")
        .collect();
    assert!(
        refused.len() >= 21,
        "the threaded identifies and the refusal are audited"
    );
    assert!(
        refused.last().unwrap().detail.starts_with("not_a_number"),
        "{:?}",
        refused.last()
    );
}

#[test]
fn identify_batch_through_the_binary() {
    let cli = CliVault::init(8);
    let people: Vec<Vec<f32>> = (0..6).map(|i| unit(Rng::new(i).gaussian_vec(8))).collect();
    let subjects: Vec<String> = people.iter().map(|p| cli.enrol("p", p, &[])).collect();
    let probes = cli.file(
        "probes.f32",
        &le_bytes(&[people[4].clone(), people[1].clone()].concat()),
    );
    let out = cli.operator(&["identify-batch", "--probes", &probes, "--k", "1"]);
    let results = out.ok()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0][0]["subject"], subjects[4].as_str());
    assert_eq!(results[1][0]["subject"], subjects[1].as_str());
    let probe = cli.file("probe.f32", &le_bytes(&people[2]));
    let out = cli.operator(&["identify", "--probe", &probe, "--threads", "2"]);
    assert_eq!(out.ok()["candidates"][0]["subject"], subjects[2].as_str());
    cli.operator(&["identify", "--probe", &probe, "--threads", "0"])
        .fails(2, "usage");
}

/// Review item 16: a command that does not match need not decrypt the gallery. A vault opened
/// without it enrols, erases, purges, exports and counts from the store, refuses lookups, and
/// a full opening afterwards sees every change.
#[test]
fn a_vault_opened_without_its_gallery_changes_data_but_does_not_match() {
    use facevault::{Destination, ExportRequest, FixedKey, OpenOptions, Password, RecipientSecretKey, Vault};
    let tv = TestVault::new(16);
    let (dir, path, clock) = (tv.dir, tv.path, tv.clock);
    let mut faces = Faces::new(16, 3, 21);
    let people: Vec<Vec<f32>> = (0..4).map(|_| faces.person()).collect();
    let vault = tv.vault;
    let admin = tv.admin;
    let kept: Vec<SubjectId> = people[..3]
        .iter()
        .map(|person| vault.enrol(&admin, &consent(), person).unwrap())
        .collect();
    vault.close().unwrap();

    let options = || OpenOptions {
        clock: clock.clone(),
        load_gallery: false,
        ..OpenOptions::default()
    };
    let vault = Vault::open_with(&path, &FixedKey::new(KEY), options()).unwrap();
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    let operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
    let stats = vault.stats(&admin).unwrap();
    assert!(!stats.gallery_loaded);
    assert_eq!((stats.subjects, stats.templates, stats.memory_bytes), (3, 3, 0));
    let refused = vault.verify(&operator, &kept[0], &people[0]);
    assert!(
        matches!(refused, Err(Error::InvalidArgument { what: "lookup", .. })),
        "{refused:?}"
    );
    assert!(vault.identify(&operator, &people[0], 1).is_err());

    let added = vault.enrol(&admin, &consent(), &people[3]).unwrap();
    vault
        .add_template(&admin, &added, &faces.capture(&people[3], 0.3))
        .unwrap();
    vault.erase(&admin, &kept[1]).unwrap();
    let recipient = RecipientSecretKey::from_bytes([3; 32]);
    let request = ExportRequest {
        destination: Destination::Local,
        recipient: recipient.public_key(),
        subjects: vec![],
        model: None,
    };
    let exporter_password = Password::new("exporter password");
    vault
        .add_user(&admin, "exp", facevault::Role::Exporter, &exporter_password)
        .unwrap();
    let exporter = vault.login("exp", &exporter_password).unwrap();
    let bundle = vault.export(&exporter, &request).unwrap();
    let contents = facevault::open_bundle(&recipient, &bundle.bytes).unwrap();
    assert_eq!(contents.subjects.len(), 3);
    let exported: usize = contents.subjects.iter().map(|s| s.templates.len()).sum();
    assert_eq!(
        exported, 4,
        "the added subject's two templates and one each for the others"
    );
    // Past every expiry: the purge finds them from the stored rows, each MAC checked.
    clock.advance(400 * 86_400_000);
    let purged = vault.purge(&admin).unwrap();
    assert_eq!(purged.len(), 3);
    assert!(!purged.contains(&kept[1]), "erased before the purge");
    assert_eq!(vault.stats(&admin).unwrap().subjects, 0);
    vault.close().unwrap();

    let vault = Vault::open_with_clock(&path, &FixedKey::new(KEY), clock.clone()).unwrap();
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    let stats = vault.stats(&admin).unwrap();
    assert!(stats.gallery_loaded);
    assert_eq!((stats.subjects, stats.templates), (0, 0));
    assert_eq!(
        vault.verify_audit(&admin).unwrap() as usize,
        vault.audit_log(&admin).unwrap().len() - 1
    );
    drop(dir);
}

/// Firmware issue, the CLI for people: a progress observer hears how far a batch enrolment and a
/// purge have got, from the first item to the last (the CLI draws it as a bar on a terminal).
#[test]
fn bulk_operations_report_their_progress() {
    use std::sync::{Arc, Mutex};
    let tv = TestVault::new(16);
    type Heard = Vec<(&'static str, usize, usize)>;
    let heard: Arc<Mutex<Heard>> = Arc::default();
    let into = Arc::clone(&heard);
    tv.vault
        .set_progress(Some(Arc::new(move |operation, done, total| {
            into.lock().unwrap().push((operation, done, total));
        })));
    let mut faces = Faces::new(16, 4, 31);
    let rows: Vec<f32> = (0..600).flat_map(|_| faces.person()).collect();
    let enrolment = facevault::Enrolment {
        retention_secs: Some(60),
        ..consent()
    };
    tv.vault.enrol_batch(&tv.admin, &enrolment, &rows).unwrap();
    tv.clock.advance(61_000);
    assert_eq!(tv.vault.purge(&tv.admin).unwrap().len(), 600);
    let heard = heard.lock().unwrap().clone();
    let expected: Vec<(&str, usize, usize)> = ["enrol_batch", "purge"]
        .into_iter()
        .flat_map(|operation| [0, 256, 512, 600].map(|done| (operation, done, 600)))
        .collect();
    assert_eq!(heard, expected);
}
