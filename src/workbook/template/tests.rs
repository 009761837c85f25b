//! Unit tests of the template writer: the bytes are read back (calamine for cells and sheet
//! visibility, the zip parts for data validation and protection) and checked as a user would.

use super::*;
use crate::collection::{Derived, GuidanceLink, Measure, Period, RuleText};
use crate::report::Severity;
use calamine::{Data, Reader, SheetVisible, Xlsx};
use chrono::{TimeZone, Utc};
use std::io::{Cursor, Read};

fn measure(id: &str, label: &str, required: bool) -> Measure {
    Measure {
        id: id.into(),
        label: label.into(),
        wording: format!("The number of {label} (full wording of {id})"),
        unit: "people".into(),
        required,
        period_basis: "during the reporting quarter".into(),
    }
}

fn definition() -> Definition {
    let ids = [
        ("KPI1", "people with depression and/or anxiety disorders", true),
        ("KPI2", "people referred for psychological therapies", true),
        ("KPI3a", "entered treatment after waiting more than 28 days", true),
        ("KPI3b", "waiting more than 28 days at the end of the quarter", true),
        ("KPI4", "people who entered psychological therapies", true),
        ("KPI5", "people who completed treatment", true),
        ("KPI6", "people moving to recovery", true),
        ("KPI6b", "completed treatment, not at caseness at the start", true),
        ("KPI7", "moved off sick pay or benefits", false),
    ];
    let at = |m, d| Utc.with_ymd_and_hms(2011, m, d, 0, 0, 0).single().expect("valid date");
    Definition {
        id: "iapt-kpi-2011-12".into(),
        title: "IAPT Key Performance Indicators Quarterly Return".into(),
        start_year: 2011,
        template_version: "2011-12.1".into(),
        measures: ids.iter().map(|(i, l, r)| measure(i, l, *r)).collect(),
        derived: vec![
            Derived {
                id: "access_rate".into(),
                label: "Access rate".into(),
                numerator: "KPI4".into(),
                denominator: vec![(1, "KPI1".into())],
                target: Some(0.0375),
                explanation: "Share of the estimated need that entered treatment.".into(),
            },
            Derived {
                id: "recovery_rate".into(),
                label: "Recovery rate".into(),
                numerator: "KPI6".into(),
                denominator: vec![(1, "KPI5".into()), (-1, "KPI6b".into())],
                target: Some(0.5),
                explanation: String::new(),
            },
        ],
        rules: vec![RuleText {
            id: "IAPT-E01".into(),
            severity: Severity::Error,
            message: "A required measure is blank".into(),
            guidance: "Enter a whole number; 0 if there were none.".into(),
        }],
        periods: vec![Period {
            id: PeriodId::new(2011, 1).expect("valid"),
            opens: at(7, 1),
            deadline: at(8, 1),
            closes: at(8, 15),
        }],
        guidance_links: vec![GuidanceLink {
            title: "IAPT KPI guidance 2011/12".into(),
            url: "https://www.example.nhs.test/iapt/kpi-guidance-2011-12.pdf".into(),
        }],
    }
}

fn leeds() -> Organisation {
    Organisation {
        code: "5N1".into(),
        name: "Leeds PCT".into(),
        aliases: vec!["Leeds".into()],
        submitters: vec![],
    }
}

fn q1() -> PeriodId {
    PeriodId::new(2011, 1).expect("valid")
}

fn open(bytes: &[u8]) -> Xlsx<Cursor<Vec<u8>>> {
    calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).expect("template opens")
}

fn text_at(range: &calamine::Range<Data>, row: u32, col: u32) -> String {
    match range.get_value((row, col)) {
        Some(Data::String(s)) => s.clone(),
        Some(Data::Empty) | None => String::new(),
        Some(other) => format!("{other:?}"),
    }
}

fn zip_part(bytes: &[u8], name: &str) -> String {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    let mut out = String::new();
    zip.by_name(name).expect("part present").read_to_string(&mut out).expect("utf-8 xml");
    out
}

#[test]
fn sheets_are_return_guidance_and_hidden_about_in_that_order() {
    let bytes = write_template(&definition(), q1(), None).expect("writes");
    let wb = open(&bytes);
    let sheets: Vec<(String, SheetVisible)> =
        wb.sheets_metadata().iter().map(|s| (s.name.clone(), s.visible)).collect();
    assert_eq!(
        sheets,
        vec![
            ("Return".to_string(), SheetVisible::Visible),
            ("Guidance".to_string(), SheetVisible::Visible),
            ("About".to_string(), SheetVisible::Hidden),
        ]
    );
}

#[test]
fn header_labels_in_column_a_with_org_and_period_prefilled_in_b() {
    let bytes = write_template(&definition(), q1(), Some(&leeds())).expect("writes");
    let range = open(&bytes).worksheet_range(RETURN_SHEET).expect("Return sheet");
    let got: Vec<(String, String)> = (0..6)
        .map(|i| {
            (text_at(&range, FIRST_HEADER_ROW + i, 0), text_at(&range, FIRST_HEADER_ROW + i, 1))
        })
        .collect();
    let want = [
        ("Organisation code", "5N1"),
        ("Organisation name", "Leeds PCT"),
        ("Reporting period", "Q1 2011/12"),
        ("Contact name", ""),
        ("Contact email", ""),
        ("Contact telephone", ""),
    ];
    let want: Vec<(String, String)> =
        want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn without_an_organisation_the_code_and_name_are_left_blank() {
    let bytes = write_template(&definition(), q1(), None).expect("writes");
    let range = open(&bytes).worksheet_range(RETURN_SHEET).expect("Return sheet");
    assert_eq!(text_at(&range, FIRST_HEADER_ROW, 1), "");
    assert_eq!(text_at(&range, FIRST_HEADER_ROW + 1, 1), "");
    assert_eq!(text_at(&range, FIRST_HEADER_ROW + 2, 1), "Q1 2011/12");
}

#[test]
fn measure_table_has_headings_and_one_empty_value_cell_per_measure() {
    let def = definition();
    let layout = ReturnLayout::for_definition(&def);
    let bytes = write_template(&def, q1(), Some(&leeds())).expect("writes");
    let range = open(&bytes).worksheet_range(RETURN_SHEET).expect("Return sheet");
    let headings: Vec<String> =
        (0..4).map(|c| text_at(&range, layout.table_header_row, c)).collect();
    assert_eq!(headings, ["KPI", "Description", "Value", "Comment"]);
    for (i, m) in def.measures.iter().enumerate() {
        let row = layout.first_measure_row + i as u32;
        assert_eq!(text_at(&range, row, 0), m.id);
        assert!(text_at(&range, row, 1).starts_with(&m.label), "row {row}");
        assert_eq!(text_at(&range, row, 2), "", "value cell of {} must start blank", m.id);
    }
    assert!(text_at(&range, layout.first_measure_row + 8, 1).ends_with("(optional)"));
    // Nothing in column A below the table that a reader could mistake for a measure row.
    let below = layout.first_measure_row + def.measures.len() as u32;
    assert_eq!(text_at(&range, below, 0), "");
}

#[test]
fn derived_rate_note_sits_above_the_table() {
    let def = definition();
    let layout = ReturnLayout::for_definition(&def);
    let bytes = write_template(&def, q1(), None).expect("writes");
    let range = open(&bytes).worksheet_range(RETURN_SHEET).expect("Return sheet");
    assert!(layout.derived_note_row < layout.table_header_row);
    assert_eq!(
        text_at(&range, layout.derived_note_row + 1, 0),
        "Access rate = KPI4 / KPI1; target 3.75%. Share of the estimated need that entered treatment."
    );
    assert_eq!(
        text_at(&range, layout.derived_note_row + 2, 0),
        "Recovery rate = KPI6 / (KPI5 − KPI6b); target 50%"
    );
}

#[test]
fn value_cells_take_whole_numbers_of_zero_or_more_with_messages() {
    let def = definition();
    let layout = ReturnLayout::for_definition(&def);
    let bytes = write_template(&def, q1(), None).expect("writes");
    let sheet = zip_part(&bytes, "xl/worksheets/sheet1.xml");
    let first = layout.first_measure_row + 1;
    let last = first + def.measures.len() as u32 - 1;
    let dv_start = sheet.find("<dataValidation ").expect("a data validation");
    let dv =
        &sheet[dv_start..sheet[dv_start..].find("</dataValidation>").expect("closed") + dv_start];
    assert!(dv.contains(r#"type="whole""#), "{dv}");
    assert!(dv.contains(r#"operator="greaterThanOrEqual""#), "{dv}");
    assert!(dv.contains(&format!(r#"sqref="C{first}:C{last}""#)), "{dv}");
    assert!(dv.contains("promptTitle=") && dv.contains("prompt="), "input message: {dv}");
    assert!(dv.contains("errorTitle=") && dv.contains("error="), "error message: {dv}");
    assert!(dv.contains("<formula1>0</formula1>"), "{dv}");
}

#[test]
fn return_sheet_is_protected_and_input_cells_are_unlocked() {
    let bytes = write_template(&definition(), q1(), None).expect("writes");
    let sheet = zip_part(&bytes, "xl/worksheets/sheet1.xml");
    assert!(sheet.contains("<sheetProtection"), "Return is protected");
    assert!(!sheet.contains("password="), "no password, so analysts can unprotect it");
    let styles = zip_part(&bytes, "xl/styles.xml");
    assert!(styles.contains(r#"locked="0""#), "some cell style is unlocked");
    assert!(styles.contains("FFFFF2CC"), "input cells carry the input fill");
}

#[test]
fn guidance_sheet_carries_the_years_wording_rules_and_links() {
    let def = definition();
    let bytes = write_template(&def, q1(), None).expect("writes");
    let range = open(&bytes).worksheet_range(GUIDANCE_SHEET).expect("Guidance sheet");
    let all: Vec<String> = range.cells().map(|(_, _, d)| d.to_string()).collect();
    for m in &def.measures {
        assert!(all.contains(&m.wording), "wording of {}", m.id);
    }
    assert!(all.contains(&"IAPT-E01".to_string()));
    assert!(all.contains(&def.rules[0].guidance));
    assert!(all.contains(&def.guidance_links[0].title));
    assert!(all.contains(&def.guidance_links[0].url));
}

#[test]
fn about_sheet_records_collection_year_version_and_period() {
    let bytes = write_template(&definition(), q1(), Some(&leeds())).expect("writes");
    let range = open(&bytes).worksheet_range(ABOUT_SHEET).expect("About sheet");
    let pairs: Vec<(String, String)> =
        (0..5).map(|r| (text_at(&range, r, 0), text_at(&range, r, 1))).collect();
    assert_eq!(pairs[0], ("Collection id".into(), "iapt-kpi-2011-12".into()));
    assert_eq!(pairs[1], ("Collection year".into(), "2011/12".into()));
    assert_eq!(pairs[2], ("Template version".into(), "2011-12.1".into()));
    assert_eq!(pairs[3], ("Reporting period".into(), "2011-12-Q1".into()));
    assert_eq!(pairs[4], ("Organisation code".into(), "5N1".into()));
}

#[test]
fn a_period_outside_the_collection_is_refused() {
    let other = PeriodId::new(2010, 4).expect("valid");
    let err = write_template(&definition(), other, None).expect_err("not in 2011/12");
    assert!(matches!(err, TemplateError::PeriodNotInCollection { .. }), "{err}");
    assert!(err.to_string().contains("2010-11-Q4"));
}
