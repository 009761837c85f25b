//! What one read may still spend: unpacked bytes and cells. Shared by every format reader so
//! that the SPEC §6 limits are counted in one place. Cells are counted per sheet against
//! `cells_per_sheet`, and also across the whole workbook against the same figure, because all
//! sheets are held in memory at once and a file of many large sheets must not add up past it.

use crate::workbook::grid::{Limits, ReadError};

#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    unpacked_used: u64,
    workbook_cells: u64,
}

impl Budget {
    pub fn new(limits: &Limits) -> Self {
        Budget { limits: *limits, unpacked_used: 0, workbook_cells: 0 }
    }

    /// Unpacked bytes the next part may still unpack to.
    pub fn unpacked_left(&self) -> u64 {
        self.limits.unpacked_bytes.saturating_sub(self.unpacked_used)
    }

    pub fn charge_unpacked(&mut self, bytes: u64) {
        self.unpacked_used = self.unpacked_used.saturating_add(bytes);
    }

    /// Rejects a sheet whose declared area (rows × columns) is over the cell limit, before any
    /// of its cells is read.
    pub fn check_declared(&self, sheet: &str, area: u64) -> Result<(), ReadError> {
        within(area, self.limits.cells_per_sheet, || {
            format!("the declared size of sheet '{sheet}' (rows × columns)")
        })
    }

    /// Counts one more cell of a sheet that already holds `in_sheet` cells.
    pub fn charge_cell(&mut self, sheet: &str, in_sheet: usize) -> Result<(), ReadError> {
        let limit = self.limits.cells_per_sheet;
        let in_sheet = (in_sheet as u64).saturating_add(1);
        within(in_sheet, limit, || format!("the number of cells in sheet '{sheet}'"))?;
        self.workbook_cells = self.workbook_cells.saturating_add(1);
        within(self.workbook_cells, limit, || "the number of cells in all sheets together".into())
    }

    /// Rejects a string table whose item count, found by walking its records, is over the cap.
    pub fn check_declared_strings(&self, part: &str, count: u64) -> Result<(), ReadError> {
        within(count, self.limits.cells_per_sheet, || format!("the number of strings in {part}"))
    }

    /// A string table longer than the cell limit cannot be a return's, and would cost memory
    /// even when every string is empty.
    pub fn charge_string(&self, table: &[String], part: &str) -> Result<(), ReadError> {
        let count = (table.len() as u64).saturating_add(1);
        self.check_declared_strings(part, count)
    }
}

/// `actual` within `limit`, or the finding that names `what` went over it.
fn within(actual: u64, limit: u64, what: impl FnOnce() -> String) -> Result<(), ReadError> {
    if actual > limit {
        return Err(ReadError::TooLarge { what: what(), actual, limit });
    }
    Ok(())
}

/// The area of a range given by its corners, in cells, without overflow.
pub fn area(first_row: u64, first_col: u64, last_row: u64, last_col: u64) -> u64 {
    let rows = last_row.abs_diff(first_row).saturating_add(1);
    let cols = last_col.abs_diff(first_col).saturating_add(1);
    rows.saturating_mul(cols)
}
