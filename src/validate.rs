//! The validator: one return file (its read result) + the collection definitions + the registry
//! (+ the organisation's earlier accepted returns, + `now` when windows are to be judged) → a
//! `Report` of findings for every rule of SPEC §2 (IAPT-E01 … IAPT-W04), the values as read and
//! the derived rates. A bad spreadsheet is not an `Err`: it is a report with findings.
//! PURE: no files, sockets or clock; `now` is given. Rule texts (guidance) come from the
//! definition; the checks are here.

mod checks;
mod header;
mod history;
mod values;

pub use crate::collection::RULE_IDS;
pub use history::{History, MemoryHistory, NoHistory, Prior};

use crate::collection::{Collections, Definition, PeriodId, Registry};
use crate::report::{Finding, Report, Severity, Status};
use crate::workbook::locate::{self, HeaderField, Located};
use crate::workbook::{CellRef, ReadError, Workbook};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use values::Reading;

/// Who named the organisation a return must be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedFrom {
    /// The subject line of the email that carried the return.
    Subject,
    /// `check --org`.
    CommandLine,
}

/// Everything the validator judges one file by.
pub struct Input<'a> {
    /// The attachment's file name, as reported.
    pub file_name: &'a str,
    /// What the reader made of the bytes.
    pub workbook: Result<&'a Workbook, &'a ReadError>,
    pub collections: &'a Collections,
    pub registry: &'a Registry,
    /// The organisation the email subject (or `check --org`) names.
    pub expected_org: Option<&'a str>,
    /// Where `expected_org` came from, for the wording of IAPT-E10.
    pub expected_from: ExpectedFrom,
    /// The period the return is being checked for (`check --period`).
    pub expected_period: Option<PeriodId>,
    /// When the return reached the mailbox; windows are judged only when this is given.
    pub now: Option<DateTime<Utc>>,
    pub history: &'a dyn History,
}

/// Validate one return. Never panics; every problem becomes a finding.
pub fn validate(input: &Input) -> Report {
    let fallback = input
        .expected_period
        .and_then(|p| input.collections.definition_for(p))
        .or_else(|| input.collections.latest());
    let mut report = Report {
        file: input.file_name.to_string(),
        status: Status::Valid,
        organisation: None,
        period: None,
        values: BTreeMap::new(),
        derived: BTreeMap::new(),
        findings: Vec::new(),
    };
    let mut f = Findings::new(fallback, None);
    match input.workbook {
        Err(e) => f.push("IAPT-E21", None, None, e.to_string()),
        Ok(wb) => match wb.first_visible() {
            None => f.push(
                "IAPT-E20",
                None,
                None,
                "The workbook has no visible sheet, so the return cannot be found. Unhide the Return sheet and send the file again.".into(),
            ),
            Some(sheet) => {
                let header = locate::header_fields(sheet);
                let period_text = header
                    .iter()
                    .find(|h| h.field == HeaderField::ReportingPeriod)
                    .and_then(|h| h.text());
                let def = period_text
                    .and_then(|t| PeriodId::parse(&t))
                    .and_then(|p| input.collections.definition_for(p))
                    .or(fallback);
                let ids: Vec<&str> = def.map_or(Vec::new(), |d| d.measures.iter().map(|m| m.id.as_str()).collect());
                let located = locate::locate_sheet(sheet, &ids);
                f = Findings::new(def, Some(located.sheet.clone()));
                judge(input, &located, &mut f, &mut report);
            }
        },
    }
    if let Some(def) = f.def {
        for m in &def.measures {
            report.values.entry(m.id.clone()).or_insert(None);
        }
        // A rate built on a figure that failed a check (E03/E04 …) would only mislead.
        let flagged: Vec<&str> = f
            .items
            .iter()
            .filter(|(_, x)| x.severity == Severity::Error)
            .filter_map(|(_, x)| x.measure.as_deref())
            .collect();
        for d in &def.derived {
            let inputs_ok = !flagged.contains(&d.numerator.as_str())
                && d.denominator.iter().all(|(_, id)| !flagged.contains(&id.as_str()));
            let rate = checks::derived_rate(d, &report.values).filter(|_| inputs_ok);
            report.derived.insert(d.id.clone(), rate);
        }
    }
    report.findings = f.finish();
    report.status = if report.is_valid() { Status::Valid } else { Status::Invalid };
    report
}

/// All checks on a sheet whose layout has been located.
fn judge(input: &Input, located: &Located, f: &mut Findings, report: &mut Report) {
    report.organisation = located
        .header(HeaderField::OrganisationCode)
        .and_then(|h| h.text())
        .map(|t| t.to_ascii_uppercase());
    let period = header::period(input, located, f);
    report.period = period.map(|p| p.to_string());
    if !checks::table_found(located, f) {
        // Not a return: header complaints would only be noise beside IAPT-E20.
        f.items.retain(|(_, finding)| finding.rule == "IAPT-E20");
        return;
    }
    let org = header::organisation(input, located, f);
    let Some(def) = f.def else { return };
    // A csv has no number type: every value is text there, so IAPT-W03 would only be noise.
    let csv = matches!(input.workbook, Ok(w) if w.format == crate::workbook::Format::Csv);
    for m in &def.measures {
        let row = located.measure(&m.id);
        let value = match row {
            None => {
                if m.required {
                    f.push("IAPT-E01", Some(&m.id), None, format!(
                        "{} ({}) has no row in the measure table. Add a row with {} in the KPI column and the figure in the Value column.",
                        m.id, lower_first(&m.label), m.id
                    ));
                }
                None
            }
            Some(row) => read_value(m, row.value_at, row.value.as_ref(), csv, f),
        };
        report.values.insert(m.id.clone(), value);
    }
    checks::cross_checks(located, &report.values, f);
    if let Some(org) = org {
        checks::history(input.history, &org, period, located, &report.values, f);
    }
}

/// Judge one value cell: E01 (blank and required), E02 (not a whole number ≥ 0), W03 (stored as
/// text). Returns the value when it can be used.
fn read_value(
    m: &crate::collection::Measure,
    at: CellRef,
    cell: Option<&crate::workbook::Cell>,
    csv: bool,
    f: &mut Findings,
) -> Option<i64> {
    match values::read(cell) {
        Reading::Blank => {
            if m.required {
                f.push(
                    "IAPT-E01",
                    Some(&m.id),
                    Some(at),
                    format!(
                    "{} (cell {at}) is blank. Enter the number of {}; enter 0 if there were none.",
                    m.id,
                    count_of(&m.label)
                ),
                );
            }
            None
        }
        Reading::Bad { found, fix } => {
            f.push(
                "IAPT-E02",
                Some(&m.id),
                Some(at),
                format!("{} (cell {at}) is {found}. {fix}", m.id),
            );
            None
        }
        Reading::Whole { value, from_text } => {
            if from_text && !csv {
                f.push("IAPT-W03", Some(&m.id), Some(at), format!(
                    "{} (cell {at}) was stored as text ({}); it was read as the number {value}. Please format the Value cells as numbers in future returns.",
                    m.id,
                    crate::echo::quoted(&cell.map_or(String::new(), |c| c.display()), crate::echo::CELL_MAX)
                ));
            }
            Some(value)
        }
    }
}

/// `People who completed treatment` → `people who completed treatment` for use mid-sentence.
pub(crate) fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// "Enter the number of …": the label without a leading "People"/"Number of".
fn count_of(label: &str) -> String {
    let l = lower_first(label);
    l.strip_prefix("number of ").map(str::to_string).unwrap_or(l)
}

/// Findings collected while validating, each with its position for sorting.
pub(crate) struct Findings<'a> {
    pub(crate) def: Option<&'a Definition>,
    sheet: Option<String>,
    pub(crate) items: Vec<(Option<CellRef>, Finding)>,
}

impl<'a> Findings<'a> {
    fn new(def: Option<&'a Definition>, sheet: Option<String>) -> Self {
        Findings { def, sheet, items: Vec::new() }
    }

    /// Record a finding of `rule`; severity follows the rule id (E = error, W = warning, which
    /// the definition loader insists on) and the guidance is the definition's text.
    pub(crate) fn push(
        &mut self,
        rule: &str,
        measure: Option<&str>,
        at: Option<CellRef>,
        message: String,
    ) {
        let severity = if rule.starts_with("IAPT-W") { Severity::Warning } else { Severity::Error };
        let guidance =
            self.def.and_then(|d| d.rule(rule)).map_or(String::new(), |r| r.guidance.clone());
        let finding = Finding {
            rule: rule.to_string(),
            severity,
            measure: measure.map(str::to_string),
            sheet: self.sheet.clone(),
            cell: at.map(|c| c.to_string()),
            message,
            guidance,
        };
        self.items.push((at, finding));
    }

    /// Errors first, then warnings; each in sheet order (findings without a cell first).
    fn finish(mut self) -> Vec<Finding> {
        self.items
            .sort_by(|(a, x), (b, y)| (x.severity, a, &x.rule).cmp(&(y.severity, b, &y.rule)));
        self.items.into_iter().map(|(_, f)| f).collect()
    }
}

#[cfg(test)]
mod tests;
