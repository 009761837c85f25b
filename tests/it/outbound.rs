//! The Maildir source, the reply transports and the outbox sender on real files, real child
//! processes and a real loopback socket.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use iapt_intake::mailbox::{MailSource, Maildir, SourceError};
use iapt_intake::outbound::{
    deliver_due, DeliveryStats, FileTransport, MemoryOutbox, MemoryTransport, Outbox, OutboxItem,
    OutboxState, SendError, SendErrorKind, SendmailTransport, SmtpSettings, SmtpTls, SmtpTransport,
    Transport,
};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const REPLY: &str = "From: IAPT returns <iapt@dct.nhs.test>\r\n\
To: a.analyst@leeds.nhs.test\r\n\
Subject: Re: IAPT KPI Q1 2011/12 Leeds PCT - accepted, receipt IAPT-2011-12-Q1-5N1-1\r\n\
Date: Wed, 05 Oct 2011 09:30:12 +0000\r\n\
Message-ID: <reply.1.5N1@iapt.dct.nhs.test>\r\n\
Auto-Submitted: auto-replied\r\n\
\r\n\
Your return has been accepted.\r\n";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2011, 10, 5, 9, 0, 0).single().expect("valid time")
}

fn reply_item(id: i64) -> OutboxItem {
    OutboxItem {
        id,
        message_id: "reply.1.5N1@iapt.dct.nhs.test".into(),
        envelope_from: "iapt@dct.nhs.test".into(),
        recipients: vec!["a.analyst@leeds.nhs.test".into()],
        raw: REPLY.as_bytes().to_vec(),
        attempts: 0,
    }
}

fn set_mtime(path: &Path, secs_after_epoch: u64) {
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(secs_after_epoch);
    fs::File::open(path).and_then(|f| f.set_modified(when)).expect("set mtime");
}

/// Puts a message straight into new/ with a chosen delivery time.
fn drop_in_new(root: &Path, name: &str, body: &str, delivered: u64) {
    let path = root.join("new").join(name);
    fs::write(&path, body).expect("write message");
    set_mtime(&path, delivered);
}

fn keys(source: &mut Maildir) -> Vec<String> {
    source.pending().expect("list").into_iter().map(|p| p.key).collect()
}

// --- Maildir ---------------------------------------------------------------------------------

#[test]
fn maildir_lists_new_mail_oldest_first_with_delivery_time_and_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut maildir = Maildir::open(dir.path()).expect("open creates new/ cur/ tmp/");
    for sub in ["new", "cur", "tmp"] {
        assert!(dir.path().join(sub).is_dir(), "{sub}/ created");
    }
    drop_in_new(dir.path(), "1317800000.B.host", "second", 1_317_800_200);
    drop_in_new(dir.path(), "1317800000.A.host", "first message", 1_317_800_100);
    drop_in_new(dir.path(), "1317800000.C.host", "third", 1_317_800_300);
    // None of these is a delivery waiting for us.
    fs::write(dir.path().join("new/.partial"), "x").expect("dot file");
    fs::create_dir(dir.path().join("new/subdir")).expect("subdir");
    fs::write(dir.path().join("tmp/1317800000.D.host"), "in transit").expect("tmp file");
    fs::write(dir.path().join("cur/1317800000.E.host:2,S"), "done").expect("cur file");

    let pending = maildir.pending().expect("list");
    let names: Vec<&str> = pending.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(names, ["1317800000.A.host", "1317800000.B.host", "1317800000.C.host"]);
    assert_eq!(pending[0].received_at.timestamp(), 1_317_800_100);
    assert_eq!(pending[0].size, "first message".len() as u64);
    assert_eq!(maildir.fetch("1317800000.A.host").expect("fetch"), b"first message");
}

#[test]
fn maildir_mark_processed_moves_to_cur_as_seen_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut maildir = Maildir::open(dir.path()).expect("open");
    let key = maildir.deliver(REPLY.as_bytes()).expect("deliver");
    assert_eq!(keys(&mut maildir), std::slice::from_ref(&key));

    maildir.mark_processed(&key).expect("mark");
    assert!(dir.path().join("cur").join(format!("{key}:2,S")).is_file());
    assert!(!dir.path().join("new").join(&key).exists());
    assert!(keys(&mut maildir).is_empty());
    maildir.mark_processed(&key).expect("already processed is fine");
    let processed = fs::read(dir.path().join("cur").join(format!("{key}:2,S"))).expect("read");
    assert_eq!(processed, REPLY.as_bytes(), "the message is moved, not rewritten");
}

#[test]
fn maildir_message_taken_by_another_process_is_gone_not_an_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut maildir = Maildir::open(dir.path()).expect("open");
    let key = maildir.deliver(b"x").expect("deliver");
    fs::remove_file(dir.path().join("new").join(&key)).expect("someone else took it");
    for err in
        [maildir.fetch(&key).expect_err("fetch"), maildir.mark_processed(&key).expect_err("mark")]
    {
        assert!(matches!(err, SourceError::Gone { .. }), "{err}");
        assert!(!err.is_transient());
    }
    let escape = maildir.fetch("../cur/x").expect_err("key outside new/");
    assert!(matches!(escape, SourceError::InvalidKey { .. }), "{escape}");
}

#[test]
fn maildir_wait_wakes_on_new_mail_and_otherwise_waits_out_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut maildir =
        Maildir::open(dir.path()).expect("open").with_poll_slice(Duration::from_millis(20));
    // An old directory time: the listing is trusted, so only a change can end the wait early.
    set_mtime(&dir.path().join("new"), 1_317_800_000);
    assert!(keys(&mut maildir).is_empty());

    let quiet = Instant::now();
    maildir
        .wait(Duration::from_millis(300), &iapt_intake::shutdown::Shutdown::default())
        .expect("wait");
    assert!(quiet.elapsed() >= Duration::from_millis(300), "returned early with no mail");

    let root = dir.path().to_path_buf();
    let courier = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        Maildir::open(root).and_then(|m| m.deliver(b"new mail")).expect("deliver")
    });
    let started = Instant::now();
    maildir
        .wait(Duration::from_secs(20), &iapt_intake::shutdown::Shutdown::default())
        .expect("wait");
    assert!(started.elapsed() < Duration::from_secs(10), "wait missed the delivery");
    let key = courier.join().expect("courier thread");
    assert_eq!(keys(&mut maildir), [key]);
}

#[test]
fn maildir_listing_in_the_same_second_as_a_change_is_rechecked_soon() {
    // A delivery in the same timestamp tick as our listing leaves new/'s mtime unchanged, so a
    // listing taken right after a change must not be trusted for the whole timeout.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut maildir =
        Maildir::open(dir.path()).expect("open").with_poll_slice(Duration::from_millis(20));
    maildir.deliver(b"just arrived").expect("deliver");
    assert_eq!(keys(&mut maildir).len(), 1);
    let started = Instant::now();
    maildir
        .wait(Duration::from_secs(30), &iapt_intake::shutdown::Shutdown::default())
        .expect("wait");
    assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
}

// --- FileTransport ---------------------------------------------------------------------------

#[test]
fn file_transport_writes_an_eml_a_mail_client_can_open_and_resend_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("replies");
    let transport = FileTransport::new(&out);
    let item = reply_item(1);
    transport.send(&item).expect("first send");
    transport.send(&item).expect("resend");

    let names = dir_names(&out);
    assert_eq!(names.len(), 2, "one .eml and its envelope, no leftovers: {names:?}");
    let eml = transport.path_for(&item);
    assert!(names.contains(&file_name(&eml)), "{names:?}");
    let name = file_name(&eml);
    assert!(name.starts_with("20111005-093012_a.analyst@leeds.nhs.test_reply.1.5N1@"), "{name}");

    let bytes = fs::read(&eml).expect("read eml");
    assert_eq!(bytes, REPLY.as_bytes(), "the stored bytes, unchanged");
    let parsed = mail_parser::MessageParser::new().parse(&bytes).expect("parses as mail");
    assert_eq!(parsed.message_id(), Some("reply.1.5N1@iapt.dct.nhs.test"));

    let envelope: serde_json::Value =
        serde_json::from_slice(&fs::read(eml.with_extension("json")).expect("read json"))
            .expect("envelope is JSON");
    assert_eq!(envelope["recipients"][0], "a.analyst@leeds.nhs.test");
    assert_eq!(envelope["envelope_from"], "iapt@dct.nhs.test");
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn file_name(path: &Path) -> String {
    path.file_name().expect("file name").to_string_lossy().into_owned()
}

// --- the sender ------------------------------------------------------------------------------

fn queue_reply(outbox: &MemoryOutbox) -> i64 {
    outbox.queue(
        "reply.1.5N1@iapt.dct.nhs.test",
        "iapt@dct.nhs.test",
        &["a@leeds.nhs.test"],
        REPLY.as_bytes(),
    )
}

#[test]
fn sender_retries_a_transient_failure_only_after_its_backoff() {
    let outbox = MemoryOutbox::new();
    let id = queue_reply(&outbox);
    let relay = MemoryTransport::new();
    relay.fail_next(SendError::transient("421 try later"));

    let stats = deliver_due(&outbox, &relay, t0(), 10).expect("round 1");
    assert_eq!(stats, DeliveryStats { retried: 1, ..DeliveryStats::default() });
    let Some(OutboxState::Queued { retry_at: Some(retry_at), last_error }) = outbox.state(id)
    else {
        panic!("still queued with a retry time: {:?}", outbox.state(id));
    };
    assert_eq!(last_error.as_deref(), Some("421 try later"));
    assert!(retry_at >= t0() + TimeDelta::seconds(30) && retry_at <= t0() + TimeDelta::hours(1));

    let early = deliver_due(&outbox, &relay, retry_at - TimeDelta::seconds(1), 10).expect("early");
    assert_eq!(early, DeliveryStats::default(), "not due before retry_at");
    assert_eq!(relay.attempts(), 1);

    let stats = deliver_due(&outbox, &relay, retry_at, 10).expect("round 2");
    assert_eq!(stats.sent, 1);
    assert_eq!(outbox.state(id), Some(OutboxState::Sent { at: retry_at }));
    assert_eq!(outbox.attempts(id), Some(2));
    assert_eq!(relay.sent()[0].raw, REPLY.as_bytes());
}

#[test]
fn sender_records_a_permanent_failure_and_never_retries_it() {
    let outbox = MemoryOutbox::new();
    let id = queue_reply(&outbox);
    let relay = MemoryTransport::new();
    relay.fail_next(SendError::permanent("550 5.1.1 no such user"));
    let stats = deliver_due(&outbox, &relay, t0(), 10).expect("round");
    assert_eq!(stats, DeliveryStats { failed: 1, ..DeliveryStats::default() });
    let error = "550 5.1.1 no such user".to_string();
    assert_eq!(outbox.state(id), Some(OutboxState::Failed { at: t0(), error }));
    let later = deliver_due(&outbox, &relay, t0() + TimeDelta::days(30), 10).expect("later");
    assert_eq!(later, DeliveryStats::default());
    assert_eq!(relay.attempts(), 1);
}

#[test]
fn sender_does_not_resend_what_was_sent() {
    let outbox = MemoryOutbox::new();
    let first = queue_reply(&outbox);
    let second = outbox.queue("reply.2@iapt.dct.nhs.test", "", &["b@leeds.nhs.test"], b"x");
    let relay = MemoryTransport::new();
    assert_eq!(deliver_due(&outbox, &relay, t0(), 10).expect("round").sent, 2);
    assert_eq!(
        deliver_due(&outbox, &relay, t0() + TimeDelta::hours(2), 10).expect("again").sent,
        0
    );
    let ids: Vec<i64> = relay.sent().iter().map(|i| i.id).collect();
    assert_eq!(ids, [first, second], "oldest first, once each");
}

/// A store whose write fails after the relay accepted: the reply stays due and goes out again
/// identical (the duplicate SPEC §5 allows), and the error reaches the caller.
struct ForgetfulOutbox(MemoryOutbox);

impl Outbox for ForgetfulOutbox {
    type Error = std::io::Error;
    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, Self::Error> {
        self.0.due(now, limit).map_err(std::io::Error::other)
    }
    fn mark_sent(&self, _id: i64, _at: DateTime<Utc>) -> Result<(), Self::Error> {
        Err(std::io::Error::other("disk full"))
    }
    fn mark_failed(
        &self,
        id: i64,
        at: DateTime<Utc>,
        error: &str,
        permanent: bool,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), Self::Error> {
        self.0.mark_failed(id, at, error, permanent, retry_at).map_err(std::io::Error::other)
    }
}

#[test]
fn sender_store_failure_after_relay_accepts_resends_the_identical_reply() {
    let outbox = ForgetfulOutbox(MemoryOutbox::new());
    queue_reply(&outbox.0);
    let relay = MemoryTransport::new();
    assert!(deliver_due(&outbox, &relay, t0(), 10).is_err(), "store error is reported");
    assert!(deliver_due(&outbox, &relay, t0(), 10).is_err());
    let sent = relay.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!((&sent[0].message_id, &sent[0].raw), (&sent[1].message_id, &sent[1].raw));
}

// --- sendmail --------------------------------------------------------------------------------

/// A stand-in for the MTA's sendmail: records its arguments and stdin, complains, exits `code`.
fn fake_sendmail(dir: &Path, code: i32, extra: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(format!("sendmail-{code}"));
    let body = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{d}/args'\ncat > '{d}/stdin'\n{extra}\necho 'fake MTA says {code}' >&2\nexit {code}\n",
        d = dir.display()
    );
    fs::write(&script, body).expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

#[test]
fn sendmail_gets_the_envelope_as_arguments_and_the_bytes_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = SendmailTransport::new(fake_sendmail(dir.path(), 0, ""));
    let mut item = reply_item(1);
    item.recipients.push("-oQ/tmp@leeds.nhs.test".into());
    transport.send(&item).expect("accepted");
    let args = fs::read_to_string(dir.path().join("args")).expect("args");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        args,
        [
            "-i",
            "-f",
            "iapt@dct.nhs.test",
            "--",
            "a.analyst@leeds.nhs.test",
            "-oQ/tmp@leeds.nhs.test"
        ],
        "recipients come after --, so none can pass for an option"
    );
    assert_eq!(fs::read(dir.path().join("stdin")).expect("stdin"), REPLY.as_bytes());

    item.envelope_from = String::new();
    transport.send(&item).expect("accepted");
    let args = fs::read_to_string(dir.path().join("args")).expect("args");
    assert_eq!(args.lines().nth(2), Some("<>"), "an empty sender is the null reverse-path");
}

#[test]
fn sendmail_tempfail_is_transient_and_nouser_is_permanent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tempfail = SendmailTransport::new(fake_sendmail(dir.path(), 75, "")).send(&reply_item(1));
    let err = tempfail.expect_err("75");
    assert_eq!(err.kind, SendErrorKind::Transient);
    assert!(
        err.message.contains("EX_TEMPFAIL") && err.message.contains("fake MTA says 75"),
        "{err}"
    );

    let nouser = SendmailTransport::new(fake_sendmail(dir.path(), 67, "")).send(&reply_item(1));
    assert_eq!(nouser.expect_err("67").kind, SendErrorKind::Permanent);

    let missing = SendmailTransport::new(dir.path().join("no-such-sendmail")).send(&reply_item(1));
    assert_eq!(missing.expect_err("not installed").kind, SendErrorKind::Transient);
}

#[test]
fn sendmail_that_hangs_is_stopped_and_retried_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = fake_sendmail(dir.path(), 0, "exec sleep 30");
    let transport = SendmailTransport::new(script).with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = transport.send(&reply_item(1)).expect_err("timed out");
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

// --- SMTP ------------------------------------------------------------------------------------

/// What the fake relay saw of one message.
#[derive(Debug)]
struct Seen {
    /// Every command line, CRLF removed, in order (EHLO and QUIT included).
    commands: Vec<String>,
    /// The message as received: DATA with the dot-stuffing undone, or BDAT's exact bytes.
    data: String,
    /// MAIL FROM arrived with more commands already behind it, before any answer was sent.
    pipelined: bool,
}

/// A one-connection-at-a-time SMTP server on loopback that answers RCPT with `rcpt_reply`,
/// offers `extensions` (EHLO keywords) besides 8BITMIME, and hands back what it saw of each
/// message. It handles pipelined commands, DATA and `BDAT <size> LAST`.
fn fake_relay_offering(
    extensions: &'static [&'static str],
    rcpt_reply: &'static str,
) -> (u16, std::sync::mpsc::Receiver<Seen>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut out = stream.try_clone().expect("clone");
            let mut lines = BufReader::new(stream);
            let _ = out.write_all(b"220 fake.test ESMTP\r\n");
            let mut seen = Seen { commands: Vec::new(), data: String::new(), pipelined: false };
            let mut line = String::new();
            while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let command = line.trim_end_matches("\r\n").to_string();
                seen.commands.push(command.clone());
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let answer: String = match verb.as_str() {
                    "EHLO" => {
                        let mut a = String::from("250-fake.test\r\n");
                        for e in extensions {
                            a.push_str(&format!("250-{e}\r\n"));
                        }
                        a + "250 8BITMIME\r\n"
                    }
                    "MAIL" => {
                        seen.pipelined = !lines.buffer().is_empty();
                        "250 2.1.0 ok\r\n".into()
                    }
                    "RCPT" => rcpt_reply.into(),
                    "DATA" if rcpt_reply.starts_with('2') => {
                        let _ = out.write_all(b"354 go ahead\r\n");
                        let mut l = String::new();
                        while lines.read_line(&mut l).map(|n| n > 0).unwrap_or(false)
                            && l != ".\r\n"
                        {
                            seen.data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            l.clear();
                        }
                        let _ = tx.send(std::mem::replace(
                            &mut seen,
                            Seen { commands: Vec::new(), data: String::new(), pipelined: false },
                        ));
                        "250 2.0.0 queued\r\n".into()
                    }
                    "BDAT" => {
                        let size: usize = command
                            .split_whitespace()
                            .nth(1)
                            .and_then(|n| n.parse().ok())
                            .expect("BDAT size");
                        let mut chunk = vec![0u8; size];
                        std::io::Read::read_exact(&mut lines, &mut chunk).expect("chunk");
                        if rcpt_reply.starts_with('2') {
                            seen.data = String::from_utf8(chunk).expect("utf-8");
                            let _ = tx.send(std::mem::replace(
                                &mut seen,
                                Seen {
                                    commands: Vec::new(),
                                    data: String::new(),
                                    pipelined: false,
                                },
                            ));
                            "250 2.0.0 queued\r\n".into()
                        } else {
                            "554 5.5.1 no valid recipients\r\n".into()
                        }
                    }
                    "DATA" => "554 5.5.1 no valid recipients\r\n".into(),
                    "QUIT" => "221 bye\r\n".into(),
                    _ => "250 ok\r\n".into(),
                };
                let _ = out.write_all(answer.as_bytes());
                line.clear();
            }
        }
    });
    (port, rx)
}

/// A relay that offers nothing beyond 8BITMIME: one command at a time.
fn fake_relay(rcpt_reply: &'static str) -> (u16, std::sync::mpsc::Receiver<Seen>) {
    fake_relay_offering(&[], rcpt_reply)
}

/// The verbs of the commands of one message, from MAIL on.
fn verbs(seen: &Seen) -> Vec<String> {
    let from = seen.commands.iter().position(|c| c.starts_with("MAIL")).expect("MAIL sent");
    seen.commands[from..]
        .iter()
        .map(|c| c.split([' ', ':']).next().unwrap_or_default().to_string())
        .collect()
}

fn smtp_to(port: u16) -> SmtpTransport {
    let mut settings = SmtpSettings::new("127.0.0.1", SmtpTls::None);
    settings.port = port;
    settings.timeout = Duration::from_secs(5);
    SmtpTransport::new(&settings).expect("settings")
}

#[test]
fn smtp_sends_the_stored_bytes_unchanged() {
    let (port, seen) = fake_relay("250 2.1.5 ok\r\n");
    smtp_to(port).send(&reply_item(1)).expect("accepted");
    let seen = seen.recv_timeout(Duration::from_secs(5)).expect("relay got DATA");
    assert_eq!(seen.data, REPLY);
    assert_eq!(verbs(&seen), ["MAIL", "RCPT", "DATA"]);
    assert!(!seen.pipelined, "a relay without PIPELINING gets one command at a time");
}

/// A reply whose body has a line starting with a dot, which DATA must stuff and BDAT must not.
fn dotted_item() -> OutboxItem {
    let mut item = reply_item(2);
    item.raw = format!("{REPLY}.hidden line\r\n..two dots\r\n").into_bytes();
    item
}

#[test]
fn smtp_with_pipelining_and_chunking_sends_commands_and_message_in_one_go() {
    let (port, seen) = fake_relay_offering(&["PIPELINING", "CHUNKING"], "250 2.1.5 ok\r\n");
    let transport = smtp_to(port);
    for item in [reply_item(1), dotted_item()] {
        transport.send(&item).expect("accepted");
        let seen = seen.recv_timeout(Duration::from_secs(5)).expect("relay got BDAT");
        assert_eq!(seen.data.as_bytes(), &item.raw[..], "the stored bytes, exactly");
        let size = item.raw.len();
        assert_eq!(verbs(&seen), ["MAIL", "RCPT", "BDAT"]);
        assert_eq!(seen.commands.last(), Some(&format!("BDAT {size} LAST")));
        assert!(seen.pipelined, "RCPT and BDAT followed MAIL without waiting for its answer");
    }
}

#[test]
fn smtp_with_pipelining_alone_sends_the_commands_together_then_the_data() {
    let (port, seen) = fake_relay_offering(&["PIPELINING"], "250 2.1.5 ok\r\n");
    let transport = smtp_to(port);
    for item in [reply_item(1), dotted_item()] {
        transport.send(&item).expect("accepted");
        let seen = seen.recv_timeout(Duration::from_secs(5)).expect("relay got DATA");
        assert_eq!(seen.data.as_bytes(), &item.raw[..], "dot-stuffed, then unstuffed");
        assert_eq!(verbs(&seen), ["MAIL", "RCPT", "DATA"]);
        assert!(seen.pipelined, "RCPT and DATA followed MAIL without waiting for its answer");
    }
}

#[test]
fn smtp_pipelined_refusal_of_the_recipient_is_reported_and_the_next_reply_still_goes() {
    for offers in [&["PIPELINING", "CHUNKING"][..], &["PIPELINING"][..]] {
        let (port, _) =
            fake_relay_offering(offers, "550 5.1.1 <a.analyst@leeds.nhs.test>: no such user\r\n");
        let transport = smtp_to(port);
        let err = transport.send(&reply_item(1)).expect_err("550");
        assert_eq!(err.kind, SendErrorKind::Permanent, "{offers:?}: {err}");
        assert!(err.message.contains("no such user"), "{offers:?}: {err}");
        // The connection with answers left unread is dropped, not reused out of step.
        let err = transport.send(&reply_item(2)).expect_err("550 again");
        assert!(err.message.contains("no such user"), "{offers:?}: {err}");
    }
}

#[test]
fn smtp_5xx_for_the_recipient_is_permanent_and_4xx_transient() {
    let (port, _) = fake_relay("550 5.1.1 <a.analyst@leeds.nhs.test>: no such user\r\n");
    let err = smtp_to(port).send(&reply_item(1)).expect_err("550");
    assert_eq!(err.kind, SendErrorKind::Permanent, "{err}");
    assert!(err.message.contains("no such user"), "{err}");

    let (port, _) = fake_relay("451 4.3.0 greylisted, try later\r\n");
    let err = smtp_to(port).send(&reply_item(1)).expect_err("451");
    assert_eq!(err.kind, SendErrorKind::Transient, "{err}");
}

#[test]
fn smtp_relay_not_listening_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port(); // the listener is dropped here, so nothing listens on it
    let err = smtp_to(port).send(&reply_item(1)).expect_err("refused");
    assert!(err.is_transient(), "{err}");
}
