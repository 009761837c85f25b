//! What an attachment really is, for the summary at the top of every forward to the teams, and
//! whether it is dangerous to pass on from our own trusted address (SPEC §4b): executables,
//! scripts, macro-enabled documents and HTML pages with forms or scripts are named and kept in
//! the store, never forwarded. Decided by content first (magic bytes, the parts inside an
//! Office file), then by name. PURE.

use serde::Serialize;

/// Why an attachment is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Danger {
    /// A program: a Windows, Linux or macOS executable, an installer or a shortcut.
    Executable,
    /// A script a click would run (`.js`, `.vbs`, `.ps1`, `.bat`, `.hta`, `#!` …).
    Script,
    /// An Office document carrying macros (`.docm`, a `vbaProject.bin`, a VBA storage).
    MacroDocument,
    /// An HTML page with a form, a script or an embedded frame (a password form, say).
    ActiveHtml,
    /// An archive or disk image holding any of the above, or that cannot be looked into.
    RiskyArchive,
}

impl Danger {
    pub fn describe(self) -> &'static str {
        match self {
            Danger::Executable => "a program (executable)",
            Danger::Script => "a script",
            Danger::MacroDocument => "a document with macros",
            Danger::ActiveHtml => "an HTML page with a form or script",
            Danger::RiskyArchive => "an archive holding programs, scripts or macros",
        }
    }
}

const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "dll", "scr", "com", "pif", "cpl", "msi", "msp", "mst", "sys", "drv", "ocx", "lnk",
    "app", "dmg", "pkg", "deb", "rpm", "apk", "elf", "bin", "run",
];
const SCRIPT_EXTENSIONS: &[&str] = &[
    "js",
    "jse",
    "vbs",
    "vbe",
    "wsf",
    "wsh",
    "wsc",
    "ps1",
    "psm1",
    "psd1",
    "bat",
    "cmd",
    "hta",
    "jar",
    "reg",
    "sh",
    "bash",
    "csh",
    "ksh",
    "py",
    "pyw",
    "pl",
    "rb",
    "php",
    "scf",
    "inf",
    "url",
    "application",
    "gadget",
    "msc",
    "sct",
    "chm",
];
const MACRO_EXTENSIONS: &[&str] =
    &["docm", "dotm", "xlsm", "xltm", "xlam", "xla", "pptm", "potm", "ppsm", "ppam", "sldm"];
const IMAGE_ARCHIVE_EXTENSIONS: &[&str] = &["iso", "img", "vhd", "vhdx", "udf"];

/// Whether an attachment is dangerous to forward, and why. `name` is the safe file name.
pub fn danger(name: &str, content_type: &str, bytes: &[u8]) -> Option<Danger> {
    let ext = super::attachment::extension(name);
    let ext = ext.as_str();
    if is_executable(bytes) || EXECUTABLE_EXTENSIONS.contains(&ext) {
        return Some(Danger::Executable);
    }
    if bytes.starts_with(b"#!") || SCRIPT_EXTENSIONS.contains(&ext) {
        return Some(Danger::Script);
    }
    if MACRO_EXTENSIONS.contains(&ext) || has_macros(bytes) {
        return Some(Danger::MacroDocument);
    }
    let html = matches!(ext, "html" | "htm" | "xhtml" | "shtml" | "svg" | "mht" | "mhtml")
        || content_type.contains("html")
        || content_type == "image/svg+xml";
    if html && active_html(bytes) {
        return Some(Danger::ActiveHtml);
    }
    if IMAGE_ARCHIVE_EXTENSIONS.contains(&ext) || risky_zip(bytes) {
        return Some(Danger::RiskyArchive);
    }
    None
}

fn is_executable(bytes: &[u8]) -> bool {
    // PE (`MZ`), ELF, Mach-O (both byte orders, 32/64 bit, fat binaries).
    let magic: &[&[u8]] = &[
        b"MZ",
        b"\x7fELF",
        &[0xFE, 0xED, 0xFA, 0xCE],
        &[0xFE, 0xED, 0xFA, 0xCF],
        &[0xCE, 0xFA, 0xED, 0xFE],
        &[0xCF, 0xFA, 0xED, 0xFE],
        &[0xCA, 0xFE, 0xBA, 0xBE],
    ];
    magic.iter().any(|m| bytes.starts_with(m))
}

/// An OOXML package with a `vbaProject.bin` part, or an OLE2 file with a VBA storage
/// (`_VBA_PROJECT` is stored as UTF-16 in the directory). Names are found in the bytes without
/// unpacking anything: zip names are stored plainly, OLE2 directory names as UTF-16LE.
fn has_macros(bytes: &[u8]) -> bool {
    let utf16: Vec<u8> = "_VBA_PROJECT".bytes().flat_map(|b| [b, 0]).collect();
    contains(bytes, b"vbaProject.bin") || contains(bytes, &utf16)
}

fn active_html(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(2 << 20)];
    let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
    ["<form", "<script", "<iframe", "<object", "<embed", "javascript:", "type=\"password\""]
        .iter()
        .any(|m| lower.contains(m))
}

/// A zip whose entry names (stored plainly in the archive) include a dangerous one.
fn risky_zip(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"PK\x03\x04") {
        return false;
    }
    entry_names(bytes).into_iter().any(|n| {
        let ext = super::attachment::extension(&n);
        EXECUTABLE_EXTENSIONS.contains(&ext.as_str())
            || SCRIPT_EXTENSIONS.contains(&ext.as_str())
            || MACRO_EXTENSIONS.contains(&ext.as_str())
            || IMAGE_ARCHIVE_EXTENSIONS.contains(&ext.as_str())
    })
}

/// Entry names from the zip's local file headers (at most 1,000), without unpacking.
fn entry_names(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while names.len() < 1000 {
        let Some(found) = find(&bytes[at..], b"PK\x03\x04") else { break };
        let start = at + found;
        let header = bytes.get(start..start + 30);
        let Some(h) = header else { break };
        let len = usize::from(u16::from_le_bytes([h[26], h[27]]));
        if let Some(name) = bytes.get(start + 30..start + 30 + len) {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
        at = start + 4;
    }
    names
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// What a file really is, in words for the summary: by content where it tells, else by name.
pub fn real_type(name: &str, bytes: &[u8]) -> String {
    let ext = super::attachment::extension(name);
    let by_content = if is_executable(bytes) {
        Some("a program (executable)")
    } else if bytes.starts_with(b"%PDF") {
        Some("a PDF document")
    } else if bytes.starts_with(b"\x89PNG") {
        Some("a PNG image")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("a JPEG image")
    } else if bytes.starts_with(b"GIF8") {
        Some("a GIF image")
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some(if contains(bytes, b"xl/workbook") {
            "an Excel workbook"
        } else if contains(bytes, b"word/document") {
            "a Word document"
        } else if contains(bytes, b"ppt/presentation") {
            "a PowerPoint presentation"
        } else if contains(&bytes[..bytes.len().min(200)], b"opendocument") {
            "an OpenDocument file"
        } else {
            "a ZIP archive"
        })
    } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Some("an older Office file (OLE2)")
    } else if bytes.starts_with(b"#!") {
        Some("a script")
    } else {
        None
    };
    let macros = if has_macros(bytes) { ", with macros" } else { "" };
    match by_content {
        Some(kind) => format!("{kind}{macros}"),
        None if ext.is_empty() => "a file of unknown type".to_string(),
        None => format!("a .{ext} file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_scripts_macros_and_forms_are_dangerous() {
        assert_eq!(danger("invoice.pdf", "application/pdf", b"MZ\x90\0"), Some(Danger::Executable));
        assert_eq!(danger("run.exe", "application/octet-stream", b"x"), Some(Danger::Executable));
        assert_eq!(danger("a.vbs", "text/plain", b"x"), Some(Danger::Script));
        assert_eq!(danger("notes.txt", "text/plain", b"#!/bin/sh\n"), Some(Danger::Script));
        assert_eq!(danger("minutes.docm", "", b"PK\x03\x04"), Some(Danger::MacroDocument));
        let ooxml = b"PK\x03\x04....word/document.xml....word/vbaProject.bin";
        assert_eq!(danger("minutes.docx", "", ooxml), Some(Danger::MacroDocument));
        let form = b"<html><form action=x><input type=\"password\"></form></html>";
        assert_eq!(danger("login.html", "text/html", form), Some(Danger::ActiveHtml));
        assert_eq!(danger("page.html", "text/html", b"<html><p>hello</p></html>"), None);
        assert_eq!(danger("return.pdf", "application/pdf", b"%PDF-1.4"), None);
    }

    #[test]
    fn a_zip_holding_a_program_is_dangerous_and_one_holding_returns_is_not() {
        let mut zip = Vec::new();
        for name in ["return.xlsx", "setup.exe"] {
            zip.extend_from_slice(b"PK\x03\x04");
            zip.extend_from_slice(&[0u8; 22]);
            zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&[0, 0]);
            zip.extend_from_slice(name.as_bytes());
        }
        assert_eq!(danger("files.zip", "application/zip", &zip), Some(Danger::RiskyArchive));
        let safe = &zip[..30 + "return.xlsx".len()];
        assert_eq!(danger("files.zip", "application/zip", safe), None);
    }

    #[test]
    fn real_types_come_from_content() {
        assert_eq!(real_type("report.xlsx", b"MZ.."), "a program (executable)");
        assert_eq!(real_type("scan", b"%PDF-1.7"), "a PDF document");
        assert_eq!(real_type("x.docx", b"PK\x03\x04 word/document.xml"), "a Word document");
        assert_eq!(real_type("notes.txt", b"hello"), "a .txt file");
    }
}
