//! The gate between filing and delivery, so replies can go out while the next messages are
//! fetched and prepared, without a reply ever waiting between "the relay accepted it" and "the
//! store recorded that" (SPEC §5).
//!
//! A delivery worker passes the gate for each reply: the pass is held from reading the outbox
//! through sending to recording the outcome. Filing closes the gate before it opens its
//! transaction; closing waits for the pass in hand to be returned (one send and one store write)
//! and turns every later request away until the filing is committed and the gate reopens. So the
//! two never use the store at once: the worker never sees a batch's uncommitted replies, and its
//! own store writes never wait behind a batch.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    /// Passes handed out and not yet returned.
    inside: usize,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// A pass while the gate is open; `None` while it is closed (the caller stops and comes back
    /// later: what it did not do is still due).
    pub fn enter(&self) -> Option<Pass<'_>> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        s.inside += 1;
        Some(Pass(self))
    }

    /// Closes the gate and waits until every pass is returned. The gate opens again when the
    /// returned guard is dropped, on every path out of the caller.
    pub fn close(&self) -> Closed<'_> {
        let mut s = self.lock();
        s.closed = true;
        while s.inside > 0 {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        Closed(self)
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Held while reading the outbox or sending and recording one reply.
#[derive(Debug)]
pub struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.inside = s.inside.saturating_sub(1);
        self.0.changed.notify_all();
    }
}

/// The gate stays closed while this lives.
#[derive(Debug)]
pub struct Closed<'a>(&'a Gate);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.lock().closed = false;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn closing_waits_for_the_pass_in_hand_and_turns_later_ones_away() {
        let gate = Gate::new();
        let done = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let pass = gate.enter().expect("open");
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                done.store(1, Ordering::SeqCst);
                drop(pass);
            });
            let closed = gate.close();
            assert_eq!(done.load(Ordering::SeqCst), 1, "close returned before the pass was back");
            assert!(gate.enter().is_none(), "a pass while closed");
            assert!(gate.is_closed());
            drop(closed);
        });
        assert!(gate.enter().is_some(), "reopened when the guard went");
        assert!(!gate.is_closed());
    }

    #[test]
    fn no_pass_is_ever_held_while_the_gate_is_closed() {
        let gate = Gate::new();
        let inside = AtomicUsize::new(0);
        let violations = AtomicUsize::new(0);
        let passes = AtomicUsize::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    while !stop.load(Ordering::SeqCst) {
                        if let Some(_pass) = gate.enter() {
                            inside.fetch_add(1, Ordering::SeqCst);
                            passes.fetch_add(1, Ordering::SeqCst);
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                });
            }
            for _ in 0..200 {
                let _closed = gate.close();
                if inside.load(Ordering::SeqCst) != 0 {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::yield_now();
                if inside.load(Ordering::SeqCst) != 0 {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
        assert_eq!(violations.load(Ordering::SeqCst), 0);
        assert!(passes.load(Ordering::SeqCst) > 0, "the workers got through between closings");
    }
}
