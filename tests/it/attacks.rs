//! The attack corpus (SPEC §4a, §4b; issue 11) through the whole pipeline. Each directory of
//! `tests/fixtures/attacks/` (written by `make-attack-mail.py` there) is one case: its messages
//! are processed in order into a fresh SQLite store, as received by a mailbox whose receiving
//! server is `mx.example.nhs.test`, and what a reviewer would check is compared with the case's
//! `expected.json`: each message's class and outcome, Leeds' status and standing receipt, and
//! every reply queued (kind, recipient, held at a limit or not). A mismatch writes
//! `actual.json` beside it. Then the cases a golden file cannot show: replies counted across a
//! flood and an echo loop, the text of echoed values, and a 300 MB Maildir file.

use crate::pipeline::support::{at, reply_of, repo, Mail, Settings, ANN, DCT, ON_TIME};
use crate::pipeline::Harness;
use iapt_intake::mailbox::{MailSource, Maildir};
use iapt_intake::outbound::Outbox;
use iapt_intake::pipeline::{self, Incoming, Processed};
use iapt_intake::store::{sha256_hex, Store};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const Q1: &str = "2011-12-Q1";

fn corpus() -> PathBuf {
    repo().join("tests/fixtures/attacks")
}

/// The test mailbox: Leeds has two exact addresses registered beside its domain; the
/// receiving server `mx.example.nhs.test` is trusted (SPEC §4a, require = "aligned").
pub fn settings() -> Settings {
    Settings { organisations: Some(corpus().join("organisations.csv")), ..Settings::default() }
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn messages(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("case dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read eml"))
        })
        .collect()
}

/// Every reply the store holds for the message with these bytes: kind, recipient and whether a
/// limit kept it.
fn replies_of(h: &Harness, raw: &[u8], held: &[(i64, String)]) -> Vec<Value> {
    let Some(filed) = h.store.find_duplicate(None, &sha256_hex(raw)).expect("store") else {
        return Vec::new();
    };
    h.store
        .replies_for(filed.id)
        .expect("replies")
        .iter()
        .map(|r| {
            let limit = held.iter().find(|(id, _)| *id == r.id).map(|(_, l)| l.clone());
            json!({"kind": r.kind, "to": r.recipients, "held": limit})
        })
        .collect()
}

fn summary(h: &Harness, steps: &[(String, Vec<u8>, Processed)]) -> Value {
    let held: Vec<(i64, String)> = h
        .store
        .undelivered()
        .expect("undelivered")
        .into_iter()
        .filter_map(|u| u.held.map(|l| (u.id, l)))
        .collect();
    let status = h.store.status(Q1).expect("status");
    let leeds = status.iter().find(|s| s.org == "5N1");
    let standing = h.store.standing_returns(Q1).expect("standing");
    let steps: Vec<Value> = steps
        .iter()
        .map(|(name, raw, done)| {
            json!({
                "message": name,
                "class": done.class,
                "outcome": done.outcome,
                "org": done.org,
                "receipts": done.receipts,
                "replies": replies_of(h, raw, &held),
            })
        })
        .collect();
    json!({
        "steps": steps,
        "leeds_status": leeds.map(|s| s.status.as_str()),
        "leeds_standing": standing.iter().find(|s| s.org == "5N1").map(|s| s.receipt.clone()),
        "held_messages": h.store.held(Q1).expect("held").len(),
    })
}

fn run_case(dir: &Path) -> (Harness, Vec<(String, Vec<u8>, Processed)>) {
    let h = Harness::with(settings());
    let steps = messages(dir)
        .into_iter()
        .map(|(name, raw)| {
            let done = h.process(&raw, ON_TIME);
            (name, raw, done)
        })
        .collect();
    (h, steps)
}

#[test]
fn every_attack_ends_as_the_spec_says() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 30, "the corpus is missing: {}", corpus().display());
    for dir in &all {
        let (h, steps) = run_case(dir);
        let actual = summary(&h, &steps);
        let expected_path = dir.join("expected.json");
        let actual_path = dir.join("actual.json");
        let expected: Value = std::fs::read_to_string(&expected_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        if expected == actual {
            let _ = std::fs::remove_file(&actual_path);
        } else {
            let text = serde_json::to_string_pretty(&actual).expect("json") + "\n";
            std::fs::write(&actual_path, text).expect("write actual");
            failures.push(dir.file_name().expect("name").to_string_lossy().into_owned());
        }
    }
    assert!(failures.is_empty(), "cases differ from expected.json (see actual.json): {failures:?}");
}

/// Replies of `kind` queued to outside addresses (not the team) across the whole store, and
/// how many of them a limit kept.
fn to_outsiders(h: &Harness, steps: &[(String, Vec<u8>, Processed)]) -> (usize, usize) {
    let held = h.store.undelivered().expect("undelivered");
    let mut queued = 0;
    let mut kept = 0;
    for (_, raw, _) in steps {
        let Some(filed) = h.store.find_duplicate(None, &sha256_hex(raw)).expect("store") else {
            continue;
        };
        for r in h.store.replies_for(filed.id).expect("replies") {
            if r.recipients.iter().any(|t| t != DCT && !t.starts_with("iapt.")) {
                queued += 1;
                if held.iter().any(|u| u.id == r.id && u.held.is_some()) {
                    kept += 1;
                }
            }
        }
    }
    (queued, kept)
}

#[test]
fn forged_questions_in_third_parties_names_write_to_none_of_them() {
    let (h, steps) = run_case(&corpus().join("backscatter-forged-questions"));
    let (queued, _) = to_outsiders(&h, &steps);
    assert_eq!(queued, 0, "acknowledgements to forged senders");
    let forwards = steps.iter().filter(|(_, _, d)| d.replies.iter().any(|r| r.0 == "forward"));
    assert_eq!(forwards.count(), 20, "each question still reaches the team, marked unverified");
    let first = &steps[0];
    let forward = h.reply(&first.1, "forward");
    assert!(forward.body.starts_with("UNVERIFIED SENDER:"), "{}", forward.body);
}

#[test]
fn plus_tags_do_not_multiply_the_per_address_limit() {
    let (h, steps) = run_case(&corpus().join("per-address-limit-with-plus-tags"));
    let (queued, kept) = to_outsiders(&h, &steps);
    assert_eq!(queued - kept, 10, "ten acknowledgements a day to ann.analyst, whatever the +tag");
    assert_eq!(kept, 10, "the rest are kept, not sent");
    let notices: usize = steps
        .iter()
        .map(|(_, _, d)| d.replies.iter().filter(|r| r.0 == "limit_notice").count())
        .sum();
    assert_eq!(notices, 1, "the team is told once");
    // The team judges them genuine: `requeue` releases the kept replies, due at once.
    let released = h.store.requeue_failed(None, at(ON_TIME), "test").expect("requeue");
    assert_eq!(released.len(), 10);
    let due = h.store.due(at(ON_TIME), 100).expect("due");
    assert!(released.iter().all(|id| due.iter().any(|d| d.id == *id)), "released but not due");
}

/// An autoresponder that answers every message with a copy of it, without `Auto-Submitted` or
/// `X-Loop`: our acknowledgement comes back as a new question, quoting ours. Counts our replies
/// over `rounds` echoes.
fn echo_loop(rounds: usize) -> (usize, usize) {
    let h = Harness::with(settings());
    let first = Mail::new(ANN, "IAPT Leeds: when is the deadline?", "q-0@leeds.nhs.test")
        .header("Authentication-Results", "mx.example.nhs.test; dkim=pass header.d=leeds.nhs.test")
        .body("When is the Q1 deadline?")
        .bytes();
    let mut last = h.process(&first, ON_TIME);
    let (mut acks, mut forwards) = (0, 0);
    for round in 1..=rounds {
        acks += last.replies.iter().filter(|r| r.0 == "query_ack").count();
        forwards += last.replies.iter().filter(|r| r.0 == "forward").count();
        let Some((_, ack_id, _)) = last.replies.iter().find(|r| r.0 == "query_ack") else {
            break;
        };
        let ack = h.reply(&sent_raw(&h, ack_id), "query_ack");
        let echo = Mail::new(
            ANN,
            &format!("Re: {}", ack.subject),
            &format!("echo-{round}@leeds.nhs.test"),
        )
        .header("Authentication-Results", "mx.example.nhs.test; dkim=pass header.d=leeds.nhs.test")
        .header("In-Reply-To", &format!("<{ack_id}>"))
        .header("References", &format!("<q-0@leeds.nhs.test> <{ack_id}>"))
        .body(&format!("Thank you for your message.\n\n> {}", ack.body.replace('\n', "\n> ")))
        .bytes();
        last = h.process(&echo, ON_TIME);
    }
    (acks, forwards)
}

/// The raw message our reply `id` answered (the test finds the reply by its Message-ID).
fn sent_raw(h: &Harness, id: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(h.dir.path().join("var/iapt-intake.db")).expect("db");
    let sha: String = conn
        .query_row(
            "SELECT m.sha256 FROM outbox o JOIN messages m ON m.id = o.message WHERE o.message_id = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("reply known");
    h.store.get_blob(&sha).expect("raw kept")
}

#[test]
fn an_echoing_autoresponder_gets_one_answer_a_day_not_one_per_echo() {
    let (acks, forwards) = echo_loop(9);
    assert_eq!(acks, 2, "the question's own acknowledgement and one for the thread's echo");
    // The question, the echo that was acknowledged, and the echo that was not: then the
    // autoresponder has nothing more to answer.
    assert_eq!(forwards, 3, "the loop stops with the acknowledgements");
}

#[test]
fn a_crlf_in_a_cell_stays_inside_one_quoted_line_of_the_reply() {
    let (h, steps) = run_case(&corpus().join("crlf-in-the-organisation-code-cell"));
    let reply = h.reply(&steps[0].1, "submission");
    assert!(reply.subject.contains("rejected"), "{}", reply.subject);
    // A wrapped line of ours is indented; a line the cell started would not be.
    for line in reply.body.lines() {
        assert!(!line.starts_with("RESULT:") && !line.starts_with("https://"), "injected {line:?}");
    }
    assert!(
        crate::pipeline::flat(&reply.body)
            .contains("\"5N1 RESULT: ACCEPTED https://evil.test/receipt\""),
        "{}",
        reply.body
    );
}

#[test]
fn bidi_overrides_reach_no_header_and_no_line_of_a_reply() {
    let (h, steps) = run_case(&corpus().join("bidi-overrides"));
    let raw = &h.queued(&steps[0].1)[0].raw;
    let reply = reply_of(raw);
    let parsed = mail_parser::MessageParser::default().parse(raw).expect("parses");
    let to_name = parsed.to().and_then(|a| a.first()).and_then(|a| a.name()).unwrap_or_default();
    assert_eq!(to_name, "Ann Analyst");
    let text = format!("{}{to_name}{}", reply.subject, reply.body);
    assert!(!text.contains('\u{202E}') && !text.contains('\u{202C}'), "{text}");
    assert!(
        reply.subject.contains("cod.exe"),
        "the text stays, the override goes: {}",
        reply.subject
    );
}

#[test]
fn a_blank_display_name_cannot_fake_a_line_of_the_team_notice() {
    let (h, steps) = run_case(&corpus().join("blank-display-name"));
    let notice = h.reply(&steps[0].1, "notice");
    for line in notice.body.lines() {
        assert!(
            !line.trim().starts_with("sender IS REGISTERED"),
            "faked line in:\n{}",
            notice.body
        );
    }
    assert!(notice.body.contains("Registered:    no"), "{}", notice.body);
}

#[test]
fn a_question_with_programs_forwards_only_the_safe_files_and_names_the_rest() {
    let (h, steps) = run_case(&corpus().join("question-with-dangerous-attachments"));
    let raw = h.queued(&steps[0].1).into_iter().find(|r| r.kind == "forward").expect("forward").raw;
    let names: Vec<String> = reply_of(&raw).attachments.into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, vec!["notes.pdf"], "only the PDF travels");
    let body = crate::pipeline::flat(&reply_of(&raw).body);
    for name in ["invoice.exe", "login.html", "minutes.docm"] {
        assert!(body.contains(&format!("\"{name}\"")), "{name} not named: {body}");
    }
    assert!(body.contains("NOT FORWARDED (a program (executable))"), "{body}");
    assert!(body.contains("NOT FORWARDED (an HTML page with a form or script)"), "{body}");
    assert!(body.contains("NOT FORWARDED (a document with macros)"), "{body}");
}

#[test]
fn a_300_mb_maildir_file_is_read_only_to_the_limit_and_answered_from_its_headers() {
    let h = Harness::with(settings());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut maildir = Maildir::open(dir.path()).expect("maildir").with_fetch_cap(25_000_001);
    let head = Mail::new(ANN, "IAPT KPI Q1 2011/12 Leeds PCT", "huge@leeds.nhs.test")
        .header("Authentication-Results", "mx.example.nhs.test; dkim=pass header.d=leeds.nhs.test")
        .bytes();
    let path = dir.path().join("new/huge");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(&head).expect("head");
        f.set_len(300_000_000).expect("300 MB"); // the rest reads as zero bytes
    }
    let pending = maildir.pending().expect("list");
    assert_eq!(pending[0].size, 300_000_000);
    let raw = maildir.fetch(&pending[0].key).expect("fetch");
    assert_eq!(raw.len(), 25_000_001, "read to one byte past the limit, not whole");
    let msg = Incoming { raw: &raw, source_key: "new/huge", received_at: at(ON_TIME) };
    let done = pipeline::process(&h.store, &h.env, msg, at(ON_TIME)).expect("processed");
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("submission", "rejected"));
    let reply = h.reply(&raw, "submission");
    assert!(
        crate::pipeline::flat(&reply.body).contains("over the limit of 25.0 MB"),
        "{}",
        reply.body
    );
    assert!(path.exists(), "the file stays in the Maildir until it is moved");
}

#[test]
fn attachments_past_the_cap_are_named_in_the_reply() {
    let (h, steps) = run_case(&corpus().join("105-attachments"));
    let reply = h.reply(&steps[0].1, "submission");
    let body = crate::pipeline::flat(&reply.body);
    assert!(body.contains("NOT READ"), "{body}");
    for n in 101..=105 {
        assert!(body.contains(&format!("\"scan-{n:03}.pdf\"")), "attachment {n} not named: {body}");
    }
    assert!(!body.contains("\"scan-100.pdf\""), "attachment 100 was read");
}
