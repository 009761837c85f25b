//! Checks across measures: the table itself (IAPT-E20), the consistency rules (IAPT-E03 … E06),
//! comparisons with earlier accepted returns (IAPT-W01, W02), and the derived rates. PURE.

use super::history::History;
use super::Findings;
use crate::collection::{Derived, PeriodId};
use crate::workbook::locate::Located;
use crate::workbook::CellRef;
use std::collections::BTreeMap;

type Values = BTreeMap<String, Option<i64>>;

/// IAPT-E20: no table, an empty table, or rows that make it ambiguous. False when there is no
/// usable table at all.
pub(super) fn table_found(located: &Located, f: &mut Findings) -> bool {
    let ids = f.def.map_or(String::new(), |d| {
        d.measures.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
    });
    let Some(table) = located.table else {
        f.push("IAPT-E20", None, None, format!(
            "No measure table was found on the sheet '{}', so this does not look like an IAPT KPI return. Use the return template: a row with 'KPI' in the first column and 'Value' above the figures, then one row for each measure ({ids}).",
            located.sheet
        ));
        return false;
    };
    if located.measures.is_empty() && located.unknown.is_empty() {
        let row = table.header_row.map_or(String::new(), |r| format!(" (row {})", r + 1));
        f.push("IAPT-E20", None, None, format!(
            "The measure table{row} has no measure rows. Put each measure's id ({ids}) in the KPI column with its figure in the Value column."
        ));
        return false;
    }
    let year = f
        .def
        .map_or(String::new(), |d| format!(" {}", d.id.replace("iapt-kpi-", "").replace('-', "/")));
    for u in &located.unknown {
        f.push("IAPT-E20", None, Some(u.at), format!(
            "Cell {} holds the id {}, which is not a measure of the{year} return. Correct the id (the measures are {ids}) or delete the row.",
            u.at, crate::echo::quoted(&u.written, crate::echo::CELL_MAX)
        ));
    }
    for d in &located.duplicates {
        f.push("IAPT-E20", Some(&d.id), Some(d.again), format!(
            "{} appears twice, in cells {} and {}, so we cannot tell which figure is meant. Delete one of the two rows.",
            d.id, d.first, d.again
        ));
    }
    let more = (located.unknown_total - located.unknown.len())
        + (located.duplicates_total - located.duplicates.len());
    if more > 0 {
        f.push("IAPT-E20", None, None, format!(
            "{more} more rows have ids that are unknown or repeated (only the first {} of each are listed). Keep one row for each measure ({ids}) and delete the others.",
            crate::workbook::locate::MAX_LISTED
        ));
    }
    true
}

fn value(values: &Values, id: &str) -> Option<i64> {
    values.get(id).copied().flatten()
}

fn cell(located: &Located, id: &str) -> Option<CellRef> {
    located.measure(id).map(|m| m.value_at)
}

fn named(located: &Located, id: &str) -> String {
    cell(located, id).map_or(id.to_string(), |c| format!("{id} (cell {c})"))
}

/// IAPT-E03 … E06, each only when the values it compares were read.
pub(super) fn cross_checks(located: &Located, values: &Values, f: &mut Findings) {
    let v = |id| value(values, id);
    if let (Some(k5), Some(k6b)) = (v("KPI5"), v("KPI6b")) {
        if k6b > k5 {
            f.push("IAPT-E03", Some("KPI6b"), cell(located, "KPI6b"), format!(
                "{} is {k6b} but {} is {k5}: people who completed treatment and were not at caseness at initial assessment are part of all who completed treatment, so KPI6b cannot exceed KPI5. Check KPI5 and KPI6b.",
                named(located, "KPI6b"), named(located, "KPI5")
            ));
        }
        // Independent of E03 (SPEC §2 lists them separately): with KPI6b > KPI5 no KPI6 fits.
        if let Some(k6) = v("KPI6").filter(|k6| *k6 > k5 - k6b) {
            f.push("IAPT-E04", Some("KPI6"), cell(located, "KPI6"), format!(
                "{} is {k6} but KPI5 − KPI6b is {} ({k5} − {k6b}): people moving to recovery cannot exceed those who completed treatment at caseness. Check KPI5, KPI6 and KPI6b.",
                named(located, "KPI6"), k5 - k6b
            ));
        }
    }
    if let (Some(k3a), Some(k4)) = (v("KPI3a"), v("KPI4")) {
        if k3a > k4 {
            f.push("IAPT-E05", Some("KPI3a"), cell(located, "KPI3a"), format!(
                "{} is {k3a} but {} is {k4}: people who entered treatment after waiting more than 28 days are part of all who entered treatment, so KPI3a cannot exceed KPI4. Check KPI3a and KPI4.",
                named(located, "KPI3a"), named(located, "KPI4")
            ));
        }
    }
    if let (Some(k7), Some(k5)) = (v("KPI7"), v("KPI5")) {
        if k7 > k5 {
            f.push("IAPT-E06", Some("KPI7"), cell(located, "KPI7"), format!(
                "{} is {k7} but {} is {k5}: people moving off sick pay or benefits are counted among those who completed treatment, so KPI7 cannot exceed KPI5. Check KPI5 and KPI7, or leave KPI7 blank.",
                named(located, "KPI7"), named(located, "KPI5")
            ));
        }
    }
}

/// IAPT-W01 (KPI1 changed since the last accepted return) and IAPT-W02 (KPI2 or KPI4 moved by
/// more than half since the previous quarter, with no comment).
pub(super) fn history(
    history: &dyn History,
    org: &str,
    period: Option<PeriodId>,
    located: &Located,
    values: &Values,
    f: &mut Findings,
) {
    if let (Some(prior), Some(k1)) = (history.last_accepted(org), value(values, "KPI1")) {
        if let Some(old) = value(&prior.values, "KPI1").filter(|old| *old != k1) {
            f.push("IAPT-W01", Some("KPI1"), cell(located, "KPI1"), format!(
                "{} is {k1} but your last accepted return ({}, receipt {}) gave {old}. KPI1 is the local estimate and normally stays the same all year; if the change is intended no action is needed, otherwise correct it and resubmit.",
                named(located, "KPI1"), prior.period.label(), prior.receipt
            ));
        }
    }
    let Some(prior) = period.and_then(|p| history.accepted(org, p.previous())) else { return };
    for id in ["KPI2", "KPI4"] {
        let Some(row) = located.measure(id) else { continue };
        let (Some(new), Some(old)) = (value(values, id), value(&prior.values, id)) else {
            continue;
        };
        let moved = if old == 0 { new > 0 } else { (new - old).abs() * 2 > old };
        if !moved || row.comment.is_some() {
            continue;
        }
        let change = if old == 0 {
            format!("up from {old}")
        } else {
            let pct = ((new - old) as f64 / old as f64 * 100.0).abs().round();
            format!("{} {pct}% on the {old}", if new > old { "up" } else { "down" })
        };
        let comment = row
            .comment_at
            .map_or("the Comment column".to_string(), |c| format!("the Comment cell ({c})"));
        f.push("IAPT-W02", Some(id), Some(row.value_at), format!(
            "{id} (cell {}) is {new}, {change} in your accepted return for {}, and has no comment. If the figure is right, explain the change in {comment}; otherwise correct it.",
            row.value_at, prior.period.label()
        ));
    }
}

/// A derived rate, when the numerator and every denominator term were read and the denominator
/// is above zero.
pub(super) fn derived_rate(d: &Derived, values: &Values) -> Option<f64> {
    let numerator = value(values, &d.numerator)?;
    let mut denominator = 0i64;
    for (sign, id) in &d.denominator {
        denominator += i64::from(*sign) * value(values, id)?;
    }
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}
