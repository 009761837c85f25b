//! The good return, the report's shape, E20, E21 and ordering.

use super::*;

#[test]
fn good_return_is_valid_with_every_value_and_both_rates() {
    let r = good().report();
    assert_eq!(found(&r), vec![]);
    assert_eq!(r.status, Status::Valid);
    assert_eq!(r.organisation.as_deref(), Some("5N1"));
    assert_eq!(r.period.as_deref(), Some("2011-12-Q1"));
    assert_eq!(r.values.len(), 9);
    for (id, v) in ROWS {
        assert_eq!(r.values[id], Some(v as i64), "{id}");
    }
    let access = r.derived["access_rate"].expect("access rate");
    assert!((access - 700.0 / 68653.0).abs() < 1e-12);
    let recovery = r.derived["recovery_rate"].expect("recovery rate");
    assert!((recovery - 150.0 / 340.0).abs() < 1e-12);
}

#[test]
fn good_return_is_on_time_inside_its_window_and_judged_with_history() {
    let mut case = good().now("2011-07-20T10:00:00+01:00");
    case.history.accept("5N1", prior("Q4 2010/11", "IAPT-2010-11-Q4-5N1-1", &[("KPI2", 800)]));
    assert_eq!(found(&case.report()), vec![]);
}

#[test]
fn organisation_is_upper_cased_and_the_csv_form_validates() {
    let mut s = Sheet::new("return", true);
    let rows = [("Organisation code", text("5n1")), ("Reporting period", text("2011-12-Q1"))];
    for (i, (label, v)) in rows.into_iter().enumerate() {
        s.cells.insert(CellRef::new(i as u32, 0), text(label));
        s.cells.insert(CellRef::new(i as u32, 1), v);
    }
    for (i, (id, v)) in ROWS.iter().enumerate() {
        s.cells.insert(CellRef::new(i as u32 + 2, 0), text(id));
        s.cells.insert(CellRef::new(i as u32 + 2, 1), Cell::Number(*v));
    }
    let case = Case { sheet: s, ..good() };
    let r = case.report();
    assert_eq!(found(&r), vec![]);
    assert_eq!(r.organisation.as_deref(), Some("5N1"));
    assert_eq!(r.values["KPI6b"], Some(60));
}

#[test]
fn e21_unreadable_file_reports_the_read_error_and_null_values() {
    let case = good();
    let err = ReadError::Encrypted;
    let r = run(&case.with(Err(&err)));
    assert_eq!(found(&r), one("IAPT-E21", None));
    assert_eq!(r.findings[0].message, err.to_string());
    assert!(r.findings[0].guidance.contains(".xlsx"), "guidance from the definition");
    assert_eq!(r.status, Status::Invalid);
    assert_eq!(r.values.len(), 9);
    assert!(r.values.values().all(Option::is_none));
    assert!(r.derived.values().all(Option::is_none));
}

#[test]
fn e20_a_spreadsheet_that_is_not_a_return() {
    let mut s = Sheet::new("Invoice", true);
    s.cells.insert(CellRef::new(0, 0), text("Organisation code"));
    s.cells.insert(CellRef::new(1, 0), text("Amount due"));
    let r = Case { sheet: s, ..good() }.report();
    assert_eq!(found(&r), one("IAPT-E20", None));
    assert!(message(&r, "IAPT-E20").contains("'Invoice'"));
    assert!(r.values.values().all(Option::is_none));
}

#[test]
fn e20_table_header_without_rows_and_hidden_sheets() {
    let mut case = good();
    case.sheet.cells.retain(|at, _| at.row < 10);
    assert_eq!(found(&case.report()), one("IAPT-E20", None));
    let mut hidden = good();
    hidden.sheet.visible = false;
    let r = hidden.report();
    assert_eq!(found(&r), one("IAPT-E20", None));
    assert!(message(&r, "IAPT-E20").contains("no visible sheet"));
}

#[test]
fn e20_unknown_and_duplicated_ids() {
    let r = good()
        .set("A20", text("KPI8"))
        .set("C20", Cell::Number(3.0))
        .set("A21", text("kpi 4"))
        .report();
    assert_eq!(
        found(&r),
        vec![
            ("IAPT-E20".to_string(), Some("A20".to_string())),
            ("IAPT-E20".to_string(), Some("A21".to_string())),
        ]
    );
    assert!(
        message(&r, "IAPT-E20").contains("\"KPI8\", which is not a measure of the 2011/12 return")
    );
    assert!(r.findings[1].message.starts_with("KPI4 appears twice, in cells A15 and A21"));
}

#[test]
fn findings_are_errors_first_then_warnings_each_in_sheet_order() {
    let r = good()
        .now("2011-08-05T12:00:00+01:00")
        .set(&cell_of("KPI2"), text("900"))
        .set(&cell_of("KPI7"), text("lots"))
        .value("KPI3a", 2.5)
        .clear("B3")
        .report();
    let rules: Vec<(&str, Option<&str>)> =
        r.findings.iter().map(|f| (f.rule.as_str(), f.cell.as_deref())).collect();
    assert_eq!(
        rules,
        vec![
            ("IAPT-E10", Some("B3")),
            ("IAPT-E02", Some("C13")),
            ("IAPT-E02", Some("C19")),
            ("IAPT-W04", Some("B5")),
            ("IAPT-W03", Some("C12")),
        ]
    );
    assert!(r.findings.iter().all(|f| f.sheet.as_deref() == Some("Return")));
}

#[test]
fn derived_rates_need_valid_inputs_and_a_positive_denominator() {
    let r = good()
        .set(&cell_of("KPI1"), text("unknown"))
        .value("KPI5", 60.0)
        .value("KPI6", 0.0)
        .report();
    assert_eq!(r.derived["access_rate"], None);
    assert_eq!(r.derived["recovery_rate"], None, "KPI5 − KPI6b is 0");
    let r = good().value("KPI6", 0.0).report();
    assert_eq!(r.derived["recovery_rate"], Some(0.0));
}

#[test]
fn e20_a_sheet_full_of_unknown_ids_gives_a_bounded_report() {
    let mut case = good();
    for row in 100..100_100u32 {
        case.sheet.cells.insert(CellRef::new(row, 0), text("KPI99"));
    }
    let r = case.report();
    let limit = crate::workbook::locate::MAX_LISTED;
    assert_eq!(r.findings.len(), limit + 1);
    assert!(r.findings.iter().all(|f| f.rule == "IAPT-E20"));
    assert!(r.findings[0].message.starts_with(&format!("{} more rows", 100_000 - limit)));
}
