//! IAPT-E01 … E06 and IAPT-W01 … W03.

use super::*;

#[test]
fn e01_blank_or_missing_required_measure() {
    let r = good().clear(&cell_of("KPI5")).report();
    assert_eq!(found(&r), one("IAPT-E01", Some("C16")));
    assert_eq!(
        message(&r, "IAPT-E01"),
        "KPI5 (cell C16) is blank. Enter the number of people who completed treatment; enter 0 if there were none."
    );
    assert_eq!(r.values["KPI5"], None);
    assert_eq!(r.findings[0].measure.as_deref(), Some("KPI5"));

    let r = good().set(&cell_of("KPI2"), text("  ")).report();
    assert_eq!(found(&r), one("IAPT-E01", Some("C12")));

    let r = good().clear("A16").clear("B16").clear("C16").report();
    assert_eq!(found(&r), one("IAPT-E01", None));
    assert!(message(&r, "IAPT-E01").contains("has no row in the measure table"));
}

#[test]
fn e01_does_not_fire_for_optional_kpi7() {
    let r = good().clear(&cell_of("KPI7")).report();
    assert_eq!(found(&r), vec![]);
    assert_eq!(r.values["KPI7"], None);
    let r = good().clear("A19").clear("B19").clear("C19").report();
    assert_eq!(found(&r), vec![]);
}

#[test]
fn e02_every_kind_of_value_that_is_not_a_whole_number() {
    for (cell, says) in [
        (text("n/a"), "is the text \"n/a\""),
        (Cell::Number(12.5), "is 12.5, which is not a whole number"),
        (Cell::Number(-3.0), "is -3, a negative number"),
        (Cell::Error("#DIV/0!".into()), "is the error value #DIV/0!"),
        (Cell::Error("#SPILL!".into()), "is the error value #SPILL!"),
        (Cell::FormulaNoValue("SUM(C1:C2)".into()), "formula =SUM(C1:C2) with no saved result"),
        (Cell::Bool(false), "is FALSE"),
        (Cell::DateTime(40725.0), "formatted as a date"),
    ] {
        let r = good().set(&cell_of("KPI2"), cell.clone()).report();
        assert_eq!(found(&r), one("IAPT-E02", Some("C12")), "{cell:?}");
        let m = message(&r, "IAPT-E02");
        assert!(m.starts_with("KPI2 (cell C12)") && m.contains(says), "{m}");
        assert_eq!(r.values["KPI2"], None);
        assert_eq!(r.status, Status::Invalid);
    }
}

#[test]
fn w03_number_stored_as_text_is_read_as_the_number() {
    let r = good().set(&cell_of("KPI4"), text(" 700 ")).report();
    assert_eq!(found(&r), one("IAPT-W03", Some("C15")));
    assert!(message(&r, "IAPT-W03")
        .contains("was stored as text (\"700\"); it was read as the number 700"));
    assert_eq!(r.values["KPI4"], Some(700));
    assert_eq!(r.status, Status::Valid);
    assert!(r.derived["access_rate"].is_some());
}

#[test]
fn e03_kpi6b_above_kpi5_and_e04_is_judged_independently() {
    let r = good().value("KPI6b", 401.0).report();
    // KPI5 − KPI6b is then negative, so no KPI6 fits either: both rules are reported (SPEC §2).
    let mut want = one("IAPT-E03", Some("C18"));
    want.extend(one("IAPT-E04", Some("C17")));
    let mut got = found(&r);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(
        message(&r, "IAPT-E03").starts_with("KPI6b (cell C18) is 401 but KPI5 (cell C16) is 400")
    );
    assert_eq!(found(&good().value("KPI6b", 400.0).value("KPI6", 0.0).report()), vec![]);
}

#[test]
fn e04_kpi6_above_kpi5_minus_kpi6b() {
    let r = good().value("KPI5", 1000.0).value("KPI6b", 600.0).value("KPI6", 450.0).report();
    assert_eq!(found(&r), one("IAPT-E04", Some("C17")));
    assert_eq!(
        message(&r, "IAPT-E04"),
        "KPI6 (cell C17) is 450 but KPI5 − KPI6b is 400 (1000 − 600): people moving to recovery cannot exceed those who completed treatment at caseness. Check KPI5, KPI6 and KPI6b."
    );
    assert_eq!(r.derived["recovery_rate"], None, "no rate from figures that fail a check");
    assert!(r.derived["access_rate"].is_some());
    let edge = good().value("KPI5", 1000.0).value("KPI6b", 600.0).value("KPI6", 400.0);
    assert_eq!(found(&edge.report()), vec![]);
}

#[test]
fn e04_is_not_checked_when_an_input_is_unreadable() {
    let r = good().value("KPI6", 9999.0).set(&cell_of("KPI6b"), text("?")).report();
    assert_eq!(found(&r), one("IAPT-E02", Some("C18")));
}

#[test]
fn e05_kpi3a_above_kpi4() {
    let r = good().value("KPI3a", 701.0).report();
    assert_eq!(found(&r), one("IAPT-E05", Some("C13")));
    assert!(message(&r, "IAPT-E05").contains("KPI3a cannot exceed KPI4"));
    assert_eq!(found(&good().value("KPI3a", 700.0).report()), vec![]);
}

#[test]
fn e06_kpi7_above_kpi5() {
    let r = good().value("KPI7", 401.0).report();
    assert_eq!(found(&r), one("IAPT-E06", Some("C19")));
    assert_eq!(found(&good().value("KPI7", 400.0).report()), vec![]);
}

#[test]
fn w01_kpi1_differs_from_the_last_accepted_return() {
    let mut case = good();
    case.history.accept("5N1", prior("Q4 2010/11", "IAPT-2010-11-Q4-5N1-3", &[("KPI1", 68000)]));
    let r = case.report();
    assert_eq!(found(&r), one("IAPT-W01", Some("C11")));
    assert!(message(&r, "IAPT-W01").starts_with(
        "KPI1 (cell C11) is 68653 but your last accepted return (Q4 2010/11, receipt IAPT-2010-11-Q4-5N1-3) gave 68000."
    ));
    // Another organisation's history does not count.
    let mut other = good();
    other.history.accept("5NY", prior("Q4 2010/11", "x", &[("KPI1", 1)]));
    assert_eq!(found(&other.report()), vec![]);
}

#[test]
fn w02_kpi2_or_kpi4_moved_by_more_than_half_without_a_comment() {
    let mut case = good();
    case.history.accept("5N1", prior("Q4 2010/11", "r", &[("KPI2", 500), ("KPI4", 1500)]));
    let r = case.report();
    assert_eq!(
        found(&r),
        vec![
            ("IAPT-W02".to_string(), Some("C12".to_string())),
            ("IAPT-W02".to_string(), Some("C15".to_string())),
        ]
    );
    assert_eq!(
        r.findings[0].message,
        "KPI2 (cell C12) is 900, up 80% on the 500 in your accepted return for Q4 2010/11, and has no comment. If the figure is right, explain the change in the Comment cell (D12); otherwise correct it."
    );
    assert!(r.findings[1].message.contains("down 53% on the 1500"));

    // A comment on the row answers it; a 50% move exactly is not more than half.
    let mut commented = good().set("D12", text("new service opened")).value("KPI4", 750.0);
    commented.history.accept("5N1", prior("Q4 2010/11", "r", &[("KPI2", 500), ("KPI4", 500)]));
    assert_eq!(found(&commented.report()), vec![]);
}

#[test]
fn w02_compares_with_the_previous_quarter_only() {
    let mut case = good();
    case.history.accept("5N1", prior("Q3 2010/11", "r", &[("KPI2", 100)]));
    assert_eq!(found(&case.report()), vec![]);
}
