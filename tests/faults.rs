//! The I/O-fault sweep (issue 16): each operation that writes runs with an injected I/O fault at
//! its n-th write, sync, truncate, delete or rename, for n = 1, 2, … until it completes without
//! meeting one, once with only the n-th failing and once with every one from the n-th on (`src/faults.rs`: SQLite's I/O through a faulting VFS, the vault's own files
//! through fault points). After every failure the vault must open cleanly with its key, pass
//! `PRAGMA integrity_check`, verify its audit chain, and be exactly as before the operation or
//! exactly as after it; an erasure that failed is retried, and then no byte of the erased
//! subject's key or templates may remain in the file or its WAL.
//!
//!     cargo test --features fault-injection --test faults -- --nocapture
//!
//! runs every fault point (the full sweep; it prints the points per operation).
//! `FACEVAULT_FAULT_STRIDE=K` tries every K-th point only, as `.ci/run` does;
//! `FACEVAULT_FAULT_ONLY=NAME` runs one operation's sweep.
#![cfg(all(feature = "fault-injection", not(feature = "sqlcipher")))]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use facevault::faults;
use facevault::{
    Clock, Enrolment, Error, KeyFile, ManualClock, OpenOptions, Password, RestoreOptions, Role, Session,
    SubjectId, Vault,
};

const DIM: usize = 16;

/// What a vault holds that an operation changes: each subject of the starting vault (present or
/// not, its templates and its consents' states), how many others there are and what they hold,
/// the models, the schema version and the lookups audited. New subjects' IDs are random, so they
/// are counted, not named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    known: BTreeMap<String, (Option<i64>, Vec<String>)>,
    others: (usize, i64, usize),
    models: Vec<(String, bool)>,
    version: i64,
    lookups_audited: i64,
    /// Compactions audited: a compaction changes no row, only how the file holds them.
    compactions: i64,
    /// Which master key opens it (`master.key` or, after a rekey, `new.key`).
    key: &'static str,
    /// Whether a finished backup file is there.
    backup: bool,
    /// Governance records (format version 4): profiles, assessments, calendars, filing events.
    governance: i64,
}

fn shape(start: &Start) -> Shape {
    let db = &start.db();
    let known = &start.ids();
    let conn = raw_db(db);
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    let version = one("PRAGMA user_version");
    let mut rows = BTreeMap::new();
    for id in known {
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let templates: Option<i64> = conn
            .query_row("SELECT templates FROM subjects WHERE id = ?1", [&bytes], |row| {
                row.get(0)
            })
            .ok();
        let mut consents: Vec<String> = conn
            .prepare("SELECT kind, withdrawn_at IS NOT NULL, erased_at IS NOT NULL FROM consents WHERE subject_id = ?1")
            .unwrap()
            .query_map([&bytes], |row| {
                Ok(format!("{}:{}:{}", row.get::<_, String>(0)?, row.get::<_, bool>(1)?, row.get::<_, bool>(2)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        consents.sort();
        rows.insert(id.clone(), (templates, consents));
    }
    let total_subjects = one("SELECT count(*) FROM subjects") as usize;
    let present = rows.values().filter(|(t, _)| t.is_some()).count();
    let known_templates: i64 = rows.values().filter_map(|(t, _)| *t).sum();
    let all_templates = one("SELECT count(*) FROM templates");
    let all_consents = one("SELECT count(*) FROM consents") as usize;
    let known_consents: usize = rows.values().map(|(_, c)| c.len()).sum();
    let models = if version >= 3 {
        conn.prepare("SELECT name, retired_at IS NOT NULL FROM models ORDER BY seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    } else {
        Vec::new()
    };
    let lookups_audited = one("SELECT count(*) FROM audit WHERE action = 'identify' AND outcome = 'allowed'");
    let compactions = one("SELECT count(*) FROM audit WHERE action = 'compact' AND outcome = 'allowed'");
    let governance = conn
        .query_row("SELECT count(*) FROM governance", [], |row| row.get(0))
        .unwrap_or(0);
    drop(conn);
    Shape {
        key: start.which_key(),
        backup: start.dir.path().join("new.fvbackup").exists(),
        known: rows,
        others: (
            total_subjects - present,
            all_templates - known_templates,
            all_consents - known_consents,
        ),
        models,
        version,
        lookups_audited,
        compactions,
        governance,
    }
}

/// A starting vault: files in a folder of their own, with the subjects the operations act on.
struct Start {
    dir: tempfile::TempDir,
    subjects: Vec<SubjectId>,
    clock: Arc<ManualClock>,
}

impl Start {
    fn db(&self) -> PathBuf {
        self.dir.path().join("vault.db")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    fn ids(&self) -> Vec<String> {
        self.subjects.iter().map(SubjectId::to_string).collect()
    }

    /// A copy of every file, in a new folder.
    fn copy(&self) -> Start {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        Start {
            dir,
            subjects: self.subjects.clone(),
            clock: Arc::new(ManualClock::new(self.clock.now())),
        }
    }

    fn options(&self) -> OpenOptions {
        OpenOptions {
            clock: self.clock.clone(),
            purge_interval: None,
            ..OpenOptions::default()
        }
    }

    /// The key file that opens the vault: exactly one of `master.key` and (after a rekey)
    /// `new.key` must.
    fn which_key(&self) -> &'static str {
        // Without a second key there is nothing to tell apart, and no opening is made: one
        // would migrate an older vault.
        if !self.dir.path().join("new.key").exists() {
            return "master.key";
        }
        let opens = |name: &str| {
            let options = OpenOptions {
                load_gallery: false,
                ..self.options()
            };
            match Vault::open_with(&self.db(), &KeyFile::new(self.dir.path().join(name)), options) {
                Ok(vault) => {
                    vault.close().unwrap();
                    true
                }
                Err(Error::WrongKey) | Err(Error::KeyFile { .. }) => false,
                Err(e) => panic!("opening with {name}: {e:?}"),
            }
        };
        match (opens("master.key"), opens("new.key")) {
            (true, false) => "master.key",
            (false, true) => "new.key",
            both => panic!("keys that open the vault (master.key, new.key): {both:?}"),
        }
    }

    fn open(&self) -> Result<(Vault, Session), Error> {
        self.open_with(self.options())
    }

    fn open_with(&self, options: OpenOptions) -> Result<(Vault, Session), Error> {
        let key = self.dir.path().join(self.which_key());
        let vault = Vault::open_with(&self.db(), &KeyFile::new(key), options)?;
        let admin = vault.login(ADMIN, &Password::new(FILE_ADMIN_PASSWORD))?;
        Ok((vault, admin))
    }
}

/// Twelve subjects (the fourth with a one-day retention, for the purge), a notice, an admin
/// and an operator, in files: the vault, its key, and the counter and erasure ledger beside it.
fn starting_vault() -> Start {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let (vault, admin) = key_file_vault(dir.path(), DIM, clock.clone());
    let mut rng = Rng::new(7);
    let mut subjects = Vec::new();
    for i in 0..12 {
        let enrolment = if i == 3 {
            Enrolment {
                retention_secs: Some(86_400),
                ..consent()
            }
        } else {
            consent()
        };
        subjects.push(vault.enrol(&admin, &enrolment, &rng.gaussian_vec(DIM)).unwrap());
    }
    vault
        .add_template(&admin, &subjects[0], &rng.gaussian_vec(DIM))
        .unwrap();
    vault.close().unwrap();
    Start { dir, subjects, clock }
}

/// One operation of the sweep, run on an open vault (or, for the migration and the restore, on
/// the files). It returns what the operation returned.
type Operation = Box<dyn Fn(&Start, Option<(&Vault, &Session)>) -> Result<(), Error>>;

struct Sweep {
    name: &'static str,
    /// Whether the operation opens the vault itself (the migration, the restore).
    opens: bool,
    /// A subject the operation erases: after a failure it is erased again, and then none of its
    /// bytes may remain.
    erases: Option<usize>,
    run: Operation,
}

fn stride() -> u64 {
    std::env::var("FACEVAULT_FAULT_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Runs `sweep` on copies of `start` with a fault at every point in turn; returns the points.
/// `FACEVAULT_FAULT_ONLY=NAME` runs only the sweep of that name.
fn run_sweep(start: &Start, sweep: &Sweep) -> u64 {
    if std::env::var("FACEVAULT_FAULT_ONLY").is_ok_and(|only| only != sweep.name) {
        return 0;
    }
    let before = shape(start);
    // A clean run gives the state after, and the number of fault points.
    let clean = start.copy();
    let opened = (!sweep.opens).then(|| clean.open().unwrap());
    faults::arm(0, false);
    (sweep.run)(&clean, opened.as_ref().map(|(v, s)| (v, s))).unwrap();
    let points = faults::disarm().points;
    if let Some((vault, _)) = opened {
        vault.close().unwrap();
    }
    let after = shape(&clean);
    assert_ne!(
        before, after,
        "{}: the operation changes nothing the sweep can see",
        sweep.name
    );

    let secrets: HashSet<[u8; 16]> = match sweep.erases {
        Some(index) => windows::<16>(&stored_secrets(&start.db(), &start.subjects[index])),
        None => HashSet::new(),
    };
    let (mut as_before, mut as_after) = (0, 0);
    let tries = (1..=points)
        .step_by(stride() as usize)
        .flat_map(|n| [(n, false), (n, true)]);
    for (n, persistent) in tries {
        let copy = start.copy();
        let opened = (!sweep.opens).then(|| copy.open().unwrap());
        faults::arm(n, persistent);
        let result = (sweep.run)(&copy, opened.as_ref().map(|(v, s)| (v, s)));
        let report = faults::disarm();
        assert!(
            report.fired == 1 || (persistent && report.fired >= 1),
            "{} at {n}: {report:?}",
            sweep.name
        );
        let n = if persistent {
            format!("{n} on")
        } else {
            n.to_string()
        };
        if let Some((vault, _)) = opened {
            let _ = vault.close();
        }
        // Read before anything opens it again: an opening may migrate or purge.
        let now = shape(&copy);
        let integrity: String = raw_db(&copy.db())
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "{} at {n}", sweep.name);
        // A migration of several steps commits each on its own: a whole vault of a version in
        // between, holding all the same, is as good as the one before (the next opening goes on).
        let midway = now.version > before.version
            && now.version < after.version
            && [&before, &after].iter().any(|end| {
                now == Shape {
                    version: now.version,
                    ..(*end).clone()
                }
            });
        if now == before || midway {
            as_before += 1;
        } else if now == after {
            as_after += 1;
        } else {
            panic!(
                "{} at {n} ({result:?}): a half-state\nbefore {before:?}\nafter  {after:?}\nnow    {now:?}",
                sweep.name
            );
        }
        // The vault opens with its key, its audit chain verifies, and it loads whole.
        let no_gallery = OpenOptions {
            load_gallery: false,
            ..copy.options()
        };
        let (vault, admin) = copy
            .open_with(no_gallery)
            .unwrap_or_else(|e| panic!("{} at {n} ({result:?}): does not open: {e:?}", sweep.name));
        vault
            .verify_audit(&admin)
            .unwrap_or_else(|e| panic!("{} at {n}: the audit chain: {e:?}", sweep.name));
        vault.close().unwrap();
        let (vault, admin) = copy.open().unwrap();
        if let (Some(index), true) = (sweep.erases, now == before) {
            // The erasure failed: it is retried (unless the opening's purge took the subject),
            // and then nothing of the subject remains.
            match vault.erase(&admin, &copy.subjects[index]) {
                Ok(()) | Err(Error::UnknownSubject(_)) => {}
                Err(e) => panic!("{} at {n}: the retried erasure: {e:?}", sweep.name),
            }
        }
        vault.close().unwrap();
        if sweep.erases.is_some() {
            assert_gone_from_files(
                &copy.db(),
                &secrets,
                &format!("{} at {n}: erased bytes", sweep.name),
            );
        }
    }
    eprintln!(
        "{:<14} {points:>3} fault points, each failing once and from then on: {as_before} left it as before, {as_after} as after",
        sweep.name
    );
    points
}

fn sweeps() -> Vec<Sweep> {
    let template = |seed: u64| Rng::new(seed).gaussian_vec(DIM);
    vec![
        Sweep {
            name: "rekey",
            opens: false,
            erases: None,
            run: Box::new(|start, v| {
                let (vault, admin) = v.unwrap();
                let new_keys = KeyFile::create(start.dir.path().join("new.key"))?;
                vault.rekey(admin, &new_keys)
            }),
        },
        Sweep {
            name: "backup",
            opens: false,
            erases: None,
            run: Box::new(|start, v| {
                let (vault, admin) = v.unwrap();
                vault
                    .backup_to_file(admin, &start.dir.path().join("new.fvbackup"))
                    .map(drop)
            }),
        },
        Sweep {
            name: "enrol",
            opens: false,
            erases: None,
            run: Box::new(move |_, v| {
                let (vault, admin) = v.unwrap();
                vault.enrol(admin, &consent(), &template(100)).map(drop)
            }),
        },
        Sweep {
            name: "enrol_batch",
            opens: false,
            erases: None,
            run: Box::new(move |_, v| {
                let (vault, admin) = v.unwrap();
                let rows: Vec<f32> = (0..5).flat_map(|i| template(200 + i)).collect();
                vault.enrol_batch(admin, &consent(), &rows).map(drop)
            }),
        },
        Sweep {
            name: "erase",
            opens: false,
            erases: Some(0),
            run: Box::new(|start, v| {
                let (vault, admin) = v.unwrap();
                vault.erase(admin, &start.subjects[0])
            }),
        },
        Sweep {
            name: "withdraw",
            opens: false,
            erases: Some(1),
            run: Box::new(|start, v| {
                let (vault, admin) = v.unwrap();
                vault.withdraw_consent(admin, &start.subjects[1])
            }),
        },
        Sweep {
            name: "purge",
            opens: false,
            erases: Some(3),
            run: Box::new(|start, v| {
                let (vault, admin) = v.unwrap();
                start.clock.advance(2 * 86_400_000);
                vault.purge(admin).map(drop)
            }),
        },
        Sweep {
            name: "profile",
            opens: false,
            erases: None,
            run: Box::new(|_, v| {
                let (vault, admin) = v.unwrap();
                let moved = facevault::DeploymentProfile {
                    purpose: "entry to the Acme office building and its car park".into(),
                    ..profile()
                };
                vault.set_profile(admin, &moved).map(drop)
            }),
        },
        Sweep {
            name: "decommission",
            opens: false,
            erases: Some(2),
            run: Box::new(|_, v| {
                let (vault, admin) = v.unwrap();
                let id = vault.stats(admin)?.vault_id;
                vault
                    .decommission(admin, &facevault::decommission_confirmation(&id))
                    .map(drop)
            }),
        },
        Sweep {
            name: "compact",
            opens: false,
            erases: None,
            run: Box::new(|_, v| {
                let (vault, admin) = v.unwrap();
                vault.compact(admin).map(drop)
            }),
        },
        Sweep {
            name: "identify+audit",
            opens: false,
            erases: None,
            run: Box::new(move |_, v| {
                let (vault, admin) = v.unwrap();
                vault.add_user(admin, "gate2", Role::Operator, &Password::new("gate password 2"))?;
                let gate = vault.login("gate2", &Password::new("gate password 2"))?;
                for i in 0..5 {
                    vault.identify(&gate, &template(300 + i), 1)?;
                }
                vault.flush_audit()
            }),
        },
    ]
}

/// The restore's starting point: the vault backed up, then one more subject enrolled and one
/// erased. Restored, the new subject is gone (a change lost) and the erased one stays erased.
fn vault_after_its_backup() -> Start {
    let start = starting_vault();
    let (vault, admin) = start.open().unwrap();
    vault
        .backup_to_file(&admin, &start.dir.path().join("old.fvbackup"))
        .unwrap();
    vault
        .enrol(&admin, &consent(), &Rng::new(400).gaussian_vec(DIM))
        .unwrap();
    vault.erase(&admin, &start.subjects[5]).unwrap();
    vault.close().unwrap();
    start
}

fn restore_sweep() -> Sweep {
    Sweep {
        name: "restore",
        opens: true,
        erases: None,
        run: Box::new(|start, _| {
            let options = RestoreOptions {
                force: true,
                open: start.options(),
            };
            let (vault, _) = Vault::restore(
                &start.dir.path().join("old.fvbackup"),
                &start.db(),
                &KeyFile::new(start.key()),
                ADMIN,
                &Password::new(FILE_ADMIN_PASSWORD),
                options,
            )?;
            vault.close()
        }),
    }
}

/// The fixture of format `version` (`tests/testdata/vault-v<version>`), migrated by its opening.
fn fixture_vault(version: i64) -> Start {
    let dir = tempfile::tempdir().unwrap();
    let view = copy_fixture(
        &format!("vault-v{version}"),
        &format!("v{version}-view.json"),
        dir.path(),
    );
    let made_at = view["audit"]["entries"].as_array().unwrap().last().unwrap()["at"]
        .as_i64()
        .unwrap();
    Start {
        dir,
        subjects: Vec::new(),
        clock: Arc::new(ManualClock::new(made_at + 60_000)),
    }
}

fn migration_sweep() -> Sweep {
    Sweep {
        name: "migration",
        opens: true,
        erases: None,
        run: Box::new(|start, _| {
            let vault = Vault::open_with(&start.db(), &KeyFile::new(start.key()), start.options())?;
            vault.close()
        }),
    }
}

#[test]
fn every_fault_point_of_every_operation_leaves_the_vault_before_or_after() {
    let start = starting_vault();
    let mut total = 0;
    for sweep in sweeps() {
        total += run_sweep(&start, &sweep);
    }
    total += run_sweep(&vault_after_its_backup(), &restore_sweep());
    total += run_sweep(&fixture_vault(2), &migration_sweep());
    total += run_sweep(&fixture_vault(3), &migration_sweep());
    eprintln!("{total} fault points in all, every {} tried", stride());
}
