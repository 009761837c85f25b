//! Test harness for the project's loopback mail stack (`tests/mailstack/mailstack`): starts
//! Dovecot, Postfix, OpenDKIM and a DNS server in a directory, exposes the ports, CA, test
//! accounts, OAuth2 tokens and DKIM names from the stack's env file, stops one part on demand (to prove reconnects and outbox
//! retries) and everything on drop.
//!
//! Standard library only, so any test binary can include it:
//! `#[path = "../mailstack/harness.rs"] mod mailstack;`. Needs root, as CI has; touches
//! nothing outside its directory beyond what the script documents.

// Each test binary that includes this uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// One part of the stack that a test may stop and start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Dovecot,
    Postfix,
    OAuth2,
    /// OpenDKIM: signs the submission port's mail, verifies the MX port's.
    Dkim,
    /// dnsmasq, publishing the DKIM keys.
    Dns,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Dovecot => "dovecot",
            Part::Postfix => "postfix",
            Part::OAuth2 => "oauth2",
            Part::Dkim => "dkim",
            Part::Dns => "dns",
        }
    }
}

/// A test mailbox: address, password, and a file holding the password (for `password_file`).
#[derive(Debug, Clone)]
pub struct Account {
    pub address: String,
    pub password: String,
    pub password_file: PathBuf,
}

/// A running stack. Ports are on 127.0.0.1; TLS certificates are for `localhost` and
/// `127.0.0.1`, signed by the CA at `ca`.
#[derive(Debug)]
pub struct MailStack {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub lmtp_port: u16,
    pub smtp_port: u16,
    pub smtps_port: u16,
    /// Submission (AUTH required): signed by OpenDKIM as the domain of the account that logged
    /// in, then relayed to the MX port.
    pub submission_port: u16,
    /// The receiving side (no AUTH): OpenDKIM verifies and adds `Authentication-Results` with
    /// [`MailStack::authserv_id`], removing copies of it that arrive with the message.
    pub mx_port: u16,
    /// The DNS server (UDP and TCP) publishing `SELECTOR._domainkey.DOMAIN`.
    pub dns_port: u16,
    pub ca: PathBuf,
    env: BTreeMap<String, String>,
    remove_dir: bool,
}

/// The stack's script, found from the crate root at build time.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailstack/mailstack")
}

/// `mailstack COMMAND DIR [PART]`; the error carries the script's stderr (it ends with the
/// tail of the logs when a start fails).
fn run_script(command: &str, dir: &Path, part: Option<Part>) -> io::Result<()> {
    let mut cmd = Command::new(script());
    cmd.arg(command).arg(dir);
    if let Some(part) = part {
        cmd.arg(part.name());
    }
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "mailstack {command} {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    )))
}

impl MailStack {
    /// Starts a stack in a new directory under the system temp dir, removed again on drop.
    pub fn start_temp(name: &str) -> io::Result<Self> {
        let nanos =
            SystemTime::now().duration_since(UNIX_EPOCH).map_err(io::Error::other)?.subsec_nanos();
        let dir = std::env::temp_dir()
            .join(format!("iapt-mailstack-{name}-{}-{nanos}", std::process::id()));
        let mut stack = Self::start(&dir)?;
        // IAPT_KEEP_STACKS=1 keeps the directory (mail, logs) to look at after a failure.
        stack.remove_dir = std::env::var_os("IAPT_KEEP_STACKS").is_none();
        Ok(stack)
    }

    /// Starts (or finds running) the stack in `dir`; stopped, not removed, on drop.
    pub fn start(dir: &Path) -> io::Result<Self> {
        run_script("start", dir, None)?;
        let text = std::fs::read_to_string(dir.join("env"))?;
        let env: BTreeMap<String, String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let port = |key: &str| -> io::Result<u16> {
            env.get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::other(format!("{key} missing from the stack's env")))
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            imap_port: port("MAILSTACK_IMAP_PORT")?,
            imaps_port: port("MAILSTACK_IMAPS_PORT")?,
            lmtp_port: port("MAILSTACK_LMTP_PORT")?,
            smtp_port: port("MAILSTACK_SMTP_PORT")?,
            smtps_port: port("MAILSTACK_SMTPS_PORT")?,
            submission_port: port("MAILSTACK_SUBMISSION_PORT")?,
            mx_port: port("MAILSTACK_MX_PORT")?,
            dns_port: port("MAILSTACK_DNS_PORT")?,
            ca: PathBuf::from(env.get("MAILSTACK_CA").cloned().unwrap_or_default()),
            env,
            remove_dir: false,
        })
    }

    /// A value from the env file, e.g. `MAILSTACK_OAUTH2_GOOD_TOKEN`.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// The DKIM selector of every signing domain.
    pub fn dkim_selector(&self) -> &str {
        self.var("MAILSTACK_DKIM_SELECTOR").unwrap_or_default()
    }

    /// The domains OpenDKIM signs for: leeds.nhs.test, bradford.nhs.test, other.nhs.test.
    pub fn dkim_domains(&self) -> Vec<&str> {
        self.var("MAILSTACK_DKIM_DOMAINS").unwrap_or_default().split(',').collect()
    }

    /// The authserv-id of the MX port's `Authentication-Results` (mx.example.nhs.test).
    pub fn authserv_id(&self) -> &str {
        self.var("MAILSTACK_DKIM_AUTHSERV_ID").unwrap_or_default()
    }

    /// A test account by its key: INTAKE, DCT, CONTENT, POSTMASTER, LEEDS, BRADFORD,
    /// UNREGISTERED, OTHER (analyst@other.nhs.test, whose submissions are signed by
    /// other.nhs.test whatever their From says).
    pub fn account(&self, key: &str) -> Option<Account> {
        Some(Account {
            address: self.var(&format!("MAILSTACK_{key}_USER"))?.to_string(),
            password: self.var(&format!("MAILSTACK_{key}_PASSWORD"))?.to_string(),
            password_file: self.var(&format!("MAILSTACK_{key}_PASSWORD_FILE"))?.into(),
        })
    }

    /// Load-test account number `n` (1-based): `p001@load.nhs.test` ...
    pub fn load_account(&self, n: u32) -> Option<Account> {
        let count: u32 = self.var("MAILSTACK_LOAD_COUNT")?.parse().ok()?;
        if n == 0 || n > count {
            return None;
        }
        Some(Account {
            address: format!("p{n:03}@{}", self.var("MAILSTACK_LOAD_DOMAIN")?),
            password: self.var("MAILSTACK_LOAD_PASSWORD")?.to_string(),
            password_file: PathBuf::new(),
        })
    }

    /// Mints a bearer token for `user`, valid for `ttl_secs`, accepted by XOAUTH2 at once.
    pub fn mint_token(&self, user: &str, ttl_secs: u64) -> io::Result<String> {
        let tokens = self
            .var("MAILSTACK_OAUTH2_TOKENS")
            .ok_or_else(|| io::Error::other("the stack has no token endpoint of its own"))?;
        let server = script().with_file_name("oauth2-server");
        let out = Command::new("python3")
            .arg(server)
            .args(["mint", "--tokens", tokens, "--user", user, "--ttl"])
            .arg(ttl_secs.to_string())
            .output()?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || token.is_empty() {
            return Err(io::Error::other("minting a token failed"));
        }
        Ok(token)
    }

    /// Stops one part; `restart` brings it back on the same ports.
    pub fn stop_part(&self, part: Part) -> io::Result<()> {
        run_script("stop", &self.dir, Some(part))
    }

    /// Ends the server side of every established IMAP session on this stack (a stopped Dovecot
    /// master leaves its sessions running, where a real restart would end them): finds the
    /// processes holding such a socket through /proc/net/tcp and /proc/PID/fd and signals them.
    /// Returns how many processes held one.
    pub fn end_imap_sessions(&self) -> usize {
        let Ok(tcp) = std::fs::read_to_string("/proc/net/tcp") else { return 0 };
        let locals = [self.imap_port, self.imaps_port].map(|p| format!("0100007F:{p:04X}"));
        let inodes: Vec<String> = tcp
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 9 && locals.iter().any(|l| f[1] == l) && f[3] == "01") // ESTABLISHED
            .map(|f| format!("socket:[{}]", f[9]))
            .collect();
        let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
        let mut holders: Vec<String> = procs
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter(|pid| {
                let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
                fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                    .any(|link| inodes.iter().any(|i| link.as_os_str() == i.as_str()))
            })
            .collect();
        holders.sort();
        holders.dedup();
        for pid in &holders {
            let _ = Command::new("kill").arg("-TERM").arg(pid).status();
        }
        holders.len()
    }

    /// The last `lines` lines of Postfix's and Dovecot's logs, for a failing test to show what
    /// the mail stack did.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["postfix.log", "dovecot.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- last lines of {name}\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Starts whatever part is stopped, on the ports it had.
    pub fn restart(&self) -> io::Result<()> {
        run_script("start", &self.dir, None)
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        let _ = run_script("stop", &self.dir, None);
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn greeting(port: u16) -> String {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("greeting");
        line
    }

    #[test]
    fn stack_greets_on_imap_and_smtp_and_survives_a_dovecot_restart() {
        let stack = MailStack::start_temp("harness").expect("start");
        assert!(greeting(stack.imap_port).starts_with("* OK"));
        assert!(greeting(stack.smtp_port).starts_with("220 "));
        assert!(greeting(stack.submission_port).starts_with("220 "));
        assert!(greeting(stack.mx_port).starts_with("220 mx.example.nhs.test "));
        assert_eq!(stack.dkim_domains(), ["leeds.nhs.test", "bradford.nhs.test", "other.nhs.test"]);
        assert!(stack.ca.is_file());
        let intake = stack.account("INTAKE").expect("intake account");
        assert_eq!(intake.address, "intake@example.nhs.test");
        assert_eq!(
            std::fs::read_to_string(&intake.password_file).expect("password file"),
            intake.password
        );
        stack.stop_part(Part::Dovecot).expect("stop dovecot");
        assert!(TcpStream::connect(("127.0.0.1", stack.imap_port)).is_err());
        let mut smtp =
            TcpStream::connect(("127.0.0.1", stack.smtp_port)).expect("postfix stays up");
        let _ = smtp.write_all(b"QUIT\r\n");
        stack.restart().expect("restart");
        assert!(greeting(stack.imap_port).starts_with("* OK"));
        let dir = stack.dir.clone();
        drop(stack);
        let kept = std::env::var_os("IAPT_KEEP_STACKS").is_some();
        assert_eq!(dir.exists(), kept, "a temporary stack removes its directory unless kept");
    }
}
