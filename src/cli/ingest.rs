//! `iapt-intake ingest`: one message from standard input, for an MTA pipe (Postfix `pipe`,
//! procmail). The message is filed and answered exactly like one from the mailbox.
//!
//! Exit status: 0 filed (whatever the message was — a bad return is answered, not refused);
//! 75 (EX_TEMPFAIL) on any failure that is not the message's fault (store busy or unwritable,
//! config unreadable), so the MTA keeps the message and tries again; nothing is ever lost.

use super::{common, Exit, Global};
use crate::daemon::Clock;
use crate::outbound::deliver_due;
use crate::pipeline::{self, Incoming};
use crate::store::{sha256_hex, Store};
use std::io::Read;

/// File and answer one message read from standard input (for an MTA pipe).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    match ingest(&args) {
        Ok(exit) => Ok(exit),
        Err(e) => {
            eprintln!("iapt-intake ingest: temporary failure, the MTA should retry: {e:#}");
            Ok(Exit::TempFail)
        }
    }
}

fn ingest(args: &Args) -> anyhow::Result<Exit> {
    let env = common::env(args.global.config.as_deref())?;
    // Read at most a little over the message limit: the pipeline keeps the raw bytes and answers
    // an oversized message from its headers; beyond that, memory is protected.
    let cap = env.config.limits.message_bytes.saturating_mul(2);
    let mut raw = Vec::new();
    std::io::stdin().lock().take(cap).read_to_end(&mut raw)?;
    let store = common::open_store(&env.config)?;
    let clock = Clock::starting_at(args.global.now);
    let now = clock.now();
    let key = format!("stdin-{}", &sha256_hex(&raw)[..16]);
    let msg = Incoming { raw: &raw, source_key: &key, received_at: now };
    let done = pipeline::process(&store, &env, msg, now)?;
    tracing::info!(
        class = done.class,
        outcome = done.outcome,
        receipts = done.receipts.join(","),
        "ingested"
    );
    // Best effort: what cannot be sent now stays in the outbox for the daemon to retry.
    match common::transport(&env.config) {
        Ok(t) => {
            if let Err(e) = deliver_due(&store, t.as_ref(), now, 50) {
                tracing::warn!("replies queued, not yet sent: {e}");
            }
        }
        Err(e) => tracing::warn!("replies queued, not yet sent: {e}"),
    }
    if let Err(e) = store.settle() {
        tracing::warn!("sent replies recorded, not yet folded into the outbox: {e}");
    }
    println!("{}: {} {}", done.class, done.outcome, done.receipts.join(" "));
    Ok(Exit::Ok)
}
