//! Delivery beside intake for the long-running daemon: one thread sends what is due whenever a
//! batch is committed, a retry comes due or shutdown nears, so a relay that takes its ten
//! minutes to answer an end of data (RFC 5321 §4.5.3.2.6) never holds up filing.
//!
//! When the relay refuses *us* — our sender at MAIL FROM, our login — every reply would fail
//! alike: delivery pauses, the replies stay queued, the Data Collection Team is told and the
//! health says so; one reply is tried again after 30 s, then at doubling intervals up to 15
//! minutes, and when one goes through delivery resumes (the team is told that too).
//!
//! Owns the pacing and the pause; what a send means is the sender's (`outbound::sender`).

use super::health::Health;
use super::{workers, Clock, DELIVERY_BATCH};
use crate::config::{Config, Transport as Configured};
use crate::outbound::{deliver_due_gated, DeliveryStats, Gate, OutboxItem, Transport};
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::Notify;

/// With nothing announced, the outbox is looked at this often for retries that came due (a
/// local query, not a word to the relay).
const RECHECK: Duration = Duration::from_secs(5);
/// While paused, the first try again waits this long, and the waits double up to the last.
const PAUSE_FIRST: Duration = Duration::from_secs(30);
const PAUSE_MAX: Duration = Duration::from_secs(15 * 60);

/// Since when and why delivery is paused.
struct Paused {
    since: DateTime<Utc>,
    reason: String,
    tries: u32,
}

/// What the loop needs besides the store and the transport.
pub(super) struct Ctx<'a> {
    pub clock: Clock,
    pub gate: &'a Gate,
    pub kick: &'a Notify,
    pub shutdown: &'a Shutdown,
    pub health: &'a Health,
    pub config: &'a Config,
}

/// Delivers until shutdown. Store trouble is logged and met again at the next wake.
pub(super) fn run<S: Store, T: Transport + ?Sized>(store: &S, transport: &T, ctx: &Ctx<'_>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("no delivery thread runtime, replies go out between rounds: {e}");
            return;
        }
    };
    transport.watch_shutdown(ctx.shutdown);
    let mut paused: Option<Paused> = None;
    while !ctx.shutdown.requested() {
        let workers = if paused.is_some() { 1 } else { workers(ctx.config) };
        match deliver_all(store, transport, ctx, workers) {
            Ok(stats) => paused = pace(paused, &stats, store, transport, ctx),
            Err(e) => {
                tracing::warn!("delivery: the store is unavailable, trying again shortly: {e}")
            }
        }
        if let Err(e) = store.settle() {
            tracing::warn!("sent replies recorded, not yet folded into the outbox: {e}");
        }
        let wait = match &paused {
            Some(p) => PAUSE_FIRST.saturating_mul(1 << p.tries.min(5)).min(PAUSE_MAX),
            None => RECHECK,
        };
        rt.block_on(async {
            tokio::select! {
                // While paused, new filings wait for the next try like the rest.
                () = ctx.kick.notified(), if paused.is_none() => {}
                () = tokio::time::sleep(wait) => {}
                () = ctx.shutdown.wait() => {}
            }
        });
    }
}

/// Everything due, batch after batch, until a batch comes back short, the relay looks down or
/// refuses us, or shutdown.
fn deliver_all<S: Store, T: Transport + ?Sized>(
    store: &S,
    transport: &T,
    ctx: &Ctx<'_>,
    workers: usize,
) -> Result<DeliveryStats, StoreError> {
    let mut total = DeliveryStats::default();
    loop {
        let limit = if workers == 1 { 1 } else { DELIVERY_BATCH };
        let s = deliver_due_gated(store, transport, ctx.clock.now(), limit, workers, ctx.gate)?;
        let handled = s.sent + s.retried + s.failed;
        let stop = s.refused.is_some()
            || s.paused > 0
            || handled < limit
            || s.deferred > 0
            || s.sent == 0
            || workers == 1
            || ctx.shutdown.requested();
        total.add(s);
        if stop {
            return Ok(total);
        }
    }
}

/// The pause after a round: begun (team and health told), still on, or over.
fn pace<S: Store, T: Transport + ?Sized>(
    paused: Option<Paused>,
    stats: &DeliveryStats,
    _store: &S,
    transport: &T,
    ctx: &Ctx<'_>,
) -> Option<Paused> {
    match (paused, &stats.refused) {
        (None, Some(reason)) => {
            let since = ctx.clock.now();
            tracing::error!(reason, "delivery paused: the relay refuses our sender or login; every reply stays queued and one is tried again in {PAUSE_FIRST:?}");
            ctx.health.delivery_paused(since, reason);
            tell_team(transport, ctx, &paused_notice(ctx.config, reason, since));
            Some(Paused { since, reason: reason.clone(), tries: 0 })
        }
        (Some(mut p), Some(reason)) => {
            p.tries += 1;
            p.reason = reason.clone();
            tracing::warn!(reason, tries = p.tries, "delivery still paused");
            Some(p)
        }
        (Some(p), None) if stats.sent > 0 => {
            let now = ctx.clock.now();
            tracing::info!(since = %p.since, "delivery resumed: the relay takes our replies again");
            ctx.health.delivery_running();
            tell_team(transport, ctx, &resumed_notice(ctx.config, &p.reason, p.since, now));
            None
        }
        (other, _) => other,
    }
}

/// Sends a notice to the Data Collection Team straight through the transport (not the outbox:
/// it is about the outbox). It goes from the login's own address where there is one, which a
/// relay refusing to let us send as the returns address still lets through; when it cannot go
/// either, the log and health carry the news.
fn tell_team<T: Transport + ?Sized>(transport: &T, ctx: &Ctx<'_>, notice: &Notice) {
    let item = match notice.item(ctx.config, ctx.clock.now()) {
        Ok(item) => item,
        Err(e) => {
            tracing::warn!("cannot write the notice to the team: {e}");
            return;
        }
    };
    match transport.send(&item) {
        Ok(()) => tracing::info!(
            to = ctx.config.routing.data_collection_team,
            subject = notice.subject,
            "team told"
        ),
        Err(e) => {
            tracing::warn!(error = %e.message, "could not tell the team by mail; the log and health say it")
        }
    }
}

/// A message to the team about the daemon itself.
pub(super) struct Notice {
    pub subject: String,
    pub body: String,
}

/// Why delivery stopped, what it means and what to do.
pub(super) fn paused_notice(config: &Config, reason: &str, since: DateTime<Utc>) -> Notice {
    let from = &config.outbound.from;
    Notice {
        subject: "iapt-intake: replies paused, the relay refuses our sender or login".into(),
        body: format!(
            "Since {since} the mail relay has refused to take replies from {from}:\n\n  {reason}\n\n\
             This refusal is the same for every reply, so no reply is marked failed: they are all\n\
             kept in the outbox, and one is tried again after 30 seconds, then at doubling intervals\n\
             up to 15 minutes. When the relay takes one, delivery resumes and you will be told.\n\n\
             What to check: that the mailbox account may send as {from} (Microsoft 365: the Send As\n\
             permission, or SendAs for the application's service principal), that its password or\n\
             token is valid, and that SMTP AUTH is allowed for it. Messages are still filed as they\n\
             arrive. Replies that did fail for good can be put back with `iapt-intake requeue`.\n"
        ),
    }
}

pub(super) fn resumed_notice(
    config: &Config,
    reason: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Notice {
    let minutes = (now - since).num_minutes();
    Notice {
        subject: "iapt-intake: replies resumed".into(),
        body: format!(
            "The mail relay takes replies from {} again; delivery resumed at {now} after {minutes}\n\
             minute(s) paused. The replies kept meanwhile are going out now.\n\nThe refusal was:\n\n  {reason}\n",
            config.outbound.from
        ),
    }
}

impl Notice {
    /// The notice as an outbox item (never stored): from the SMTP login's address when it has
    /// one, else ours; to the team; marked automatic (RFC 3834).
    fn item(&self, config: &Config, now: DateTime<Utc>) -> Result<OutboxItem, String> {
        let login = match &config.outbound.transport {
            Configured::Smtp(smtp) => smtp.username.clone().filter(|u| u.contains('@')),
            _ => None,
        };
        let from = login.unwrap_or_else(|| config.outbound.from.clone());
        let to = config.routing.data_collection_team.clone();
        let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
        let message_id =
            format!("notice.{}.{}@{domain}", now.timestamp_micros(), std::process::id());
        let mailbox =
            |a: &str| a.parse::<lettre::message::Mailbox>().map_err(|e| format!("{a}: {e}"));
        let message = lettre::Message::builder()
            .from(mailbox(&from)?)
            .to(mailbox(&to)?)
            .subject(self.subject.clone())
            .date(now.into())
            .message_id(Some(format!("<{message_id}>")))
            .raw_header(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .body(self.body.clone())
            .map_err(|e| e.to_string())?;
        Ok(OutboxItem {
            id: 0,
            message_id,
            envelope_from: from,
            recipients: vec![to],
            raw: message.formatted(),
            attempts: 0,
        })
    }
}
