//! Exactly-once (SPEC §4 last row, §5), the once-a-day guidance limit, the submission windows
//! judged by the time a message arrived, and a crash between filing and sending.

use super::support::{at, Mail, ReturnBook, AFTER_CLOSES, ANN, BEFORE_OPENS, LATE, ON_TIME};
use super::{open, Harness};
use iapt_intake::outbound::{deliver_due, FileTransport};
use iapt_intake::store::{ReturnState, Store};

const SUBJECT: &str = "IAPT KPI Q1 2011/12 Leeds PCT";

fn good_mail(id: &str) -> Vec<u8> {
    Mail::new(ANN, SUBJECT, id).xlsx("leeds.xlsx", ReturnBook::leeds().xlsx()).bytes()
}

fn total_replies(h: &Harness) -> usize {
    let mut n = 0;
    let mut id = 1;
    // Message row ids are dense from 1; count the replies of every message filed.
    while (id as u64) <= h.store.message_count().expect("count") {
        n += h.store.replies_for(id).expect("replies").len();
        id += 1;
    }
    n
}

fn eml_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml")))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_same_message_processed_twice_is_filed_once_and_answered_once() {
    let h = Harness::new();
    let raw = good_mail("twice@leeds.nhs.test");
    let first = h.process_at(&raw, "new/1", ON_TIME, ON_TIME);
    let again = h.process_at(&raw, "new/1", ON_TIME, "2011-07-20T09:01:00Z");
    assert_eq!(first.outcome, "accepted");
    assert_eq!(again.class, "duplicate");
    assert!(again.replies.is_empty() && again.receipts.is_empty());
    assert_eq!(h.store.message_count().expect("count"), 1);
    assert_eq!(total_replies(&h), 1);
    assert_eq!(h.store.versions("5N1", "2011-12-Q1").expect("versions").len(), 1);
}

#[test]
fn the_same_bytes_under_a_new_source_key_are_a_duplicate() {
    let h = Harness::new();
    let raw = good_mail("copy@leeds.nhs.test");
    h.process_at(&raw, "new/a", ON_TIME, ON_TIME);
    let copy = h.process_at(&raw, "imap/77", ON_TIME, ON_TIME);
    assert_eq!(copy.class, "duplicate");
    assert_eq!(h.store.message_count().expect("count"), 1);
    assert_eq!(total_replies(&h), 1);
}

#[test]
fn the_same_message_id_with_different_bytes_is_a_duplicate() {
    let h = Harness::new();
    let raw = good_mail("same-id@leeds.nhs.test");
    h.process(&raw, ON_TIME);
    // The same message relayed again with a trace header added on the way.
    let relayed =
        [b"Received: from relay.nhs.test by mx; Wed, 20 Jul 2011\r\n".as_slice(), &raw].concat();
    let done = h.process(&relayed, ON_TIME);
    assert_eq!(done.class, "duplicate");
    assert_eq!(h.store.message_count().expect("count"), 1);
    assert_eq!(total_replies(&h), 1);
}

#[test]
fn at_most_one_guidance_reply_per_sender_per_day() {
    let h = Harness::new();
    let no_iapt = |id: &str| Mail::new(ANN, "Q1 return Leeds", id).bytes();
    let (a, b, c) = (no_iapt("g1@leeds.nhs.test"), no_iapt("g2@leeds.nhs.test"), no_iapt("g3@l.t"));
    assert_eq!(h.process(&a, "2011-07-20T09:00:00Z").outcome, "guidance");
    let same_day = h.process(&b, "2011-07-20T16:00:00Z");
    assert_eq!(
        (same_day.class.as_str(), same_day.outcome.as_str()),
        ("subject_rule", "guidance_suppressed")
    );
    assert!(h.queued(&b).is_empty(), "filed, not answered");
    assert_eq!(h.filed(&b).outcome, "guidance_suppressed");
    let next_day = h.process(&c, "2011-07-21T09:00:00Z");
    assert_eq!(next_day.outcome, "guidance");
    assert_eq!(h.queued(&c).len(), 1);
}

/// Processes a good return received at `received` (and handled at `now`); returns the outcome,
/// the rules found and the reply body.
fn window_case(received: &str, now: &str) -> (String, Vec<String>, String, Option<ReturnState>) {
    let h = Harness::new();
    let raw = good_mail("window@leeds.nhs.test");
    let done = h.process_at(&raw, "new/w", received, now);
    let reply = h.reply(&raw, "submission");
    let rules = ["IAPT-E11", "IAPT-W04"]
        .iter()
        .filter(|r| reply.body.contains(*r))
        .map(|r| r.to_string())
        .collect();
    let status = h.store.status("2011-12-Q1").expect("status").first().map(|s| s.status);
    (done.outcome, rules, reply.body, status)
}

#[test]
fn a_return_before_the_period_opens_is_rejected_as_not_open() {
    let (outcome, rules, body, _) = window_case(BEFORE_OPENS, BEFORE_OPENS);
    assert_eq!(outcome, "rejected");
    assert_eq!(rules, vec!["IAPT-E11"], "{body}");
}

#[test]
fn a_return_after_the_deadline_is_accepted_and_marked_late() {
    let (outcome, rules, body, status) = window_case(LATE, LATE);
    assert_eq!(outcome, "accepted");
    assert_eq!(rules, vec!["IAPT-W04"], "{body}");
    assert!(body.contains("accepted and marked late"), "{body}");
    assert_eq!(status, Some(ReturnState::Late));
}

#[test]
fn a_return_after_the_hard_close_is_rejected() {
    let (outcome, rules, body, _) = window_case(AFTER_CLOSES, AFTER_CLOSES);
    assert_eq!(outcome, "rejected");
    assert_eq!(rules, vec!["IAPT-E11"], "{body}");
}

#[test]
fn the_time_received_not_the_time_processed_decides_lateness() {
    // Arrived before the deadline while the daemon was down; processed after it.
    let (outcome, rules, body, status) = window_case(ON_TIME, LATE);
    assert_eq!(outcome, "accepted");
    assert!(rules.is_empty(), "on time: {body}");
    assert!(!body.contains("late"), "{body}");
    assert_eq!(status, Some(ReturnState::Accepted));
}

#[test]
fn a_crash_between_filing_and_sending_sends_exactly_one_reply_after_reopening() {
    let dir;
    let raw = good_mail("crash@leeds.nhs.test");
    {
        let h = Harness::new();
        let done = h.process(&raw, ON_TIME);
        assert_eq!(done.replies.len(), 1, "reply queued with the filing");
        // The process dies here: nothing delivered, the store dropped without a goodbye.
        let Harness { dir: d, store, env: _ } = h;
        drop(store);
        dir = d;
    }
    let replies = dir.path().join("var/replies");
    assert_eq!(eml_files(&replies), 0);

    let h = Harness {
        env: super::support::env(dir.path(), &Default::default()),
        store: open(dir.path()),
        dir,
    };
    let transport = FileTransport::new(&replies);
    let stats = deliver_due(&h.store, &transport, at("2011-07-20T09:10:00Z"), 50).expect("deliver");
    assert_eq!(stats.sent, 1);
    assert_eq!(eml_files(&replies), 1);

    let again = h.process(&raw, "2011-07-20T09:11:00Z");
    assert_eq!(again.class, "duplicate");
    let stats = deliver_due(&h.store, &transport, at("2011-07-20T09:12:00Z"), 50).expect("deliver");
    assert_eq!(stats.sent, 0);
    assert_eq!(eml_files(&replies), 1, "still exactly one reply");
}
