//! `iapt-intake check` end to end on the golden return fixtures (`tests/fixtures/returns/`):
//! every workbook beside its `<name>.expected.json` (and optional `<name>.args`), run through the
//! built binary exactly as a user would. A mismatch writes `<name>.actual.json` beside it.
//! The same for the producer fixtures (`tests/fixtures/returns/producers/`, written by
//! `make-producers.py` there): one return, good and with three errors, saved by LibreOffice,
//! Gnumeric, SheetJS, pyxlsbwriter, xlsxwriter, pandas and openpyxl in every format they write,
//! must get one verdict, one set of values and one set of findings per variant.
//! Also: a blank template written by `iapt-intake template` is recognised as a return.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_iapt-intake");

/// The measures SPEC §2 marks required (KPI7 is optional).
const REQUIRED: [&str; 8] = ["KPI1", "KPI2", "KPI3a", "KPI3b", "KPI4", "KPI5", "KPI6", "KPI6b"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/returns")
}

fn config() -> String {
    root().join("config/iapt-intake.toml").display().to_string()
}

/// Fixture workbooks: everything in the directory except the expectations and the generator.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures directory")
        .map(|e| e.expect("dir entry"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .filter(|n| {
            ![".expected.json", ".actual.json", ".args", ".py"].iter().any(|s| n.ends_with(s))
        })
        .collect();
    names.sort();
    names
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// Runs from the repository root: the config's relative paths are relative to the working
/// directory.
fn check(extra: &[String], file: &Path) -> Output {
    Command::new(BIN)
        .current_dir(root())
        .args(["check", "--format", "json", "--config", &config()])
        .args(extra)
        .arg(file)
        .output()
        .expect("run iapt-intake check")
}

/// Equal as JSON, numbers within a tolerance (derived rates are floats), finding messages
/// excepted: their wording is the program's; the rule, measure, sheet and cell are the contract.
fn same(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                _ => false,
            },
        },
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, v)| match (k.as_str(), b.get(k)) {
                    ("message", Some(_)) => true,
                    ("file", Some(w)) => same_file(v, w),
                    (_, Some(w)) => same(v, w),
                    (_, None) => false,
                })
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        _ => want == got,
    }
}

/// `file` is the name as given on the command line; the fixtures are given with their directory.
fn same_file(want: &Value, got: &Value) -> bool {
    match (want.as_str(), got.as_str()) {
        (Some(w), Some(g)) => Path::new(g).file_name().is_some_and(|n| n == w),
        _ => false,
    }
}

/// What is wrong with one fixture's run, or None when it matches.
fn judge(name: &str) -> Option<String> {
    judge_in(&fixtures(), name).err()
}

/// [`judge`] for a fixture in `dir`: the report `check` gave, or what is wrong with it.
fn judge_in(dir: &Path, name: &str) -> Result<Value, String> {
    let expected_path = dir.join(format!("{}.expected.json", stem(name)));
    let actual_path = dir.join(format!("{}.actual.json", stem(name)));
    let Ok(expected_text) = std::fs::read_to_string(&expected_path) else {
        return Err(format!("{name}: no {}", expected_path.display()));
    };
    let want: Value = serde_json::from_str(expected_text.trim()).expect("expected json parses");
    let args: Vec<String> = std::fs::read_to_string(dir.join(format!("{}.args", stem(name))))
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let out = check(&args, &dir.join(name));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or("");
    let mismatch = |why: String| {
        std::fs::write(&actual_path, format!("{line}\n")).expect("write actual");
        Err(format!("{name}: {why} (actual written to {})", actual_path.display()))
    };
    let Ok(got) = serde_json::from_str::<Value>(line) else {
        let err = String::from_utf8_lossy(&out.stderr);
        return mismatch(format!("no JSON on stdout; exit {:?}; stderr: {err}", out.status.code()));
    };
    if stdout.lines().count() != 1 {
        return mismatch(format!("{} lines on stdout, want one", stdout.lines().count()));
    }
    if !same(&want, &got) {
        return mismatch("report differs from expected".into());
    }
    let blank_message = got["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f["message"].as_str().is_none_or(|m| m.trim().is_empty()));
    if blank_message {
        return mismatch("a finding has no message".into());
    }
    let want_code = if want["status"] == "valid" { 0 } else { 1 };
    if out.status.code() != Some(want_code) {
        return mismatch(format!("exit {:?}, want {want_code}", out.status.code()));
    }
    let _ = std::fs::remove_file(&actual_path);
    Ok(got)
}

fn assert_all_match(names: &[String]) {
    let failures: Vec<String> = names.iter().filter_map(|n| judge(n)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures wrong:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

#[test]
fn every_golden_return_gets_the_expected_report_and_exit_code() {
    let names = fixture_names();
    assert!(names.len() >= 30, "fixtures missing: found {}", names.len());
    assert_all_match(&names);
}

fn producers() -> PathBuf {
    fixtures().join("producers")
}

/// The producer fixtures: every spreadsheet file in their folder.
fn producer_files() -> Vec<String> {
    let accepted = [".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".fods", ".csv"];
    let mut names: Vec<String> = std::fs::read_dir(producers())
        .expect("producers directory")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| accepted.iter().any(|ext| n.ends_with(ext)))
        .collect();
    names.sort();
    names
}

/// A report without what may differ between files of one variant: its file name.
fn verdict(report: &Value) -> Value {
    let mut report = report.clone();
    if let Some(map) = report.as_object_mut() {
        map.remove("file");
    }
    report
}

#[test]
fn every_producer_and_format_gives_one_verdict_values_and_findings_per_variant() {
    let names = producer_files();
    let mut failures = Vec::new();
    for variant in ["good", "errors"] {
        let files: Vec<&String> =
            names.iter().filter(|n| n.contains(&format!("-{variant}"))).collect();
        // 7 producers; LibreOffice, Gnumeric and SheetJS in five or four formats each.
        assert!(files.len() >= 19, "{variant}: only {} producer fixtures", files.len());
        let mut first: Option<(&str, Value)> = None;
        for name in files {
            match judge_in(&producers(), name) {
                Err(why) => failures.push(why),
                Ok(got) => match &first {
                    None => first = Some((name, verdict(&got))),
                    Some((base, want)) if *want != verdict(&got) => {
                        failures.push(format!("{name}: report differs from {base}'s"))
                    }
                    Some(_) => {}
                },
            }
        }
        let (_, report) = first.expect("at least one file");
        let want_status = if variant == "good" { "valid" } else { "invalid" };
        assert_eq!(report["status"], want_status, "{variant}");
    }
    assert!(failures.is_empty(), "{} wrong:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_expected_report_has_its_workbook() {
    let names = fixture_names();
    for entry in std::fs::read_dir(fixtures()).expect("fixtures directory") {
        let file = entry.expect("dir entry").file_name().to_string_lossy().into_owned();
        if let Some(s) = file.strip_suffix(".expected.json") {
            assert!(names.iter().any(|n| stem(n) == s), "{file} has no workbook beside it");
        }
    }
}

#[test]
fn blank_template_from_the_cli_is_a_return_missing_every_required_measure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .current_dir(root())
        .args(["template", "--config", &config(), "--period", "2011-12-Q1", "--org", "5N1", "-o"])
        .arg(dir.path().join("blank.xlsx"))
        .output()
        .expect("run iapt-intake template");
    assert_eq!(out.status.code(), Some(0), "template: {}", String::from_utf8_lossy(&out.stderr));

    let out = check(&[], &dir.path().join("blank.xlsx"));
    assert_eq!(out.status.code(), Some(1), "a blank return is invalid");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["organisation"], "5N1", "org code prefilled");
    assert_eq!(report["period"], "2011-12-Q1", "period prefilled");
    let findings = report["findings"].as_array().expect("findings");
    let e01: Vec<&str> = findings
        .iter()
        .filter(|f| f["rule"] == "IAPT-E01")
        .filter_map(|f| f["measure"].as_str())
        .collect();
    assert_eq!(e01, REQUIRED, "E01 for each required measure, in sheet order");
    for f in findings {
        assert_eq!(f["rule"], "IAPT-E01", "only blanks are wrong with a blank template: {f}");
        assert_eq!(f["sheet"], "Return");
        assert!(f["cell"].as_str().is_some_and(|c| c.starts_with('C')), "Value column: {f}");
    }
    assert!(report["values"].as_object().expect("values").values().all(Value::is_null));
}
