//! One active daemon per store. A second `iapt-intake run` on the same store waits as a standby
//! (saying so in the log) until the first stops, then takes over. Correctness does not depend on
//! this — filing is one transaction that refuses a duplicate — but two daemons working the same
//! mailbox would only race each other for nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Held while this process is the active daemon; released on drop (and by the OS on any exit).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    pub path: PathBuf,
}

/// The lock file beside the store: `var/iapt-intake.db` → `var/iapt-intake.db.lock`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Take the lock, waiting (polling once a second) while another daemon holds it. Returns `None`
/// if `stop()` becomes true while waiting.
pub fn acquire(store: &Path, stop: impl Fn() -> bool) -> std::io::Result<Option<StoreLock>> {
    let path = lock_path(store);
    let mut file =
        OpenOptions::new().create(true).truncate(false).write(true).read(true).open(&path)?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if !told {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    tracing::warn!(
                        lock = %path.display(),
                        holder = holder.trim(),
                        "another iapt-intake is processing this store; waiting as a standby"
                    );
                    told = true;
                }
                if stop() {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
    if told {
        tracing::info!(lock = %path.display(), "the other daemon stopped; this one is now active");
    }
    // Say who holds it, for the standby's log line.
    file.set_len(0)?;
    writeln!(file, "pid {} on {}", std::process::id(), hostname())?;
    file.flush()?;
    Ok(Some(StoreLock { _file: file, path }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_second_holder_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("db.sqlite");
        let first = acquire(&store, || false).expect("lock").expect("acquired");
        let released = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&released);
        let store2 = store.clone();
        let waiter = std::thread::spawn(move || {
            let second = acquire(&store2, || false).expect("lock").expect("acquired");
            assert!(flag.load(Ordering::SeqCst), "second got the lock before the first let go");
            drop(second);
        });
        std::thread::sleep(Duration::from_millis(1500));
        released.store(true, Ordering::SeqCst);
        drop(first);
        waiter.join().expect("waiter");
    }

    #[test]
    fn a_waiting_standby_gives_up_when_asked_to_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("db.sqlite");
        let _first = acquire(&store, || false).expect("lock").expect("acquired");
        assert!(acquire(&store, || true).expect("lock").is_none());
        let holder = std::fs::read_to_string(lock_path(&store)).expect("lock file");
        assert!(holder.starts_with(&format!("pid {}", std::process::id())), "{holder}");
    }
}
