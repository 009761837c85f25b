//! The cell grid every reader produces: sparse sheets of typed cells, plus A1 addressing.
//! Pure data; no I/O. Readers in this module fill it, `locate` and the validator read it.

use std::collections::BTreeMap;
use std::fmt;

/// One cell as the file stored it. Values are kept as found; judging them is the validator's job.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A numeric value (Excel stores every number as a float).
    Number(f64),
    /// Text, exactly as stored (not trimmed).
    Text(String),
    Bool(bool),
    /// An Excel error value such as `#DIV/0!` or `#SPILL!`, kept verbatim.
    Error(String),
    /// A formula whose result was never saved (the file was written by a program that does not
    /// calculate). Holds the formula text.
    FormulaNoValue(String),
    /// A date or time, as the serial number Excel uses.
    DateTime(f64),
}

impl Cell {
    /// The cell as a person would see it typed, for messages.
    pub fn display(&self) -> String {
        match self {
            Cell::Number(n) | Cell::DateTime(n) => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    format!("{}", *n as i64)
                } else {
                    format!("{n}")
                }
            }
            Cell::Text(s) => s.clone(),
            Cell::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
            Cell::Error(e) => e.clone(),
            Cell::FormulaNoValue(f) => format!("={f}"),
        }
    }

    /// True for a cell that holds nothing a person would call a value (empty or blank text).
    pub fn is_blank(&self) -> bool {
        matches!(self, Cell::Text(s) if s.trim().is_empty())
    }
}

/// A zero-based (row, column) position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellRef {
    pub row: u32,
    pub col: u32,
}

impl CellRef {
    pub fn new(row: u32, col: u32) -> Self {
        CellRef { row, col }
    }

    /// Column letters for a zero-based column: 0 → `A`, 25 → `Z`, 26 → `AA`.
    pub fn col_letters(col: u32) -> String {
        let mut n = col as u64 + 1;
        let mut out = Vec::new();
        while n > 0 {
            let rem = ((n - 1) % 26) as u8;
            out.push(b'A' + rem);
            n = (n - 1) / 26;
        }
        out.reverse();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Parse `B7` (case-insensitive, `$` allowed) into a zero-based reference.
    pub fn parse_a1(s: &str) -> Option<CellRef> {
        let s = s.trim().replace('$', "");
        let split = s.find(|c: char| c.is_ascii_digit())?;
        let (letters, digits) = s.split_at(split);
        if letters.is_empty()
            || letters.len() > 3
            || !letters.chars().all(|c| c.is_ascii_alphabetic())
        {
            return None;
        }
        let mut col: u64 = 0;
        for c in letters.chars() {
            col = col * 26 + (c.to_ascii_uppercase() as u64 - 'A' as u64 + 1);
        }
        let row: u64 = digits.parse().ok()?;
        if row == 0 || row > u32::MAX as u64 || col == 0 {
            return None;
        }
        Some(CellRef::new((row - 1) as u32, (col - 1) as u32))
    }
}

impl fmt::Display for CellRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", CellRef::col_letters(self.col), self.row as u64 + 1)
    }
}

/// One sheet, stored sparsely: only cells that hold something are present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sheet {
    pub name: String,
    /// False for hidden and very hidden sheets.
    pub visible: bool,
    pub cells: BTreeMap<CellRef, Cell>,
    /// Merged ranges (top-left, bottom-right), where the format reports them.
    pub merged: Vec<(CellRef, CellRef)>,
}

impl Sheet {
    pub fn new(name: impl Into<String>, visible: bool) -> Self {
        Sheet { name: name.into(), visible, cells: BTreeMap::new(), merged: Vec::new() }
    }

    pub fn get(&self, row: u32, col: u32) -> Option<&Cell> {
        self.cells.get(&CellRef::new(row, col))
    }

    /// The cells of one row, in column order.
    pub fn row(&self, row: u32) -> impl Iterator<Item = (CellRef, &Cell)> {
        self.cells.range(CellRef::new(row, 0)..=CellRef::new(row, u32::MAX)).map(|(r, c)| (*r, c))
    }
}

/// The file format a workbook was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xlsx,
    Xlsm,
    Xls,
    Xlsb,
    Ods,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Xlsx => "xlsx",
            Format::Xlsm => "xlsm",
            Format::Xls => "xls",
            Format::Xlsb => "xlsb",
            Format::Ods => "ods",
            Format::Csv => "csv",
        }
    }
}

/// A whole workbook: its sheets in the order the file lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Workbook {
    pub format: Format,
    pub sheets: Vec<Sheet>,
}

impl Workbook {
    /// The first visible sheet, which holds the return (SPEC §3).
    pub fn first_visible(&self) -> Option<&Sheet> {
        self.sheets.iter().find(|s| s.visible)
    }
}

/// Guards applied while reading (SPEC §6). Checked before anything large is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest attachment accepted, in bytes.
    pub attachment_bytes: u64,
    /// Largest total unpacked size of a zipped workbook (xlsx, xlsm, xlsb, ods), in bytes.
    pub unpacked_bytes: u64,
    /// Most real cells one sheet (and the whole workbook) may hold; what a file declares about
    /// its size is never counted.
    pub cells_per_sheet: u64,
    /// Most text the cells and string tables of one workbook may hold in memory, in bytes, with
    /// a shared string counted again at every cell that uses it.
    pub text_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            attachment_bytes: 10 * 1000 * 1000,
            unpacked_bytes: 100 * 1000 * 1000,
            cells_per_sheet: 1_000_000,
            text_bytes: 20 * 1000 * 1000,
        }
    }
}

/// Why a file could not be read at all. Every variant becomes an IAPT-E21 finding whose message
/// is `Display` of this error, so each says what a PCT analyst should do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("the file is empty (0 bytes); attach the completed return again")]
    Empty,
    #[error(
        "the file is password-protected (encrypted); save it without a password and send it again"
    )]
    Encrypted,
    #[error("the file is damaged and cannot be opened ({0}); save it again from the spreadsheet program and resend")]
    Corrupt(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the file is too large: {what} is {actual}, over the limit of {limit}; send only the return template")]
    TooLarge { what: String, actual: u64, limit: u64 },
    #[error("the file took longer than {seconds} s to read, so it was not checked; save it again as a plain .xlsx holding only the return and resend")]
    Timeout { seconds: u64 },
}
