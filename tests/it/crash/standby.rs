//! Two daemons on one mailbox and one store (SPEC §9, issue 5): the second waits as a standby
//! and says so; every message is processed once, by the active one; when the active one is
//! killed the standby takes over and carries on.

use super::{log_text, wait_until, Daemon, StoreView, NOW};
use crate::pipeline::support::{self, reply_of, Mail, ReturnBook, Settings, ANN};
use iapt_intake::mailbox::Maildir;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const RUNNING: &str = "iapt-intake running";
const STANDBY: &str = "waiting as a standby";

fn deliver(mailbox: &Maildir, from: usize, to: usize) {
    for i in from..to {
        let mail = Mail::new(ANN, "IAPT KPI Q1 2011/12 Leeds PCT", &format!("standby-{i}@leeds"))
            .xlsx("leeds.xlsx", ReturnBook::leeds().xlsx());
        mailbox.deliver(&mail.bytes()).expect("delivered");
    }
}

/// The `In-Reply-To` of every reply file, with repeats.
fn answered(replies: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(replies) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter_map(|p| reply_of(&std::fs::read(p).expect("reply")).in_reply_to)
        .collect()
}

#[test]
fn a_second_daemon_waits_as_a_standby_and_takes_over_when_the_first_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("iapt-intake.toml");
    std::fs::write(
        &config,
        support::config_text(dir.path(), &Settings { burst: true, ..Settings::default() }),
    )
    .expect("config");
    let mailbox = Maildir::open(dir.path().join("var/mail")).expect("maildir");
    let replies = dir.path().join("var/replies");
    let db = dir.path().join("var/iapt-intake.db");
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));

    let first = Daemon::spawn(&config, &log_a, Some(NOW));
    assert!(wait_until(Duration::from_secs(20), || log_text(&log_a).contains(RUNNING)));
    let mut second = Daemon::spawn(&config, &log_b, Some(NOW));
    let waits = wait_until(Duration::from_secs(20), || log_text(&log_b).contains(STANDBY));
    assert!(waits, "no standby line from the second daemon:\n{}", log_text(&log_b));
    assert!(log_text(&log_b).contains(&format!("pid {}", first.id())), "names the holder");

    deliver(&mailbox, 0, 20);
    let filed = |n: usize| {
        wait_until(Duration::from_secs(60), || {
            db.exists()
                && StoreView::open(&db).messages() as usize == n
                && answered(&replies).len() == n
        })
    };
    assert!(filed(20), "first lot not handled:\n{}", log_text(&log_a));
    assert!(!second.exited(), "the standby gave up");
    assert!(!log_text(&log_b).contains("message processed"), "the standby processed mail");

    first.kill9();
    let active = wait_until(Duration::from_secs(20), || log_text(&log_b).contains(RUNNING));
    assert!(active, "the standby did not take over:\n{}", log_text(&log_b));
    assert!(log_text(&log_b).contains("this one is now active"));
    deliver(&mailbox, 20, 40);
    assert!(filed(40), "second lot not handled:\n{}", log_text(&log_b));

    let ids: BTreeSet<String> = StoreView::open(&db).message_ids().into_iter().collect();
    assert_eq!(ids.len(), 40, "each message filed once");
    let answers = answered(&replies);
    let distinct: BTreeSet<&String> = answers.iter().collect();
    assert_eq!((answers.len(), distinct.len()), (40, 40), "each message answered once");
    assert!(std::fs::read_dir(mailbox.root().join("new")).expect("new/").next().is_none());
    assert_eq!(log_text(&log_b).matches("message processed").count(), 20, "the second lot");
    let stopped = second.stop();
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
}
