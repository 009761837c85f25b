//! The header checks: the organisation code (IAPT-E10) and the reporting period with its
//! window (IAPT-E11, IAPT-W04). PURE: the moment of arrival is given.

use super::{Findings, Input};
use crate::collection::{PeriodId, Window};
use crate::echo;
use crate::workbook::locate::{HeaderField, HeaderValue, Located};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};

/// Where a header field's problem is reported: its value cell when the label is there.
fn missing(
    f: &mut Findings,
    rule: &str,
    field: HeaderField,
    found: Option<&HeaderValue>,
    what: &str,
) {
    match found {
        None => f.push(rule, None, None, format!(
            "The return has no '{label}' field. Put the label '{label}' in column A and {what} in column B next to it.",
            label = field.label()
        )),
        Some(h) => f.push(rule, None, Some(h.at), format!(
            "The {} (cell {}) is blank. Enter {what}.",
            field.label(),
            h.at
        )),
    }
}

/// IAPT-E10. Returns the code when it is a registered organisation's.
pub(super) fn organisation(input: &Input, located: &Located, f: &mut Findings) -> Option<String> {
    let field = HeaderField::OrganisationCode;
    let found = located.header(field);
    let what = "your PCT's ODS code, for example 5N1 for Leeds PCT";
    let Some(code) = found.and_then(|h| h.text()) else {
        missing(f, "IAPT-E10", field, found, what);
        return None;
    };
    let at = found.map(|h| h.at);
    let cell = at.map_or(String::new(), |a| format!(" (cell {a})"));
    let Some(org) = input.registry.get(&code) else {
        f.push("IAPT-E10", None, at, format!(
            "The Organisation code{cell} is {}, which is not the code of any organisation in this collection. Enter {what}.",
            echo::quoted(&code, echo::CELL_MAX)
        ));
        return None;
    };
    if let Some(expected) =
        input.expected_org.map(str::trim).filter(|e| !e.eq_ignore_ascii_case(&org.code))
    {
        let named = input
            .registry
            .get(expected)
            .map_or(expected.to_string(), |o| format!("{} ({})", o.code, o.name));
        let message = match input.expected_from {
            super::ExpectedFrom::Subject => format!(
                "The Organisation code{cell} is {} ({}) but the email subject names {named}. Correct the code in the return, or send it with a subject naming the organisation the return is for.",
                org.code, org.name
            ),
            super::ExpectedFrom::CommandLine => format!(
                "The Organisation code{cell} is {} ({}) but the return was checked for {named} (--org). Correct the code in the return, or check it for the organisation it is for.",
                org.code, org.name
            ),
        };
        f.push("IAPT-E10", None, at, message);
    }
    Some(org.code.clone())
}

/// IAPT-E11 and IAPT-W04. Returns the period when it is recognised.
pub(super) fn period(input: &Input, located: &Located, f: &mut Findings) -> Option<PeriodId> {
    let field = HeaderField::ReportingPeriod;
    let found = located.header(field);
    let what = "the quarter the return is for, written like Q1 2011/12";
    let Some(text) = found.and_then(|h| h.text()) else {
        missing(f, "IAPT-E11", field, found, what);
        return None;
    };
    let at = found.map(|h| h.at);
    let cell = at.map_or(String::new(), |a| format!(" (cell {a})"));
    let Some(period) = PeriodId::parse(&text) else {
        f.push("IAPT-E11", None, at, format!(
            "The Reporting period{cell} is {}, which is not a period we recognise. Write it as Q1 2011/12 (or 2011/12 Q1, 2011-12-Q1, Q1 2011-12).",
            echo::quoted(&text, echo::CELL_MAX)
        ));
        return None;
    };
    let label = period.label();
    if let Some(expected) = input.expected_period.filter(|e| *e != period) {
        f.push("IAPT-E11", None, at, format!(
            "The Reporting period{cell} is {label} but this return was submitted for {}. Correct the period in the return, or submit it for {label}.",
            expected.label()
        ));
    }
    let Some(window) = input.collections.period(period) else {
        let years: Vec<String> = input
            .collections
            .iter()
            .map(|d| d.id.replace("iapt-kpi-", "").replace('-', "/"))
            .collect();
        f.push("IAPT-E11", None, at, format!(
            "The Reporting period{cell} is {label}, but returns are collected only for {}. Check the period.",
            years.join(" and ")
        ));
        return Some(period);
    };
    let Some(now) = input.now else { return Some(period) };
    let arrived = uk_day(now);
    match window.window(now) {
        Window::OnTime => {}
        Window::NotOpen => f.push("IAPT-E11", None, at, format!(
            "The Reporting period{cell} is {label}, which opens for returns on {}; this return arrived on {arrived}. Send it again once the period opens, or correct the period if it is wrong.",
            uk_day(window.opens)
        )),
        Window::Closed => f.push("IAPT-E11", None, at, format!(
            "Returns for {label}{cell} closed on {}; this return arrived on {arrived} and cannot be accepted. Contact the Data Collection Team if it must still be filed.",
            uk_day(window.closes)
        )),
        Window::Late => f.push("IAPT-W04", None, at, format!(
            "This return for {label}{cell} arrived on {arrived}, after the deadline of {}, so it is marked late.",
            uk_day(window.deadline)
        )),
    }
    Some(period)
}

/// The UK calendar day of a moment, as a submitter would name it: `29 July 2011`. British Summer
/// Time runs from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
/// October (computed here because no time-zone database is needed for this one rule).
pub(super) fn uk_day(t: DateTime<Utc>) -> String {
    let year = t.year();
    let start = last_sunday_1am(year, 3);
    let end = last_sunday_1am(year, 10);
    let local = match (start, end) {
        (Some(s), Some(e)) if t >= s && t < e => t + Duration::hours(1),
        _ => t,
    };
    local.format("%-d %B %Y").to_string()
}

fn last_sunday_1am(year: i32, month: u32) -> Option<DateTime<Utc>> {
    let last = NaiveDate::from_ymd_opt(year, month + 1, 1)?.pred_opt()?;
    let back = last.weekday().num_days_from_sunday();
    let sunday = last - Duration::days(back as i64);
    debug_assert_eq!(sunday.weekday(), Weekday::Sun);
    Utc.from_utc_datetime(&sunday.and_hms_opt(1, 0, 0)?).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn uk_day_follows_summer_time() {
        // 23:30 UTC in July is 00:30 the next day in London.
        assert_eq!(uk_day(at("2011-07-29T23:30:00Z")), "30 July 2011");
        // In winter London is on UTC.
        assert_eq!(uk_day(at("2012-01-27T23:30:00Z")), "27 January 2012");
        // Summer time began at 01:00 UTC on 27 March 2011 and ended at 01:00 UTC on 30 October.
        assert_eq!(uk_day(at("2011-03-27T00:30:00Z")), "27 March 2011");
        assert_eq!(uk_day(at("2011-03-26T23:30:00Z")), "26 March 2011");
        assert_eq!(uk_day(at("2011-10-29T23:30:00Z")), "30 October 2011");
        assert_eq!(uk_day(at("2011-10-30T23:30:00Z")), "30 October 2011");
    }
}
