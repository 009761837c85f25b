//! Issue 18: mail as Microsoft 365 and other production servers behave. The daemon binary
//! against the real stack (`tests/mailstack`) where Dovecot and Postfix can show it, and
//! against the scriptable IMAP and SMTP servers of `support` for what they cannot: a login
//! refused twice, folder names in another case, MOVE refused, BYE instead of an answer, an end
//! of data answered after 40 s, a sender refused with `550 5.7.60`.
//!
//! The long waits (10 s of outage, 30 s idle windows, 40 s of end of data, 30 s of pause) are
//! in separate tests, which the harness runs in parallel.

mod cyrus;
mod folders;
mod idle;
mod relay;

use crate::mailstack::MailStack;
use crate::pipeline::support::daemon::{log_text, Daemon};
use crate::pipeline::support::repo;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_iapt-intake");

/// Within the Q1 2011/12 window.
const NOW: &str = "2011-07-12T10:00:00Z";

/// The returns mailbox's address in the scriptable servers' tests, and the team's.
const US: &str = "intake@example.nhs.test";
const DCT: &str = "dct@example.nhs.test";

fn stack(name: &str) -> MailStack {
    MailStack::start_temp(name).expect("the mail stack starts (needs root)")
}

/// A message without IAPT in its subject: answered with one reply (the subject-line rule, at
/// most one a day to a sender).
fn plain_message(tag: &str) -> String {
    message_from("analyst@leeds.nhs.test", tag)
}

fn message_from(from: &str, tag: &str) -> String {
    format!(
        "From: An Analyst <{from}>\r\nTo: {US}\r\n\
         Subject: Our figures {tag}\r\nMessage-ID: <{tag}@leeds.nhs.test>\r\n\
         Date: Mon, 11 Jul 2011 09:14:02 +0100\r\n\r\nHello, this is {tag}.\r\n"
    )
}

/// Where the daemon's mail comes from.
enum Intake<'a> {
    /// An IMAP server on loopback without TLS, the intake account's password in `password`.
    Imap { port: u16, user: &'a str, password: &'a Path, processed: &'a str, idle: bool },
    /// The Maildir `<dir>/mail`.
    Maildir,
}

/// Where replies go.
enum Out<'a> {
    /// `.eml` files in `<dir>/replies`.
    Files,
    /// A relay on loopback without TLS; `login` logs in with AUTH PLAIN as that address.
    Smtp { port: u16, login: Option<&'a str>, extra: &'a str },
}

/// Writes `<dir>/iapt-intake.toml` for `intake` and `out`; the store is in `<dir>`.
fn write_config(dir: &Path, intake: &Intake<'_>, out: &Out<'_>, poll: &str) -> PathBuf {
    let root = repo();
    let intake = match intake {
        Intake::Imap { port, user, password, processed, idle } => format!(
            "source = \"imap\"\npoll_interval = \"{poll}\"\n\n[imap]\nhost = \"127.0.0.1\"\n\
             port = {port}\ntls = \"none\"\nusername = \"{user}\"\npassword_file = \"{}\"\n\
             folder = \"INBOX\"\nprocessed_folder = \"{processed}\"\nidle = {idle}\ntimeout = \"5s\"\n",
            password.display()
        ),
        Intake::Maildir => {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(dir.join("mail").join(sub)).expect("maildir");
            }
            format!(
                "source = \"maildir\"\nmaildir = \"{}\"\npoll_interval = \"{poll}\"\n",
                dir.join("mail").display()
            )
        }
    };
    let out = match out {
        Out::Files => format!("transport = \"file\"\ndirectory = \"{}/replies\"\n", dir.display()),
        Out::Smtp { port, login, extra } => {
            let login = match login {
                Some(user) => {
                    let pw = dir.join("smtp-password");
                    std::fs::write(&pw, "secret\n").expect("password");
                    format!("username = \"{user}\"\npassword_file = \"{}\"\n", pw.display())
                }
                None => String::new(),
            };
            format!(
                "transport = \"smtp\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n\
                 tls = \"none\"\ntimeout = \"5s\"\n{login}{extra}"
            )
        }
    };
    // The scripted servers' mail carries no evidence of its sender: these tests are about the
    // transport, and verification has tests of its own (`auth`, `attacks`).
    let text = format!(
        "[intake]\n{intake}\n[store]\npath = \"{d}/intake.db\"\nblobs = \"{d}/blobs\"\n\n\
         [collection]\ndefinitions = \"{r}/config/collections\"\n\
         organisations = \"{r}/config/organisations.csv\"\n\n\
         [routing]\ndata_collection_team = \"{DCT}\"\ncontent_team = \"content@example.nhs.test\"\n\n\
         [auth]\nrequire = \"none\"\n\n\
         [outbound]\nfrom = \"{US}\"\nfrom_name = \"IAPT KPI Returns\"\n\
         templates = \"{r}/config/replies\"\n{out}",
        d = dir.display(),
        r = root.display(),
    );
    let path = dir.join("iapt-intake.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The reply files written to `<dir>/replies`.
fn reply_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("replies")) else { return Vec::new() };
    entries
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read_to_string(p).expect("reply"))
        .collect()
}

/// Waits up to `limit` for `ready`; false if it never was.
fn eventually(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// `iapt-intake ARGS --config CONFIG`: exit code and stdout.
fn command(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).arg("--config").arg(config).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_mailbox_down_at_start_is_waited_for_and_its_mail_filed_once_when_it_is_up() {
    let stack = stack("prod-down-at-start");
    let dir = tempfile::tempdir().expect("tempdir");
    let intake = stack.account("INTAKE").expect("intake");
    crate::imap::smtp_send(
        stack.smtp_port,
        "analyst@leeds.nhs.test",
        &intake.address,
        &plain_message("down"),
    );
    std::thread::sleep(Duration::from_secs(1)); // delivered into the mailbox
    stack.stop_part(crate::mailstack::Part::Dovecot).expect("stop dovecot");
    let imap = Intake::Imap {
        port: stack.imap_port,
        user: &intake.address,
        password: &intake.password_file,
        processed: "Processed",
        idle: true,
    };
    let config = write_config(dir.path(), &imap, &Out::Files, "30s");
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon::spawn(&config, &log, Some(NOW));
    std::thread::sleep(Duration::from_secs(10));
    assert!(!daemon.exited(), "the daemon ended during the outage:\n{}", log_text(&log));
    let text = log_text(&log);
    assert!(text.contains("IMAP connection failed"), "{text}");
    assert!(!text.contains("ERROR"), "an outage at start is a warning, retried:\n{text}");
    stack.restart().expect("dovecot back");
    assert!(
        eventually(Duration::from_secs(30), || reply_files(dir.path()).len() == 1),
        "not answered within 30 s of the mailbox's return:\n{}",
        log_text(&log)
    );
    std::thread::sleep(Duration::from_secs(2));
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    assert_eq!(reply_files(dir.path()).len(), 1, "filed and answered once");
    assert!(log.contains("IMAP reconnected"), "{log}");
    assert_eq!(log.matches("message processed").count(), 1, "{log}");
}

#[test]
fn a_login_refused_twice_at_start_is_tried_again_and_the_mail_filed() {
    use crate::pipeline::support::fake_imap::{FakeImap, Script};
    let server = FakeImap::start(Script { refuse_logins: 2, ..Script::default() }, &[]);
    server.deliver("INBOX", &plain_message("refused"));
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("imap-password");
    std::fs::write(&password, "pw\n").expect("password");
    let imap = Intake::Imap {
        port: server.port,
        user: US,
        password: &password,
        processed: "Processed",
        idle: true,
    };
    let config = write_config(dir.path(), &imap, &Out::Files, "30s");
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::spawn(&config, &log, Some(NOW));
    assert!(
        eventually(Duration::from_secs(20), || reply_files(dir.path()).len() == 1),
        "not answered after two refusals:\n{}",
        log_text(&log)
    );
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    assert_eq!(log.matches("IMAP connection failed").count(), 2, "{log}");
    assert!(log.contains("AUTHENTICATE failed"), "{log}");
    assert_eq!(server.count("Processed"), 1, "moved once");
    assert_eq!(server.count("INBOX"), 0);
}

#[test]
fn when_move_is_refused_run_once_says_the_messages_are_still_in_the_inbox() {
    use crate::pipeline::support::fake_imap::{FakeImap, Script};
    let server = FakeImap::start(Script { refuse_move: true, ..Script::default() }, &["Processed"]);
    for tag in ["m1", "m2", "m3"] {
        server.deliver("INBOX", &plain_message(tag));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("imap-password");
    std::fs::write(&password, "pw\n").expect("password");
    let imap = Intake::Imap {
        port: server.port,
        user: US,
        password: &password,
        processed: "Processed",
        idle: true,
    };
    let config = write_config(dir.path(), &imap, &Out::Files, "30s");
    let (code, stdout, stderr) = command(&config, &["run", "--once", "--now", NOW]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("3 message(s) processed, 3 left in the inbox"), "{stdout}");
    assert!(stdout.contains("Move refused by policy"), "{stdout}");
    assert_eq!(server.count("INBOX"), 3, "all three still there");
    // The next run recognises them as filed: no second reply.
    let replies = reply_files(dir.path()).len();
    assert!(replies >= 1, "{stdout}");
    let (_, again, _) = command(&config, &["run", "--once", "--now", NOW]);
    assert!(again.contains("3 message(s) processed, 3 left"), "{again}");
    assert_eq!(reply_files(dir.path()).len(), replies, "never answered twice");
}

#[test]
fn a_bye_instead_of_a_fetch_answer_is_an_error_not_an_empty_message() {
    use crate::pipeline::support::fake_imap::{FakeImap, Script};
    use iapt_intake::config::{Auth, Credential, Imap, SecretSource, Tls};
    use iapt_intake::mailbox::imap::ImapSource;
    use iapt_intake::mailbox::{MailSource, SourceError};
    let server = FakeImap::start(Script { bye_on_body: true, ..Script::default() }, &["Processed"]);
    server.deliver("INBOX", &plain_message("bye"));
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("pw");
    std::fs::write(&password, "pw\n").expect("password");
    let cfg = Imap {
        host: "127.0.0.1".into(),
        port: server.port,
        tls: Tls::None,
        username: US.into(),
        auth: Auth::Plain,
        credential: Credential::Password(SecretSource::File(password)),
        folder: "INBOX".into(),
        processed_folder: "Processed".into(),
        idle: true,
        ca_file: None,
        timeout: Duration::from_secs(3),
    };
    let mut source = ImapSource::connect(&cfg).expect("login");
    let pending = source.pending().expect("listing");
    assert_eq!(pending.len(), 1);
    let err = source.fetch(&pending[0].key).expect_err("BYE is no answer");
    assert!(!matches!(err, SourceError::Gone { .. }), "{err}");
    assert!(err.is_transient() && err.to_string().contains("BYE"), "{err}");
    assert!(!source.is_connected(), "the session is dropped");
    let many = source.fetch_many(std::slice::from_ref(&pending[0].key));
    assert!(many[0].1.is_err(), "fetch_many does not make an empty message of it either");
}

#[test]
fn the_systemd_unit_restarts_on_every_failure_but_a_config_error_and_never_gives_up() {
    let unit = std::fs::read_to_string(repo().join("deploy/iapt-intake.service")).expect("unit");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(value("Restart"), ["on-failure"]);
    assert_eq!(value("RestartPreventExitStatus"), ["2"], "config errors exit 2: no restart loop");
    assert_eq!(value("StartLimitIntervalSec"), ["0"], "no start limit that gives up for good");
    assert!(!value("RestartSec").is_empty());
    // With systemd's own checker where it is installed (Debian: systemd), on a copy whose
    // ExecStart names the binary just built.
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: the unit's keys were checked, not its syntax");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("iapt-intake.service");
    let text = unit.replace("/usr/local/bin/iapt-intake", BIN);
    std::fs::write(&copy, text).expect("copy");
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().expect("verify");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    // What verify may say about the build machine rather than the unit: the state and
    // credential paths that exist only on an installed system.
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| !l.contains("/etc/iapt-intake") && !l.contains("Failed to prepare filename"))
        .collect();
    assert!(out.status.success() && about_unit.is_empty(), "systemd-analyze verify:\n{said}");
}
