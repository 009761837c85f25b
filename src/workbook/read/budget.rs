//! What one read may still spend, counted in one place for every format (SPEC §6): unpacked
//! bytes, real cells as they stream (per sheet, and across the workbook against the same figure,
//! because all sheets are held at once), and text — every shared string when it is stored *and*
//! again at every cell that uses it, since each use is a copy in memory (one 1 MB string used by
//! 12,000 cells is 12 GB). Nothing is ever charged from a size the file declares.
//!
//! The time limit is kept the same way: the caller holds a [`Cancel`] and stops it when the time
//! is up; every charge (and [`Budget::tick`], called once per record or XML event) looks at it,
//! so a read past its time ends within microseconds and drops everything it built. This was
//! chosen over reading in a child process with a memory limit: the readers are our own code
//! (none calls into a parser that cannot be interrupted), so a flag is enough to stop them, it
//! costs nothing measurable (one relaxed atomic load per event), and the daemon stays one
//! process with no file hand-off or per-attachment fork.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::workbook::grid::{Cell, CellRef, Limits, ReadError, Sheet};

/// A read's stop signal, shared between the reader and whoever waits for it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicU64>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops the read: it ends with [`ReadError::Timeout`] naming `seconds`.
    pub fn stop(&self, seconds: u64) {
        self.0.store(seconds.max(1), Ordering::Relaxed);
    }

    /// The seconds given to [`Cancel::stop`], once it was called.
    pub fn stopped(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            seconds => Some(seconds),
        }
    }
}

#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    cancel: Cancel,
    unpacked_used: u64,
    workbook_cells: u64,
    text_used: u64,
}

impl Budget {
    pub fn new(limits: &Limits, cancel: &Cancel) -> Self {
        Budget {
            limits: *limits,
            cancel: cancel.clone(),
            unpacked_used: 0,
            workbook_cells: 0,
            text_used: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Fails once the read has been stopped.
    pub fn tick(&self) -> Result<(), ReadError> {
        match self.cancel.stopped() {
            None => Ok(()),
            Some(seconds) => Err(ReadError::Timeout { seconds }),
        }
    }

    /// Unpacked bytes the next part may still unpack to.
    pub fn unpacked_left(&self) -> u64 {
        self.limits.unpacked_bytes.saturating_sub(self.unpacked_used)
    }

    pub fn charge_unpacked(&mut self, bytes: u64) {
        self.unpacked_used = self.unpacked_used.saturating_add(bytes);
    }

    /// Counts one more real cell of a sheet that already holds `in_sheet` cells.
    pub fn charge_cell(&mut self, sheet: &str, in_sheet: usize) -> Result<(), ReadError> {
        self.tick()?;
        let limit = self.limits.cells_per_sheet;
        let in_sheet = (in_sheet as u64).saturating_add(1);
        within(in_sheet, limit, || format!("the number of cells in sheet '{sheet}'"))?;
        self.workbook_cells = self.workbook_cells.saturating_add(1);
        within(self.workbook_cells, limit, || "the number of cells in all sheets together".into())
    }

    /// Counts `bytes` more of text held in memory: a string table entry, or a cell's text (a
    /// shared string counts again at every cell that uses it).
    pub fn charge_text(&mut self, bytes: usize) -> Result<(), ReadError> {
        self.tick()?;
        self.text_used = self.text_used.saturating_add(bytes as u64);
        within(self.text_used, self.limits.text_bytes, || {
            "the text in the workbook (every use of a shared string counted)".into()
        })
    }

    /// Fails when `bytes` more text would not fit, without counting them: for text still being
    /// collected, and before a shared string is copied into a cell.
    pub fn check_pending(&self, bytes: usize) -> Result<(), ReadError> {
        let would = self.text_used.saturating_add(bytes as u64);
        within(would, self.limits.text_bytes, || {
            "the text in the workbook (every use of a shared string counted)".into()
        })
    }

    /// Stores one cell, counting it and its text.
    pub fn put(&mut self, sheet: &mut Sheet, at: CellRef, cell: Cell) -> Result<(), ReadError> {
        self.charge_cell(&sheet.name, sheet.cells.len())?;
        if let Cell::Text(s) | Cell::Error(s) | Cell::FormulaNoValue(s) = &cell {
            self.charge_text(s.len())?;
        }
        sheet.cells.insert(at, cell);
        Ok(())
    }

    /// Counts one more entry of a string table that holds `held` entries.
    pub fn charge_string(
        &mut self,
        held: usize,
        part: &str,
        bytes: usize,
    ) -> Result<(), ReadError> {
        let count = (held as u64).saturating_add(1);
        within(count, self.limits.cells_per_sheet, || format!("the number of strings in {part}"))?;
        self.charge_text(bytes)
    }
}

/// `actual` within `limit`, or the finding that names `what` went over it.
fn within(actual: u64, limit: u64, what: impl FnOnce() -> String) -> Result<(), ReadError> {
    if actual > limit {
        return Err(ReadError::TooLarge { what: what(), actual, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_read_fails_its_next_charge_with_the_time_given() {
        let cancel = Cancel::new();
        let mut budget = Budget::new(&Limits::default(), &cancel);
        assert_eq!(budget.charge_cell("Return", 0), Ok(()));
        cancel.stop(10);
        assert_eq!(budget.charge_cell("Return", 1), Err(ReadError::Timeout { seconds: 10 }));
        assert_eq!(budget.tick(), Err(ReadError::Timeout { seconds: 10 }));
    }

    #[test]
    fn every_use_of_a_string_counts_against_the_text_limit() {
        let limits = Limits { text_bytes: 2_500, ..Limits::default() };
        let mut budget = Budget::new(&limits, &Cancel::new());
        budget.charge_string(0, "sharedStrings.xml", 1_000).expect("the table entry fits");
        budget.charge_text(1_000).expect("one use fits");
        match budget.charge_text(1_000) {
            Err(ReadError::TooLarge { what, actual: 3_000, limit: 2_500 }) => {
                assert!(what.contains("shared string"), "{what}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn cells_count_per_sheet_and_across_sheets() {
        let limits = Limits { cells_per_sheet: 3, ..Limits::default() };
        let mut budget = Budget::new(&limits, &Cancel::new());
        for i in 0..3 {
            budget.charge_cell("A", i).expect("within");
        }
        assert!(matches!(budget.charge_cell("B", 0), Err(ReadError::TooLarge { what, .. })
            if what.contains("all sheets")));
    }
}
