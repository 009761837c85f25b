//! A collection definition: one collection year as data (SPEC §2). The types here are the
//! validated form; `load` (below) turns a TOML file's text into one, reporting every problem by
//! its key. Changing wording or a window is an edit of the file, never of code.

use super::period::{Period, PeriodId};
use crate::report::Severity;

/// One measure of the return (KPI1 … KPI7).
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Canonical id as written in replies and JSON: `KPI1`, `KPI3a`, `KPI6b`.
    pub id: String,
    /// Short label for the template and replies.
    pub label: String,
    /// The full wording from the year's guidance (Guidance sheet).
    pub wording: String,
    /// What is counted, e.g. `people`.
    pub unit: String,
    pub required: bool,
    /// When it is counted, e.g. `during the reporting quarter`.
    pub period_basis: String,
}

/// A derived measure: `numerator / (sum of denominator terms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// `access_rate`, `recovery_rate`.
    pub id: String,
    pub label: String,
    pub numerator: String,
    /// Terms added together; a term written `-KPI6b` in the file is subtracted (sign -1).
    pub denominator: Vec<(i8, String)>,
    /// The target as a fraction (0.0375 for 3.75%).
    pub target: Option<f64>,
    pub explanation: String,
}

/// The text of one validation rule. The checks themselves are code (keyed by `id`); what the
/// submitter reads is data.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleText {
    pub id: String,
    pub severity: Severity,
    /// A one-line statement of the rule.
    pub message: String,
    /// How to fix it, shown to the submitter.
    pub guidance: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GuidanceLink {
    pub title: String,
    pub url: String,
}

/// One collection year.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// `iapt-kpi-2011-12`.
    pub id: String,
    pub title: String,
    /// The financial year that starts in this calendar year (2011 for 2011/12).
    pub start_year: u16,
    /// Written into the template's hidden About sheet.
    pub template_version: String,
    pub measures: Vec<Measure>,
    pub derived: Vec<Derived>,
    pub rules: Vec<RuleText>,
    pub periods: Vec<Period>,
    pub guidance_links: Vec<GuidanceLink>,
}

impl Definition {
    pub fn measure(&self, id: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.id.eq_ignore_ascii_case(id))
    }

    pub fn rule(&self, id: &str) -> Option<&RuleText> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn period(&self, id: PeriodId) -> Option<&Period> {
        self.periods.iter().find(|p| p.id == id)
    }
}
