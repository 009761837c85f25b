//! `iapt-intake check`: validate return files exactly as the daemon would, without filing or
//! replying. Text for people (errors first, each with its cell) or one JSON object per file per
//! line (SPEC §7). Exit 0 when every file is valid, 1 when any has errors, 2 on a usage, config or
//! I/O error.

use super::{common, Exit, Global};
use crate::collection::PeriodId;
use crate::guarded::read_with_timeout;
use crate::report::{Report, Severity};
use crate::validate::{validate, Input, NoHistory};
use crate::workbook::ReadError;
use anyhow::bail;
use std::io::Write;
use std::path::PathBuf;

/// Check return files against the collection definition and print the findings.
///
/// Windows (not open yet, late, closed) are judged only when --now is given.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,

    /// Return files: .xlsx .xlsm .xls .xlsb .ods .csv
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// The organisation the return must be for (ODS code, e.g. 5N1).
    #[arg(long, value_name = "CODE")]
    pub org: Option<String>,

    /// The period the return must be for (e.g. 2011-12-Q1).
    #[arg(long, value_name = "P")]
    pub period: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let loaded = common::load(args.global.config.as_deref())?;
    let period = match args.period.as_deref() {
        None => None,
        Some(p) => match PeriodId::parse(p) {
            Some(id) => Some(id),
            None => bail!("--period '{p}' is not a period such as 2011-12-Q1"),
        },
    };
    if let Some(code) = args.org.as_deref() {
        if loaded.registry.get(code).is_none() {
            bail!(
                "--org '{code}' is not an organisation code in {}",
                loaded.config.collection.organisations.display()
            );
        }
    }
    let limits = loaded.config.limits;
    let mut out = std::io::stdout().lock();
    let mut any_invalid = false;
    let mut io_errors = 0;
    for path in &args.files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let read = match std::fs::metadata(path) {
            Err(e) => {
                eprintln!("iapt-intake: cannot read {}: {e}", path.display());
                io_errors += 1;
                continue;
            }
            // Refuse before reading a huge file into memory.
            Ok(m) if m.len() > limits.workbook.attachment_bytes => Err(ReadError::TooLarge {
                what: "the file".into(),
                actual: m.len(),
                limit: limits.workbook.attachment_bytes,
            }),
            Ok(_) => match std::fs::read(path) {
                Ok(bytes) => {
                    read_with_timeout(bytes, &name, limits.workbook, limits.attachment_timeout)
                }
                Err(e) => {
                    eprintln!("iapt-intake: cannot read {}: {e}", path.display());
                    io_errors += 1;
                    continue;
                }
            },
        };
        let report = validate(&Input {
            file_name: &path.display().to_string(),
            workbook: read.as_ref(),
            collections: &loaded.collections,
            registry: &loaded.registry,
            expected_org: args.org.as_deref(),
            expected_from: crate::validate::ExpectedFrom::CommandLine,
            expected_period: period,
            now: args.global.now,
            history: &NoHistory,
        });
        any_invalid |= !report.is_valid();
        match args.format {
            OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(&report)?)?,
            OutputFormat::Text => write!(out, "{}", text(&report, &loaded))?,
        }
    }
    if io_errors > 0 {
        bail!("{io_errors} file(s) could not be read");
    }
    Ok(if any_invalid { Exit::Invalid } else { Exit::Ok })
}

/// The report as a person reads it at a glance: verdict line, numbered errors with their cells,
/// then warnings, then the derived rates.
pub fn text(report: &Report, loaded: &common::Loaded) -> String {
    let org = report.organisation.as_deref().map(|code| match loaded.registry.get(code) {
        Some(o) => format!("{code} {}", o.name),
        None => code.to_string(),
    });
    let period = report
        .period
        .as_deref()
        .and_then(PeriodId::parse)
        .map(|p| p.label())
        .or_else(|| report.period.clone());
    let errors: Vec<_> = report.errors().collect();
    let warnings: Vec<_> = report.warnings().collect();
    let mut s = format!(
        "{}: {} — {}, {} — {} error(s), {} warning(s)\n",
        report.file,
        if report.is_valid() { "VALID" } else { "INVALID" },
        org.unwrap_or_else(|| "organisation not read".into()),
        period.unwrap_or_else(|| "period not read".into()),
        errors.len(),
        warnings.len()
    );
    for (i, f) in report.findings.iter().enumerate() {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let at = match (&f.sheet, &f.cell) {
            (Some(sheet), Some(cell)) => format!(" {sheet}!{cell}"),
            (Some(sheet), None) => format!(" {sheet}"),
            _ => String::new(),
        };
        s.push_str(&format!("  {:>2}. {} {tag}{at}: {}\n", i + 1, f.rule, f.message));
    }
    if report.is_valid() {
        let rates: Vec<String> = report
            .derived
            .iter()
            .map(|(k, v)| match v {
                Some(x) => format!("{} {:.2}%", k.replace('_', " "), x * 100.0),
                None => format!("{} n/a", k.replace('_', " ")),
            })
            .collect();
        if !rates.is_empty() {
            s.push_str(&format!("      {}\n", rates.join(", ")));
        }
    }
    s
}
