//! The long-running daemon through outages of the stack: Dovecot stopped and started mid-run
//! (the daemon reconnects by itself), and Postfix stopped while a reply is due (the reply waits
//! in the outbox and goes out once, when Postfix is back).

use super::{imap_append, Intake, LEEDS_SUBJECT, NOW};
use crate::mailstack::Part;
use crate::pipeline::support::{Mail, ReturnBook, Val};
use chrono::{DateTime, TimeDelta, Utc};
use iapt_intake::store::{ReplyRow, SqliteStore, Store};
use std::time::{Duration, Instant};

/// One minute after `NOW`: past the outbox's first retry (30 s backoff).
const A_MINUTE_LATER: &str = "2011-07-20T09:01:00Z";

fn leeds_return(it: &Intake, id: &str, kpi2: f64) -> Mail {
    let book = ReturnBook::leeds().set("KPI2", Val::Num(kpi2));
    Mail::new(&it.address("LEEDS"), LEEDS_SUBJECT, id).xlsx("Leeds IAPT Q1.xlsx", book.xlsx())
}

#[test]
fn the_daemon_reconnects_after_dovecot_restarts_and_answers_each_return_once() {
    let it = Intake::start("stack-dovecot");
    let daemon = it.spawn(NOW);
    let limit = Duration::from_secs(30);
    it.wait_for_log("IMAP connected"); // the latency below is the daemon's own

    let sent = Instant::now();
    it.send("LEEDS", &leeds_return(&it, "first@leeds.nhs.test", 900.0));
    let first = it.wait_for_answer("LEEDS", "first@leeds.nhs.test", limit);
    let first_latency = sent.elapsed();
    assert!(first.subject.ends_with("accepted, receipt IAPT-2011-12-Q1-5N1-1"), "{first:?}");

    it.stack.stop_part(Part::Dovecot).expect("stop dovecot");
    // A stopped Dovecot master leaves open sessions running; a real restart ends them
    // (shutdown_clients), so end the daemon's too.
    assert!(it.stack.end_imap_sessions() >= 1, "the daemon had an IMAP session");
    // Postfix takes the return and holds it: its LMTP delivery to Dovecot is deferred. Not by
    // SMTP: with Dovecot's auth socket gone Postfix's smtpd exits at once ("no SASL
    // authentication mechanisms") and its master throttles smtpd, refusing SMTP for a while
    // after Dovecot is back, replies included.
    it.send_by_sendmail("LEEDS", &leeds_return(&it, "second@leeds.nhs.test", 910.0));
    std::thread::sleep(Duration::from_secs(2)); // the daemon meets the outage
    it.stack.restart().expect("start dovecot again");
    let back = Instant::now();
    let second = it.wait_for_answer("LEEDS", "second@leeds.nhs.test", Duration::from_secs(60));
    let recovery = back.elapsed();
    assert!(second.subject.ends_with("accepted, receipt IAPT-2011-12-Q1-5N1-2"), "{second:?}");

    std::thread::sleep(Duration::from_secs(1)); // time for a wrong second copy to land
    for id in ["first@leeds.nhs.test", "second@leeds.nhs.test"] {
        assert_eq!(it.answers("LEEDS", id).len(), 1, "one answer to {id}");
    }
    assert_eq!(it.mailbox("LEEDS").len(), 2);
    let (status, took, log) = daemon.stop_and_log();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("IMAP reconnected"), "{log}");
    assert_eq!(it.in_folder("INBOX"), 0, "{log}");
    assert_eq!(it.in_folder("Processed"), 2);
    println!(
        "dovecot restart: first acceptance {first_latency:.2?} after Postfix took the return; second \
         {recovery:.2?} after Dovecot was back; SIGTERM to exit {took:.2?}"
    );
}

/// The outbox row of the only reply in the store, once `ready` holds (bounded wait; the daemon
/// writes the store while the test reads it).
fn wait_for_reply_row(store: &SqliteStore, ready: impl Fn(&ReplyRow) -> bool) -> ReplyRow {
    let start = Instant::now();
    loop {
        let rows = store.replies_for(1).unwrap_or_default();
        if let [row] = rows.as_slice() {
            if ready(row) {
                return row.clone();
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "outbox never ready: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("test time").with_timezone(&Utc)
}

#[test]
fn with_postfix_down_the_reply_waits_in_the_outbox_and_goes_out_once_it_is_back() {
    let it = Intake::start("stack-postfix");
    let daemon = it.spawn(NOW);
    it.stack.stop_part(Part::Postfix).expect("stop postfix");
    let raw = leeds_return(&it, "held@leeds.nhs.test", 900.0).bytes();
    imap_append(&it.stack, &raw);

    // Filed and moved out of the inbox; the acceptance could not be handed over.
    it.wait_in_folder("Processed", 1);
    let var = it.dir.path().join("var");
    let store = SqliteStore::open(var.join("intake.db"), var.join("blobs")).expect("store");
    let row = wait_for_reply_row(&store, |r| r.attempts >= 1);
    assert_eq!(row.recipients, vec![it.address("LEEDS")]);
    assert!(row.sent_at.is_none() && !row.failed_permanently, "{row:?}");
    assert!(row.last_error.is_some(), "{row:?}");
    assert!(row.next_attempt_at >= at(NOW) + TimeDelta::seconds(24), "{row:?}");
    assert_eq!(it.in_folder("INBOX"), 0);

    // `status` while the daemon runs: the return is accepted and no reply is lost.
    let status = it.command(&["status", "--now", NOW]);
    let leeds = status.lines().find(|l| l.starts_with("5N1 ")).expect("Leeds's row");
    assert!(leeds.contains("accepted") && leeds.contains("IAPT-2011-12-Q1-5N1-1"), "{leeds}");
    assert!(!status.contains("Replies not delivered"), "{status}");
    let (stopped, _, log) = daemon.stop_and_log();
    assert!(stopped.success(), "{stopped}\n{log}");
    assert!(it.mailbox("LEEDS").is_empty());

    // Postfix back; the daemon restarted a minute later (the retry is due) sends it once.
    it.stack.restart().expect("start postfix again");
    let back = Instant::now();
    let daemon = it.spawn(A_MINUTE_LATER);
    let reply = it.wait_for_answer("LEEDS", "held@leeds.nhs.test", Duration::from_secs(20));
    let delay = back.elapsed();
    assert!(reply.subject.ends_with("accepted, receipt IAPT-2011-12-Q1-5N1-1"), "{reply:?}");
    assert!(reply.message_id == row.message_id, "the queued reply itself: {reply:?}");
    let row = wait_for_reply_row(&store, |r| r.sent_at.is_some());
    assert_eq!(row.attempts, 2, "{row:?}");
    std::thread::sleep(Duration::from_secs(1)); // time for a wrong second copy to land
    let (stopped, _, log) = daemon.stop_and_log();
    assert!(stopped.success(), "{stopped}\n{log}");
    assert_eq!(it.answers("LEEDS", "held@leeds.nhs.test").len(), 1, "exactly once");
    assert_eq!(it.mailbox("LEEDS").len(), 1);
    println!("postfix restart: the held acceptance arrived {delay:.2?} after Postfix was back");
}

/// The other order: Dovecot is back and the daemon has reconnected before the return arrives,
/// so only the new session's IDLE can tell the daemon about it.
#[test]
fn a_return_arriving_after_the_reconnect_is_seen_by_the_new_session() {
    let it = Intake::start("stack-late");
    let daemon = it.spawn(NOW);
    it.wait_for_log("IMAP connected");
    it.stack.stop_part(Part::Dovecot).expect("stop dovecot");
    assert!(it.stack.end_imap_sessions() >= 1, "the daemon had an IMAP session");
    it.stack.restart().expect("start dovecot again");
    it.wait_for_log("IMAP reconnected");

    // By sendmail: Postfix's smtpd may still be throttled after the auth socket went away.
    it.send_by_sendmail("LEEDS", &leeds_return(&it, "late@leeds.nhs.test", 910.0));
    let sent = Instant::now();
    let late = it.wait_for_answer("LEEDS", "late@leeds.nhs.test", Duration::from_secs(30));
    let latency = sent.elapsed();
    assert!(late.subject.ends_with("accepted, receipt IAPT-2011-12-Q1-5N1-1"), "{late:?}");
    std::thread::sleep(Duration::from_secs(1)); // time for a wrong second copy to land
    assert_eq!(it.answers("LEEDS", "late@leeds.nhs.test").len(), 1);
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(it.in_folder("INBOX"), 0, "{log}");
    println!("return after the reconnect answered {latency:.2?} after sendmail took it");
}
