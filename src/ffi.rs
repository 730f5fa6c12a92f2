//! The C ABI (cargo feature `ffi`): opaque handles for a vault and a session, and one status code
//! from every call, for firmware written in C or C++. `include/facevault.h` is generated from this
//! file by cbindgen (`tests/ffi.rs` fails when it is stale).
//!
//! The rules every function keeps, after rustls-ffi:
//! - It returns an [`fv_status`]: the CLI's classes (2 bad input, 3 refused, 4 integrity, 1 any
//!   other failure), plus codes of its own for a null argument and a caught panic. The message
//!   and the stable snake_case code of the last failure on the calling thread are read with
//!   [`fv_last_error_message`] and [`fv_last_error_code`].
//! - No Rust panic crosses the boundary: each body runs under `catch_unwind` and a panic becomes
//!   [`fv_status::FV_PANIC`].
//! - Null pointers are refused with [`fv_status::FV_NULL_ARGUMENT`] before anything is read.
//! - Secrets passed in (passwords, key bytes) are copied into buffers that are zeroed when
//!   dropped, and nothing the caller passed is kept after the call returns. The caller zeroes its
//!   own copies.
//! - What it hands out (a vault, a session) is freed by its facevault function: [`fv_close`],
//!   [`fv_session_free`].
//!
//! A vault handle may be shared between threads, as [`Vault`] may: every call takes it as
//! `const`. A session handle may be shared too, but must outlive every call that uses it.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::path::Path;

use crate::error::{Error, ErrorClass};
use crate::policy::deployment::{Assessment, DeploymentProfile};
use crate::policy::{Destination, Enrolment, Guardian, Notice};
use crate::{
    FixedKey, KeyFile, OpenOptions, Password, RecipientPublicKey, Role, Session, SubjectId, Vault,
    VaultConfig,
};

/// The outcome of a call. 0 is success; 1 to 4 are the CLI's exit codes for the same failures.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum fv_status {
    /// Done.
    FV_OK = 0,
    /// A failure of the platform: the disk, the database, the vault open elsewhere (`busy`).
    FV_FAILED = 1,
    /// Bad input: a malformed template, an unknown subject, an out-of-range argument.
    FV_BAD_INPUT = 2,
    /// Refused by access control or the law.
    FV_REFUSED = 3,
    /// Wrong key, tampering or corruption.
    FV_INTEGRITY = 4,
    /// A required pointer argument was null.
    FV_NULL_ARGUMENT = 10,
    /// facevault panicked; the panic was caught at the boundary. The vault is still usable.
    FV_PANIC = 11,
    /// A text argument was not valid UTF-8.
    FV_NOT_UTF8 = 12,
}

/// An open vault: from [`fv_create`] or [`fv_open`], freed by [`fv_close`].
pub struct fv_vault(Vault);

/// An authenticated principal: from [`fv_login`], freed by [`fv_session_free`].
pub struct fv_session(Session);

/// A separate consent for [`fv_enrol`]. Texts are UTF-8 and NUL-terminated; nullable ones may be
/// null.
#[repr(C)]
pub struct fv_consent {
    /// The current notice version the person was informed by.
    pub notice_version: *const c_char,
    /// How consent was obtained.
    pub consent_method: *const c_char,
    /// `YYYY-MM-DD`, or null for an adult declared by the enroller.
    pub birth_date: *const c_char,
    /// For a child under 14: the consenting parent or guardian; null otherwise.
    pub guardian_name: *const c_char,
    /// The guardian's relationship to the child; null when there is no guardian.
    pub guardian_relationship: *const c_char,
    /// The retention asked for, in seconds; 0 for the vault's ceiling.
    pub retention_secs: i64,
    /// The person also gave the separate consent to transfer face data off the device.
    pub transfer_consent: bool,
}

/// A notice to data subjects for [`fv_publish_notice`]: every item Art. 5 asks for, UTF-8,
/// NUL-terminated.
#[repr(C)]
pub struct fv_notice {
    /// The version label consents refer to.
    pub version: *const c_char,
    /// The processor's name.
    pub processor_name: *const c_char,
    /// How to contact the processor.
    pub processor_contact: *const c_char,
    /// Why face data is processed.
    pub purpose: *const c_char,
    /// How it is processed.
    pub method: *const c_char,
    /// How long it is kept.
    pub retention: *const c_char,
    /// Why it is necessary, and its impact on the person.
    pub necessity_and_impact: *const c_char,
    /// How a person exercises their rights.
    pub rights: *const c_char,
}

/// One answer of [`fv_identify`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct fv_candidate {
    /// The subject's 16-byte ID.
    pub subject: [u8; 16],
    /// Its score, rounded to the vault's score decimals; NaN when the vault does not show scores
    /// to the caller's role.
    pub score: f64,
}

/// What [`fv_stats`] reports.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct fv_vault_stats {
    /// Enrolled subjects.
    pub subjects: u64,
    /// Stored templates.
    pub templates: u64,
    /// Values per template.
    pub dim: u64,
    /// Subjects past their retention, waiting for a purge.
    pub expired: u64,
}

thread_local! {
    /// The last failure on this thread: its stable code and its message.
    static LAST_ERROR: RefCell<(CString, CString)> = RefCell::new((CString::default(), CString::default()));
}

fn remember(code: &str, message: &str) {
    // Interior NULs cannot come from facevault's messages; replace them rather than lose the text.
    let text = |s: &str| CString::new(s.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = (text(code), text(message)));
}

fn status_of(error: &Error) -> fv_status {
    remember(error.code(), &error.to_string());
    match error.class() {
        ErrorClass::BadInput => fv_status::FV_BAD_INPUT,
        ErrorClass::Refused => fv_status::FV_REFUSED,
        ErrorClass::Integrity => fv_status::FV_INTEGRITY,
        ErrorClass::Other => fv_status::FV_FAILED,
    }
}

/// Why a call failed before reaching the vault.
enum Failure {
    Vault(Error),
    Null(&'static str),
    NotUtf8(&'static str),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Vault(error)
    }
}

/// Runs `body` at the boundary: its failure becomes a status and the thread's last error, and a
/// panic inside it is caught and becomes [`fv_status::FV_PANIC`].
fn boundary(body: impl FnOnce() -> Result<(), Failure>) -> fv_status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => fv_status::FV_OK,
        Ok(Err(Failure::Vault(error))) => status_of(&error),
        Ok(Err(Failure::Null(argument))) => {
            remember("null_argument", &format!("{argument} must not be null"));
            fv_status::FV_NULL_ARGUMENT
        }
        Ok(Err(Failure::NotUtf8(argument))) => {
            remember("not_utf8", &format!("{argument} is not valid UTF-8"));
            fv_status::FV_NOT_UTF8
        }
        Err(_) => {
            remember("panic", "facevault panicked; the call was abandoned");
            fv_status::FV_PANIC
        }
    }
}

/// A required pointer, or the null-argument failure.
fn required<'a, T>(pointer: *const T, argument: &'static str) -> Result<&'a T, Failure> {
    // SAFETY: the caller passes either null or a pointer to a live, properly aligned `T` that
    // stays valid and unmodified for the duration of the call (the contract of every function
    // here, stated in the header); null is checked first.
    unsafe { pointer.as_ref() }.ok_or(Failure::Null(argument))
}

/// A required NUL-terminated UTF-8 string.
fn text<'a>(pointer: *const c_char, argument: &'static str) -> Result<&'a str, Failure> {
    if pointer.is_null() {
        return Err(Failure::Null(argument));
    }
    // SAFETY: non-null, and by the contract of every function here a NUL-terminated string that
    // stays valid for the duration of the call.
    let bytes = unsafe { CStr::from_ptr(pointer) };
    bytes.to_str().map_err(|_| Failure::NotUtf8(argument))
}

/// An optional NUL-terminated UTF-8 string: null is `None`.
fn optional_text<'a>(pointer: *const c_char, argument: &'static str) -> Result<Option<&'a str>, Failure> {
    if pointer.is_null() {
        Ok(None)
    } else {
        text(pointer, argument).map(Some)
    }
}

/// `len` f32 values at `values`.
fn floats<'a>(values: *const f32, len: usize) -> Result<&'a [f32], Failure> {
    if values.is_null() {
        return Err(Failure::Null("values"));
    }
    // SAFETY: non-null, and by the contract the caller passes `len` readable, initialised f32s
    // that stay unmodified for the call; `len` values of 4 bytes fit the address space because
    // they exist.
    Ok(unsafe { std::slice::from_raw_parts(values, len) })
}

/// Writes `value` to the required out-pointer `out`.
fn put<T>(out: *mut T, argument: &'static str, value: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::Null(argument));
    }
    // SAFETY: non-null, and by the contract a valid, aligned, writable `T`.
    unsafe { out.write(value) };
    Ok(())
}

fn subject_of(subject: *const [u8; 16]) -> Result<SubjectId, Failure> {
    let bytes = required(subject, "subject")?;
    SubjectId::from_bytes(bytes).ok_or(Failure::Vault(Error::InvalidArgument {
        what: "subject",
        reason: "must be 16 bytes".into(),
    }))
}

fn vault<'a>(vault: *const fv_vault) -> Result<&'a Vault, Failure> {
    required(vault, "vault").map(|vault| &vault.0)
}

fn session<'a>(session: *const fv_session) -> Result<&'a Session, Failure> {
    required(session, "session").map(|session| &session.0)
}

/// The stable snake_case code of the last failure on this thread (`""` after none). Valid until
/// the next facevault call on this thread.
#[no_mangle]
pub extern "C" fn fv_last_error_code() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().0.as_ptr())
}

/// A sentence describing the last failure on this thread (`""` after none). Valid until the next
/// facevault call on this thread.
#[no_mangle]
pub extern "C" fn fv_last_error_message() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().1.as_ptr())
}

/// Creates a vault at `db_path` keyed by the 32 bytes at `key`, with `dim`-value templates of
/// `model` and its first admin. `*out` receives the open vault.
///
/// A vault keyed by raw bytes has no rollback counter that outlives the call: an older copy of
/// its file is not detected when it is opened again. A device that keeps its key in a file
/// opens with [`fv_open_with_key_file`], which keeps the counter file beside the key.
///
/// # Safety
/// Every pointer is null or valid for the call: texts NUL-terminated, `key` 32 readable bytes,
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_create(
    db_path: *const c_char,
    key: *const [u8; 32],
    dim: usize,
    model: *const c_char,
    admin: *const c_char,
    admin_password: *const c_char,
    out: *mut *mut fv_vault,
) -> fv_status {
    boundary(|| {
        let key = FixedKey::with_own_counters(*required(key, "key")?);
        let password = Password::new(text(admin_password, "admin_password")?);
        let config = VaultConfig::new(dim, text(model, "model")?);
        let created = Vault::create(
            Path::new(text(db_path, "db_path")?),
            &key,
            &config,
            text(admin, "admin")?,
            &password,
        )?;
        put(out, "out", Box::into_raw(Box::new(fv_vault(created))))
    })
}

/// Opens the vault at `db_path` with the 32-byte master key at `key`. `*out` receives it.
///
/// # Safety
/// As [`fv_create`].
#[no_mangle]
pub unsafe extern "C" fn fv_open(
    db_path: *const c_char,
    key: *const [u8; 32],
    out: *mut *mut fv_vault,
) -> fv_status {
    boundary(|| {
        let key = FixedKey::with_own_counters(*required(key, "key")?);
        let opened = Vault::open(Path::new(text(db_path, "db_path")?), &key)?;
        put(out, "out", Box::into_raw(Box::new(fv_vault(opened))))
    })
}

/// Opens the vault at `db_path` with the key file at `key_path` (32 bytes, mode 0600).
///
/// # Safety
/// As [`fv_create`].
#[no_mangle]
pub unsafe extern "C" fn fv_open_with_key_file(
    db_path: *const c_char,
    key_path: *const c_char,
    out: *mut *mut fv_vault,
) -> fv_status {
    boundary(|| {
        let key = KeyFile::new(text(key_path, "key_path")?);
        let opened = Vault::open_with(Path::new(text(db_path, "db_path")?), &key, OpenOptions::default())?;
        put(out, "out", Box::into_raw(Box::new(fv_vault(opened))))
    })
}

/// Closes and frees a vault: writes its queued lookup records and truncates the WAL. A failure
/// (`audit_not_written`: lookup records were lost) is reported; the handle is freed either way.
/// Null is accepted and does nothing.
///
/// # Safety
/// `vault` is null or a handle from [`fv_create`] or [`fv_open`] not yet closed, and no other
/// thread is using it.
#[no_mangle]
pub unsafe extern "C" fn fv_close(vault: *mut fv_vault) -> fv_status {
    boundary(|| {
        if vault.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle made by `Box::into_raw` in this module, closed once (contract).
        let vault = unsafe { Box::from_raw(vault) };
        vault.0.close()?;
        Ok(())
    })
}

/// Authenticates `name` with `password`; `*out` receives the session. The password is copied
/// into a buffer zeroed after the check.
///
/// # Safety
/// As [`fv_create`]; `vault` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fv_login(
    vault: *const fv_vault,
    name: *const c_char,
    password: *const c_char,
    out: *mut *mut fv_session,
) -> fv_status {
    boundary(|| {
        let password = Password::new(text(password, "password")?);
        let session = self::vault(vault)?.login(text(name, "name")?, &password)?;
        put(out, "out", Box::into_raw(Box::new(fv_session(session))))
    })
}

/// Ends a session: every later call with it is refused. The handle stays to be freed.
///
/// # Safety
/// `vault` and `session` are live handles.
#[no_mangle]
pub unsafe extern "C" fn fv_logout(vault: *const fv_vault, session: *const fv_session) -> fv_status {
    boundary(|| Ok(self::vault(vault)?.logout(self::session(session)?)?))
}

/// Frees a session. Null is accepted and does nothing.
///
/// # Safety
/// `session` is null or a handle from [`fv_login`] not yet freed, used by no call in progress.
#[no_mangle]
pub unsafe extern "C" fn fv_session_free(session: *mut fv_session) {
    if !session.is_null() {
        // SAFETY: a live handle made by `Box::into_raw` in this module, freed once (contract).
        drop(unsafe { Box::from_raw(session) });
    }
}

/// Adds a user with `role` (`admin`, `enroller`, `operator`, `auditor` or `exporter`). Admins.
///
/// # Safety
/// As [`fv_login`].
#[no_mangle]
pub unsafe extern "C" fn fv_add_user(
    vault: *const fv_vault,
    session: *const fv_session,
    name: *const c_char,
    role: *const c_char,
    password: *const c_char,
) -> fv_status {
    boundary(|| {
        let role: Role = text(role, "role")?.parse()?;
        let password = Password::new(text(password, "password")?);
        Ok(self::vault(vault)?.add_user(self::session(session)?, text(name, "name")?, role, &password)?)
    })
}

/// Publishes a notice version (Art. 5). Admins.
///
/// # Safety
/// As [`fv_login`]; every text of `notice` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fv_publish_notice(
    vault: *const fv_vault,
    session: *const fv_session,
    notice: *const fv_notice,
) -> fv_status {
    boundary(|| {
        let n = required(notice, "notice")?;
        let notice = Notice {
            version: text(n.version, "notice.version")?.into(),
            processor_name: text(n.processor_name, "notice.processor_name")?.into(),
            processor_contact: text(n.processor_contact, "notice.processor_contact")?.into(),
            purpose: text(n.purpose, "notice.purpose")?.into(),
            method: text(n.method, "notice.method")?.into(),
            retention: text(n.retention, "notice.retention")?.into(),
            necessity_and_impact: text(n.necessity_and_impact, "notice.necessity_and_impact")?.into(),
            rights: text(n.rights, "notice.rights")?.into(),
        };
        self::vault(vault)?.publish_notice(self::session(session)?, &notice)?;
        Ok(())
    })
}

/// Records the deployment profile (Arts. 3–4, 10, 13) from its JSON, the keys the README lists.
/// A profile the law forbids is recorded, and enrolment and matching are then refused
/// (`FV_REFUSED`, the message naming the article). Admins.
///
/// # Safety
/// As [`fv_login`]; `profile_json` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fv_set_profile(
    vault: *const fv_vault,
    session: *const fv_session,
    profile_json: *const c_char,
) -> fv_status {
    boundary(|| {
        let profile = DeploymentProfile::from_json(text(profile_json, "profile_json")?)?;
        self::vault(vault)?.set_profile(self::session(session)?, &profile)?;
        Ok(())
    })
}

/// Records an impact assessment (Art. 9) from its JSON, the keys the README lists; enrolment
/// waits for one that covers the profile's purpose and method. Admins.
///
/// # Safety
/// As [`fv_login`]; `assessment_json` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fv_add_assessment(
    vault: *const fv_vault,
    session: *const fv_session,
    assessment_json: *const c_char,
) -> fv_status {
    boundary(|| {
        let assessment = Assessment::from_json(text(assessment_json, "assessment_json")?)?;
        self::vault(vault)?.add_assessment(self::session(session)?, &assessment)?;
        Ok(())
    })
}

/// Enrols a new subject from one template of `len` values, under `consent`; the subject's
/// 16-byte ID is written to `subject_out`. Admins and enrollers.
///
/// # Safety
/// As [`fv_login`]; `values` holds `len` floats; `subject_out` 16 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn fv_enrol(
    vault: *const fv_vault,
    session: *const fv_session,
    consent: *const fv_consent,
    values: *const f32,
    len: usize,
    subject_out: *mut [u8; 16],
) -> fv_status {
    boundary(|| {
        let c = required(consent, "consent")?;
        let guardian = match (
            optional_text(c.guardian_name, "consent.guardian_name")?,
            optional_text(c.guardian_relationship, "consent.guardian_relationship")?,
        ) {
            (None, None) => None,
            (name, relationship) => Some(Guardian {
                name: name.unwrap_or_default().into(),
                relationship: relationship.unwrap_or_default().into(),
            }),
        };
        let enrolment = Enrolment {
            notice_version: optional_text(c.notice_version, "consent.notice_version")?.map(Into::into),
            consent_method: optional_text(c.consent_method, "consent.consent_method")?.map(Into::into),
            birth_date: optional_text(c.birth_date, "consent.birth_date")?
                .map(crate::parse_date)
                .transpose()?,
            guardian,
            retention_secs: (c.retention_secs != 0).then_some(c.retention_secs),
            transfer_consent: c.transfer_consent,
        };
        let subject = self::vault(vault)?.enrol(self::session(session)?, &enrolment, floats(values, len)?)?;
        put(subject_out, "subject_out", *subject.as_bytes())
    })
}

/// 1:1: compares the probe (`len` values) with `subject`'s templates. `*matched` and `*score`
/// receive the decision and the rounded score (NaN when the vault does not show scores to the
/// caller's role). Operators.
///
/// # Safety
/// As [`fv_login`]; `subject` 16 readable bytes; `values` `len` floats; the outputs writable.
#[no_mangle]
pub unsafe extern "C" fn fv_verify(
    vault: *const fv_vault,
    session: *const fv_session,
    subject: *const [u8; 16],
    values: *const f32,
    len: usize,
    matched: *mut bool,
    score: *mut f64,
) -> fv_status {
    boundary(|| {
        let subject = subject_of(subject)?;
        let answer = self::vault(vault)?.verify(self::session(session)?, &subject, floats(values, len)?)?;
        put(matched, "matched", answer.matched)?;
        put(score, "score", answer.score.unwrap_or(f64::NAN))
    })
}

/// 1:N: the `k` best subjects at or above the threshold, best first, written to `out` (room for
/// `capacity`, which must be at least `k`); `*found` receives how many. Operators.
///
/// # Safety
/// As [`fv_login`]; `values` `len` floats; `out` `capacity` writable candidates; `found` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_identify(
    vault: *const fv_vault,
    session: *const fv_session,
    values: *const f32,
    len: usize,
    k: usize,
    out: *mut fv_candidate,
    capacity: usize,
    found: *mut usize,
) -> fv_status {
    boundary(|| {
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        if capacity < k {
            return Err(Failure::Vault(Error::InvalidArgument {
                what: "capacity",
                reason: format!("room for {capacity} candidates is less than k = {k}"),
            }));
        }
        let candidates = self::vault(vault)?.identify(self::session(session)?, floats(values, len)?, k)?;
        // SAFETY: non-null, and by the contract `capacity` writable candidates; at most k ≤ capacity
        // are written.
        let room = unsafe { std::slice::from_raw_parts_mut(out, capacity) };
        for (slot, candidate) in room.iter_mut().zip(&candidates) {
            *slot = fv_candidate {
                subject: *candidate.subject.as_bytes(),
                score: candidate.score.unwrap_or(f64::NAN),
            };
        }
        put(found, "found", candidates.len())
    })
}

/// Erases a subject (its wrapped key first, then its templates). Admins and enrollers.
///
/// # Safety
/// As [`fv_login`]; `subject` 16 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn fv_erase(
    vault: *const fv_vault,
    session: *const fv_session,
    subject: *const [u8; 16],
) -> fv_status {
    boundary(|| Ok(self::vault(vault)?.erase(self::session(session)?, &subject_of(subject)?)?))
}

/// Withdraws a subject's consent (Art. 6): its face data is erased at once. Admins and enrollers.
///
/// # Safety
/// As [`fv_erase`].
#[no_mangle]
pub unsafe extern "C" fn fv_withdraw(
    vault: *const fv_vault,
    session: *const fv_session,
    subject: *const [u8; 16],
) -> fv_status {
    boundary(|| Ok(self::vault(vault)?.withdraw_consent(self::session(session)?, &subject_of(subject)?)?))
}

/// Erases every subject past its retention. `*purged` receives how many; the first `capacity`
/// of their IDs, in ID order, are written to `out` (which may be null when `capacity` is 0).
/// The purge is done whatever the room. Admins and enrollers.
///
/// # Safety
/// As [`fv_login`]; `out` null or `capacity` writable IDs; `purged` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_purge(
    vault: *const fv_vault,
    session: *const fv_session,
    out: *mut [u8; 16],
    capacity: usize,
    purged: *mut usize,
) -> fv_status {
    boundary(|| {
        if out.is_null() && capacity > 0 {
            return Err(Failure::Null("out"));
        }
        let erased = self::vault(vault)?.purge(self::session(session)?)?;
        if capacity > 0 {
            // SAFETY: non-null (checked), and by the contract `capacity` writable IDs.
            let room = unsafe { std::slice::from_raw_parts_mut(out, capacity) };
            for (slot, subject) in room.iter_mut().zip(&erased) {
                *slot = *subject.as_bytes();
            }
        }
        put(purged, "purged", erased.len())
    })
}

/// Erases every subject past its retention as the vault's own duty, with no session (audited as
/// `system`). An open vault also does so hourly on a thread of its own; firmware calls this to
/// purge at a moment of its choosing. `*purged` receives how many.
///
/// # Safety
/// `vault` as [`fv_login`]; `purged` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_purge_expired(vault: *const fv_vault, purged: *mut usize) -> fv_status {
    boundary(|| {
        let erased = self::vault(vault)?.purge_expired()?;
        put(purged, "purged", erased.len())
    })
}

/// Exports into a new bundle file at `out_path`, sealed to the 32-byte X25519 public key at
/// `recipient`: every subject the law lets go. `network` chooses a destination off the device
/// (transfer consent needed) over a local backup. Exporters.
///
/// # Safety
/// As [`fv_login`]; `recipient` 32 readable bytes; `out_path` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fv_export(
    vault: *const fv_vault,
    session: *const fv_session,
    network: bool,
    recipient: *const [u8; 32],
    out_path: *const c_char,
    exported: *mut usize,
) -> fv_status {
    boundary(|| {
        let request = crate::ExportRequest {
            destination: if network {
                Destination::Network
            } else {
                Destination::Local
            },
            recipient: RecipientPublicKey(*required(recipient, "recipient")?),
            subjects: Vec::new(),
            // The default model's templates: firmware that has moved to a newer model retires
            // the old one, which makes the newer the default.
            model: None,
        };
        let written = self::vault(vault)?.export_to_file(
            self::session(session)?,
            &request,
            Path::new(text(out_path, "out_path")?),
        )?;
        put(exported, "exported", written.exported)
    })
}

/// Writes a sealed backup of the vault into a new file at `out_path` (mode 0600): only a device
/// with this vault's master key restores it. `*bytes` receives the file's size. Admins.
///
/// # Safety
/// As [`fv_login`]; `out_path` NUL-terminated; `bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_backup(
    vault: *const fv_vault,
    session: *const fv_session,
    out_path: *const c_char,
    bytes: *mut u64,
) -> fv_status {
    boundary(|| {
        let info = self::vault(vault)?
            .backup_to_file(self::session(session)?, Path::new(text(out_path, "out_path")?))?;
        put(bytes, "bytes", info.file_bytes)
    })
}

/// Rewrites the database file from its rows ([`Vault::compact`]): no byte a row no longer holds
/// stays in it, and it shrinks to its rows. Run it once after updating from a build older than
/// 2026-12-05. Lookups go on meanwhile; it needs about the file's size in free memory.
/// `*bytes_after` receives the file's new size. Admins.
///
/// # Safety
/// As [`fv_login`]; `bytes_after` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_compact(
    vault: *const fv_vault,
    session: *const fv_session,
    bytes_after: *mut u64,
) -> fv_status {
    boundary(|| {
        let compacted = self::vault(vault)?.compact(self::session(session)?)?;
        put(bytes_after, "bytes_after", compacted.file_bytes_after)
    })
}

/// Restores the backup at `backup_path` into the vault at `db_path`, with the key file at
/// `key_path` and its erasure ledger beside it, and opens it: every subject erased since the
/// backup is erased again and the expired purged first. `admin` must be an admin of the backup. A
/// vault at `db_path` that still works is replaced only if `force`. `*out` receives the vault. A
/// vault opened with a raw key keeps no erasure ledger between openings, so only a key file's
/// vault is restored.
///
/// # Safety
/// As [`fv_create`].
#[no_mangle]
pub unsafe extern "C" fn fv_restore_with_key_file(
    backup_path: *const c_char,
    db_path: *const c_char,
    key_path: *const c_char,
    admin: *const c_char,
    admin_password: *const c_char,
    force: bool,
    out: *mut *mut fv_vault,
) -> fv_status {
    boundary(|| {
        let key = KeyFile::new(text(key_path, "key_path")?);
        let password = Password::new(text(admin_password, "admin_password")?);
        let options = crate::RestoreOptions {
            force,
            open: OpenOptions::default(),
        };
        let (restored, _) = Vault::restore(
            Path::new(text(backup_path, "backup_path")?),
            Path::new(text(db_path, "db_path")?),
            &key,
            text(admin, "admin")?,
            &password,
            options,
        )?;
        put(out, "out", Box::into_raw(Box::new(fv_vault(restored))))
    })
}

/// Counts: subjects, templates, dimension, expired. Everyone.
///
/// # Safety
/// As [`fv_login`]; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_stats(
    vault: *const fv_vault,
    session: *const fv_session,
    out: *mut fv_vault_stats,
) -> fv_status {
    boundary(|| {
        let stats = self::vault(vault)?.stats(self::session(session)?)?;
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        put(
            out,
            "out",
            fv_vault_stats {
                subjects: count(stats.subjects),
                templates: count(stats.templates),
                dim: count(stats.dim),
                expired: count(stats.expired),
            },
        )
    })
}

/// Checks the whole audit chain; `*entries` receives how many records verified. A broken chain
/// is [`fv_status::FV_INTEGRITY`] with code `audit_tampered`. Admins and auditors.
///
/// # Safety
/// As [`fv_login`]; `entries` writable.
#[no_mangle]
pub unsafe extern "C" fn fv_audit_verify(
    vault: *const fv_vault,
    session: *const fv_session,
    entries: *mut u64,
) -> fv_status {
    boundary(|| {
        let verified = self::vault(vault)?.verify_audit(self::session(session)?)?;
        put(entries, "entries", verified)
    })
}

/// Panics inside the boundary, for tests of the boundary itself (feature `ffi-test-hooks`).
#[cfg(feature = "ffi-test-hooks")]
#[no_mangle]
pub extern "C" fn fv_test_panic() -> fv_status {
    boundary(|| panic!("a panic forced by fv_test_panic"))
}

// The handles are shared between threads as the types they wrap are.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<fv_vault>();
    shared::<fv_session>();
};
