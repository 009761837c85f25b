//! Inbound mail on golden fixtures: every `tests/fixtures/mail/*.eml` is parsed and classified
//! and compared with its `<name>.expected.json` (a mismatch writes `<name>.actual.json` beside
//! it); the real 2011 list of PCTs is matched from subjects; damaged input never panics.

use iapt_intake::collection::{Organisation, Registry, Submitter};
use iapt_intake::mail::{
    classify, match_organisation, Classification, ClassifyContext, Inbound, OrgMatch,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mail")
}

/// Reads `code,name[,aliases,submitters]` with the csv crate; `;` separates list entries.
fn registry_from_csv(path: &Path) -> Registry {
    let mut reader = csv::Reader::from_path(path).expect("registry csv opens");
    let list = |field: Option<&str>| -> Vec<String> {
        field
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let organisations = reader
        .records()
        .map(|record| {
            let record = record.expect("registry row reads");
            Organisation {
                code: record[0].trim().to_uppercase(),
                name: record[1].trim().to_string(),
                aliases: list(record.get(2)),
                submitters: list(record.get(3))
                    .into_iter()
                    .map(|s| match s.strip_prefix('@') {
                        Some(domain) => Submitter::Domain(domain.to_lowercase()),
                        None => Submitter::Address(s.to_lowercase()),
                    })
                    .collect(),
            }
        })
        .collect();
    Registry { organisations }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn summary(inbound: &Inbound, classification: &Classification) -> Value {
    json!({
        "message_id": inbound.message_id,
        "from": inbound.from,
        "subject": inbound.subject,
        "date": inbound.date.map(|d| d.to_rfc3339()),
        "in_reply_to": inbound.in_reply_to,
        "signals": inbound.signals,
        "report": inbound.report,
        "attachments": inbound.attachments,
        "problems": inbound.problems,
        "classification": classification,
    })
}

/// The `[routing]` keyword defaults of the embedded config, so the fixtures route as the
/// product does.
use iapt_intake::config::{
    DEFAULT_AUTOMATIC_SENDERS, DEFAULT_AUTOMATIC_SUBJECTS, DEFAULT_BOUNCE_SUBJECTS,
    DEFAULT_CONTENT as CONTENT, DEFAULT_TECHNICAL as TECHNICAL,
};

#[test]
fn golden_fixtures_parse_and_classify_as_expected() {
    let registry = registry_from_csv(&fixtures().join("organisations.csv"));
    let ours = strings(&["iapt.kpi@collection.test"]);
    let technical = strings(TECHNICAL);
    let content = strings(CONTENT);
    let (auto_subjects, bounce_subjects, auto_senders) = (
        strings(DEFAULT_AUTOMATIC_SUBJECTS),
        strings(DEFAULT_BOUNCE_SUBJECTS),
        strings(DEFAULT_AUTOMATIC_SENDERS),
    );
    let ctx = ClassifyContext {
        registry: &registry,
        our_addresses: &ours,
        message_id_domain: "intake.collection.test",
        loop_marker: "iapt-intake@collection.test",
        technical_keywords: &technical,
        content_keywords: &content,
        automatic_subjects: &auto_subjects,
        bounce_subjects: &bounce_subjects,
        automatic_senders: &auto_senders,
        require_verified: false,
        verified: true,
    };
    let mut emls: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixture dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    emls.sort();
    assert!(emls.len() >= 15, "fixtures missing: {emls:?}");
    let mut failures = Vec::new();
    for eml in &emls {
        let raw = std::fs::read(eml).expect("fixture reads");
        let inbound = Inbound::parse(&raw);
        let actual = summary(&inbound, &classify(&inbound, &ctx));
        let expected_path = eml.with_extension("expected.json");
        let actual_path = eml.with_extension("actual.json");
        let expected: Option<Value> = std::fs::read(&expected_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if expected.as_ref() == Some(&actual) {
            let _ = std::fs::remove_file(&actual_path);
        } else {
            let pretty = serde_json::to_string_pretty(&actual).expect("json");
            std::fs::write(&actual_path, pretty + "\n").expect("write actual");
            failures.push(eml.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    assert!(failures.is_empty(), "differs from expected (see *.actual.json): {failures:?}");
}

/// The shared list of PCTs sits beside the crate on main; a helper's worktree sits one level
/// deeper, so both places are tried.
fn pcts_2011() -> Registry {
    let candidates = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pcts-2011.csv"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/pcts-2011.csv"),
    ];
    let path = candidates
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("shared/data/pcts-2011.csv is present");
    registry_from_csv(path)
}

#[test]
fn every_2011_pct_name_is_matched_uniquely_from_a_subject() {
    let registry = pcts_2011();
    assert_eq!(registry.organisations.len(), 149);
    for org in &registry.organisations {
        let bare = org.name.replace(" Teaching", "").replace(" PCT", "").replace(" NHS", "");
        for subject in [
            format!("IAPT KPI Q1 2011/12 {}", org.name),
            format!("RE: [IAPT] {} - KPI return, Q1", org.name.to_uppercase()),
            format!("IAPT KPI Q2 2011-12 NHS {bare}"),
            format!("iapt kpi return {} primary care trust", bare.to_lowercase()),
        ] {
            assert_eq!(
                match_organisation(&subject, &registry),
                OrgMatch::One(org.code.clone()),
                "{subject}"
            );
        }
    }
}

#[test]
fn every_2011_pct_code_is_matched_from_a_subject() {
    let registry = pcts_2011();
    for org in &registry.organisations {
        let subject = format!("IAPT KPI Q1 2011/12 ({})", org.code);
        assert_eq!(match_organisation(&subject, &registry), OrgMatch::One(org.code.clone()));
    }
}

#[test]
fn truncated_and_corrupted_fixtures_never_panic() {
    for entry in std::fs::read_dir(fixtures()).expect("fixture dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let raw = std::fs::read(&path).expect("fixture reads");
        for cut in (0..raw.len()).step_by(raw.len() / 40 + 1) {
            let inbound = Inbound::parse(&raw[..cut]);
            assert!(inbound.attachments.iter().all(|a| !a.name.is_empty()));
            let mut flipped = raw.clone();
            flipped[cut] ^= 0xA5;
            let _ = Inbound::parse(&flipped);
        }
    }
}

#[test]
fn garbage_is_an_inbound_with_a_problem_not_a_panic() {
    let inbound = Inbound::parse(b"");
    assert!(!inbound.problems.is_empty());
    assert!(inbound.from.is_none() && inbound.attachments.is_empty());
    let inbound = Inbound::parse(&[0xFF; 512]);
    assert!(inbound.from.is_none());
}
