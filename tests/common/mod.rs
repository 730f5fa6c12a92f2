//! Shared helpers for the integration tests: a deterministic face-like data generator, vaults in
//! temporary folders, and a driver for the built `facevault` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use facevault::{
    Assessment, DeploymentProfile, Enrolment, FixedKey, ManualClock, Notice, Password, Place, Role, RoleSet,
    Session, Vault, VaultConfig,
};
use serde_json::Value;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const OPERATOR: &str = "gate";
pub const OPERATOR_PASSWORD: &str = "operator-password-1";
pub const KEY: [u8; 32] = [0x5a; 32];
pub const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
pub const NOTICE_VERSION: &str = "2026-11";
pub const CONSENT_METHOD: &str = "signed form at reception";

/// A notice with every item Art. 5 asks for.
pub fn notice(version: &str) -> Notice {
    Notice {
        version: version.into(),
        processor_name: "Acme Gates Ltd".into(),
        processor_contact: "privacy@acme.example, +86 21 5555 0100".into(),
        purpose: "entry to the Acme office building".into(),
        method: "1:N face identification at the turnstiles".into(),
        retention: "while you work here, at most one year".into(),
        necessity_and_impact: "replaces badges; a leak would expose a face template".into(),
        rights: "withdraw or ask for erasure at reception or privacy@acme.example".into(),
    }
}

/// The notice as the CLI reads it.
pub fn notice_json(version: &str) -> String {
    serde_json::to_string(&notice(version)).unwrap()
}

/// A deployment profile the law allows: the notice's purpose and method at an office's
/// turnstiles (not a public place), with badges as the alternative.
pub fn profile() -> DeploymentProfile {
    DeploymentProfile {
        processor_name: "Acme Gates Ltd".into(),
        processor_contact: "privacy@acme.example, +86 21 5555 0100".into(),
        purpose: "entry to the Acme office building".into(),
        method: "1:N face identification at the turnstiles".into(),
        place: Place::NonPublic,
        public_safety: false,
        capture_area: "1.5 m in front of each lobby turnstile".into(),
        signs_posted: true,
        alternative_method: "staff badge at the same turnstiles".into(),
    }
}

/// The profile as the CLI reads it.
pub fn profile_json() -> String {
    serde_json::to_string(&profile()).unwrap()
}

/// An impact assessment of `profile`'s purpose and method, with all four of Art. 9's findings.
pub fn assessment(profile: &DeploymentProfile) -> Assessment {
    Assessment {
        date: "2025-12-15".into(),
        purpose: profile.purpose.clone(),
        method: profile.method.clone(),
        lawful_and_necessary: "lawful on consent; necessary to replace shared badges".into(),
        impact_and_mitigation: "low: templates only, on the device, badges offered instead".into(),
        risks: "theft of the device; a leaked template could be matched elsewhere".into(),
        protection_measures: "AES-256-GCM at rest, roles, audit, throttling: proportionate".into(),
        author: "Wang Fang, DPO".into(),
        report_sha256: "3b".repeat(32),
    }
}

/// The assessment as the CLI reads it.
pub fn assessment_json() -> String {
    serde_json::to_string(&assessment(&profile())).unwrap()
}

/// Records the test profile and an assessment of it: what a vault needs before it enrols.
pub fn govern(vault: &Vault, admin: &Session) {
    vault.set_profile(admin, &profile()).unwrap();
    vault.add_assessment(admin, &assessment(&profile())).unwrap();
}

/// An adult's separate processing consent under the current test notice.
pub fn consent() -> Enrolment {
    Enrolment::with_consent(NOTICE_VERSION, CONSENT_METHOD)
}

/// A small deterministic generator (xorshift64*), so every test run sees the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }

    pub fn gaussian_vec(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.gaussian()).collect()
    }
}

pub fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Face-like identities as in ../shared/bench/gen_gallery.py: a demographic cluster centre plus an
/// individual offset, so neighbours are hard rather than random.
pub struct Faces {
    pub dim: usize,
    centres: Vec<Vec<f32>>,
    rng: Rng,
}

impl Faces {
    pub fn new(dim: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let centres = (0..clusters).map(|_| unit(rng.gaussian_vec(dim))).collect();
        Self { dim, centres, rng }
    }

    /// A new person.
    pub fn person(&mut self) -> Vec<f32> {
        let centre = self.centres[(self.rng.next_u64() % self.centres.len() as u64) as usize].clone();
        let scale = 1.6 / (self.dim as f32).sqrt();
        unit(centre.iter().map(|c| c + scale * self.rng.gaussian()).collect())
    }

    /// A new capture of `person` with capture noise of strength `noise` (1.0 gives a cosine of about 0.7).
    pub fn capture(&mut self, person: &[f32], noise: f32) -> Vec<f32> {
        let scale = noise / (self.dim as f32).sqrt();
        unit(person.iter().map(|p| p + scale * self.rng.gaussian()).collect())
    }
}

pub fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A vault in a temporary folder, with a fixed key, a manual clock, an admin and an operator.
pub struct TestVault {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub clock: Arc<ManualClock>,
    pub vault: Vault,
    pub admin: Session,
    pub operator: Session,
}

/// The test vaults' configuration: the default, except that the operator sees scores, to three
/// decimals, for the matching tests to check them (the default shows them to admins, to two).
pub fn test_config(dim: usize) -> VaultConfig {
    VaultConfig {
        score_roles: RoleSet::of(&[Role::Admin, Role::Operator]),
        score_decimals: 3,
        profile: Some(profile()),
        ..VaultConfig::new(dim, "test-model")
    }
}

impl TestVault {
    pub fn new(dim: usize) -> Self {
        Self::with(&test_config(dim), &FixedKey::new(KEY))
    }

    /// A test vault with `config`, made under `keys`.
    pub fn with(config: &VaultConfig, keys: &FixedKey) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let clock = Arc::new(ManualClock::new(START));
        let vault = Vault::create_with_clock(
            &path,
            keys,
            config,
            ADMIN,
            &Password::new(ADMIN_PASSWORD),
            clock.clone(),
        )
        .unwrap();
        let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        staff(&vault, &admin, config.profile.as_ref());
        let operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
        Self {
            dir,
            path,
            clock,
            vault,
            admin,
            operator,
        }
    }

    /// Closes and reopens the vault, logging both principals in again.
    pub fn reopen(self) -> Self {
        let Self {
            dir,
            path,
            clock,
            vault,
            ..
        } = self;
        vault.close().unwrap();
        Self::open(dir, path, clock)
    }

    /// Opens the closed test vault at `path` in `dir` and logs both principals in.
    pub fn open(dir: tempfile::TempDir, path: PathBuf, clock: Arc<ManualClock>) -> Self {
        let vault = Vault::open_with_clock(&path, &FixedKey::new(KEY), clock.clone()).unwrap();
        let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
        let operator = vault.login(OPERATOR, &Password::new(OPERATOR_PASSWORD)).unwrap();
        Self {
            dir,
            path,
            clock,
            vault,
            admin,
            operator,
        }
    }

    pub fn wal_path(&self) -> PathBuf {
        with_suffix(&self.path, "-wal")
    }
}

/// The audit records of `actor` doing `action`, oldest first, read as an admin.
pub fn audited(vault: &Vault, actor: &str, action: &str) -> Vec<facevault::AuditRecord> {
    let admin = vault.login(ADMIN, &Password::new(ADMIN_PASSWORD)).unwrap();
    vault
        .audit_log(&admin)
        .unwrap()
        .into_iter()
        .filter(|r| r.actor == actor && r.action == action)
        .collect()
}

pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Reads a file, or nothing if it does not exist.
pub fn read_or_empty(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Opens the database file directly, as an attacker with the file would. With the whole-file
/// layer (feature `sqlcipher`), as one with the file and its master key (the CLI's `master.key`
/// beside it, or the tests' [`KEY`]), keyed as docs/format.md says, independently of the
/// library's code: the tests of the layers under it still run. A plain file is opened as it is.
pub fn raw_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    #[cfg(feature = "sqlcipher")]
    if !std::fs::read(path)
        .unwrap_or_default()
        .starts_with(b"SQLite format 3\0")
    {
        let key_file = path.with_file_name("master.key");
        let master = std::fs::read(&key_file).unwrap_or_else(|_| KEY.to_vec());
        key_whole_file(&conn, &master);
    }
    conn
}

/// SQL that attaches the database at `path` as `alias` to a connection from [`raw_db`]: with the
/// whole-file layer, under the main file's key (SQLCipher's default for an attachment) and its
/// page size, which SQLCipher needs before ATTACH reads the first page and takes only as its
/// process-wide default (the library sets its own connections' explicitly).
pub fn attach_sql(path: &Path, alias: &str) -> String {
    let attach = format!("ATTACH '{}' AS {alias}", path.display());
    if cfg!(feature = "sqlcipher") {
        format!("PRAGMA cipher_default_page_size = 16384; {attach}")
    } else {
        attach
    }
}

/// Keys a raw connection for the whole-file layer: SQLCipher's raw key is
/// HKDF-SHA256(salt "facevault v2 whole-file layer", master, info "facevault v2 sqlcipher file
/// key"), with 16 KB pages.
#[cfg(feature = "sqlcipher")]
pub fn key_whole_file(conn: &rusqlite::Connection, master: &[u8]) {
    let hex = file_key_hex(master);
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{hex}'\"; PRAGMA cipher_page_size = 16384;"
    ))
    .unwrap();
}

/// The whole-file layer's key for `master`, in hex.
#[cfg(feature = "sqlcipher")]
pub fn file_key_hex(master: &[u8]) -> String {
    use ring::hkdf;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"facevault v2 whole-file layer").extract(master);
    let mut key = [0u8; 32];
    prk.expand(&[b"facevault v2 sqlcipher file key"], hkdf::HKDF_SHA256)
        .unwrap()
        .fill(&mut key)
        .unwrap();
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The result of one run of the `facevault` binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Value,
    pub stderr: Value,
}

impl Run {
    pub fn ok(&self) -> &Value {
        assert_eq!(self.code, 0, "expected success, got {self:?}");
        &self.stdout
    }

    /// Asserts the exit code and the JSON error code, and returns the message.
    pub fn fails(&self, code: i32, error: &str) -> String {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stderr["error"], error, "{self:?}");
        assert!(self.stdout.is_null(), "stdout must be empty on failure: {self:?}");
        self.stderr["message"].as_str().unwrap().to_string()
    }
}

/// A vault driven through the built binary, in its own temporary folder.
pub struct CliVault {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub key: PathBuf,
}

impl CliVault {
    /// `facevault init`, plus an operator account and a published notice.
    pub fn init(dim: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cli = Self {
            db: dir.path().join("vault.db"),
            key: dir.path().join("master.key"),
            dir,
        };
        cli.run(
            None,
            &[
                "init",
                "--dim",
                &dim.to_string(),
                "--admin",
                ADMIN,
                "--model",
                "test-model",
            ],
        )
        .ok();
        cli.run_with_env(
            Some((ADMIN, ADMIN_PASSWORD)),
            &["user", "add", OPERATOR, "--role", "operator"],
            &[("FACEVAULT_NEW_PASSWORD", OPERATOR_PASSWORD)],
        )
        .ok();
        let notice = cli.file("notice.json", notice_json(NOTICE_VERSION).as_bytes());
        cli.admin(&["notice", "publish", "--file", &notice]).ok();
        let profile = cli.file("profile.json", profile_json().as_bytes());
        cli.admin(&["profile", "set", "--file", &profile]).ok();
        let assessment = cli.file("pia.json", assessment_json().as_bytes());
        cli.admin(&["pia", "add", "--file", &assessment]).ok();
        cli
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }

    pub fn admin(&self, args: &[&str]) -> Run {
        self.run(Some((ADMIN, ADMIN_PASSWORD)), args)
    }

    pub fn operator(&self, args: &[&str]) -> Run {
        self.run(Some((OPERATOR, OPERATOR_PASSWORD)), args)
    }

    /// Adds a user with `role`, whose password is `"{name}-password"`.
    pub fn add_user(&self, name: &str, role: &str) {
        let password = format!("{name}-password");
        self.run_with_env(
            Some((ADMIN, ADMIN_PASSWORD)),
            &["user", "add", name, "--role", role],
            &[("FACEVAULT_NEW_PASSWORD", password.as_str())],
        )
        .ok();
    }

    /// Runs a command as a user made by [`CliVault::add_user`].
    pub fn as_user(&self, name: &str, args: &[&str]) -> Run {
        let password = format!("{name}-password");
        self.run(Some((name, password.as_str())), args)
    }

    /// Enrols `values` as a new subject with the standard consent and `extra` options; returns its ID.
    pub fn enrol(&self, name: &str, values: &[f32], extra: &[&str]) -> String {
        let file = self.file(name, &le_bytes(values));
        self.enrol_file(&file, extra)
    }

    /// A vault with an exporter `exp` and a recipient key pair; returns the vault and the secret
    /// and public key files' paths.
    pub fn with_exporter(dim: usize) -> (Self, String, String) {
        let cli = Self::init(dim);
        cli.add_user("exp", "exporter");
        let secret = cli.dir.path().join("recipient.key");
        cli.run(None, &["keygen-recipient", "--out", secret.to_str().unwrap()])
            .ok();
        let public = format!("{}.pub", secret.display());
        (cli, secret.to_str().unwrap().to_string(), public)
    }

    /// `export` as `exp` (see [`CliVault::with_exporter`]) of `subjects` (none: all) into `out`.
    pub fn export(&self, out: &Path, to: &str, public: &str, subjects: &[&str]) -> Run {
        let mut args = vec![
            "export",
            "--to",
            to,
            "--out",
            out.to_str().unwrap(),
            "--recipient-key",
            public,
        ];
        for subject in subjects {
            args.extend(["--subject", subject]);
        }
        self.as_user("exp", &args)
    }

    /// The arguments of `command` (`enrol` or `enrol-batch`) with `file` and the standard consent.
    pub fn consented<'a>(command: &'a str, file: &'a str) -> Vec<&'a str> {
        let flag = if command == "enrol-batch" {
            "--templates"
        } else {
            "--template"
        };
        vec![
            command,
            flag,
            file,
            "--notice",
            NOTICE_VERSION,
            "--consent-method",
            CONSENT_METHOD,
        ]
    }

    /// Enrols the template file `file` as a new subject with the standard consent and `extra`
    /// options; returns its ID.
    pub fn enrol_file(&self, file: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "enroll",
            "--template",
            file,
            "--notice",
            NOTICE_VERSION,
            "--consent-method",
            CONSENT_METHOD,
        ];
        args.extend_from_slice(extra);
        self.admin(&args).ok()["subject"].as_str().unwrap().to_string()
    }

    pub fn run(&self, user: Option<(&str, &str)>, args: &[&str]) -> Run {
        self.run_with_env(user, args, &[])
    }

    pub fn run_with_env(&self, user: Option<(&str, &str)>, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_facevault"));
        command.arg("--db").arg(&self.db).arg("--key-file").arg(&self.key);
        command
            .env_remove("FACEVAULT_PASSWORD")
            .env_remove("FACEVAULT_NEW_PASSWORD");
        match user {
            Some((name, password)) => {
                command.args(["--as", name]).env("FACEVAULT_PASSWORD", password);
            }
            // `init` reads the first admin's password from the same variable.
            None => {
                command.env("FACEVAULT_PASSWORD", ADMIN_PASSWORD);
            }
        }
        command.args(args).envs(env.iter().copied());
        let output = command.output().unwrap();
        let parse = |bytes: &[u8]| -> Value {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            if text.trim().is_empty() {
                return Value::Null;
            }
            assert_eq!(
                text.trim().lines().count(),
                1,
                "exactly one JSON line expected: {text}"
            );
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: parse(&output.stdout),
            stderr: parse(&output.stderr),
        }
    }

    pub fn audit(&self) -> Vec<Value> {
        self.admin(&["audit", "show"]).ok()["entries"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn stats(&self) -> Value {
        self.admin(&["stats"]).ok().clone()
    }
}

/// Every `N`-byte window of each of `sources`.
pub fn windows<const N: usize>(sources: &[Vec<u8>]) -> std::collections::HashSet<[u8; N]> {
    sources
        .iter()
        .flat_map(|bytes| bytes.windows(N).map(|w| <[u8; N]>::try_from(w).unwrap()))
        .collect()
}

/// The offset of the first `N`-byte window of `haystack` that is in `needles`.
pub fn find_any<const N: usize>(
    haystack: &[u8],
    needles: &std::collections::HashSet<[u8; N]>,
) -> Option<usize> {
    haystack
        .windows(N)
        .position(|w| needles.contains(&<[u8; N]>::try_from(w).unwrap()))
}

/// The admin password of [`key_file_vault`] (and of the fixtures in `tests/testdata`).
#[allow(dead_code)]
pub const FILE_ADMIN_PASSWORD: &str = "admin password 1";

/// A new vault in `dir` (`vault.db`) under a new key file (`master.key`, its rollback counter
/// and erasure ledger beside it, as files), with an admin ([`ADMIN`], [`FILE_ADMIN_PASSWORD`]),
/// an operator ([`OPERATOR`], [`OPERATOR_PASSWORD`]) and the test notice; open, with the admin's
/// session.
#[allow(dead_code)]
pub fn key_file_vault(dir: &Path, dim: usize, clock: Arc<dyn facevault::Clock>) -> (Vault, Session) {
    let keys = facevault::KeyFile::create(dir.join("master.key")).unwrap();
    let config = VaultConfig {
        profile: Some(profile()),
        ..VaultConfig::new(dim, "test-model")
    };
    let vault = Vault::create_with_clock(
        &dir.join("vault.db"),
        &keys,
        &config,
        ADMIN,
        &Password::new(FILE_ADMIN_PASSWORD),
        clock,
    )
    .unwrap();
    let admin = vault.login(ADMIN, &Password::new(FILE_ADMIN_PASSWORD)).unwrap();
    staff(&vault, &admin, config.profile.as_ref());
    (vault, admin)
}

/// What every test vault holds besides its admin: the operator, the current notice and, when the
/// vault has a profile, an assessment of it, so that it enrols and matches.
fn staff(vault: &Vault, admin: &Session, profile: Option<&DeploymentProfile>) {
    vault
        .add_user(admin, OPERATOR, Role::Operator, &Password::new(OPERATOR_PASSWORD))
        .unwrap();
    vault.publish_notice(admin, &notice(NOTICE_VERSION)).unwrap();
    if let Some(profile) = profile {
        vault.add_assessment(admin, &assessment(profile)).unwrap();
    }
}

/// Asserts that no window of `needles` is in the database at `db` or in its WAL; `what` says,
/// in the failure, what was looked for.
pub fn assert_gone_from_files<const N: usize>(
    db: &Path,
    needles: &std::collections::HashSet<[u8; N]>,
    what: &str,
) {
    for path in [db.to_path_buf(), with_suffix(db, "-wal")] {
        assert_eq!(
            find_any(&read_or_empty(&path), needles),
            None,
            "{what} remain in {path:?}"
        );
    }
}

/// Every row of `tables`, as text, table by table (a table not there says so): what "changes
/// nothing" compares.
pub fn table_rows(db: &Path, tables: &[&str]) -> Vec<String> {
    let conn = raw_db(db);
    let mut rows = Vec::new();
    for table in tables {
        let Ok(mut statement) = conn.prepare(&format!("SELECT * FROM {table}")) else {
            rows.push(format!("{table}: absent"));
            continue;
        };
        let columns = statement.column_count();
        let mut query = statement.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect();
            rows.push(format!("{table}: {}", values.join("|")));
        }
    }
    rows
}

/// The vault's own normalisation (see `docs/format.md`): Σv² in f64 over eight lanes, then each
/// value times the f64 reciprocal of the norm, rounded to f32.
pub fn normalised(values: &[f32]) -> Vec<f32> {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum();
    for chunk in chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(*value) * f64::from(*value);
        }
    }
    let inverse = 1.0 / (lanes.iter().sum::<f64>() + tail).sqrt();
    values.iter().map(|v| (f64::from(*v) * inverse) as f32).collect()
}

/// The subject's wrapped key and its templates' ciphertexts, as stored.
pub fn stored_secrets(path: &std::path::Path, subject: &facevault::SubjectId) -> Vec<Vec<u8>> {
    let conn = raw_db(path);
    let mut blobs: Vec<Vec<u8>> = vec![conn
        .query_row(
            "SELECT wrapped_key FROM subjects WHERE id = ?1",
            [&subject.as_bytes()[..]],
            |r| r.get(0),
        )
        .unwrap()];
    let mut statement = conn
        .prepare("SELECT ciphertext FROM templates WHERE subject_id = ?1")
        .unwrap();
    blobs.extend(
        statement
            .query_map([&subject.as_bytes()[..]], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap),
    );
    blobs
}

/// A fixture folder of `tests/testdata` (a vault made by an older version's CLI, with the files
/// beside its key), copied into `to` with owner-only permissions, as a key file needs; and the
/// view of it that CLI printed (`view`, a JSON file of the fixture).
#[allow(dead_code)]
pub fn copy_fixture(fixture: &str, view: &str, to: &Path) -> Value {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(fixture);
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        let copy = to.join(entry.file_name());
        std::fs::copy(entry.path(), &copy).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    serde_json::from_str(&std::fs::read_to_string(fixture.join(view)).unwrap()).unwrap()
}
