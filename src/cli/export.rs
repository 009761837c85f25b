//! `iapt-intake export`: the standing accepted return of every organisation for a period, with
//! the derived rates, for the statisticians. CSV cells are never interpreted as formulas: any
//! cell a spreadsheet would read as one (`=`, `+`, `-`, `@`, tab, carriage return) is prefixed
//! with an apostrophe (the OWASP "CSV injection" advice).

use super::{common, Exit, Global};
use crate::store::Store;
use anyhow::Context;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

/// Export the standing accepted returns for a period.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,

    /// The period, e.g. 2011-12-Q1.
    #[arg(long, value_name = "P")]
    pub period: String,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,

    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let loaded = common::load(args.global.config.as_deref())?;
    let period = common::parse_period(&args.period)?;
    let definition = loaded
        .collections
        .definition_for(period)
        .with_context(|| format!("there is no collection definition for {period}"))?;
    let store = common::open_store(&loaded.config)?;
    let standing = store.standing_returns(&period.to_string())?;
    let measures: Vec<&str> = definition.measures.iter().map(|m| m.id.as_str()).collect();
    let rates: Vec<&str> = definition.derived.iter().map(|d| d.id.as_str()).collect();
    let name = |code: &str| loaded.registry.get(code).map(|o| o.name.clone()).unwrap_or_default();

    let mut buf: Vec<u8> = Vec::new();
    match args.format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut buf);
            let mut header = vec!["code", "name", "period", "receipt", "received_at", "late"];
            header.extend(measures.iter().copied());
            header.extend(rates.iter().copied());
            w.write_record(&header)?;
            for s in &standing {
                let mut row = vec![
                    s.org.clone(),
                    name(&s.org),
                    s.period.clone(),
                    s.receipt.clone(),
                    s.received_at.to_rfc3339(),
                    s.late.to_string(),
                ];
                row.extend(measures.iter().map(|m| {
                    s.values.get(*m).copied().flatten().map(|v| v.to_string()).unwrap_or_default()
                }));
                row.extend(rates.iter().map(|r| {
                    s.derived
                        .get(*r)
                        .copied()
                        .flatten()
                        .map(|v| format!("{v:.6}"))
                        .unwrap_or_default()
                }));
                w.write_record(row.iter().map(|c| defuse(c)))?;
            }
            w.flush()?;
        }
        ExportFormat::Json => {
            for s in &standing {
                let line = json!({
                    "code": s.org, "name": name(&s.org), "period": s.period, "receipt": s.receipt,
                    "received_at": s.received_at.to_rfc3339(), "late": s.late,
                    "values": s.values, "derived": s.derived,
                });
                writeln!(buf, "{line}")?;
            }
        }
    }
    match &args.output {
        Some(path) => std::fs::write(path, &buf)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(&buf)?,
    }
    eprintln!("{} standing return(s) for {}", standing.len(), period.label());
    Ok(Exit::Ok)
}

/// A CSV cell that no spreadsheet will run as a formula.
pub fn defuse(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::defuse;

    #[test]
    fn formula_triggers_are_defused_and_plain_cells_kept() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse("-1+2"), "'-1+2");
        assert_eq!(defuse("Leeds PCT"), "Leeds PCT");
        assert_eq!(defuse("68653"), "68653");
    }
}
