//! The pool against a scripted relay on loopback: which connections are opened, reused,
//! dropped and closed with QUIT, and that the bytes of each reply arrive as stored.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// What the scripted relay saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    quits: usize,
    /// Each message as received after DATA, dot-stuffing undone, final `.` line removed.
    messages: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Accepts every recipient but `nobody@…` (550).
    Normal,
    /// Never greets.
    Mute,
    /// As `Normal`, but hangs up after each message, as a relay restarting would.
    HangUp,
}

fn relay(mode: Mode) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            lock(&shared).connections += 1;
            let seen = shared.clone();
            if mode == Mode::Mute {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(5));
                    drop(stream);
                });
            } else {
                std::thread::spawn(move || converse(stream, &seen, mode));
            }
        }
    });
    (port, seen)
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

fn converse(stream: TcpStream, seen: &Mutex<Seen>, mode: Mode) {
    let mut out = stream.try_clone().expect("clone");
    let mut lines = BufReader::new(stream);
    let mut say = |text: &str| out.write_all(text.as_bytes()).is_ok();
    say("220 relay.test ESMTP\r\n");
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        let command = line.trim_end().to_ascii_uppercase();
        let answer = if command.starts_with("EHLO") {
            "250-relay.test\r\n250 8BITMIME\r\n"
        } else if command.starts_with("RCPT") && command.contains("NOBODY@") {
            "550 5.1.1 no such user\r\n"
        } else if command == "DATA" {
            say("354 go ahead\r\n");
            lock(seen).messages.push(read_data(&mut lines));
            if mode == Mode::HangUp {
                say("250 2.0.0 queued\r\n");
                return;
            }
            "250 2.0.0 queued\r\n"
        } else if command == "QUIT" {
            lock(seen).quits += 1;
            say("221 bye\r\n");
            return;
        } else {
            "250 ok\r\n"
        };
        if !say(answer) {
            return;
        }
        line.clear();
    }
}

fn read_data(lines: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        if line == b".\r\n" {
            break;
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        message.extend_from_slice(unstuffed);
        line.clear();
    }
    message
}

fn transport(port: u16, pool_size: u32) -> SmtpTransport {
    let mut settings = SmtpSettings::new("127.0.0.1", SmtpTls::None);
    settings.port = port;
    settings.pool_size = pool_size;
    settings.timeout = Duration::from_millis(500);
    settings.steps.greeting = Duration::from_millis(500);
    SmtpTransport::new(&settings).expect("transport")
}

fn item(n: i64, to: &str) -> OutboxItem {
    OutboxItem {
        id: n,
        message_id: format!("r{n}@iapt.test"),
        envelope_from: "intake@example.nhs.test".into(),
        recipients: vec![to.into()],
        raw: format!("Subject: reply {n}\r\n\r\n.leading dot\r\nlast line\r\n").into_bytes(),
        attempts: 0,
    }
}

/// Waits up to 2 s for `check` to hold (QUIT goes out in the background).
fn eventually(seen: &Mutex<Seen>, check: impl Fn(&Seen) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if check(&lock(seen)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn replies_in_a_row_share_one_connection_and_arrive_as_stored() {
    let (port, seen) = relay(Mode::Normal);
    let transport = transport(port, 4);
    let items: Vec<OutboxItem> = (1..=3).map(|n| item(n, "analyst@leeds.nhs.test")).collect();
    for item in &items {
        transport.send(item).expect("sent");
    }
    let seen = lock(&seen);
    assert_eq!(seen.connections, 1);
    let stored: Vec<Vec<u8>> = items.into_iter().map(|i| i.raw).collect();
    assert_eq!(seen.messages, stored);
}

#[test]
fn a_connection_that_saw_a_refusal_is_not_reused() {
    let (port, seen) = relay(Mode::Normal);
    let transport = transport(port, 4);
    let err = transport.send(&item(1, "nobody@leeds.nhs.test")).expect_err("550");
    assert!(!err.is_transient() && err.message.contains("550"), "{err}");
    transport.send(&item(2, "analyst@leeds.nhs.test")).expect("sent");
    assert_eq!(lock(&seen).connections, 2);
    assert_eq!(lock(&seen).messages.len(), 1);
}

#[test]
fn without_a_pool_each_reply_has_its_own_connection_ended_with_quit() {
    let (port, seen) = relay(Mode::Normal);
    let transport = transport(port, 0);
    transport.send(&item(1, "analyst@leeds.nhs.test")).expect("sent");
    transport.send(&item(2, "analyst@leeds.nhs.test")).expect("sent");
    assert!(eventually(&seen, |s| s.quits == 2), "two QUITs");
    assert_eq!(lock(&seen).connections, 2);
}

#[test]
fn dropping_the_transport_says_quit_on_idle_connections() {
    let (port, seen) = relay(Mode::Normal);
    let transport = transport(port, 4);
    transport.test_connection().expect("greets");
    transport.send(&item(1, "analyst@leeds.nhs.test")).expect("sent");
    assert_eq!(lock(&seen).connections, 1, "the tested connection carried the reply");
    drop(transport);
    assert!(eventually(&seen, |s| s.quits == 1), "QUIT on drop");
}

#[test]
fn parallel_senders_use_at_most_one_connection_each() {
    let (port, seen) = relay(Mode::Normal);
    let transport = transport(port, 4);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let transport = &transport;
            scope.spawn(move || {
                for n in 0..10 {
                    transport.send(&item(t * 100 + n, "analyst@leeds.nhs.test")).expect("sent");
                }
            });
        }
    });
    let seen = lock(&seen);
    assert_eq!(seen.messages.len(), 40);
    assert!((1..=4).contains(&seen.connections), "{} connections", seen.connections);
}

#[test]
fn a_relay_that_never_greets_is_a_transient_timeout() {
    let (port, _seen) = relay(Mode::Mute);
    let transport = transport(port, 4);
    let start = Instant::now();
    let err = transport.send(&item(1, "analyst@leeds.nhs.test")).expect_err("no greeting");
    assert!(err.is_transient(), "{err}");
    assert!(err.message.contains("greeting") && err.message.contains("no answer"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3), "gave up after the timeout");
}

/// `transport` with a pool that checks and retires idle connections at the given ages.
fn with_ages(port: u16, check_after: Duration, max_idle: Duration) -> SmtpTransport {
    let mut transport = transport(port, 4);
    let inner = Arc::get_mut(&mut transport.inner).expect("sole owner");
    inner.pool = Pool::with_ages(4, check_after, max_idle);
    transport
}

#[test]
fn a_connection_idle_too_long_is_closed_with_quit_not_reused() {
    let (port, seen) = relay(Mode::Normal);
    let transport = with_ages(port, Duration::from_secs(60), Duration::from_millis(100));
    transport.send(&item(1, "analyst@leeds.nhs.test")).expect("sent");
    std::thread::sleep(Duration::from_millis(200));
    transport.send(&item(2, "analyst@leeds.nhs.test")).expect("sent");
    assert!(eventually(&seen, |s| s.quits == 1), "the stale connection got QUIT");
    assert_eq!(lock(&seen).connections, 2);
}

#[test]
fn an_idle_connection_the_relay_dropped_is_noticed_before_the_next_reply() {
    let (port, seen) = relay(Mode::HangUp);
    let transport = with_ages(port, Duration::ZERO, Duration::from_secs(60));
    transport.send(&item(1, "analyst@leeds.nhs.test")).expect("sent");
    std::thread::sleep(Duration::from_millis(50));
    transport.send(&item(2, "analyst@leeds.nhs.test")).expect("sent on a new connection");
    assert_eq!(lock(&seen).connections, 2);
    assert_eq!(lock(&seen).messages.len(), 2);
}
