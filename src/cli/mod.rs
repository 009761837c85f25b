//! The command line (SPEC §7): one file per subcommand, each a clap struct whose doc comment is its
//! `--help`, plus `run()`. Commands return an [`Exit`]; `main` turns errors into exit code 2.

pub mod check;
mod common;
pub mod export;
pub mod ingest;
pub mod requeue;
pub mod run;
pub mod status;
pub mod template;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub use common::Loaded;

/// iapt-intake: the mailbox daemon for the IAPT KPI Quarterly Return.
///
/// Watches the returns mailbox, validates each attached return, files it, and replies with an
/// acceptance and receipt or a numbered list of errors.
#[derive(Debug, Parser)]
#[command(name = "iapt-intake", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Config file (default: config/iapt-intake.toml, the embedded default).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Believe it is this moment (RFC 3339); every message is taken as received at it.
    #[arg(long, global = true, value_name = "RFC3339", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("'{s}' is not an RFC 3339 time such as 2011-07-15T09:00:00Z ({e})"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(run::Args),
    Ingest(ingest::Args),
    Check(check::Args),
    Template(template::Args),
    Status(status::Args),
    Export(export::Args),
    Requeue(requeue::Args),
}

/// How a command ended, when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: ok / valid.
    Ok,
    /// 1: `check` found errors.
    Invalid,
    /// 75 (EX_TEMPFAIL): `ingest` hit a temporary failure; the MTA should retry.
    TempFail,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Invalid => 1,
            Exit::TempFail => 75,
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Check(args) => check::run(args),
        Command::Template(args) => template::run(args),
        Command::Status(args) => status::run(args),
        Command::Export(args) => export::run(args),
        Command::Requeue(args) => requeue::run(args),
    }
}
