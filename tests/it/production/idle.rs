//! How much the daemon asks the real Dovecot while nothing arrives, counted by a proxy in front
//! of it that sees every command line: on IDLE, nothing but the IDLE held (and, every 29
//! minutes, DONE, one `UID FETCH n:*` and IDLE again); without IDLE, one look per poll
//! interval. The issue measured about 14,000 commands an hour before (an IDLE ended every
//! second, a NOOP every 250 ms, the whole folder listed after each). The bound in the tests is
//! the issue's, at most 5 a minute, scaled to the window; the figures are printed.

use super::{eventually, plain_message, reply_files, stack, write_config, Intake, Out, NOW, US};
use crate::pipeline::support::daemon::{log_text, Daemon};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Commands a client sent through the proxy: complete lines from the client (a literal's data
/// would count too, but nothing the daemon sends while idle has one).
struct Counting {
    port: u16,
    lines: Arc<AtomicUsize>,
}

impl Counting {
    fn start(upstream: u16) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let lines = Arc::new(AtomicUsize::new(0));
        let counted = lines.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (mut c_in, mut s_out) =
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        let crlf = buf[..n].windows(2).filter(|w| w == b"\r\n").count();
                        counted.fetch_add(crlf, Ordering::SeqCst);
                        if s_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Counting { port, lines }
    }

    fn count(&self) -> usize {
        self.lines.load(Ordering::SeqCst)
    }
}

/// The daemon on the stack's intake mailbox through a counting proxy; the commands it sends in
/// `window` of quiet once it has settled, then how long a message sent through Postfix takes
/// to be answered.
fn idle_window(name: &str, idle: bool, poll: &str, window: Duration) -> (usize, Duration) {
    let stack = stack(name);
    let intake = stack.account("INTAKE").expect("intake");
    let proxy = Counting::start(stack.imap_port);
    let dir = tempfile::tempdir().expect("tempdir");
    let imap = Intake::Imap {
        port: proxy.port,
        user: &intake.address,
        password: &intake.password_file,
        processed: "Processed",
        idle,
    };
    let config = write_config(dir.path(), &imap, &Out::Files, poll);
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::spawn(&config, &log, Some(NOW));
    assert!(
        eventually(Duration::from_secs(10), || log_text(&log).contains("IMAP connected")),
        "{}",
        log_text(&log)
    );
    std::thread::sleep(Duration::from_secs(2)); // the first listing and IDLE are sent
    let before = proxy.count();
    std::thread::sleep(window);
    let commands = proxy.count() - before;
    let sent = Instant::now();
    crate::imap::smtp_send(stack.smtp_port, "analyst@leeds.nhs.test", US, &plain_message(name));
    assert!(
        eventually(Duration::from_secs(40), || reply_files(dir.path()).len() == 1),
        "no answer:\n{}",
        log_text(&log)
    );
    let answered = sent.elapsed();
    let (status, _, log) = daemon.stop_and_log();
    assert!(status.success(), "{log}");
    (commands, answered)
}

#[test]
fn on_idle_a_quiet_half_minute_costs_no_command_and_new_mail_is_answered_within_2_s() {
    let window = Duration::from_secs(30);
    let (commands, answered) = idle_window("prod-idle", true, "30s", window);
    println!(
        "IDLE: {commands} command(s) in {window:?} of quiet; new mail answered {answered:?} after SMTP acceptance"
    );
    // At most 5 a minute, scaled to the window: 2.5. Held, the IDLE sends nothing at all.
    assert!(commands * 60 <= 5 * window.as_secs() as usize, "{commands} commands in {window:?}");
    assert!(answered < Duration::from_secs(2), "answered after {answered:?}");
}

#[test]
fn without_idle_one_look_per_poll_interval() {
    let window = Duration::from_secs(30);
    let (commands, _) = idle_window("prod-poll", false, "15s", window);
    println!("no IDLE, poll_interval 15s: {commands} command(s) in {window:?} of quiet");
    assert!(commands * 60 <= 5 * window.as_secs() as usize, "{commands} commands in {window:?}");
    assert!(commands >= 1, "it does look: {commands}");
}

/// The 29-minute refresh, shortened to a second: each one costs DONE, one `UID FETCH n:*` and a
/// new IDLE — three lines — so an idle hour costs about six.
#[test]
fn each_idle_refresh_costs_done_one_look_and_idle_again() {
    use iapt_intake::config::{Auth, Credential, Imap, SecretSource, Tls};
    use iapt_intake::mailbox::imap::ImapSource;
    use iapt_intake::mailbox::MailSource;
    use iapt_intake::shutdown::Shutdown;
    let stack = stack("prod-refresh");
    let intake = stack.account("INTAKE").expect("intake");
    let proxy = Counting::start(stack.imap_port);
    let cfg = Imap {
        host: "127.0.0.1".into(),
        port: proxy.port,
        tls: Tls::None,
        username: intake.address,
        auth: Auth::Plain,
        credential: Credential::Password(SecretSource::File(intake.password_file)),
        folder: "INBOX".into(),
        processed_folder: "Processed".into(),
        idle: true,
        ca_file: None,
        timeout: Duration::from_secs(3),
    };
    let mut source =
        ImapSource::connect(&cfg).expect("login").with_idle_refresh(Duration::from_millis(500));
    source.pending().expect("first listing");
    let stop = Shutdown::default();
    let before = proxy.count();
    let cycles = 6;
    for _ in 0..cycles {
        source.wait(Duration::from_secs(30), &stop).expect("idle");
        assert!(source.pending().expect("look").is_empty());
    }
    std::thread::sleep(Duration::from_millis(200));
    let per_cycle = (proxy.count() - before) as f64 / cycles as f64;
    println!(
        "IDLE refresh: {per_cycle} command lines per refresh, so {:.1} per idle hour",
        per_cycle * 60.0 / 29.0
    );
    assert_eq!(per_cycle, 3.0, "IDLE, DONE, UID FETCH per refresh");
}
