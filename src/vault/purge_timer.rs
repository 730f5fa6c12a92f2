//! The vault's own purge timer (Art. 8): expired subjects are erased every
//! [`OpenOptions::purge_interval`](super::OpenOptions::purge_interval) while the vault is open,
//! not only when the host remembers to. The expired never match in any case; the timer is about
//! their data leaving the device on time.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Core;

/// A thread that runs [`Core::purge_expired`] at an interval until it is stopped. A purge that
/// fails (a damaged consent of an expired subject, a full disk) is audited by the purge itself,
/// and the timer tries again at the next interval.
pub(super) struct PurgeTimer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    worker: Option<JoinHandle<()>>,
}

impl PurgeTimer {
    pub(super) fn start(core: Arc<Core>, interval: Duration) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let worker = std::thread::Builder::new()
            .name("facevault-purge".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut guard = stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                loop {
                    let (next, _) = wake
                        .wait_timeout_while(guard, interval, |stopped| !*stopped)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    guard = next;
                    if *guard {
                        return;
                    }
                    // Not under the stop lock: a close waits for the purge, not the other way.
                    drop(guard);
                    let _ = core.purge_expired();
                    guard = stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            })?;
        Ok(Self {
            stop,
            worker: Some(worker),
        })
    }

    /// Stops the timer, waiting for a purge under way to finish.
    pub(super) fn stop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        wake.notify_one();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for PurgeTimer {
    fn drop(&mut self) {
        self.stop();
    }
}
