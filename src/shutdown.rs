//! Shutting down on purpose (STYLE habit 5): a signal, or a test, requests it; every loop checks
//! it between two pieces of work, and every long wait — an IMAP IDLE held for up to 29 minutes,
//! a relay's answer to the end of the data — ends early on it. Built on a tokio `watch` channel
//! so blocking code reads a flag and async code awaits the change, with no lock of our own.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Cloned freely; every clone shares one flag.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    pub fn request(&self) {
        self.0.send_replace(true);
    }

    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is requested (at once if it already is).
    pub async fn wait(&self) {
        let mut seen = self.0.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = seen.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `d` on this thread, or less when shutdown is requested meanwhile (noticed
    /// within 100 ms). Returns whether the whole time passed.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while !self.requested() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
        false
    }

    /// Request shutdown on SIGTERM or SIGINT, from a small thread of its own. The handlers are
    /// installed before this returns: a signal arriving while the thread is still starting
    /// would otherwise meet the default action and end the process uncleanly.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let flag = self.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (mut term, mut int) = rt.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })?;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::info!("shutdown requested: finishing the message in hand");
                flag.request();
            })
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_seen_by_every_clone_and_ends_waits_and_sleeps_early() {
        let stop = Shutdown::default();
        let other = stop.clone();
        assert!(!other.requested());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let waiter = std::thread::spawn({
            let other = other.clone();
            move || {
                let started = Instant::now();
                assert!(!other.sleep(Duration::from_secs(20)), "the sleep was cut short");
                started.elapsed()
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        stop.request();
        assert!(other.requested());
        assert!(waiter.join().expect("sleeper") < Duration::from_secs(2));
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), other.wait()).await.expect("resolved")
        });
        assert!(Shutdown::default().sleep(Duration::from_millis(10)), "a quiet sleep runs out");
    }
}
