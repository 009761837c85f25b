//! A scriptable SMTP relay on loopback, for what the real Postfix will not do on demand: answer
//! the end of data after 40 s, drop the connection once the data is in, refuse our sender at
//! MAIL FROM as Microsoft 365 does (`550 5.7.60`) until told otherwise. It speaks enough of
//! RFC 5321 for our client — EHLO with the extensions it is given, AUTH PLAIN (any password),
//! MAIL, RCPT, DATA (dot-stuffing undone), `BDAT n [LAST]`, RSET, NOOP, QUIT — one thread per
//! connection, and keeps every message it took.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the relay behaves; changed while it runs with [`FakeSmtp::script`].
#[derive(Debug, Clone)]
pub struct Script {
    /// EHLO keywords besides 8BITMIME, e.g. `PIPELINING`, `CHUNKING`, `SIZE 10240000`,
    /// `AUTH PLAIN LOGIN`.
    pub extensions: Vec<String>,
    /// MAIL FROM this address is answered with this reply.
    pub refuse_sender: Option<(String, String)>,
    /// RCPT TO this address is answered with this reply.
    pub refuse_rcpt: Option<(String, String)>,
    /// The answer to the end of data comes after this long.
    pub end_delay: Duration,
    /// The next this many ends of data are taken (counted as received) and the connection
    /// closed without an answer.
    pub drop_after_end: usize,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            extensions: vec!["PIPELINING".into(), "CHUNKING".into(), "SIZE 10240000".into()],
            refuse_sender: None,
            refuse_rcpt: None,
            end_delay: Duration::ZERO,
            drop_after_end: 0,
        }
    }
}

/// One message the relay took.
#[derive(Debug, Clone)]
pub struct Received {
    pub ehlo: String,
    pub mail: String,
    pub rcpt: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Shared {
    script: Script,
    received: Vec<Received>,
}

pub struct FakeSmtp {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeSmtp {
    pub fn start(script: Script) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Mutex::new(Shared { script, ..Shared::default() }));
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let s = s.clone();
                std::thread::spawn(move || session(stream, &s));
            }
        });
        FakeSmtp { port, shared }
    }

    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut lock(&self.shared).script);
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared).received.clone()
    }

    /// Messages taken whose bytes contain `needle` (a Message-ID, say).
    pub fn copies(&self, needle: &str) -> usize {
        self.received().iter().filter(|r| String::from_utf8_lossy(&r.data).contains(needle)).count()
    }

    /// Waits up to `limit` for `n` messages to have been taken.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn session(stream: TcpStream, shared: &Mutex<Shared>) {
    let Ok(mut out) = stream.try_clone() else { return };
    let mut input = BufReader::new(stream);
    let _ = out.write_all(b"220 fake.relay.test ESMTP\r\n");
    let (mut ehlo, mut mail, mut rcpt) = (String::new(), String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).map(|n| n == 0).unwrap_or(true) {
            return;
        }
        let command = line.trim_end_matches("\r\n").to_string();
        let verb = command.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
        let script = lock(shared).script.clone();
        let answer: String = match verb.as_str() {
            "EHLO" | "HELO" => {
                ehlo = command[4..].trim().to_string();
                let mut a = String::from("250-fake.relay.test\r\n");
                for e in &script.extensions {
                    a.push_str(&format!("250-{e}\r\n"));
                }
                a + "250 8BITMIME\r\n"
            }
            "AUTH" => "235 2.7.0 Authentication successful\r\n".into(),
            "MAIL" => {
                let refused = script
                    .refuse_sender
                    .as_ref()
                    .filter(|(address, _)| command.contains(&format!("<{address}>")));
                match refused {
                    Some((_, reply)) => {
                        (mail, rcpt) = (String::new(), Vec::new());
                        format!("{reply}\r\n")
                    }
                    None => {
                        mail = command.clone();
                        rcpt.clear();
                        "250 2.1.0 Sender OK\r\n".into()
                    }
                }
            }
            "RCPT" if mail.is_empty() => "503 5.5.1 Need MAIL first\r\n".into(),
            "RCPT" => {
                let refused = script
                    .refuse_rcpt
                    .as_ref()
                    .filter(|(address, _)| command.contains(&format!("<{address}>")));
                match refused {
                    Some((_, reply)) => format!("{reply}\r\n"),
                    None => {
                        rcpt.push(command.clone());
                        "250 2.1.5 Recipient OK\r\n".into()
                    }
                }
            }
            "DATA" if rcpt.is_empty() => "554 5.5.1 No valid recipients\r\n".into(),
            "DATA" => {
                let _ = out.write_all(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
                let mut data = Vec::new();
                let mut l = Vec::new();
                loop {
                    l.clear();
                    if input.read_until(b'\n', &mut l).map(|n| n == 0).unwrap_or(true) {
                        return;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                }
                let answer = end(shared, &script, &ehlo, &mail, &rcpt, data);
                (mail, rcpt) = (String::new(), Vec::new());
                match answer {
                    Some(answer) => answer,
                    None => return,
                }
            }
            "BDAT" => {
                let mut words = command.split_whitespace().skip(1);
                let size: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let mut chunk = vec![0u8; size];
                if input.read_exact(&mut chunk).is_err() {
                    return;
                }
                if rcpt.is_empty() {
                    let _ = out.write_all(b"554 5.5.1 No valid recipients\r\n");
                    continue;
                }
                let answer = end(shared, &script, &ehlo, &mail, &rcpt, chunk);
                (mail, rcpt) = (String::new(), Vec::new());
                match answer {
                    Some(answer) => answer,
                    None => return,
                }
            }
            "QUIT" => {
                let _ = out.write_all(b"221 2.0.0 Bye\r\n");
                return;
            }
            _ => "250 2.0.0 OK\r\n".into(),
        };
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The end of one message: taken, then answered after the scripted delay — or `None` when the
/// script says to drop the connection instead.
fn end(
    shared: &Mutex<Shared>,
    script: &Script,
    ehlo: &str,
    mail: &str,
    rcpt: &[String],
    data: Vec<u8>,
) -> Option<String> {
    let drop = {
        let mut s = lock(shared);
        s.received.push(Received {
            ehlo: ehlo.to_string(),
            mail: mail.to_string(),
            rcpt: rcpt.to_vec(),
            data,
        });
        let drop = s.script.drop_after_end > 0;
        if drop {
            s.script.drop_after_end -= 1;
        }
        drop
    };
    if drop {
        return None;
    }
    std::thread::sleep(script.end_delay);
    Some("250 2.6.0 Queued mail for delivery\r\n".into())
}
