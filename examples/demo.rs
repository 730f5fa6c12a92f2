//! A guided tour: creates a vault in a temporary folder, enrols, verifies, identifies, erases and
//! checks the audit, printing each step.
//!
//!     cargo run --release --example demo

use std::error::Error;

use facevault::{
    Assessment, DeploymentProfile, Enrolment, KeyFile, Notice, Password, Role, Vault, VaultConfig,
};

const DIM: usize = 512;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("vault.db");
    let key_path = dir.path().join("master.key");

    step("create a master key file (32 random bytes, mode 0600)");
    let key = KeyFile::create(&key_path)?;
    println!("   {}", key_path.display());

    step("create the vault: 512-d templates of one face model, a first admin, and the deployment profile");
    // Who processes, for what one purpose, where, and the alternative to a face (Arts. 3-4, 10, 13).
    let profile = DeploymentProfile::from_json(include_str!("governance/profile.json"))?;
    println!(
        "   purpose: {}; place: {}",
        profile.purpose,
        profile.place.as_str()
    );
    let admin_password = Password::new("admin: correct horse battery");
    let config = VaultConfig {
        profile: Some(profile),
        ..VaultConfig::new(DIM, "arcface-r100")
    };
    let vault = Vault::create(&db, &key, &config, "admin", &admin_password)?;
    let admin = vault.login("admin", &admin_password)?;
    vault.add_user(
        &admin,
        "gate-01",
        Role::Operator,
        &Password::new("gate-01: staple battery"),
    )?;
    println!("   admin and operator gate-01 created");

    step("publish the notice people are told before enrolment (Art. 5)");
    let notice = Notice {
        version: "2026-11".into(),
        processor_name: "Acme Gates Ltd".into(),
        processor_contact: "privacy@acme.example".into(),
        purpose: "entry to the Acme office building".into(),
        method: "1:N face identification at the turnstiles".into(),
        retention: "while you work here, at most 90 days after enrolment".into(),
        necessity_and_impact: "replaces badges; a leak would expose a face template".into(),
        rights: "withdraw or ask for erasure at reception".into(),
    };
    vault.publish_notice(&admin, &notice)?;
    println!("   notice {} published", notice.version);

    step("record the impact assessment of that purpose and method: no enrolment before it (Art. 9)");
    let assessment = Assessment::from_json(include_str!("governance/assessment.json"))?;
    let recorded = vault.add_assessment(&admin, &assessment)?;
    println!(
        "   assessment of {} by {}: covers the profile: {}",
        assessment.date, assessment.author, recorded.covers_current_profile
    );

    step("enrol 1,000 people in one batch, each with a separate consent (Art. 6), kept 90 days (Art. 8)");
    let mut faces = Faces::new(7);
    let people: Vec<Vec<f32>> = (0..1000).map(|_| faces.person()).collect();
    let consent = Enrolment {
        retention_secs: Some(90 * 86_400),
        ..Enrolment::with_consent("2026-11", "signed form at reception")
    };
    let subjects = vault.enrol_batch(&admin, &consent, &people.concat())?;
    let alice = subjects[42];
    println!("   enrolled {}; subject 42 is {alice}", subjects.len());
    vault.close()?;

    step("reopen: check the key, decrypt every template into memory");
    let vault = Vault::open(&db, &key)?;
    let gate = vault.login("gate-01", &Password::new("gate-01: staple battery"))?;
    let admin = vault.login("admin", &admin_password)?;
    let stats = vault.stats(&admin)?;
    println!(
        "   {} subjects, {} templates, threshold {}",
        stats.subjects, stats.templates, stats.threshold
    );

    step("verify (1:1): a new capture of subject 42, then a stranger claiming to be 42");
    let capture = faces.capture(&people[42]);
    let genuine = vault.verify(&gate, &alice, &capture)?;
    println!(
        "   genuine:  match={} score={}",
        genuine.matched,
        shown(genuine.score)
    );
    let someone_else = faces.person();
    let stranger = faces.capture(&someone_else);
    let impostor = vault.verify(&gate, &alice, &stranger)?;
    println!(
        "   impostor: match={} score={}",
        impostor.matched,
        shown(impostor.score)
    );

    step("identify (1:N): who is this capture?");
    let found = vault.identify(&gate, &capture, 3)?;
    for candidate in &found {
        println!("   {} score={}", candidate.subject, shown(candidate.score));
    }
    println!(
        "   stranger: {} candidates",
        vault.identify(&gate, &stranger, 3)?.len()
    );

    step("an operator may not erase; the refusal is audited");
    match vault.erase(&gate, &alice) {
        Err(e) => println!("   refused: {e}"),
        Ok(()) => return Err("an operator erased a subject".into()),
    }

    step("subject 42 withdraws consent: key shredded first, then templates; the WAL is truncated");
    vault.withdraw_consent(&admin, &alice)?;
    println!(
        "   identify now: {} candidates",
        vault.identify(&gate, &capture, 3)?.len()
    );
    println!(
        "   verify now: {}",
        vault
            .verify(&gate, &alice, &capture)
            .err()
            .map_or("?".into(), |e| e.to_string())
    );

    step("check the audit chain and show its last records");
    let verified = vault.verify_audit(&admin)?;
    println!("   audit chain intact: {verified} records");
    let log = vault.audit_log(&admin)?;
    for record in log.iter().rev().take(6).rev() {
        println!(
            "   #{:<3} {:<8} {:<13} {:<8} {}",
            record.seq,
            record.actor,
            record.action,
            record.outcome.as_str(),
            record.detail.chars().take(60).collect::<String>()
        );
    }
    vault.close()?;
    println!("\ndone; the temporary folder is removed");
    Ok(())
}

fn step(text: &str) {
    println!("\n== {text}");
}

/// Face-like synthetic embeddings: people cluster around demographic centres, and each capture of
/// a person adds noise (genuine pairs score about 0.6-0.8, strangers 0.0-0.3).
struct Faces {
    centres: Vec<Vec<f32>>,
    state: u64,
}

impl Faces {
    fn new(seed: u64) -> Self {
        let mut faces = Self {
            centres: Vec::new(),
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        faces.centres = (0..32)
            .map(|_| unit((0..DIM).map(|_| faces.gaussian()).collect()))
            .collect();
        faces
    }

    fn person(&mut self) -> Vec<f32> {
        let pick = (self.next() % 32) as usize;
        let centre = self.centres[pick].clone();
        let scale = 1.6 / (DIM as f32).sqrt();
        unit(centre.iter().map(|c| c + scale * self.gaussian()).collect())
    }

    fn capture(&mut self, person: &[f32]) -> Vec<f32> {
        let scale = 0.9 / (DIM as f32).sqrt();
        unit(person.iter().map(|p| p + scale * self.gaussian()).collect())
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn gaussian(&mut self) -> f32 {
        let u = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let v = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// A score as the caller sees it: the terminal's operator role is shown decisions, not scores
/// (a score is an oracle for rebuilding a face), unless the vault is configured to show them.
fn shown(score: Option<f64>) -> String {
    score.map_or_else(
        || "(withheld from this role)".to_string(),
        |score| score.to_string(),
    )
}
