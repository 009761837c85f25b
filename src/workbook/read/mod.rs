//! Bytes → `Workbook` for every accepted format, with every SPEC §6 guard counted as the file is
//! read (`budget`): real cells, text (a shared string at every use), unpacked bytes, and the
//! time limit through a [`Cancel`] flag looked at for every record or XML event. Nothing is
//! allocated from a size the file declares. The format is judged by content (magic bytes,
//! package relationships, OLE2 streams), the file name only breaking ties. PURE: takes bytes,
//! returns data; never panics on any input. Owns `src/workbook/read/`; must not touch the grid
//! types, `locate` or `template`.
//!
//! Every reader is our own code over `zip`, `quick-xml` and `csv`, because each calamine reader
//! lays sheets out densely from their cells' bounding box, cannot be interrupted, and has
//! format-specific faults (each module comment says which):
//!
//! | format      | reader                                 | what it reads itself            |
//! |-------------|----------------------------------------|---------------------------------|
//! | xlsx, xlsm  | `xlsx`, `xlsx_sheet` (+ `opc`)         | parts by relationship, `#SPILL!`|
//! | xlsb        | `xlsb` (+ `opc`)                       | compact cells, skipped parts    |
//! | xls         | `xls`, `xls_records`, `xls_crypt`, `cfb` | FAT shapes, default password  |
//! | encrypted   | `ooxml_crypt` (+ `cfb`), then as above | Excel's default password        |
//! | ods, fods   | `ods`                                  | repeats, text between cells     |
//! | csv         | `csv` (the csv crate)                  | UTF-16, `;` and tab             |

mod budget;
mod cfb;
mod csv;
pub mod detect;
mod ods;
mod ooxml_crypt;
mod opc;
mod xls;
mod xls_crypt;
mod xls_records;
mod xlsb;
mod xlsx;
mod xlsx_sheet;
mod xml;
mod zipped;

pub use budget::Cancel;

use crate::workbook::grid::{Format, Limits, ReadError, Workbook};

use budget::Budget;
use detect::{Container, Zipped};

/// Reads one attachment into a workbook, or says in words a PCT analyst can act on why not.
pub fn read(bytes: &[u8], file_name: &str, limits: &Limits) -> Result<Workbook, ReadError> {
    read_until(bytes, file_name, limits, &Cancel::new())
}

/// [`read`] that ends with [`ReadError::Timeout`], dropping all it built, soon after `cancel`
/// is stopped.
pub fn read_until(
    bytes: &[u8],
    file_name: &str,
    limits: &Limits,
    cancel: &Cancel,
) -> Result<Workbook, ReadError> {
    let size = bytes.len() as u64;
    if size > limits.attachment_bytes {
        return Err(ReadError::TooLarge {
            what: "the attachment".into(),
            actual: size,
            limit: limits.attachment_bytes,
        });
    }
    let budget = Budget::new(limits, cancel);
    match detect::container(bytes, file_name)? {
        Container::Text => csv::read(bytes, budget),
        Container::FlatOds => ods::read_flat(bytes, budget),
        Container::Ole2 => {
            let compound = cfb::Compound::open(bytes)?;
            if compound.exists("EncryptedPackage") {
                // An encrypted xlsx (or xlsm, xlsb): read what Excel's default password opens.
                let package = ooxml_crypt::decrypt(&compound, &budget)?;
                if !package.starts_with(b"PK") {
                    return Err(ReadError::Encrypted);
                }
                return zipped_workbook(&package, file_name, limits, budget);
            }
            match detect::ole2_format(&compound)? {
                Format::Xls => xls::read(&compound, budget),
                other => Err(detect::unsupported(other.name())),
            }
        }
        Container::Zip => zipped_workbook(bytes, file_name, limits, budget),
    }
}

fn zipped_workbook(
    bytes: &[u8],
    file_name: &str,
    limits: &Limits,
    mut budget: Budget,
) -> Result<Workbook, ReadError> {
    let mut zip = zipped::Archive::open(bytes, limits)?;
    match detect::zip_format(&mut zip, file_name, &mut budget)? {
        Zipped::Ods => ods::read_zip(&mut zip, budget),
        Zipped::Office { part, format: Format::Xlsb } => xlsb::read(&mut zip, &part, budget),
        Zipped::Office { part, format } => xlsx::read(&mut zip, &part, format, budget),
    }
}
