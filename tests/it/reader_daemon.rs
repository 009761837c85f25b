//! Hostile workbooks through the running daemon (issue 12, SPEC §6): `iapt-intake run` on a
//! Maildir, as in production, is mailed an attachment that would take gigabytes if read
//! naively, and one that reads for longer than its time limit. Each time the sender is answered
//! with a rejection that names the problem, the daemon keeps running (a good return mailed
//! next is accepted), and its resident memory, read from `/proc/<pid>/status` of the real
//! daemon process, is back under 100 MB. The figures are printed for the record.

use crate::crash::{wait_until, NOW};
use crate::pipeline::support::daemon::{log_text, Daemon};
use crate::pipeline::support::{self, reply_of, Mail, ReturnBook, Settings, ANN};
use iapt_intake::mailbox::Maildir;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIMIT_AFTER_KB: u64 = 100 * 1024;

fn hostile(name: &str) -> Vec<u8> {
    let path = support::repo().join("tests/fixtures/workbooks/hostile").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A field of `/proc/<pid>/status`, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU the process has used, in clock ticks (`/proc/<pid>/stat` fields 14, 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    field(11) + field(12)
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    mailbox: Maildir,
    replies: PathBuf,
    log: PathBuf,
}

fn setup(extra_limits: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("iapt-intake.toml");
    let text = support::config_text(dir.path(), &Settings::default()) + extra_limits;
    std::fs::write(&config, text).expect("config");
    let mailbox = Maildir::open(dir.path().join("var/mail")).expect("maildir");
    let (replies, log) = (dir.path().join("var/replies"), dir.path().join("daemon.log"));
    Setup { _dir: dir, config, mailbox, replies, log }
}

/// The body of the reply to the message with this Message-ID, once it has been written.
fn reply_to(dir: &Path, message_id: &str) -> Option<String> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| reply_of(&std::fs::read(p).unwrap_or_default()))
        .find(|r| r.in_reply_to.as_deref().is_some_and(|id| id.contains(message_id)))
        .map(|r| r.subject + "\n" + &r.body)
}

/// Mails `bytes` as the return's attachment and samples the daemon's RSS until the reply is
/// written: (the reply, the highest RSS seen in kB).
fn mail_and_watch(
    s: &Setup,
    daemon: &Daemon,
    id: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (String, u64) {
    let mail = Mail::new(ANN, "IAPT KPI Q1 2011/12 Leeds PCT", id).xlsx(name, bytes);
    s.mailbox.deliver(&mail.bytes()).expect("delivered");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut peak = 0;
    loop {
        peak = peak.max(status_kb(daemon.id(), "VmRSS:"));
        if let Some(reply) = reply_to(&s.replies, id) {
            return (reply, peak);
        }
        assert!(Instant::now() < deadline, "no reply to {id}:\n{}", log_text(&s.log));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The daemon still files and answers: a good return mailed now is accepted.
fn still_accepts(s: &Setup, daemon: &mut Daemon, id: &str) {
    let good = ReturnBook::leeds().xlsx();
    let (reply, _) = mail_and_watch(s, daemon, id, "leeds-q1.xlsx", good);
    assert!(reply.contains("accepted"), "the good return after the bomb: {reply}");
    assert!(!daemon.exited(), "the daemon stopped:\n{}", log_text(&s.log));
}

fn settle_rss(pid: u32) -> u64 {
    // The reader's memory is given back as it is dropped; allow a moment for the last of it.
    let mut rss = status_kb(pid, "VmRSS:");
    wait_until(Duration::from_secs(5), || {
        rss = status_kb(pid, "VmRSS:");
        rss < LIMIT_AFTER_KB
    });
    rss
}

#[test]
fn a_shared_string_bomb_by_mail_is_rejected_by_name_and_the_daemon_stays_up_and_small() {
    let s = setup("");
    let mut daemon = Daemon::spawn(&s.config, &s.log, Some(NOW));
    std::thread::sleep(Duration::from_millis(500));
    let before = status_kb(daemon.id(), "VmRSS:");

    let bomb = hostile("sst-bomb.xlsx");
    let (reply, during) = mail_and_watch(&s, &daemon, "bomb@leeds.nhs.test", "leeds.xlsx", bomb);
    assert!(reply.contains("rejected"), "{reply}");
    assert!(reply.contains("IAPT-E21") && reply.contains("too large"), "{reply}");
    assert!(reply.contains("shared string") && reply.contains("over the limit"), "{reply}");
    let after = settle_rss(daemon.id());
    println!("daemon RSS, shared-string bomb: before {before} kB, during (peak seen) {during} kB, after {after} kB");
    assert!(after < LIMIT_AFTER_KB, "RSS {after} kB after the bomb");

    still_accepts(&s, &mut daemon, "after-bomb@leeds.nhs.test");
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "exit {status:?}:\n{log}");
}

#[test]
fn a_read_past_its_time_limit_is_stopped_and_its_memory_freed_while_the_daemon_goes_on() {
    // Two million cells with the cell limit raised: only the (one second) time limit stops it,
    // and an unoptimised build takes far longer than that to read them.
    let s = setup("cells_per_sheet = 10000000\nattachment_timeout = \"1s\"\n");
    let mut daemon = Daemon::spawn(&s.config, &s.log, Some(NOW));
    std::thread::sleep(Duration::from_millis(500));
    let before = status_kb(daemon.id(), "VmRSS:");

    let slow = hostile("two-million-cells.xlsx");
    let (reply, during) = mail_and_watch(&s, &daemon, "slow@leeds.nhs.test", "leeds.xlsx", slow);
    assert!(reply.contains("IAPT-E21") && reply.contains("took longer than 1 s"), "{reply}");
    // A reader left running would go on using a core and growing to ~160 MB.
    std::thread::sleep(Duration::from_millis(300));
    let ticks = cpu_ticks(daemon.id());
    std::thread::sleep(Duration::from_secs(2));
    let busy = cpu_ticks(daemon.id()) - ticks;
    let after = settle_rss(daemon.id());
    println!("daemon RSS, read stopped at its time: before {before} kB, during (peak seen) {during} kB, after {after} kB; CPU in the 2 s after: {busy} ticks");
    assert!(busy < 50, "the daemon used {busy} ticks of CPU in the 2 s after the rejection");
    assert!(after < LIMIT_AFTER_KB, "RSS {after} kB after the stopped read");

    still_accepts(&s, &mut daemon, "after-slow@leeds.nhs.test");
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "exit {status:?}:\n{log}");
}
