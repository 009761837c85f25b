//! `iapt-intake template`: write the blank return workbook for a period (and optionally an
//! organisation), as providers should fill it in (SPEC §3).

use super::{common, Exit, Global};
use crate::collection::PeriodId;
use crate::workbook::template::write_template;
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Write the blank IAPT KPI return template for a period.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,

    /// The reporting period, e.g. 2011-12-Q1.
    #[arg(long, value_name = "P")]
    pub period: String,

    /// Prefill the organisation (ODS code, e.g. 5N1).
    #[arg(long, value_name = "CODE")]
    pub org: Option<String>,

    /// Where to write the workbook (.xlsx).
    #[arg(short = 'o', long = "output", value_name = "FILE.xlsx")]
    pub output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let loaded = common::load(args.global.config.as_deref())?;
    let Some(period) = PeriodId::parse(&args.period) else {
        bail!("--period '{}' is not a period such as 2011-12-Q1", args.period);
    };
    let Some(definition) = loaded.collections.definition_for(period) else {
        bail!(
            "there is no collection definition for {period} in {}",
            loaded.config.collection.definitions.display()
        );
    };
    let org = match args.org.as_deref() {
        None => None,
        Some(code) => match loaded.registry.get(code) {
            Some(o) => Some(o),
            None => bail!("--org '{code}' is not an organisation code in the registry"),
        },
    };
    let bytes = write_template(definition, period, org)
        .map_err(|e| anyhow::anyhow!("cannot build the template: {e}"))?;
    let tmp = args.output.with_extension("xlsx.part");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("wrote {} ({} bytes) for {}", args.output.display(), bytes.len(), period.label());
    Ok(Exit::Ok)
}
