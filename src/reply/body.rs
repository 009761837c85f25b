//! The values each template sees (figures aligned into columns, rates as percentages, findings
//! numbered with their sheet and cell) and the final tidy of the text: lines kept within 78
//! characters where words allow, with a hanging indent under numbered items.

use super::template::{Scope, Value};
use super::{Carry, FileResult, Original, ReplyContext, ReplyKind, Route, SubjectProblem, Summary};
use crate::echo;
use crate::report::Finding;

/// Lines longer than this are wrapped. RFC 5322 §2.1.1 recommends 78; 74 keeps an all-ASCII
/// reply in plain 7bit (the message builder switches to quoted-printable from 75), so it reads
/// cleanly even in a client that shows the raw source.
const WIDTH: usize = 74;

/// A measure label longer than this is shortened in the figures table so rows stay on one line;
/// the id in the first column is what identifies the measure.
const MAX_LABEL: usize = 48;

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn flag(on: bool) -> Value {
    text(if on { "yes" } else { "" })
}

pub(crate) fn common(original: &Original, ctx: &ReplyContext) -> Scope {
    Scope::from([
        (
            "sender_name",
            text(echo::capped(original.from_name.as_deref().unwrap_or(""), echo::NAME_MAX)),
        ),
        ("sender_address", text(echo::capped(&original.from_address, echo::NAME_MAX * 4))),
        ("original_subject", text(echo::capped(&original.subject, echo::SUBJECT_MAX))),
        ("our_name", text(ctx.from_name.clone())),
        ("our_address", text(ctx.from_address.clone())),
        ("date", text(ctx.date.format("%-d %B %Y").to_string())),
    ])
}

pub(crate) fn scope(kind: &ReplyKind) -> Scope {
    match kind {
        ReplyKind::Submission { files, not_read } => {
            let accepted = files.iter().filter(|f| f.is_accepted()).count();
            let named: Vec<Scope> = not_read
                .iter()
                .take(50)
                .map(|n| Scope::from([("file_name", text(echo::quoted(n, echo::FILE_NAME_MAX)))]))
                .chain((not_read.len() > 50).then(|| {
                    Scope::from([("file_name", text(format!("and {} more", not_read.len() - 50)))])
                }))
                .collect();
            Scope::from([
                ("not_read", Value::List(named)),
                ("max_attachments", text(crate::mail::MAX_ATTACHMENTS.to_string())),
                ("file_count", text(files.len().to_string())),
                ("accepted_count", text(accepted.to_string())),
                ("rejected_count", text((files.len() - accepted).to_string())),
                (
                    "files",
                    Value::List(files.iter().enumerate().map(|(i, f)| file(i + 1, f)).collect()),
                ),
            ])
        }
        ReplyKind::SubjectRule { reason } => {
            let candidates = match reason {
                SubjectProblem::Ambiguous(c) => c.as_slice(),
                _ => &[],
            };
            Scope::from([
                ("no_iapt", flag(*reason == SubjectProblem::NoIapt)),
                ("no_organisation", flag(*reason == SubjectProblem::NoOrganisation)),
                ("ambiguous", flag(matches!(reason, SubjectProblem::Ambiguous(_)))),
                (
                    "candidates",
                    Value::List(
                        candidates
                            .iter()
                            .map(|o| {
                                Scope::from([
                                    ("code", text(o.code.clone())),
                                    ("name", text(o.name.clone())),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ])
        }
        ReplyKind::Unauthorised { organisation, contact } => Scope::from([
            ("org_code", text(organisation.code.clone())),
            ("org_name", text(organisation.name.clone())),
            ("contact", text(contact.clone())),
        ]),
        ReplyKind::TeamNotice {
            organisation,
            reason,
            unverified,
            summary,
            evidence,
            carry,
            ..
        } => {
            let mut scope = summary_scope(summary, carry);
            let org = |f: fn(&super::OrgRef) -> &String| {
                text(organisation.as_ref().map(|o| f(o).clone()).unwrap_or_default())
            };
            scope.insert("org_code", org(|o| &o.code));
            scope.insert("org_name", org(|o| &o.name));
            scope.insert("reason", text(reason.clone()));
            scope.insert("held_unverified", flag(*unverified));
            let lines = evidence
                .iter()
                .take(12)
                .map(|l| Scope::from([("text", text(echo::capped(l, 300)))]))
                .collect();
            scope.insert("evidence", Value::List(lines));
            scope
        }
        ReplyKind::QueryAck { reference, route, team_name, team_address } => {
            let mut scope = route_scope(reference, *route);
            scope.insert("team_name", text(team_name.clone()));
            scope.insert("team_address", text(team_address.clone()));
            scope
        }
        ReplyKind::QueryForward { reference, route, summary, text: words, carry, .. } => {
            let mut scope = route_scope(reference, *route);
            scope.extend(summary_scope(summary, carry));
            scope.insert("text", text(words.clone().unwrap_or_default()));
            scope
        }
        ReplyKind::UnverifiedNotice { organisation, contact } => Scope::from([
            ("org_code", text(organisation.code.clone())),
            ("org_name", text(organisation.name.clone())),
            ("contact", text(contact.clone())),
        ]),
        ReplyKind::ReplacementNotice { organisation, old_receipt, new_receipt, .. } => {
            Scope::from([
                ("org_code", text(organisation.code.clone())),
                ("org_name", text(organisation.name.clone())),
                ("old_receipt", text(old_receipt.clone())),
                ("new_receipt", text(new_receipt.clone())),
            ])
        }
        ReplyKind::LimitNotice { limit, address, .. } => Scope::from([
            ("limit", text(limit.clone())),
            ("address", text(address.clone().unwrap_or_default())),
        ]),
        ReplyKind::AskForAttachment { file_names } => Scope::from([
            ("file_count", text(file_names.len().to_string())),
            (
                "files",
                Value::List(
                    file_names
                        .iter()
                        .map(|n| {
                            Scope::from([("file_name", text(echo::capped(n, echo::FILE_NAME_MAX)))])
                        })
                        .collect(),
                ),
            ),
        ]),
    }
}

/// The summary at the top of a forward or notice (SPEC §4b).
fn summary_scope(summary: &Summary, carry: &Carry) -> Scope {
    let attachments = summary
        .attachments
        .iter()
        .take(50)
        .map(|a| {
            Scope::from([
                ("name", text(echo::quoted(&a.name, echo::FILE_NAME_MAX))),
                ("type", text(a.real_type.clone())),
                ("withheld", text(a.withheld.clone().unwrap_or_default())),
            ])
        })
        .collect();
    let registered_org = summary
        .registered_for
        .as_ref()
        .map(|o| format!("{} ({})", o.name, o.code))
        .unwrap_or_default();
    Scope::from([
        ("verified", flag(summary.verified)),
        ("verification", text(echo::capped(&summary.verification, 300))),
        ("registered", flag(summary.registered_for.is_some())),
        ("registered_org", text(registered_org)),
        ("carried_whole", flag(matches!(carry, Carry::Original(_)))),
        ("attachments", Value::List(attachments)),
    ])
}

fn route_scope(reference: &str, route: Route) -> Scope {
    Scope::from([
        ("reference", text(reference)),
        ("route", text(route.as_str())),
        ("technical", flag(route == Route::Technical)),
        ("content", flag(route == Route::Content)),
    ])
}

fn file(number: usize, f: &FileResult) -> Scope {
    let accepted = f.is_accepted();
    let errors: Vec<Scope> =
        f.report.errors().enumerate().map(|(i, x)| finding(i + 1, x)).collect();
    let warnings: Vec<Scope> =
        f.report.warnings().enumerate().map(|(i, x)| finding(i + 1, x)).collect();
    let organisation = match (&f.organisation_name, &f.report.organisation) {
        (Some(name), Some(code)) => format!("{name} ({code})"),
        (Some(name), None) => name.clone(),
        (None, Some(code)) => code.clone(),
        (None, None) => String::new(),
    };
    let period = f.period_label.clone().or_else(|| f.report.period.clone()).unwrap_or_default();
    Scope::from([
        ("number", text(number.to_string())),
        ("file_name", text(echo::capped(&f.file_name, echo::FILE_NAME_MAX))),
        ("organisation", text(echo::capped(&organisation, echo::NAME_MAX * 2))),
        ("period", text(echo::capped(&period, echo::CELL_MAX))),
        ("accepted", flag(accepted)),
        ("rejected", flag(!accepted)),
        ("receipt", text(f.receipt.clone().unwrap_or_default())),
        ("replaces", text(f.replaces.clone().unwrap_or_default())),
        ("late", flag(f.late)),
        ("error_count", text(errors.len().to_string())),
        ("warning_count", text(warnings.len().to_string())),
        ("has_errors", flag(!errors.is_empty())),
        ("has_warnings", flag(!warnings.is_empty())),
        ("figures", Value::List(figures(f))),
        ("rates", Value::List(rates(f))),
        ("errors", Value::List(errors)),
        ("warnings", Value::List(warnings)),
    ])
}

/// Every measure with its label and value, padded so the columns line up in a monospace font.
fn figures(f: &FileResult) -> Vec<Scope> {
    let rows: Vec<(String, String, String)> = if f.measures.is_empty() {
        // No definition applied: the ids as read, in their natural order.
        f.report.values.iter().map(|(id, v)| (id.clone(), String::new(), number(*v))).collect()
    } else {
        f.measures
            .iter()
            .map(|m| {
                let value = f.report.values.get(&m.id).copied().flatten();
                (m.id.clone(), shorten(&m.label), number(value))
            })
            .collect()
    };
    let w_id = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w_label = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let w_value = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(id, label, value)| {
            Scope::from([
                ("measure", text(format!("{id:<w_id$}"))),
                ("label", text(format!("{label:<w_label$}"))),
                ("value", text(format!("{value:>w_value$}"))),
            ])
        })
        .collect()
}

fn rates(f: &FileResult) -> Vec<Scope> {
    let rows: Vec<(String, String, String)> = if f.rates.is_empty() {
        f.report
            .derived
            .iter()
            .map(|(id, v)| (humane(id), v.map(percent).unwrap_or_else(not_computed), String::new()))
            .collect()
    } else {
        f.rates
            .iter()
            .map(|r| {
                let value = f.report.derived.get(&r.id).copied().flatten();
                let value = value.map(percent).unwrap_or_else(not_computed);
                (r.label.clone(), value, r.target.map(percent).unwrap_or_default())
            })
            .collect()
    };
    let w_label = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w_value = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(label, value, target)| {
            Scope::from([
                ("label", text(format!("{label:<w_label$}"))),
                ("value", text(format!("{value:>w_value$}"))),
                ("target", text(target)),
            ])
        })
        .collect()
}

fn shorten(label: &str) -> String {
    let label = one_line(label);
    if label.chars().count() <= MAX_LABEL {
        return label;
    }
    // Three ASCII dots rather than an ellipsis: an all-ASCII body travels as readable 7bit.
    label.chars().take(MAX_LABEL - 3).collect::<String>() + "..."
}

fn not_computed() -> String {
    "cannot be calculated".into()
}

/// `access_rate` → `Access rate`.
fn humane(id: &str) -> String {
    let words = id.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn finding(n: usize, f: &Finding) -> Scope {
    let location = match (&f.sheet, &f.cell) {
        (Some(sheet), Some(cell)) => format!("sheet {sheet}, cell {cell}"),
        (Some(sheet), None) => format!("sheet {sheet}"),
        (None, Some(cell)) => format!("cell {cell}"),
        (None, None) => String::new(),
    };
    let location = match (&f.measure, location.is_empty()) {
        (Some(m), true) => m.clone(),
        (Some(m), false) => format!("{m}, {location}"),
        (None, true) => "the file".into(),
        (None, false) => location,
    };
    Scope::from([
        ("n", text(n.to_string())),
        ("rule", text(f.rule.clone())),
        ("measure", text(echo::capped(f.measure.as_deref().unwrap_or_default(), echo::CELL_MAX))),
        ("sheet", text(echo::capped(f.sheet.as_deref().unwrap_or_default(), echo::CELL_MAX))),
        ("cell", text(echo::capped(f.cell.as_deref().unwrap_or_default(), echo::CELL_MAX))),
        ("location", text(echo::capped(&location, echo::CELL_MAX * 3))),
        ("message", text(one_line(&f.message))),
        ("guidance", text(one_line(&f.guidance))),
    ])
}

/// Texts from definitions and findings become one paragraph (wrapping is done at the end),
/// with nothing a spreadsheet smuggled into them able to start a line of its own.
fn one_line(s: &str) -> String {
    echo::one_line(s)
}

/// `68653` → `68,653`; blank → `(blank)`.
pub(crate) fn number(v: Option<i64>) -> String {
    let Some(v) = v else { return "(blank)".into() };
    let digits = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 {
        out.insert(0, '-');
    }
    out
}

/// A fraction as a percentage with at most two decimals: 0.0375 → `3.75%`, 0.5 → `50%`.
pub(crate) fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return not_computed();
    }
    let s = format!("{:.2}", fraction * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Tidy the rendered template: no trailing spaces, at most one blank line in a row (sections
/// that render nothing may leave two), long lines wrapped, exactly one newline at the end.
pub(crate) fn finish(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    let mut blank_run = 0;
    for line in rendered.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        if line.len() <= WIDTH {
            // Short enough in bytes, so in characters too: most lines, kept without a copy.
            out.push_str(line);
            out.push('\n');
            continue;
        }
        for piece in wrap(line) {
            out.push_str(&piece);
            out.push('\n');
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Wrap one line at spaces to [`WIDTH`]; continuation lines start under the text of a numbered
/// or bulleted item (`12. text`, `- text`), or at the line's own indent. A word longer than the
/// line (a web address) is left whole rather than broken.
fn wrap(line: &str) -> Vec<String> {
    if line.chars().count() <= WIDTH {
        return vec![line.to_string()];
    }
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let marker = list_marker(rest);
    let hang = if indent + marker <= 40 { indent + marker } else { indent };
    let mut lines = Vec::new();
    let mut current = line[..indent + marker].to_string();
    let mut has_word = false;
    for word in rest[marker..].split(' ').filter(|w| !w.is_empty()) {
        let fits = current.chars().count() + usize::from(has_word) + word.chars().count() <= WIDTH;
        if has_word && !fits {
            lines.push(std::mem::replace(&mut current, " ".repeat(hang)));
            has_word = false;
        }
        if has_word {
            current.push(' ');
        }
        current.push_str(word);
        has_word = true;
    }
    lines.push(current);
    lines
}

/// The width of `12. ` or `- ` at the start of a line, or 0.
fn list_marker(s: &str) -> usize {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let after = &s[digits..];
    let bullet = if digits > 0 && after.starts_with(". ") {
        digits + 1
    } else if digits == 0 && (after.starts_with("- ") || after.starts_with("* ")) {
        1
    } else {
        return 0;
    };
    bullet + s[bullet..].chars().take_while(|c| *c == ' ').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_percentages_read_naturally() {
        assert_eq!(number(Some(68653)), "68,653");
        assert_eq!(number(Some(999)), "999");
        assert_eq!(number(Some(-1234567)), "-1,234,567");
        assert_eq!(number(None), "(blank)");
        assert_eq!(percent(0.0375), "3.75%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.478_26), "47.83%");
        assert_eq!(percent(f64::NAN), "cannot be calculated");
    }

    #[test]
    fn long_numbered_lines_wrap_under_their_text() {
        let long = format!("12. {}", "word ".repeat(30));
        let lines = wrap(long.trim_end());
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH), "{lines:?}");
        assert!(lines[1].starts_with("    word"), "{lines:?}");
        let url = format!("  see https://example.test/{}", "x".repeat(90));
        assert_eq!(wrap(&url).len(), 2, "a long word stays whole on its own line");
    }

    #[test]
    fn an_overlong_label_is_shortened_so_table_rows_stay_whole() {
        let label = "People who completed treatment and moved off sick pay or benefits";
        let short = shorten(label);
        assert_eq!(short.chars().count(), MAX_LABEL);
        assert!(short.ends_with("...") && label.starts_with(short.trim_end_matches('.')));
        assert_eq!(shorten("Entered   treatment"), "Entered treatment");
    }

    #[test]
    fn finish_collapses_blank_runs_and_trailing_space() {
        assert_eq!(finish("\nA  \n\n\n\nB\n\n\n"), "A\n\nB\n");
    }
}
