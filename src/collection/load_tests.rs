//! Tests of the definition loader: the shipped files load, and broken files are reported by key,
//! every problem at once.

use super::*;

const SHIPPED: &str = include_str!("../../config/collections/iapt-kpi-2011-12.toml");

fn problems(text: &str) -> Vec<String> {
    match load_definition(text) {
        Ok(_) => Vec::new(),
        Err(ps) => ps.iter().map(|p| p.to_string()).collect(),
    }
}

fn has(ps: &[String], want: &str) -> bool {
    ps.iter().any(|p| p.starts_with(want))
}

#[test]
fn shipped_definition_loads_with_everything_in_it() {
    let def = load_definition(SHIPPED).expect("loads");
    assert_eq!(def.start_year, 2011);
    assert_eq!(def.measures.len(), 9);
    assert_eq!(def.rules.len(), RULE_IDS.len());
    assert_eq!(def.periods.len(), 4);
    let recovery = def.derived.iter().find(|d| d.id == "recovery_rate").expect("recovery");
    assert_eq!(recovery.denominator, vec![(1, "KPI5".to_string()), (-1, "KPI6b".to_string())]);
    assert_eq!(recovery.target, Some(0.5));
    assert_eq!(def.rule("IAPT-W04").map(|r| r.severity), Some(Severity::Warning));
}

#[test]
fn several_problems_are_reported_together_by_key() {
    let text = SHIPPED
        .replace("deadline = 2011-10-28T17:00:00+01:00", "deadline = 2011-10-01T17:00:00+01:00")
        .replace("unit = \"referrals\"", "unit = \"referrals\"\ncolour = \"red\"\nshape = 1")
        .replace("denominator = [\"KPI5\", \"-KPI6b\"]", "denominator = [\"KPI5\", \"-KPI9\"]")
        .replace("id = \"IAPT-W03\"", "id = \"IAPT-W99\"")
        .replace("target = 0.0375", "target = 3.75");
    let ps = problems(&text);
    assert!(has(&ps, "periods[1].deadline: must be after opens"), "{ps:#?}");
    assert!(has(&ps, "measures[3].colour: unknown key"), "{ps:#?}");
    assert!(has(&ps, "measures[3].shape: unknown key"), "{ps:#?}");
    assert!(has(&ps, "derived[1].denominator[1]: \"-KPI9\" is not one of the measures"), "{ps:#?}");
    assert!(has(&ps, "rules[12].id: \"IAPT-W99\" is not a rule"), "{ps:#?}");
    assert!(has(&ps, "rules: IAPT-W03 is missing"), "{ps:#?}");
    assert!(has(&ps, "derived[0].target: 3.75 is not a fraction"), "{ps:#?}");
    assert_eq!(ps.len(), 7, "{ps:#?}");
}

#[test]
fn duplicate_measures_missing_fields_and_wrong_types_are_named() {
    let text = SHIPPED
        .replace("id = \"KPI2\"", "id = \"KPI1\"")
        .replace("required = false", "required = \"no\"")
        .replace("label = \"People who completed treatment\"\n", "");
    let ps = problems(&text);
    assert!(has(&ps, "measures[1].id: KPI1 is defined twice"), "{ps:#?}");
    assert!(has(&ps, "measures[8]: invalid type"), "{ps:#?}");
    assert!(has(&ps, "measures[5]: missing field `label`"), "{ps:#?}");
    // KPI2 is gone, and KPI7 and KPI5 failed to load: the rules need all three.
    assert!(has(&ps, "measures: KPI2 is missing"), "{ps:#?}");
    assert!(has(&ps, "measures: KPI7 is missing"), "{ps:#?}");
}

#[test]
fn periods_must_be_the_four_quarters_of_the_year_in_order() {
    let text = SHIPPED
        .replace("id = \"2011-12-Q4\"", "id = \"2012-13-Q4\"")
        .replace("closes = 2011-11-11T17:00:00+00:00", "closes = 2011-07-28T17:00:00+01:00")
        .replace("opens = 2012-01-03T09:00:00+00:00", "opens = \"3 January 2012\"");
    let ps = problems(&text);
    assert!(has(&ps, "periods[3].id: 2012-13-Q4 is not in this definition's year"), "{ps:#?}");
    assert!(has(&ps, "periods[0].closes: must not be before the deadline"), "{ps:#?}");
    assert!(has(&ps, "periods[2].opens: \"3 January 2012\" is not an RFC 3339"), "{ps:#?}");
    assert!(has(&ps, "periods: 2011-12-Q3 is missing"), "{ps:#?}");
    assert!(has(&ps, "periods: 2011-12-Q4 is missing"), "{ps:#?}");
}

#[test]
fn periods_accept_quoted_rfc3339_and_reject_times_without_offset() {
    let quoted = SHIPPED
        .replace("opens = 2011-07-01T09:00:00+01:00", "opens = \"2011-07-01T09:00:00+01:00\"");
    assert!(load_definition(&quoted).is_ok());
    let local = SHIPPED.replace("opens = 2011-07-01T09:00:00+01:00", "opens = 2011-07-01T09:00:00");
    assert!(has(&problems(&local), "periods[0].opens:"), "{:#?}", problems(&local));
}

#[test]
fn severity_must_agree_with_the_rule_id() {
    let text = SHIPPED.replacen("severity = \"error\"", "severity = \"warning\"", 1);
    let ps = problems(&text);
    assert_eq!(ps, vec!["rules[0].severity: IAPT-E01 is an error rule (its id says so)"]);
}

#[test]
fn syntax_errors_name_the_line() {
    let text = "id = \"x\"\ntitle = \n";
    let ps = problems(text);
    assert_eq!(ps.len(), 1);
    assert!(ps[0].starts_with("line 2: not valid TOML"), "{ps:?}");
}

#[test]
fn unknown_top_level_keys_and_missing_sections_are_reported() {
    let ps = problems("id = \"x\"\ntitle = \"t\"\nyear = \"2011-13\"\nversion = 1\n");
    for want in [
        "version: unknown key",
        "template_version: missing",
        "year: \"2011-13\" is not a year",
        "measures: missing",
        "rules: missing",
        "periods: missing",
    ] {
        assert!(has(&ps, want), "{want} in {ps:#?}");
    }
}

#[test]
fn canonical_measure_ids() {
    for ok in ["KPI1", "KPI3b", "KPI12"] {
        assert!(is_canonical_measure_id(ok), "{ok}");
    }
    for bad in ["KPI", "kpi1", "KPI3B", "KPI 3b", "KPI3ab", "KPIa"] {
        assert!(!is_canonical_measure_id(bad), "{bad}");
    }
}
