//! Tests of locating the return: the template layout, moved tables, odd id spellings, the csv
//! form, unknown and duplicated ids.

use super::*;
use crate::workbook::grid::Format;

const IDS: &[&str] = &["KPI1", "KPI2", "KPI3a", "KPI3b", "KPI4", "KPI5", "KPI6", "KPI6b", "KPI7"];

fn at(a1: &str) -> CellRef {
    CellRef::parse_a1(a1).expect("test cell")
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

fn sheet(cells: &[(&str, Cell)]) -> Sheet {
    let mut s = Sheet::new("Return", true);
    for (a1, c) in cells {
        s.cells.insert(at(a1), c.clone());
    }
    s
}

#[test]
fn template_layout_is_found() {
    let s = sheet(&[
        ("A1", text("IAPT KPI Quarterly Return")),
        ("A3", text("Organisation code")),
        ("B3", text("5N1")),
        ("A4", text("Reporting period")),
        ("B4", text("Q1 2011/12")),
        ("A8", text("KPI")),
        ("B8", text("Description")),
        ("C8", text("Value")),
        ("D8", text("Comment")),
        ("A9", text("KPI1")),
        ("C9", Cell::Number(68653.0)),
        ("A10", text("KPI2")),
        ("C10", Cell::Number(900.0)),
        ("D10", text("  new service opened  ")),
    ]);
    let l = locate_sheet(&s, IDS);
    assert_eq!(l.sheet, "Return");
    let code = l.header(HeaderField::OrganisationCode).expect("code");
    assert_eq!((code.at, code.text()), (at("B3"), Some("5N1".to_string())));
    assert_eq!(
        l.header(HeaderField::ReportingPeriod).and_then(|h| h.text()),
        Some("Q1 2011/12".into())
    );
    assert!(l.header(HeaderField::ContactEmail).is_none());
    assert_eq!(
        l.table,
        Some(Table { header_row: Some(7), id_col: 0, value_col: 2, comment_col: Some(3) })
    );
    let kpi1 = l.measure("KPI1").expect("KPI1");
    assert_eq!((kpi1.value_at, kpi1.value.clone()), (at("C9"), Some(Cell::Number(68653.0))));
    assert_eq!(kpi1.comment, None);
    assert_eq!(
        l.measure("KPI2").and_then(|m| m.comment.clone()),
        Some("new service opened".into())
    );
    assert!(l.measure("KPI3a").is_none());
}

#[test]
fn moved_table_and_odd_spellings_in_any_order() {
    let s = sheet(&[
        ("A2", text("  ORGANISATION CODE: ")),
        ("B2", text("5n1")),
        ("D20", text("kpi")),
        ("E20", text("What it counts")),
        ("G20", text("Value (number)")),
        ("H20", text("Comments")),
        ("D21", text("kpi6B")),
        ("G21", Cell::Number(40.0)),
        ("D22", text("KPI 3b")),
        ("G22", Cell::Number(7.0)),
        ("D23", text("KPI-3a")),
        ("D24", text("KPI2 (referrals)")),
        ("G24", Cell::Number(12.0)),
        ("D26", text("Notes: figures are provisional")),
    ]);
    let l = locate_sheet(&s, IDS);
    assert_eq!(l.header(HeaderField::OrganisationCode).and_then(|h| h.text()), Some("5n1".into()));
    let t = l.table.expect("table");
    assert_eq!((t.id_col, t.value_col, t.comment_col), (3, 6, Some(7)));
    let got: Vec<(&str, &str, String)> = l
        .measures
        .iter()
        .map(|m| (m.id.as_str(), m.written.as_str(), m.value_at.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("KPI6b", "kpi6B", "G21".to_string()),
            ("KPI3b", "KPI 3b", "G22".to_string()),
            ("KPI3a", "KPI-3a", "G23".to_string()),
            ("KPI2", "KPI2 (referrals)", "G24".to_string()),
        ]
    );
    assert_eq!(l.measure("KPI3a").map(|m| m.value.clone()), Some(None));
    assert!(l.unknown.is_empty() && l.duplicates.is_empty());
}

#[test]
fn csv_two_column_form_has_values_in_column_b() {
    let s = sheet(&[
        ("A1", text("Organisation code")),
        ("B1", text("5N1")),
        ("A2", text("Reporting period")),
        ("B2", text("2011-12-Q1")),
        ("A3", text("KPI1")),
        ("B3", text("68653")),
        ("A4", text("KPI4")),
        ("B4", Cell::Number(2574.0)),
        ("C4", text("explained")),
    ]);
    let l = locate_sheet(&s, IDS);
    assert_eq!(l.table.map(|t| (t.header_row, t.value_col)), Some((None, 1)));
    assert_eq!(l.measure("KPI1").and_then(|m| m.value.clone()), Some(text("68653")));
    assert_eq!(l.measure("KPI4").and_then(|m| m.comment.clone()), Some("explained".into()));
    assert_eq!(l.measures.len(), 2);
}

#[test]
fn unknown_and_duplicated_ids_are_reported() {
    let s = sheet(&[
        ("A1", text("KPI")),
        ("B1", text("Value")),
        ("A2", text("KPI1")),
        ("B2", Cell::Number(1.0)),
        ("A3", text("KPI8")),
        ("A4", text("kpi 1")),
        ("B4", Cell::Number(2.0)),
    ]);
    let l = locate_sheet(&s, IDS);
    assert_eq!(l.unknown, vec![UnknownRow { written: "KPI8".into(), at: at("A3") }]);
    assert_eq!(
        l.duplicates,
        vec![DuplicateRow { id: "KPI1".into(), first: at("A2"), again: at("A4") }]
    );
    assert_eq!(l.measure("KPI1").and_then(|m| m.value.clone()), Some(Cell::Number(1.0)));
}

#[test]
fn no_table_on_a_sheet_that_is_not_a_return() {
    let s = sheet(&[("A1", text("Invoice")), ("A2", text("KPI")), ("B2", text("Amount"))]);
    let l = locate_sheet(&s, IDS);
    assert_eq!(l.table, None);
    assert!(l.measures.is_empty());
}

#[test]
fn first_visible_sheet_holds_the_return() {
    let mut hidden = sheet(&[("A1", text("KPI")), ("B1", text("Value")), ("A2", text("KPI1"))]);
    hidden.name = "About".into();
    hidden.visible = false;
    let mut shown = sheet(&[("A1", text("KPI1")), ("B1", Cell::Number(5.0))]);
    shown.name = "Mine".into();
    let wb = Workbook { format: Format::Xlsx, sheets: vec![hidden.clone(), shown] };
    let l = locate(&wb, IDS).expect("a visible sheet");
    assert_eq!(l.sheet, "Mine");
    assert_eq!(l.measure("KPI1").map(|m| m.value_at), Some(at("B1")));
    let none = Workbook { format: Format::Xlsx, sheets: vec![hidden] };
    assert!(locate(&none, IDS).is_none());
}

#[test]
fn merged_label_takes_its_value_after_the_merge() {
    let mut s = sheet(&[("A1", text("Organisation code")), ("C1", text("5N1"))]);
    s.merged.push((at("A1"), at("B1")));
    let l = locate_sheet(&s, IDS);
    assert_eq!(l.header(HeaderField::OrganisationCode).and_then(|h| h.text()), Some("5N1".into()));
}

#[test]
fn measure_id_spellings() {
    for (written, want) in [
        ("KPI1", Some("KPI1")),
        ("KPI 3b", Some("KPI3b")),
        ("kpi6B", Some("KPI6b")),
        ("KPI-3a", Some("KPI3a")),
        (" KPI_6 b ", Some("KPI6b")),
        ("KPI3b:", Some("KPI3b")),
        ("KPI 2 people referred", Some("KPI2")),
        ("KPI", None),
        ("KPI3bc", None),
        ("KPI3x2", None),
        ("KPIs", None),
        ("Organisation code", None),
    ] {
        assert_eq!(normalise_measure_id(written).as_deref(), want, "{written:?}");
    }
}

#[test]
fn unknown_rows_are_counted_but_only_the_first_few_kept() {
    let mut s = sheet(&[("A1", text("KPI")), ("B1", text("Value"))]);
    for row in 1..=500u32 {
        s.cells.insert(CellRef::new(row, 0), text("KPI1"));
        s.cells.insert(CellRef::new(row + 1000, 0), text("KPI42"));
    }
    let l = locate_sheet(&s, IDS);
    assert_eq!((l.duplicates_total, l.duplicates.len()), (499, MAX_LISTED));
    assert_eq!((l.unknown_total, l.unknown.len()), (500, MAX_LISTED));
    assert_eq!(l.measure("KPI1").map(|m| m.id_at), Some(at("A2")));
}
