//! The lookup benchmark that `../shared/bench/compare.sh` runs beside FAISS on the same files.
//!
//!     cargo run --release --example identify_bench -- DIR [--scan fast|exact]
//!     FACEVAULT_BENCH_SCAN=exact ../shared/bench/compare.sh N    (the exact mode beside FAISS)
//!     FACEVAULT_BENCH_KEEP=DIR ...   (keep the enrolled vault in DIR and reuse it next time)
//!     FACEVAULT_BENCH_SKIP_BACKUP=1 ... (skip timing a sealed backup and its restore)
//!     FACEVAULT_BENCH_MODELS=2 ...   (a second face model loaded beside the first, with as many
//!                                     templates of its own; lookups go to the first)
//!
//! Reads a gallery written by `gen_gallery.py`, enrols `gallery.f32` into a fresh vault (one
//! subject per row, in row order), reopens it (timing the open), runs every probe of `queries.f32`
//! through `identify` (k=1) one at a time, verifies each probe against its true subject, and prints
//! one JSON object. Everything timed goes through the `Vault`, its door and its audit, as firmware
//! calls it. The vault's threshold is set to 0, its lowest, so that, like FAISS, identify names a
//! top-1 for every probe that resembles anyone at all (a face-like probe's best score is positive).

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use facevault::{
    Enrolment, FixedKey, Notice, OpenOptions, Password, Role, ScanMode, SubjectId, TemplateInput, Vault,
    VaultConfig,
};

/// The second model of `FACEVAULT_BENCH_MODELS=2`.
const SECOND_MODEL: &str = "bench-model-b";

fn read_f32(path: &Path) -> Result<Vec<f32>, Box<dyn Error>> {
    let bytes = std::fs::read(path)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn normalised(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut out = rows.to_vec();
    for row in out.chunks_exact_mut(dim) {
        let norm = row
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        row.iter_mut().for_each(|v| *v = (f64::from(*v) / norm) as f32);
    }
    out
}

/// The exact answer, computed here independently of the vault: the row with the highest inner
/// product (first on ties), summed in f64 over eight lanes so that it is both exact enough and
/// quick enough to check a million rows.
fn exact_top1(gallery: &[f32], dim: usize, query: &[f32]) -> usize {
    let mut best = (f64::NEG_INFINITY, 0);
    for (index, row) in gallery.chunks_exact(dim).enumerate() {
        let mut lanes = [0f64; 8];
        for (a, b) in row.chunks_exact(8).zip(query.chunks_exact(8)) {
            for lane in 0..8 {
                lanes[lane] += f64::from(a[lane]) * f64::from(b[lane]);
            }
        }
        let tail: f64 = row
            .chunks_exact(8)
            .remainder()
            .iter()
            .zip(query.chunks_exact(8).remainder())
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let score = lanes.iter().sum::<f64>() + tail;
        if score > best.0 {
            best = (score, index);
        }
    }
    best.1
}

/// A fresh vault at `path` with one subject per row of `gallery`, in row order, closed: the
/// subjects and the seconds the enrolment took.
fn enrol_all(
    path: &Path,
    key: &FixedKey,
    password: &Password,
    scan: ScanMode,
    dim: usize,
    gallery: &[f32],
) -> Result<(Vec<SubjectId>, f64), Box<dyn Error>> {
    let n = gallery.len() / dim;
    let config = VaultConfig {
        threshold: 0.0,
        scan,
        ..VaultConfig::new(dim, "bench-model")
    };
    let vault = Vault::create(path, key, &config, "admin", password)?;
    let admin = vault.login("admin", password)?;
    vault.add_user(&admin, "gate", Role::Operator, &Password::new("benchmark gate"))?;
    vault.publish_notice(
        &admin,
        &Notice {
            version: "bench".into(),
            processor_name: "benchmark".into(),
            processor_contact: "-".into(),
            purpose: "benchmark".into(),
            method: "1:N".into(),
            retention: "one run".into(),
            necessity_and_impact: "synthetic data".into(),
            rights: "-".into(),
        },
    )?;
    // The deployment profile and its impact assessment, without which nobody is enrolled.
    let profile = facevault::DeploymentProfile::from_json(include_str!("governance/profile.json"))?;
    vault.set_profile(&admin, &profile)?;
    let assessment = facevault::Assessment::from_json(include_str!("governance/assessment.json"))?;
    vault.add_assessment(&admin, &assessment)?;
    let consent = Enrolment::with_consent("bench", "synthetic");
    let started = Instant::now();
    let mut subjects: Vec<SubjectId> = Vec::with_capacity(n);
    for chunk in gallery.chunks(50_000 * dim) {
        subjects.extend(vault.enrol_batch(&admin, &consent, chunk)?);
    }
    let enrol_s = started.elapsed().as_secs_f64();
    vault.close()?;
    Ok((subjects, enrol_s))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: identify_bench DIR [--scan fast|exact]")?;
    let dir = Path::new(dir);
    // `compare.sh` passes only DIR, so the mode can also come from FACEVAULT_BENCH_SCAN.
    let scan: ScanMode = match args.get(2).map(String::as_str) {
        Some("--scan") => args.get(3).ok_or("--scan needs fast or exact")?.parse()?,
        _ => match std::env::var("FACEVAULT_BENCH_SCAN") {
            Ok(mode) => mode.parse()?,
            Err(_) => ScanMode::default(),
        },
    };
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json"))?)?;
    let dim = meta["dim"].as_u64().ok_or("meta.json has no dim")? as usize;
    let gallery = read_f32(&dir.join("gallery.f32"))?;
    let queries = read_f32(&dir.join("queries.f32"))?;
    let truth: Vec<usize> = std::fs::read(dir.join("truth.i32"))?
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let n = gallery.len() / dim;

    // FACEVAULT_BENCH_KEEP=DIR keeps the vault (and its subjects, in row order) in DIR and reuses
    // it on the next run instead of enrolling again: for repeated runs at 1M, where enrolment
    // takes minutes. The JSON then has no enrol_per_s, and the vault keeps the scan mode it was made with.
    let kept = std::env::var_os("FACEVAULT_BENCH_KEEP").map(std::path::PathBuf::from);
    let work = tempfile::tempdir()?;
    let home = kept.clone().unwrap_or_else(|| work.path().to_path_buf());
    let path = home.join("bench.db");
    let subjects_path = home.join("subjects.txt");
    let key = FixedKey::new([0x42; 32]);
    let password = Password::new("benchmark admin");
    let reused = kept.is_some() && path.exists() && subjects_path.exists();
    let (subjects, enrol_s) = if reused {
        let listed = std::fs::read_to_string(&subjects_path)?;
        let subjects = listed
            .lines()
            .map(str::parse)
            .collect::<Result<Vec<SubjectId>, _>>()?;
        if subjects.len() != n {
            return Err(format!(
                "{} lists {} subjects, not {n}",
                subjects_path.display(),
                subjects.len()
            )
            .into());
        }
        (subjects, None)
    } else {
        let (subjects, enrol_s) = enrol_all(&path, &key, &password, scan, dim, &gallery)?;
        if kept.is_some() {
            let listed: String = subjects.iter().map(|subject| format!("{subject}\n")).collect();
            std::fs::write(&subjects_path, listed)?;
        }
        (subjects, Some(enrol_s))
    };

    // A model change in progress: a second model with a gallery as large as the first, its
    // templates the gallery's rows with every other sign flipped (same spread, other vectors),
    // enrolled once; every lookup below names no model, and so goes to the first.
    let second_model = std::env::var("FACEVAULT_BENCH_MODELS").is_ok_and(|models| models == "2");
    if second_model && !reused {
        let vault = Vault::open(&path, &key)?;
        let admin = vault.login("admin", &password)?;
        vault.add_model(&admin, SECOND_MODEL, dim, 0.0)?;
        let flipped: Vec<f32> = gallery
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 2 == 1 { -v } else { *v })
            .collect();
        let consent = Enrolment::with_consent("bench", "synthetic");
        for chunk in flipped.chunks(50_000 * dim) {
            vault.enrol_batch(
                &admin,
                &consent,
                TemplateInput::values(chunk).from_model(SECOND_MODEL),
            )?;
        }
        vault.close()?;
    }

    let started = Instant::now();
    let vault = Vault::open(&path, &key)?;
    let open_s = started.elapsed().as_secs_f64();
    let gate = vault.login("gate", &Password::new("benchmark gate"))?;
    let admin = vault.login("admin", &password)?;
    let stats = vault.stats(&admin)?;

    let row_of: std::collections::HashMap<SubjectId, usize> = subjects
        .iter()
        .enumerate()
        .map(|(row, subject)| (*subject, row))
        .collect();
    let mut identify_us = Vec::new();
    let mut found = Vec::new();
    for query in queries.chunks_exact(dim) {
        let started = Instant::now();
        let candidates = vault.identify(&gate, query, 1)?;
        identify_us.push(started.elapsed().as_secs_f64() * 1e6);
        found.push(candidates.first().and_then(|c| row_of.get(&c.subject).copied()));
    }
    let mut verify_us = Vec::new();
    for (query, row) in queries.chunks_exact(dim).zip(&truth) {
        // The caller holds the ID it asks about (read off a card, say) before it asks.
        let subject = subjects[*row];
        let started = Instant::now();
        vault.verify(&gate, &subject, query)?;
        verify_us.push(started.elapsed().as_secs_f64() * 1e6);
    }
    vault.flush_audit()?;

    // FACEVAULT_BENCH_SKIP_EXACT skips the slow independent reference (for profiling runs).
    let check_exact = std::env::var_os("FACEVAULT_BENCH_SKIP_EXACT").is_none();
    let normal = if check_exact {
        normalised(&gallery, dim)
    } else {
        Vec::new()
    };
    let mut agree = 0usize;
    let mut right = 0usize;
    for ((query, row), answer) in queries.chunks_exact(dim).zip(&truth).zip(&found) {
        if check_exact {
            let exact = exact_top1(&normal, dim, &normalised(query, dim));
            agree += usize::from(*answer == Some(exact));
        }
        right += usize::from(*answer == Some(*row));
    }
    // A sealed backup of the whole vault and its restore over it (the vault closed between):
    // the issue-15 cost figures. FACEVAULT_BENCH_SKIP_BACKUP skips them (at 1M the snapshot
    // is gigabytes in memory).
    let (backup_s, restore_s, backup_bytes) = if std::env::var_os("FACEVAULT_BENCH_SKIP_BACKUP").is_none() {
        let place = tempfile::tempdir()?;
        let file = place.path().join("bench.fvbackup");
        let started = Instant::now();
        let info = vault.backup_to_file(&admin, &file)?;
        let backup_s = started.elapsed().as_secs_f64();
        vault.close()?;
        let started = Instant::now();
        let options = facevault::RestoreOptions {
            force: true,
            open: OpenOptions {
                load_gallery: false,
                purge_interval: None,
                ..OpenOptions::default()
            },
        };
        let (restored, _) = Vault::restore(&file, &path, &key, "admin", &password, options)?;
        let restore_s = started.elapsed().as_secs_f64();
        restored.close()?;
        (Some(backup_s), Some(restore_s), Some(info.file_bytes))
    } else {
        vault.close()?;
        (None, None, None)
    };
    let count = found.len() as f64;
    identify_us.sort_by(f64::total_cmp);
    verify_us.sort_by(f64::total_cmp);
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    let out = serde_json::json!({
        "n": n,
        "dim": dim,
        "mode": scan.as_str(),
        "kernel": stats.kernel,
        "code_kernel": stats.code_kernel,
        "cpu": stats.cpu,
        "vault_scan": stats.scan.as_str(),
        "identify_p50_us": round(percentile(&identify_us, 0.5), 1),
        "identify_p99_us": round(percentile(&identify_us, 0.99), 1),
        "verify_p50_us": round(percentile(&verify_us, 0.5), 2),
        "verify_p99_us": round(percentile(&verify_us, 0.99), 2),
        "top1_agrees_with_exact": agree as f64 / count,
        "identification_rate": right as f64 / count,
        "open_s": round(open_s, 3),
        "enrol_per_s": enrol_s.map(|seconds| round(n as f64 / seconds, 0)),
        "bytes_per_template": round(stats.memory_bytes as f64 / stats.templates as f64, 1),
        "models": stats.models,
        "templates_loaded": stats.templates,
        "backup_s": backup_s.map(|seconds| round(seconds, 3)),
        "restore_s": restore_s.map(|seconds| round(seconds, 3)),
        "backup_bytes": backup_bytes,
    });
    println!("{out}");
    Ok(())
}
