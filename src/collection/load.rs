//! Loading one collection definition file (`config/collections/*.toml`): the text is parsed into
//! raw serde types (unknown keys refused), then one validation pass checks everything and
//! reports EVERY problem by its key (`periods[2].deadline: must be after opens`), never just
//! the first. PURE: takes the file's text; the caller reads the file.

use super::definition::{Definition, Derived, GuidanceLink, Measure, RuleText};
use super::period::{Period, PeriodId};
use super::problem::Problem;
use crate::report::Severity;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::{Table, Value};

/// Every rule the validator implements. A definition must give the text of each, and no other.
pub const RULE_IDS: &[&str] = &[
    "IAPT-E01", "IAPT-E02", "IAPT-E03", "IAPT-E04", "IAPT-E05", "IAPT-E06", "IAPT-E10", "IAPT-E11",
    "IAPT-E20", "IAPT-E21", "IAPT-W01", "IAPT-W02", "IAPT-W03", "IAPT-W04",
];

/// Measures the validator's cross-checks name; a definition without one of them would silently
/// switch a rule off, so the loader insists on them.
pub const CHECKED_MEASURES: &[&str] =
    &["KPI1", "KPI2", "KPI3a", "KPI4", "KPI5", "KPI6", "KPI6b", "KPI7"];

const TOP_KEYS: &[&str] = &[
    "id",
    "title",
    "year",
    "template_version",
    "measures",
    "derived",
    "rules",
    "periods",
    "guidance",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasure {
    id: String,
    label: String,
    wording: String,
    unit: String,
    required: bool,
    basis: String,
}
const MEASURE_KEYS: &[&str] = &["id", "label", "wording", "unit", "required", "basis"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerived {
    id: String,
    label: String,
    numerator: String,
    denominator: Vec<String>,
    target: Option<f64>,
    explanation: String,
}
const DERIVED_KEYS: &[&str] = &["id", "label", "numerator", "denominator", "target", "explanation"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    severity: String,
    message: String,
    guidance: String,
}
const RULE_KEYS: &[&str] = &["id", "severity", "message", "guidance"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeriod {
    id: String,
    // Either a TOML date-time or a quoted RFC 3339 string; judged in `moment`.
    opens: Value,
    deadline: Value,
    closes: Value,
}
const PERIOD_KEYS: &[&str] = &["id", "opens", "deadline", "closes"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    title: String,
    url: String,
}
const LINK_KEYS: &[&str] = &["title", "url"];

/// Parse and check one definition file's text.
pub fn load_definition(text: &str) -> Result<Definition, Vec<Problem>> {
    let table: Table = toml::from_str(text).map_err(|e| vec![syntax_problem(text, &e)])?;
    let mut problems = Vec::new();
    unknown_keys(&table, TOP_KEYS, "", &mut problems);

    let id = text_field(&table, "id", &mut problems);
    let title = text_field(&table, "title", &mut problems);
    let year = text_field(&table, "year", &mut problems);
    let template_version = text_field(&table, "template_version", &mut problems);
    let start_year = year.as_deref().and_then(|y| {
        let parsed = parse_year(y);
        if parsed.is_none() {
            problems.push(Problem::new("year", format!("{y:?} is not a year like \"2011-12\"")));
        }
        parsed
    });
    let measures: Vec<(usize, RawMeasure)> =
        list(&table, "measures", MEASURE_KEYS, true, &mut problems);
    let derived: Vec<(usize, RawDerived)> =
        list(&table, "derived", DERIVED_KEYS, false, &mut problems);
    let rules: Vec<(usize, RawRule)> = list(&table, "rules", RULE_KEYS, true, &mut problems);
    let periods: Vec<(usize, RawPeriod)> =
        list(&table, "periods", PERIOD_KEYS, true, &mut problems);
    let links: Vec<(usize, RawLink)> = list(&table, "guidance", LINK_KEYS, false, &mut problems);

    let measures = check_measures(measures, &mut problems);
    let derived = check_derived(derived, &measures, &mut problems);
    let rules = check_rules(rules, &mut problems);
    let periods = check_periods(periods, start_year, &mut problems);
    let guidance_links = check_links(links, &mut problems);

    match (id, title, start_year, template_version) {
        (Some(id), Some(title), Some(start_year), Some(template_version))
            if problems.is_empty() =>
        {
            Ok(Definition {
                id,
                title,
                start_year,
                template_version,
                measures,
                derived,
                rules,
                periods,
                guidance_links,
            })
        }
        _ => Err(problems),
    }
}

fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let key = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            format!("line {}", before.matches('\n').count() + 1)
        }
        None => String::new(),
    };
    Problem::new(key, format!("not valid TOML: {}", e.message().trim()))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn unknown_keys(table: &Table, allowed: &[&str], path: &str, problems: &mut Vec<Problem>) {
    for key in table.keys().filter(|k| !allowed.contains(&k.as_str())) {
        problems.push(Problem::new(
            join(path, key),
            format!("unknown key; the keys here are {}", allowed.join(", ")),
        ));
    }
}

/// A required, non-blank text value at the top level.
fn text_field(table: &Table, key: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match table.get(key) {
        None => problems.push(Problem::new(key, "missing")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            problems.push(Problem::new(key, "must not be blank"))
        }
        Some(Value::String(s)) => return Some(s.trim().to_string()),
        Some(_) => problems.push(Problem::new(key, "must be text in quotes")),
    }
    None
}

/// An array of tables (`[[measures]]`), each element turned into `T` on its own so that a
/// problem in one element does not hide problems in the next. Unknown keys are reported here,
/// by name, and left out before `T` (which also refuses them) sees the element.
fn list<T: DeserializeOwned>(
    table: &Table,
    key: &str,
    allowed: &[&str],
    required: bool,
    problems: &mut Vec<Problem>,
) -> Vec<(usize, T)> {
    let items = match table.get(key) {
        None if required => {
            problems.push(Problem::new(key, format!("missing; add [[{key}]] sections")));
            return Vec::new();
        }
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            problems.push(Problem::new(key, format!("must be a list of [[{key}]] sections")));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Value::Table(t) = item else {
            problems.push(Problem::new(path, "must be a [[section]] of keys"));
            continue;
        };
        unknown_keys(t, allowed, &path, problems);
        let known: Table = t
            .iter()
            .filter(|(k, _)| allowed.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match Value::Table(known).try_into::<T>() {
            Ok(v) => out.push((i, v)),
            Err(e) => problems.push(Problem::new(path, e.message().trim().to_string())),
        }
    }
    out
}

fn parse_year(y: &str) -> Option<u16> {
    PeriodId::parse(&format!("{y}-Q1")).map(|p| p.start_year)
}

fn blank(problems: &mut Vec<Problem>, path: &str, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        if value.trim().is_empty() {
            problems.push(Problem::new(format!("{path}.{name}"), "must not be blank"));
        }
    }
}

/// `KPI` + digits + at most one lower-case letter: the canonical spelling replies use.
pub(crate) fn is_canonical_measure_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("KPI") else { return false };
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    let tail = &rest[digits..];
    digits > 0
        && (tail.is_empty() || (tail.len() == 1 && tail.chars().all(|c| c.is_ascii_lowercase())))
}

fn check_measures(raw: Vec<(usize, RawMeasure)>, problems: &mut Vec<Problem>) -> Vec<Measure> {
    let mut out: Vec<Measure> = Vec::new();
    for (i, m) in raw {
        let path = format!("measures[{i}]");
        blank(
            problems,
            &path,
            &[("label", &m.label), ("wording", &m.wording), ("unit", &m.unit), ("basis", &m.basis)],
        );
        let id = m.id.trim().to_string();
        if !is_canonical_measure_id(&id) {
            problems.push(Problem::new(
                format!("{path}.id"),
                format!("{id:?} is not a measure id like \"KPI3b\" (KPI, a number, at most one lower-case letter)"),
            ));
        } else if out.iter().any(|o| o.id.eq_ignore_ascii_case(&id)) {
            problems.push(Problem::new(format!("{path}.id"), format!("{id} is defined twice")));
        }
        out.push(Measure {
            id,
            label: m.label.trim().to_string(),
            wording: m.wording.trim().to_string(),
            unit: m.unit.trim().to_string(),
            required: m.required,
            period_basis: m.basis.trim().to_string(),
        });
    }
    for needed in CHECKED_MEASURES {
        if !out.iter().any(|m| m.id == *needed) {
            problems.push(Problem::new(
                "measures",
                format!("{needed} is missing; the validation rules refer to it"),
            ));
        }
    }
    out
}

fn check_derived(
    raw: Vec<(usize, RawDerived)>,
    measures: &[Measure],
    problems: &mut Vec<Problem>,
) -> Vec<Derived> {
    let known = |id: &str| measures.iter().any(|m| m.id == id);
    let mut out: Vec<Derived> = Vec::new();
    for (i, d) in raw {
        let path = format!("derived[{i}]");
        blank(
            problems,
            &path,
            &[("id", &d.id), ("label", &d.label), ("explanation", &d.explanation)],
        );
        if out.iter().any(|o| o.id == d.id.trim()) {
            problems.push(Problem::new(format!("{path}.id"), format!("{} is defined twice", d.id)));
        }
        let numerator = d.numerator.trim().to_string();
        if !known(&numerator) {
            problems.push(Problem::new(
                format!("{path}.numerator"),
                format!("{numerator:?} is not one of the measures above"),
            ));
        }
        if d.denominator.is_empty() {
            problems
                .push(Problem::new(format!("{path}.denominator"), "needs at least one measure"));
        }
        let mut denominator = Vec::new();
        for (j, term) in d.denominator.iter().enumerate() {
            let term = term.trim();
            let (sign, id) = match term.strip_prefix('-') {
                Some(id) => (-1, id.trim()),
                None => (1, term.strip_prefix('+').unwrap_or(term).trim()),
            };
            if !known(id) {
                problems.push(Problem::new(
                    format!("{path}.denominator[{j}]"),
                    format!(
                        "{term:?} is not one of the measures above (write \"KPI5\" or \"-KPI6b\")"
                    ),
                ));
            }
            denominator.push((sign, id.to_string()));
        }
        if let Some(t) = d.target {
            if !(t > 0.0 && t <= 1.0) {
                problems.push(Problem::new(
                    format!("{path}.target"),
                    format!("{t} is not a fraction between 0 and 1 (3.75% is written 0.0375)"),
                ));
            }
        }
        out.push(Derived {
            id: d.id.trim().to_string(),
            label: d.label.trim().to_string(),
            numerator,
            denominator,
            target: d.target,
            explanation: d.explanation.trim().to_string(),
        });
    }
    out
}

fn check_rules(raw: Vec<(usize, RawRule)>, problems: &mut Vec<Problem>) -> Vec<RuleText> {
    let mut out: Vec<RuleText> = Vec::new();
    for (i, r) in raw {
        let path = format!("rules[{i}]");
        let id = r.id.trim().to_string();
        blank(problems, &path, &[("message", &r.message), ("guidance", &r.guidance)]);
        if !RULE_IDS.contains(&id.as_str()) {
            problems.push(Problem::new(
                format!("{path}.id"),
                format!("{id:?} is not a rule the validator implements ({})", RULE_IDS.join(" ")),
            ));
        } else if out.iter().any(|o| o.id == id) {
            problems.push(Problem::new(format!("{path}.id"), format!("{id} is given twice")));
        }
        // The letter in the id is the severity users and replies rely on; the file must agree.
        let implied = if id.starts_with("IAPT-W") { Severity::Warning } else { Severity::Error };
        let severity = match Severity::parse(&r.severity) {
            Some(s) if s == implied => s,
            Some(_) => {
                problems.push(Problem::new(
                    format!("{path}.severity"),
                    format!("{id} is an {} rule (its id says so)", sev_word(implied)),
                ));
                implied
            }
            None => {
                problems.push(Problem::new(
                    format!("{path}.severity"),
                    format!("{:?} must be \"error\" or \"warning\"", r.severity),
                ));
                implied
            }
        };
        out.push(RuleText {
            id,
            severity,
            message: r.message.trim().to_string(),
            guidance: r.guidance.trim().to_string(),
        });
    }
    for id in RULE_IDS {
        if !out.iter().any(|r| r.id == *id) {
            problems.push(Problem::new(
                "rules",
                format!("{id} is missing; give its message and guidance"),
            ));
        }
    }
    out
}

fn sev_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn moment(v: &Value) -> Result<DateTime<Utc>, String> {
    let text = match v {
        Value::Datetime(d) => d.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return Err("must be a date and time such as 2011-07-01T09:00:00+01:00".into()),
    };
    DateTime::parse_from_rfc3339(&text).map(|d| d.with_timezone(&Utc)).map_err(|_| {
        format!("{text:?} is not an RFC 3339 date and time with its UTC offset, e.g. 2011-07-01T09:00:00+01:00")
    })
}

fn check_periods(
    raw: Vec<(usize, RawPeriod)>,
    start_year: Option<u16>,
    problems: &mut Vec<Problem>,
) -> Vec<Period> {
    let mut out: Vec<Period> = Vec::new();
    for (i, p) in raw {
        let path = format!("periods[{i}]");
        let id = PeriodId::parse(&p.id);
        match (id, start_year) {
            (None, _) => problems.push(Problem::new(
                format!("{path}.id"),
                format!("{:?} is not a period like \"2011-12-Q1\"", p.id),
            )),
            (Some(id), Some(y)) if id.start_year != y => problems.push(Problem::new(
                format!("{path}.id"),
                format!("{id} is not in this definition's year"),
            )),
            (Some(id), _) if out.iter().any(|o| o.id == id) => {
                problems.push(Problem::new(format!("{path}.id"), format!("{id} is given twice")))
            }
            _ => {}
        }
        let mut at = |name: &str, v: &Value| match moment(v) {
            Ok(t) => Some(t),
            Err(m) => {
                problems.push(Problem::new(format!("{path}.{name}"), m));
                None
            }
        };
        let (opens, deadline, closes) =
            (at("opens", &p.opens), at("deadline", &p.deadline), at("closes", &p.closes));
        let (Some(id), Some(opens), Some(deadline), Some(closes)) = (id, opens, deadline, closes)
        else {
            continue;
        };
        if deadline <= opens {
            problems.push(Problem::new(format!("{path}.deadline"), "must be after opens"));
        }
        if closes < deadline {
            problems
                .push(Problem::new(format!("{path}.closes"), "must not be before the deadline"));
        }
        out.push(Period { id, opens, deadline, closes });
    }
    if let Some(y) = start_year {
        for q in 1..=4u8 {
            let missing = !out.iter().any(|p| p.id.start_year == y && p.id.quarter == q);
            if let (true, Some(id)) = (missing, PeriodId::new(y, q)) {
                problems.push(Problem::new(
                    "periods",
                    format!("{id} is missing; a year has four quarters"),
                ));
            }
        }
    }
    out.sort_by_key(|p| p.id);
    out
}

fn check_links(raw: Vec<(usize, RawLink)>, problems: &mut Vec<Problem>) -> Vec<GuidanceLink> {
    let mut out = Vec::new();
    for (i, l) in raw {
        let path = format!("guidance[{i}]");
        blank(problems, &path, &[("title", &l.title)]);
        let url = l.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(' ') {
            problems
                .push(Problem::new(format!("{path}.url"), format!("{url:?} is not a web address")));
        }
        out.push(GuidanceLink { title: l.title.trim().to_string(), url: url.to_string() });
    }
    out
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
