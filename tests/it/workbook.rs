//! The workbook reader end to end on committed files: every hostile file in
//! `tests/fixtures/workbooks/hostile/` ends in the right `ReadError` (and words an analyst can
//! act on), and the good returns read to the cells, sheets and merges they hold. The fixtures
//! are written by `tests/fixtures/workbooks/make-hostile.py` and `make-bombs.py` there.

use std::path::PathBuf;

use std::io::Read;
use std::time::{Duration, Instant};

use iapt_intake::workbook::grid::{Cell, CellRef, Format, Limits, ReadError, Workbook};
use iapt_intake::workbook::read::{read, read_until, Cancel};

fn fixture(rel: &str) -> Vec<u8> {
    let path: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/workbooks", rel].iter().collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_fixture(rel: &str) -> Result<Workbook, ReadError> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    read(&fixture(rel), name, &Limits::default())
}

fn at(a1: &str) -> CellRef {
    CellRef::parse_a1(a1).expect("valid A1 reference")
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

fn too_large(rel: &str) -> (String, u64, u64) {
    match read_fixture(rel) {
        Err(ReadError::TooLarge { what, actual, limit }) => (what, actual, limit),
        other => panic!("{rel}: expected TooLarge, got {other:?}"),
    }
}

// ---- hostile files ----------------------------------------------------------------------------

#[test]
fn a_declared_whole_sheet_dimension_is_ignored_and_the_real_cells_read() {
    // `<dimension ref="A1:XFD1048576"/>` (as whole-column formatting leaves it) over two cells.
    let wb = read_fixture("hostile/dimension-bomb.xlsx").expect("two real cells are fine");
    let sheet = wb.first_visible().expect("a visible sheet");
    assert_eq!(sheet.cells.len(), 2);
    assert_eq!(sheet.cells.get(&at("XFD1048576")), Some(&Cell::Number(2.0)));
}

#[test]
fn cells_at_opposite_corners_without_a_dimension_read_sparsely() {
    let wb = read_fixture("hostile/corner-cells.xlsx").expect("two cells are fine");
    let sheet = wb.first_visible().expect("a visible sheet");
    assert_eq!(sheet.cells.len(), 2);
    assert_eq!(sheet.cells.get(&at("A1")), Some(&Cell::Number(1.0)));
    assert_eq!(sheet.cells.get(&at("XFD1048576")), Some(&Cell::Number(2.0)));
}

#[test]
fn zip_bomb_is_stopped_as_it_unpacks_not_by_what_it_declares() {
    // 1 GB of whitespace in one part: stopped at the first run longer than any real text.
    assert!(fixture("hostile/zip-bomb.xlsx").len() < 2_000_000);
    let (what, actual, limit) = too_large("hostile/zip-bomb.xlsx");
    assert!(what.contains("xl/worksheets/sheet1.xml"), "{what}");
    assert!(actual > limit, "{actual} over {limit}");
}

#[test]
fn zip_whose_directory_understates_a_part_is_stopped_as_damaged() {
    match read_fixture("hostile/lying-zip.xlsx") {
        Err(ReadError::Corrupt(m)) => assert!(m.contains("declared"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn workbook_over_a_lower_unpacked_limit_is_rejected() {
    let limits = Limits { unpacked_bytes: 4_000, ..Limits::default() };
    match read(&fixture("good/return.xlsx"), "return.xlsx", &limits) {
        Err(ReadError::TooLarge { what, limit, .. }) => {
            assert!(what.contains("unpacked size"), "{what}");
            assert_eq!(limit, 4_000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn encrypted_xlsx_says_remove_the_password() {
    let err = read_fixture("hostile/encrypted.xlsx").expect_err("encrypted");
    assert_eq!(err, ReadError::Encrypted);
    assert!(err.to_string().contains("without a password"));
}

#[test]
fn truncated_xlsx_is_corrupt_and_asks_for_a_resave() {
    let err = read_fixture("hostile/truncated.xlsx").expect_err("truncated");
    assert!(matches!(err, ReadError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("save it again"));
}

#[test]
fn spill_error_value_is_kept_verbatim() {
    let wb = read_fixture("hostile/spill.xlsx").expect("reads");
    let sheet = wb.first_visible().expect("a visible sheet");
    assert_eq!(sheet.cells.get(&at("C5")), Some(&Cell::Error("#SPILL!".into())));
    assert_eq!(sheet.cells.get(&at("A5")), Some(&text("KPI1")));
}

#[test]
fn formula_without_saved_value_is_reported_as_such() {
    let wb = read_fixture("hostile/formula-no-value.xlsx").expect("reads");
    let sheet = wb.first_visible().expect("a visible sheet");
    assert_eq!(sheet.cells.get(&at("C5")), Some(&Cell::FormulaNoValue("SUM(E1:E2)".into())));
}

#[test]
fn empty_file_is_empty() {
    assert_eq!(read_fixture("hostile/empty.xlsx"), Err(ReadError::Empty));
}

fn unsupported(rel: &str) -> String {
    match read_fixture(rel) {
        Err(ReadError::Unsupported(m)) => m,
        other => panic!("{rel}: expected Unsupported, got {other:?}"),
    }
}

#[test]
fn pdf_named_xlsx_is_named_for_what_it_is() {
    let m = unsupported("hostile/pdf-renamed.xlsx");
    assert!(m.contains("PDF document"), "{m}");
    assert!(m.contains(".xlsx, .xlsm, .xls, .xlsb, .ods and .csv"), "{m}");
    assert!(m.contains("save the return as .xlsx and resend"), "{m}");
}

#[test]
fn word_document_named_xlsx_is_named_for_what_it_is() {
    let m = unsupported("hostile/word-renamed.xlsx");
    assert!(m.contains("Word document"), "{m}");
    assert!(m.contains("save the return as .xlsx"), "{m}");
}

#[test]
fn windows_1252_csv_decodes_accents_and_quotes() {
    let wb = read_fixture("hostile/windows-1252.csv").expect("reads");
    assert_eq!(wb.format, Format::Csv);
    let sheet = wb.first_visible().expect("one sheet");
    assert_eq!(sheet.name, "Return");
    assert_eq!(sheet.cells.get(&at("B2")), Some(&text("Leeds PCT – Café")));
    assert_eq!(sheet.cells.get(&at("B3")), Some(&text("Siân O’Neill")));
    // the blank line keeps its place, and numbers stay text for the validator
    assert_eq!(sheet.cells.get(&at("B6")), Some(&text("68653")));
}

#[test]
fn two_million_cells_stop_at_the_cell_cap() {
    let (what, actual, limit) = too_large("hostile/two-million-cells.xlsx");
    assert!(what.contains("number of cells in sheet 'Return'"), "{what}");
    assert_eq!(limit, Limits::default().cells_per_sheet);
    assert_eq!(actual, limit + 1);
}

#[test]
fn ods_repeated_value_bomb_stops_at_the_cell_limit_as_its_copies_are_counted() {
    // One cell with a value, repeated across 16,384 columns and 1,048,576 rows.
    let (what, actual, limit) = too_large("hostile/ods-repeat-bomb.ods");
    assert!(what.contains("number of cells in sheet 'Return'"), "{what}");
    assert_eq!((actual, limit), (limit + 1, Limits::default().cells_per_sheet));
}

#[test]
fn a_shared_string_used_by_12000_cells_stops_at_the_text_limit() {
    // 1 MB used 12,000 times: 12 GB if every use were copied. The file is 27 KB.
    let (what, actual, limit) = too_large("hostile/sst-bomb.xlsx");
    assert!(what.contains("every use of a shared string"), "{what}");
    assert_eq!(limit, Limits::default().text_bytes);
    assert!(actual > limit);
}

#[test]
fn inline_text_bomb_stops_at_the_text_limit() {
    let (what, actual, limit) = too_large("hostile/inline-bomb.xlsx");
    assert!(what.contains("text in the workbook"), "{what}");
    assert_eq!(limit, Limits::default().text_bytes);
    assert!(actual > limit);
}

/// A file of `hostile/raw-bombs.zip`, kept zipped because it does not compress itself.
fn raw_bomb(name: &str) -> Vec<u8> {
    let zipped = fixture("hostile/raw-bombs.zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zipped)).expect("zip");
    let mut out = Vec::new();
    zip.by_name(name).expect("entry").read_to_end(&mut out).expect("unzip");
    out
}

#[test]
fn real_cell_bombs_in_every_format_stop_at_the_cell_limit() {
    let limit = Limits::default().cells_per_sheet;
    let files = [
        ("cells-bomb.xlsb", fixture("hostile/cells-bomb.xlsb")),
        ("cells-bomb.ods", fixture("hostile/cells-bomb.ods")),
        ("cells-bomb.xls", raw_bomb("cells-bomb.xls")),
        ("cells-bomb.csv", raw_bomb("cells-bomb.csv")),
    ];
    for (name, bytes) in files {
        match read(&bytes, name, &Limits::default()) {
            Err(ReadError::TooLarge { what, actual, limit: l }) => {
                assert!(what.contains("number of cells in sheet 'Return'"), "{name}: {what}");
                assert_eq!((actual, l), (limit + 1, limit), "{name}");
            }
            other => panic!("{name}: expected TooLarge, got {other:?}"),
        }
    }
}

#[test]
fn xor_obfuscated_xls_is_named_a_password_not_a_size() {
    let err = read_fixture("hostile/xor-obfuscated.xls").expect_err("a password");
    assert_eq!(err, ReadError::Encrypted);
    assert!(err.to_string().contains("save it without a password"), "{err}");
}

#[test]
fn excel_4_file_is_named_with_what_to_do() {
    let m = unsupported("hostile/excel4.xls");
    assert!(m.contains("Excel 4.0") && m.contains("BIFF4"), "{m}");
    assert!(m.contains("save it as .xlsx"), "{m}");
}

#[test]
fn a_read_stopped_at_its_time_limit_ends_at_once() {
    // 900,000 cells: under every limit, so only the stop can end the read early.
    let csv = "1,".repeat(899).to_string() + "1\n";
    let bytes = csv.repeat(1_000).into_bytes();
    let cancel = Cancel::new();
    let reader = {
        let cancel = cancel.clone();
        std::thread::spawn(move || read_until(&bytes, "big.csv", &Limits::default(), &cancel))
    };
    std::thread::sleep(Duration::from_millis(20));
    let stopped = Instant::now();
    cancel.stop(10);
    let result = reader.join().expect("reader thread");
    assert_eq!(result.map(|wb| wb.sheets.len()), Err(ReadError::Timeout { seconds: 10 }));
    assert!(stopped.elapsed() < Duration::from_secs(2), "took {:?}", stopped.elapsed());
}

#[test]
fn attachment_over_the_size_limit_is_rejected_unread() {
    let limits = Limits { attachment_bytes: 1_000, ..Limits::default() };
    match read(&fixture("good/return.xlsx"), "return.xlsx", &limits) {
        Err(ReadError::TooLarge { what, limit, .. }) => {
            assert_eq!(what, "the attachment");
            assert_eq!(limit, 1_000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn text_without_a_csv_name_is_not_taken_for_a_return() {
    let err = read(b"KPI1,5\n", "notes.txt", &Limits::default()).expect_err("not csv");
    assert!(matches!(err, ReadError::Unsupported(m) if m.contains("text file")));
}

// ---- good files -------------------------------------------------------------------------------

/// What every format of the good return must agree on.
fn assert_common_return(wb: &Workbook) {
    let names: Vec<(&str, bool)> = wb.sheets.iter().map(|s| (s.name.as_str(), s.visible)).collect();
    assert_eq!(names, vec![("Return", true), ("Guidance", false), ("About", false)]);
    let sheet = wb.first_visible().expect("Return is visible");
    assert_eq!(sheet.name, "Return");
    assert_eq!(sheet.cells.get(&at("A1")), Some(&text("Organisation code")));
    assert_eq!(sheet.cells.get(&at("B1")), Some(&text("5N1")));
    assert_eq!(sheet.cells.get(&at("B2")), Some(&text("NHS Leeds & Partners")));
    assert_eq!(sheet.cells.get(&at("C4")), Some(&text("Value")));
    // a number typed as text stays text: the validator decides (IAPT-W03)
    assert_eq!(sheet.cells.get(&at("C5")), Some(&text("68653")));
    assert_eq!(sheet.cells.get(&at("C6")), Some(&Cell::Number(1234.5)));
    assert_eq!(sheet.cells.get(&at("C7")), Some(&Cell::Number(2469.0)));
    assert_eq!(sheet.cells.get(&at("C8")), Some(&Cell::Error("#DIV/0!".into())));
    assert_eq!(sheet.cells.get(&at("B9")), Some(&text("ab")));
    assert_eq!(sheet.cells.get(&at("B10")), Some(&Cell::Number(40724.0)));
    assert_eq!(sheet.merged, vec![(at("A12"), at("C12"))]);
    assert_eq!(sheet.cells.get(&at("B4")), None, "empty cells are not stored");
    let about = wb.sheets.iter().find(|s| s.name == "About").expect("About sheet");
    assert_eq!(about.cells.get(&at("B1")), Some(&text("IAPT-KPI")));
}

#[test]
fn good_xlsx_reads_every_cell_type() {
    let wb = read_fixture("good/return.xlsx").expect("reads");
    assert_eq!(wb.format, Format::Xlsx);
    assert_common_return(&wb);
    let sheet = wb.first_visible().expect("visible");
    // rich-text runs are joined and the phonetic guide left out
    assert_eq!(sheet.cells.get(&at("A2")), Some(&text("Organisation name")));
    // a row and cells without `r` follow on from the previous ones
    assert_eq!(sheet.cells.get(&at("A9")), Some(&Cell::Bool(true)));
    // dates stay serial numbers unless the cell says t="d"
    assert_eq!(sheet.cells.get(&at("A10")), Some(&Cell::DateTime(40724.0)));
}

#[test]
fn xlsx_named_xlsm_is_read_as_macro_enabled() {
    let wb = read(&fixture("good/return.xlsx"), "return.xlsm", &Limits::default()).expect("reads");
    assert_eq!(wb.format, Format::Xlsm);
}

#[test]
fn good_xls_reads_like_the_xlsx() {
    let wb = read_fixture("good/return.xls").expect("reads");
    assert_eq!(wb.format, Format::Xls);
    assert_common_return(&wb);
    let sheet = wb.first_visible().expect("visible");
    assert_eq!(sheet.cells.get(&at("A9")), Some(&Cell::Bool(true)));
}

#[test]
fn good_xls_is_detected_by_content_whatever_its_name() {
    let wb = read(&fixture("good/return.xls"), "return.xlsx", &Limits::default()).expect("reads");
    assert_eq!(wb.format, Format::Xls);
}

#[test]
fn good_ods_reads_like_the_xlsx() {
    let wb = read_fixture("good/return.ods").expect("reads");
    assert_eq!(wb.format, Format::Ods);
    assert_common_return(&wb);
}

#[test]
fn good_csv_reads_label_value_rows() {
    let wb = read_fixture("good/return.csv").expect("reads");
    let sheet = wb.first_visible().expect("one sheet");
    assert_eq!(sheet.cells.get(&at("A1")), Some(&text("Organisation code")));
    assert_eq!(sheet.cells.get(&at("B2")), Some(&text("Leeds, NHS")));
    assert_eq!(sheet.cells.get(&at("C5")), Some(&text("68653")));
}

// ---- unusual but valid packages (make-packages.py) -------------------------------------------

#[test]
fn parts_are_found_through_relationships_whatever_their_names_case_and_slashes() {
    let odd = read_fixture("good/odd-names.xlsx").expect("reads");
    let original = read_fixture("../returns/valid-openpyxl.xlsx").expect("reads");
    assert_eq!(odd.sheets, original.sheets);
}

#[test]
fn a_minimal_package_with_its_workbook_at_the_root_is_read() {
    let wb = read_fixture("good/minimal.xlsx").expect("reads");
    let sheet = wb.first_visible().expect("a sheet");
    assert_eq!(sheet.cells.get(&at("B1")), Some(&text("5N1")));
    assert_eq!(sheet.cells.get(&at("B4")), Some(&Cell::Number(68653.0)));
}

#[test]
fn empty_shared_strings_are_empty_text_not_damage() {
    let wb = read_fixture("good/empty-strings.xlsx").expect("reads");
    let original = read_fixture("../returns/producers/libreoffice-good-xlsx.xlsx").expect("reads");
    let mut sheet = wb.first_visible().expect("a sheet").clone();
    assert_eq!(sheet.cells.remove(&at("D1")), Some(text("")));
    assert_eq!(sheet.cells.remove(&at("D2")), Some(text("")));
    assert_eq!(sheet.cells.get(&at("D3")), None, "a cell with no index holds nothing");
    assert_eq!(Some(&sheet), original.first_visible());
}

#[test]
fn xlsb_chart_and_macro_sheets_activex_and_ole_parts_do_not_stop_the_read() {
    let wb = read_fixture("good/extra-parts.xlsb").expect("reads");
    let names: Vec<&str> = wb.sheets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Return", "Guidance", "About", "Macro1"], "the chart sheet holds no cells");
    let original = read_fixture("../returns/producers/sheetjs-good-xlsb.xlsb").expect("reads");
    assert_eq!(wb.first_visible(), original.first_visible());
    assert_eq!(wb.sheets[3].cells, original.sheets[2].cells, "the macro sheet's cells are read");
}

#[test]
fn no_fixture_makes_the_reader_panic_when_cut_short() {
    // Every prefix length of every small fixture must end in Ok or a ReadError, never a panic.
    for rel in [
        "good/return.xlsx",
        "good/return.xls",
        "good/return.ods",
        "good/extra-parts.xlsb",
        "hostile/encrypted.xlsx",
        "../returns/valid-default-password.xls",
    ] {
        let bytes = fixture(rel);
        for cut in (0..bytes.len()).step_by(97) {
            let _ = read(&bytes[..cut], rel, &Limits::default());
        }
    }
}
