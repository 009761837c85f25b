//! How long `check` takes on one typical return (SPEC §8: ≤ 10 ms per file): reading the filled
//! xlsx into a grid, and reading plus validating it against the shipped definitions and
//! registry. The input is a golden fixture, so the bench measures a file the tests judge.

use criterion::{criterion_group, criterion_main, Criterion};
use iapt_intake::collection::{Collections, Registry};
use iapt_intake::validate::{validate, Input, NoHistory};
use iapt_intake::workbook::read::read;
use iapt_intake::workbook::Limits;
use std::hint::black_box;
use std::path::{Path, PathBuf};

const TYPICAL: &str = "valid-openpyxl.xlsx";

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture() -> Vec<u8> {
    let path = repo("tests/fixtures/returns").join(TYPICAL);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The definitions and registry as shipped in `config/`.
fn shipped() -> (Collections, Registry) {
    let dir = repo("config/collections");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.display().to_string(), text(&p)))
        .collect();
    files.sort();
    let collections = Collections::from_files(&files)
        .unwrap_or_else(|problems| panic!("definitions: {problems:?}"));
    let registry = Registry::from_csv(&text(&repo("config/organisations.csv")))
        .unwrap_or_else(|problems| panic!("registry: {problems:?}"));
    (collections, registry)
}

fn read_only(c: &mut Criterion) {
    let bytes = fixture();
    let limits = Limits::default();
    c.bench_function("read typical xlsx return", |b| {
        b.iter(|| read(black_box(&bytes), TYPICAL, &limits).map(|wb| wb.sheets.len()))
    });
}

fn read_and_validate(c: &mut Criterion) {
    let bytes = fixture();
    let limits = Limits::default();
    let (collections, registry) = shipped();
    c.bench_function("check typical xlsx return (read + validate)", |b| {
        b.iter(|| {
            let workbook = read(black_box(&bytes), TYPICAL, &limits);
            let report = validate(&Input {
                file_name: TYPICAL,
                workbook: workbook.as_ref(),
                collections: &collections,
                registry: &registry,
                expected_org: Some("5N1"),
                expected_from: iapt_intake::validate::ExpectedFrom::Subject,
                expected_period: None,
                now: None,
                history: &NoHistory,
            });
            assert!(report.is_valid(), "the typical return is valid: {:?}", report.findings);
            report.findings.len()
        })
    });
}

criterion_group!(benches, read_only, read_and_validate);
criterion_main!(benches);
