//! Reading an attachment under the per-attachment time limit (SPEC §6). The reader is pure and
//! bounded by its budget; this wrapper adds the wall-clock limit by running it on a worker
//! thread. When the time is up the file gets a clear IAPT-E21 finding at once, and the read is
//! stopped through its [`Cancel`] flag, which the reader looks at for every record and XML
//! event: it ends within moments and drops everything it built, so a slow file cannot keep a
//! thread busy or hold memory after its answer has gone (see `workbook::read::budget` for why
//! this rather than a child process).
//!
//! The worker threads are kept for the next attachment ([`Workers`]): a burst of returns reads
//! a thousand attachments, and starting a thread for each cost more than some of the reads.

use crate::workbook::read::{read_until, Cancel};
use crate::workbook::{Limits, ReadError, Workbook};
use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

pub fn read_with_timeout(
    bytes: Vec<u8>,
    file_name: &str,
    limits: Limits,
    timeout: Duration,
) -> Result<Workbook, ReadError> {
    static READERS: OnceLock<Workers> = OnceLock::new();
    let bytes = Arc::new(bytes);
    let (tx, rx) = mpsc::sync_channel(1);
    let (name, shared) = (file_name.to_string(), Arc::clone(&bytes));
    let cancel = Cancel::new();
    let stop = cancel.clone();
    let started = READERS.get_or_init(|| Workers::new("read-attachment", IDLE_READERS)).run(
        Box::new(move || {
            let _ = tx.send(read_until(&shared, &name, &limits, &cancel));
        }),
    );
    if !started {
        // No thread to be had (resource exhaustion): read inline rather than fail the file.
        return read_until(&bytes, file_name, &limits, &Cancel::new());
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => {
            let seconds = timeout.as_secs().max(1);
            stop.stop(seconds);
            Err(ReadError::Timeout { seconds })
        }
    }
}

/// Reader threads kept waiting between attachments (the daemon prepares with two threads, so
/// two are busy at once in the usual case; the rest cover a reader still finishing in the
/// background after its time ran out).
const IDLE_READERS: usize = 4;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads that run jobs, kept between jobs. A job never waits for a thread: when every kept
/// thread is busy (one may be stuck in a job whose caller gave up on it), a new one is started,
/// so a time limit measured by the caller is the job's own time. At most `keep` idle threads
/// stay; any more end once their job is done.
pub struct Workers {
    name: &'static str,
    keep: usize,
    state: Arc<(Mutex<State>, Condvar)>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    /// Threads started so far (for tests and diagnostics).
    started: usize,
}

impl Workers {
    pub fn new(name: &'static str, keep: usize) -> Workers {
        Workers { name, keep, state: Arc::default() }
    }

    /// Runs `job` on a thread at once; `false` if no thread could be started (the job is not
    /// run).
    pub fn run(&self, job: Job) -> bool {
        let (lock, wake) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if s.idle > s.queue.len() {
            // An idle thread is free for this job (each idle thread takes one queued job).
            s.queue.push_back(job);
            wake.notify_one();
            return true;
        }
        s.started += 1;
        drop(s);
        let (state, keep) = (Arc::clone(&self.state), self.keep);
        let spawned = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || work(job, &state, keep));
        if spawned.is_err() {
            lock.lock().unwrap_or_else(PoisonError::into_inner).started -= 1;
        }
        spawned.is_ok()
    }

    /// How many threads have been started so far.
    pub fn started(&self) -> usize {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner).started
    }
}

/// A worker thread: its first job, then queued ones, until more than `keep` threads are idle.
fn work(first: Job, state: &(Mutex<State>, Condvar), keep: usize) {
    let (lock, wake) = state;
    first();
    let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(job) = s.queue.pop_front() {
            drop(s);
            job();
            s = lock.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        if s.idle >= keep {
            return;
        }
        s.idle += 1;
        while s.queue.is_empty() {
            s = wake.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_for(rx: &mpsc::Receiver<usize>, n: usize) -> Vec<usize> {
        (0..n).map(|_| rx.recv_timeout(Duration::from_secs(5)).expect("job ran")).collect()
    }

    /// Waits (bounded) until `n` threads are idle.
    fn settle(workers: &Workers, n: usize) {
        let start = Instant::now();
        while workers.state.0.lock().expect("lock").idle != n {
            assert!(start.elapsed() < Duration::from_secs(5), "never {n} idle threads");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn threads_are_kept_for_later_jobs() {
        let workers = Workers::new("test-worker", 2);
        let (tx, rx) = mpsc::channel();
        for i in 0..50 {
            let tx = tx.clone();
            assert!(workers.run(Box::new(move || tx.send(i).expect("send"))));
            // One at a time: each job finds the thread the last one left idle.
            assert_eq!(wait_for(&rx, 1), vec![i]);
            settle(&workers, 1);
        }
        assert_eq!(workers.started(), 1, "one thread for 50 jobs in turn");
    }

    #[test]
    fn a_stuck_job_does_not_hold_up_the_next() {
        let workers = Workers::new("test-worker", 1);
        let (release, stuck) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        workers.run(Box::new(move || {
            let _ = stuck.recv(); // held until the test lets go
            first.send(0).expect("send");
        }));
        let start = Instant::now();
        workers.run(Box::new(move || tx.send(1).expect("send")));
        assert_eq!(wait_for(&rx, 1), vec![1], "the second job ran while the first was stuck");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(workers.started(), 2);
        release.send(()).expect("release");
        assert_eq!(wait_for(&rx, 1), vec![0]);
    }

    #[test]
    fn a_burst_gets_a_thread_per_job_and_keeps_only_a_few() {
        let workers = Workers::new("test-worker", 2);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        for i in 0..6 {
            let (tx, gate) = (tx.clone(), Arc::clone(&gate));
            workers.run(Box::new(move || {
                let (open, cv) = &*gate;
                let mut g = open.lock().expect("lock");
                while !*g {
                    g = cv.wait(g).expect("wait");
                }
                tx.send(i).expect("send");
            }));
        }
        assert_eq!(workers.started(), 6, "all six run at once");
        *gate.0.lock().expect("lock") = true;
        gate.1.notify_all();
        let mut ran = wait_for(&rx, 6);
        ran.sort_unstable();
        assert_eq!(ran, vec![0, 1, 2, 3, 4, 5]);
        // Only `keep` threads stay; the next jobs reuse them.
        settle(&workers, 2);
        for i in 6..9 {
            let tx = tx.clone();
            workers.run(Box::new(move || tx.send(i).expect("send")));
            wait_for(&rx, 1);
            settle(&workers, 2);
        }
        assert_eq!(workers.started(), 6, "no new thread while kept ones were idle");
    }
}
