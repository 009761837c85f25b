//! Server faults under the running daemon on the real mail stack (issue 5): Dovecot stopped
//! for a minute in the middle of a burst (the daemon reconnects by itself; mail sent meanwhile
//! waits in Postfix's queue), and Postfix refusing our replies with a 4xx without being stopped
//! (the reply waits in the outbox and goes out once the refusal is lifted). Each test has a stack
//! of its own; every wait is bounded and says what it waited for.
//!
//! Owns these two tests and their helpers; the daemon child, the store view and the stack
//! config come from `crash.rs` and `kill.rs`.

use super::corpus::{self, Expect, Original};
use super::kill::{folder_files, maildir, tail, write_config};
use super::{assert_store_consistent, log_text, wait_until, Daemon, StoreView, BIN, NOW};
use crate::imap::smtp_send;
use crate::mailstack::{MailStack, Part};
use crate::pipeline::support::{repo, Mail, ReturnBook};
use chrono::{DateTime, TimeDelta, Utc};
use iapt_intake::store::{ReplyRow, SqliteStore, Store};
use mail_parser::{HeaderValue, MessageParser};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The outage: Dovecot down for a minute of real time.
const OUTAGE: Duration = Duration::from_secs(60);
/// Handed to Postfix one every `BURST_PACE` while the daemon works (Dovecot is stopped part way
/// through), then `DURING_OUTAGE` more while Dovecot is down.
const BURST: usize = 45;
const BURST_PACE: Duration = Duration::from_millis(100);
const DURING_OUTAGE: usize = 15;
/// One minute after `NOW`: past the outbox's first retry (at most 30 s).
const A_MINUTE_LATER: &str = "2011-07-20T10:01:00Z";
const LEEDS_SUBJECT: &str = "IAPT KPI Q1 2011/12 Leeds PCT";
/// What each daemon logs once it is working (its store open, its handlers in place).
const RUNNING: &str = "iapt-intake running";

/// Hands `raw` to the stack's sendmail (Postfix's queue, no SMTP server involved: Postfix's
/// smtpd cannot run while Dovecot, its SASL service, is down).
fn send_by_sendmail(stack: &MailStack, from: &str, raw: &[u8]) {
    let sendmail = stack.var("MAILSTACK_SENDMAIL").expect("the stack's sendmail");
    let intake = stack.account("INTAKE").expect("intake account").address;
    let mut child = Command::new(sendmail)
        .args(["-i", "-f", from, "--", &intake])
        .stdin(Stdio::piped())
        .spawn()
        .expect("sendmail");
    child.stdin.take().expect("stdin").write_all(raw).expect("hand over");
    assert!(child.wait().expect("sendmail exits").success(), "sendmail refused the mail");
}

/// Replies found in `mailboxes`, keyed by "`mailbox` `original Message-ID`": (distinct reply
/// Message-IDs, copies in all).
fn replies_by_original(
    stack: &MailStack,
    mailboxes: &BTreeSet<String>,
) -> BTreeMap<String, (BTreeSet<String>, usize)> {
    let mut by: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
    for address in mailboxes {
        for file in folder_files(&maildir(stack, address)) {
            let Ok(raw) = std::fs::read(&file) else { continue };
            let Some(m) = MessageParser::default().parse(&raw) else { continue };
            let answers = match m.in_reply_to() {
                HeaderValue::Text(t) => t.to_string(),
                HeaderValue::TextList(l) if !l.is_empty() => l[0].to_string(),
                _ => continue,
            };
            let entry = by.entry(format!("{address} {answers}")).or_default();
            entry.0.insert(m.message_id().unwrap_or_default().to_string());
            entry.1 += 1;
        }
    }
    by
}

const TEAMS: [&str; 2] = ["dct@example.nhs.test", "content@example.nhs.test"];

/// Each original's answers against what it expects: the lines that differ, and how many copies
/// beyond one per distinct reply arrived.
fn check_answers(
    originals: &[Original],
    replies: &BTreeMap<String, (BTreeSet<String>, usize)>,
) -> (Vec<String>, usize) {
    let mut wrong = Vec::new();
    let mut extra = 0;
    for o in originals {
        let at = |who: &str| replies.get(&format!("{who} {}", o.message_id));
        let sender = at(&o.from).map_or((0, 0), |(ids, n)| (ids.len(), *n));
        let team = TEAMS
            .iter()
            .filter_map(|t| at(t))
            .fold((0, 0), |acc, (ids, n)| (acc.0 + ids.len(), acc.1 + n));
        extra += sender.1 - sender.0 + team.1 - team.0;
        let got = Expect { sender: sender.0, team: team.0 };
        if got != o.expect {
            wrong.push(format!("{}: got {got:?}, expected {:?}", o.message_id, o.expect));
        }
    }
    (wrong, extra)
}

#[test]
fn dovecot_down_for_a_minute_mid_burst_every_message_is_filed_and_answered_once() {
    let started = Instant::now();
    let stack = MailStack::start_temp("fault-dovecot").expect("the mail stack starts (needs root)");
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("organisations.csv");
    let orgs = corpus::write_registry(&registry);
    let config = write_config(&stack, dir.path(), &registry);
    let (log, db) = (dir.path().join("daemon.log"), dir.path().join("intake.db"));
    let inbox = maildir(&stack, "intake@example.nhs.test");
    let originals = corpus::build(&orgs, BURST + DURING_OUTAGE, 0);
    let total = originals.len();

    // The real clock, as in production: a reply deferred during the outage is retried when its
    // backoff is over, which a fixed `--now` would never reach. Returns are then judged against
    // today's date (their 2011 window is closed) — still one answer each, which is what counts.
    let mut daemon = Daemon::spawn(&config, &log, None);
    let running = wait_until(Duration::from_secs(20), || log_text(&log).contains("IMAP connected"));
    assert!(running, "the daemon never connected:\n{}", tail(&log_text(&log)));

    // The burst goes to Postfix's queue at a steady pace, from a thread, while the daemon files
    // it; Dovecot is stopped once a fifth of it is filed, with the rest in flight.
    let (burst, later) = originals.split_at(BURST);
    let handed = AtomicUsize::new(0);
    let (mut handed_at_stop, mut filed_at_stop, mut ended) = (0, 0, 0);
    let mut down = Instant::now();
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for o in burst {
                send_by_sendmail(&stack, &o.from, &o.raw);
                handed.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(BURST_PACE);
            }
        });
        let midway = wait_until(Duration::from_secs(60), || {
            db.exists() && StoreView::open(&db).messages() as usize >= BURST / 5
        });
        assert!(midway, "the burst is not being filed:\n{}", tail(&log_text(&log)));
        stack.stop_part(Part::Dovecot).expect("stop dovecot");
        handed_at_stop = handed.load(Ordering::SeqCst);
        ended = stack.end_imap_sessions();
        down = Instant::now();
        filed_at_stop = StoreView::open(&db).messages() as usize;
        sender.join().expect("the burst is handed over");
    });
    assert!(filed_at_stop < BURST, "all {BURST} filed before Dovecot stopped: not mid-burst");
    assert!(ended >= 1, "the daemon had an IMAP session to lose");
    for o in later {
        send_by_sendmail(&stack, &o.from, &o.raw);
    }
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    assert!(!daemon.exited(), "the daemon exited during the outage:\n{}", tail(&log_text(&log)));
    let filed_when_back = StoreView::open(&db).messages();
    stack.restart().expect("start dovecot again");
    let back = Instant::now();

    let done = wait_until(Duration::from_secs(120), || {
        let view = StoreView::open(&db);
        view.messages() as usize == total
            && view.replies_due() == 0
            && folder_files(&inbox).is_empty()
    });
    assert!(done, "not all filed and answered after Dovecot came back:\n{}", tail(&log_text(&log)));
    let recovered = back.elapsed();
    let queued = StoreView::open(&db).count("SELECT COUNT(*) FROM outbox") as usize;
    let mut mailboxes: BTreeSet<String> = originals.iter().map(|o| o.from.clone()).collect();
    mailboxes.extend(TEAMS.iter().map(|t| t.to_string()));
    let delivered = |r: &BTreeMap<String, (BTreeSet<String>, usize)>| {
        r.values().map(|(ids, _)| ids.len()).sum::<usize>()
    };
    let arrived = wait_until(Duration::from_secs(30), || {
        delivered(&replies_by_original(&stack, &mailboxes)) >= queued
    });
    assert!(arrived, "{queued} replies queued, not all delivered");
    std::thread::sleep(Duration::from_secs(1)); // time for a wrong second copy to land

    let view = StoreView::open(&db);
    let filed: BTreeSet<String> = view.message_ids().into_iter().collect();
    let sent: BTreeSet<String> = originals.iter().map(|o| o.message_id.clone()).collect();
    assert_eq!(view.messages() as usize, total, "each message filed once");
    assert_eq!(filed, sent, "the store holds exactly the messages sent");
    assert_eq!(folder_files(&inbox.join(".Processed")).len(), total, "all moved out of the inbox");
    let replies = replies_by_original(&stack, &mailboxes);
    let (wrong, extra) = check_answers(&originals, &replies);
    assert!(wrong.is_empty(), "{} answered wrongly:\n{}", wrong.len(), wrong.join("\n"));
    // The daemon's promise: each reply handed to the relay once. Postfix logs every message it
    // takes in, so that is checked at the relay. A copy beyond that in a mailbox can only come
    // from Postfix itself redelivering one queue file: Dovecot stopped after storing a message
    // and before confirming it, which Postfix logs as "may be sent more than once".
    let postfix = PostfixLog::read(&stack.dir.join("postfix.log"));
    let copies = copies_by_reply(&stack, &mailboxes);
    let not_once: Vec<(&String, usize)> =
        copies.keys().map(|(_, id)| (id, postfix.received(id))).filter(|(_, n)| *n != 1).collect();
    assert!(not_once.is_empty(), "replies not handed to the relay exactly once: {not_once:?}");
    let unexplained: Vec<String> = copies
        .iter()
        .filter(|((_, id), n)| **n > 1 && !postfix.redelivered(id))
        .map(|((to, id), n)| format!("{n} copies of {id} in {to}"))
        .collect();
    assert!(unexplained.is_empty(), "a reply arrived twice: {unexplained:?}");
    let redelivered = copies.values().map(|n| n - 1).sum::<usize>();

    let text = log_text(&log);
    assert!(!daemon.exited(), "the daemon exited:\n{}", tail(&text));
    assert!(
        text.contains("IMAP connection dropped") || text.contains("IMAP connection failed"),
        "the log does not show the outage:\n{}",
        tail(&text)
    );
    assert!(text.contains("IMAP reconnected"), "the log shows no reconnect:\n{}", tail(&text));
    assert!(!text.contains("panicked"), "{}", tail(&text));
    let stopped = daemon.stop();
    assert!(stopped.is_some_and(|s| s.success()), "exit on SIGTERM: {stopped:?}");
    let blobs = assert_store_consistent(&db, &dir.path().join("blobs"));
    println!(
        "dovecot outage: Dovecot stopped with {handed_at_stop} of a burst of {BURST} handed to \
         Postfix and {filed_at_stop} filed ({ended} IMAP session(s) ended); {} more sent while \
         it was down for {:?}; {filed_when_back} filed by then; all {total} filed and {queued} \
         replies answered {recovered:.1?} after Dovecot was back ({} deferral(s) logged on the \
         way); each reply handed to Postfix once ({extra} extra cop(ies) of answers, \
         {redelivered} redelivered by Postfix itself); {blobs} blobs verified; {:.1?} in all",
        total - handed_at_stop,
        OUTAGE,
        text.matches("reply deferred").count(),
        started.elapsed()
    );
}

/// Every reply in the given mailboxes: (mailbox, Message-ID) → copies.
fn copies_by_reply(
    stack: &MailStack,
    mailboxes: &BTreeSet<String>,
) -> BTreeMap<(String, String), usize> {
    let mut copies = BTreeMap::new();
    for address in mailboxes {
        for file in folder_files(&maildir(stack, address)) {
            let Ok(raw) = std::fs::read(&file) else { continue };
            let Some(m) = MessageParser::default().parse(&raw) else { continue };
            if matches!(m.in_reply_to(), HeaderValue::Empty) {
                continue; // not a reply: the original itself, in the sender's own mailbox
            }
            let id = m.message_id().unwrap_or_default().to_string();
            *copies.entry((address.clone(), id)).or_insert(0) += 1;
        }
    }
    copies
}

/// What Postfix logged of the messages it took in and delivered.
struct PostfixLog {
    /// Message-ID (without brackets) → the queue ids it was received under.
    queued: BTreeMap<String, BTreeSet<String>>,
    /// Queue ids delivered more than once, or logged as "may be sent more than once".
    repeated: BTreeSet<String>,
}

impl PostfixLog {
    fn read(path: &Path) -> PostfixLog {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut queued: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut repeated = BTreeSet::new();
        let mut sent: BTreeMap<(String, String), usize> = BTreeMap::new();
        for line in text.lines() {
            // "... postfix/cleanup[12]: 4F1A2B3C: message-id=<id>"
            let Some((_, rest)) = line.split_once("]: ") else { continue };
            let Some((qid, what)) = rest.split_once(": ") else { continue };
            if let Some(id) = what.strip_prefix("message-id=") {
                let id = id.trim().trim_start_matches('<').trim_end_matches('>');
                queued.entry(id.to_string()).or_default().insert(qid.to_string());
            } else if what.contains("may be sent more than once")
                || (what.contains("status=deferred")
                    && what.to_ascii_lowercase().contains("end of data"))
            {
                // Cut off or refused after the message was handed over: Dovecot may have
                // stored it already, and Postfix will deliver it again.
                repeated.insert(qid.to_string());
            } else if what.contains("status=sent") {
                let to = what.split(',').next().unwrap_or_default().to_string();
                let n = sent.entry((qid.to_string(), to)).or_insert(0);
                *n += 1;
                if *n > 1 {
                    repeated.insert(qid.to_string());
                }
            }
        }
        PostfixLog { queued, repeated }
    }

    /// How many times Postfix took in the message with this Message-ID.
    fn received(&self, id: &str) -> usize {
        self.queued.get(id).map_or(0, BTreeSet::len)
    }

    /// Postfix delivered this message's single queue file more than once.
    fn redelivered(&self, id: &str) -> bool {
        self.queued
            .get(id)
            .is_some_and(|q| q.len() == 1 && q.iter().all(|q| self.repeated.contains(q)))
    }
}

/// The stack's Postfix configuration directory.
fn postfix_conf(stack: &MailStack) -> std::path::PathBuf {
    stack.dir.join("postfix")
}

/// `postconf -c DIR/postfix ARGS`; stdout.
fn postconf(stack: &MailStack, args: &[&str]) -> String {
    let out = Command::new("postconf")
        .arg("-c")
        .arg(postfix_conf(stack))
        .args(args)
        .output()
        .expect("postconf runs");
    assert!(out.status.success(), "postconf {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sets `smtpd_recipient_restrictions` and reloads Postfix without stopping it. main.cf is
/// dated a minute back, as the stack script does, so Postfix does not wait on a fresh change.
fn set_recipient_restrictions(stack: &MailStack, value: &str) {
    postconf(stack, &["-e", &format!("smtpd_recipient_restrictions = {value}")]);
    let main_cf = postfix_conf(stack).join("main.cf");
    let dated = Command::new("touch").args(["-d", "-1 minute"]).arg(&main_cf).status();
    assert!(dated.is_ok_and(|s| s.success()), "backdate main.cf");
    let reload = Command::new("postfix")
        .arg("-c")
        .arg(postfix_conf(stack))
        .arg("reload")
        .output()
        .expect("postfix reload runs");
    assert!(reload.status.success(), "reload: {}", String::from_utf8_lossy(&reload.stderr));
}

/// Postfix's answer to `RCPT TO:<to>` in a fresh SMTP session (no mail is sent).
fn rcpt_answer(port: u16, to: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("SMTP connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut reply = || {
        let mut last = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return last;
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            last = line;
            if done {
                return last;
            }
        }
    };
    reply();
    let mut answer = String::new();
    for cmd in ["EHLO probe.test", "MAIL FROM:<probe@example.nhs.test>", &format!("RCPT TO:<{to}>")]
    {
        let _ = write!(writer, "{cmd}\r\n");
        answer = reply();
    }
    let _ = write!(writer, "QUIT\r\n");
    answer
}

/// Waits (bounded) until Postfix answers RCPT to `to` with `code`.
fn wait_for_rcpt(stack: &MailStack, to: &str, code: &str) {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        last = rcpt_answer(stack.smtp_port, to);
        last.starts_with(code)
    });
    assert!(ok, "Postfix never answered {code} to RCPT {to}; last: {last:?}");
}

/// The outbox rows of the first filed message, once `ready` holds for its only row.
fn wait_for_reply_row(
    store: &SqliteStore,
    log: &Path,
    ready: impl Fn(&ReplyRow) -> bool,
) -> ReplyRow {
    let mut rows = Ok(Vec::new());
    let ok = wait_until(Duration::from_secs(30), || {
        rows = store.replies_for(1);
        matches!(rows.as_deref(), Ok([row]) if ready(row))
    });
    assert!(ok, "the outbox never got there: {rows:?}; log:\n{}", tail(&log_text(log)));
    let mut rows = rows.expect("the outbox");
    rows.remove(0)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("test time").with_timezone(&Utc)
}

#[test]
fn postfix_refusing_with_450_keeps_the_reply_in_the_outbox_until_it_accepts_again() {
    let stack = MailStack::start_temp("fault-450").expect("the mail stack starts (needs root)");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&stack, dir.path(), &repo().join("config/organisations.csv"));
    let log = dir.path().join("daemon.log");
    let leeds = stack.account("LEEDS").expect("leeds account").address;
    let intake = stack.account("INTAKE").expect("intake account").address;

    // Postfix stays up but defers every recipient at the Leeds mailbox.
    let original = postconf(&stack, &["-h", "smtpd_recipient_restrictions"]);
    let refusal =
        format!("check_recipient_access inline:{{ {{ {leeds} = 450 4.2.0 try later }} }}");
    let restricted = if original.is_empty() { refusal } else { format!("{refusal}, {original}") };
    set_recipient_restrictions(&stack, &restricted);
    wait_for_rcpt(&stack, &leeds, "450");

    let id = "deferred@leeds.nhs.test";
    let mail =
        Mail::new(&leeds, LEEDS_SUBJECT, id).xlsx("Leeds IAPT Q1.xlsx", ReturnBook::leeds().xlsx());
    smtp_send(stack.smtp_port, &leeds, &intake, std::str::from_utf8(&mail.bytes()).expect("ASCII"));
    let daemon = Daemon::spawn(&config, &log, Some(NOW));
    // The store is opened here only once the daemon has made it: two processes creating a
    // fresh store at the same moment can both run its first migration, and one then fails.
    let running = wait_until(Duration::from_secs(20), || log_text(&log).contains(RUNNING));
    assert!(running, "the daemon did not start:\n{}", tail(&log_text(&log)));

    // Filed and out of the inbox; the acceptance refused for now, kept to be tried again.
    let store = SqliteStore::open(dir.path().join("intake.db"), dir.path().join("blobs"))
        .expect("the store");
    let row = wait_for_reply_row(&store, &log, |r| r.attempts >= 1);
    assert!(row.sent_at.is_none() && !row.failed_permanently, "{row:?}");
    let error = row.last_error.clone().unwrap_or_default();
    assert!(error.contains("450"), "the relay's refusal is kept: {row:?}");
    assert!(row.next_attempt_at >= at(NOW) + TimeDelta::seconds(24), "{row:?}");
    assert!(row.next_attempt_at < at(A_MINUTE_LATER), "{row:?}");
    let inbox = maildir(&stack, &intake);
    assert!(wait_until(Duration::from_secs(10), || folder_files(&inbox).is_empty()), "inbox");
    let status = Command::new(BIN)
        .args(["status", "--now", NOW, "--config"])
        .arg(&config)
        .output()
        .expect("status runs");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let row_5n1 = status.lines().find(|l| l.starts_with("5N1 ")).expect("Leeds's row");
    assert!(row_5n1.contains("accepted"), "{row_5n1}");
    assert!(!status.contains("Replies not delivered"), "a deferral is not a loss:\n{status}");
    let stopped = daemon.stop();
    assert!(stopped.is_some_and(|s| s.success()), "exit on SIGTERM: {stopped:?}");
    let leeds_box = maildir(&stack, &leeds);
    assert!(folder_files(&leeds_box).is_empty(), "nothing reached Leeds while refused");
    assert!(log_text(&log).contains("reply deferred"), "{}", tail(&log_text(&log)));

    // The refusal lifted; a daemon a minute later (the retry is due) sends the reply, once.
    set_recipient_restrictions(&stack, &original);
    wait_for_rcpt(&stack, &leeds, "250");
    let lifted = Instant::now();
    let daemon = Daemon::spawn(&config, &log, Some(A_MINUTE_LATER));
    let sent = wait_for_reply_row(&store, &log, |r| r.sent_at.is_some());
    assert_eq!(sent.attempts, 2, "one refusal, one success: {sent:?}");
    let arrived = wait_until(Duration::from_secs(20), || !folder_files(&leeds_box).is_empty());
    assert!(arrived, "the reply never reached Leeds:\n{}", tail(&log_text(&log)));
    let delay = lifted.elapsed();
    std::thread::sleep(Duration::from_secs(1)); // time for a wrong second copy to land
    let stopped = daemon.stop();
    assert!(stopped.is_some_and(|s| s.success()), "exit on SIGTERM: {stopped:?}");
    let boxes = BTreeSet::from([leeds.clone()]);
    let replies = replies_by_original(&stack, &boxes);
    let answers = replies.get(&format!("{leeds} {id}")).expect("an answer to the return");
    assert_eq!(answers.1, 1, "exactly one copy: {answers:?}");
    assert!(answers.0.contains(&sent.message_id), "the queued reply itself: {answers:?}");
    assert_eq!(folder_files(&leeds_box).len(), 1, "nothing else reached Leeds");
    println!(
        "postfix 450: the deferred acceptance arrived {delay:.2?} after the refusal was lifted"
    );
}
