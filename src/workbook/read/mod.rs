//! Bytes → `Workbook` for every accepted format, with every SPEC §6 guard applied before
//! anything large is allocated. The format is judged by content (magic bytes, zip entries, OLE2
//! streams), the file name only breaking ties. PURE: takes bytes, returns data; never panics on
//! any input. Owns `src/workbook/read/`; must not touch the grid types, `locate` or `template`.
//!
//! | format      | reader                                    | why                              |
//! |-------------|-------------------------------------------|----------------------------------|
//! | xlsx, xlsm  | own streaming reader (`xlsx`)             | calamine's dense grid, `#SPILL!` |
//! | xls         | calamine after a BIFF record walk (`xls`) | calamine allocates dense ranges  |
//! | xlsb        | calamine's cell reader after a record walk | oversized record buffers         |
//! | ods         | calamine after a content.xml walk (`ods`) | repeated rows/columns expand     |
//! | csv         | the csv crate (`csv`)                     |                                  |

mod budget;
mod calc;
mod csv;
pub mod detect;
mod ods;
mod xls;
mod xlsb;
mod xlsx;
mod xlsx_sheet;
mod xml;
mod zipped;

use crate::workbook::grid::{Format, Limits, ReadError, Workbook};

use detect::Container;

/// Reads one attachment into a workbook, or says in words a PCT analyst can act on why not.
pub fn read(bytes: &[u8], file_name: &str, limits: &Limits) -> Result<Workbook, ReadError> {
    let size = bytes.len() as u64;
    if size > limits.attachment_bytes {
        return Err(ReadError::TooLarge {
            what: "the attachment".into(),
            actual: size,
            limit: limits.attachment_bytes,
        });
    }
    match detect::container(bytes, file_name)? {
        Container::Text => csv::read(bytes, limits),
        Container::Ole2 => match detect::ole2_format(bytes)? {
            Format::Xls => xls::read(bytes, limits),
            other => Err(detect::unsupported(other.name())),
        },
        Container::Zip => {
            let mut zip = zipped::open(bytes, limits)?;
            match detect::zip_format(&mut zip, file_name, limits.unpacked_bytes)? {
                format @ (Format::Xlsx | Format::Xlsm) => xlsx::read(&mut zip, format, limits),
                Format::Xlsb => xlsb::read(bytes, &mut zip, limits),
                Format::Ods => ods::read(bytes, &mut zip, limits),
                other => Err(detect::unsupported(other.name())),
            }
        }
    }
}
