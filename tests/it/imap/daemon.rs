//! `iapt-intake run` (the built binary) on an IMAP mailbox of the real stack: a provider's
//! return sent through Postfix is filed and answered, and the message ends up in the processed
//! folder; once with `--once`, once as the long-running daemon on IDLE stopped by SIGTERM.

use super::{deliver, intake_config, pending_until, processed_view, stack};
use crate::mailstack::MailStack;
use crate::pipeline::support::daemon::Daemon;
use crate::pipeline::support::{repo, write_stack_config, Replies, StackConfig};
use iapt_intake::mailbox::imap::ImapSource;
use iapt_intake::mailbox::MailSource;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_iapt-intake");

/// Within the Q1 2011/12 submission window, so the return is judged on its figures.
const NOW: &str = "2011-07-12T10:00:00Z";

/// Leeds's Q1 2011/12 return in the two-column CSV form SPEC §3 accepts, from a Leeds submitter.
fn leeds_return() -> String {
    let csv = "Organisation code,5N1\r\nOrganisation name,Leeds PCT\r\n\
               Reporting period,Q1 2011/12\r\nContact name,Priya Shah\r\n\
               Contact email,priya.shah@leeds.nhs.test\r\nContact telephone,0113 305 7000\r\n\
               KPI1,68653\r\nKPI2,3412\r\nKPI3a,874\r\nKPI3b,1206\r\nKPI4,2600\r\n\
               KPI5,1530\r\nKPI6,602\r\nKPI6b,262\r\nKPI7,58\r\n";
    format!(
        "From: Ann Analyst <analyst@leeds.nhs.test>\r\nTo: intake@example.nhs.test\r\n\
         Subject: IAPT KPI Q1 2011/12 Leeds PCT\r\nMessage-ID: <q1-return@leeds.nhs.test>\r\n\
         Date: Mon, 11 Jul 2011 09:14:02 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nOur Q1 return attached.\r\n\
         --b1\r\nContent-Type: text/csv; name=\"leeds-q1.csv\"\r\n\
         Content-Disposition: attachment; filename=\"leeds-q1.csv\"\r\n\r\n{csv}--b1--\r\n"
    )
}

/// A config with `[imap]` on the stack's intake mailbox and replies written to files.
fn write_config(stack: &MailStack, dir: &Path) -> PathBuf {
    let config = StackConfig {
        poll_interval: "30s",
        imap_timeout: "5s",
        replies: Replies::Files,
        store: dir,
        registry: &repo().join("config/organisations.csv"),
    };
    write_stack_config(stack, dir, &config)
}

/// The reply messages the file transport wrote (each `.eml` has a `.json` envelope beside it).
fn replies(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("replies")) else { return Vec::new() };
    entries
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read_to_string(p).expect("reply"))
        .collect()
}

#[test]
fn run_once_files_a_return_from_imap_and_moves_it_to_the_processed_folder() {
    let stack = stack("imap-daemon-once");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&stack, dir.path());
    deliver(&stack, &leeds_return());
    let cfg = intake_config(&stack);
    let mut inbox = ImapSource::connect(&cfg).expect("login");
    assert_eq!(pending_until(&mut inbox, 1).len(), 1);

    let out = Command::new(BIN)
        .args(["run", "--once", "--now", NOW, "--config"])
        .arg(&config)
        .output()
        .expect("run --once");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("receipt IAPT-2011-12-Q1-5N1-1"), "{stdout}");
    assert!(stdout.contains("1 message(s) processed, 0 left"), "{stdout}");

    assert!(inbox.pending().expect("inbox").is_empty(), "moved out of the inbox");
    assert_eq!(processed_view(&cfg).pending().expect("processed").len(), 1);
    let replies = replies(dir.path());
    assert_eq!(replies.len(), 1, "one acceptance");
    assert!(replies[0].contains("Result:        ACCEPTED\r\n"), "{}", replies[0]);
    assert!(replies[0].contains("Receipt:       IAPT-2011-12-Q1-5N1-1\r\n"), "{}", replies[0]);
}

#[test]
fn the_daemon_on_idle_files_new_mail_and_stops_promptly_on_sigterm() {
    let stack = stack("imap-daemon-idle");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&stack, dir.path());
    let daemon = Daemon::spawn(&config, &dir.path().join("daemon.log"), Some(NOW));
    std::thread::sleep(Duration::from_millis(500)); // connected and waiting
    deliver(&stack, &leeds_return());

    let cfg = intake_config(&stack);
    let mut processed = processed_view(&cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    while processed.pending().expect("processed").is_empty() {
        assert!(Instant::now() < deadline, "the daemon did not file the message within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = replies(dir.path());
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(sent[0].contains("Result:        ACCEPTED\r\n"), "{}", sent[0]);

    let (status, took, log) = daemon.stop_and_log();
    assert!(took < Duration::from_secs(5), "no exit within 5 s of SIGTERM");
    assert!(status.success(), "{log}");
    assert!(log.contains("IMAP connected"), "{log}");
    assert!(took < Duration::from_secs(3), "stopped in {took:?}");
}
