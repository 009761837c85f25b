//! Hostile input through the whole pipeline (SPEC §6, issue 5): every
//! `tests/fixtures/hostile/*.eml` (written by `make-hostile-mail.py` there) is processed by
//! `pipeline::process` into a SQLite store on disk and compared with its `<name>.expected.json`
//! (class, outcome, the replies queued and the rules they cite, the attachments as kept); a
//! mismatch writes `<name>.actual.json` beside it. For every file the test also checks what
//! SPEC §6 promises whatever the outcome: nothing panics, the time stays bounded, the raw
//! message is kept byte for byte, no reply carries a path or a control character, and the same
//! message again changes nothing. A message over the size limit is built here rather than
//! committed, and the inputs the fuzzers once crashed on are replayed through the parser and
//! the reader.

use crate::pipeline::support::{reply_of, Mail, Settings, ANN, ON_TIME};
use crate::pipeline::Harness;
use iapt_intake::collection::PeriodId;
use iapt_intake::mail::{classify, Inbound};
use iapt_intake::pipeline::Processed;
use iapt_intake::store::{sha256_hex, Store};
use iapt_intake::validate::{validate, ExpectedFrom, Input, NoHistory};
use iapt_intake::workbook::{read::read, Limits};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// SPEC §6 says "never hang"; in a debug build every corpus file is far inside this.
const TIME_LIMIT: Duration = Duration::from_secs(5);
/// How many attachment and problem entries the expected files spell out (the rest are counted).
const LISTED: usize = 5;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.expect("dir entry").path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.to_string_lossy().ends_with(suffix));
    files.sort();
    files
}

/// Every `IAPT-E..`/`IAPT-W..` rule id a reply body cites, sorted, each once.
fn rules_in(body: &str) -> Vec<String> {
    let mut rules: Vec<String> = body
        .match_indices("IAPT-")
        .filter_map(|(i, _)| body.get(i..i + 8))
        .filter(|id| {
            let b = id.as_bytes();
            matches!(b[5], b'E' | b'W') && b[6].is_ascii_digit() && b[7].is_ascii_digit()
        })
        .map(str::to_string)
        .collect();
    rules.sort();
    rules.dedup();
    rules
}

/// What a reviewer compares for one message: the decision, the replies and what was kept.
fn summary(h: &Harness, raw: &[u8], done: &Processed) -> (Value, Vec<String>) {
    let inbound = Inbound::parse(raw);
    let replies = h.queued(raw);
    let bodies: Vec<String> = replies.iter().map(|r| reply_of(&r.raw).body).collect();
    let attachments: Vec<Value> = inbound
        .attachments
        .iter()
        .take(LISTED)
        .map(|a| json!({ "name": a.name, "kind": a.kind, "depth": a.depth }))
        .collect();
    let value = json!({
        "class": done.class,
        "outcome": done.outcome,
        "org": done.org,
        "receipts": done.receipts,
        "replies": replies.len(),
        "reply_kinds": replies.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        "rules": rules_in(&bodies.concat()),
        "attachment_count": inbound.attachments.len(),
        "attachments": attachments,
        "problem_count": inbound.problems.len(),
        "problems": inbound.problems.iter().take(LISTED).collect::<Vec<_>>(),
    });
    (value, bodies)
}

/// The promises of SPEC §5/§6 that hold for any input; each broken one is described.
fn invariants(h: &Harness, raw: &[u8], done: &Processed, bodies: &[String]) -> Vec<String> {
    let mut broken = Vec::new();
    let sha = sha256_hex(raw);
    match h.store.get_blob(&sha) {
        Ok(kept) if kept == raw => {}
        Ok(kept) => {
            broken.push(format!("blob holds {} bytes, not the {} received", kept.len(), raw.len()))
        }
        Err(e) => broken.push(format!("raw message not kept: {e}")),
    }
    match h.store.find_duplicate(None, &sha) {
        Ok(Some(filed)) if filed.class == done.class => {}
        other => broken.push(format!("not filed as {}: {other:?}", done.class)),
    }
    for body in bodies {
        if body.contains("../") || body.contains("..\\") {
            broken.push("a reply shows a path".into());
        }
        if body.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            broken.push("a reply carries a control character".into());
        }
    }
    let again = h.process_at(raw, "new/again", ON_TIME, ON_TIME);
    let replies_after = h.queued(raw).len();
    if again.class != "duplicate" || replies_after != bodies.len() {
        broken.push(format!(
            "processed again it came to {} with {replies_after} replies",
            again.class
        ));
    }
    broken
}

/// Processes one corpus file on a fresh store; `Err` says what went wrong.
fn check_one(eml: &Path) -> Result<(), String> {
    let raw = std::fs::read(eml).map_err(|e| e.to_string())?;
    let h = Harness::with(Settings { unverified_welcome: true, ..Settings::default() });
    let started = Instant::now();
    let done = h.process(&raw, ON_TIME);
    let took = started.elapsed();
    let (actual, bodies) = summary(&h, &raw, &done);
    let mut broken = invariants(&h, &raw, &done, &bodies);
    if took > TIME_LIMIT {
        broken.push(format!("took {took:?}, over {TIME_LIMIT:?}"));
    }
    let stem = eml.file_stem().expect("file stem").to_string_lossy().into_owned();
    let expected_path = eml.with_file_name(format!("{stem}.expected.json"));
    let actual_path = eml.with_file_name(format!("{stem}.actual.json"));
    let expected: Option<Value> =
        std::fs::read_to_string(&expected_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    if expected.as_ref() == Some(&actual) {
        let _ = std::fs::remove_file(&actual_path);
    } else {
        let text = serde_json::to_string_pretty(&actual).expect("json") + "\n";
        std::fs::write(&actual_path, text).expect("write .actual.json");
        broken.push(format!("differs from {stem}.expected.json; see {stem}.actual.json"));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken.join("; "))
    }
}

#[test]
fn every_hostile_message_gets_its_expected_outcome_and_keeps_spec_6() {
    let files = files_with(&corpus(), ".eml");
    assert!(files.len() >= 30, "the corpus is missing: run make-hostile-mail.py");
    let mut failures = Vec::new();
    for eml in &files {
        let name = eml.file_name().expect("name").to_string_lossy().into_owned();
        match std::panic::catch_unwind(|| check_one(eml)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{name}: {why}")),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn message_over_the_size_limit_is_rejected_unread_and_kept_whole() {
    let h = Harness::with(Settings { unverified_welcome: true, ..Settings::default() });
    let limit = h.env.config.limits.message_bytes;
    // Base64 grows the attachment by a third, so this is just over the limit as sent.
    let filler = vec![b'x'; (limit as usize / 4) * 3];
    let raw = Mail::new(ANN, "IAPT KPI Q1 2011/12 Leeds PCT", "too-large@leeds.nhs.test")
        .xlsx("leeds-q1.xlsx", filler)
        .bytes();
    assert!(raw.len() as u64 > limit);
    let started = Instant::now();
    let done = h.process(&raw, ON_TIME);
    assert!(started.elapsed() < TIME_LIMIT * 2, "took {:?}", started.elapsed());
    assert_eq!((done.class.as_str(), done.outcome.as_str()), ("submission", "rejected"));
    let replies = h.queued(&raw);
    assert_eq!(replies.len(), 1);
    let body = reply_of(&replies[0].raw).body;
    assert_eq!(rules_in(&body), vec!["IAPT-E21"]);
    assert!(body.contains("over the limit"), "{body}");
    assert!(h.store.get_blob(&sha256_hex(&raw)).expect("raw kept") == raw);
}

/// Replays what the fuzzers once crashed on (`fuzz-crashes/mail-*` through the parser and
/// classifier, `workbook-*` through the reader and validator), so a fixed crash stays fixed.
#[test]
fn inputs_that_crashed_the_fuzzers_are_handled() {
    let dir = corpus().join("fuzz-crashes");
    let h = Harness::with(Settings { unverified_welcome: true, ..Settings::default() });
    let now = crate::pipeline::support::at(ON_TIME);
    let mut replayed = 0;
    for path in files_with(&dir, "") {
        let bytes = std::fs::read(&path).expect("read crash input");
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let started = Instant::now();
        if name.starts_with("mail-") {
            let inbound = Inbound::parse(&bytes);
            let _ = classify(&inbound, &h.env.classify_context(true));
        } else if name.starts_with("workbook-") {
            let file_name = fuzz_file_name(bytes.first().copied().unwrap_or(0));
            let book = read(bytes.get(1..).unwrap_or_default(), file_name, &Limits::default());
            let report = validate(&Input {
                file_name,
                workbook: book.as_ref(),
                collections: &h.env.collections,
                registry: &h.env.registry,
                expected_org: None,
                expected_from: ExpectedFrom::Subject,
                expected_period: PeriodId::parse("2011-12-Q1"),
                now: Some(now),
                history: &NoHistory,
            });
            assert!(book.is_ok() || !report.is_valid(), "{name}: unreadable yet valid");
        } else {
            continue;
        }
        assert!(started.elapsed() < TIME_LIMIT, "{name} took {:?}", started.elapsed());
        replayed += 1;
    }
    eprintln!("replayed {replayed} fuzz crash inputs");
}

/// The file name the workbook fuzz target gives its input (one definition for both).
#[path = "../../fuzz/fuzz_targets/file_name.rs"]
mod fuzz_names;
use fuzz_names::fuzz_file_name;
