//! OAuth2 access tokens for XOAUTH2 (IMAP and SMTP): runs the configured
//! `oauth2_token_command` under a time limit and keeps its token until a server rejects it.
//!
//! Owns running that one command and caching its output. Must not speak any mail protocol and
//! must not know how the token is obtained (that is the command's job: a refresh-token flow, a
//! managed identity, a vault); the token never reaches a log.

use crate::config::Secret;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the token command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot run oauth2_token_command: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("oauth2_token_command did not finish within {0:?}")]
    Timeout(Duration),
    #[error("oauth2_token_command failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("oauth2_token_command printed no token")]
    Empty,
}

/// A cached token from a command. `token()` runs the command only when no token is cached;
/// `invalidate()` after a server refused the token makes the next `token()` run it again.
#[derive(Debug)]
pub struct TokenSource {
    command: String,
    timeout: Duration,
    cached: Mutex<Option<Secret>>,
}

impl TokenSource {
    /// A source running `command` with `sh -c`.
    pub fn new(command: impl Into<String>) -> Self {
        TokenSource { command: command.into(), timeout: DEFAULT_TIMEOUT, cached: Mutex::new(None) }
    }

    /// Limits how long the command may run (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The cached token, or a fresh one from the command.
    pub fn token(&self) -> Result<Secret, TokenError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = cached.as_ref() {
            return Ok(token.clone());
        }
        let token = run(&self.command, self.timeout)?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forget the cached token: the server refused it (expired or revoked).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Runs the command, reading its first non-empty output line as the token.
fn run(command: &str, timeout: Duration) -> Result<Secret, TokenError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(TokenError::Spawn)?;
    // Read the pipes on their own threads so a chatty command cannot block on a full pipe
    // while we wait for it to exit.
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(TokenError::Spawn)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TokenError::Timeout(timeout));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let out = stdout.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    let err = stderr.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err).trim().chars().take(500).collect();
        return Err(TokenError::Failed { status: status.to_string(), stderr });
    }
    let text = String::from_utf8_lossy(&out);
    let token = text.lines().map(str::trim).find(|l| !l.is_empty()).ok_or(TokenError::Empty)?;
    Ok(Secret::new(token))
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // Bounded: a token is a few kilobytes at most.
        let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut buf);
        buf
    })
}

/// SMTP's XOAUTH2 login takes its tokens from here too.
impl crate::outbound::smtp::TokenProvider for TokenSource {
    fn token(&self) -> Result<crate::config::Secret, String> {
        TokenSource::token(self).map_err(|e| e.to_string())
    }

    fn invalidate(&self) {
        TokenSource::invalidate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_commands_first_line_and_is_cached_until_invalidated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = dir.path().join("n");
        // Prints tok-1, tok-2, ... one more each run, so a second run is visible.
        let cmd = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; printf '\\ntok-%s\\n' $n",
            c = counter.display()
        );
        let source = TokenSource::new(cmd);
        assert_eq!(source.token().expect("first").expose(), "tok-1");
        assert_eq!(source.token().expect("cached").expose(), "tok-1");
        source.invalidate();
        assert_eq!(source.token().expect("fresh").expose(), "tok-2");
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let source = TokenSource::new("echo 'refresh token revoked' >&2; exit 3");
        let err = source.token().expect_err("fails");
        assert!(matches!(err, TokenError::Failed { .. }));
        assert!(err.to_string().contains("refresh token revoked"), "{err}");
    }

    #[test]
    fn a_command_printing_nothing_is_an_error() {
        let err = TokenSource::new("true").token().expect_err("empty");
        assert!(matches!(err, TokenError::Empty));
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_timeout() {
        let source = TokenSource::new("sleep 30").with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let err = source.token().expect_err("times out");
        assert!(matches!(err, TokenError::Timeout(_)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
