//! What kind of file an attachment is, judged by its content (magic bytes, zip entries, OLE2
//! streams) and by its name only to break ties. Owns the wording that tells an analyst what to
//! send instead; opens nothing large and reads no cells.

use crate::workbook::grid::{Format, ReadError};

use super::budget::Budget;
use super::cfb::{self, Compound};
use super::opc::{self, Main};
use super::zipped::Archive;

/// The advice every "unsupported" message ends with.
pub const ACCEPTED: &str = "accepted types are .xlsx, .xlsm, .xls, .xlsb, .ods and .csv; \
save the return as .xlsx and resend";

/// The container a file's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Zip,
    Ole2,
    /// Delimited text (csv), in any of the encodings `csv` decodes.
    Text,
    /// A flat OpenDocument spreadsheet (.fods): one XML file.
    FlatOds,
}

/// Known non-spreadsheet signatures, with how to name them to a person.
const FOREIGN: &[(&[u8], &str)] = &[
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xFF\xD8\xFF", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\0", "a TIFF image"),
    (b"MM\0*", "a TIFF image"),
    (b"{\\rtf", "a Rich Text (RTF) document"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive"),
    (b"\x1F\x8B", "a gzip archive"),
    (b"\x78\x9F\x3E\x22", "an Outlook winmail.dat (TNEF) attachment"),
    (b"MZ", "a Windows program"),
    (b"\x7FELF", "a program"),
];

/// Sorts the bytes into a container, or says what foreign thing they are.
pub fn container(bytes: &[u8], file_name: &str) -> Result<Container, ReadError> {
    if bytes.is_empty() {
        return Err(ReadError::Empty);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Container::Zip);
    }
    if bytes.starts_with(cfb::MAGIC) {
        return Ok(Container::Ole2);
    }
    if let Some(old) = old_excel(bytes) {
        return Err(old);
    }
    if let Some((_, what)) = FOREIGN.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Err(unsupported(what));
    }
    if let Some(text) = super::csv::utf16(bytes.get(..4096).unwrap_or(bytes)) {
        return text_kind(text.as_bytes(), file_name);
    }
    if looks_like_text(bytes) {
        return text_kind(bytes, file_name);
    }
    Err(unsupported("a file of an unknown type"))
}

/// Excel 2.x, 3.0 and 4.0 files (BIFF2–4, 1987–1992) are a bare record stream, not an OLE2
/// file: they start with their BOF record. Current programs open them only to convert.
fn old_excel(bytes: &[u8]) -> Option<ReadError> {
    let (excel, biff) = match bytes.get(..2)? {
        [0x09, 0x00] => ("Excel 2.x", 2),
        [0x09, 0x02] => ("Excel 3.0", 3),
        [0x09, 0x04] => ("Excel 4.0", 4),
        _ => return None,
    };
    let len = u16::from_le_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    let kind = u16::from_le_bytes([*bytes.get(6)?, *bytes.get(7)?]);
    let plausible = (4..=16).contains(&len) && matches!(kind, 0x0010 | 0x0020 | 0x0040 | 0x0100);
    plausible.then(|| {
        ReadError::Unsupported(format!(
            "the file is an {excel} spreadsheet from the early 1990s (BIFF{biff}), which this \
             service cannot read; open it in a current Excel or LibreOffice, save it as .xlsx \
             and resend"
        ))
    })
}

/// The message for a file that is not an accepted spreadsheet.
pub fn unsupported(what: &str) -> ReadError {
    ReadError::Unsupported(format!("the file is {what}, not a spreadsheet return; {ACCEPTED}"))
}

/// The message for a spreadsheet this reader cannot decode although its type is accepted.
pub fn unsupported_content(what: &str) -> ReadError {
    ReadError::Unsupported(format!("the file is {what}; save the return as .xlsx and resend"))
}

fn looks_like_text(bytes: &[u8]) -> bool {
    let head = bytes.get(..8192).unwrap_or(bytes);
    !head.contains(&0)
}

fn text_kind(bytes: &[u8], file_name: &str) -> Result<Container, ReadError> {
    // A flat ODS names its type after its namespace declarations, 2 KB or more in.
    let head = bytes.get(..8192).unwrap_or(bytes);
    let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with("<!doctype html") || trimmed.starts_with("<html") {
        return Err(unsupported("a web page (HTML)"));
    }
    if trimmed.starts_with("<?xml") || trimmed.starts_with("<office:document") {
        if lower.contains("<office:document")
            && lower.contains("application/vnd.oasis.opendocument.spreadsheet")
        {
            return Ok(Container::FlatOds);
        }
        if lower.contains("urn:schemas-microsoft-com:office:spreadsheet") {
            return Err(unsupported("an Excel 2003 XML spreadsheet"));
        }
        return Err(unsupported("an XML document"));
    }
    if file_name.to_ascii_lowercase().ends_with(".csv") {
        return Ok(Container::Text);
    }
    Err(unsupported("a text file without a .csv name"))
}

/// What a zipped file holds: an Office package's workbook part, or an OpenDocument
/// spreadsheet.
pub enum Zipped {
    Office { part: String, format: Format },
    Ods,
}

/// Which spreadsheet a zip holds, from its parts (and the name for xlsx versus xlsm).
pub fn zip_format(
    zip: &mut Archive<'_>,
    file_name: &str,
    budget: &mut Budget,
) -> Result<Zipped, ReadError> {
    if zip.has("mimetype") {
        let mime = zip.read_small("mimetype", budget)?;
        let mime = String::from_utf8_lossy(mime.get(..200).unwrap_or(&mime)).into_owned();
        return match mime.trim() {
            "application/vnd.oasis.opendocument.spreadsheet"
            | "application/vnd.oasis.opendocument.spreadsheet-template" => Ok(Zipped::Ods),
            "application/vnd.oasis.opendocument.text" => {
                Err(unsupported("an OpenDocument text document"))
            }
            other => Err(unsupported(&format!("an OpenDocument file of type '{other}'"))),
        };
    }
    match opc::main_part(zip, budget)? {
        Main::Workbook { part, format } => {
            let named_xlsm = file_name.to_ascii_lowercase().ends_with(".xlsm");
            let format = if format == Format::Xlsx && named_xlsm { Format::Xlsm } else { format };
            Ok(Zipped::Office { part, format })
        }
        Main::Foreign(what) => Err(unsupported(what)),
        // An OpenDocument package whose mimetype entry was left out.
        Main::None if zip.has("content.xml") => Ok(Zipped::Ods),
        Main::None => Err(unsupported("a zip archive")),
    }
}

/// Which spreadsheet an OLE2 compound file holds: an encrypted OOXML package, an xls, or
/// something else (a Word .doc, an Outlook message).
pub fn ole2_format(cfb: &Compound<'_>) -> Result<Format, ReadError> {
    if cfb.exists("EncryptedPackage") || cfb.exists("EncryptionInfo") {
        return Err(ReadError::Encrypted);
    }
    if cfb.exists("Workbook") || cfb.exists("Book") {
        return Ok(Format::Xls);
    }
    if cfb.exists("WordDocument") {
        return Err(unsupported("a Word document"));
    }
    if cfb.exists("PowerPoint Document") {
        return Err(unsupported("a PowerPoint presentation"));
    }
    if cfb.exists("__substg1.0_0037001F") || cfb.exists("__properties_version1.0") {
        return Err(unsupported("an Outlook message"));
    }
    Err(unsupported("an Office file that holds no workbook"))
}
