//! `iapt-intake run`: the daemon. Watches the configured mailbox, processes every message, and
//! sends replies from the outbox. `--once` processes what waits, delivers, prints what happened
//! to each message, and exits.

use super::{common, Exit, Global};
use crate::config::Source;
use crate::daemon::{Clock, Daemon, Round, Shutdown};
use crate::mailbox::imap::ImapSource;
use crate::mailbox::{MailSource, Maildir};
use crate::store::Store;
use anyhow::Context;
use std::io::Write;

/// Run the daemon on the configured mailbox.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,

    /// Process what waits, deliver the replies, print a summary, then exit.
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let env = common::env(args.global.config.as_deref())?;
    let store = common::open_store(&env.config)?;
    let transport = common::transport(&env.config)?;
    let ctx = Setup {
        env: &env,
        store: &store,
        transport: transport.as_ref(),
        clock: Clock::starting_at(args.global.now),
        once: args.once,
    };
    match &env.config.intake.source {
        Source::Maildir(dir) => {
            let source = Maildir::open(dir)
                .with_context(|| format!("cannot open Maildir {}", dir.display()))?
                .with_fetch_cap(env.config.limits.message_bytes.saturating_add(1));
            drive(&ctx, source, &format!("Maildir {}", dir.display()))
        }
        Source::Imap(imap) => {
            // Only what is the configuration's own fails here (a CA file, a TLS name). The
            // server is met by the first round: unreachable, refusing the login or failing TLS,
            // it is retried with backoff and never ends the daemon.
            let source = ImapSource::new(imap)
                .with_context(|| format!("cannot use IMAP {}:{}", imap.host, imap.port))?
                .with_fetch_cap(env.config.limits.message_bytes.saturating_mul(2));
            drive(&ctx, source, &format!("IMAP {}:{} folder {}", imap.host, imap.port, imap.folder))
        }
    }
}

/// Everything `run` sets up before it knows the mailbox.
struct Setup<'a, S: Store> {
    env: &'a crate::pipeline::Env,
    store: &'a S,
    transport: &'a dyn crate::outbound::Transport,
    clock: Clock,
    once: bool,
}

/// The daemon on `source`: one round with a summary (`--once`), or rounds until a signal.
fn drive<S: Store, M: MailSource>(
    ctx: &Setup<'_, S>,
    source: M,
    what: &str,
) -> anyhow::Result<Exit> {
    let shutdown = Shutdown::default();
    let env = ctx.env;
    let mut daemon = Daemon {
        store: ctx.store,
        source,
        transport: ctx.transport,
        env,
        clock: ctx.clock,
        shutdown: shutdown.clone(),
    };
    if ctx.once {
        let round = daemon.round()?;
        print_summary(&round, env)?;
        return Ok(Exit::Ok);
    }
    shutdown.on_signals().context("cannot install signal handlers")?;
    let stop = shutdown.clone();
    let Some(_lock) = crate::lock::acquire(&env.config.store.path, move || stop.requested())
        .context("cannot take the store lock")?
    else {
        return Ok(Exit::Ok);
    };
    tracing::info!(source = what, "iapt-intake running; SIGTERM or Ctrl-C stops it");
    daemon.run_watched(env.config.intake.poll_interval, &crate::daemon::Health::default())?;
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

/// What happened to each message, and where the replies went: for people at a terminal.
fn print_summary(round: &Round, env: &crate::pipeline::Env) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if round.processed.is_empty() {
        writeln!(out, "No new messages.")?;
    }
    for (i, p) in round.processed.iter().enumerate() {
        let who = p.from.as_deref().unwrap_or("(no sender)");
        writeln!(out, "{:>3}. {} from {who}", i + 1, p.source_key)?;
        let org = p.org.as_deref().map(|o| format!(" [{o}]")).unwrap_or_default();
        writeln!(out, "     {}{org}: {}", p.class, p.outcome)?;
        for r in &p.receipts {
            writeln!(out, "     receipt {r}")?;
        }
        for (kind, _, to) in &p.replies {
            writeln!(out, "     reply ({kind}) to {}", to.join(", "))?;
        }
    }
    let d = &round.delivery;
    writeln!(
        out,
        "\n{} message(s) processed, {} left in the inbox; replies: {} sent, {} to retry, {} failed.",
        round.processed.len(),
        round.deferred + round.unmoved,
        d.sent,
        d.retried + d.deferred + d.held,
        d.failed
    )?;
    if let Some(why) = &round.unmoved_reason {
        writeln!(
            out,
            "{} filed message(s) could not be moved out of the inbox ({why}); they are recognised as filed next time and never answered twice.",
            round.unmoved
        )?;
    }
    if let Some(why) = &d.refused {
        writeln!(
            out,
            "Delivery paused: the relay refuses our sender or login ({why}). The replies are kept and go out when it clears."
        )?;
    }
    if let crate::config::Transport::File(dir) = &env.config.outbound.transport {
        writeln!(
            out,
            "Replies are in {}/ (open the .eml files in any mail client).",
            dir.display()
        )?;
    }
    writeln!(out, "Store: {}", env.config.store.path.display())?;
    Ok(())
}
