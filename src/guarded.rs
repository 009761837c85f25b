//! Reading an attachment under the per-attachment time limit (SPEC §6). The reader is pure and
//! bounded by its size guards; this wrapper adds the wall-clock limit by running it on a worker
//! thread. A reader that overruns is abandoned (its thread finishes in the background, still
//! bounded by the guards) and the file gets a clear IAPT-E21 finding.

use crate::workbook::{read::read, Limits, ReadError, Workbook};
use std::sync::{mpsc, Arc};
use std::time::Duration;

pub fn read_with_timeout(
    bytes: Vec<u8>,
    file_name: &str,
    limits: Limits,
    timeout: Duration,
) -> Result<Workbook, ReadError> {
    let bytes = Arc::new(bytes);
    let (tx, rx) = mpsc::sync_channel(1);
    let (name, shared) = (file_name.to_string(), Arc::clone(&bytes));
    let spawned = std::thread::Builder::new().name("read-attachment".into()).spawn(move || {
        let _ = tx.send(read(&shared, &name, &limits));
    });
    if spawned.is_err() {
        // No thread to be had (resource exhaustion): read inline rather than fail the file.
        return read(&bytes, file_name, &limits);
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(ReadError::Timeout { seconds: timeout.as_secs().max(1) }),
    }
}
