//! What kind of file an attachment is, judged by its content (magic bytes, zip entries, OLE2
//! streams) and by its name only to break ties. Owns the wording that tells an analyst what to
//! send instead; opens nothing large and reads no cells.

use crate::workbook::grid::{Format, ReadError};

use super::zipped::{self, Archive};

/// The advice every "unsupported" message ends with.
pub const ACCEPTED: &str = "accepted types are .xlsx, .xlsm, .xls, .xlsb, .ods and .csv; \
save the return as .xlsx and resend";

/// The container a file's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Zip,
    Ole2,
    Text,
}

const OLE2_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

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
    if bytes.starts_with(OLE2_MAGIC) {
        return Ok(Container::Ole2);
    }
    if let Some((_, what)) = FOREIGN.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Err(unsupported(what));
    }
    if looks_like_text(bytes) {
        return text_kind(bytes, file_name);
    }
    Err(unsupported("a file of an unknown type"))
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
    let head = bytes.get(..2048).unwrap_or(bytes);
    let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with("<!doctype html") || trimmed.starts_with("<html") {
        return Err(unsupported("a web page (HTML)"));
    }
    if trimmed.starts_with("<?xml") {
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

/// Which spreadsheet format a zip holds, from its entries (and the name for xlsx versus xlsm).
pub fn zip_format(
    zip: &mut Archive<'_>,
    file_name: &str,
    budget: u64,
) -> Result<Format, ReadError> {
    if zipped::has(zip, "xl/workbook.bin") {
        return Ok(Format::Xlsb);
    }
    if zipped::has(zip, "xl/workbook.xml") {
        return Ok(if is_macro_enabled(zip, file_name, budget)? {
            Format::Xlsm
        } else {
            Format::Xlsx
        });
    }
    if zipped::has(zip, "mimetype") {
        let mime = zipped::read_entry(zip, "mimetype", 200.min(budget))?;
        let mime = String::from_utf8_lossy(&mime);
        return match mime.trim() {
            "application/vnd.oasis.opendocument.spreadsheet" => Ok(Format::Ods),
            "application/vnd.oasis.opendocument.text" => {
                Err(unsupported("an OpenDocument text document"))
            }
            other => Err(unsupported(&format!("an OpenDocument file of type '{other}'"))),
        };
    }
    if zipped::has(zip, "word/document.xml") {
        return Err(unsupported("a Word document"));
    }
    if zipped::has(zip, "ppt/presentation.xml") {
        return Err(unsupported("a PowerPoint presentation"));
    }
    Err(unsupported("a zip archive"))
}

fn is_macro_enabled(
    zip: &mut Archive<'_>,
    file_name: &str,
    budget: u64,
) -> Result<bool, ReadError> {
    if file_name.to_ascii_lowercase().ends_with(".xlsm") || zipped::has(zip, "xl/vbaProject.bin") {
        return Ok(true);
    }
    if !zipped::has(zip, "[Content_Types].xml") {
        return Ok(false);
    }
    let types = zipped::read_entry(zip, "[Content_Types].xml", budget)?;
    Ok(String::from_utf8_lossy(&types).contains("sheet.macroEnabled.main+xml"))
}

/// Which spreadsheet an OLE2 compound file holds: an encrypted OOXML package, an xls, or
/// something else (a Word .doc, an Outlook message).
pub fn ole2_format(bytes: &[u8]) -> Result<Format, ReadError> {
    let cfb = cfb::CompoundFile::open(std::io::Cursor::new(bytes))
        .map_err(|e| ReadError::Corrupt(format!("not a valid Office file: {e}")))?;
    if cfb.exists("/EncryptedPackage") || cfb.exists("/EncryptionInfo") {
        return Err(ReadError::Encrypted);
    }
    if cfb.exists("/Workbook") || cfb.exists("/Book") {
        return Ok(Format::Xls);
    }
    if cfb.exists("/WordDocument") {
        return Err(unsupported("a Word document"));
    }
    if cfb.exists("/PowerPoint Document") {
        return Err(unsupported("a PowerPoint presentation"));
    }
    if cfb.exists("/__substg1.0_0037001F") || cfb.exists("/__properties_version1.0") {
        return Err(unsupported("an Outlook message"));
    }
    Err(unsupported("an Office file that holds no workbook"))
}
