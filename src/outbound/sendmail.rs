//! Hands replies to the local MTA through its `sendmail` command (`sendmail -i -f FROM -- TO…`,
//! the interface Postfix, Exim and sendmail share), the bytes on stdin unchanged.
//!
//! Written by hand rather than with lettre's sendmail transport because that one drops the exit
//! status, and the status is what tells a temporary failure (EX_TEMPFAIL) from a permanent one
//! (EX_NOUSER) — see sysexits(3). It also bounds the run with a timeout, so a wedged MTA cannot
//! stall the sender.

use super::{envelope, OutboxItem, SendError, SendErrorKind, Transport};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The command used when none is configured.
pub const DEFAULT_COMMAND: &str = "/usr/sbin/sendmail";

/// Enough of the MTA's complaint to explain it in `status`; the rest is dropped.
const STDERR_KEEP: usize = 4096;

/// How long to wait for the pipe threads once the MTA has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct SendmailTransport {
    command: OsString,
    args: Vec<OsString>,
    timeout: Duration,
}

impl Default for SendmailTransport {
    fn default() -> Self {
        SendmailTransport::new(DEFAULT_COMMAND)
    }
}

impl SendmailTransport {
    pub fn new(command: impl Into<OsString>) -> SendmailTransport {
        SendmailTransport {
            command: command.into(),
            args: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Extra arguments placed before ours (`-C /etc/postfix-out`, for one).
    pub fn with_args<I, S>(mut self, args: I) -> SendmailTransport
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long one run may take before it is killed and counted as a temporary failure.
    pub fn with_timeout(mut self, timeout: Duration) -> SendmailTransport {
        self.timeout = timeout;
        self
    }

    fn command(&self, item: &OutboxItem) -> Result<Command, SendError> {
        let env = envelope(item)?;
        let mut cmd = Command::new(&self.command);
        cmd.args(&self.args).arg("-i").arg("-f");
        // `<>` is how sendmail-compatible MTAs take the null reverse-path.
        cmd.arg(env.from().map_or_else(|| "<>".to_string(), ToString::to_string));
        cmd.arg("--").args(env.to().iter().map(ToString::to_string));
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        Ok(cmd)
    }
}

impl Transport for SendmailTransport {
    fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
        let command = self.command.to_string_lossy().into_owned();
        let mut child = self
            .command(item)?
            .spawn()
            .map_err(|e| SendError::transient(format!("cannot run {command}: {e}")))?;
        // Feed stdin and drain stderr on their own threads: a child that writes a lot before
        // reading would otherwise deadlock against us. Their results come back over channels
        // with a bounded wait, because a helper the MTA forked may hold the pipes open after
        // the MTA itself has exited or been killed.
        let stdin = child.stdin.take();
        let raw = item.raw.clone();
        let (wrote_tx, wrote) = mpsc::channel();
        std::thread::spawn(move || {
            // A broken pipe is judged after the exit status: a failing MTA is reported by its
            // status, and one that exits 0 without reading everything has not taken the reply.
            let result = stdin.map_or(Ok(()), |mut pipe| pipe.write_all(&raw));
            let _ = wrote_tx.send(result);
        });
        let stderr = child.stderr.take();
        let (said_tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = said_tx.send(stderr.map(read_capped).unwrap_or_default());
        });

        let status = wait_with_timeout(&mut child, self.timeout)
            .map_err(|e| SendError::transient(format!("{command}: {e}")))?;
        let Some(status) = status else {
            return Err(SendError::transient(format!(
                "{command} did not finish within {} s and was stopped",
                self.timeout.as_secs_f32()
            )));
        };
        let complaint = said.recv_timeout(PIPE_GRACE).unwrap_or_default();
        if let Some(err) = failure(&command, status, &complaint) {
            return Err(err);
        }
        match wrote.recv_timeout(PIPE_GRACE) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::transient(format!("writing to {command}: {e}"))),
            Err(_) => {
                Err(SendError::transient(format!("{command} exited before reading the reply")))
            }
        }
    }
}

/// `Ok(None)` when the child was killed for overrunning `timeout`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

fn read_capped(mut pipe: impl Read) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        let room = STDERR_KEEP.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).trim().to_string()
}

fn failure(command: &str, status: ExitStatus, complaint: &str) -> Option<SendError> {
    if status.success() {
        return None;
    }
    let said = if complaint.is_empty() { String::new() } else { format!(": {complaint}") };
    Some(match status.code() {
        Some(code) => SendError {
            kind: exit_kind(code),
            message: format!("{command} exited with status {code}{}{said}", sysexit_name(code)),
        },
        None => SendError::transient(format!("{command} was killed by a signal{said}")),
    })
}

/// Only statuses that blame the message itself are permanent: bad data, unknown user, unknown
/// host. Everything else — EX_TEMPFAIL, a broken install, a wrong configured command — can
/// be fixed without touching the reply, so it is retried rather than lost.
pub(crate) fn exit_kind(code: i32) -> SendErrorKind {
    match code {
        65 | 67 | 68 => SendErrorKind::Permanent,
        _ => SendErrorKind::Transient,
    }
}

fn sysexit_name(code: i32) -> &'static str {
    match code {
        64 => " (EX_USAGE)",
        65 => " (EX_DATAERR)",
        66 => " (EX_NOINPUT)",
        67 => " (EX_NOUSER)",
        68 => " (EX_NOHOST)",
        69 => " (EX_UNAVAILABLE)",
        70 => " (EX_SOFTWARE)",
        71 => " (EX_OSERR)",
        72 => " (EX_OSFILE)",
        73 => " (EX_CANTCREAT)",
        74 => " (EX_IOERR)",
        75 => " (EX_TEMPFAIL)",
        76 => " (EX_PROTOCOL)",
        77 => " (EX_NOPERM)",
        78 => " (EX_CONFIG)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_message_faults_are_permanent() {
        for code in [65, 67, 68] {
            assert_eq!(exit_kind(code), SendErrorKind::Permanent, "{code}");
        }
        for code in [1, 64, 69, 71, 75, 78] {
            assert_eq!(exit_kind(code), SendErrorKind::Transient, "{code}");
        }
    }

    #[test]
    fn stderr_is_kept_only_up_to_the_cap() {
        let noise = vec![b'x'; STDERR_KEEP * 3];
        assert_eq!(read_capped(&noise[..]).len(), STDERR_KEEP);
    }
}
