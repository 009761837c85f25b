//! Unit tests of the IMAP source that need no mail server: keys, backoff, folder quoting, and
//! the time limit against a server that accepts and then says nothing.

use super::*;
use crate::config::{Auth, SecretSource, Tls};
use crate::shutdown::Shutdown;
use std::net::TcpListener;

fn config(port: u16, timeout: Duration) -> config::Imap {
    config::Imap {
        host: "127.0.0.1".into(),
        port,
        tls: Tls::None,
        username: "u".into(),
        auth: Auth::Plain,
        credential: Credential::Password(SecretSource::Env("IAPT_TEST_UNSET_PASSWORD".into())),
        folder: "INBOX".into(),
        processed_folder: "Processed".into(),
        idle: true,
        ca_file: None,
        timeout,
    }
}

#[test]
fn keys_round_trip_and_foreign_keys_are_refused() {
    assert_eq!(parse_key(&key(1_700_000_000, 42)).expect("ours"), (1_700_000_000, 42));
    for bad in ["imap:1", "imap:x:1", "imap:1:0", "1:2", "maildir:1:2", "imap:1:2:3", "imap:-1:2"] {
        assert!(matches!(parse_key(bad), Err(SourceError::InvalidKey { .. })), "{bad}");
    }
}

#[test]
fn backoff_doubles_from_one_second_to_a_minute_and_never_leaves_that_range() {
    let secs: Vec<f64> = (1..=12).map(|n| backoff(n).as_secs_f64()).collect();
    for (n, s) in secs.iter().enumerate() {
        let base = (1u64 << n.min(6)).min(60) as f64;
        assert!(*s <= base && *s >= (base * 0.8).max(1.0), "attempt {}: {s}", n + 1);
        assert!((1.0..=60.0).contains(s), "attempt {}: {s} outside 1–60 s", n + 1);
    }
    assert!(secs[11] > 47.0, "a minute, less at most a fifth: {}", secs[11]);
}

#[test]
fn folder_names_are_quoted_as_imap_strings_after_their_utf7_encoding() {
    assert_eq!(answer::quoted("Processed"), "\"Processed\"");
    assert_eq!(answer::quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_eq!(answer::quoted(&utf7::encode("Verarbeitet")), "\"Verarbeitet\"");
    assert_eq!(answer::quoted(&utf7::encode("Rückläufer")), "\"R&APw-ckl&AOQ-ufer\"");
}

#[test]
fn a_silent_server_fails_the_connect_at_the_command_timeout_not_later() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and then never greets: the classic half-dead server.
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let started = Instant::now();
    let err = ImapSource::connect(&config(port, Duration::from_millis(400))).expect_err("silent");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("greeting"), "{err}");
    drop(held.join());
}

#[test]
fn after_a_failed_connect_the_next_attempt_waits_for_the_backoff() {
    // A port nobody listens on: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut source = ImapSource::new(&config(port, Duration::from_secs(2))).expect("source");
    let first = source.pending().expect_err("refused");
    assert!(first.is_transient());
    let started = Instant::now();
    let second = source.pending().expect_err("backing off");
    assert!(matches!(second, SourceError::Backoff { .. }), "{second}");
    assert!(started.elapsed() < Duration::from_millis(100), "no new connection is tried");
    // `wait` sleeps out (part of) the backoff instead of spinning.
    let started = Instant::now();
    source.wait(Duration::from_millis(300), &Shutdown::default()).expect("wait");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn only_a_configuration_that_cannot_work_is_not_retried() {
    // Microsoft 365 refuses logins during its own incidents: a refusal is retried with backoff.
    let refused: SourceError = Fault::Refused("AUTHENTICATE failed.".into()).into();
    assert!(refused.is_transient());
    let dropped: SourceError = Fault::Connection("reset".into()).into();
    assert!(dropped.is_transient());
    let move_refused: SourceError = Fault::Command("UID MOVE refused: over quota".into()).into();
    assert!(move_refused.is_transient());
    let setup: SourceError = Fault::Setup("imap.ca_file: not PEM".into()).into();
    assert!(!setup.is_transient());
}

#[test]
fn a_ca_file_that_cannot_be_read_is_the_configurations_fault_found_before_connecting() {
    let mut cfg = config(1, Duration::from_secs(1));
    cfg.tls = Tls::Implicit;
    cfg.ca_file = Some("/nonexistent/iapt-ca.pem".into());
    let err = ImapSource::new(&cfg).expect_err("unreadable CA");
    assert!(!err.is_transient() && err.to_string().contains("imap.ca_file"), "{err}");
}
