//! Throttling of lookups, and the alerts it raises (Art. 14's intrusion detection and defence).
//!
//! - Per subject, after NIST SP 800-63B's limits on biometric attempts: after
//!   [`ThrottlePolicy::verify_failures_before_delay`] failed verifies in a row, each further
//!   verify of that subject waits, 30 s by default and twice as long after each further failure;
//!   after [`ThrottlePolicy::verify_failures_before_disable`], face verification of that subject
//!   is off until an admin resets it, and the terminal falls back to its other method.
//! - Per principal: identifies beyond a rate, or a run of probes that match nobody (enumeration,
//!   or a template-inversion attack climbing on accept/reject answers), are throttled the same
//!   way, and raise an alert.
//!
//! The state lives in memory, where a lookup checks it without waiting for anything but a short
//! lock; every change is handed to the match-log writer with the lookup's own record, which
//! stores it (MACed) in the same transaction. So a restart keeps it, and a crash loses at most
//! what the match log loses: the last flush interval.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::access::ThrottlePolicy;
use crate::clock::UnixMillis;
use crate::crypto::VaultKeys;
use crate::error::{Error, Result, ThrottleScope};
use crate::store::{self, ThrottleRow};
use crate::subject::SubjectId;

/// One throttle's state, as kept in memory and stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ThrottleState {
    /// Failures (verify) or misses (identify) in a row.
    pub failures: u32,
    /// No lookup before this time.
    pub next_allowed_at: UnixMillis,
    /// Face verification is off until an admin resets it (subjects only).
    pub disabled: bool,
    /// The start of the current one-minute window, and the identifies in it (principals only).
    pub window_start: UnixMillis,
    pub window_count: u32,
}

/// Which throttle a stored row belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ThrottleKey {
    Subject(SubjectId),
    Principal(String),
}

impl ThrottleKey {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ThrottleKey::Subject(_) => "subject",
            ThrottleKey::Principal(_) => "principal",
        }
    }

    pub(crate) fn key_bytes(&self) -> Vec<u8> {
        match self {
            ThrottleKey::Subject(subject) => subject.as_bytes().to_vec(),
            ThrottleKey::Principal(name) => name.as_bytes().to_vec(),
        }
    }
}

fn mac_fields(kind: &str, key: &[u8], state: &ThrottleState) -> [Vec<u8>; 7] {
    [
        kind.as_bytes().to_vec(),
        key.to_vec(),
        state.failures.to_le_bytes().to_vec(),
        state.next_allowed_at.to_le_bytes().to_vec(),
        vec![u8::from(state.disabled)],
        state.window_start.to_le_bytes().to_vec(),
        state.window_count.to_le_bytes().to_vec(),
    ]
}

/// Stores a change (a row MACed with its state, or its removal), inside the caller's transaction.
pub(crate) fn store_change(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
    change: &ThrottleChange,
) -> Result<()> {
    let (kind, key) = (change.key.kind(), change.key.key_bytes());
    match &change.state {
        None => store::delete_throttle(conn, kind, &key),
        Some(state) => {
            let fields = mac_fields(kind, &key, state);
            let fields = super::as_slices(&fields);
            store::upsert_throttle(
                conn,
                &ThrottleRow {
                    kind: kind.to_string(),
                    mac: keys.record_mac("throttle", &fields),
                    key,
                    failures: i64::from(state.failures),
                    next_allowed_at: state.next_allowed_at,
                    disabled: state.disabled,
                    window_start: state.window_start,
                    window_count: i64::from(state.window_count),
                },
            )
        }
    }
}

/// Every stored throttle, each row's MAC checked.
pub(crate) fn load(
    conn: &rusqlite::Connection,
    keys: &VaultKeys,
) -> Result<Vec<(ThrottleKey, ThrottleState)>> {
    let mut loaded = Vec::new();
    for row in store::throttles(conn)? {
        let damaged = || Error::Integrity {
            table: "throttles",
            record: format!(
                "{} {}",
                row.kind,
                row.key.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        };
        let state = ThrottleState {
            failures: u32::try_from(row.failures).map_err(|_| damaged())?,
            next_allowed_at: row.next_allowed_at,
            disabled: row.disabled,
            window_start: row.window_start,
            window_count: u32::try_from(row.window_count).map_err(|_| damaged())?,
        };
        let fields = mac_fields(&row.kind, &row.key, &state);
        let fields = super::as_slices(&fields);
        if !keys.record_mac_matches("throttle", &fields, &row.mac) {
            return Err(damaged());
        }
        let key = match row.kind.as_str() {
            "subject" => ThrottleKey::Subject(SubjectId::from_bytes(&row.key).ok_or_else(damaged)?),
            _ => ThrottleKey::Principal(String::from_utf8(row.key.clone()).map_err(|_| damaged())?),
        };
        loaded.push((key, state));
    }
    Ok(loaded)
}

/// A change to store, and the alert to raise with it, if any.
pub(crate) struct ThrottleChange {
    pub key: ThrottleKey,
    /// `None` when the throttle was cleared (a success after failures).
    pub state: Option<ThrottleState>,
    pub alert: Option<String>,
}

/// Hashes a subject ID by its first eight bytes: IDs are random and made by the vault, so no
/// caller can choose colliding ones, and a verify pays for no SipHash under the lock.
#[derive(Default)]
struct SubjectIdHasher(u64);

impl std::hash::Hasher for SubjectIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let take = bytes.len().min(8);
        word[..take].copy_from_slice(&bytes[..take]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, _length: usize) {}
}

type SubjectMap = HashMap<SubjectId, ThrottleState, std::hash::BuildHasherDefault<SubjectIdHasher>>;

#[derive(Default)]
struct Maps {
    subjects: SubjectMap,
    principals: HashMap<String, ThrottleState>,
}

pub(crate) struct Throttles {
    policy: ThrottlePolicy,
    maps: Mutex<Maps>,
}

fn doubled(first: std::time::Duration, doublings: u32) -> i64 {
    let first = i64::try_from(first.as_millis()).unwrap_or(i64::MAX);
    first.saturating_mul(1i64 << doublings.min(40))
}

fn throttled(scope: ThrottleScope, state: &ThrottleState, now: UnixMillis) -> Option<Error> {
    if state.disabled {
        return Some(Error::Throttled {
            scope,
            retry_after_ms: None,
        });
    }
    (now < state.next_allowed_at).then(|| Error::Throttled {
        scope,
        retry_after_ms: Some(state.next_allowed_at - now),
    })
}

impl Throttles {
    pub(crate) fn new(policy: ThrottlePolicy, stored: Vec<(ThrottleKey, ThrottleState)>) -> Self {
        let mut maps = Maps::default();
        for (key, state) in stored {
            match key {
                ThrottleKey::Subject(subject) => {
                    maps.subjects.insert(subject, state);
                }
                ThrottleKey::Principal(name) => {
                    maps.principals.insert(name, state);
                }
            }
        }
        Self {
            policy,
            maps: Mutex::new(maps),
        }
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // Every update below leaves the maps whole, so a poisoned lock still holds good state.
        self.maps.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After a verify of `subject` was scored: refused while the subject is throttled or
    /// disabled (the score is then not given out, nor counted); otherwise a match clears the
    /// subject's count and a failure adds to it. One short critical section, and the same one
    /// whether the probe matched or not. `emit` receives a change, under the lock, so that
    /// changes reach the writer in order.
    pub(crate) fn gate_verify(
        &self,
        subject: &SubjectId,
        matched: bool,
        now: UnixMillis,
        emit: impl FnOnce(ThrottleChange),
    ) -> Result<()> {
        let policy = &self.policy;
        let mut maps = self.maps();
        let entry = maps.subjects.get_mut(subject);
        if let Some(refusal) = entry
            .as_deref()
            .and_then(|state| throttled(ThrottleScope::Subject, state, now))
        {
            return Err(refusal);
        }
        if matched {
            if entry.is_some() {
                maps.subjects.remove(subject);
                emit(ThrottleChange {
                    key: ThrottleKey::Subject(*subject),
                    state: None,
                    alert: None,
                });
            }
            return Ok(());
        }
        let state = match entry {
            Some(state) => state,
            None => maps.subjects.entry(*subject).or_default(),
        };
        state.failures = state.failures.saturating_add(1);
        let mut alert = None;
        if state.failures >= policy.verify_failures_before_disable {
            if !state.disabled {
                alert = Some(format!(
                    "face verification of the subject disabled after {} failed verifies in a row; an admin must reset it",
                    state.failures
                ));
            }
            state.disabled = true;
        } else if state.failures >= policy.verify_failures_before_delay {
            let doublings = state.failures - policy.verify_failures_before_delay;
            let wait = doubled(policy.first_delay, doublings);
            state.next_allowed_at = now.saturating_add(wait);
            if doublings == 0 {
                alert = Some(format!(
                    "{} failed verifies of the subject in a row: each further verify waits, from {} s",
                    state.failures,
                    wait / 1000
                ));
            }
        }
        emit(ThrottleChange {
            key: ThrottleKey::Subject(*subject),
            state: Some(*state),
            alert,
        });
        Ok(())
    }

    /// Before `probes` identifies by `principal`: refused while it waits after a run of misses,
    /// or when the probes would take it past its rate in the current minute (an alert is raised
    /// the first time in a window).
    pub(crate) fn admit_identify(
        &self,
        principal: &str,
        probes: usize,
        now: UnixMillis,
        emit: impl FnOnce(ThrottleChange),
    ) -> Result<()> {
        let policy = &self.policy;
        let mut maps = self.maps();
        if !maps.principals.contains_key(principal) {
            maps.principals
                .insert(principal.to_string(), ThrottleState::default());
        }
        let Some(state) = maps.principals.get_mut(principal) else {
            return Ok(());
        };
        if let Some(refusal) = throttled(ThrottleScope::Principal, state, now) {
            return Err(refusal);
        }
        if now.saturating_sub(state.window_start) >= 60_000 {
            state.window_start = now;
            state.window_count = 0;
        }
        let probes = u32::try_from(probes).unwrap_or(u32::MAX);
        let count = state.window_count.saturating_add(probes);
        if count > policy.identify_per_minute {
            let first_time = state.window_count <= policy.identify_per_minute;
            state.window_count = count;
            let retry_after_ms = Some((state.window_start + 60_000 - now).max(1));
            let alert = first_time.then(|| {
                format!(
                    "identify rate exceeded: more than {} probes in a minute",
                    policy.identify_per_minute
                )
            });
            let state = *state;
            emit(ThrottleChange {
                key: ThrottleKey::Principal(principal.to_string()),
                state: Some(state),
                alert,
            });
            return Err(Error::Throttled {
                scope: ThrottleScope::Principal,
                retry_after_ms,
            });
        }
        state.window_count = count;
        Ok(())
    }

    /// After identifies answered: each probe that matched nobody adds to the run of misses, one
    /// that matched someone ends it. A run that reaches the limit raises an alert and makes the
    /// principal wait, twice as long for each further miss.
    pub(crate) fn settle_identify(
        &self,
        principal: &str,
        misses: impl IntoIterator<Item = bool>,
        now: UnixMillis,
        emit: impl FnOnce(ThrottleChange),
    ) {
        let policy = &self.policy;
        let mut maps = self.maps();
        let Some(state) = maps.principals.get_mut(principal) else {
            return;
        };
        let before = *state;
        let mut alert = None;
        for missed in misses {
            if !missed {
                state.failures = 0;
                state.next_allowed_at = 0;
                continue;
            }
            state.failures = state.failures.saturating_add(1);
            if state.failures >= policy.identify_misses_before_delay {
                let doublings = state.failures - policy.identify_misses_before_delay;
                state.next_allowed_at = now.saturating_add(doubled(policy.first_delay, doublings));
                if doublings == 0 {
                    alert = Some(format!(
                        "{} identify probes in a row matched nobody (enumeration or template-inversion probing?): identify throttled",
                        state.failures
                    ));
                }
            }
        }
        if *state != before {
            emit(ThrottleChange {
                key: ThrottleKey::Principal(principal.to_string()),
                state: Some(*state),
                alert,
            });
        }
    }

    /// Forgets the throttles of erased subjects, or of subjects an admin reset.
    pub(crate) fn forget_subjects(&self, subjects: &[SubjectId]) {
        let mut maps = self.maps();
        for subject in subjects {
            maps.subjects.remove(subject);
        }
    }
}
