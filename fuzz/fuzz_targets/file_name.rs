//! The file name the workbook fuzz target gives its input, chosen by the input's first byte.
//! Shared with the integration tests (`tests/it/hostile.rs`), which replay saved crash inputs
//! exactly as the fuzzer ran them. Standard library only, so both crates can include it.

const NAMES: [&str; 8] = [
    "return.xlsx",
    "return.xlsm",
    "return.xls",
    "return.xlsb",
    "return.ods",
    "return.csv",
    "return",
    "return.pdf",
];

pub fn fuzz_file_name(first: u8) -> &'static str {
    NAMES[usize::from(first) % NAMES.len()]
}
