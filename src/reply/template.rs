//! The reply templates: a tiny `{placeholder}` language the Data Collection Team edits in
//! `config/replies/*.txt` without rebuilding, its parser and checker, and rendering against a
//! tree of values. PURE: the texts are handed in; no file is read here.
//!
//! Hand-written on purpose: replies need `{name}` substitution, repeated sections and one level
//! of "if present", and nothing else. A general template engine would let an edited template run
//! logic or reach fields we never meant to expose; this one only knows the names in each
//! template's schema below, so every mistake in a template is reported when it is loaded, never
//! in the middle of answering a submitter.
//!
//! Syntax:
//! - `{name}` the value of `name` (looked up in the innermost section first);
//! - `{#name}` … `{/name}` repeated once per item of a list, or once if a text is not empty;
//! - `{^name}` … `{/name}` shown only when the list is empty or the text is empty;
//! - `{list}` outside its section: the number of items;
//! - `{! a note }` a comment, left out of the reply;
//! - `{{` a literal `{`.
//!
//! A line holding nothing but a section tag or a comment disappears entirely, so sections can sit
//! on lines of their own without leaving blank lines in the reply.

use std::collections::BTreeMap;
use std::fmt;

/// One problem in one template, with the line it is on where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    /// The template's name (its file stem: `submission`).
    pub template: String,
    pub line: Option<usize>,
    pub problem: String,
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}.txt line {}: {}", self.template, line, self.problem),
            None => write!(f, "{}.txt: {}", self.template, self.problem),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Text(String),
    Var { name: String, line: usize },
    Section { name: String, inverted: bool, line: usize, body: Vec<Node> },
}

/// A value a template can refer to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(String),
    List(Vec<Scope>),
}

pub(crate) type Scope = BTreeMap<&'static str, Value>;

/// The names a template may use: plain fields, and lists with the names of their own items.
#[derive(Debug)]
pub(crate) struct Schema {
    pub fields: &'static [&'static str],
    pub lists: &'static [(&'static str, &'static Schema)],
}

impl Schema {
    fn knows(&self, name: &str) -> bool {
        self.fields.contains(&name) || self.lists.iter().any(|(n, _)| *n == name)
    }

    fn list(&self, name: &str) -> Option<&'static Schema> {
        self.lists.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

enum Tag<'a> {
    Var(&'a str),
    Open(&'a str, bool),
    Close(&'a str),
    Comment,
}

/// Parse one template's text; every syntax problem is reported, with its line.
pub(crate) fn parse(template: &str, text: &str) -> Result<Vec<Node>, Vec<TemplateProblem>> {
    let mut problems = Vec::new();
    let problem = |line: usize, what: String| TemplateProblem {
        template: template.to_string(),
        line: Some(line),
        problem: what,
    };
    // The stack of open sections: (name, inverted, line, nodes so far). The bottom is the root.
    let mut stack: Vec<(String, bool, usize, Vec<Node>)> = vec![(String::new(), false, 0, vec![])];
    // Templates saved on Windows arrive with CRLF; the message builder adds CRLF itself.
    let text = text.replace('\r', "");
    for (index, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let standalone = standalone_tag(raw_line);
        let mut tokens = Vec::new();
        if let Err(what) = tokenise(raw_line, &mut tokens) {
            problems.push(problem(line_no, what));
            continue;
        }
        for token in tokens {
            let top = stack.len() - 1;
            match token {
                Ok(text) if standalone => drop(text),
                Ok(text) => push_text(&mut stack[top].3, text),
                Err(Tag::Comment) => {}
                Err(Tag::Var(name)) => {
                    stack[top].3.push(Node::Var { name: name.to_string(), line: line_no })
                }
                Err(Tag::Open(name, inverted)) => {
                    stack.push((name.to_string(), inverted, line_no, vec![]))
                }
                Err(Tag::Close(name)) => {
                    if top == 0 {
                        problems.push(problem(line_no, format!("{{/{name}}} closes nothing")));
                    } else if stack[top].0 != name {
                        let open = &stack[top];
                        problems.push(problem(
                            line_no,
                            format!(
                                "{{/{name}}} found, but {{#{}}} from line {} is still open",
                                open.0, open.2
                            ),
                        ));
                    } else if let Some((name, inverted, line, body)) = stack.pop() {
                        let node = Node::Section { name, inverted, line, body };
                        stack[top - 1].3.push(node);
                    }
                }
            }
        }
    }
    while stack.len() > 1 {
        if let Some((name, _, line, _)) = stack.pop() {
            problems.push(problem(line, format!("{{#{name}}} is never closed with {{/{name}}}")));
        }
    }
    if problems.is_empty() {
        Ok(stack.pop().map(|root| root.3).unwrap_or_default())
    } else {
        Err(problems)
    }
}

fn push_text(nodes: &mut Vec<Node>, text: String) {
    if let Some(Node::Text(last)) = nodes.last_mut() {
        last.push_str(&text);
    } else if !text.is_empty() {
        nodes.push(Node::Text(text));
    }
}

/// A line that holds one section tag or comment and only whitespace around it.
fn standalone_tag(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('{')
        && t.ends_with('}')
        && matches!(t.as_bytes().get(1), Some(b'#' | b'^' | b'/' | b'!'))
        && t[1..].find('}') == Some(t.len() - 2)
}

/// Split one line into text (`Ok`) and tags (`Err`, to keep one Vec of both).
fn tokenise<'a>(line: &'a str, out: &mut Vec<Result<String, Tag<'a>>>) -> Result<(), String> {
    let mut rest = line;
    let mut text = String::new();
    while let Some(at) = rest.find('{') {
        text.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("{{") {
            text.push('{');
            rest = after;
            continue;
        }
        let Some(end) = rest.find('}') else {
            return Err("a `{` with no closing `}` (write `{{` for a literal brace)".into());
        };
        let inner = &rest[1..end];
        rest = &rest[end + 1..];
        out.push(Ok(std::mem::take(&mut text)));
        out.push(Err(tag(inner)?));
    }
    text.push_str(rest);
    out.push(Ok(text));
    Ok(())
}

fn tag(inner: &str) -> Result<Tag<'_>, String> {
    if inner.starts_with('!') {
        return Ok(Tag::Comment);
    }
    let (kind, name) = match inner.chars().next() {
        Some(c @ ('#' | '^' | '/')) => (Some(c), inner[1..].trim()),
        _ => (None, inner.trim()),
    };
    let well_formed = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Err(format!(
            "`{{{inner}}}` is not a placeholder (names are lower-case letters, digits and `_`; \
             write `{{{{` for a literal brace)"
        ));
    }
    Ok(match kind {
        Some('#') => Tag::Open(name, false),
        Some('^') => Tag::Open(name, true),
        Some(_) => Tag::Close(name),
        None => Tag::Var(name),
    })
}

/// Every placeholder a template uses must be known where it is used.
/// `schemas` are the scopes visible at the top, outermost first (the names common to every
/// reply, then the kind's own).
pub(crate) fn check(
    template: &str,
    nodes: &[Node],
    schemas: &[&'static Schema],
) -> Vec<TemplateProblem> {
    let mut problems = Vec::new();
    check_in(template, nodes, &mut schemas.to_vec(), &mut problems);
    problems
}

fn check_in(
    template: &str,
    nodes: &[Node],
    scopes: &mut Vec<&'static Schema>,
    problems: &mut Vec<TemplateProblem>,
) {
    for node in nodes {
        let (name, line) = match node {
            Node::Text(_) => continue,
            Node::Var { name, line } | Node::Section { name, line, .. } => (name, *line),
        };
        if !scopes.iter().any(|s| s.knows(name)) {
            problems.push(TemplateProblem {
                template: template.to_string(),
                line: Some(line),
                problem: format!("unknown placeholder {{{name}}}; known here: {}", known(scopes)),
            });
        }
        if let Node::Section { body, .. } = node {
            match scopes.iter().rev().find_map(|s| s.list(name)) {
                Some(inner) => {
                    scopes.push(inner);
                    check_in(template, body, scopes, problems);
                    scopes.pop();
                }
                None => check_in(template, body, scopes, problems),
            }
        }
    }
}

fn known(scopes: &[&'static Schema]) -> String {
    let mut names: Vec<&str> = scopes
        .iter()
        .flat_map(|s| s.fields.iter().copied().chain(s.lists.iter().map(|(n, _)| *n)))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

/// Render parsed nodes against a scope. Names the scope lacks render as nothing and are returned,
/// so tests can prove that the code fills in everything a schema promises.
/// `scopes` are outermost first, matching the schemas given to [`check`].
pub(crate) fn render(nodes: &[Node], scopes: &[&Scope]) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut missing = Vec::new();
    render_in(nodes, &mut scopes.to_vec(), &mut out, &mut missing);
    (out, missing)
}

fn lookup<'s>(scopes: &[&'s Scope], name: &str) -> Option<&'s Value> {
    scopes.iter().rev().find_map(|s| s.get(name))
}

fn render_in<'s>(
    nodes: &'s [Node],
    scopes: &mut Vec<&'s Scope>,
    out: &mut String,
    missing: &mut Vec<String>,
) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Var { name, .. } => match lookup(scopes, name) {
                Some(Value::Text(text)) => out.push_str(text),
                Some(Value::List(items)) => out.push_str(&items.len().to_string()),
                None => missing.push(name.clone()),
            },
            Node::Section { name, inverted, body, .. } => {
                let value = lookup(scopes, name);
                let present = match value {
                    Some(Value::Text(t)) => !t.is_empty(),
                    Some(Value::List(items)) => !items.is_empty(),
                    None => {
                        missing.push(name.clone());
                        false
                    }
                };
                match (inverted, value) {
                    (true, _) if !present => render_in(body, scopes, out, missing),
                    (false, Some(Value::List(items))) => {
                        for item in items {
                            scopes.push(item);
                            render_in(body, scopes, out, missing);
                            scopes.pop();
                        }
                    }
                    (false, _) if present => render_in(body, scopes, out, missing),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ITEM: Schema = Schema { fields: &["n", "text"], lists: &[] };
    static ROOT: Schema = Schema { fields: &["name", "note"], lists: &[("items", &ITEM)] };

    fn scope() -> Scope {
        let item = |n: &str, t: &str| {
            Scope::from([("n", Value::Text(n.into())), ("text", Value::Text(t.into()))])
        };
        Scope::from([
            ("name", Value::Text("Leeds PCT".into())),
            ("note", Value::Text(String::new())),
            ("items", Value::List(vec![item("1", "first"), item("2", "second")])),
        ])
    }

    fn run(text: &str) -> String {
        let nodes = parse("t", text).expect("parses");
        assert!(check("t", &nodes, &[&ROOT]).is_empty());
        let (out, missing) = render(&nodes, &[&scope()]);
        assert!(missing.is_empty(), "{missing:?}");
        out
    }

    #[test]
    fn substitutes_and_repeats_sections_without_leaving_tag_lines() {
        let out = run("Dear {name},\n{#items}\n{n}. {text}\n{/items}\nEnd\n");
        assert_eq!(out, "Dear Leeds PCT,\n1. first\n2. second\nEnd\n");
    }

    #[test]
    fn empty_text_hides_a_section_and_shows_its_inverse() {
        let out = run("{#note}Note: {note}{/note}{^note}no note{/note} {{literal}\n");
        assert_eq!(out, "no note {literal}\n");
    }

    #[test]
    fn comments_vanish() {
        assert_eq!(run("{! for the team: placeholders are name }\nHi {name}\n"), "Hi Leeds PCT\n");
    }

    #[test]
    fn unknown_placeholder_is_reported_with_its_line_and_inner_names_stay_inside() {
        let nodes = parse("t", "ok {name}\n{#items}{n}{/items}\n{n} {nmae}\n").expect("parses");
        let problems = check("t", &nodes, &[&ROOT]);
        let lines: Vec<_> = problems.iter().map(|p| (p.line, p.problem.clone())).collect();
        assert_eq!(problems.len(), 2, "{lines:?}");
        assert!(problems.iter().all(|p| p.line == Some(3)));
        assert!(problems[0].problem.contains("{n}"));
        assert!(problems[1].problem.contains("{nmae}"));
    }

    #[test]
    fn syntax_problems_are_all_reported() {
        let problems = parse("t", "{#items}\n{/name}\nstray { brace\n{Bad Name}\n")
            .expect_err("four problems");
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert!(shown[0].starts_with("t.txt line 2:"), "{shown:?}");
        assert!(shown[1].contains("line 3"), "{shown:?}");
        assert!(shown[2].contains("line 4"), "{shown:?}");
        assert!(shown[3].contains("line 1") && shown[3].contains("never closed"), "{shown:?}");
    }
}
