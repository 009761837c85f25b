//! Small helpers over quick-xml shared by the xlsx and ods readers: attribute lookup by local
//! name, text and entity collection, and mapping XML errors to `ReadError`. No format knowledge.

use std::io::{self, BufRead, Read};

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

use crate::workbook::grid::ReadError;

use super::zipped;

/// The unescaped value of the attribute whose local name is `local` (any prefix).
pub fn attr(e: &BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.local_name().as_ref() == local).and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned())
    })
}

/// Calls `f` with the prefix, local name and unescaped value of every attribute, in one pass
/// and without the duplicate check (for the elements there are millions of: cells and rows).
pub fn each_attr(e: &BytesStart<'_>, mut f: impl FnMut(Option<&str>, &str, &str)) {
    for a in e.attributes().with_checks(false).flatten() {
        if let Ok(value) = a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
            f(a.key.prefix().map(|p| p.into_inner()), a.key.local_name().into_inner(), &value);
        }
    }
}

/// Like [`attr`] but only for an attribute that carries a namespace prefix (`r:id`), so that
/// `sheetId` and `id` on the same element are not confused.
pub fn prefixed_attr(e: &BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.prefix().is_some() && a.key.local_name().as_ref() == local)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned())
        })
}

/// The element's local name (`x:row` → `row`).
pub fn local<'a>(e: &'a BytesStart<'_>) -> &'a str {
    e.local_name().into_inner()
}

/// Appends the text an entity reference (`&amp;`, `&#x41;`) stands for.
pub fn push_ref(out: &mut String, r: &BytesRef<'_>) {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
        return;
    }
    let name = r.clone().into_inner();
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(s) => out.push_str(s),
        None => {
            out.push('&');
            out.push_str(&name);
            out.push(';');
        }
    }
}

/// Appends the character data of a text-like event; returns false for other events.
pub fn push_text(out: &mut String, event: &Event<'_>) -> bool {
    match event {
        Event::Text(t) => out.push_str(&t.xml10_content()),
        Event::CData(t) => out.push_str(&t.xml10_content()),
        Event::GeneralRef(r) => push_ref(out, r),
        _ => return false,
    }
    true
}

/// A reader with the settings every part is parsed with.
pub fn reader<R: BufRead>(inner: R) -> Reader<R> {
    let mut reader = Reader::from_reader(inner);
    reader.config_mut().check_end_names = false;
    reader
}

/// Longer than any one piece of text or tag a spreadsheet holds (a cell's text is at most
/// 32,767 characters). quick-xml buffers a whole event, so without this a single run of text
/// would be held in memory up to the unpacked limit.
pub const MAX_TOKEN: usize = 4 * 1024 * 1024;

/// The marker error of [`TokenCap`].
#[derive(Debug)]
pub struct TokenTooLong;

impl std::fmt::Display for TokenTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a run of more than {MAX_TOKEN} bytes without markup")
    }
}

impl std::error::Error for TokenTooLong {}

/// Fails a read once more than [`MAX_TOKEN`] bytes pass without a `<` or `>`.
pub struct TokenCap<R> {
    inner: R,
    run: usize,
}

impl<R: Read> TokenCap<R> {
    pub fn new(inner: R) -> Self {
        TokenCap { inner, run: 0 }
    }
}

impl<R: Read> Read for TokenCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = buf.get(..n).unwrap_or(&[]);
        let is_markup = |b: &u8| *b == b'<' || *b == b'>';
        match (chunk.iter().position(is_markup), chunk.iter().rposition(is_markup)) {
            (Some(first), Some(last)) => {
                if self.run.saturating_add(first) > MAX_TOKEN {
                    return Err(io::Error::other(TokenTooLong));
                }
                self.run = n - 1 - last;
            }
            _ => self.run = self.run.saturating_add(n),
        }
        if self.run > MAX_TOKEN {
            return Err(io::Error::other(TokenTooLong));
        }
        Ok(n)
    }
}

/// Maps a parse error: the cap of a [`zipped::Capped`] reader or of [`TokenCap`] → `TooLarge`,
/// anything else → `Corrupt` naming the part.
pub fn error(e: &quick_xml::Error, part: &str, limit: u64) -> ReadError {
    if let quick_xml::Error::Io(io) = e {
        if zipped::is_over_limit(io) {
            return zipped::io_error(io, limit);
        }
        if io.get_ref().is_some_and(|inner| inner.is::<TokenTooLong>()) {
            return ReadError::TooLarge {
                what: format!("one piece of text or markup in {part}"),
                actual: MAX_TOKEN as u64 + 1,
                limit: MAX_TOKEN as u64,
            };
        }
    }
    ReadError::Corrupt(format!("{part} is not well-formed XML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cap_rejects_a_long_run_without_markup() {
        let mut data = b"<a>".to_vec();
        data.extend(std::iter::repeat_n(b' ', MAX_TOKEN + 10));
        data.extend(b"</a>");
        let mut out = Vec::new();
        let err = TokenCap::new(&data[..]).read_to_end(&mut out).expect_err("too long");
        assert!(err.get_ref().is_some_and(|e| e.is::<TokenTooLong>()));
    }

    #[test]
    fn token_cap_lets_ordinary_xml_through() {
        let data = b"<row><c><v>1</v></c></row>".repeat(1000);
        let mut out = Vec::new();
        TokenCap::new(&data[..]).read_to_end(&mut out).expect("fine");
        assert_eq!(out, data);
    }
}
