//! The turnstile's camera thread, measured while the front desk works (the firmware issue's
//! latency and throughput figures).
//!
//!     cargo run --release --example camera_latency -- [N] [DIM]      (default 100000 512)
//!
//! Enrols N synthetic people, reopens the vault as a device would, then:
//! 1. the camera thread identifies in a loop with the desk idle, for a few seconds;
//! 2. the camera goes on while a desk thread logs in, enrols 50 people one by one and withdraws
//!    10 of them; only the camera's lookups made during the desk's work are counted;
//! 3. throughput: as many identifies as possible for a few seconds on one thread, then on two.
//!
//! Prints one JSON object: p50, p99 and max of the camera's identify in both phases, their
//! ratio, and identifies per second on one and two threads. Every call goes through the `Vault`
//! and its audit, as firmware calls it.

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use facevault::{Enrolment, FixedKey, Notice, Password, Role, Session, SubjectId, Vault, VaultConfig};

/// A small deterministic generator (xorshift64*), so that runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.next().max(1e-12), self.next());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    fn face(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.gaussian()).collect()
    }
}

fn summary(mut micros: Vec<f64>) -> serde_json::Value {
    micros.sort_by(f64::total_cmp);
    let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
    let round = |x: f64| (x * 10.0).round() / 10.0;
    serde_json::json!({
        "count": micros.len(),
        "p50_us": round(at(0.5)),
        "p99_us": round(at(0.99)),
        "max_us": round(micros[micros.len() - 1]),
    })
}

/// Identifies in a loop until `stop`, and returns each call's time (µs) with when it started.
fn camera(vault: &Vault, gate: &Session, probes: &[Vec<f32>], stop: &AtomicBool) -> Vec<(Instant, f64)> {
    let mut times = Vec::new();
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let found = vault.identify(gate, &probes[next % probes.len()], 1);
        times.push((started, started.elapsed().as_secs_f64() * 1e6));
        assert!(found.is_ok(), "the camera's identify failed: {found:?}");
        next += 1;
    }
    times
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(100_000), |a| a.parse())?;
    let dim: usize = args.get(2).map_or(Ok(512), |a| a.parse())?;
    let phase = Duration::from_secs(3);
    let mut rng = Rng(0x5eed_f00d);

    let work = tempfile::tempdir()?;
    let path = work.path().join("camera.db");
    let key = FixedKey::new([0x24; 32]);
    let admin_password = Password::new("camera bench admin");
    let vault = Vault::create(
        &path,
        &key,
        &VaultConfig::new(dim, "bench-model"),
        "admin",
        &admin_password,
    )?;
    let admin = vault.login("admin", &admin_password)?;
    let gate_password = Password::new("camera bench gate");
    let desk_password = Password::new("camera bench desk");
    vault.add_user(&admin, "gate", Role::Operator, &gate_password)?;
    vault.add_user(&admin, "desk", Role::Enroller, &desk_password)?;
    vault.publish_notice(
        &admin,
        &Notice {
            version: "bench".into(),
            processor_name: "benchmark".into(),
            processor_contact: "-".into(),
            purpose: "benchmark".into(),
            method: "1:N at the turnstile".into(),
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
    let mut people = Vec::new();
    let mut enrolled = 0;
    while enrolled < n {
        let count = (n - enrolled).min(20_000);
        let rows: Vec<f32> = (0..count).flat_map(|_| rng.face(dim)).collect();
        if people.len() < 1000 {
            people.extend(
                rows.chunks_exact(dim)
                    .take(1000 - people.len())
                    .map(<[f32]>::to_vec),
            );
        }
        vault.enrol_batch(&admin, &consent, &rows)?;
        enrolled += count;
    }
    vault.close()?;

    let vault = Vault::open(&path, &key)?;
    let gate = vault.login("gate", &gate_password)?;
    // Captures of enrolled people: a little noise on each.
    let probes: Vec<Vec<f32>> = people
        .iter()
        .map(|face| face.iter().map(|v| v + 0.3 * rng.gaussian()).collect())
        .collect();
    let newcomers: Vec<Vec<f32>> = (0..50).map(|_| rng.face(dim)).collect();

    // 1. The desk idle.
    let stop = AtomicBool::new(false);
    let idle = std::thread::scope(|scope| {
        let camera = scope.spawn(|| camera(&vault, &gate, &probes, &stop));
        std::thread::sleep(phase);
        stop.store(true, Ordering::Relaxed);
        camera.join().map_err(|_| "the camera thread panicked")
    })?;

    // 2. The desk at work: a login, 50 enrolments, 10 withdrawals.
    stop.store(false, Ordering::Relaxed);
    let (busy, desk_window) = std::thread::scope(|scope| {
        let camera = scope.spawn(|| camera(&vault, &gate, &probes, &stop));
        std::thread::sleep(Duration::from_millis(500));
        let desk_started = Instant::now();
        let desk = (|| -> Result<(), Box<dyn Error>> {
            let desk = vault.login("desk", &desk_password)?;
            let mut added: Vec<SubjectId> = Vec::new();
            for face in &newcomers {
                added.push(vault.enrol(&desk, &consent, face)?);
            }
            for subject in &added[..10] {
                vault.withdraw_consent(&desk, subject)?;
            }
            Ok(())
        })();
        let desk_ended = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let times = camera.join().map_err(|_| "the camera thread panicked");
        desk.map_err(|e| e.to_string())?;
        Ok::<_, Box<dyn Error>>((times?, (desk_started, desk_ended)))
    })?;
    let during: Vec<f64> = busy
        .iter()
        .filter(|(started, _)| *started >= desk_window.0 && *started <= desk_window.1)
        .map(|(_, micros)| *micros)
        .collect();
    let idle: Vec<f64> = idle.into_iter().map(|(_, micros)| micros).collect();

    // 3. Throughput on one thread, then two.
    let throughput = |threads: usize| -> Result<f64, Box<dyn Error>> {
        stop.store(false, Ordering::Relaxed);
        let counts = std::thread::scope(|scope| {
            let cameras: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| camera(&vault, &gate, &probes, &stop).len()))
                .collect();
            std::thread::sleep(phase);
            stop.store(true, Ordering::Relaxed);
            cameras
                .into_iter()
                .map(|camera| camera.join().map_err(|_| "a camera thread panicked"))
                .collect::<Result<Vec<usize>, _>>()
        })?;
        Ok(counts.iter().sum::<usize>() as f64 / phase.as_secs_f64())
    };
    let one = throughput(1)?;
    let two = throughput(2)?;

    let idle = summary(idle);
    let during = summary(during);
    let ratio = during["p99_us"].as_f64().unwrap_or(0.0) / idle["p99_us"].as_f64().unwrap_or(1.0);
    let out = serde_json::json!({
        "n": n,
        "dim": dim,
        "desk_ms": (desk_window.1 - desk_window.0).as_secs_f64() * 1e3,
        "camera_desk_idle": idle,
        "camera_desk_busy": during,
        "p99_busy_over_idle": (ratio * 100.0).round() / 100.0,
        "identifies_per_s_1_thread": one.round(),
        "identifies_per_s_2_threads": two.round(),
        "two_over_one": (two / one * 100.0).round() / 100.0,
    });
    println!("{out}");
    vault.close()?;
    Ok(())
}
