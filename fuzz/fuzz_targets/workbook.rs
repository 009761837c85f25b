//! Bytes → `workbook::read::read` (default limits) → `validate` against the real collections
//! and registry, with no history and a fixed moment inside 2011/12 Q1's window. The first byte
//! picks the file name (so every reader and the name-based tie-breaks are reached); the rest is
//! the file. Reading never panics, and a file that cannot be read is never valid.
#![no_main]

#[path = "file_name.rs"]
mod file_name;
#[path = "shared.rs"]
#[allow(dead_code)]
mod shared;

use chrono::{DateTime, Utc};
use iapt_intake::collection::PeriodId;
use iapt_intake::validate::{validate, ExpectedFrom, Input, NoHistory};
use iapt_intake::workbook::{read::read, Limits};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static REAL: OnceLock<shared::Real> = OnceLock::new();


fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else { return };
    let real = REAL.get_or_init(shared::load);
    let file_name = file_name::fuzz_file_name(first);
    let now: DateTime<Utc> = DateTime::from_timestamp(1_311_152_400, 0).expect("2011-07-20");
    let book = read(bytes, file_name, &Limits::default());
    let report = validate(&Input {
        file_name,
        workbook: book.as_ref(),
        collections: &real.collections,
        registry: &real.registry,
        expected_org: None,
        expected_from: ExpectedFrom::Subject,
        expected_period: PeriodId::parse("2011-12-Q1"),
        now: Some(now),
        history: &NoHistory,
    });
    assert!(book.is_ok() || !report.is_valid(), "an unreadable file was judged valid");
});
