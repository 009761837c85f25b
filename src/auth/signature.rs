//! The tags of a `DKIM-Signature` field (RFC 6376 §3.2 tag-list, §3.5 tags), enough to name a
//! signature (`d=`, `s=`, `i=`, `a=`, `h=`) and to take its `b=` as a replay key or match the
//! `header.b` prefix an Authentication-Results field gives (RFC 6008). Verifying the signature
//! is mail-auth's job (see `dkim`); this only reads tags, so it is written here and kept small.
//!
//! Hostile input: one pass, at most [`MAX_TAGS`] tags over at most [`MAX_LEN`] bytes; a
//! duplicated tag makes the signature invalid (RFC 6376 §3.2). Never panics. PURE.

use serde::Serialize;

/// A signature field longer than this is refused (real ones are under 2 KiB; the `b=` of an
/// 8192-bit key is ~1.4 KiB).
pub const MAX_LEN: usize = 16 * 1024;
pub const MAX_TAGS: usize = 64;

/// The tags iapt-intake reads. `d` and `s` lower-cased; `b` with every whitespace removed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DkimTags {
    pub d: Option<String>,
    pub s: Option<String>,
    pub i: Option<String>,
    pub a: Option<String>,
    pub b: Option<String>,
    /// The signed header names, lower-cased, in order.
    pub h: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("the signature is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the signature has more than {MAX_TAGS} tags")]
    TooManyTags,
    #[error("the tag {0}= appears twice")]
    Duplicate(String),
    #[error("'{0}' is not a tag=value pair")]
    Malformed(String),
}

/// Parses the value of one `DKIM-Signature` field.
pub fn parse(value: &str) -> Result<DkimTags, TagError> {
    if value.len() > MAX_LEN {
        return Err(TagError::TooLong);
    }
    let mut tags = DkimTags::default();
    let mut seen: Vec<String> = Vec::new();
    for spec in value.split(';') {
        if spec.trim().is_empty() {
            continue;
        }
        let Some((name, raw)) = spec.split_once('=') else {
            return Err(TagError::Malformed(shorten(spec.trim())));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(TagError::Malformed(shorten(spec.trim())));
        }
        if seen.len() >= MAX_TAGS {
            return Err(TagError::TooManyTags);
        }
        if seen.iter().any(|s| s == name) {
            return Err(TagError::Duplicate(name.to_string()));
        }
        seen.push(name.to_string());
        let v = raw.trim();
        match name {
            "d" => tags.d = Some(v.to_ascii_lowercase()),
            "s" => tags.s = Some(v.to_ascii_lowercase()),
            "i" => tags.i = Some(v.to_string()),
            "a" => tags.a = Some(v.to_ascii_lowercase()),
            "b" => tags.b = Some(v.chars().filter(|c| !c.is_whitespace()).collect()),
            "h" => {
                tags.h = v
                    .split(':')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            }
            _ => {}
        }
    }
    Ok(tags)
}

impl DkimTags {
    /// Whether an Authentication-Results `header.b` names this signature: its `b=` starts with
    /// the prefix (RFC 6008 §4; base64 is case-sensitive, so is the comparison). An empty prefix
    /// names nothing.
    pub fn matches_b_prefix(&self, prefix: &str) -> bool {
        let prefix: String = prefix.chars().filter(|c| !c.is_whitespace()).collect();
        !prefix.is_empty() && self.b.as_deref().is_some_and(|b| b.starts_with(&prefix))
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENDKIM: &str = "v=1; a=rsa-sha256; c=relaxed/simple; d=Leeds.NHS.test;\r\n\ts=sel;\
        t=1311152400; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\t\
        h=From:To:Subject:Date:Message-ID;\r\n\tb=AbCdEf12+/x\r\n\t yZ09==";

    #[test]
    fn reads_the_tags_a_signature_is_named_by() {
        let t = parse(OPENDKIM).expect("parses");
        assert_eq!(t.d.as_deref(), Some("leeds.nhs.test"));
        assert_eq!(t.s.as_deref(), Some("sel"));
        assert_eq!(t.a.as_deref(), Some("rsa-sha256"));
        assert_eq!(t.b.as_deref(), Some("AbCdEf12+/xyZ09=="), "whitespace removed from b=");
        assert_eq!(t.h, ["from", "to", "subject", "date", "message-id"]);
        assert_eq!(t.i, None);
    }

    #[test]
    fn matches_the_header_b_prefix_an_authentication_results_gives() {
        let t = parse(OPENDKIM).expect("parses");
        assert!(t.matches_b_prefix("AbCdEf12"));
        assert!(t.matches_b_prefix("AbCdEf12+/xyZ09=="));
        assert!(!t.matches_b_prefix("abcdef12"), "base64 is case-sensitive");
        assert!(!t.matches_b_prefix(""), "an empty prefix names nothing");
        assert!(!t.matches_b_prefix("AbCdEf12+/xyZ09==X"));
    }

    #[test]
    fn invalid_signatures_are_errors() {
        assert_eq!(parse("d=a.test; d=b.test; b=x"), Err(TagError::Duplicate("d".into())));
        assert!(matches!(parse("d=a.test; garbage; b=x"), Err(TagError::Malformed(_))));
        assert!(matches!(parse("=x"), Err(TagError::Malformed(_))));
        assert_eq!(parse(&"a".repeat(MAX_LEN + 1)), Err(TagError::TooLong));
        let many: String = (0..=MAX_TAGS).map(|n| format!("t{n}=x;")).collect();
        assert_eq!(parse(&many), Err(TagError::TooManyTags));
        assert_eq!(parse("").expect("empty is no tags"), DkimTags::default());
    }
}
