//! Validator tests: a good return built in code passes with no findings, and each rule is shown
//! to fire on the edit that breaks it (and not on its near miss).

use super::*;
use crate::collection::collections::shipped;
use crate::workbook::{Cell, Format, Sheet};

const ORGS: &str = include_str!("../../config/organisations.csv");

const ROWS: [(&str, f64); 9] = [
    ("KPI1", 68653.0),
    ("KPI2", 900.0),
    ("KPI3a", 120.0),
    ("KPI3b", 80.0),
    ("KPI4", 700.0),
    ("KPI5", 400.0),
    ("KPI6", 150.0),
    ("KPI6b", 60.0),
    ("KPI7", 20.0),
];

/// The value cell of each measure in `good()`: KPI1 is C11 … KPI7 is C19.
fn cell_of(id: &str) -> String {
    let i = ROWS.iter().position(|(r, _)| *r == id).expect("measure");
    format!("C{}", 11 + i)
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

struct Case {
    sheet: Sheet,
    org: Option<&'static str>,
    period: Option<PeriodId>,
    now: Option<DateTime<Utc>>,
    history: MemoryHistory,
}

/// A complete, consistent return for Leeds PCT, Q1 2011/12, in the template's layout.
fn good() -> Case {
    let mut s = Sheet::new("Return", true);
    let mut put = |a1: &str, c: Cell| {
        s.cells.insert(CellRef::parse_a1(a1).expect("a1"), c);
    };
    put("A1", text("IAPT Key Performance Indicators Quarterly Return"));
    put("A3", text("Organisation code"));
    put("B3", text("5N1"));
    put("A4", text("Organisation name"));
    put("B4", text("Leeds PCT"));
    put("A5", text("Reporting period"));
    put("B5", text("Q1 2011/12"));
    put("A6", text("Contact name"));
    put("B6", text("Ann Analyst"));
    put("A10", text("KPI"));
    put("B10", text("Description"));
    put("C10", text("Value"));
    put("D10", text("Comment"));
    for (i, (id, v)) in ROWS.iter().enumerate() {
        put(&format!("A{}", 11 + i), text(id));
        put(&format!("B{}", 11 + i), text("description"));
        put(&format!("C{}", 11 + i), Cell::Number(*v));
    }
    Case { sheet: s, org: Some("5N1"), period: None, now: None, history: MemoryHistory::new() }
}

impl Case {
    fn set(mut self, a1: &str, c: Cell) -> Self {
        self.sheet.cells.insert(CellRef::parse_a1(a1).expect("a1"), c);
        self
    }
    fn clear(mut self, a1: &str) -> Self {
        self.sheet.cells.remove(&CellRef::parse_a1(a1).expect("a1"));
        self
    }
    fn value(self, id: &str, v: f64) -> Self {
        let at = cell_of(id);
        self.set(&at, Cell::Number(v))
    }
    fn now(mut self, t: &str) -> Self {
        self.now = Some(DateTime::parse_from_rfc3339(t).expect("time").with_timezone(&Utc));
        self
    }
    fn report(&self) -> Report {
        let wb = Workbook { format: Format::Xlsx, sheets: vec![self.sheet.clone()] };
        run(&self.with(Ok(&wb)))
    }
    fn with<'a>(&'a self, workbook: Result<&'a Workbook, &'a ReadError>) -> Owned<'a> {
        Owned { case: self, workbook }
    }
}

struct Owned<'a> {
    case: &'a Case,
    workbook: Result<&'a Workbook, &'a ReadError>,
}

fn run(o: &Owned) -> Report {
    let collections = shipped();
    let registry = Registry::from_csv(ORGS).expect("registry");
    validate(&Input {
        file_name: "return.xlsx",
        workbook: o.workbook,
        collections: &collections,
        registry: &registry,
        expected_org: o.case.org,
        expected_from: crate::validate::ExpectedFrom::Subject,
        expected_period: o.case.period,
        now: o.case.now,
        history: &o.case.history,
    })
}

/// `(rule, cell)` of every finding, in report order.
fn found(r: &Report) -> Vec<(String, Option<String>)> {
    r.findings.iter().map(|f| (f.rule.clone(), f.cell.clone())).collect()
}

fn one(rule: &str, cell: Option<&str>) -> Vec<(String, Option<String>)> {
    vec![(rule.to_string(), cell.map(str::to_string))]
}

fn message(r: &Report, rule: &str) -> String {
    r.findings.iter().find(|f| f.rule == rule).map(|f| f.message.clone()).unwrap_or_default()
}

fn prior(period: &str, receipt: &str, edits: &[(&str, i64)]) -> Prior {
    let mut values: BTreeMap<String, Option<i64>> =
        ROWS.iter().map(|(id, v)| (id.to_string(), Some(*v as i64))).collect();
    for (id, v) in edits {
        values.insert(id.to_string(), Some(*v));
    }
    Prior { period: PeriodId::parse(period).expect("period"), receipt: receipt.into(), values }
}

mod good_return;
mod header_rules;
mod value_rules;
