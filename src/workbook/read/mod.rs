//! Bytes → Workbook for every accepted format, with the SPEC §6 guards. (to be written)
