//! Attachments: a safe file name for each, and what kind of file it is by its content first and
//! its name and declared type second. Owns no parsing of the files themselves: opening a
//! spreadsheet (with every guard) belongs to `workbook`.

use serde::Serialize;

/// What an attachment is, as far as intake cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    /// A workbook or CSV the validator should read (it may still turn out corrupt: that is the
    /// validator's finding, not a reason to ignore the file).
    Spreadsheet,
    /// Outlook's `winmail.dat` wrapper: the sender is asked to send a normal attachment.
    Tnef,
    Other,
}

/// One attachment, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// Safe to use as a file name anywhere: no path, no control or reserved characters, never
    /// empty (`attachment-N`, N counting from 1 in this list).
    pub name: String,
    /// The name as the sender's client declared it (decoded), for the audit trail.
    pub declared_name: Option<String>,
    /// Declared `Content-Type`, lower-case, without parameters.
    pub content_type: String,
    pub kind: AttachmentKind,
    /// 0 for the message's own attachments, 1 inside a forwarded message, and so on.
    pub depth: usize,
    pub size: usize,
    /// Why it must not be forwarded (an executable, a script, macros, an active HTML page).
    pub danger: Option<super::danger::Danger>,
    /// The archive it was unpacked from (`returns.zip`), when it came out of one.
    pub container: Option<String>,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Longest safe name, in characters; longer names are shortened keeping the extension.
const NAME_LIMIT: usize = 120;

/// A file name that cannot escape a directory or upset a terminal: the last path component of
/// the declared name (either slash), control characters removed, characters Windows reserves
/// replaced by `_`, leading dots and trailing dots/spaces trimmed; `attachment-N` when nothing is
/// left.
pub fn safe_file_name(declared: Option<&str>, number: usize) -> String {
    let visible: String =
        declared.unwrap_or_default().chars().filter(|c| !c.is_control()).collect();
    let last = visible.rsplit(['/', '\\']).next().unwrap_or_default();
    let replaced: String =
        last.chars().map(|c| if r#"<>:"|?*"#.contains(c) { '_' } else { c }).collect();
    let trimmed = replaced.trim().trim_start_matches('.').trim_end_matches(['.', ' ']).trim();
    if trimmed.is_empty() {
        return format!("attachment-{number}");
    }
    shorten(trimmed)
}

fn shorten(name: &str) -> String {
    if name.chars().count() <= NAME_LIMIT {
        return name.to_string();
    }
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) if ext.chars().count() <= 10 => format!(".{ext}"),
        _ => String::new(),
    };
    let keep = NAME_LIMIT - ext.chars().count();
    name.chars().take(keep).chain(ext.chars()).collect()
}

/// The lower-cased extension of a file name (`xlsx`), empty if none.
pub fn extension(name: &str) -> String {
    name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default()
}

const OLE2_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// TNEF signature 0x223E9F78, little-endian.
const TNEF_MAGIC: &[u8] = &[0x78, 0x9F, 0x3E, 0x22];
const SPREADSHEET_EXTENSIONS: &[&str] = &["xlsx", "xlsm", "xlsb", "xls", "ods", "csv"];
/// OLE2 is also the container of Word, PowerPoint, Outlook and other files; a name saying so
/// wins over the magic (an OLE2 `.xlsx` is an encrypted workbook and stays a spreadsheet).
const OLE2_NOT_SPREADSHEET: &[&str] =
    &["doc", "dot", "ppt", "pps", "pot", "msg", "oft", "pub", "vsd", "mpp", "msi"];
const CSV_TYPES: &[&str] = &[
    "text/csv",
    "text/comma-separated-values",
    "text/x-csv",
    "application/csv",
    "application/x-csv",
];

/// Decide the kind of an attachment. Content first: the TNEF signature, an OOXML zip (it always
/// holds `xl/workbook.xml` or `.bin`), an OpenDocument spreadsheet (its first entry is the
/// uncompressed `mimetype`, ODF 1.2 part 3 §3.3), OLE2 (`.xls`, and encrypted workbooks). Then a
/// spreadsheet name with a type that does not contradict it (a corrupt `.xlsx` still goes to the
/// validator, which explains what is wrong), or a CSV content type.
pub fn sniff_kind(name: &str, content_type: &str, bytes: &[u8]) -> AttachmentKind {
    let ext = extension(name);
    if name.eq_ignore_ascii_case("winmail.dat")
        || content_type == "application/ms-tnef"
        || content_type == "application/vnd.ms-tnef"
        || bytes.starts_with(TNEF_MAGIC)
    {
        return AttachmentKind::Tnef;
    }
    let by_content = (bytes.starts_with(ZIP_MAGIC) && (is_ooxml_workbook(bytes) || is_ods(bytes)))
        || (bytes.starts_with(OLE2_MAGIC) && !OLE2_NOT_SPREADSHEET.contains(&ext.as_str()));
    let by_name = SPREADSHEET_EXTENSIONS.contains(&ext.as_str()) && spreadsheet_ish(content_type);
    if by_content || by_name || CSV_TYPES.contains(&content_type) {
        AttachmentKind::Spreadsheet
    } else {
        AttachmentKind::Other
    }
}

/// Zip entry names are stored uncompressed in the local headers and the central directory, so
/// the workbook part's name is found in the bytes without unpacking anything. Written by hand on
/// purpose: a hostile zip may declare millions of entries, and this look costs no allocation.
fn is_ooxml_workbook(bytes: &[u8]) -> bool {
    contains(bytes, b"xl/workbook.xml") || contains(bytes, b"xl/workbook.bin")
}

fn is_ods(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(200)];
    contains(head, b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    match needle.first() {
        Some(&first) => haystack.windows(needle.len()).any(|w| w[0] == first && w == needle),
        None => true,
    }
}

/// Types a client may give a spreadsheet: its own, a generic binary or zip type, plain text
/// (for CSV) or none at all. Images, PDFs, HTML and the like contradict a spreadsheet name.
fn spreadsheet_ish(content_type: &str) -> bool {
    content_type.is_empty()
        || content_type.contains("excel")
        || content_type.contains("spreadsheet")
        || content_type.contains("csv")
        || content_type.contains("zip")
        || matches!(
            content_type,
            "application/octet-stream"
                | "application/binary"
                | "application/x-msdownload"
                | "text/plain"
                | "application/unknown"
                | "application/x-unknown"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_traversal_names_keep_only_the_file_name() {
        assert_eq!(safe_file_name(Some("../../etc/passwd.xlsx"), 1), "passwd.xlsx");
        assert_eq!(safe_file_name(Some("C:\\Users\\ann\\return.xlsx"), 1), "return.xlsx");
        assert_eq!(safe_file_name(Some("..\\..\\..\\boot.ini"), 1), "boot.ini");
    }

    #[test]
    fn control_and_reserved_characters_are_removed() {
        assert_eq!(safe_file_name(Some("ret\u{0}urn\r\n.xlsx"), 1), "return.xlsx");
        assert_eq!(safe_file_name(Some("q1: final?.xlsx"), 1), "q1_ final_.xlsx");
        assert_eq!(safe_file_name(Some(".hidden.csv"), 1), "hidden.csv");
    }

    #[test]
    fn empty_or_dot_names_become_numbered() {
        assert_eq!(safe_file_name(None, 3), "attachment-3");
        assert_eq!(safe_file_name(Some("../"), 2), "attachment-2");
        assert_eq!(safe_file_name(Some(" .. "), 1), "attachment-1");
        assert_eq!(safe_file_name(Some("\u{7}\u{1b}"), 4), "attachment-4");
    }

    #[test]
    fn very_long_names_are_shortened_keeping_the_extension() {
        let long = format!("{}.xlsx", "a".repeat(500));
        let safe = safe_file_name(Some(&long), 1);
        assert_eq!(safe.chars().count(), NAME_LIMIT);
        assert!(safe.ends_with(".xlsx"));
    }

    #[test]
    fn kinds_by_content() {
        let xlsx = b"PK\x03\x04....[Content_Types].xml....PK\x03\x04..xl/workbook.xml..";
        assert_eq!(
            sniff_kind("data.bin", "application/octet-stream", xlsx),
            AttachmentKind::Spreadsheet
        );
        let ods = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00mimetypeapplication/vnd.oasis.opendocument.spreadsheet";
        assert_eq!(sniff_kind("", "", ods), AttachmentKind::Spreadsheet);
        let docx = b"PK\x03\x04....word/document.xml";
        assert_eq!(sniff_kind("letter.docx", "application/zip", docx), AttachmentKind::Other);
        let ole = [OLE2_MAGIC, b"rest"].concat();
        assert_eq!(
            sniff_kind("return.xls", "application/vnd.ms-excel", &ole),
            AttachmentKind::Spreadsheet
        );
        assert_eq!(sniff_kind("notes.doc", "application/msword", &ole), AttachmentKind::Other);
        assert_eq!(
            sniff_kind("x.dat", "application/octet-stream", &[TNEF_MAGIC, b".."].concat()),
            AttachmentKind::Tnef
        );
    }

    #[test]
    fn kinds_by_name_and_type() {
        assert_eq!(sniff_kind("return.csv", "text/plain", b"KPI1,1"), AttachmentKind::Spreadsheet);
        assert_eq!(sniff_kind("noname", "text/csv", b"KPI1,1"), AttachmentKind::Spreadsheet);
        assert_eq!(
            sniff_kind("broken.xlsx", "application/octet-stream", b"not a zip"),
            AttachmentKind::Spreadsheet
        );
        assert_eq!(sniff_kind("logo.xlsx", "image/png", b"\x89PNG"), AttachmentKind::Other);
        assert_eq!(
            sniff_kind("WINMAIL.DAT", "application/octet-stream", b""),
            AttachmentKind::Tnef
        );
        assert_eq!(sniff_kind("report.pdf", "application/pdf", b"%PDF"), AttachmentKind::Other);
    }
}
