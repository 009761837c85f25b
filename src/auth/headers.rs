//! The header fields verification reads — `Authentication-Results` and `DKIM-Signature` —
//! scanned from the raw header block in order (topmost first) and unfolded. Raw scanning, not
//! mail-parser: the values are wanted byte for byte as the servers wrote them (mail-parser
//! decodes RFC 2047 words in unknown fields), and nothing else of the message is needed.
//!
//! Bounded: at most [`MAX_FIELDS`] of each kind are kept, each value at most [`VALUE_CAP`]
//! bytes (enough for the parsers to refuse it as too long); the scan stops at the end of the
//! header block. PURE.

/// Fields of each kind kept; a message with more is hostile, and the topmost are what count.
pub const MAX_FIELDS: usize = 50;
/// Bytes kept of one value: one more than either parser reads, so a longer field is still
/// refused as too long rather than read cut short.
pub const VALUE_CAP: usize = 16 * 1024 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AuthenticationResults,
    DkimSignature,
}

/// One field: its kind and its value (after the colon, unfolded, as written otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub kind: Kind,
    pub value: String,
}

/// The `Authentication-Results` and `DKIM-Signature` fields of `raw`, topmost first.
pub fn scan(raw: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    let (mut ar, mut sig) = (0usize, 0usize);
    let mut current: Option<(Kind, Vec<u8>)> = None;
    let mut finish = |current: &mut Option<(Kind, Vec<u8>)>, out: &mut Vec<Field>| {
        if let Some((kind, value)) = current.take() {
            let count = match kind {
                Kind::AuthenticationResults => &mut ar,
                Kind::DkimSignature => &mut sig,
            };
            if *count < MAX_FIELDS {
                *count += 1;
                out.push(Field { kind, value: String::from_utf8_lossy(&value).into_owned() });
            }
        }
    };
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // the end of the header block
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Unfolding (RFC 5322 §2.2.3): the line break goes, the whitespace stays.
            if let Some((_, value)) = current.as_mut() {
                let room = VALUE_CAP.saturating_sub(value.len());
                value.extend_from_slice(&line[..line.len().min(room)]);
            }
            continue;
        }
        finish(&mut current, &mut out);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = line[..colon].trim_ascii();
        let kind = if name.eq_ignore_ascii_case(b"Authentication-Results") {
            Kind::AuthenticationResults
        } else if name.eq_ignore_ascii_case(b"DKIM-Signature") {
            Kind::DkimSignature
        } else {
            continue;
        };
        let value = &line[colon + 1..];
        current = Some((kind, value[..value.len().min(VALUE_CAP)].to_vec()));
    }
    finish(&mut current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_kinds_in_order_unfolded_and_stops_at_the_body() {
        let raw = b"Authentication-Results: mx.a.test;\r\n\tdkim=pass header.d=x.test\r\n\
            Received: from x\r\n\
            DKIM-Signature: v=1; d=x.test;\r\n b=AbC\r\n\
            authentication-results : evil.test; dkim=pass\r\n\
            Subject: hi\r\n\r\n\
            Authentication-Results: body.test; dkim=pass\r\n";
        let f = scan(raw);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].kind, Kind::AuthenticationResults);
        assert_eq!(f[0].value, " mx.a.test;\tdkim=pass header.d=x.test");
        assert_eq!(
            (f[1].kind, f[1].value.as_str()),
            (Kind::DkimSignature, " v=1; d=x.test; b=AbC")
        );
        assert_eq!(f[2].value, " evil.test; dkim=pass");
    }

    #[test]
    fn keeps_at_most_the_topmost_fifty_of_each_kind() {
        let mut raw = Vec::new();
        for n in 0..200 {
            raw.extend_from_slice(format!("Authentication-Results: h{n}; none\n").as_bytes());
        }
        raw.extend_from_slice(b"\nbody");
        let f = scan(&raw);
        assert_eq!(f.len(), MAX_FIELDS);
        assert_eq!(f[0].value, " h0; none");
        assert!(scan(b"").is_empty());
        let huge = format!(
            "Authentication-Results: h; {}\r\n\t{}\r\n\r\n",
            "x".repeat(40_000),
            "y".repeat(40_000)
        );
        let f = scan(huge.as_bytes());
        assert_eq!(f[0].value.len(), VALUE_CAP);
        assert!(crate::auth::results::parse(&f[0].value).is_err(), "still refused as too long");
        assert!(scan(b"\xff\xfe: \x00\n \n").is_empty());
    }
}
