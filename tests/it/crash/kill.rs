//! The crash test on the real mail stack: a few hundred messages are sent through Postfix into
//! the intake mailbox (Dovecot), `iapt-intake run` works them over IMAP and sends its replies
//! through Postfix to the senders' own mailboxes — and is killed with SIGKILL at random moments
//! (seeded; the seed is printed) and restarted, again and again, while mail keeps arriving.
//! Then every message must be filed once, every original answered once (a byte-identical
//! second copy is allowed by SPEC §5 only for a kill between the relay's acceptance and the
//! store's record of it, and is counted), automatic mail never answered, the inbox empty and
//! the store consistent.

use super::corpus::{self, Original};
use super::{assert_store_consistent, log_text, wait_until, Daemon, Rng, StoreView, NOW};
use crate::imap::smtp_send;
use crate::mailstack::MailStack;
use crate::pipeline::support::{write_stack_config, Replies, StackConfig};
use mail_parser::{HeaderValue, MessageParser};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MESSAGES: usize = 320;
const DUPLICATES: usize = 10;
const KILLS: usize = 20;
/// Sent before the first start; the rest arrive in waves while the daemon is being killed.
const PRELOAD: usize = 150;
const WAVES: usize = 6;
/// What each daemon logs once it is working (after its signal handlers are in place).
const RUNNING: &str = "iapt-intake running";

/// IMAP source and SMTP outbound on the stack, store and registry in `dir`.
pub fn write_config(stack: &MailStack, dir: &Path, registry: &Path) -> PathBuf {
    let config = StackConfig {
        poll_interval: "5s",
        imap_timeout: "10s",
        replies: Replies::Smtp,
        store: dir,
        registry,
    };
    write_stack_config(stack, dir, &config)
}

/// Where Dovecot keeps `address`'s mailbox (`mail_location = maildir:~/Maildir`).
pub fn maildir(stack: &MailStack, address: &str) -> PathBuf {
    let (local, domain) = address.split_once('@').expect("an address");
    stack.dir.join("mail").join(domain).join(local).join("Maildir")
}

/// Files in a Maildir folder's `new/` and `cur/` (the folder's messages).
pub fn folder_files(folder: &Path) -> Vec<PathBuf> {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(folder.join(sub)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect()
}

fn send_all(stack: &MailStack, originals: &[Original]) {
    let intake = stack.account("INTAKE").expect("intake account").address;
    for o in originals {
        let raw = std::str::from_utf8(&o.raw).expect("ASCII message");
        smtp_send(stack.smtp_port, &o.from, &intake, raw);
    }
}

/// Replies that reached `mailboxes`, by the Message-ID they answer: (distinct reply
/// Message-IDs, copies in all).
fn replies_by_original(
    stack: &MailStack,
    mailboxes: &[String],
) -> BTreeMap<String, (BTreeSet<String>, usize)> {
    let mut by: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
    for address in mailboxes {
        for file in folder_files(&maildir(stack, address)) {
            let raw = std::fs::read(&file).expect("delivered message");
            let m = MessageParser::default().parse(&raw).expect("a message");
            let Some(answers) = (match m.in_reply_to() {
                HeaderValue::Text(t) => Some(t.to_string()),
                HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
                _ => None,
            }) else {
                continue;
            };
            let entry = by.entry(format!("{address} {answers}")).or_default();
            entry.0.insert(m.message_id().unwrap_or_default().to_string());
            entry.1 += 1;
        }
    }
    by
}

#[test]
fn killed_at_random_twenty_times_files_every_message_once_and_answers_each_once() {
    let started = Instant::now();
    let stack = MailStack::start_temp("crash").expect("the mail stack starts (needs root)");
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("organisations.csv");
    let orgs = corpus::write_registry(&registry);
    let config = write_config(&stack, dir.path(), &registry);
    let log = dir.path().join("daemon.log");
    let originals = corpus::build(&orgs, MESSAGES - DUPLICATES, DUPLICATES);
    let distinct = originals.iter().filter(|o| !o.duplicate).count();
    let mut rng = Rng::from_env("crash test");

    let (first, rest) = originals.split_at(PRELOAD);
    send_all(&stack, first);
    let inbox = maildir(&stack, "intake@example.nhs.test");
    let db = dir.path().join("intake.db");

    let mut kills = 0usize;
    let mut starts_before_last = 0;
    let mut waves = rest.chunks(rest.len().div_ceil(WAVES));
    let mut daemon = Daemon::spawn(&config, &log, Some(NOW));
    while kills < KILLS {
        std::thread::sleep(Duration::from_millis(rng.between(50, 1500)));
        daemon.kill9();
        kills += 1;
        // New mail arrives while it is down, now and then.
        if kills.is_multiple_of(3) {
            if let Some(wave) = waves.next() {
                send_all(&stack, wave);
            }
        }
        if kills == KILLS {
            starts_before_last = log_text(&log).matches(RUNNING).count();
        }
        daemon = Daemon::spawn(&config, &log, Some(NOW));
    }
    for wave in waves {
        send_all(&stack, wave);
    }
    let killed_at = started.elapsed();
    let done = wait_until(Duration::from_secs(150), || {
        db.exists() && {
            let view = StoreView::open(&db);
            view.messages() as usize == distinct
                && view.replies_due() == 0
                && folder_files(&inbox).is_empty()
        }
    });
    assert!(done, "not finished in time; log tail:\n{}", tail(&log_text(&log)));
    // A SIGTERM before the daemon has installed its handlers would meet the default action;
    // the clean stop is asked of a daemon that says it is running.
    let running = wait_until(Duration::from_secs(20), || {
        log_text(&log).matches(RUNNING).count() > starts_before_last
    });
    assert!(running, "the last daemon never started; log tail:\n{}", tail(&log_text(&log)));
    let stopped = daemon.stop();
    let clean = stopped.is_some_and(|s| s.success());
    assert!(clean, "exit on SIGTERM: {stopped:?}; log tail:\n{}", tail(&log_text(&log)));

    // Every message filed once, duplicates recognised, all moved to the processed folder.
    let view = StoreView::open(&db);
    let filed: BTreeSet<String> = view.message_ids().into_iter().collect();
    let sent: BTreeSet<String> = originals.iter().map(|o| o.message_id.clone()).collect();
    assert_eq!(view.messages() as usize, distinct, "filed exactly once each");
    assert_eq!(filed, sent, "the store holds exactly the messages sent");
    let processed = folder_files(&inbox.join(".Processed")).len();
    assert_eq!(processed, originals.len(), "every delivery, duplicates too, left the inbox");

    // Replies, counted where their recipients read them, once the relay has delivered them.
    let mut mailboxes: BTreeSet<String> = originals.iter().map(|o| o.from.clone()).collect();
    let teams = ["dct@example.nhs.test".to_string(), "content@example.nhs.test".to_string()];
    mailboxes.extend(teams.iter().cloned());
    let mailboxes: Vec<String> = mailboxes.into_iter().collect();
    let queued = view.count("SELECT COUNT(*) FROM outbox") as usize;
    let mut replies = BTreeMap::new();
    wait_until(Duration::from_secs(30), || {
        replies = replies_by_original(&stack, &mailboxes);
        replies.values().map(|(ids, _)| ids.len()).sum::<usize>() >= queued
    });
    let mut extra_copies = 0;
    let mut wrong = Vec::new();
    for o in originals.iter().filter(|o| !o.duplicate) {
        let at = |who: &str| replies.get(&format!("{who} {}", o.message_id));
        let to_sender = at(&o.from);
        let to_team: Vec<_> = teams.iter().filter_map(|t| at(t)).collect();
        let distinct_sender = to_sender.map_or(0, |(ids, _)| ids.len());
        let distinct_team: usize = to_team.iter().map(|(ids, _)| ids.len()).sum();
        extra_copies += to_sender.map_or(0, |(ids, n)| n - ids.len());
        extra_copies += to_team.iter().map(|(ids, n)| n - ids.len()).sum::<usize>();
        if distinct_sender != o.expect.sender || distinct_team != o.expect.team {
            wrong.push(format!(
                "{}: {distinct_sender} to the sender, {distinct_team} to a team, expected {:?}",
                o.message_id, o.expect
            ));
        }
    }
    assert!(wrong.is_empty(), "{} originals answered wrongly:\n{}", wrong.len(), wrong.join("\n"));
    let delivered: usize = replies.values().map(|(_, n)| n).sum();
    let blobs = assert_store_consistent(&db, &dir.path().join("blobs"));
    let text = log_text(&log);
    println!(
        "crash test: {} messages sent ({distinct} distinct, {DUPLICATES} duplicates), {kills} \
         kills in {killed_at:?}, {queued} replies queued, {delivered} delivered, {extra_copies} \
         identical extra copies, {blobs} blobs verified, {} daemon starts logged, {:?} in all",
        originals.len(),
        text.matches(RUNNING).count(),
        started.elapsed(),
    );
    assert!(!text.contains("panicked"), "a daemon panicked:\n{}", tail(&text));
}

/// The last lines of a log, for failure messages.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
