//! Lookup speed through the `Vault`, the path firmware calls: verify and identify (both scan
//! modes) at 10k, 100k and 1M templates of d=512, batch enrolment throughput, and the time to open
//! a vault. The gallery is clustered and face-like (a few hundred identities' centres, people
//! spread around them), as `../shared/bench/gen_gallery.py` makes it.
//!
//!     cargo bench --bench lookup                     every size (the 1M gallery takes minutes)
//!     FACEVAULT_BENCH_SIZES=10000,100000 cargo bench --bench lookup
//!
//! These report; the comparison with FAISS lives in `examples/identify_bench.rs` and
//! `../shared/bench/compare.sh`, which time both on the same files in the same run.
#![allow(missing_docs, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use facevault::{
    Enrolment, FixedKey, Notice, Password, Role, ScanMode, Session, SubjectId, Vault, VaultConfig,
};

const DIM: usize = 512;
const KEY: [u8; 32] = [0x42; 32];
const ADMIN_PASSWORD: &str = "benchmark admin";
const GATE_PASSWORD: &str = "benchmark gate";

/// A small deterministic generator, so every run measures the same gallery.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn gaussian(&mut self) -> f32 {
        let u = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let v = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }

    fn vector(&mut self, scale: f32) -> Vec<f32> {
        (0..DIM).map(|_| scale * self.gaussian()).collect()
    }
}

/// `n` people around 256 identity centres, and noisy captures of some of them as probes.
fn faces(n: usize) -> (Vec<f32>, Vec<(usize, Vec<f32>)>) {
    let mut rng = Rng(0x5eed_0000 + n as u64);
    let centres: Vec<Vec<f32>> = (0..256).map(|_| rng.vector(1.0)).collect();
    let mut gallery = Vec::with_capacity(n * DIM);
    for person in 0..n {
        let spread = rng.vector(1.6);
        gallery.extend(centres[person % 256].iter().zip(spread).map(|(c, s)| c + s));
    }
    let probes = (0..64)
        .map(|i| {
            let who = (rng.next() % n as u64) as usize;
            let noise = rng.vector(0.6 + (i % 8) as f32 * 0.2);
            let row = &gallery[who * DIM..(who + 1) * DIM];
            (who, row.iter().zip(noise).map(|(r, e)| r + e).collect())
        })
        .collect();
    (gallery, probes)
}

fn notice() -> Notice {
    Notice {
        version: "bench".into(),
        processor_name: "benchmark".into(),
        processor_contact: "-".into(),
        purpose: "benchmark".into(),
        method: "1:N".into(),
        retention: "one run".into(),
        necessity_and_impact: "synthetic data".into(),
        rights: "-".into(),
    }
}

/// A fresh vault holding `gallery`, closed again; returns the subjects in row order.
fn build(path: &Path, scan: ScanMode, gallery: &[f32]) -> Vec<SubjectId> {
    let config = VaultConfig {
        scan,
        ..VaultConfig::new(DIM, "bench-model")
    };
    let password = Password::new(ADMIN_PASSWORD);
    let vault = Vault::create(path, &FixedKey::new(KEY), &config, "admin", &password).expect("create");
    let admin = vault.login("admin", &password).expect("login");
    vault
        .add_user(&admin, "gate", Role::Operator, &Password::new(GATE_PASSWORD))
        .expect("user");
    vault.publish_notice(&admin, &notice()).expect("notice");
    // The deployment profile and its impact assessment, without which nobody is enrolled.
    let profile =
        facevault::DeploymentProfile::from_json(include_str!("../examples/governance/profile.json"))
            .expect("governance");
    vault.set_profile(&admin, &profile).expect("governance");
    let assessment = facevault::Assessment::from_json(include_str!("../examples/governance/assessment.json"))
        .expect("governance");
    vault.add_assessment(&admin, &assessment).expect("governance");
    let consent = Enrolment::with_consent("bench", "synthetic");
    let mut subjects = Vec::with_capacity(gallery.len() / DIM);
    for chunk in gallery.chunks(50_000 * DIM) {
        subjects.extend(vault.enrol_batch(&admin, &consent, chunk).expect("enrol"));
    }
    vault.close().expect("close");
    subjects
}

fn open(path: &Path) -> (Vault, Session) {
    let vault = Vault::open(path, &FixedKey::new(KEY)).expect("open");
    let gate = vault.login("gate", &Password::new(GATE_PASSWORD)).expect("login");
    (vault, gate)
}

fn sizes() -> Vec<usize> {
    std::env::var("FACEVAULT_BENCH_SIZES")
        .ok()
        .map(|sizes| sizes.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000])
}

fn lookups(c: &mut Criterion) {
    for n in sizes() {
        let (gallery, probes) = faces(n);
        let dir = tempfile::tempdir().expect("temp dir");
        for scan in [ScanMode::Fast, ScanMode::Exact] {
            let path = dir.path().join(format!("{}.db", scan.as_str()));
            let subjects = build(&path, scan, &gallery);
            let (vault, gate) = open(&path);
            let mut group = c.benchmark_group(format!("n{n}"));
            group.sample_size(if n >= 1_000_000 { 10 } else { 30 });
            group.measurement_time(Duration::from_secs(if n >= 1_000_000 { 20 } else { 5 }));
            let mut next = 0;
            group.bench_function(BenchmarkId::new("identify", scan.as_str()), |b| {
                b.iter(|| {
                    next = (next + 1) % probes.len();
                    vault.identify(&gate, &probes[next].1, 1).expect("identify")
                })
            });
            if scan == ScanMode::Fast {
                group.bench_function("verify", |b| {
                    b.iter(|| {
                        next = (next + 1) % probes.len();
                        let (who, probe) = &probes[next];
                        vault.verify(&gate, &subjects[*who], probe).expect("verify")
                    })
                });
                let batch: Vec<f32> = probes.iter().take(16).flat_map(|(_, p)| p.clone()).collect();
                group.throughput(Throughput::Elements(16));
                group.bench_function("identify_batch_16", |b| {
                    b.iter(|| vault.identify_batch(&gate, &batch, 1).expect("batch"))
                });
            }
            group.finish();
            vault.close().expect("close");
            if n <= 100_000 && scan == ScanMode::Fast {
                let mut group = c.benchmark_group(format!("n{n}"));
                group.sample_size(10);
                group.bench_function("open", |b| b.iter(|| open(&path)));
                group.finish();
            }
        }
    }
}

fn enrolment(c: &mut Criterion) {
    let (gallery, _) = faces(10_000);
    let mut group = c.benchmark_group("enrol");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("batch_10000", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| build(&dir.path().join("enrol.db"), ScanMode::Fast, &gallery),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, lookups, enrolment);
criterion_main!(benches);
