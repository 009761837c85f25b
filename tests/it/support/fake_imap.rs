//! A scriptable IMAP server on loopback, for what the real Dovecot will not do on demand: refuse
//! the login a given number of times (Microsoft 365's `NO AUTHENTICATE failed.` during its
//! incidents), treat folder names without regard to case (Exchange) or hold `INBOX.`-style
//! names (Cyrus), refuse MOVE, say `* BYE` instead of answering a FETCH. It speaks the part of
//! IMAP4rev1 our client uses — CAPABILITY, LOGIN, LIST, CREATE, SELECT, UID FETCH, UID MOVE,
//! UID COPY, UID STORE, (UID) EXPUNGE, NOOP, IDLE/DONE, LOGOUT — one thread per connection,
//! and counts every command it is sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// The next this many logins are refused.
    pub refuse_logins: usize,
    /// Folder names compared without regard to case (Exchange); INBOX always is.
    pub case_insensitive: bool,
    pub delimiter: &'static str,
    pub idle: bool,
    pub r#move: bool,
    /// UID MOVE answered NO.
    pub refuse_move: bool,
    /// A FETCH of a message's body answered `* BYE` and the connection closed.
    pub bye_on_body: bool,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            refuse_logins: 0,
            case_insensitive: false,
            delimiter: "/",
            idle: true,
            r#move: true,
            refuse_move: false,
            bye_on_body: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Message {
    uid: u32,
    deleted: bool,
    raw: Vec<u8>,
}

#[derive(Debug, Default)]
struct Folder {
    next_uid: u32,
    messages: Vec<Message>,
}

#[derive(Debug, Default)]
struct Shared {
    script: Script,
    folders: BTreeMap<String, Folder>,
    /// Every command (tagged line, and DONE) clients sent.
    commands: Vec<String>,
    logins_refused: usize,
    /// Sessions in IDLE on a folder: told at once of new mail.
    idlers: Vec<(String, TcpStream)>,
}

pub struct FakeImap {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

const UID_VALIDITY: u32 = 1_700_000_000;

impl FakeImap {
    /// A server with INBOX and the `folders` given (server names, as LIST will report them).
    pub fn start(script: Script, folders: &[&str]) -> FakeImap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut state = Shared { script, ..Shared::default() };
        for name in std::iter::once("INBOX").chain(folders.iter().copied()) {
            state.folders.insert(name.to_string(), Folder { next_uid: 1, messages: Vec::new() });
        }
        let shared = Arc::new(Mutex::new(state));
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let s = s.clone();
                std::thread::spawn(move || session(stream, &s));
            }
        });
        FakeImap { port, shared }
    }

    /// Puts a message in `folder` (a server name) and tells the sessions idling on it.
    pub fn deliver(&self, folder: &str, raw: &str) {
        let mut s = lock(&self.shared);
        let f = s.folders.entry(folder.to_string()).or_default();
        f.next_uid = f.next_uid.max(1);
        let uid = f.next_uid;
        f.next_uid += 1;
        f.messages.push(Message {
            uid,
            deleted: false,
            raw: raw.replace('\n', "\r\n").replace("\r\r\n", "\r\n").into_bytes(),
        });
        let exists = f.messages.len();
        let folder = folder.to_string();
        s.idlers.retain_mut(|(on, stream)| {
            *on != folder || stream.write_all(format!("* {exists} EXISTS\r\n").as_bytes()).is_ok()
        });
    }

    /// Messages in `folder` not flagged \Deleted.
    pub fn count(&self, folder: &str) -> usize {
        lock(&self.shared)
            .folders
            .get(folder)
            .map(|f| f.messages.iter().filter(|m| !m.deleted).count())
            .unwrap_or(0)
    }

    /// The server's folder names.
    pub fn folders(&self) -> Vec<String> {
        lock(&self.shared).folders.keys().cloned().collect()
    }

    /// Every command sent so far.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared).commands.clone()
    }
}

/// The folder a client's name means: INBOX in any case, others exactly or — on a
/// case-insensitive server — in any case.
fn resolve(s: &Shared, name: &str) -> Option<String> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Some("INBOX".into());
    }
    let insensitive = s.script.case_insensitive;
    s.folders
        .keys()
        .find(|k| *k == name)
        .or_else(|| {
            s.folders.keys().find(|k| {
                let (kh, nh) =
                    (k.split(s.script.delimiter).next(), name.split(s.script.delimiter).next());
                (insensitive && k.eq_ignore_ascii_case(name))
                    || (kh.is_some_and(|h| h.eq_ignore_ascii_case("INBOX"))
                        && nh.is_some_and(|h| h.eq_ignore_ascii_case("INBOX"))
                        && k[5..] == name[5..])
            })
        })
        .cloned()
}

/// The arguments of a command: quoted strings unquoted, atoms as they are.
fn args(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next()),
                    '"' => break,
                    c => s.push(c),
                }
            }
            out.push(s);
        } else if c == '(' {
            let mut s = String::new();
            for c in chars.by_ref() {
                s.push(c);
                if c == ')' {
                    break;
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(s);
        }
    }
    out
}

/// Whether `uid` is in the UID set `set` (`1:*`, `3,5`, `4:9`), `max` standing for `*`.
fn in_set(set: &str, uid: u32, max: u32) -> bool {
    set.split(',').any(|part| {
        let bound = |s: &str| if s == "*" { max } else { s.parse().unwrap_or(0) };
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (bound(a), bound(b));
                (a.min(b)..=a.max(b)).contains(&uid)
            }
            None => bound(part) == uid,
        }
    })
}

fn session(stream: TcpStream, shared: &Mutex<Shared>) {
    let Ok(mut out) = stream.try_clone() else { return };
    let mut input = BufReader::new(stream);
    let _ = out.write_all(b"* OK [CAPABILITY IMAP4rev1] fake IMAP ready\r\n");
    let mut selected: Option<String> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).map(|n| n == 0).unwrap_or(true) {
            return;
        }
        let text = line.trim_end_matches("\r\n").to_string();
        lock(shared).commands.push(text.clone());
        let (tag, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let (verb, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut verb = verb.to_ascii_uppercase();
        let mut rest = rest.to_string();
        if verb == "UID" {
            let (v, r) = rest.split_once(' ').unwrap_or((&rest, ""));
            verb = format!("UID {}", v.to_ascii_uppercase());
            rest = r.to_string();
        }
        let reply = |out: &mut TcpStream, s: &str| out.write_all(s.as_bytes()).is_ok();
        let ok =
            |out: &mut TcpStream, what: &str| reply(out, &format!("{tag} OK {what} completed\r\n"));
        let script = lock(shared).script.clone();
        let alive = match verb.as_str() {
            "CAPABILITY" => {
                let mut caps = String::from("* CAPABILITY IMAP4rev1 UIDPLUS");
                if script.idle {
                    caps.push_str(" IDLE");
                }
                if script.r#move {
                    caps.push_str(" MOVE");
                }
                reply(&mut out, &format!("{caps}\r\n")) && ok(&mut out, "CAPABILITY")
            }
            "LOGIN" => {
                let refuse = {
                    let mut s = lock(shared);
                    let refuse = s.logins_refused < s.script.refuse_logins;
                    if refuse {
                        s.logins_refused += 1;
                    }
                    refuse
                };
                if refuse {
                    reply(&mut out, &format!("{tag} NO AUTHENTICATE failed.\r\n"))
                } else {
                    ok(&mut out, "LOGIN")
                }
            }
            "LIST" => {
                let a = args(&rest);
                let pattern = a.get(1).cloned().unwrap_or_default();
                let s = lock(shared);
                let names: Vec<String> = if pattern == "*" {
                    s.folders.keys().cloned().collect()
                } else {
                    resolve(&s, &pattern).into_iter().collect()
                };
                let delim = s.script.delimiter;
                drop(s);
                names.iter().all(|n| reply(&mut out, &format!("* LIST () \"{delim}\" \"{n}\"\r\n")))
                    && ok(&mut out, "LIST")
            }
            "CREATE" => {
                let name = args(&rest).first().cloned().unwrap_or_default();
                let mut s = lock(shared);
                if resolve(&s, &name).is_some() {
                    drop(s);
                    reply(&mut out, &format!("{tag} NO [ALREADYEXISTS] Mailbox already exists\r\n"))
                } else {
                    s.folders.insert(name, Folder { next_uid: 1, messages: Vec::new() });
                    drop(s);
                    ok(&mut out, "CREATE")
                }
            }
            "SELECT" | "EXAMINE" => {
                let name = args(&rest).first().cloned().unwrap_or_default();
                let s = lock(shared);
                match resolve(&s, &name) {
                    Some(found) => {
                        let f = &s.folders[&found];
                        let text = format!(
                            "* {} EXISTS\r\n* OK [UIDVALIDITY {UID_VALIDITY}] UIDs valid\r\n* OK [UIDNEXT {}] next\r\n",
                            f.messages.len(),
                            f.next_uid
                        );
                        drop(s);
                        selected = Some(found);
                        reply(&mut out, &text)
                            && reply(
                                &mut out,
                                &format!("{tag} OK [READ-WRITE] SELECT completed\r\n"),
                            )
                    }
                    None => {
                        drop(s);
                        reply(&mut out, &format!("{tag} NO Mailbox does not exist\r\n"))
                    }
                }
            }
            "UID FETCH" => {
                let a = args(&rest);
                let (set, items) =
                    (a.first().cloned().unwrap_or_default(), a.get(1).cloned().unwrap_or_default());
                let Some(folder) = selected.clone() else { return };
                if items.contains("BODY") && script.bye_on_body {
                    let _ = reply(&mut out, "* BYE Server shutting down\r\n");
                    return;
                }
                let s = lock(shared);
                let f = &s.folders[&folder];
                let max = f.messages.iter().map(|m| m.uid).max().unwrap_or(0);
                let mut text = Vec::new();
                for (i, m) in f.messages.iter().enumerate() {
                    if !in_set(&set, m.uid, max) {
                        continue;
                    }
                    let seq = i + 1;
                    if items.contains("BODY") {
                        write!(text, "* {seq} FETCH (UID {} BODY[] {{{}}}\r\n", m.uid, m.raw.len())
                            .ok();
                        text.extend_from_slice(&m.raw);
                        text.extend_from_slice(b")\r\n");
                    } else {
                        let flags = if m.deleted { "\\Deleted" } else { "" };
                        write!(
                            text,
                            "* {seq} FETCH (UID {} FLAGS ({flags}) RFC822.SIZE {} INTERNALDATE \"20-Jul-2011 10:00:00 +0100\")\r\n",
                            m.uid,
                            m.raw.len()
                        )
                        .ok();
                    }
                }
                drop(s);
                out.write_all(&text).is_ok() && ok(&mut out, "FETCH")
            }
            "UID MOVE" | "UID COPY" => {
                let a = args(&rest);
                let (set, dest) =
                    (a.first().cloned().unwrap_or_default(), a.get(1).cloned().unwrap_or_default());
                let Some(folder) = selected.clone() else { return };
                if verb == "UID MOVE" && script.refuse_move {
                    reply(&mut out, &format!("{tag} NO [CANNOT] Move refused by policy\r\n"))
                } else {
                    let mut s = lock(shared);
                    match resolve(&s, &dest) {
                        None => {
                            drop(s);
                            reply(&mut out, &format!("{tag} NO [TRYCREATE] No such mailbox\r\n"))
                        }
                        Some(dest) => {
                            let max = s.folders[&folder]
                                .messages
                                .iter()
                                .map(|m| m.uid)
                                .max()
                                .unwrap_or(0);
                            let picked: Vec<(usize, Message)> = s.folders[&folder]
                                .messages
                                .iter()
                                .enumerate()
                                .filter(|(_, m)| in_set(&set, m.uid, max))
                                .map(|(i, m)| (i, m.clone()))
                                .collect();
                            for (_, m) in &picked {
                                let d = s.folders.entry(dest.clone()).or_default();
                                d.next_uid = d.next_uid.max(1);
                                let uid = d.next_uid;
                                d.next_uid += 1;
                                d.messages.push(Message {
                                    uid,
                                    deleted: false,
                                    raw: m.raw.clone(),
                                });
                            }
                            let mut text = String::new();
                            if verb == "UID MOVE" {
                                let f = s.folders.get_mut(&folder).expect("selected");
                                for (i, _) in picked.iter().rev() {
                                    f.messages.remove(*i);
                                    text.push_str(&format!("* {} EXPUNGE\r\n", i + 1));
                                }
                            }
                            drop(s);
                            reply(&mut out, &text) && ok(&mut out, &verb)
                        }
                    }
                }
            }
            "UID STORE" => {
                let set = args(&rest).first().cloned().unwrap_or_default();
                let Some(folder) = selected.clone() else { return };
                let mut s = lock(shared);
                let f = s.folders.get_mut(&folder).expect("selected");
                let max = f.messages.iter().map(|m| m.uid).max().unwrap_or(0);
                for m in f.messages.iter_mut().filter(|m| in_set(&set, m.uid, max)) {
                    m.deleted = rest.contains("\\Deleted");
                }
                drop(s);
                ok(&mut out, "STORE")
            }
            "EXPUNGE" | "UID EXPUNGE" => {
                let Some(folder) = selected.clone() else { return };
                let mut s = lock(shared);
                let f = s.folders.get_mut(&folder).expect("selected");
                let mut text = String::new();
                let mut i = f.messages.len();
                while i > 0 {
                    i -= 1;
                    if f.messages[i].deleted {
                        f.messages.remove(i);
                        text.push_str(&format!("* {} EXPUNGE\r\n", i + 1));
                    }
                }
                drop(s);
                reply(&mut out, &text) && ok(&mut out, "EXPUNGE")
            }
            "NOOP" => ok(&mut out, "NOOP"),
            "IDLE" => {
                let Some(folder) = selected.clone() else { return };
                if let Ok(idler) = out.try_clone() {
                    lock(shared).idlers.push((folder, idler));
                }
                if !reply(&mut out, "+ idling\r\n") {
                    return;
                }
                // Until the client says DONE; new mail is told by `deliver` meanwhile.
                let mut done = String::new();
                let said = input.read_line(&mut done).map(|n| n > 0).unwrap_or(false);
                lock(shared).commands.push(done.trim_end().to_string());
                let me = out.local_addr().ok().zip(out.peer_addr().ok());
                lock(shared)
                    .idlers
                    .retain(|(_, s)| s.local_addr().ok().zip(s.peer_addr().ok()) != me);
                said && ok(&mut out, "IDLE")
            }
            "LOGOUT" => {
                let _ = reply(&mut out, "* BYE Logging out\r\n");
                let _ = ok(&mut out, "LOGOUT");
                return;
            }
            _ => reply(&mut out, &format!("{tag} BAD Unknown command\r\n")),
        };
        if !alive {
            return;
        }
        std::thread::sleep(Duration::ZERO);
    }
}
