//! The one sanitiser for every value that comes from mail or a spreadsheet and goes back out in
//! a reply, a notice or a forward (SPEC §4b): a display name, a subject, a file name, a cell's
//! content. Such a value is shown as ONE line: control characters and Unicode format characters
//! (bidi overrides such as U+202E, zero-width spaces and joiners, the BOM) are removed; every
//! kind of space, and the characters that draw as blank without being spaces (U+2800 braille
//! blank, the Hangul fillers), become one plain space; and the length is capped.
//!
//! Written by hand: the rule is a short list of code points taken from the Unicode character
//! database (general category Cf, and the invisible "blank" characters that spoofing reports
//! name), and no well-kept crate offers exactly "one visible line". PURE.

/// Characters that draw as nothing, or as a blank, without being whitespace or format
/// characters (Unicode's own list of default-ignorable code points and the usual spoofing
/// blanks): they are treated like a space so a run of them cannot push text off the line or
/// fake an empty line.
const BLANK_LOOKING: &[char] = &[
    '\u{2800}', // braille pattern blank
    '\u{3164}', // hangul filler
    '\u{115F}', // hangul choseong filler
    '\u{1160}', // hangul jungseong filler
    '\u{FFA0}', // halfwidth hangul filler
    '\u{034F}', // combining grapheme joiner
    '\u{17B4}', // khmer vowel inherent aq
    '\u{17B5}', // khmer vowel inherent aa
];

/// Unicode general category Cf (format) and the other default-ignorable code points: removed.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                  // soft hyphen
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'                // arabic letter mark
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{180B}'..='\u{180F}'   // mongolian variation selectors and vowel separator
        | '\u{200B}'..='\u{200F}'   // zero-width space, joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'   // word joiner, invisible operators, bidi isolates
        | '\u{FE00}'..='\u{FE0F}'   // variation selectors
        | '\u{FEFF}'                // byte order mark
        | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotation
        | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}' // tags and variation selectors supplement
    )
}

/// `text` as one visible line: format characters removed, controls, line breaks, every kind of
/// space and blank-looking characters turned into single spaces, trimmed. Nothing is capped.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut space = false;
    for c in text.chars() {
        if is_format(c) {
            continue;
        }
        if c.is_whitespace() || c.is_control() || BLANK_LOOKING.contains(&c) {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

/// [`one_line`], cut to at most `max` characters (an ellipsis marks a cut). Work is bounded by
/// `max`, not by the input: a 10 MB "name" costs no more than a short one.
pub fn capped(text: &str, max: usize) -> String {
    // Enough input for `max` visible characters even if most of it is removed or collapsed.
    let window: String = text.chars().take(max.saturating_mul(8).max(64)).collect();
    let line = one_line(&window);
    if line.chars().count() <= max && window.len() == text.len() {
        return line;
    }
    if line.chars().count() <= max.saturating_sub(1) {
        return format!("{line}…");
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// [`capped`] inside double quotes, with any double quote inside shown as a single one, so the
/// reader sees where the sender's text starts and ends.
pub fn quoted(text: &str, max: usize) -> String {
    format!("\"{}\"", capped(text, max).replace('"', "'"))
}

/// Longest display name shown anywhere.
pub const NAME_MAX: usize = 64;
/// Longest subject shown in a reply's text or subject line.
pub const SUBJECT_MAX: usize = 200;
/// Longest cell value quoted in a finding.
pub const CELL_MAX: usize = 60;
/// Longest file name shown.
pub const FILE_NAME_MAX: usize = 120;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_in_a_cell_cannot_add_lines() {
        let cell = "5N1\r\nRESULT: ACCEPTED\nSee https://evil.test/";
        assert_eq!(one_line(cell), "5N1 RESULT: ACCEPTED See https://evil.test/");
        assert_eq!(quoted(cell, 60), "\"5N1 RESULT: ACCEPTED See https://evil.test/\"");
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_removed() {
        let name = "Ann \u{202E}xslx.exe\u{202C} Analyst\u{200B}\u{FEFF}";
        assert_eq!(one_line(name), "Ann xslx.exe Analyst");
        assert!(!one_line("a\u{2066}b\u{2069}c").contains('\u{2066}'));
    }

    #[test]
    fn blank_looking_characters_cannot_fake_an_empty_line() {
        let name = format!("{}sender IS REGISTERED", "\u{2800}".repeat(200));
        assert_eq!(one_line(&name), "sender IS REGISTERED");
        assert_eq!(one_line("\u{3164}\u{3164}x\u{00A0}\u{2003}y"), "x y");
    }

    #[test]
    fn caps_count_characters_and_mark_the_cut() {
        assert_eq!(capped("abcdef", 4), "abc…");
        assert_eq!(capped("abc", 4), "abc");
        assert_eq!(capped(&"é".repeat(100), 10).chars().count(), 10);
        let huge = "x".repeat(10_000_000);
        assert_eq!(capped(&huge, 20).chars().count(), 20);
        assert_eq!(quoted("say \"hi\"", 20), "\"say 'hi'\"");
    }
}
