//! The daemon's replies through the scriptable relay: an end of data answered after 40 s is
//! waited for (one copy, filing goes on meanwhile), an end of data never answered is not sent
//! again before its limit, a sender refused with `550 5.7.60` pauses delivery without failing
//! anything and it resumes when mended, a reply that failed for good can be requeued. EHLO
//! gives a fully qualified name or an address literal, MAIL FROM carries SIZE=.

use super::{command, eventually, plain_message, write_config, Intake, Out, DCT, NOW, US};
use crate::pipeline::support::daemon::{log_text, Daemon};
use crate::pipeline::support::fake_smtp::{FakeSmtp, Script};
use std::path::Path;
use std::time::{Duration, Instant};

/// Drops `raw` into the Maildir `<dir>/mail` as a delivery agent would.
fn drop_in(dir: &Path, name: &str, raw: &str) {
    let tmp = dir.join("mail/tmp").join(name);
    std::fs::write(&tmp, raw).expect("write");
    std::fs::rename(&tmp, dir.join("mail/new").join(name)).expect("deliver");
}

fn filed(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("mail/cur")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn an_end_of_data_answered_after_40_s_is_waited_for_sent_once_and_filing_goes_on() {
    let relay = FakeSmtp::start(Script { end_delay: Duration::from_secs(40), ..Script::default() });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &Intake::Maildir,
        &Out::Smtp { port: relay.port, login: None, extra: "" },
        "1s",
    );
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::spawn(&config, &log, Some(NOW));
    drop_in(dir.path(), "1.slow", &plain_message("slow-1"));
    assert_eq!(relay.wait_for(1, Duration::from_secs(15)).len(), 1, "{}", log_text(&log));
    let sent = Instant::now();
    // The next message is filed while the relay sits on the first reply's end of data.
    relay.script(|s| s.end_delay = Duration::ZERO);
    drop_in(dir.path(), "2.next", &super::message_from("analyst@bradford.nhs.test", "next-2"));
    assert!(
        eventually(Duration::from_secs(10), || filed(dir.path()) == 2),
        "filing waited for the relay:\n{}",
        log_text(&log)
    );
    assert!(sent.elapsed() < Duration::from_secs(30));
    assert!(
        eventually(Duration::from_secs(60), || log_text(&log).matches("reply sent").count() == 2),
        "{}",
        log_text(&log)
    );
    let answered = sent.elapsed();
    assert!(answered >= Duration::from_secs(35), "the first answer came after {answered:?}");
    std::thread::sleep(Duration::from_secs(2));
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    assert_eq!(relay.copies("Message-ID: <"), 2, "two replies, one copy each");
    assert!(!log.contains("reply deferred"), "{log}");
    let (_, status, _) = command(&config, &["status", "--now", NOW]);
    assert!(!status.contains("Replies not delivered"), "{status}");
}

#[test]
fn an_end_of_data_never_answered_is_not_sent_again_before_its_limit() {
    use chrono::{TimeDelta, TimeZone, Utc};
    use iapt_intake::outbound::{
        deliver_due, MemoryOutbox, OutboxState, SmtpSettings, SmtpTls, SmtpTransport,
    };
    let relay = FakeSmtp::start(Script { drop_after_end: 1, ..Script::default() });
    let mut settings = SmtpSettings::new("127.0.0.1", SmtpTls::None);
    settings.port = relay.port;
    settings.timeout = Duration::from_secs(5);
    settings.steps.data_end = Duration::from_secs(600);
    let transport = SmtpTransport::new(&settings).expect("transport");
    let outbox = MemoryOutbox::new();
    let raw = "From: intake@example.nhs.test\r\nTo: a@leeds.nhs.test\r\nSubject: Re: x\r\nMessage-ID: <r1@iapt.test>\r\n\r\nThanks.\r\n";
    let id = outbox.queue("r1@iapt.test", US, &["a@leeds.nhs.test"], raw.as_bytes());
    let t0 = Utc.with_ymd_and_hms(2011, 7, 12, 10, 0, 0).single().expect("time");
    let stats = deliver_due(&outbox, &transport, t0, 10).expect("round");
    assert_eq!(stats.retried, 1, "{stats:?}");
    let Some(OutboxState::Queued { retry_at: Some(retry_at), last_error: Some(error) }) =
        outbox.state(id)
    else {
        panic!("{:?}", outbox.state(id));
    };
    assert!(error.contains("may have taken"), "{error}");
    assert!(
        retry_at >= t0 + TimeDelta::seconds(590),
        "retried at {retry_at}, not after the 10-minute limit"
    );
    let early = deliver_due(&outbox, &transport, t0 + TimeDelta::minutes(5), 10).expect("early");
    assert_eq!(early.sent + early.retried, 0, "not tried within the limit");
    assert_eq!(relay.copies("r1@iapt.test"), 1);
    let later = deliver_due(&outbox, &transport, retry_at, 10).expect("later");
    assert_eq!(later.sent, 1);
}

#[test]
fn a_sender_refused_with_5_7_60_pauses_delivery_tells_the_team_and_resumes_once_mended() {
    let refusal = "550 5.7.60 SMTP; Client does not have permissions to send as this sender";
    let relay = FakeSmtp::start(Script {
        refuse_sender: Some((US.into(), refusal.into())),
        extensions: vec![
            "PIPELINING".into(),
            "CHUNKING".into(),
            "SIZE 10240000".into(),
            "AUTH PLAIN LOGIN".into(),
        ],
        ..Script::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let login = "intake-app@example.nhs.test";
    let config = write_config(
        dir.path(),
        &Intake::Maildir,
        &Out::Smtp { port: relay.port, login: Some(login), extra: "" },
        "1s",
    );
    let log = dir.path().join("daemon.log");
    // --now: the paused reply's next try must still come due on a clock that runs on.
    let daemon = Daemon::spawn(&config, &log, Some(NOW));
    drop_in(dir.path(), "1.a", &plain_message("paused-1"));
    drop_in(dir.path(), "2.b", &super::message_from("analyst@bradford.nhs.test", "paused-2"));
    // The team hears of it, from the login's own address, which the relay lets through.
    let told = relay.wait_for(1, Duration::from_secs(15));
    assert_eq!(told.len(), 1, "{}", log_text(&log));
    assert!(told[0].mail.contains(&format!("<{login}>")), "{}", told[0].mail);
    assert!(told[0].rcpt[0].contains(DCT), "{:?}", told[0].rcpt);
    let notice = String::from_utf8_lossy(&told[0].data).into_owned();
    assert!(notice.contains("replies paused") && notice.contains("5.7.60"), "{notice}");
    assert!(eventually(Duration::from_secs(5), || filed(dir.path()) == 2), "filing goes on");
    let (_, status, _) = command(&config, &["status", "--now", NOW]);
    assert!(!status.contains("Replies not delivered"), "nothing failed for good:\n{status}");
    // The mailbox is granted Send As.
    relay.script(|s| s.refuse_sender = None);
    let all = relay.wait_for(4, Duration::from_secs(60));
    assert_eq!(all.len(), 4, "two replies and a second notice:\n{}", log_text(&log));
    std::thread::sleep(Duration::from_secs(2));
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    assert_eq!(relay.copies("paused-1@leeds.nhs.test"), 1, "delivered once");
    assert_eq!(relay.copies("paused-2@leeds.nhs.test"), 1, "delivered once");
    assert_eq!(relay.copies("replies resumed"), 1, "{log}");
    assert!(log.contains("delivery paused") && log.contains("delivery resumed"), "{log}");
    assert!(!log.contains("failed permanently"), "{log}");
    // What the relay saw of us: a fully qualified EHLO name or an address literal, SIZE=.
    let reply =
        all.iter().find(|r| String::from_utf8_lossy(&r.data).contains("paused-1")).expect("reply");
    assert!(reply.ehlo.contains('.') || reply.ehlo.starts_with('['), "EHLO {}", reply.ehlo);
    assert!(reply.mail.contains(&format!(" SIZE={}", reply.data.len())), "{}", reply.mail);
}

#[test]
fn a_reply_that_failed_for_good_can_be_requeued_and_goes_out_once() {
    let relay = FakeSmtp::start(Script {
        refuse_rcpt: Some(("analyst@leeds.nhs.test".into(), "550 5.1.1 User unknown".into())),
        ..Script::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &Intake::Maildir,
        &Out::Smtp { port: relay.port, login: None, extra: "" },
        "1s",
    );
    drop_in(dir.path(), "1.a", &plain_message("requeue"));
    let (code, out, err) = command(&config, &["run", "--once", "--now", NOW]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 failed"), "{out}");
    let (_, listed, _) = command(&config, &["requeue", "--now", NOW]);
    assert!(listed.contains("5.1.1 User unknown"), "{listed}");
    let id = listed
        .lines()
        .find(|l| l.contains("User unknown"))
        .and_then(|l| l.split_whitespace().next())
        .expect("an id")
        .to_string();
    let (code, _, err) = command(&config, &["requeue", "99999", "--now", NOW]);
    assert_eq!(code, 2, "an unknown id is refused: {err}");
    relay.script(|s| s.refuse_rcpt = None);
    let (code, out, err) = command(&config, &["requeue", &id, "--now", NOW]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 reply(ies) back in the queue"), "{out}");
    let (_, out, _) = command(&config, &["run", "--once", "--now", NOW]);
    assert!(out.contains("replies: 1 sent"), "{out}");
    assert_eq!(relay.copies("requeue@leeds.nhs.test"), 1);
    let (_, status, _) = command(&config, &["status", "--now", NOW]);
    assert!(!status.contains("Replies not delivered"), "{status}");
}
