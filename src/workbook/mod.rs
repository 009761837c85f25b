//! Bytes → cell grid for every accepted format (xlsx, xlsm, xls, xlsb, ods, csv), with every guard
//! of SPEC §6 applied before anything large is allocated; the return's layout located by label;
//! and the template writer. PURE: takes bytes, returns data; no files, sockets or clock.

pub mod grid;
pub mod locate;
pub mod read;
pub mod template;

pub use grid::{Cell, CellRef, Format, Limits, ReadError, Sheet, Workbook};
