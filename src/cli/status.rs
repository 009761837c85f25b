//! `iapt-intake status`: where every organisation stands for a period — missing, accepted, late,
//! rejected or held — with the receipt and when it arrived; replies that could not be delivered
//! are listed after, so the Data Collection Team can chase them.

use super::{common, Exit, Global};
use crate::daemon::Clock;
use crate::store::{HeldReason, Store};
use anyhow::bail;
use serde::Serialize;
use std::io::Write;

/// Show each organisation's return status for a period.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,

    /// The period (default: the one open now, else the latest).
    #[arg(long, value_name = "P")]
    pub period: Option<String>,

    /// Output format: a table, or one JSON object per organisation per line.
    #[arg(long, value_enum, default_value_t = super::check::OutputFormat::Text)]
    pub format: super::check::OutputFormat,
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    code: &'a str,
    name: &'a str,
    status: &'a str,
    receipt: Option<&'a str>,
    received_at: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let loaded = common::load(args.global.config.as_deref())?;
    let now = Clock::starting_at(args.global.now).now();
    let period = match args.period.as_deref() {
        Some(p) => common::parse_period(p)?,
        None => match common::default_period(&loaded.collections, now) {
            Some(p) => p,
            None => bail!("no periods are defined in the collection definitions"),
        },
    };
    let store = common::open_store(&loaded.config)?;
    let states = store.status(&period.to_string())?;
    let rows: Vec<Row> = loaded
        .registry
        .organisations
        .iter()
        .map(|o| {
            let s = states.iter().find(|s| s.org.eq_ignore_ascii_case(&o.code));
            Row {
                code: &o.code,
                name: &o.name,
                status: s.map(|s| s.status.as_str()).unwrap_or("missing"),
                receipt: s.and_then(|s| s.receipt.as_deref()),
                received_at: s.map(|s| s.received_at.to_rfc3339()),
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if args.format == super::check::OutputFormat::Json {
        for r in &rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(Exit::Ok);
    }
    writeln!(out, "IAPT KPI return status for {} ({period})\n", period.label())?;
    writeln!(
        out,
        "{:<5} {:<45} {:<9} {:<26} RECEIVED",
        "CODE", "ORGANISATION", "STATUS", "RECEIPT"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<5} {:<45} {:<9} {:<26} {}",
            r.code,
            truncate(r.name, 45),
            r.status,
            r.receipt.unwrap_or("-"),
            r.received_at.as_deref().unwrap_or("-")
        )?;
    }
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    writeln!(
        out,
        "\n{} organisations: {} accepted, {} late, {} rejected, {} held, {} unverified, {} missing",
        rows.len(),
        count("accepted"),
        count("late"),
        count("rejected"),
        count("held"),
        count("unverified"),
        count("missing")
    )?;
    let held = store.held(&period.to_string())?;
    if !held.is_empty() {
        writeln!(out, "\nMessages held for review ({}):", held.len())?;
        for h in held {
            let why = match h.reason {
                Some(HeldReason::Unverified) => "UNVERIFIED sender",
                Some(HeldReason::Unregistered) => "sender not registered",
                Some(HeldReason::BadSender) => "no single sender in From",
                Some(HeldReason::Unaddressable) => "no reply could be addressed",
                None => "held",
            };
            writeln!(
                out,
                "  #{} {} from {} ({}): {}",
                h.id,
                h.org.as_deref().unwrap_or("-"),
                crate::echo::capped(h.sender.as_deref().unwrap_or("(none)"), 80),
                h.received_at.to_rfc3339(),
                why
            )?;
            if let Some(reason) = h.verification.get("reason").and_then(|v| v.as_str()) {
                writeln!(out, "      verification: {}", crate::echo::capped(reason, 200))?;
            }
        }
    }
    let undelivered = store.undelivered()?;
    if !undelivered.is_empty() {
        writeln!(out, "\nReplies not delivered, or kept at a limit ({}):", undelivered.len())?;
        for u in undelivered {
            writeln!(
                out,
                "  #{} {} to {} — {}",
                u.id,
                u.kind,
                u.recipients.join(", "),
                match (&u.held, u.bounced) {
                    (Some(limit), _) => format!("kept, not sent: {}", limit.replace('_', " ")),
                    (None, true) => format!("bounced after {} attempt(s)", u.attempts),
                    (None, false) => format!(
                        "failed after {} attempt(s): {}",
                        u.attempts,
                        u.last_error.as_deref().unwrap_or("-")
                    ),
                }
            )?;
        }
    }
    Ok(Exit::Ok)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
