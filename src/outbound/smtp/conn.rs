//! Connections to the relay on sockets we open ourselves, so TCP_NODELAY is set: lettre writes
//! a message's body and its closing `.` line as two writes, and without NODELAY the second one
//! waits for the relay's delayed ACK of the first (about 40 ms per reply).
//!
//! A reply goes out in one round trip where the relay allows it: MAIL, RCPT and the message
//! itself in one write (PIPELINING, RFC 2920, with CHUNKING's `BDAT … LAST`, RFC 3030), then the
//! answers read in order. lettre sends each command and waits for its answer, four round trips
//! per reply, each waking the relay and us.
//!
//! Owns the socket, TLS (implicit, or STARTTLS through lettre), the greeting, what the relay
//! offers, the login, sending one message and the pool of idle connections. Must not decide retries (`classify` in the parent does) or fetch
//! tokens (`xoauth2` does).

use super::SendError;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
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

/// Why a step with the relay failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The relay answered with an error, or lettre refused on our side.
    Smtp(&'static str, SmtpError),
    /// The relay refused the login: the only failure a fresh token may cure.
    Login(SmtpError),
    /// No connection, no TLS, or no answer in time: always worth trying again.
    Link(String),
}

impl Failure {
    pub(super) fn into_send_error(self, relay: &str) -> SendError {
        match self {
            Failure::Smtp(what, e) => {
                let mut err = super::classify(relay, &e);
                err.message = format!("relay {relay}: {what}: {e}");
                err
            }
            Failure::Login(e) => super::classify(relay, &e),
            Failure::Link(why) => SendError::transient(format!("relay {relay}: {why}")),
        }
    }
}

/// Runs `fut` under `limit`, naming `what` in the failure.
pub(super) async fn limit<T, E: Into<Fault>>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match e.into() {
            Fault::Io(e) => Failure::Link(format!("{what}: {e}")),
            Fault::Smtp(e) => Failure::Smtp(what, e),
        }),
        Err(_) => Err(Failure::Link(format!("{what}: no answer within {limit:?}"))),
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
    pub(super) timeout: Duration,
    pub(super) hello: ClientId,
}

impl Link {
    /// A greeted connection (EHLO done, TLS in place), not yet logged in.
    pub(super) async fn connect(&self) -> Result<Conn, Failure> {
        let t = self.timeout;
        let tcp = limit(t, "connect", TcpStream::connect((self.host.as_str(), self.port))).await?;
        // The point of opening the socket ourselves: see the module comment.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(connector, name) => {
                let tls = limit(t, "TLS handshake", connector.connect(name.clone(), tcp)).await?;
                Box::new(TlsTcp(Box::new(tls)))
            }
            Security::None | Security::StartTls(_) => Box::new(tcp),
        };
        let greeting = AsyncSmtpConnection::connect_with_transport(stream, &self.hello);
        let mut conn = limit(t, "greeting", greeting).await?;
        if let Security::StartTls(params) = &self.security {
            limit(t, "STARTTLS", conn.starttls(params.clone(), &self.hello)).await?;
        }
        // lettre keeps only the extensions it uses itself, so ask again for the rest. A relay
        // that refuses a second EHLO is simply sent to one command at a time.
        let offers = match limit(t, "EHLO", conn.command(Ehlo::new(self.hello.clone()))).await {
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
            match limit(self.timeout, "AUTH", conn.smtp.auth(mechanisms, credentials)).await {
                Ok(_) => {}
                Err(Failure::Smtp(_, e)) => return Err(Failure::Login(e)),
                Err(other) => return Err(other),
            }
        }
        Ok(conn)
    }
}

/// The extensions lettre does not track that make a reply one round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Offers {
    pub(super) pipelining: bool,
    pub(super) chunking: bool,
}

impl Offers {
    /// From the lines of an EHLO answer; the first line names the server, each other line
    /// starts with a keyword.
    pub(super) fn from_ehlo<'a>(lines: impl Iterator<Item = &'a str>) -> Offers {
        let mut offers = Offers::default();
        for line in lines.skip(1) {
            let keyword = line.split_whitespace().next().unwrap_or_default();
            if keyword.eq_ignore_ascii_case("PIPELINING") {
                offers.pipelining = true;
            } else if keyword.eq_ignore_ascii_case("CHUNKING") {
                offers.chunking = true;
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
    /// Sends `raw` (the whole message, ending in CRLF) to the envelope's recipients and returns
    /// the relay's final answer. Any `Err` leaves answers unread: drop the connection.
    ///
    /// With PIPELINING and CHUNKING the commands and the message go in one write, as
    /// `BDAT <size> LAST` followed by exactly the stored bytes (no dot-stuffing needed). With
    /// PIPELINING alone the commands go together and the message follows DATA's 354. Otherwise,
    /// and for what only lettre checks (SMTPUTF8 addresses, 8-bit text to a relay without
    /// 8BITMIME), lettre sends it one command at a time.
    pub(super) async fn send(
        &mut self,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<Response, SmtpError> {
        let info = self.smtp.server_info();
        let eight_bit = !raw.is_ascii();
        let plain = !self.offers.pipelining
            || !envelope_is_ascii(envelope)
            || (eight_bit && !info.supports_feature(Extension::EightBitMime));
        // lettre appends CRLF "." CRLF to what it is given, so the final CRLF is left to it.
        let for_data = raw.strip_suffix(b"\r\n").unwrap_or(raw);
        if plain {
            return self.smtp.send(envelope, for_data).await;
        }
        let body = if eight_bit {
            vec![MailParameter::Body(MailBodyParameter::EightBitMime)]
        } else {
            Vec::new()
        };
        let mut commands = Mail::new(envelope.from().cloned(), body).to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
        }
        let text = std::str::from_utf8(raw).ok().filter(|_| self.offers.chunking);
        match text {
            Some(text) => {
                commands.push_str(&format!("BDAT {} LAST\r\n", raw.len()));
                commands.push_str(text);
            }
            None => commands.push_str("DATA\r\n"),
        }
        // One write; the first answer (MAIL's) comes back from `command`, the others follow.
        self.smtp.command(commands).await?;
        for _ in envelope.to() {
            self.smtp.read_response().await?;
        }
        let answer = self.smtp.read_response().await?; // BDAT's 250, or DATA's 354
        match text {
            Some(_) => Ok(answer),
            None => self.smtp.message(for_data).await,
        }
    }

    pub(super) fn has_broken(&self) -> bool {
        self.smtp.has_broken()
    }

    /// NOOP: whether the relay still answers on this connection.
    pub(super) async fn test_connected(&mut self) -> bool {
        self.smtp.test_connected().await
    }
}

/// No address of the envelope needs SMTPUTF8.
fn envelope_is_ascii(envelope: &Envelope) -> bool {
    envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii())
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
