//! The verdict on one return file: findings (rule, severity, where, what to do), the values as
//! read and the derived rates. Plain data shared by the validator, the store, replies and the
//! CLI; its JSON form is the `check --format json` contract (SPEC §7).

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Severity::Error),
            "warning" => Some(Severity::Warning),
            _ => None,
        }
    }
}

/// One thing wrong (or worth a look) in a return.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable rule id: `IAPT-E01` … `IAPT-W04`.
    pub rule: String,
    pub severity: Severity,
    /// Canonical measure id where the finding is about one measure.
    pub measure: Option<String>,
    pub sheet: Option<String>,
    /// A1-style cell where there is one.
    pub cell: Option<String>,
    /// What is wrong, in words a PCT analyst understands, naming the value found.
    pub message: String,
    /// How to fix it (from the definition's rule text); shown in replies, not in JSON.
    #[serde(skip)]
    pub guidance: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Valid,
    Invalid,
}

/// The report for one file, in the shape of `check --format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub file: String,
    pub status: Status,
    /// Organisation code as read from the file (upper-case), when there is one.
    pub organisation: Option<String>,
    /// Period id (`2011-12-Q1`) as read from the file, when recognised.
    pub period: Option<String>,
    /// Every measure of the definition → its whole-number value, or null when blank or invalid.
    pub values: BTreeMap<String, Option<i64>>,
    /// `access_rate`, `recovery_rate` → fraction, or null when it cannot be computed.
    pub derived: BTreeMap<String, Option<f64>>,
    /// Errors first, then warnings; within each, in sheet order.
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Warning)
    }

    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }
}
