//! The daemon binary end to end on the real mail stack (issue 4's tests): providers send
//! through Postfix, `iapt-intake run` reads the intake mailbox over IMAP (STARTTLS, the stack's
//! CA) and answers through Postfix's submission port (STARTTLS, AUTH as the intake mailbox), and
//! each test looks where a person would: the provider's and the teams' mailboxes, the intake
//! folders, and `status`. Dovecot and Postfix are stopped mid-run to prove the daemon rides out
//! both outages without losing or doubling a reply.
//!
//! Owns these tests and their helpers only; each test starts and stops a stack of its own.

mod outage;

use crate::imap::{smtp_send, RawImap};
use crate::mailstack::MailStack;
use crate::pipeline::support::daemon::Daemon;
use crate::pipeline::support::{reply_of, Mail, Reply};
use crate::pipeline::support::{write_stack_config, Replies, StackConfig};
use iapt_intake::config::{Auth, Credential, Imap, SecretSource, Tls};
use iapt_intake::mailbox::imap::ImapSource;
use iapt_intake::mailbox::MailSource;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_iapt-intake");

/// Inside the Q1 2011/12 window (opens 1 July, deadline 29 July 2011): returns are on time.
const NOW: &str = "2011-07-20T09:00:00Z";

/// Leeds's subject, naming IAPT and the organisation as the subject rule asks.
const LEEDS_SUBJECT: &str = "IAPT KPI Q1 2011/12 Leeds PCT";

/// The daemon on the stack: the stack, a temporary directory with the config, the registry and
/// everything the daemon writes (store, blobs, log).
struct Intake {
    stack: MailStack,
    dir: TempDir,
    config: PathBuf,
}

impl Intake {
    fn start(name: &str) -> Intake {
        let stack = MailStack::start_temp(name).expect("the mail stack starts (needs root)");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(&stack, dir.path());
        Intake { stack, dir, config }
    }

    /// The address of a stack account (INTAKE, DCT, LEEDS, ...).
    fn address(&self, key: &str) -> String {
        self.stack.account(key).unwrap_or_else(|| panic!("no {key} account")).address
    }

    /// `mail` sent through Postfix's SMTP port by the `from` account, as a provider sends it.
    fn send(&self, from: &str, mail: &Mail) {
        let raw = String::from_utf8(mail.bytes()).expect("test mail is ASCII");
        smtp_send(self.stack.smtp_port, &self.address(from), &self.address("INTAKE"), &raw);
    }

    /// `mail` handed to Postfix's sendmail by the `from` account: queued by Postfix without
    /// its SMTP server, which cannot take mail while Dovecot (its SASL service) is down.
    fn send_by_sendmail(&self, from: &str, mail: &Mail) {
        let sendmail = self.stack.var("MAILSTACK_SENDMAIL").expect("the stack's sendmail");
        let mut child = Command::new(sendmail)
            .args(["-i", "-f", &self.address(from), "--", &self.address("INTAKE")])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sendmail");
        child.stdin.take().expect("stdin").write_all(&mail.bytes()).expect("hand over");
        assert!(child.wait().expect("sendmail exits").success(), "sendmail refused the mail");
    }

    /// `iapt-intake ARGS --config F`; exit 0 asserted, stdout returned.
    fn command(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run the binary");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    fn run_once(&self, now: &str) -> String {
        self.command(&["run", "--once", "--now", now])
    }

    /// The long-running daemon, its log appended to `daemon.log` in the test's directory.
    fn spawn(&self, now: &str) -> Daemon {
        Daemon::spawn(&self.config, &self.dir.path().join("daemon.log"), Some(now))
    }

    /// Every message in `key`'s mailbox (Dovecot's Maildir: new/ and cur/), read as its owner
    /// would see it.
    fn mailbox(&self, key: &str) -> Vec<Reply> {
        let address = self.address(key);
        let (local, domain) = address.split_once('@').expect("an address");
        let maildir = self.stack.dir.join("mail").join(domain).join(local).join("Maildir");
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
            .flatten()
            .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
            .map(|raw| reply_of(&raw))
            .collect()
    }

    /// The messages in `key`'s mailbox that answer the message `original_id`.
    fn answers(&self, key: &str, original_id: &str) -> Vec<Reply> {
        let mut all = self.mailbox(key);
        all.retain(|r| r.in_reply_to.as_deref() == Some(original_id));
        all
    }

    /// Waits (bounded) for the first answer to `original_id` in `key`'s mailbox.
    fn wait_for_answer(&self, key: &str, original_id: &str, limit: Duration) -> Reply {
        let start = Instant::now();
        loop {
            if let Some(reply) = self.answers(key, original_id).into_iter().next() {
                return reply;
            }
            assert!(
                start.elapsed() < limit,
                "no answer to {original_id} in {key}'s mailbox within {limit:?}; log:\n{}\n{}",
                self.log(),
                self.stack.log_tails(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A folder of the intake mailbox, opened as a source of its own to see what is in it.
    fn folder(&self, name: &str) -> ImapSource {
        let intake = self.stack.account("INTAKE").expect("intake account");
        let cfg = Imap {
            host: "127.0.0.1".into(),
            port: self.stack.imap_port,
            tls: Tls::None,
            username: intake.address,
            auth: Auth::Plain,
            credential: Credential::Password(SecretSource::File(intake.password_file)),
            folder: name.into(),
            processed_folder: "Processed".into(),
            idle: false,
            ca_file: None,
            timeout: Duration::from_secs(5),
        };
        ImapSource::connect(&cfg).unwrap_or_else(|e| panic!("open {name}: {e}"))
    }

    /// Waits (bounded) until `n` messages are in the folder `name`.
    fn wait_in_folder(&self, name: &str, n: usize) {
        let mut folder = self.folder(name);
        let start = Instant::now();
        while folder.pending().expect("list the folder").len() < n {
            assert!(start.elapsed() < Duration::from_secs(15), "{n} never reached {name}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until the daemon's log contains `needle`.
    fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(start.elapsed() < Duration::from_secs(15), "no {needle:?} in:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many messages the folder `name` holds now.
    fn in_folder(&self, name: &str) -> usize {
        self.folder(name).pending().expect("list the folder").len()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

/// The config the brief describes: IMAP in with STARTTLS, SMTP out with STARTTLS and AUTH, both
/// verified against the stack's CA; the repository's definitions and templates; a registry in
/// the test's directory.
fn write_config(stack: &MailStack, dir: &Path) -> PathBuf {
    let config = StackConfig {
        poll_interval: "30s",
        imap_timeout: "5s",
        replies: Replies::Smtp,
        store: &dir.join("var"),
        registry: &write_registry(stack, dir),
    };
    write_stack_config(stack, dir, &config)
}

/// The repository's registry with Bradford's submitters moved to the stack's Bradford domain
/// (Leeds's `@leeds.nhs.test` already matches the stack's LEEDS account).
fn write_registry(stack: &MailStack, dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("config/organisations.csv")).expect("the registry");
    let bradford = stack.account("BRADFORD").expect("bradford account").address;
    let domain = &bradford[bradford.find('@').expect("an address")..];
    assert!(text.contains("@bradford-and-airedale.nhs.test"), "the registry lists Bradford");
    let path = dir.join("organisations.csv");
    std::fs::write(&path, text.replace("@bradford-and-airedale.nhs.test", domain))
        .expect("write registry");
    path
}

/// Puts `raw` straight into the intake INBOX with IMAP APPEND (for when Postfix is down).
fn imap_append(stack: &MailStack, raw: &[u8]) {
    let intake = stack.account("INTAKE").expect("intake account");
    RawImap::login(stack.imap_port, &intake.address, &intake.password).append("INBOX", raw);
}

#[test]
fn run_once_answers_each_kind_of_mail_through_the_real_stack_exactly_once() {
    use crate::pipeline::support::{value_cell, ReturnBook, Val};
    let it = Intake::start("stack-once");
    let (leeds, bradford) = (it.address("LEEDS"), it.address("BRADFORD"));
    let good = Mail::new(&leeds, LEEDS_SUBJECT, "good-q1@leeds.nhs.test")
        .xlsx("Leeds IAPT Q1.xlsx", ReturnBook::leeds().xlsx());
    let bad_book = ReturnBook::good("5NY", "Bradford and Airedale Teaching PCT")
        .set("KPI5", Val::Blank)
        .set("KPI6", Val::Text("about 150"));
    let bad =
        Mail::new(&bradford, "IAPT KPI Q1 2011/12 Bradford and Airedale", "bad@bradford.test")
            .xlsx("Bradford IAPT Q1.xlsx", bad_book.xlsx());
    let question = Mail::new(&leeds, "IAPT Leeds PCT: deadline for Q1", "question@leeds.nhs.test")
        .body("Can we have an extension to the deadline? Our spreadsheet upload keeps failing.\n");
    let away = Mail::new(&it.address("UNREGISTERED"), "Out of office", "away@unregistered.test")
        .header("Auto-Submitted", "auto-replied")
        .body("I am out of the office until Monday.\n");
    it.send("LEEDS", &good);
    it.send("BRADFORD", &bad);
    it.send("LEEDS", &question);
    it.send("UNREGISTERED", &away);
    it.wait_in_folder("INBOX", 4);

    let started = Instant::now();
    let out = it.run_once(NOW);
    let took = started.elapsed();
    assert!(out.contains("4 message(s) processed, 0 left in the inbox"), "{out}");
    assert!(out.contains("replies: 4 sent, 0 to retry, 0 failed"), "{out}");
    assert!(out.contains("from someone@unregistered.test\n     automatic: filed\n"), "{out}");

    let limit = Duration::from_secs(15);
    let accepted = it.wait_for_answer("LEEDS", "good-q1@leeds.nhs.test", limit);
    assert_eq!(accepted.from, it.address("INTAKE"));
    assert_eq!(accepted.to, vec![leeds.clone()]);
    assert_eq!(
        accepted.subject,
        format!("Re: {LEEDS_SUBJECT} — accepted, receipt IAPT-2011-12-Q1-5N1-1")
    );
    assert!(accepted.body.contains("Receipt:       IAPT-2011-12-Q1-5N1-1"), "{}", accepted.body);

    let rejected = it.wait_for_answer("BRADFORD", "bad@bradford.test", limit);
    assert!(rejected.subject.ends_with("— rejected, 2 errors"), "{}", rejected.subject);
    for line in [
        format!("1. KPI5, sheet Return, cell {} (IAPT-E01)", value_cell("KPI5")),
        format!("2. KPI6, sheet Return, cell {} (IAPT-E02)", value_cell("KPI6")),
    ] {
        assert!(rejected.body.contains(&line), "{line} missing from:\n{}", rejected.body);
    }

    let forward = it.wait_for_answer("DCT", "question@leeds.nhs.test", limit);
    assert!(forward.subject.starts_with("Fwd: IAPT Leeds PCT: deadline for Q1"), "{forward:?}");
    assert_eq!(forward.reply_to.as_deref(), Some(leeds.as_str()), "the team answers the sender");
    let original = b"Message-ID: <question@leeds.nhs.test>";
    assert!(
        forward.attachments.iter().any(|(_, b)| b.windows(original.len()).any(|w| w == original)),
        "the original is attached: {:?}",
        forward.attachments.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
    );
    let ack = it.wait_for_answer("LEEDS", "question@leeds.nhs.test", limit);
    assert!(ack.subject.contains("question received, reference IAPT-Q-"), "{}", ack.subject);
    println!("run --once: 4 messages filed and answered in {took:.2?}");

    // Every answer is in; give a wrong one (to the out-of-office, or a second copy) time to land.
    std::thread::sleep(Duration::from_secs(1));
    let expected = [("LEEDS", 2), ("BRADFORD", 1), ("DCT", 1), ("CONTENT", 0), ("UNREGISTERED", 0)];
    let count = || expected.map(|(key, _)| (key, it.mailbox(key).len()));
    assert_eq!(count(), expected, "one answer per message, none to the out-of-office");
    for (key, id) in [
        ("LEEDS", "good-q1@leeds.nhs.test"),
        ("BRADFORD", "bad@bradford.test"),
        ("DCT", "question@leeds.nhs.test"),
        ("LEEDS", "question@leeds.nhs.test"),
    ] {
        assert_eq!(it.answers(key, id).len(), 1, "{key} answers to {id}");
    }
    assert_eq!(it.in_folder("INBOX"), 0, "the inbox is drained");
    assert_eq!(it.in_folder("Processed"), 4);

    // Nothing new: a second run finds no mail and sends nothing.
    let again = it.run_once(NOW);
    assert!(again.contains("No new messages."), "{again}");
    assert!(again.contains("replies: 0 sent, 0 to retry, 0 failed"), "{again}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(), expected, "no second copy anywhere");
}
