//! The `Authentication-Results` header field (RFC 8601 §2.2), parsed by hand.
//!
//! Why by hand: no well-kept crate parses this field. mail-auth only writes it, and the few
//! parsers that exist are either unmaintained or reject what real servers write. The grammar is
//! small, and a real tokenizer — CFWS with nested comments, quoted strings, `method[/version]=
//! result`, `reason=`, `ptype.property=pvalue` — is what keeps a `dkim=pass` inside a comment
//! or a quoted string from being read as a result.
//!
//! Real servers bend the grammar, and the parser takes what they write: Microsoft 365 leaves
//! out the authserv-id altogether (`spf=pass (sender IP is …) smtp.mailfrom=…`), writes
//! properties without a ptype (`action=none`) and drops `;` before the next result
//! (`…;dmarc=pass`), and base64 in `header.b` holds `/`, `+` and `=`, which an RFC 2045 token may
//! not. A header without an authserv-id parses with `authserv_id: None`: it names no server, so
//! nothing can trust it. A result that cannot be read is skipped to the next `;` and counted.
//!
//! Hostile input: one pass over at most [`MAX_LEN`] bytes (a longer field is refused whole, so a
//! truncated `header.d` can never be read), comment nesting is a counter (no recursion), and at
//! most [`MAX_RESULTS`] results with [`MAX_PROPERTIES`] properties each are kept. Never panics.
//! PURE: no I/O.

use serde::Serialize;

/// A field longer than this is refused, not truncated: real ones are well under 4 KiB.
pub const MAX_LEN: usize = 16 * 1024;
/// Results kept from one field; the rest are counted as skipped.
pub const MAX_RESULTS: usize = 64;
/// Properties kept per result.
pub const MAX_PROPERTIES: usize = 32;

/// One parsed `Authentication-Results` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthResults {
    /// The authserv-id as written (compare it case-insensitively); `None` when the field has
    /// none (Microsoft 365's form), which no configuration can trust.
    pub authserv_id: Option<String>,
    /// The optional version after the authserv-id (`mx.microsoft.com 1`).
    pub version: Option<u32>,
    /// `; none`: the server checked nothing.
    pub none: bool,
    pub results: Vec<MethodResult>,
    /// Results that could not be read (or were past [`MAX_RESULTS`]) and were skipped.
    pub skipped: usize,
}

/// One `method=result` with its reason and properties. Method, result, ptype and property are
/// lower-cased; values are kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodResult {
    pub method: String,
    pub method_version: Option<u32>,
    pub result: String,
    pub reason: Option<String>,
    pub properties: Vec<Property>,
}

/// `ptype.property=value`; `ptype` is empty for a bare `key=value` (Microsoft's `action=none`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Property {
    pub ptype: String,
    pub property: String,
    pub value: String,
}

impl MethodResult {
    /// The value of `ptype.property` (first one), e.g. `prop("header", "d")`.
    pub fn prop(&self, ptype: &str, property: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.ptype == ptype && p.property == property)
            .map(|p| p.value.as_str())
    }
}

/// Why a field could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the header is empty")]
    Empty,
    #[error("the header is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the header does not start with an authserv-id or a result")]
    NoAuthservId,
}

/// Parses the value of one `Authentication-Results` field (after the colon; folded or not).
pub fn parse(value: &str) -> Result<AuthResults, ParseError> {
    if value.len() > MAX_LEN {
        return Err(ParseError::TooLong);
    }
    let mut p = Cursor { s: value.as_bytes(), i: 0 };
    p.cfws();
    if p.at_end() {
        return Err(ParseError::Empty);
    }
    let mut out =
        AuthResults { authserv_id: None, version: None, none: false, results: vec![], skipped: 0 };
    let first = p.value();
    p.cfws();
    match (first, p.peek()) {
        // `spf=pass …` with no authserv-id: the first word is already a method.
        (Some(word), Some(b'=' | b'/')) if is_keyword(&word) => {
            p.result_after_method(word.to_ascii_lowercase(), &mut out);
        }
        (Some(word), _) => {
            out.authserv_id = Some(word);
            if p.peek().is_some_and(|b| b.is_ascii_digit()) {
                out.version = p.digits();
                p.cfws();
            }
        }
        (None, _) => return Err(ParseError::NoAuthservId),
    }
    loop {
        p.cfws();
        match p.peek() {
            None => break,
            Some(b';') => {
                p.i += 1;
                p.cfws();
                if p.at_end() {
                    break;
                }
                p.resinfo(&mut out);
            }
            // Junk where a `;` belongs (Microsoft writes `…; alum.mit.edu; dkim=…`): skip it.
            Some(_) => {
                out.skipped += 1;
                p.skip_to_semicolon();
            }
        }
    }
    Ok(out)
}

fn is_keyword(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips whitespace (folding included) and comments, nested to any depth.
    fn cfws(&mut self) {
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() {
                self.i += 1;
            } else if b == b'(' {
                self.comment();
            } else {
                break;
            }
        }
    }

    /// A comment from its `(` to the matching `)` (or the end of an unterminated one).
    fn comment(&mut self) {
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' => self.i += 1,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// A quoted string (without its quotes, escapes resolved) or a run of value characters:
    /// anything but whitespace, `;`, `(`, `)`, `"` and `=`.
    fn value(&mut self) -> Option<String> {
        if self.peek() == Some(b'"') {
            return Some(self.quoted());
        }
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || matches!(b, b';' | b'(' | b')' | b'"' | b'=') {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| self.text(start, self.i))
    }

    /// A property value: like [`Self::value`] but `=` may be inside (base64 padding).
    fn pvalue(&mut self) -> String {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || matches!(b, b';' | b'(' | b')' | b'"') {
                break;
            }
            self.i += 1;
        }
        self.text(start, self.i)
    }

    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn text(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(&self.s[start..end]).into_owned()
    }

    /// An ldh-str keyword (letters, digits, `-`; `_` tolerated), lower-cased.
    fn keyword(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                self.i += 1;
            } else {
                break;
            }
        }
        (self.i > start).then(|| self.text(start, self.i).to_ascii_lowercase())
    }

    fn digits(&mut self) -> Option<u32> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.text(start, self.i).parse().ok()
    }

    fn skip_to_semicolon(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b';' => return,
                b'(' => self.comment(),
                b'"' => {
                    self.quoted();
                }
                _ => self.i += 1,
            }
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.cfws();
        if self.peek() == Some(byte) {
            self.i += 1;
            self.cfws();
            true
        } else {
            false
        }
    }

    /// One resinfo after its `;`: `none`, or `method[/version] = result` and what follows.
    fn resinfo(&mut self, out: &mut AuthResults) {
        match self.keyword() {
            Some(word) if word == "none" && matches!(self.peek_past_cfws(), None | Some(b';')) => {
                out.none = true;
            }
            Some(method) => self.result_after_method(method, out),
            None => {
                out.skipped += 1;
                self.skip_to_semicolon();
            }
        }
    }

    fn peek_past_cfws(&mut self) -> Option<u8> {
        self.cfws();
        self.peek()
    }

    /// The rest of a resinfo once its method has been read.
    fn result_after_method(&mut self, method: String, out: &mut AuthResults) {
        let mut method_version = None;
        if self.eat(b'/') {
            method_version = self.digits();
        }
        let result = if self.eat(b'=') { self.keyword() } else { None };
        let Some(result) = result else {
            out.skipped += 1;
            self.skip_to_semicolon();
            return;
        };
        let mut r =
            MethodResult { method, method_version, result, reason: None, properties: vec![] };
        self.properties(&mut r);
        if out.results.len() < MAX_RESULTS {
            out.results.push(r);
        } else {
            out.skipped += 1;
        }
    }

    /// `reason=…` and `ptype.property=pvalue` up to the next `;`. A bare `key=value` is kept
    /// with an empty ptype; anything unreadable ends the result (skipped to the next `;`).
    fn properties(&mut self, r: &mut MethodResult) {
        loop {
            self.cfws();
            if matches!(self.peek(), None | Some(b';')) {
                return;
            }
            let Some(first) = self.keyword() else {
                self.skip_to_semicolon();
                return;
            };
            let (ptype, property) = if self.eat(b'.') {
                match self.keyword() {
                    Some(property) => (first, property),
                    None => {
                        self.skip_to_semicolon();
                        return;
                    }
                }
            } else {
                (String::new(), first)
            };
            if !self.eat(b'=') {
                self.skip_to_semicolon();
                return;
            }
            let value = self.pvalue();
            if ptype.is_empty() && property == "reason" && r.reason.is_none() {
                r.reason = Some(value);
            } else if r.properties.len() < MAX_PROPERTIES {
                r.properties.push(Property { ptype, property, value });
            }
        }
    }
}

#[cfg(test)]
#[path = "results_tests.rs"]
mod tests;
