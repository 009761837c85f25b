//! `iapt-intake requeue`: puts replies that failed for good back in the outbox, due at once, so
//! the daemon sends them again — after a cause that looked permanent was mended (a mailbox
//! that was refused as a recipient and now exists, a relay misconfigured for a day) — and
//! releases replies kept at a limit of SPEC §4b once the team has judged them. Every requeued
//! reply gets an audit line. A running daemon picks them up within seconds.

use super::{common, Exit, Global};
use crate::daemon::Clock;
use crate::store::Store;
use anyhow::bail;
use std::io::Write;

/// Put replies that failed permanently back in the queue.
///
/// Without arguments, lists the replies that failed (with their ids) and changes nothing.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,

    /// Requeue every reply that failed permanently.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,

    /// The outbox ids of the replies to requeue (as `requeue` or `status` lists them).
    #[arg(value_name = "ID")]
    pub ids: Vec<i64>,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let config = common::config(args.global.config.as_deref())?;
    let store = common::open_store(&config)?;
    let now = Clock::starting_at(args.global.now).now();
    let mut out = std::io::stdout().lock();
    let failed: Vec<_> = store.undelivered()?.into_iter().filter(|u| !u.bounced).collect();
    if !args.all && args.ids.is_empty() {
        if failed.is_empty() {
            writeln!(out, "No reply has failed.")?;
        } else {
            writeln!(out, "Replies that failed ({}):", failed.len())?;
            for u in &failed {
                let why = match &u.held {
                    Some(limit) => format!("kept, not sent: {}", limit.replace('_', " ")),
                    None => format!(
                        "after {} attempt(s): {}",
                        u.attempts,
                        u.last_error.as_deref().unwrap_or("-")
                    ),
                };
                writeln!(out, "  {:>5}  {} to {} {why}", u.id, u.kind, u.recipients.join(", "))?;
            }
            writeln!(
                out,
                "\nRequeue them with `iapt-intake requeue --all` or `iapt-intake requeue ID...`."
            )?;
        }
        return Ok(Exit::Ok);
    }
    let unknown: Vec<String> = args
        .ids
        .iter()
        .filter(|id| !failed.iter().any(|u| u.id == **id))
        .map(i64::to_string)
        .collect();
    if !unknown.is_empty() {
        bail!(
            "no failed reply with id {} (run `iapt-intake requeue` to list them)",
            unknown.join(", ")
        );
    }
    let which = (!args.all).then_some(args.ids.as_slice());
    let by = std::env::var("USER").unwrap_or_else(|_| "requeue".into());
    let requeued = store.requeue_failed(which, now, &by)?;
    writeln!(out, "{} reply(ies) back in the queue, due now.", requeued.len())?;
    Ok(Exit::Ok)
}
