//! IAPT-E10, IAPT-E11 and IAPT-W04.

use super::*;

#[test]
fn e10_organisation_code_missing_blank_unknown_or_not_the_subjects() {
    let r = good().clear("A3").clear("B3").report();
    assert_eq!(found(&r), one("IAPT-E10", None));
    assert!(message(&r, "IAPT-E10").starts_with("The return has no 'Organisation code' field"));

    let r = good().set("B3", text("   ")).report();
    assert_eq!(found(&r), one("IAPT-E10", Some("B3")));
    assert!(message(&r, "IAPT-E10").contains("(cell B3) is blank"));

    let r = good().set("B3", text("ZZ9")).report();
    assert_eq!(found(&r), one("IAPT-E10", Some("B3")));
    assert!(message(&r, "IAPT-E10").contains("\"ZZ9\", which is not the code of any organisation"));
    assert_eq!(r.organisation.as_deref(), Some("ZZ9"));

    let mut case = good();
    case.org = Some("5NY");
    let r = case.report();
    assert_eq!(found(&r), one("IAPT-E10", Some("B3")));
    assert_eq!(
        message(&r, "IAPT-E10"),
        "The Organisation code (cell B3) is 5N1 (Leeds PCT) but the email subject names 5NY (Bradford and Airedale Teaching PCT). Correct the code in the return, or send it with a subject naming the organisation the return is for."
    );
}

#[test]
fn e10_does_not_fire_for_the_same_code_in_another_case_or_without_a_subject() {
    let mut case = good().set("B3", text(" 5n1 "));
    case.org = Some("5n1");
    assert_eq!(found(&case.report()), vec![]);
    case.org = None;
    assert_eq!(found(&case.report()), vec![]);
}

#[test]
fn e11_period_missing_unrecognised_or_without_a_definition() {
    let r = good().clear("B5").report();
    assert_eq!(found(&r), one("IAPT-E11", Some("B5")));
    // Values are still read against the latest definition.
    assert_eq!(r.values["KPI1"], Some(68653));
    assert_eq!(r.period, None);

    let r = good().set("B5", text("June 2011")).report();
    assert_eq!(found(&r), one("IAPT-E11", Some("B5")));
    assert!(message(&r, "IAPT-E11").contains("\"June 2011\", which is not a period we recognise"));

    let r = good().set("B5", text("Q1 2009/10")).report();
    assert_eq!(found(&r), one("IAPT-E11", Some("B5")));
    assert!(message(&r, "IAPT-E11").contains("collected only for 2010/11 and 2011/12"));
    assert_eq!(r.period.as_deref(), Some("2009-10-Q1"));
    assert_eq!(r.values.len(), 9);
}

#[test]
fn e11_period_not_the_one_submitted_for() {
    let mut case = good();
    case.period = PeriodId::parse("Q2 2011/12");
    let r = case.report();
    assert_eq!(found(&r), one("IAPT-E11", Some("B5")));
    assert!(message(&r, "IAPT-E11")
        .contains("is Q1 2011/12 but this return was submitted for Q2 2011/12"));
    case.period = PeriodId::parse("2011-12-Q1");
    assert_eq!(found(&case.report()), vec![]);
}

#[test]
fn e11_not_open_and_closed_only_when_now_is_given() {
    let r = good().now("2011-06-30T12:00:00Z").report();
    assert_eq!(found(&r), one("IAPT-E11", Some("B5")));
    assert_eq!(
        message(&r, "IAPT-E11"),
        "The Reporting period (cell B5) is Q1 2011/12, which opens for returns on 1 July 2011; this return arrived on 30 June 2011. Send it again once the period opens, or correct the period if it is wrong."
    );
    let r = good().now("2011-11-12T09:00:00Z").report();
    assert_eq!(found(&r), one("IAPT-E11", Some("B5")));
    assert!(message(&r, "IAPT-E11").contains("closed on 11 November 2011"));
    assert!(r.findings[0].guidance.contains("Data Collection Team"));
    // Without a moment, windows are not judged.
    assert_eq!(found(&good().report()), vec![]);
}

#[test]
fn w04_late_but_accepted_and_not_before_the_deadline() {
    let r = good().now("2011-07-29T17:30:00+01:00").report();
    assert_eq!(found(&r), one("IAPT-W04", Some("B5")));
    assert_eq!(r.status, Status::Valid);
    assert!(message(&r, "IAPT-W04").contains(
        "arrived on 29 July 2011, after the deadline of 29 July 2011, so it is marked late"
    ));
    assert_eq!(found(&good().now("2011-07-29T16:59:00+01:00").report()), vec![]);
}

#[test]
fn previous_quarter_can_be_revised_while_the_next_is_open() {
    // Q1 2011/12's revision window stays open after Q2 opens on 3 October 2011.
    let r = good().now("2011-10-10T10:00:00+01:00").report();
    assert_eq!(found(&r), one("IAPT-W04", Some("B5")));
}

#[test]
fn a_2010_11_return_is_judged_by_the_2010_11_definition() {
    let r = good().set("B5", text("2010/11 Q4")).now("2011-04-20T10:00:00+01:00").report();
    assert_eq!(found(&r), vec![]);
    assert_eq!(r.period.as_deref(), Some("2010-11-Q4"));
    // Judged against 2010/11's own window and rule texts.
    let r = good().set("B5", text("2010/11 Q4")).now("2011-08-13T10:00:00+01:00").report();
    assert_eq!(found(&r), one("IAPT-E11", Some("B5")));
    assert!(message(&r, "IAPT-E11").contains("closed on 12 August 2011"));
    assert!(r.findings[0].guidance.contains("Q1 2010/11"), "{}", r.findings[0].guidance);
}
