//! One test per row of SPEC §4's table: what is filed and what is answered.

use super::support::{
    golden, value_cell, Mail, ReturnBook, Settings, Val, ANN, CONTENT, DCT, ON_TIME, US,
};
use super::{flat, lines_with, Harness};
use iapt_intake::store::{ReturnState, Store};

const Q1: &str = "2011-12-Q1";
const SUBJECT: &str = "IAPT KPI Q1 2011/12 Leeds PCT";

fn good_mail(id: &str) -> Vec<u8> {
    Mail::new(ANN, SUBJECT, id).xlsx("Leeds IAPT Q1.xlsx", ReturnBook::leeds().xlsx()).bytes()
}

/// Three errors at once: a blank required measure, text where a number belongs, and more people
/// waiting over 28 days than entered treatment.
fn bad_book() -> ReturnBook {
    ReturnBook::leeds()
        .set("KPI5", Val::Blank)
        .set("KPI6", Val::Text("about 150"))
        .set("KPI3a", Val::Num(800.0))
}

/// The headers every reply to a sender carries (SPEC §4).
fn assert_threaded_reply(reply: &super::Reply, to: &str, original_id: &str) {
    assert_eq!(reply.from, US);
    assert_eq!(reply.to, vec![to.to_string()]);
    assert_eq!(reply.in_reply_to.as_deref(), Some(original_id));
    assert!(reply.references.iter().any(|r| r == original_id), "{:?}", reply.references);
    assert_eq!(reply.auto_submitted.as_deref(), Some("auto-replied"));
    assert_eq!(reply.x_loop.as_deref(), Some(US));
}

#[test]
fn good_return_is_accepted_with_a_receipt_in_one_threaded_reply() {
    let h = Harness::new();
    let raw = good_mail("good-1@leeds.nhs.test");
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("submission", "accepted"));
    assert_eq!(done.org.as_deref(), Some("5N1"));
    assert_eq!(done.receipts, vec!["IAPT-2011-12-Q1-5N1-1"]);
    assert_eq!(h.queued(&raw).len(), 1);

    let reply = h.reply(&raw, "submission");
    assert_threaded_reply(&reply, ANN, "good-1@leeds.nhs.test");
    assert_eq!(reply.message_id, done.replies[0].1, "the Message-ID the outbox knows it by");
    assert_eq!(
        reply.subject,
        "Re: IAPT KPI Q1 2011/12 Leeds PCT — accepted, receipt IAPT-2011-12-Q1-5N1-1"
    );
    assert!(reply.body.contains("Receipt:       IAPT-2011-12-Q1-5N1-1"), "{}", reply.body);
    assert!(reply.body.contains("68,653"), "figures as read: {}", reply.body);
    golden("accepted.txt", &reply.body);

    let status = h.store.status(Q1).expect("status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].status, ReturnState::Accepted);
    assert_eq!(status[0].receipt.as_deref(), Some("IAPT-2011-12-Q1-5N1-1"));
}

#[test]
fn bad_return_is_rejected_with_numbered_errors_naming_their_cells() {
    let h = Harness::new();
    let raw = Mail::new(ANN, SUBJECT, "bad-1@leeds.nhs.test")
        .xlsx("leeds.xlsx", bad_book().xlsx())
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("submission", "rejected"));
    assert_eq!(h.queued(&raw).len(), 1);

    let reply = h.reply(&raw, "submission");
    assert_threaded_reply(&reply, ANN, "bad-1@leeds.nhs.test");
    assert_eq!(reply.subject, format!("Re: {SUBJECT} — rejected, 3 errors"));
    // Numbered in the order of their cells.
    for (n, rule, kpi) in
        [(1, "IAPT-E05", "KPI3a"), (2, "IAPT-E01", "KPI5"), (3, "IAPT-E02", "KPI6")]
    {
        let line = format!("{n}. {kpi}, sheet Return, cell {} ({rule})", value_cell(kpi));
        assert!(reply.body.contains(&line), "missing {line:?} in:\n{}", reply.body);
    }
    assert!(!reply.body.contains("Receipt:"), "a rejected return shows no receipt");
    golden("rejected.txt", &reply.body);

    assert!(h.store.standing_returns(Q1).expect("standing").is_empty());
    let status = h.store.status(Q1).expect("status");
    assert_eq!(status[0].status, ReturnState::Rejected);
}

#[test]
fn resubmission_names_the_receipt_it_replaces_and_keeps_the_old_version() {
    let h = Harness::new();
    let first = good_mail("v1@leeds.nhs.test");
    h.process(&first, ON_TIME);
    let second = Mail::new(ANN, SUBJECT, "v2@leeds.nhs.test")
        .xlsx("Leeds IAPT Q1 v2.xlsx", ReturnBook::leeds().set("KPI2", Val::Num(910.0)).xlsx())
        .bytes();
    let done = h.process(&second, "2011-07-21T09:00:00Z");
    assert_eq!(done.outcome, "accepted");
    assert_eq!(done.receipts, vec!["IAPT-2011-12-Q1-5N1-2"]);

    let reply = h.reply(&second, "submission");
    assert_eq!(reply.subject, format!("Re: {SUBJECT} — accepted, receipt IAPT-2011-12-Q1-5N1-2"));
    assert!(
        reply.body.contains("replaces your earlier return, receipt IAPT-2011-12-Q1-5N1-1"),
        "{}",
        reply.body
    );

    let versions = h.store.versions("5N1", Q1).expect("versions");
    assert_eq!(versions.len(), 2, "the old version is kept");
    assert_eq!(versions[0].superseded_by.as_deref(), Some("IAPT-2011-12-Q1-5N1-2"));
    assert_eq!(versions[0].values["KPI2"], Some(900));
    let standing = h.store.standing_returns(Q1).expect("standing");
    assert_eq!(standing.len(), 1);
    assert_eq!(standing[0].receipt, "IAPT-2011-12-Q1-5N1-2");
    assert_eq!(standing[0].values["KPI2"], Some(910));
    let status = h.store.status(Q1).expect("status");
    assert_eq!(status[0].receipt.as_deref(), Some("IAPT-2011-12-Q1-5N1-2"));
}

#[test]
fn two_attachments_one_good_one_bad_get_one_reply_covering_both() {
    let h = Harness::new();
    let raw = Mail::new(ANN, SUBJECT, "two-1@leeds.nhs.test")
        .xlsx("leeds-good.xlsx", ReturnBook::leeds().xlsx())
        .xlsx("leeds-bad.xlsx", bad_book().xlsx())
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!(done.outcome, "partly_accepted");
    assert_eq!(h.queued(&raw).len(), 1, "one reply for the whole message");
    let reply = h.reply(&raw, "submission");
    assert_threaded_reply(&reply, ANN, "two-1@leeds.nhs.test");
    assert_eq!(reply.subject, format!("Re: {SUBJECT} — 1 accepted, 1 rejected"));
    let files = lines_with(&reply.body, "File ");
    assert_eq!(files, vec!["File 1: leeds-good.xlsx", "File 2: leeds-bad.xlsx"]);
    assert!(reply.body.contains("Result:        ACCEPTED"));
    assert!(reply.body.contains("Result:        REJECTED"));
    golden("mixed.txt", &reply.body);
    assert_eq!(h.store.versions("5N1", Q1).expect("versions").len(), 2);
}

#[test]
fn technical_question_goes_to_the_data_collection_team_and_the_sender_is_told() {
    let h = Harness::new();
    let raw = Mail::new(ANN, "IAPT Leeds PCT: deadline for Q1", "q-tech@leeds.nhs.test")
        .body("Can we have an extension to the deadline? Our spreadsheet upload keeps failing.\n")
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("question", "routed_technical"));
    assert_eq!(h.queued(&raw).len(), 2);

    let forward = h.reply(&raw, "forward");
    assert_eq!(forward.to, vec![DCT]);
    assert_eq!(forward.reply_to.as_deref(), Some(ANN));
    assert!(forward.subject.starts_with("Fwd: IAPT Leeds PCT: deadline for Q1 — technical"));
    assert!(
        forward.attachments.iter().any(|(_, b)| b.windows(9).any(|w| w == b"q-tech@le")),
        "the original is attached"
    );
    let ack = h.reply(&raw, "query_ack");
    assert_threaded_reply(&ack, ANN, "q-tech@leeds.nhs.test");
    let reference = ack.subject.rsplit(' ').next().expect("reference").to_string();
    assert!(reference.starts_with("IAPT-Q-20110720-"), "{}", ack.subject);
    assert!(forward.subject.ends_with(&reference), "forward and ack share the reference");
    assert!(
        flat(&ack.body).contains("passed it to the IAPT Data Collection Team, who will answer"),
        "{}",
        ack.body
    );
    assert!(ack.body.contains(&reference));
}

#[test]
fn content_question_goes_to_the_content_contacts() {
    let h = Harness::new();
    let raw = Mail::new(ANN, "IAPT 5N1 question on KPI6", "q-content@leeds.nhs.test")
        .body("How is caseness at the final session counted for recovery in KPI6?\n")
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!(done.outcome, "routed_content");
    assert_eq!(h.reply(&raw, "forward").to, vec![CONTENT]);
    let ack = h.reply(&raw, "query_ack");
    assert!(flat(&ack.body).contains("passed it to the IAPT KPI content contacts"), "{}", ack.body);
    assert!(ack.subject.contains("question received, reference IAPT-Q-"), "{}", ack.subject);
}

#[test]
fn subject_without_iapt_gets_the_subject_line_rule_with_an_example() {
    let h = Harness::new();
    let raw = Mail::new(ANN, "Q1 return Leeds PCT", "no-iapt@leeds.nhs.test")
        .xlsx("leeds.xlsx", ReturnBook::leeds().xlsx())
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("subject_rule", "guidance"));
    assert!(done.receipts.is_empty());
    assert!(h.store.versions("5N1", Q1).expect("versions").is_empty(), "nothing filed as a return");
    let reply = h.reply(&raw, "guidance");
    assert_threaded_reply(&reply, ANN, "no-iapt@leeds.nhs.test");
    assert_eq!(reply.subject, "Re: Q1 return Leeds PCT — subject line needs IAPT");
    assert!(reply.body.contains("IAPT KPI Q1 2011/12 Leeds PCT (5N1)"), "example subject");
    golden("subject_rule.txt", &reply.body);
}

#[test]
fn a_name_two_organisations_share_asks_for_the_code() {
    let h = Harness::new();
    // Heart of Birmingham Teaching PCT (5MX) and South Birmingham PCT (5M1) share "Birmingham";
    // a shared service names both.
    let subject = "IAPT Q1 returns Heart of Birmingham and South Birmingham";
    let raw = Mail::new("analyst@hob.nhs.test", subject, "amb@hob.nhs.test").bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("subject_rule", "guidance"));
    assert_eq!(h.queued(&raw).len(), 1);
    let reply = h.reply(&raw, "guidance");
    assert_eq!(
        reply.subject,
        format!("Re: {subject} — subject line: which organisation? add its code")
    );
    assert!(reply.body.contains("5MX"), "{}", reply.body);
    assert!(reply.body.contains("5M1"), "{}", reply.body);
}

#[test]
fn unauthorised_sender_is_held_and_the_team_gets_the_original() {
    let h = Harness::new();
    let stranger = "someone@webmail.test";
    let raw = Mail::new(stranger, SUBJECT, "stranger@webmail.test")
        .xlsx("leeds.xlsx", ReturnBook::leeds().xlsx())
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("unauthorised", "held"));
    assert!(done.receipts.is_empty());
    assert!(h.store.versions("5N1", Q1).expect("versions").is_empty(), "not accepted");
    let status = h.store.status(Q1).expect("status");
    assert_eq!(status[0].status, ReturnState::Held);
    assert_eq!(h.queued(&raw).len(), 2, "the team's notice and the sender's reply");

    let notice = h.reply(&raw, "notice");
    assert_eq!(notice.to, vec![DCT]);
    assert_eq!(notice.subject, format!("Held for review: {SUBJECT}"));
    assert!(notice.body.contains(stranger), "{}", notice.body);
    assert!(
        notice.attachments.iter().any(|(_, b)| b == &raw),
        "the original message, byte for byte: {:?}",
        notice.attachments.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
    );
    let told = h.reply(&raw, "unauthorised");
    assert_threaded_reply(&told, stranger, "stranger@webmail.test");
    assert_eq!(
        told.subject,
        format!("Re: {SUBJECT} — not accepted: address not registered for 5N1")
    );
    assert!(told.body.contains(DCT), "whom to ask: {}", told.body);
}

#[test]
fn out_of_office_is_filed_and_never_answered() {
    let h = Harness::new();
    let raw =
        Mail::new(ANN, "Automatic reply: IAPT KPI Q1 2011/12 Leeds PCT", "ooo@leeds.nhs.test")
            .header("Auto-Submitted", "auto-replied")
            .body("I am out of the office until 25 July.\n")
            .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("automatic", "filed"));
    assert!(done.replies.is_empty());
    assert!(h.queued(&raw).is_empty());
    assert_eq!(h.store.get_blob(&h.filed(&raw).sha256).expect("raw kept"), raw);
}

#[test]
fn our_own_loop_marker_is_never_answered() {
    let h = Harness::new();
    let raw = Mail::new(ANN, "Re: IAPT KPI Q1 2011/12 Leeds PCT — accepted", "loop@leeds.nhs.test")
        .header("X-Loop", US)
        .body("Your ticket has been updated.\n")
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!(done.class, "automatic");
    assert!(h.queued(&raw).is_empty());
}

/// A delivery status notification (RFC 3464) for one of our replies.
fn bounce_of(reply_id: &str) -> Vec<u8> {
    format!(
        "Return-Path: <>\r\n\
         From: Mail Delivery System <MAILER-DAEMON@mx.leeds.nhs.test>\r\n\
         To: {US}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: Wed, 20 Jul 2011 10:05:00 +0100\r\n\
         Message-ID: <dsn-1@mx.leeds.nhs.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.leeds.nhs.test\r\n\r\n\
         Final-Recipient: rfc822; {ANN}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         From: {US}\r\nTo: {ANN}\r\nSubject: Re: {SUBJECT}\r\nMessage-ID: <{reply_id}>\r\n\r\n\
         --B--\r\n"
    )
    .into_bytes()
}

#[test]
fn bounce_of_our_reply_is_recorded_against_the_original_and_not_answered() {
    let h = Harness::new();
    let original = good_mail("good-b@leeds.nhs.test");
    let done = h.process(&original, ON_TIME);
    let reply_id = done.replies[0].1.clone();

    let dsn = bounce_of(&reply_id);
    let bounce = h.process(&dsn, "2011-07-20T09:05:00Z");
    assert_eq!((bounce.class.as_str(), bounce.outcome.as_str()), ("automatic", "bounce"));
    assert!(h.queued(&dsn).is_empty(), "a bounce is never answered");

    let undelivered = h.store.undelivered().expect("undelivered");
    assert_eq!(undelivered.len(), 1);
    assert!(undelivered[0].bounced);
    assert_eq!(undelivered[0].message_id, reply_id);
    assert_eq!(undelivered[0].message, h.filed(&original).id, "against the original submission");
    let audit = h.store.audit_for(h.filed(&original).id).expect("audit");
    assert!(audit.iter().any(|a| a.event == "reply_bounced"), "{audit:?}");
}

#[test]
fn winmail_dat_asks_for_the_return_as_a_normal_attachment() {
    let h = Harness::new();
    let tnef = b"\x78\x9f\x3e\x22\x01\x00\x01\x00\x01\x00\x01\x00".to_vec();
    let raw = Mail::new(ANN, SUBJECT, "tnef@leeds.nhs.test")
        .attach("winmail.dat", "application/ms-tnef", tnef)
        .bytes();
    let done = h.process(&raw, ON_TIME);
    assert_eq!(done.class, "submission");
    assert!(done.receipts.is_empty());
    assert_eq!(h.queued(&raw).len(), 1);
    let reply = h.reply(&raw, "ask_for_attachment");
    assert_threaded_reply(&reply, ANN, "tnef@leeds.nhs.test");
    assert_eq!(
        reply.subject,
        format!("Re: {SUBJECT} — not filed: please resend as an .xlsx attachment")
    );
    assert!(reply.body.contains("winmail.dat"), "{}", reply.body);
}

#[test]
fn message_over_the_size_limit_is_kept_and_answered_from_its_headers() {
    let h = Harness::with(Settings { message_bytes: Some(20_000), ..Settings::default() });
    let padding: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let raw = Mail::new(ANN, SUBJECT, "huge@leeds.nhs.test")
        .xlsx("leeds.xlsx", ReturnBook::leeds().xlsx())
        .attach("scan.xlsx", super::support::mail::XLSX, padding)
        .bytes();
    assert!(raw.len() > 20_000);
    let done = h.process(&raw, ON_TIME);
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("submission", "rejected"));
    assert!(done.receipts.is_empty());
    assert_eq!(h.store.get_blob(&h.filed(&raw).sha256).expect("raw kept"), raw);
    let reply = h.reply(&raw, "submission");
    assert_threaded_reply(&reply, ANN, "huge@leeds.nhs.test");
    assert!(reply.body.contains("IAPT-E21"), "{}", reply.body);
    assert!(flat(&reply.body).contains("over the limit"), "{}", reply.body);
    let kinds: Vec<String> = h.queued(&raw).into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec!["submission"], "one reply to the sender, nothing forwarded to a team");
}

#[test]
fn a_corrected_return_after_a_rejected_one_stands_and_replaces_nothing() {
    let h = Harness::new();
    let bad = Mail::new(ANN, SUBJECT, "fix-1@leeds.nhs.test").xlsx("a.xlsx", bad_book().xlsx());
    assert_eq!(h.process(&bad.bytes(), ON_TIME).outcome, "rejected");
    let good = good_mail("fix-2@leeds.nhs.test");
    let done = h.process(&good, "2011-07-20T11:00:00Z");
    assert_eq!(done.outcome, "accepted");
    // Every version is numbered, the rejected one too, so the first accepted one is the second.
    assert_eq!(done.receipts, vec!["IAPT-2011-12-Q1-5N1-2"]);
    let reply = h.reply(&good, "submission");
    assert!(!reply.body.contains("replaces"), "no accepted return stood before:\n{}", reply.body);
    let status = h.store.status(Q1).expect("status");
    assert_eq!(status[0].status, ReturnState::Accepted);
    assert_eq!(status[0].receipt.as_deref(), Some("IAPT-2011-12-Q1-5N1-2"));
}

/// SPEC §4a: the From header proves nothing. A return the receiving server found no valid
/// signature for, or one nobody vouches for at all, is held as unverified and never replaces
/// the return that stands; the claimed sender is told once, the team with the evidence.
#[test]
fn a_return_nobody_vouches_for_is_held_as_unverified_and_never_stands() {
    let h = Harness::new();
    h.process(&good_mail("good-1@leeds.nhs.test"), ON_TIME);
    let book = ReturnBook::leeds().set("KPI2", Val::Num(9999.0));
    let failed = Mail::new(ANN, SUBJECT, "forged-1@evil.test")
        .authentication("mx.example.nhs.test; dkim=fail header.d=leeds.nhs.test")
        .xlsx("leeds.xlsx", book.xlsx())
        .bytes();
    let unsigned =
        Mail::new(ANN, SUBJECT, "forged-2@evil.test").unsigned().xlsx("leeds.xlsx", book.xlsx());
    for raw in [failed, unsigned.bytes()] {
        let done = h.process(&raw, ON_TIME);
        assert_eq!((done.class.as_str(), done.outcome.as_str()), ("unverified", "held_unverified"));
        assert!(done.receipts.is_empty());
        let notice = h.reply(&raw, "notice");
        assert_eq!(notice.to, vec![DCT.to_string()]);
        assert!(notice.subject.starts_with("Held as unverified: "), "{}", notice.subject);
        assert!(notice.body.contains("Verified:      NO"), "{}", notice.body);
    }
    let kinds: Vec<String> = h.queued(&unsigned.bytes()).into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec!["notice"], "the claimed sender is told once a day, not twice");
    let status = h.store.status(Q1).expect("status");
    assert_eq!(status[0].status, ReturnState::Accepted, "the genuine return still stands");
    assert_eq!(status[0].receipt.as_deref(), Some("IAPT-2011-12-Q1-5N1-1"));
    let standing = h.store.standing_returns(Q1).expect("standing");
    assert_eq!(standing[0].values.get("KPI2"), Some(&Some(900)), "export keeps Leeds' figure");
}
