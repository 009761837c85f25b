//! Unit tests of `Inbound::parse` on small hand-written messages: headers, signals, body,
//! attachments in nested messages, reports and limits.

use super::*;
use crate::mail::attachment::AttachmentKind;
use crate::mail::parts::{MAX_ATTACHMENTS, MAX_DEPTH};

fn parse(text: &str) -> Inbound {
    Inbound::parse(text.as_bytes())
}

#[test]
fn addresses_ids_and_threading_are_read() {
    let m = parse(
        "From: \"Analyst, Ann\" <Ann.Analyst@Leeds.NHS.test>\n\
         Reply-To: team@leeds.nhs.test\n\
         To: IAPT <iapt.kpi@collection.test>, b@x.test\n\
         Cc: c@x.test\n\
         Subject:  IAPT\t KPI\n   Leeds \n\
         Message-ID: <m1@leeds.nhs.test>\n\
         In-Reply-To: <r1@intake.test>\n\
         References: <m0@leeds.nhs.test> <r1@intake.test>\n\
         Date: Tue, 12 Jul 2011 10:00:00 +0100\n\n\
         Body text\n",
    );
    let from = m.from.as_ref().expect("from");
    assert_eq!(from.address, "ann.analyst@leeds.nhs.test");
    assert_eq!(from.name.as_deref(), Some("Analyst, Ann"));
    assert_eq!(m.reply_to[0].address, "team@leeds.nhs.test");
    assert_eq!(m.to.len(), 2);
    assert_eq!(m.cc[0].address, "c@x.test");
    assert_eq!(m.subject, "IAPT KPI Leeds");
    assert_eq!(m.message_id.as_deref(), Some("m1@leeds.nhs.test"));
    assert_eq!(m.in_reply_to, vec!["r1@intake.test"]);
    assert_eq!(m.references, vec!["m0@leeds.nhs.test", "r1@intake.test"]);
    assert_eq!(m.date.map(|d| d.to_rfc3339()).as_deref(), Some("2011-07-12T10:00:00+01:00"));
    assert_eq!(m.body.trim(), "Body text");
    assert!(m.problems.is_empty(), "{:?}", m.problems);
}

#[test]
fn missing_headers_are_problems_not_failures() {
    let m = parse("Subject: IAPT\n\nhello\n");
    assert!(m.from.is_none() && m.message_id.is_none());
    assert_eq!(m.problems.len(), 3, "{:?}", m.problems);
}

#[test]
fn automatic_signals_are_collected() {
    let m = parse(
        "Return-Path: <>\nFrom: a@b.test\nAuto-Submitted: Auto-Replied; owner-email=\"a@b.test\"\n\
         Precedence: Bulk\nList-Id: <leads.lists.test>\nX-Loop: one@x.test\nX-Loop: two@x.test\n\
         X-AutoReply: yes\nX-MS-Exchange-Inbox-Rules-Loop: a@b.test\n\nhi\n",
    );
    let s = &m.signals;
    assert_eq!(s.return_path.as_deref(), Some(""));
    assert_eq!(s.auto_submitted.as_deref(), Some("auto-replied"));
    assert_eq!(s.precedence.as_deref(), Some("bulk"));
    assert_eq!(s.list_id.as_deref(), Some("<leads.lists.test>"));
    assert_eq!(s.x_loop, vec!["one@x.test", "two@x.test"]);
    assert_eq!(s.extra_headers, vec!["X-Autoreply", "X-MS-Exchange-Inbox-Rules-Loop"]);
}

#[test]
fn html_only_body_becomes_text_and_long_bodies_are_capped() {
    let m = parse(
        "From: a@b.test\nContent-Type: text/html\n\n<p>What <b>counts</b> as caseness?</p>\n",
    );
    assert!(m.body.contains("What counts as caseness?"), "{}", m.body);
    assert!(!m.body.contains('<'));
    let long = format!(
        "From: a@b.test\nContent-Type: text/plain; charset=utf-8\n\n{}\n",
        "é".repeat(BODY_LIMIT)
    );
    let m = parse(&long);
    assert!(m.body.len() <= BODY_LIMIT && m.body.len() > BODY_LIMIT - 4);
}

/// A message forwarding a message `levels` deep, the innermost carrying a CSV return.
fn nested(levels: usize) -> String {
    let mut inner = "From: f@lincs.test\nSubject: inner\nMessage-ID: <inner@lincs.test>\n\
                     Content-Type: multipart/mixed; boundary=\"b0\"\n\n--b0\nContent-Type: text/plain\n\nhi\n\
                     --b0\nContent-Type: text/csv; name=\"return.csv\"\n\nKPI1,10\n--b0--\n"
        .to_string();
    for level in 1..=levels {
        inner = format!(
            "From: f{level}@lincs.test\nSubject: Fwd\nContent-Type: multipart/mixed; boundary=\"b{level}\"\n\n\
             --b{level}\nContent-Type: text/plain\n\nsee below\n--b{level}\nContent-Type: message/rfc822\n\n{inner}\n--b{level}--\n"
        );
    }
    inner
}

#[test]
fn attachments_inside_forwarded_messages_are_found_with_their_depth() {
    let m = parse(&nested(2));
    assert_eq!(m.attachments.len(), 1, "{:?}", m.problems);
    let a = &m.attachments[0];
    assert_eq!((a.name.as_str(), a.kind, a.depth), ("return.csv", AttachmentKind::Spreadsheet, 2));
    assert_eq!(a.bytes.trim_ascii(), b"KPI1,10");
}

#[test]
fn forwarding_deeper_than_the_cap_is_a_problem_not_a_hang() {
    let m = parse(&nested(MAX_DEPTH + 2));
    assert!(m.attachments.is_empty());
    assert!(m.problems.iter().any(|p| p.contains("nested deeper")), "{:?}", m.problems);
    assert_eq!(m.unread, vec![Unread::NestingCut]);
    assert!(parse(&nested(MAX_DEPTH)).unread.is_empty(), "within the cap all is read");
}

#[test]
fn attachment_count_is_capped() {
    let mut text = "From: a@b.test\nContent-Type: multipart/mixed; boundary=\"z\"\n\n".to_string();
    for i in 0..MAX_ATTACHMENTS + 5 {
        text.push_str(&format!(
            "--z\nContent-Type: application/octet-stream; name=\"f{i}.bin\"\n\nx\n"
        ));
    }
    text.push_str("--z--\n");
    let m = parse(&text);
    assert_eq!(m.attachments.len(), MAX_ATTACHMENTS);
    assert!(m.problems.iter().any(|p| p.contains("attachments")));
    assert_eq!(m.unread, vec![Unread::AttachmentCap]);
}

/// A multipart with no boundary parameter, or one that never appears in the body, is kept by
/// mail-parser as one opaque part: the return inside is unseen and must be marked so.
#[test]
fn a_multipart_that_cannot_be_split_is_marked_unread() {
    let body = "\n--xyz\nContent-Type: text/plain\n\nhello\n\
                --xyz\nContent-Type: text/csv; name=\"r.csv\"\n\nKPI1,1\n--xyz--\n";
    for content_type in ["multipart/mixed; boundary=\"declared\"", "multipart/mixed"] {
        let m = parse(&format!("From: a@b.test\nContent-Type: {content_type}\n{body}"));
        assert!(
            m.attachments.iter().all(|a| a.kind != AttachmentKind::Spreadsheet),
            "{content_type}: {:?}",
            m.attachments
        );
        assert_eq!(m.unread, vec![Unread::BrokenMime], "{content_type}: {:?}", m.problems);
        assert!(m.problems.iter().any(|p| p.contains("could not be split")), "{:?}", m.problems);
    }
    let whole =
        parse(&format!("From: a@b.test\nContent-Type: multipart/mixed; boundary=xyz\n{body}"));
    assert!(whole.unread.is_empty(), "{:?}", whole.problems);
    assert_eq!(whole.attachments.len(), 1);
    let headers_only = parse("From: a@b.test\nContent-Type: multipart/mixed; boundary=xyz\n\n");
    assert!(headers_only.unread.is_empty(), "an empty body hides nothing");
}

#[test]
fn delivery_report_with_an_enclosed_message_gives_the_original_id() {
    let m = parse(
        "From: Mail Delivery Subsystem <mailer-daemon@mx.test>\nReturn-Path: <>\n\
         Content-Type: multipart/report; report-type=\"Delivery-Status\"; boundary=\"r\"\n\n\
         --r\nContent-Type: text/plain\n\nfailed\n\
         --r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.test\n\n\
         Final-Recipient: rfc822; a@x.test\nAction: Failed\nStatus: 5.0.0\n\n\
         Final-Recipient: rfc822; b@x.test\nAction: delayed\nStatus: 4.0.0\n\
         --r\nContent-Type: message/rfc822\n\nFrom: us@intake.test\nMessage-ID: <reply-5@intake.test>\n\nbody\n\
         --r--\n",
    );
    let report = m.report.expect("a report");
    assert_eq!(report.report_type.as_deref(), Some("delivery-status"));
    assert_eq!(report.actions, vec!["failed", "delayed"]);
    assert_eq!(report.original_message_id.as_deref(), Some("reply-5@intake.test"));
    assert!(report.is_failure());
}

#[test]
fn free_form_bounce_finds_the_quoted_message_id() {
    let m = parse(
        "From: Mail Delivery System <Mailer-Daemon@mx.test>\nX-Failed-Recipients: a@x.test\n\
         Subject: Mail delivery failed\n\n\
         This message was created automatically by mail delivery software.\n\n\
         ------ This is a copy of the message, including all the headers. ------\n\
         From: us@intake.test\nMessage-ID: <reply-6@intake.test>\n",
    );
    let report = m.report.expect("a bounce");
    assert_eq!(report.report_type, None);
    assert_eq!(report.original_message_id.as_deref(), Some("reply-6@intake.test"));
}

#[test]
fn a_person_writing_is_not_a_report() {
    let m = parse("From: ann@leeds.test\nSubject: hi\n\nMessage-ID: in my text\n");
    assert!(m.report.is_none());
}

#[test]
fn only_the_multipart_left_open_is_reported() {
    let m = parse(
        "From: a@b.test\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n\
         --outer\nContent-Type: multipart/alternative; boundary=\"inner\"\n\n\
         --inner\nContent-Type: text/plain\n\nhello\n--inner--  \n\
         --outer\nContent-Type: text/csv; name=\"r.csv\"\n\nKPI1,1\n",
    );
    let open: Vec<&String> = m.problems.iter().filter(|p| p.contains("closing boundary")).collect();
    assert_eq!(open.len(), 1, "{:?}", m.problems);
    assert!(open[0].starts_with("multipart part 0 "), "{open:?}");
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.unread, vec![Unread::BrokenMime], "the message may be cut short");
}

#[test]
fn deeply_nested_messages_do_not_overflow_the_stack() {
    let bomb = "From: a@b.test\nContent-Type: message/rfc822\n\n".repeat(50_000)
        + "From: z@b.test\n\nend\n";
    let m = parse(&bomb);
    assert_eq!(m.sender(), Some("a@b.test"));
    assert!(m.problems.iter().any(|p| p.contains("only the headers")), "{:?}", m.problems);
    let digests =
        "From: a@b.test\nContent-Type: Multipart/Digest; boundary=\"d\"\n\n--d\n\n".repeat(20_000);
    let m = parse(&digests);
    assert!(m.problems.iter().any(|p| p.contains("only the headers")), "{:?}", m.problems);
    assert_eq!(m.unread, vec![Unread::HeadersOnly]);
}

#[test]
fn a_few_nesting_words_are_normal_mail() {
    assert!(!nesting_markers_exceed(b"Content-Type: message/rfc822; a GLOBAL digest", 3));
    assert!(nesting_markers_exceed(b"rfc822 Global DIGEST rfc822", 3));
    // A word at the very end counts; a word cut short by the end does not.
    assert!(nesting_markers_exceed(b"x/rFc822", 0));
    assert!(!nesting_markers_exceed(b"x/rfc82", 0));
    assert!(!nesting_markers_exceed(b"rrrrrrgggggddddd", 0));
}

#[test]
fn hostile_subjects_and_header_floods_are_capped() {
    let long = format!("From: a@b.test\nSubject: IAPT {}\n\nx\n", "Leeds ".repeat(100_000));
    let m = parse(&long);
    assert_eq!(m.subject.chars().count(), SUBJECT_LIMIT);
    let flood = format!("From: a@b.test\n{}\nx\n", "X-Loop: a@b.test\n".repeat(10_000));
    assert_eq!(parse(&flood).signals.x_loop.len(), SIGNAL_VALUES_LIMIT);
}
