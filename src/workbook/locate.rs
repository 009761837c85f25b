//! Finding the return in a workbook by its labels, never by fixed address (SPEC §3): the header
//! fields (label, then its value in the next column), and the measure table (a header row with
//! `KPI` and `Value`, optionally `Comment`, anywhere on the sheet; or, in the two-column csv form,
//! rows whose column A holds a KPI id and column B its value). Ids are matched however they are
//! spelled (`KPI 3b`, `kpi6B`, `KPI-3a`). PURE: reads the grid, judges nothing — whether a value
//! is acceptable is the validator's business.

use super::grid::{Cell, CellRef, Sheet, Workbook};

/// The header fields of the return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeaderField {
    OrganisationCode,
    OrganisationName,
    ReportingPeriod,
    ContactName,
    ContactEmail,
    ContactTelephone,
}

impl HeaderField {
    pub const ALL: [HeaderField; 6] = [
        HeaderField::OrganisationCode,
        HeaderField::OrganisationName,
        HeaderField::ReportingPeriod,
        HeaderField::ContactName,
        HeaderField::ContactEmail,
        HeaderField::ContactTelephone,
    ];

    /// The label as the template writes it.
    pub fn label(self) -> &'static str {
        match self {
            HeaderField::OrganisationCode => "Organisation code",
            HeaderField::OrganisationName => "Organisation name",
            HeaderField::ReportingPeriod => "Reporting period",
            HeaderField::ContactName => "Contact name",
            HeaderField::ContactEmail => "Contact email",
            HeaderField::ContactTelephone => "Contact telephone",
        }
    }
}

/// A header field found on the sheet.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderValue {
    pub field: HeaderField,
    /// Where the label is.
    pub label_at: CellRef,
    /// Where its value belongs (the next column, or after the label's merged range).
    pub at: CellRef,
    /// The value cell, if the file has one there.
    pub cell: Option<Cell>,
}

impl HeaderValue {
    /// The value as text, trimmed; `None` when blank.
    pub fn text(&self) -> Option<String> {
        let text = self.cell.as_ref()?.display();
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

/// Where the measure table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The row holding `KPI` / `Value`; `None` for the headerless csv form.
    pub header_row: Option<u32>,
    pub id_col: u32,
    pub value_col: u32,
    pub comment_col: Option<u32>,
}

/// One measure's row in the table.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureRow {
    /// The definition's canonical id (`KPI3b`).
    pub id: String,
    /// The id as written in the file (`KPI 3b`).
    pub written: String,
    pub id_at: CellRef,
    pub value_at: CellRef,
    /// The value cell, if the file has one there.
    pub value: Option<Cell>,
    pub comment_at: Option<CellRef>,
    /// The comment, trimmed; `None` when blank or when the table has no Comment column.
    pub comment: Option<String>,
}

/// A row whose id looks like a KPI id but is not one of the definition's measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRow {
    pub written: String,
    pub at: CellRef,
}

/// A measure that appears on a second row (the first row is the one kept in `measures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRow {
    pub id: String,
    pub first: CellRef,
    pub again: CellRef,
}

/// Everything found on the return's sheet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Located {
    pub sheet: String,
    pub header: Vec<HeaderValue>,
    /// `None` when no measure table was found (the file is not a return).
    pub table: Option<Table>,
    /// In sheet order.
    pub measures: Vec<MeasureRow>,
    /// The first `MAX_LISTED` unknown rows, in sheet order.
    pub unknown: Vec<UnknownRow>,
    /// The first `MAX_LISTED` repeated rows, in sheet order.
    pub duplicates: Vec<DuplicateRow>,
    /// How many unknown and repeated rows there were in all (a hostile sheet can hold a
    /// million; only the first few are kept).
    pub unknown_total: usize,
    pub duplicates_total: usize,
}

/// How many unknown or repeated rows are kept for reporting.
pub const MAX_LISTED: usize = 20;

/// Label and id cells are short; longer text is skipped without being normalised.
const MAX_LABEL_LEN: usize = 80;

impl Located {
    pub fn header(&self, field: HeaderField) -> Option<&HeaderValue> {
        self.header.iter().find(|h| h.field == field)
    }

    pub fn measure(&self, id: &str) -> Option<&MeasureRow> {
        self.measures.iter().find(|m| m.id.eq_ignore_ascii_case(id))
    }
}

/// Locate the return on the first visible sheet; `None` when every sheet is hidden (or there
/// are none). `measure_ids` are the definition's canonical ids.
pub fn locate(workbook: &Workbook, measure_ids: &[&str]) -> Option<Located> {
    workbook.first_visible().map(|s| locate_sheet(s, measure_ids))
}

/// Locate the return on one sheet.
pub fn locate_sheet(sheet: &Sheet, measure_ids: &[&str]) -> Located {
    let mut located =
        Located { sheet: sheet.name.clone(), header: header_fields(sheet), ..Default::default() };
    let Some(table) = find_table(sheet) else { return located };
    located.table = Some(table);
    let first_row = table.header_row.map_or(0, |r| r + 1);
    let ids =
        sheet.cells.range(CellRef::new(first_row, 0)..).filter(|(at, _)| at.col == table.id_col);
    for (&id_at, cell) in ids {
        let Cell::Text(written) = cell else { continue };
        if written.len() > MAX_LABEL_LEN {
            continue;
        }
        let Some(canonical) = normalise_measure_id(written) else { continue };
        let written = written.trim().to_string();
        let Some(id) = measure_ids.iter().find(|m| m.eq_ignore_ascii_case(&canonical)) else {
            located.unknown_total += 1;
            if located.unknown.len() < MAX_LISTED {
                located.unknown.push(UnknownRow { written, at: id_at });
            }
            continue;
        };
        if let Some(first) = located.measure(id).map(|m| m.id_at) {
            located.duplicates_total += 1;
            if located.duplicates.len() < MAX_LISTED {
                located.duplicates.push(DuplicateRow { id: id.to_string(), first, again: id_at });
            }
            continue;
        }
        let value_at = CellRef::new(id_at.row, table.value_col);
        let comment_at = table.comment_col.map(|c| CellRef::new(id_at.row, c));
        let comment = comment_at
            .and_then(|at| sheet.cells.get(&at))
            .map(|c| c.display().trim().to_string())
            .filter(|c| !c.is_empty());
        located.measures.push(MeasureRow {
            id: id.to_string(),
            written,
            id_at,
            value_at,
            value: sheet.cells.get(&value_at).cloned(),
            comment_at,
            comment,
        });
    }
    located
}

/// The header fields on a sheet: the first cell whose text is a field's label (case, spaces and
/// a trailing colon ignored), with the value in the next column.
pub fn header_fields(sheet: &Sheet) -> Vec<HeaderValue> {
    let mut found: Vec<HeaderValue> = Vec::new();
    for (&label_at, cell) in &sheet.cells {
        let Cell::Text(text) = cell else { continue };
        if text.len() > MAX_LABEL_LEN {
            continue;
        }
        let label = normalise_label(text);
        let Some(field) =
            HeaderField::ALL.into_iter().find(|f| f.label().eq_ignore_ascii_case(&label))
        else {
            continue;
        };
        if found.iter().any(|h| h.field == field) {
            continue;
        }
        // A label merged across columns (A1:B1) has its value after the merge.
        let end_col = sheet
            .merged
            .iter()
            .find(|(tl, br)| *tl == label_at && br.row >= label_at.row)
            .map_or(label_at.col, |(_, br)| br.col.max(label_at.col));
        let at = CellRef::new(label_at.row, end_col.saturating_add(1));
        found.push(HeaderValue { field, label_at, at, cell: sheet.cells.get(&at).cloned() });
        if found.len() == HeaderField::ALL.len() {
            break;
        }
    }
    found.sort_by_key(|h| h.field);
    found
}

/// Lower-case, inner spaces collapsed, trailing `:` and `*` dropped.
fn normalise_label(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    joined.trim_end_matches([':', '*', ' ']).to_string()
}

fn find_table(sheet: &Sheet) -> Option<Table> {
    for (&at, cell) in &sheet.cells {
        let Cell::Text(text) = cell else { continue };
        if text.len() > MAX_LABEL_LEN {
            continue;
        }
        let label = normalise_label(text);
        let is_kpi_header =
            label == "kpi" || (label.starts_with("kpi ") && normalise_measure_id(&label).is_none());
        if !is_kpi_header {
            continue;
        }
        let mut value_col = None;
        let mut comment_col = None;
        for (other, cell) in sheet.row(at.row).filter(|(r, _)| r.col > at.col) {
            let Cell::Text(t) = cell else { continue };
            let t = normalise_label(t);
            if value_col.is_none() && t.starts_with("value") {
                value_col = Some(other.col);
            } else if comment_col.is_none() && t.starts_with("comment") {
                comment_col = Some(other.col);
            }
        }
        if let Some(value_col) = value_col {
            return Some(Table {
                header_row: Some(at.row),
                id_col: at.col,
                value_col,
                comment_col,
            });
        }
    }
    // The two-column form (csv): KPI ids in column A, values in B, an optional comment in C.
    let headerless = sheet.cells.iter().any(|(at, c)| {
        at.col == 0 && matches!(c, Cell::Text(t) if normalise_measure_id(t).is_some())
    });
    headerless.then_some(Table { header_row: None, id_col: 0, value_col: 1, comment_col: Some(2) })
}

/// `KPI 3b`, `kpi6B`, `KPI-3a`, `KPI3b:` → `KPI3b`; anything else → `None`. Text after the id is
/// allowed when separated from it (`KPI2 (referrals)`).
pub fn normalise_measure_id(text: &str) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    let rest = lower.strip_prefix("kpi")?;
    let is_sep = |c: char| c == ' ' || c == '-' || c == '_' || c == '.';
    let rest = rest.trim_start_matches(is_sep);
    let digits_len = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits_len == 0 || digits_len > 4 {
        return None;
    }
    let number: u32 = rest[..digits_len].parse().ok()?;
    let after = &rest[digits_len..];
    let spaced = after.trim_start_matches(is_sep);
    let mut chars = spaced.chars();
    let suffix = match (chars.next(), chars.next()) {
        (Some(c), next)
            if c.is_ascii_alphabetic() && !next.is_some_and(|n| n.is_ascii_alphanumeric()) =>
        {
            Some(c)
        }
        _ => None,
    };
    if suffix.is_none() && after.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(match suffix {
        Some(c) => format!("KPI{number}{c}"),
        None => format!("KPI{number}"),
    })
}

#[cfg(test)]
#[path = "locate_tests.rs"]
mod tests;
