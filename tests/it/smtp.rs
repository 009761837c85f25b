//! The SMTP transport against the project's real Postfix (tests/mailstack): STARTTLS and
//! implicit TLS verified with the stack's CA, AUTH PLAIN and XOAUTH2 through Dovecot, refusals
//! at RCPT, and the outbox riding out a Postfix outage. Each test has a stack of its own; the
//! proof of delivery is the message, found by its Message-ID, in the recipient's Maildir.
//! Also keeps deploy/iapt-intake.production.toml loading.

use crate::mailstack::{MailStack, Part};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use iapt_intake::config::{Config, Secret, Source, Tls, Transport as ConfiguredTransport};
use iapt_intake::outbound::smtp::TokenProvider;
use iapt_intake::outbound::{
    deliver_due, transport_from_config, DeliveryStats, MemoryOutbox, OutboxItem, OutboxState,
    SmtpSettings, SmtpTls, SmtpTransport, Transport,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn stack(name: &str) -> MailStack {
    MailStack::start_temp(name).expect("the mail stack starts (needs root)")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2011, 10, 5, 9, 0, 0).single().expect("valid time")
}

/// A reply from the intake mailbox to `to`, with a Message-ID unique to `tag`.
fn reply(id: i64, tag: &str, to: &str) -> OutboxItem {
    let message_id = format!("reply.{tag}.{id}.{}@iapt.example.nhs.test", std::process::id());
    let raw = format!(
        "From: IAPT KPI Returns <intake@example.nhs.test>\r\n\
         To: {to}\r\n\
         Subject: Re: IAPT KPI Q1 2011/12 Leeds PCT - accepted, receipt IAPT-2011-12-Q1-5N1-{id}\r\n\
         Date: Wed, 05 Oct 2011 09:30:12 +0000\r\n\
         Message-ID: <{message_id}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         \r\n\
         Your return has been accepted.\r\n"
    );
    OutboxItem {
        id,
        message_id,
        envelope_from: "intake@example.nhs.test".into(),
        recipients: vec![to.into()],
        raw: raw.into_bytes(),
        attempts: 0,
    }
}

/// The Maildir Dovecot delivers `address` into (see the stack's dovecot.conf).
fn maildir(stack: &MailStack, address: &str) -> PathBuf {
    let (local, domain) = address.split_once('@').expect("an address");
    stack.dir.join("mail").join(domain).join(local).join("Maildir")
}

/// Copies of the message with `message_id` in `address`'s mailbox.
fn copies(stack: &MailStack, address: &str, message_id: &str) -> usize {
    let needle = format!("Message-ID: <{message_id}>");
    let dir = maildir(stack, address);
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter(|text| text.contains(&needle))
        .count()
}

/// Waits up to 15 s for the message to land; returns how long it took.
fn wait_for(stack: &MailStack, address: &str, message_id: &str) -> Duration {
    let start = Instant::now();
    while copies(stack, address, message_id) == 0 {
        assert!(start.elapsed() < Duration::from_secs(15), "{message_id} never reached {address}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn settings(stack: &MailStack, tls: SmtpTls, host: &str) -> SmtpSettings {
    let mut s = SmtpSettings::new(host, tls);
    s.port = match tls {
        SmtpTls::Implicit => stack.smtps_port,
        _ => stack.smtp_port,
    };
    s.ca_pem = Some(std::fs::read(&stack.ca).expect("the stack's CA"));
    s.timeout = Duration::from_secs(10);
    s
}

fn with_intake_password(stack: &MailStack, mut s: SmtpSettings) -> SmtpSettings {
    let intake = stack.account("INTAKE").expect("intake account");
    s.username = Some(intake.address);
    s.password = Some(Secret::new(intake.password));
    s
}

#[test]
fn starttls_from_the_config_file_delivers_the_exact_reply_to_the_provider() {
    let stack = stack("smtp-starttls");
    let intake = stack.account("INTAKE").expect("intake account");
    let leeds = stack.account("LEEDS").expect("leeds account");
    let text = format!(
        "[outbound]\ntransport = \"smtp\"\nfrom = \"{from}\"\n\
         [smtp]\nhost = \"localhost\"\nport = {port}\ntls = \"starttls\"\n\
         username = \"{from}\"\npassword_file = \"{pw}\"\nca_file = \"{ca}\"\ntimeout = \"10s\"\n",
        from = intake.address,
        port = stack.smtp_port,
        pw = intake.password_file.display(),
        ca = stack.ca.display(),
    );
    let config = Config::parse(Path::new("smtp.toml"), &text).expect("config loads");
    let transport = transport_from_config(&config.outbound).expect("transport");
    let item = reply(1, "starttls", &leeds.address);
    transport.send(&item).expect("Postfix accepts the reply");
    wait_for(&stack, &leeds.address, &item.message_id);
    let delivered = std::fs::read_dir(maildir(&stack, &leeds.address).join("new"))
        .expect("leeds inbox")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .find(|t| t.contains(&item.message_id))
        .expect("the reply");
    // Dovecot keeps Maildir files with LF line ends; everything else arrives as stored.
    let sent = String::from_utf8(item.raw.clone()).expect("ascii reply").replace("\r\n", "\n");
    assert!(delivered.ends_with(&sent), "sent bytes arrive unchanged:\n{delivered}");
    assert!(delivered.contains("ESMTPSA"), "sent over TLS, logged in:\n{delivered}");
}

#[test]
fn implicit_tls_with_auth_plain_delivers_and_an_unknown_ca_is_refused() {
    let stack = stack("smtp-smtps");
    let leeds = stack.account("LEEDS").expect("leeds account");
    let s = with_intake_password(&stack, settings(&stack, SmtpTls::Implicit, "127.0.0.1"));
    let transport = SmtpTransport::new(&s).expect("transport");
    transport.test_connection().expect("greets and logs in");
    let item = reply(1, "smtps", &leeds.address);
    transport.send(&item).expect("Postfix accepts the reply");
    wait_for(&stack, &leeds.address, &item.message_id);

    // Without the stack's CA the certificate is unknown: nothing is sent, and the reply stays
    // queued (a TLS fault is the relay's or ours, never the message's).
    let mut untrusted = s.clone();
    untrusted.ca_pem = None;
    let item = reply(2, "smtps-untrusted", &leeds.address);
    let err = SmtpTransport::new(&untrusted).expect("transport").send(&item).expect_err("no CA");
    assert!(err.is_transient(), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(copies(&stack, &leeds.address, &item.message_id), 0);
}

#[test]
fn unknown_recipient_is_refused_at_rcpt_as_a_permanent_failure() {
    let stack = stack("smtp-550");
    let s = with_intake_password(&stack, settings(&stack, SmtpTls::StartTls, "localhost"));
    let transport = SmtpTransport::new(&s).expect("transport");
    let item = reply(1, "unknown", "nobody@leeds.nhs.test");
    let err = transport.send(&item).expect_err("refused");
    assert!(!err.is_transient(), "{err}");
    assert!(err.message.contains("550") || err.message.contains("5.1.1"), "{err}");
    // The pooled connection that saw the refusal does not poison the next reply.
    let leeds = stack.account("LEEDS").expect("leeds account");
    let item = reply(2, "after-550", &leeds.address);
    transport.send(&item).expect("next reply goes");
    wait_for(&stack, &leeds.address, &item.message_id);
}

#[test]
fn replies_wait_while_postfix_is_down_and_go_out_once_when_it_is_back() {
    let stack = stack("smtp-outage");
    let leeds = stack.account("LEEDS").expect("leeds account");
    let s = with_intake_password(&stack, settings(&stack, SmtpTls::StartTls, "localhost"));
    let transport = SmtpTransport::new(&s).expect("transport");
    let outbox = MemoryOutbox::new();
    let item = reply(1, "outage", &leeds.address);
    let id = outbox.queue(&item.message_id, &item.envelope_from, &[&leeds.address], &item.raw);

    stack.stop_part(Part::Postfix).expect("stop postfix");
    let stats = deliver_due(&outbox, &transport, t0(), 10).expect("round");
    assert_eq!(stats, DeliveryStats { retried: 1, ..DeliveryStats::default() });
    let retry_at = match outbox.state(id) {
        Some(OutboxState::Queued { retry_at: Some(at), last_error: Some(error) }) => {
            assert!(error.contains("relay"), "{error}");
            at
        }
        other => panic!("expected a scheduled retry, got {other:?}"),
    };
    assert!(retry_at >= t0() + TimeDelta::seconds(24), "{retry_at}");
    // Not due yet: nothing is tried before the backoff ends.
    let early = deliver_due(&outbox, &transport, t0() + TimeDelta::seconds(1), 10).expect("round");
    assert_eq!(early, DeliveryStats::default());

    stack.restart().expect("postfix back");
    let stats = deliver_due(&outbox, &transport, retry_at, 10).expect("round");
    assert_eq!(stats, DeliveryStats { sent: 1, ..DeliveryStats::default() });
    assert!(matches!(outbox.state(id), Some(OutboxState::Sent { .. })));
    wait_for(&stack, &leeds.address, &item.message_id);
    // Another round sends nothing more, and no second copy trickles in.
    let later = retry_at + TimeDelta::hours(2);
    assert_eq!(deliver_due(&outbox, &transport, later, 10).expect("round").sent, 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(copies(&stack, &leeds.address, &item.message_id), 1);
}

/// Hands out the tokens in order, moving to the next one on each invalidation.
struct Tokens {
    list: Vec<String>,
    at: Mutex<usize>,
    invalidated: AtomicUsize,
}

impl Tokens {
    fn new(list: &[&str]) -> Arc<Tokens> {
        Arc::new(Tokens {
            list: list.iter().map(|s| s.to_string()).collect(),
            at: Mutex::new(0),
            invalidated: AtomicUsize::new(0),
        })
    }
}

impl TokenProvider for Tokens {
    fn token(&self) -> Result<Secret, String> {
        let at = *self.at.lock().expect("lock");
        self.list.get(at).map(Secret::new).ok_or_else(|| "no more tokens".to_string())
    }

    fn invalidate(&self) {
        *self.at.lock().expect("lock") += 1;
        self.invalidated.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn xoauth2_logs_in_with_a_good_token_and_replaces_an_expired_one_once() {
    let stack = stack("smtp-xoauth2");
    let leeds = stack.account("LEEDS").expect("leeds account");
    let good = stack.var("MAILSTACK_OAUTH2_GOOD_TOKEN").expect("good token").to_string();
    let expired = stack.var("MAILSTACK_OAUTH2_EXPIRED_TOKEN").expect("expired token").to_string();
    let mut s = settings(&stack, SmtpTls::StartTls, "localhost");
    s.username = Some(stack.account("INTAKE").expect("intake").address);

    // A good token: delivered, nothing invalidated.
    let tokens = Tokens::new(&[&good]);
    let transport = SmtpTransport::with_tokens(&s, tokens.clone()).expect("transport");
    let item = reply(1, "xoauth2-good", &leeds.address);
    transport.send(&item).expect("XOAUTH2 with a good token");
    assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 0);

    // The cached token has expired: the relay refuses it, a fresh one is fetched, and the
    // reply goes out on the second try.
    let tokens = Tokens::new(&[&expired, &good]);
    let transport = SmtpTransport::with_tokens(&s, tokens.clone()).expect("transport");
    let second = reply(2, "xoauth2-refreshed", &leeds.address);
    transport.send(&second).expect("delivered with the fresh token");
    assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 1);

    // Only expired tokens: one retry, then a temporary failure saying why; no loop.
    let tokens = Tokens::new(&[&expired, &expired, &good]);
    let transport = SmtpTransport::with_tokens(&s, tokens.clone()).expect("transport");
    let third = reply(3, "xoauth2-expired", &leeds.address);
    let err = transport.send(&third).expect_err("refused twice");
    assert!(err.is_transient() && err.message.contains("XOAUTH2"), "{err}");
    assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 1);

    wait_for(&stack, &leeds.address, &item.message_id);
    wait_for(&stack, &leeds.address, &second.message_id);
    assert_eq!(copies(&stack, &leeds.address, &third.message_id), 0);
}

#[test]
fn production_example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/iapt-intake.production.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    match &config.intake.source {
        Source::Imap(imap) => {
            assert_eq!((imap.tls, imap.port), (Tls::Implicit, 993));
            assert_eq!(imap.auth, iapt_intake::config::Auth::XOAuth2);
        }
        other => panic!("production reads IMAP, not {other:?}"),
    }
    match &config.outbound.transport {
        ConfiguredTransport::Smtp(smtp) => {
            assert_eq!((smtp.tls, smtp.port), (Tls::StartTls, 587));
            assert_eq!(smtp.auth, iapt_intake::config::Auth::XOAuth2);
        }
        other => panic!("production sends by SMTP, not {other:?}"),
    }
    assert!(config.store.path.is_absolute(), "state lives in the state directory");
}

/// Send latency and 100 sends with and without the pool:
/// `cargo test --test it smtp::bench -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn bench_hundred_sends_pooled_and_unpooled() {
    let stack = stack("smtp-bench");
    let leeds = stack.account("LEEDS").expect("leeds account");
    for (label, pool_size) in [("pooled", 4), ("unpooled", 0)] {
        let mut s = with_intake_password(&stack, settings(&stack, SmtpTls::StartTls, "localhost"));
        s.pool_size = pool_size;
        let transport = SmtpTransport::new(&s).expect("transport");
        let mut each = Vec::new();
        let start = Instant::now();
        for n in 0..100 {
            let item = reply(n, label, &leeds.address);
            let t = Instant::now();
            transport.send(&item).expect("sent");
            each.push(t.elapsed());
        }
        let total = start.elapsed();
        each.sort();
        println!(
            "{label}: 100 sends in {total:.2?}; per send p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            each[50], each[98], each[99]
        );
    }
    // Four senders sharing one pooled transport, as the daemon's parallel delivery does.
    let s = with_intake_password(&stack, settings(&stack, SmtpTls::StartTls, "localhost"));
    let transport = SmtpTransport::new(&s).expect("transport");
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (transport, to) = (&transport, &leeds.address);
            scope.spawn(move || {
                for n in 0..25 {
                    transport.send(&reply(t * 100 + n, "parallel", to)).expect("sent");
                }
            });
        }
    });
    println!("pooled, 4 threads: 100 sends in {:.2?}", start.elapsed());
    // From handing a reply to the relay to the file in the recipient's Maildir.
    let mut arrival: Vec<Duration> = (0..20)
        .map(|n| {
            let item = reply(1000 + n, "arrival", &leeds.address);
            let t = Instant::now();
            transport.send(&item).expect("sent");
            wait_for(&stack, &leeds.address, &item.message_id);
            t.elapsed()
        })
        .collect();
    arrival.sort();
    println!("send to mailbox: p50 {:.1?}, max {:.1?} (20 replies)", arrival[10], arrival[19]);
}
