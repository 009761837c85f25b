//! A second real IMAP server: Cyrus IMAP 3.6 from Debian's `cyrus-imapd`, started as the
//! `cyrus` user in a private directory by `tests/mailstack/cyrus`. Its folders live under
//! INBOX with `.` between levels, and it shows why names must be compared as the server reports
//! them: `LIST "" "Inbox.Processed"` finds nothing while `CREATE` says it exists.

use super::{command, eventually, message_from, reply_files, write_config, Intake, Out, NOW};
use crate::imap::RawImap;
use crate::pipeline::support::daemon::{log_text, Daemon};
use iapt_intake::mailbox::imap::ImapSource;
use iapt_intake::mailbox::MailSource;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Cyrus {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    password: String,
    password_file: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailstack/cyrus")
}

impl Cyrus {
    fn start() -> Cyrus {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(script())
            .arg("start")
            .arg(dir.path().join("cyrus"))
            .output()
            .expect("the cyrus script runs");
        assert!(out.status.success(), "cyrus start: {}", String::from_utf8_lossy(&out.stderr));
        let env: BTreeMap<String, String> = std::fs::read_to_string(dir.path().join("cyrus/env"))
            .expect("env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Cyrus {
            port: env["CYRUS_IMAP_PORT"].parse().expect("port"),
            user: env["CYRUS_USER"].clone(),
            password: env["CYRUS_PASSWORD"].clone(),
            password_file: PathBuf::from(&env["CYRUS_PASSWORD_FILE"]),
            dir,
        }
    }

    fn append(&self, raw: &str) {
        RawImap::login(self.port, &self.user, &self.password).append("INBOX", raw.as_bytes());
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script())
            .arg("stop")
            .arg(self.dir.path().join("cyrus"))
            .status();
    }
}

#[test]
fn on_cyrus_inbox_processed_is_found_as_cyrus_names_it_and_idle_brings_new_mail() {
    let cyrus = Cyrus::start();
    cyrus.append(&message_from("analyst@leeds.nhs.test", "cyrus-1"));
    cyrus.append(&message_from("analyst@bradford.nhs.test", "cyrus-2"));
    let work = tempfile::tempdir().expect("tempdir");
    let imap = Intake::Imap {
        port: cyrus.port,
        user: &cyrus.user,
        password: &cyrus.password_file,
        processed: "Inbox.Processed",
        idle: true,
    };
    let config = write_config(work.path(), &imap, &Out::Files, "30s");
    let (code, out, err) = command(&config, &["run", "--once", "--now", NOW]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("2 message(s) processed, 0 left"), "{out}\n{err}");
    // Again, with the folder there now: LIST finds nothing, CREATE is refused, and the full
    // listing gives Cyrus's own name.
    let log = work.path().join("daemon.log");
    let daemon = Daemon::spawn(&config, &log, Some(NOW));
    assert!(
        eventually(Duration::from_secs(10), || log_text(&log).contains("IMAP connected")),
        "{}",
        log_text(&log)
    );
    std::thread::sleep(Duration::from_millis(500));
    cyrus.append(&message_from("analyst@kirklees.nhs.test", "cyrus-3"));
    assert!(
        eventually(Duration::from_secs(10), || reply_files(work.path()).len() == 3),
        "the message that arrived during IDLE was not answered:\n{}",
        log_text(&log)
    );
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    assert!(log.contains("INBOX.Processed"), "{log}");
    let mut cfg = iapt_intake::config::Config::load(&config).expect("config");
    let iapt_intake::config::Source::Imap(view) = &mut cfg.intake.source else { panic!("imap") };
    view.folder = "Inbox.Processed".into();
    view.processed_folder = "INBOX.Elsewhere".into();
    let mut processed = ImapSource::connect(view).expect("the processed folder opens");
    assert_eq!(processed.pending().expect("listing").len(), 3, "all three moved there");
}
