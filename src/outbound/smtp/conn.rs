//! Connections to the relay on sockets we open ourselves, so TCP_NODELAY is set: lettre writes
//! a message's body and its closing `.` line as two writes, and without NODELAY the second one
//! waits for the relay's delayed ACK of the first (about 40 ms per reply).
//!
//! Owns the socket, TLS (implicit, or STARTTLS through lettre), the greeting and the EHLO name,
//! what the relay offers, the login, what a failed step means for the reply, and the pool of
//! idle connections. Sending one message is `transaction`'s; fetching tokens `xoauth2`'s.

use super::SendError;
use crate::config::SmtpSteps;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::Error as SmtpError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// An idle connection older than this is closed rather than reused: the relay may well have
/// dropped it (Postfix does after 300 s, others sooner), and a fresh one costs little.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// An idle connection older than this is checked with NOOP before a reply is trusted to it;
/// younger ones go straight to MAIL FROM, saving a round trip per reply under load.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// QUIT is a courtesy: never wait long for the relay to answer it.
const QUIT_LIMIT: Duration = Duration::from_secs(2);

/// A step of the conversation with the relay, named in errors and deciding what a refusal
/// means (see `into_send_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    DataEnd,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Tls => "TLS handshake",
            Step::Greeting => "greeting",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::Mail => "MAIL FROM",
            Step::Rcpt => "RCPT TO",
            Step::Data => "DATA",
            Step::DataEnd => "end of data",
        }
    }
}

/// Why a step with the relay failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The relay answered with an error, or lettre refused on our side.
    Smtp(Step, SmtpError),
    /// The relay refused the login: the only failure a fresh token may cure.
    Login(SmtpError),
    /// No connection, no TLS, or no answer in time, before the whole message was sent: always
    /// worth trying again.
    Link(String),
    /// The whole message was sent and the relay's answer to its end did not come (the limit
    /// ran out, the connection dropped, the daemon is stopping): the relay may have taken it.
    /// `left` is what remained of the end-of-data limit.
    Unanswered { why: String, left: Duration },
    /// The relay cannot take this reply as it is: larger than its SIZE (RFC 1870), or needing
    /// an extension it does not offer.
    Unsendable(String),
}

impl Failure {
    /// What the failure means for the reply. A refusal that blames our sender or our login —
    /// MAIL FROM refused (Microsoft 365's `550 5.7.60 … send as this sender`), AUTH refused, or
    /// any 530/534/535/538 (authentication or TLS required, RFC 4954 §6) — is the same for
    /// every reply: delivery pauses and the replies stay queued. A 5xx for a recipient or the
    /// content is this reply's own and final; 4xx and trouble on the line are retried.
    pub(super) fn into_send_error(self, relay: &str) -> SendError {
        use super::SendErrorKind as Kind;
        match self {
            Failure::Smtp(step, e) => {
                let kind = match e.status() {
                    None => Kind::Transient,
                    Some(_) if !e.is_permanent() => Kind::Transient,
                    Some(code) => match (super::code_kind(code), step) {
                        (Kind::Refused, _) => Kind::Refused,
                        (_, Step::Mail) if u16::from(code) == 552 => Kind::Permanent,
                        (_, Step::Mail | Step::Auth | Step::Greeting | Step::Ehlo) => Kind::Refused,
                        (_, Step::StartTls) => Kind::Refused,
                        _ => Kind::Permanent,
                    },
                };
                SendError::new(kind, format!("relay {relay}: {}: {e}", step.name()))
            }
            Failure::Login(e) => {
                let kind = if e.is_transient() { Kind::Transient } else { Kind::Refused };
                SendError::new(kind, format!("relay {relay}: AUTH: {e}"))
            }
            Failure::Link(why) => SendError::transient(format!("relay {relay}: {why}")),
            Failure::Unanswered { why, left } => SendError::new(
                Kind::Unanswered { retry_after: left },
                format!("relay {relay}: {why}; the relay may have taken the reply, so it is not sent again before the end-of-data limit has passed"),
            ),
            Failure::Unsendable(why) => SendError::permanent(format!("relay {relay}: {why}")),
        }
    }
}

/// Runs `fut` under `limit`, naming `step` in the failure.
pub(super) async fn limit<T, E: Into<Fault>>(
    limit: Duration,
    step: Step,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match e.into() {
            Fault::Io(e) => Failure::Link(format!("{}: {e}", step.name())),
            Fault::Smtp(e) if e.status().is_none() && !e.is_client() => {
                // A dropped connection or a garbled answer: lettre's network and response
                // errors carry no code.
                Failure::Link(format!("{}: {e}", step.name()))
            }
            Fault::Smtp(e) => Failure::Smtp(step, e),
        }),
        Err(_) => Err(Failure::Link(format!("{}: no answer within {limit:?}", step.name()))),
    }
}

/// The two error types the steps return.
pub(super) enum Fault {
    Io(io::Error),
    Smtp(SmtpError),
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Fault {
        Fault::Io(e)
    }
}

impl From<SmtpError> for Fault {
    fn from(e: SmtpError) -> Fault {
        Fault::Smtp(e)
    }
}

/// How the relay's connection is protected.
pub(super) enum Security {
    None,
    /// lettre upgrades our socket after STARTTLS (NODELAY stays set on it).
    StartTls(TlsParameters),
    /// TLS from the first byte, done here with the shared rustls client.
    Implicit(TlsConnector, ServerName<'static>),
}

/// Where the relay is and how to greet it.
pub(super) struct Link {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) security: Security,
    /// Connecting, TLS, and each command outside a mail transaction.
    pub(super) timeout: Duration,
    /// Each step of a mail transaction.
    pub(super) steps: SmtpSteps,
    /// The configured EHLO name; `None`: see [`hello_name`].
    pub(super) hello: Option<ClientId>,
}

/// The name to give in EHLO on a connection from `local`: this host's name when it is fully
/// qualified, else the address literal of our end of the connection (RFC 5321 §4.1.4: "an
/// address literal SHOULD be substituted" when there is no obvious name). A bare `vm` is what
/// some relays refuse.
pub(super) fn hello_name(host_name: Option<&str>, local: Option<SocketAddr>) -> ClientId {
    match (host_name.map(str::trim), local) {
        (Some(h), _) if h.contains('.') && !h.ends_with('.') => ClientId::Domain(h.to_string()),
        (_, Some(SocketAddr::V4(a))) => ClientId::Ipv4(*a.ip()),
        (_, Some(SocketAddr::V6(a))) => match a.ip().to_ipv4_mapped() {
            Some(v4) => ClientId::Ipv4(v4),
            None => ClientId::Ipv6(*a.ip()),
        },
        (Some(h), None) if !h.is_empty() => ClientId::Domain(h.to_string()),
        _ => ClientId::Ipv4(std::net::Ipv4Addr::LOCALHOST),
    }
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string())
}

impl Link {
    /// A greeted connection (EHLO done, TLS in place), not yet logged in.
    pub(super) async fn connect(&self) -> Result<Conn, Failure> {
        let t = self.timeout;
        let tcp =
            limit(t, Step::Connect, TcpStream::connect((self.host.as_str(), self.port))).await?;
        // The point of opening the socket ourselves: see the module comment.
        let _ = tcp.set_nodelay(true);
        let hello = match &self.hello {
            Some(name) => name.clone(),
            None => hello_name(host_name().as_deref(), tcp.local_addr().ok()),
        };
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(connector, name) => {
                let tls = limit(t, Step::Tls, connector.connect(name.clone(), tcp)).await?;
                Box::new(TlsTcp(Box::new(tls)))
            }
            Security::None | Security::StartTls(_) => Box::new(tcp),
        };
        // lettre reads the 220 greeting and says EHLO in one go.
        let greeting = AsyncSmtpConnection::connect_with_transport(stream, &hello);
        let mut conn = limit(self.steps.greeting + t, Step::Greeting, greeting).await?;
        if let Security::StartTls(params) = &self.security {
            limit(t, Step::StartTls, conn.starttls(params.clone(), &hello)).await?;
        }
        // lettre keeps only the extensions it uses itself, so ask again for the rest. A relay
        // that refuses a second EHLO is simply sent to one command at a time.
        let offers = match limit(t, Step::Ehlo, conn.command(Ehlo::new(hello.clone()))).await {
            Ok(answer) => Offers::from_ehlo(answer.message()),
            Err(Failure::Smtp(..)) => Offers::default(),
            Err(other) => return Err(other),
        };
        Ok(Conn { smtp: conn, offers })
    }

    /// `connect`, then AUTH with `login` when there is one.
    pub(super) async fn open(
        &self,
        login: Option<(&[Mechanism], &Credentials)>,
    ) -> Result<Conn, Failure> {
        let mut conn = self.connect().await?;
        if let Some((mechanisms, credentials)) = login {
            match limit(self.timeout, Step::Auth, conn.smtp.auth(mechanisms, credentials)).await {
                Ok(_) => {}
                Err(Failure::Smtp(_, e)) => return Err(Failure::Login(e)),
                Err(other) => return Err(other),
            }
        }
        Ok(conn)
    }
}

/// The extensions lettre does not track that shape how a reply is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Offers {
    pub(super) pipelining: bool,
    pub(super) chunking: bool,
    /// SIZE (RFC 1870), with the relay's limit when it gave one (0: none).
    pub(super) size: Option<u64>,
    pub(super) binary: bool,
}

impl Offers {
    /// From the lines of an EHLO answer; the first line names the server, each other line
    /// starts with a keyword.
    pub(super) fn from_ehlo<'a>(lines: impl Iterator<Item = &'a str>) -> Offers {
        let mut offers = Offers::default();
        for line in lines.skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default();
            if keyword.eq_ignore_ascii_case("PIPELINING") {
                offers.pipelining = true;
            } else if keyword.eq_ignore_ascii_case("CHUNKING") {
                offers.chunking = true;
            } else if keyword.eq_ignore_ascii_case("BINARYMIME") {
                offers.binary = true;
            } else if keyword.eq_ignore_ascii_case("SIZE") {
                offers.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
            }
        }
        offers
    }
}

/// A connection to the relay and what the relay offers on it.
pub(super) struct Conn {
    pub(super) smtp: AsyncSmtpConnection,
    pub(super) offers: Offers,
}

impl Conn {
    pub(super) fn has_broken(&self) -> bool {
        self.smtp.has_broken()
    }

    /// NOOP: whether the relay still answers on this connection.
    pub(super) async fn test_connected(&mut self) -> bool {
        self.smtp.test_connected().await
    }
}

/// Ends a connection politely, in the background so no reply waits for it. Needs to run
/// inside the transport's runtime.
pub(super) fn quit(conn: Conn) {
    tokio::spawn(quit_now(conn));
}

/// Says QUIT and waits (briefly) for the answer.
pub(super) async fn quit_now(mut conn: Conn) {
    let _ = tokio::time::timeout(QUIT_LIMIT, conn.smtp.quit()).await;
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Idle connections, logged in and ready for the next MAIL FROM.
pub(super) struct Pool {
    size: usize,
    check_after: Duration,
    max_idle: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    pub(super) fn new(size: u32) -> Pool {
        Pool::with_ages(size, CHECK_AFTER, MAX_IDLE)
    }

    /// A pool checking and closing idle connections at other ages than the daemon's.
    pub(super) fn with_ages(size: u32, check_after: Duration, max_idle: Duration) -> Pool {
        Pool { size: size as usize, check_after, max_idle, idle: Mutex::new(Vec::new()) }
    }

    /// The most recently used idle connection still believed open, if any. Connections idle
    /// for more than `max_idle` are closed on the way.
    pub(super) async fn take(&self, timeout: Duration) -> Option<Conn> {
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                for stale in take_stale(&mut idle, self.max_idle) {
                    quit(stale);
                }
                idle.pop()?
            };
            let Idle { mut conn, since } = idle;
            if conn.has_broken() {
                continue;
            }
            if since.elapsed() > self.check_after {
                let alive = tokio::time::timeout(timeout, conn.test_connected()).await;
                if !matches!(alive, Ok(true)) {
                    continue;
                }
            }
            return Some(conn);
        }
    }

    /// Keeps `conn` for the next reply, or closes it when the pool is full (or has size 0).
    pub(super) fn put_back(&self, conn: Conn) {
        if conn.has_broken() {
            return;
        }
        let extra = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.size {
                idle.push(Idle { conn, since: Instant::now() });
                None
            } else {
                Some(conn)
            }
        };
        if let Some(conn) = extra {
            quit(conn);
        }
    }

    /// Every idle connection, for closing when the transport goes.
    pub(super) fn drain(&self) -> Vec<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.drain(..).map(|i| i.conn).collect()
    }
}

/// Removes the connections idle for longer than `max_idle`; the rest keep their order.
fn take_stale(idle: &mut Vec<Idle>, max_idle: Duration) -> Vec<Conn> {
    let (stale, fresh): (Vec<Idle>, Vec<Idle>) =
        idle.drain(..).partition(|i| i.since.elapsed() > max_idle);
    *idle = fresh;
    stale.into_iter().map(|i| i.conn).collect()
}

/// Implicit TLS over our TcpStream, in the shape lettre accepts as a custom stream.
#[derive(Debug)]
struct TlsTcp(Box<TlsStream<TcpStream>>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_gives_a_fully_qualified_name_or_the_address_literal_of_our_end() {
        let v4: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let v6: SocketAddr = "[2001:db8::7]:40000".parse().expect("addr");
        let shown = |h: Option<&str>, a: Option<SocketAddr>| hello_name(h, a).to_string();
        assert_eq!(shown(Some("intake.example.nhs.uk"), Some(v4)), "intake.example.nhs.uk");
        assert_eq!(shown(Some("vm"), Some(v4)), "[192.0.2.7]");
        assert_eq!(shown(Some("vm"), Some(v6)), "[IPv6:2001:db8::7]");
        assert_eq!(shown(None, Some(v4)), "[192.0.2.7]");
    }

    #[test]
    fn size_and_the_one_round_trip_extensions_are_read_from_ehlo() {
        let lines = ["relay.test", "PIPELINING", "SIZE 36700160", "CHUNKING", "BINARYMIME"];
        let offers = Offers::from_ehlo(lines.into_iter());
        assert!(offers.pipelining && offers.chunking && offers.binary);
        assert_eq!(offers.size, Some(36_700_160));
        assert_eq!(Offers::from_ehlo(["r", "SIZE"].into_iter()).size, Some(0), "no limit given");
        assert_eq!(Offers::from_ehlo(["r", "8BITMIME"].into_iter()).size, None);
    }
}
