//! The Office package (OPC, ECMA-376 Part 2) of an xlsx, xlsm or xlsb: which part is the
//! workbook and which parts it points to, found as Office finds them — through the package
//! relationships (`_rels/.rels`), then `[Content_Types].xml`, and only then the usual fixed
//! names — because writers are free to name parts as they like (`xl/workbook2.xml`,
//! `/Workbook.xml`, `xl\worksheets\Sheet1.xml`).

use quick_xml::events::Event;

use crate::workbook::grid::{Format, ReadError};

use super::budget::Budget;
use super::xml;
use super::zipped::Archive;

/// One relationship of a part; `target` is the resolved part name.
#[derive(Debug, Clone)]
pub struct Rel {
    pub id: String,
    pub kind: String,
    pub target: String,
}

impl Rel {
    /// The relationship type's last word (`worksheet`, `sharedStrings`, `officeDocument`).
    pub fn is(&self, word: &str) -> bool {
        self.kind.rsplit('/').next().is_some_and(|k| k.eq_ignore_ascii_case(word))
    }
}

/// What the package holds: the workbook part and its format, or a foreign document's name.
pub enum Main {
    Workbook { part: String, format: Format },
    Foreign(&'static str),
    None,
}

/// Finds the main part of the package.
pub fn main_part(zip: &mut Archive<'_>, budget: &mut Budget) -> Result<Main, ReadError> {
    let from_rels = rels_of(zip, "", budget)?.into_iter().find(|r| r.is("officeDocument"));
    let types = content_types(zip, budget)?;
    let type_of = |part: &str| {
        let key = super::zipped::normalise(part);
        types.iter().find(|(name, _)| super::zipped::normalise(name) == key).map(|(_, t)| t.clone())
    };
    let candidate = match from_rels.filter(|r| zip.has(&r.target)) {
        Some(rel) => Some(rel.target),
        None => types.iter().find(|(_, t)| is_workbook_type(t)).map(|(n, _)| part_name("", n)),
    };
    let candidate = candidate.filter(|p| zip.has(p)).or_else(|| {
        ["xl/workbook.xml", "xl/workbook.bin"].into_iter().find(|p| zip.has(p)).map(String::from)
    });
    let Some(part) = candidate else {
        if zip.has("word/document.xml") || types.iter().any(|(_, t)| t.contains("wordprocessingml"))
        {
            return Ok(Main::Foreign("a Word document"));
        }
        if zip.has("ppt/presentation.xml")
            || types.iter().any(|(_, t)| t.contains("presentationml"))
        {
            return Ok(Main::Foreign("a PowerPoint presentation"));
        }
        return Ok(Main::None);
    };
    let content_type = type_of(&part).unwrap_or_default();
    let lower = part.to_ascii_lowercase();
    if content_type.contains("wordprocessingml") || lower.starts_with("word/") {
        return Ok(Main::Foreign("a Word document"));
    }
    if content_type.contains("presentationml") || lower.starts_with("ppt/") {
        return Ok(Main::Foreign("a PowerPoint presentation"));
    }
    let binary = content_type.contains("binary") || part.to_ascii_lowercase().ends_with(".bin");
    let macros = content_type.contains("macroEnabled") || has_vba(zip, &types);
    let format = match (binary, macros) {
        (true, _) => Format::Xlsb,
        (false, true) => Format::Xlsm,
        (false, false) => Format::Xlsx,
    };
    Ok(Main::Workbook { part, format })
}

fn is_workbook_type(t: &str) -> bool {
    t.contains("spreadsheetml.sheet.main")
        || t.contains("spreadsheetml.template.main")
        || t.contains("ms-excel.sheet.macroEnabled.main")
        || t.contains("ms-excel.template.macroEnabled.main")
        || t.contains("ms-excel.sheet.binary.macroEnabled.main")
}

fn has_vba(zip: &Archive<'_>, types: &[(String, String)]) -> bool {
    types.iter().any(|(_, t)| t.contains("vbaProject"))
        || zip.names().any(|n| n.ends_with(".bin") && n.contains("vbaproject"))
}

/// `[Content_Types].xml` as (part name, content type) for every Override.
fn content_types(
    zip: &mut Archive<'_>,
    budget: &mut Budget,
) -> Result<Vec<(String, String)>, ReadError> {
    if !zip.has("[Content_Types].xml") {
        return Ok(Vec::new());
    }
    let bytes = zip.read_small("[Content_Types].xml", budget)?;
    let mut reader = xml::reader(&bytes[..]);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if xml::local(&e) == "Override" => {
                budget.tick()?;
                let name = xml::attr(&e, "PartName").unwrap_or_default();
                out.push((name, xml::attr(&e, "ContentType").unwrap_or_default()));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(xml::error(&e, "[Content_Types].xml", 0)),
        }
        buf.clear();
    }
    Ok(out)
}

/// The relationships of `part` (`""` for the package itself), targets resolved to part names;
/// none when the part has no relationships part. External targets are never followed.
pub fn rels_of(
    zip: &mut Archive<'_>,
    part: &str,
    budget: &mut Budget,
) -> Result<Vec<Rel>, ReadError> {
    let (dir, file) = split(part);
    let rels_part = format!("{dir}_rels/{file}.rels");
    if !zip.has(&rels_part) {
        return Ok(Vec::new());
    }
    let bytes = zip.read_small(&rels_part, budget)?;
    let mut reader = xml::reader(&bytes[..]);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if xml::local(&e) == "Relationship" => {
                budget.tick()?;
                if xml::attr(&e, "TargetMode").is_none_or(|m| !m.eq_ignore_ascii_case("External")) {
                    out.push(Rel {
                        id: xml::attr(&e, "Id").unwrap_or_default(),
                        kind: xml::attr(&e, "Type").unwrap_or_default(),
                        target: part_name(dir, &xml::attr(&e, "Target").unwrap_or_default()),
                    });
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(xml::error(&e, &rels_part, 0)),
        }
        buf.clear();
    }
    Ok(out)
}

/// (`xl/`, `workbook.xml`) for `xl/workbook.xml`; (``, ``) for the package.
fn split(part: &str) -> (&str, &str) {
    match part.rfind('/') {
        Some(i) => (&part[..=i], &part[i + 1..]),
        None => ("", part),
    }
}

/// The directory of a part, with its trailing `/` (`xl/` for `xl/workbook.xml`).
pub fn dir_of(part: &str) -> &str {
    split(part).0
}

/// Resolves a relationship target, relative to `dir` unless it starts with `/`, to a part name
/// (`..` and `.` followed, `\` taken for `/`, `%20` and the like decoded).
pub fn part_name(dir: &str, target: &str) -> String {
    let target = percent_decoded(&target.replace('\\', "/"));
    let joined = match target.strip_prefix('/') {
        Some(absolute) => absolute.to_string(),
        None => format!("{dir}{target}"),
    };
    let mut parts: Vec<&str> = Vec::new();
    for piece in joined.split('/') {
        match piece {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn percent_decoded(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_targets_resolve_to_part_names() {
        assert_eq!(part_name("xl/", "worksheets/sheet1.xml"), "xl/worksheets/sheet1.xml");
        assert_eq!(part_name("xl/", "/xl/worksheets/sheet2.xml"), "xl/worksheets/sheet2.xml");
        assert_eq!(part_name("xl/", "../xl/./sharedStrings.xml"), "xl/sharedStrings.xml");
        assert_eq!(part_name("", "xl\\workbook.xml"), "xl/workbook.xml");
        assert_eq!(part_name("xl/", "my%20sheet.xml"), "xl/my sheet.xml");
        assert_eq!(dir_of("xl/workbook.xml"), "xl/");
        assert_eq!(dir_of("workbook.xml"), "");
    }
}
