//! Opening an authenticated IMAP session: TCP under a time limit, implicit TLS or STARTTLS
//! (rustls with the system roots plus an optional private CA) or plain, then LOGIN or
//! AUTHENTICATE XOAUTH2.
//!
//! Owns the socket and the handshake only; must not select folders or read messages.

use super::{Fault, Session};
use crate::config::{self, Auth, Credential, Tls};
use crate::oauth2::TokenSource;
use async_imap::Client;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{client::TlsStream, TlsConnector};

/// The connection under the IMAP client: TLS or, for `tls = "none"`, bare TCP.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Runs `fut` under the command time limit, naming `what` when it runs out.
pub async fn limit<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Fault> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Fault::Connection(format!("{what}: {e}"))),
        Err(_) => Err(Fault::Connection(format!("{what}: no answer within {timeout:?}"))),
    }
}

/// Connects, secures and logs in; the session is authenticated, nothing selected.
pub async fn open(cfg: &config::Imap, tokens: Option<&TokenSource>) -> Result<Session, Fault> {
    let t = cfg.timeout;
    let addr = (cfg.host.as_str(), cfg.port);
    let tcp = limit(t, "connect", TcpStream::connect(addr)).await?;
    let _ = tcp.set_nodelay(true);
    let client = match cfg.tls {
        Tls::Implicit => {
            let tls =
                limit(t, "TLS handshake", tls_connector(cfg)?.connect(name(cfg)?, tcp)).await?;
            greeted(Client::new(Stream::Tls(Box::new(tls))), t).await?
        }
        Tls::None => greeted(Client::new(Stream::Plain(tcp)), t).await?,
        Tls::StartTls => {
            let mut plain = greeted(Client::new(Stream::Plain(tcp)), t).await?;
            limit(t, "STARTTLS", plain.run_command_and_check_ok("STARTTLS", None)).await?;
            let Stream::Plain(tcp) = plain.into_inner() else {
                return Err(Fault::Connection("STARTTLS on a TLS stream".into()));
            };
            let tls =
                limit(t, "TLS handshake", tls_connector(cfg)?.connect(name(cfg)?, tcp)).await?;
            Client::new(Stream::Tls(Box::new(tls)))
        }
    };
    login(client, cfg, tokens).await
}

/// Checks what can be checked without the server: the TLS server name and the CA file. A
/// mistake there is the configuration's, reported before anything starts.
pub fn check(cfg: &config::Imap) -> Result<(), Fault> {
    if cfg.tls != Tls::None {
        name(cfg)?;
        tls_connector(cfg)?;
    }
    Ok(())
}

/// Reads the server greeting, which must come before any command.
async fn greeted(mut client: Client<Stream>, t: Duration) -> Result<Client<Stream>, Fault> {
    match limit(t, "greeting", client.read_response()).await? {
        Some(_) => Ok(client),
        None => Err(Fault::Connection("the server closed the connection before greeting".into())),
    }
}

async fn login(
    client: Client<Stream>,
    cfg: &config::Imap,
    tokens: Option<&TokenSource>,
) -> Result<Session, Fault> {
    let t = cfg.timeout;
    match (&cfg.auth, &cfg.credential) {
        (Auth::Plain, Credential::Password(source)) => {
            let password = source.read().map_err(Fault::Login)?;
            match tokio::time::timeout(t, client.login(&cfg.username, password.expose())).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err((e, _))) => Err(refused(e, "LOGIN")),
                Err(_) => Err(Fault::Connection(format!("LOGIN: no answer within {t:?}"))),
            }
        }
        (Auth::XOAuth2, Credential::TokenCommand(_)) => {
            let tokens = tokens.ok_or_else(|| Fault::Login("no token source".into()))?;
            let token = tokens.token().map_err(|e| Fault::Login(e.to_string()))?;
            let auth = XOAuth2 { user: cfg.username.clone(), token: token.expose().to_string() };
            match tokio::time::timeout(t, client.authenticate("XOAUTH2", auth)).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err((e, _))) => Err(refused(e, "AUTHENTICATE XOAUTH2")),
                Err(_) => Err(Fault::Connection(format!("XOAUTH2: no answer within {t:?}"))),
            }
        }
        _ => Err(Fault::Setup(
            "auth and credential do not match (plain needs a password, xoauth2 a token command)"
                .into(),
        )),
    }
}

/// A NO or BAD to a login is a refusal (bad credentials); anything else is the connection.
fn refused(e: async_imap::error::Error, what: &str) -> Fault {
    use async_imap::error::Error;
    match e {
        Error::No(m) | Error::Bad(m) => Fault::Refused(format!("{what} refused: {m}")),
        other => Fault::Connection(format!("{what}: {other}")),
    }
}

/// The SASL XOAUTH2 initial response; an empty answer to the server's error challenge, as the
/// mechanism requires, so the server can finish with NO.
struct XOAuth2 {
    user: String,
    token: String,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;

    fn process(&mut self, challenge: &[u8]) -> String {
        if challenge.is_empty() && !self.token.is_empty() {
            let r = format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token);
            self.token.clear();
            r
        } else {
            String::new()
        }
    }
}

fn name(cfg: &config::Imap) -> Result<ServerName<'static>, Fault> {
    ServerName::try_from(cfg.host.clone()).map_err(|e| {
        Fault::Setup(format!("imap.host {:?} is not a TLS server name: {e}", cfg.host))
    })
}

/// rustls with the system's roots and, when given, the private CA in `ca_file`.
fn tls_connector(cfg: &config::Imap) -> Result<TlsConnector, Fault> {
    let ca_pem = match &cfg.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| Fault::Setup(format!("imap.ca_file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    crate::tls::connector(ca_pem.as_deref()).map_err(|e| match &cfg.ca_file {
        Some(path) => Fault::Setup(format!("imap.ca_file {}: {e}", path.display())),
        None => Fault::Setup(e.to_string()),
    })
}
