//! The subject-line rule (SPEC §4): `IAPT` as a word, and exactly one organisation named by
//! its ODS code or by its name or an alias. Owns the word splitting and the name normalisation;
//! the registry itself belongs to `collection`.

use crate::collection::Registry;
use serde::Serialize;

/// Which organisation a subject names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "match", content = "codes", rename_all = "snake_case")]
pub enum OrgMatch {
    None,
    One(String),
    /// Several organisations, codes in registry order: the sender is asked to add the code.
    Ambiguous(Vec<String>),
}

/// Words that do not identify an organisation (SPEC §4: NHS, PCT, Teaching, Primary Care
/// Trust; `Care Trust` is how Northumberland is named). They are dropped from both the subject
/// and the names, so `NHS Leeds`, `Leeds PCT` and `leeds` all read as `leeds`.
const NOISE_WORDS: &[&str] = &["nhs", "pct", "pcts", "teaching", "primary", "care", "trust"];

/// True when the subject holds `IAPT` as a word in any case. A word is delimited by anything
/// that is not a letter or digit, so `[IAPT]`, `iapt:` and `IAPT-KPI` count but `IAPTus` (a
/// clinical records system, not this return) does not.
pub fn names_iapt(subject: &str) -> bool {
    words(subject).any(|w| w.eq_ignore_ascii_case("iapt"))
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty())
}

/// The organisation the subject names. A code wins over names: codes are written as words
/// (`5N1`), case-insensitively when they hold a digit, exactly as registered when all letters
/// (so a code such as `TAK` is not found in an ordinary word). Otherwise names and aliases are
/// matched as whole runs of words, ignoring case, punctuation, `&` versus `and`, and the
/// [`NOISE_WORDS`]. A name found inside a longer name found at the same place gives way to it
/// (`North Lincolnshire` beats `Lincolnshire`); two names at different places, or one name
/// shared by several organisations, are ambiguous.
pub fn match_organisation(subject: &str, registry: &Registry) -> OrgMatch {
    let subject_words: Vec<&str> = words(subject).collect();
    let mut by_code: Vec<String> = Vec::new();
    for org in &registry.organisations {
        let code = org.code.trim();
        let found = subject_words.iter().any(|w| {
            if code.chars().any(|c| c.is_ascii_digit()) {
                w.eq_ignore_ascii_case(code)
            } else {
                *w == code
            }
        });
        if found && !code.is_empty() && !by_code.contains(&org.code) {
            by_code.push(org.code.clone());
        }
    }
    if !by_code.is_empty() {
        return one_or_many(by_code);
    }
    one_or_many(name_matches(subject, registry))
}

fn one_or_many(mut codes: Vec<String>) -> OrgMatch {
    match codes.len() {
        0 => OrgMatch::None,
        1 => OrgMatch::One(codes.remove(0)),
        _ => OrgMatch::Ambiguous(codes),
    }
}

/// A name found in the subject: word positions `start..end` and whose name it is.
struct Span<'r> {
    start: usize,
    end: usize,
    code: &'r str,
}

fn name_matches(subject: &str, registry: &Registry) -> Vec<String> {
    let subject = normalise(subject);
    let mut spans: Vec<Span<'_>> = Vec::new();
    for org in &registry.organisations {
        for name in std::iter::once(&org.name).chain(&org.aliases) {
            let name = normalise(name);
            if name.is_empty() || name.len() > subject.len() {
                continue;
            }
            for start in 0..=subject.len() - name.len() {
                if subject[start..start + name.len()] == name[..] {
                    spans.push(Span { start, end: start + name.len(), code: &org.code });
                }
            }
        }
    }
    let mut codes: Vec<String> = Vec::new();
    for span in &spans {
        let inside_longer = spans.iter().any(|other| {
            other.start <= span.start
                && span.end <= other.end
                && other.end - other.start > span.end - span.start
        });
        if !inside_longer && !codes.iter().any(|c| c == span.code) {
            codes.push(span.code.to_string());
        }
    }
    // Registry order, so the same subject always gives the same list.
    let order = |code: &String| registry.organisations.iter().position(|o| &o.code == code);
    codes.sort_by_key(order);
    codes
}

/// Lower-cased words with the noise words dropped; `&` reads as `and`, and apostrophes join
/// rather than split (`King's` → `kings`).
fn normalise(text: &str) -> Vec<String> {
    let spaced: String = text
        .chars()
        .filter(|c| !matches!(c, '\'' | '\u{2019}'))
        .flat_map(|c| if c == '&' { vec![' ', 'a', 'n', 'd', ' '] } else { vec![c] })
        .collect();
    words(&spaced).map(str::to_lowercase).filter(|w| !NOISE_WORDS.contains(&w.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::Organisation;

    fn org(code: &str, name: &str, aliases: &[&str]) -> Organisation {
        Organisation {
            code: code.to_string(),
            name: name.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            submitters: Vec::new(),
        }
    }

    fn registry() -> Registry {
        Registry {
            organisations: vec![
                org("5N1", "Leeds PCT", &["NHS Leeds"]),
                org("5NY", "Bradford and Airedale Teaching PCT", &["Bradford"]),
                org("5N9", "Lincolnshire Teaching PCT", &[]),
                org("5EF", "North Lincolnshire PCT", &[]),
                org("TAK", "Bexley PCT", &[]),
                org("5D9", "Hartlepool PCT", &["Tees"]),
                org("5E1", "Stockton-on-Tees Teaching PCT", &["Tees"]),
                org("5D7", "Newcastle PCT", &[]),
                org("5K8", "Barking & Dagenham PCT", &[]),
                org("5KF", "Northumberland Care Trust", &[]),
            ],
        }
    }

    fn one(code: &str) -> OrgMatch {
        OrgMatch::One(code.to_string())
    }

    #[test]
    fn iapt_must_be_a_whole_word() {
        for yes in ["IAPT KPI Q1", "iapt: return", "[IAPT] Leeds", "Re: IAPT-KPI", "x_iapt_y"] {
            assert!(names_iapt(yes), "{yes}");
        }
        for no in ["IAPTus extract", "KPI return Leeds", "", "IAPTKPI", "TAPI"] {
            assert!(!names_iapt(no), "{no}");
        }
    }

    #[test]
    fn names_and_aliases_ignore_case_punctuation_and_noise_words() {
        let r = registry();
        assert_eq!(match_organisation("IAPT KPI Q1 2011/12 Leeds PCT", &r), one("5N1"));
        assert_eq!(match_organisation("iapt return - NHS LEEDS", &r), one("5N1"));
        assert_eq!(match_organisation("IAPT: leeds.", &r), one("5N1"));
        assert_eq!(match_organisation("IAPT Leeds Primary Care Trust", &r), one("5N1"));
        assert_eq!(match_organisation("IAPT Northumberland", &r), one("5KF"));
        assert_eq!(match_organisation("IAPT Barking and Dagenham", &r), one("5K8"));
        assert_eq!(match_organisation("IAPT Stockton on Tees Teaching", &r), one("5E1"));
    }

    #[test]
    fn longer_name_beats_the_name_inside_it() {
        let r = registry();
        assert_eq!(match_organisation("IAPT Q1 North Lincolnshire PCT", &r), one("5EF"));
        assert_eq!(match_organisation("IAPT Q1 Lincolnshire Teaching PCT", &r), one("5N9"));
    }

    #[test]
    fn code_wins_over_names_and_must_be_a_word() {
        let r = registry();
        assert_eq!(match_organisation("IAPT 5n1 return (Bradford)", &r), one("5N1"));
        assert_eq!(match_organisation("IAPT return 5EF", &r), one("5EF"));
        assert_eq!(match_organisation("IAPT return X5N1", &r), OrgMatch::None);
        assert_eq!(match_organisation("IAPT return TAK", &r), one("TAK"));
        // an all-letter code is not found in ordinary lower-case words
        assert_eq!(match_organisation("IAPT please tak a look", &r), OrgMatch::None);
    }

    #[test]
    fn shared_aliases_and_two_places_are_ambiguous() {
        let r = registry();
        assert_eq!(
            match_organisation("IAPT Tees return", &r),
            OrgMatch::Ambiguous(vec!["5D9".into(), "5E1".into()])
        );
        assert_eq!(
            match_organisation("IAPT returns for Leeds and Bradford", &r),
            OrgMatch::Ambiguous(vec!["5N1".into(), "5NY".into()])
        );
        assert_eq!(
            match_organisation("IAPT 5N1 and 5NY", &r),
            OrgMatch::Ambiguous(vec!["5N1".into(), "5NY".into()])
        );
    }

    #[test]
    fn nothing_recognisable_is_none() {
        let r = registry();
        assert_eq!(match_organisation("IAPT KPI Q1 2011/12", &r), OrgMatch::None);
        assert_eq!(match_organisation("IAPT NHS PCT Teaching", &r), OrgMatch::None);
    }
}
