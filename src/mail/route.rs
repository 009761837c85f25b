//! Query routing (SPEC §4): who answers a question, by the configured keywords found in what
//! the sender wrote. Owns the keyword matching only; the keyword lists and their defaults belong
//! to `config` (`[routing]`).

use serde::Serialize;

/// Who answers a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The Data Collection Team: submitting, files, the mailbox, deadlines, access, errors.
    Technical,
    /// The content contacts: definitions, what a KPI counts, caseness, recovery, guidance.
    Content,
}

/// Count each route's keywords in the subject and in the sender's own words of the body (text
/// they quote, such as our earlier reply full of KPI names, is not theirs and would mislead);
/// the larger count wins. A tie, including no match at all, goes to the Data Collection Team,
/// the default contact. Returns the winning route's keywords that were found.
pub fn route(
    subject: &str,
    body: &str,
    technical_keywords: &[String],
    content_keywords: &[String],
) -> (Route, Vec<String>) {
    let mut words = words_of(subject);
    words.extend(words_of(&own_text(body)));
    let (technical, t_found) = count(&words, technical_keywords);
    let (content, c_found) = count(&words, content_keywords);
    if content > technical {
        (Route::Content, c_found)
    } else {
        (Route::Technical, t_found)
    }
}

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The body up to the first sign of a quoted earlier message (`-----Original Message-----`,
/// Outlook's `From:` block, `On … wrote:`), without `>`-quoted lines.
fn own_text(body: &str) -> String {
    let mut own = String::new();
    for line in body.lines() {
        let trimmed = line.trim();
        let lower = trimmed.to_lowercase();
        if lower.contains("original message")
            || lower.starts_with("from:")
            || (lower.starts_with("on ") && lower.ends_with("wrote:"))
        {
            break;
        }
        if !trimmed.starts_with('>') {
            own.push_str(line);
            own.push('\n');
        }
    }
    own
}

/// Endings a keyword's last word may carry and still count: plurals, past tenses and `-ing`
/// forms (`deadline` → `deadlines`, `submit` → `submitted`, `attach` → `attached`). Listed
/// rather than any prefix, so `count` does not find `county`.
const ENDINGS: &[&str] = &["s", "es", "d", "ed", "ing", "ted", "ting", "red", "ring"];

/// Whether a word is the keyword or the keyword with one of the [`ENDINGS`], or a measure id
/// (`kpi` finds `kpi6`, `kpi3a`).
fn word_matches(word: &str, keyword: &str) -> bool {
    match word.strip_prefix(keyword) {
        Some("") => true,
        Some(rest) => ENDINGS.contains(&rest) || rest.starts_with(|c: char| c.is_ascii_digit()),
        None => false,
    }
}

/// Occurrences of the keywords (a phrase is a run of words, its last word matched as above),
/// and which keywords were found.
fn count(words: &[String], keywords: &[String]) -> (usize, Vec<String>) {
    let mut total = 0;
    let mut found = Vec::new();
    for keyword in keywords {
        let phrase = words_of(keyword);
        let Some((last, head)) = phrase.split_last() else { continue };
        let hits = words
            .windows(phrase.len())
            .filter(|w| w[..head.len()] == *head && word_matches(&w[head.len()], last))
            .count();
        if hits > 0 {
            total += hits;
            found.push(keyword.clone());
        }
    }
    (total, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn phrases_plurals_and_tenses_count_but_other_words_do_not() {
        let words = words_of("We have no ACCESS TO the files; deadlines? Submitted, attached.");
        let keywords = list(&["access to", "file", "deadline", "submit", "attach"]);
        assert_eq!(count(&words, &keywords).0, 5);
        let words = words_of("profile accessible County Durham recount");
        assert_eq!(count(&words, &list(&["file", "access to", "count"])).0, 0);
    }

    #[test]
    fn kpi_finds_measure_ids() {
        assert_eq!(count(&words_of("KPI6 and KPI3a, not KPIX"), &list(&["kpi"])).0, 2);
    }

    #[test]
    fn quoted_text_is_not_the_senders() {
        let technical = list(&["deadline"]);
        let content = list(&["recovery", "caseness"]);
        let body = "Is the deadline moved?\n\n> Recovery rate 48%\n> caseness\n";
        assert_eq!(route("IAPT Leeds", body, &technical, &content).0, Route::Technical);
        let body = "Deadline?\n-----Original Message-----\nRecovery, caseness, recovery";
        assert_eq!(route("IAPT Leeds", body, &technical, &content).0, Route::Technical);
        let body = "Deadline?\nOn 12 Jul 2011, IAPT wrote:\nRecovery caseness";
        assert_eq!(route("IAPT Leeds", body, &technical, &content).0, Route::Technical);
        let body = "Deadline?\nFrom: IAPT KPI Returns\nRecovery caseness";
        assert_eq!(route("IAPT Leeds", body, &technical, &content).0, Route::Technical);
    }

    #[test]
    fn more_content_words_route_to_content_and_ties_to_technical() {
        let technical = list(&["deadline", "file"]);
        let content = list(&["caseness", "recovery"]);
        let (r, found) = route("IAPT caseness", "recovery and the deadline", &technical, &content);
        assert_eq!((r, found), (Route::Content, list(&["caseness", "recovery"])));
        let (r, _) = route("IAPT caseness", "the deadline", &technical, &content);
        assert_eq!(r, Route::Technical);
        assert_eq!(route("IAPT", "hello", &technical, &content), (Route::Technical, vec![]));
    }
}
