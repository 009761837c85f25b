//! One message on a connection, each step under its own limit (RFC 5321 §4.5.3.2: MAIL and
//! RCPT 5 minutes, DATA 2, each block of data 3, the end of the data 10), so a slow relay is
//! waited for and never handed the same reply twice for answering late.
//!
//! A reply goes out in one round trip where the relay allows it: MAIL, RCPT and the message
//! itself in one write (PIPELINING, RFC 2920, with CHUNKING's `BDAT … LAST`, RFC 3030), then the
//! answers read in order. A larger message (a forward with its original attached) follows DATA
//! in blocks, so the time to write it and the time the relay takes to answer its end are
//! limited apart. MAIL FROM carries `SIZE=` where the relay offers SIZE (RFC 1870), and a
//! message larger than the relay takes is not sent at all.
//!
//! Once the whole message is out, a missing answer is [`Failure::Unanswered`]: the relay may
//! have taken it, so the reply waits out the rest of the end-of-data limit before it is tried
//! again. A shutdown ends a send before that point at once, and after it waits
//! [`STOP_GRACE`] more for the answer.
//!
//! Owns the transaction's commands and their timing; the connection is `conn`'s.

use super::conn::{limit, Conn, Failure, Step};
use crate::config::SmtpSteps;
use crate::shutdown::Shutdown;
use lettre::address::Envelope;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::Error as SmtpError;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Messages up to this size go in the one write with MAIL and RCPT (`BDAT <size> LAST`).
const INLINE: usize = 1 << 20;
/// Larger ones are written in blocks of this size, each under the block limit.
const BLOCK: usize = 64 * 1024;
/// After shutdown is requested, the answer to an end of data already sent is waited for this
/// much longer (well within the unit's two minutes to stop).
pub(super) const STOP_GRACE: Duration = Duration::from_secs(15);

impl Conn {
    /// Sends `raw` (the whole message, ending in CRLF) to the envelope's recipients and returns
    /// the relay's final answer. Any `Err` leaves answers unread: drop the connection.
    pub(super) async fn send(
        &mut self,
        envelope: &Envelope,
        raw: &[u8],
        steps: &SmtpSteps,
        stop: Option<&Shutdown>,
    ) -> Result<Response, Failure> {
        let offers = self.offers;
        if let Some(max) = offers.size.filter(|max| *max > 0 && raw.len() as u64 > *max) {
            return Err(Failure::Unsendable(format!(
                "the reply is {} bytes and the relay takes at most {max} (SIZE)",
                raw.len()
            )));
        }
        let info = self.smtp.server_info();
        let mut params = Vec::new();
        if !envelope_is_ascii(envelope) {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(Failure::Unsendable(
                    "an address needs SMTPUTF8, which the relay does not offer".into(),
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !raw.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                return Err(Failure::Unsendable(
                    "the reply is 8-bit text and the relay does not offer 8BITMIME".into(),
                ));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if offers.size.is_some() {
            params.push(MailParameter::Size(raw.len()));
        }
        let mail = Mail::new(envelope.from().cloned(), params);
        let inline = (offers.pipelining && offers.chunking && raw.len() <= INLINE)
            .then(|| std::str::from_utf8(raw).ok())
            .flatten();
        if let Some(text) = inline {
            return self.send_inline(mail, envelope, text, steps, stop).await;
        }
        if offers.pipelining {
            let mut commands = mail.to_string();
            for to in envelope.to() {
                commands.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
            }
            commands.push_str("DATA\r\n");
            // One write; MAIL's answer comes back from `command`, the others follow.
            stoppable(stop, limit(steps.mail, Step::Mail, self.smtp.command(commands))).await?;
            for _ in envelope.to() {
                stoppable(stop, limit(steps.rcpt, Step::Rcpt, self.smtp.read_response())).await?;
            }
            stoppable(stop, limit(steps.data, Step::Data, self.smtp.read_response())).await?;
        } else {
            stoppable(stop, limit(steps.mail, Step::Mail, self.smtp.command(mail))).await?;
            for to in envelope.to() {
                let rcpt = Rcpt::new(to.clone(), Vec::new());
                stoppable(stop, limit(steps.rcpt, Step::Rcpt, self.smtp.command(rcpt))).await?;
            }
            stoppable(stop, limit(steps.data, Step::Data, self.smtp.command(Data))).await?;
        }
        self.message(raw, steps, stop).await
    }

    /// MAIL, RCPT and `BDAT <size> LAST` with the message, in one write.
    async fn send_inline(
        &mut self,
        mail: Mail,
        envelope: &Envelope,
        text: &str,
        steps: &SmtpSteps,
        stop: Option<&Shutdown>,
    ) -> Result<Response, Failure> {
        let mut commands = mail.to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
        }
        commands.push_str(&format!("BDAT {} LAST\r\n", text.len()));
        commands.push_str(text);
        // From the write on, the whole message may be with the relay: a silence or a dropped
        // connection is an unanswered end of data. A refusal is a refusal.
        let sent = Instant::now();
        let end = Progress::default();
        end.finish();
        let unanswered = |f: Failure| match f {
            Failure::Link(why) => {
                Failure::Unanswered { why, left: steps.data_end.saturating_sub(sent.elapsed()) }
            }
            other => other,
        };
        let written = limit(steps.block + steps.mail, Step::Mail, self.smtp.command(commands));
        written.await.map_err(unanswered)?;
        for _ in envelope.to() {
            let rcpt = limit(steps.rcpt, Step::Rcpt, self.smtp.read_response());
            rcpt.await.map_err(unanswered)?;
        }
        let answer = self.smtp.read_response();
        supervise(answer, &end, sent, steps, stop).await
    }

    /// The message after DATA's 354: written in blocks (lettre dot-stuffs them and adds the
    /// final `.`), each block under the block limit, then the answer under the end-of-data
    /// limit, counted from when the last block was written.
    async fn message(
        &mut self,
        raw: &[u8],
        steps: &SmtpSteps,
        stop: Option<&Shutdown>,
    ) -> Result<Response, Failure> {
        // lettre appends CRLF "." CRLF to what it is given, so the final CRLF is left to it.
        let for_data = raw.strip_suffix(b"\r\n").unwrap_or(raw);
        let progress = Progress::default();
        let started = Instant::now();
        // `message_iter` asks for the next block only once the one before is written.
        let blocks =
            for_data.chunks(BLOCK).inspect(|_| progress.tick()).chain(std::iter::once_with(|| {
                progress.finish();
                &b""[..]
            }));
        let answer = self.smtp.message_iter(blocks);
        supervise(answer, &progress, started, steps, stop).await
    }
}

/// Drives `answer` (writing what is left of the message, then reading the relay's answer to
/// its end) under the block limit while `progress` shows data still going out, then the
/// end-of-data limit from when it finished; and honours `stop`.
async fn supervise(
    answer: impl Future<Output = Result<Response, SmtpError>>,
    progress: &Progress,
    started: Instant,
    steps: &SmtpSteps,
    stop: Option<&Shutdown>,
) -> Result<Response, Failure> {
    tokio::pin!(answer);
    let stopping = stopped(stop);
    tokio::pin!(stopping);
    let mut stop_at: Option<Instant> = None;
    loop {
        let finished = progress.finished(started);
        let deadline = match finished {
            Some(at) => at + steps.data_end,
            None => progress.last(started) + steps.block,
        };
        let deadline = stop_at.map_or(deadline, |s| deadline.min(s));
        let woke = tokio::select! {
            r = &mut answer => Some(r),
            () = tokio::time::sleep_until(deadline.into()) => None,
            () = &mut stopping, if stop_at.is_none() => {
                if finished.is_none() {
                    return Err(Failure::Link("stopped before the message was sent whole".into()));
                }
                stop_at = Some(Instant::now() + STOP_GRACE);
                continue;
            }
        };
        let finished = progress.finished(started);
        let left = |at: Instant| steps.data_end.saturating_sub(at.elapsed());
        match (woke, finished) {
            (Some(Ok(response)), _) => return Ok(response),
            // A refusal with a code is the relay's verdict on the message.
            (Some(Err(e)), Some(_)) if e.status().is_some() => {
                return Err(Failure::Smtp(Step::DataEnd, e))
            }
            (Some(Err(e)), Some(at)) => {
                return Err(Failure::Unanswered {
                    why: format!("end of data: {e}"),
                    left: left(at),
                })
            }
            (Some(Err(e)), None) => return Err(Failure::Link(format!("message data: {e}"))),
            (None, Some(at)) if Instant::now() >= deadline => {
                let why = if stop_at.is_some() {
                    "the daemon is stopping and the end of data was not answered".to_string()
                } else {
                    format!("end of data: no answer within {:?}", steps.data_end)
                };
                return Err(Failure::Unanswered { why, left: left(at) });
            }
            (None, None) if Instant::now() >= progress.last(started) + steps.block => {
                return Err(Failure::Link(format!(
                    "message data: a block not written within {:?}",
                    steps.block
                )));
            }
            // Data went out meanwhile: the deadline moved on.
            (None, _) => {}
        }
    }
}

/// Resolves when shutdown is requested; never without one.
async fn stopped(stop: Option<&Shutdown>) {
    match stop {
        Some(stop) => stop.wait().await,
        None => std::future::pending().await,
    }
}

/// `step` unless shutdown is requested first (then nothing of the message was sent whole).
async fn stoppable<T>(
    stop: Option<&Shutdown>,
    step: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::select! {
        r = step => r,
        () = stopped(stop) => Err(Failure::Link("stopped before the message was sent".into())),
    }
}

/// How far the writing of a message got: when the last block was handed over and when the
/// whole message was out, as nanoseconds after the send began (0: not yet). Atomics, because
/// the block iterator and the supervising loop share it by reference.
#[derive(Debug, Default)]
struct Progress {
    last: AtomicU64,
    finished: AtomicU64,
    base: std::sync::OnceLock<Instant>,
}

impl Progress {
    fn now(&self) -> u64 {
        let base = *self.base.get_or_init(Instant::now);
        u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    fn tick(&self) {
        self.last.store(self.now(), Ordering::SeqCst);
    }

    fn finish(&self) {
        let now = self.now();
        self.last.store(now, Ordering::SeqCst);
        self.finished.store(now, Ordering::SeqCst);
    }

    fn at(&self, nanos: u64, started: Instant) -> Instant {
        match self.base.get() {
            Some(base) => *base + Duration::from_nanos(nanos),
            None => started,
        }
    }

    fn last(&self, started: Instant) -> Instant {
        self.at(self.last.load(Ordering::SeqCst), started)
    }

    fn finished(&self, started: Instant) -> Option<Instant> {
        match self.finished.load(Ordering::SeqCst) {
            0 => None,
            n => Some(self.at(n, started)),
        }
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
