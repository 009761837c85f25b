//! The set of reply templates (`config/replies/*.txt`, one per kind of reply) and the names
//! each may use. Loading checks everything at once — every template present, every placeholder
//! known — so a bad edit is reported in full when the daemon starts, not when a PCT writes in.

use super::template::{self, Node, Schema, Scope, TemplateProblem};
use super::{ReplyError, ReplyKind};

/// The template files, by stem: `config/replies/<name>.txt`.
pub const TEMPLATE_NAMES: [&str; 10] = [
    "submission",
    "subject_rule",
    "unauthorised",
    "team_notice",
    "query_ack",
    "query_forward",
    "ask_for_attachment",
    "unverified_notice",
    "replacement_notice",
    "limit_notice",
];

/// The templates shipped in `config/replies/`, built in so tests and a first run need no files.
const SHIPPED: [(&str, &str); 10] = [
    ("submission", include_str!("../../config/replies/submission.txt")),
    ("subject_rule", include_str!("../../config/replies/subject_rule.txt")),
    ("unauthorised", include_str!("../../config/replies/unauthorised.txt")),
    ("team_notice", include_str!("../../config/replies/team_notice.txt")),
    ("query_ack", include_str!("../../config/replies/query_ack.txt")),
    ("query_forward", include_str!("../../config/replies/query_forward.txt")),
    ("ask_for_attachment", include_str!("../../config/replies/ask_for_attachment.txt")),
    ("unverified_notice", include_str!("../../config/replies/unverified_notice.txt")),
    ("replacement_notice", include_str!("../../config/replies/replacement_notice.txt")),
    ("limit_notice", include_str!("../../config/replies/limit_notice.txt")),
];

// What every template may use.
pub(crate) static COMMON: Schema = Schema {
    fields: &[
        "sender_name",
        "sender_address",
        "original_subject",
        "our_name",
        "our_address",
        "date",
    ],
    lists: &[],
};

static FIGURE: Schema = Schema { fields: &["measure", "label", "value"], lists: &[] };
static RATE: Schema = Schema { fields: &["label", "value", "target"], lists: &[] };
static FINDING: Schema = Schema {
    fields: &["n", "rule", "measure", "sheet", "cell", "location", "message", "guidance"],
    lists: &[],
};
static FILE: Schema = Schema {
    fields: &[
        "number",
        "file_name",
        "organisation",
        "period",
        "accepted",
        "rejected",
        "receipt",
        "replaces",
        "late",
        "error_count",
        "warning_count",
        "has_errors",
        "has_warnings",
    ],
    lists: &[("figures", &FIGURE), ("rates", &RATE), ("errors", &FINDING), ("warnings", &FINDING)],
};
static SUBMISSION: Schema = Schema {
    fields: &["file_count", "accepted_count", "rejected_count", "max_attachments"],
    lists: &[("files", &FILE), ("not_read", &ATTACHED)],
};
static CANDIDATE: Schema = Schema { fields: &["code", "name"], lists: &[] };
static SUBJECT_RULE: Schema = Schema {
    fields: &["no_iapt", "no_organisation", "ambiguous"],
    lists: &[("candidates", &CANDIDATE)],
};
static UNAUTHORISED: Schema = Schema { fields: &["org_code", "org_name", "contact"], lists: &[] };
static ATTACHMENT_LINE: Schema = Schema { fields: &["name", "type", "withheld"], lists: &[] };
static EVIDENCE: Schema = Schema { fields: &["text"], lists: &[] };
static TEAM_NOTICE: Schema = Schema {
    fields: &[
        "org_code",
        "org_name",
        "reason",
        "held_unverified",
        "verified",
        "verification",
        "registered",
        "registered_org",
        "carried_whole",
    ],
    lists: &[("attachments", &ATTACHMENT_LINE), ("evidence", &EVIDENCE)],
};
static QUERY_ACK: Schema = Schema {
    fields: &["reference", "route", "technical", "content", "team_name", "team_address"],
    lists: &[],
};
static QUERY_FORWARD: Schema = Schema {
    fields: &[
        "reference",
        "route",
        "technical",
        "content",
        "text",
        "verified",
        "verification",
        "registered",
        "registered_org",
        "carried_whole",
    ],
    lists: &[("attachments", &ATTACHMENT_LINE)],
};
static ATTACHED: Schema = Schema { fields: &["file_name"], lists: &[] };
static ASK: Schema = Schema { fields: &["file_count"], lists: &[("files", &ATTACHED)] };
static UNVERIFIED: Schema = Schema { fields: &["org_code", "org_name", "contact"], lists: &[] };
static REPLACEMENT: Schema =
    Schema { fields: &["org_code", "org_name", "old_receipt", "new_receipt"], lists: &[] };
static LIMIT: Schema = Schema { fields: &["limit", "address"], lists: &[] };

/// The schema of each template, in the order of [`TEMPLATE_NAMES`].
pub(crate) static SCHEMAS: [&Schema; 10] = [
    &SUBMISSION,
    &SUBJECT_RULE,
    &UNAUTHORISED,
    &TEAM_NOTICE,
    &QUERY_ACK,
    &QUERY_FORWARD,
    &ASK,
    &UNVERIFIED,
    &REPLACEMENT,
    &LIMIT,
];

/// Which template a kind of reply uses: an index into [`TEMPLATE_NAMES`].
pub(crate) fn index(kind: &ReplyKind) -> usize {
    match kind {
        ReplyKind::Submission { .. } => 0,
        ReplyKind::SubjectRule { .. } => 1,
        ReplyKind::Unauthorised { .. } => 2,
        ReplyKind::TeamNotice { .. } => 3,
        ReplyKind::QueryAck { .. } => 4,
        ReplyKind::QueryForward { .. } => 5,
        ReplyKind::AskForAttachment { .. } => 6,
        ReplyKind::UnverifiedNotice { .. } => 7,
        ReplyKind::ReplacementNotice { .. } => 8,
        ReplyKind::LimitNotice { .. } => 9,
    }
}

/// Every reply template, parsed and checked.
#[derive(Debug, Clone)]
pub struct Templates {
    /// In the order of [`TEMPLATE_NAMES`]; complete by construction.
    parsed: Vec<Vec<Node>>,
}

impl Templates {
    /// Build from (name, text) pairs, e.g. the files of `config/replies/` read by the caller.
    /// A name may carry its `.txt`. Reports every missing, unknown, malformed or misspelt
    /// template or placeholder at once.
    pub fn from_pairs<I, N, T>(pairs: I) -> Result<Templates, ReplyError>
    where
        I: IntoIterator<Item = (N, T)>,
        N: AsRef<str>,
        T: AsRef<str>,
    {
        let mut found: Vec<Option<Vec<Node>>> = vec![None; TEMPLATE_NAMES.len()];
        let mut problems = Vec::new();
        let problem = |template: &str, what: &str| TemplateProblem {
            template: template.to_string(),
            line: None,
            problem: what.to_string(),
        };
        for (name, text) in pairs {
            let name = name.as_ref();
            let name = name.strip_suffix(".txt").unwrap_or(name);
            let Some(i) = TEMPLATE_NAMES.iter().position(|n| *n == name) else {
                let known = TEMPLATE_NAMES.join(", ");
                problems.push(problem(name, &format!("not a reply template (known: {known})")));
                continue;
            };
            match template::parse(name, text.as_ref()) {
                Ok(nodes) => {
                    problems.extend(template::check(name, &nodes, &[&COMMON, SCHEMAS[i]]));
                    found[i] = Some(nodes);
                }
                Err(syntax) => problems.extend(syntax),
            }
        }
        for (i, slot) in found.iter().enumerate() {
            if slot.is_none() && !problems.iter().any(|p| p.template == TEMPLATE_NAMES[i]) {
                problems.push(problem(TEMPLATE_NAMES[i], "missing"));
            }
        }
        if !problems.is_empty() {
            return Err(ReplyError::Templates(problems));
        }
        Ok(Templates { parsed: found.into_iter().flatten().collect() })
    }

    /// The templates as shipped in `config/replies/`.
    pub fn shipped() -> Result<Templates, ReplyError> {
        Templates::from_pairs(SHIPPED)
    }

    /// Render the template for `kind` with the names common to every reply and the kind's own.
    pub(crate) fn render(&self, kind: &ReplyKind, common: &Scope, own: Scope) -> String {
        let nodes = self.parsed.get(index(kind)).map(Vec::as_slice).unwrap_or_default();
        template::render(nodes, &[common, &own]).0
    }

    #[cfg(test)]
    pub(crate) fn render_strict(
        &self,
        kind: &ReplyKind,
        common: &Scope,
        own: Scope,
    ) -> (String, Vec<String>) {
        let nodes = self.parsed.get(index(kind)).map(Vec::as_slice).unwrap_or_default();
        template::render(nodes, &[common, &own])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(err: ReplyError) -> Vec<TemplateProblem> {
        match err {
            ReplyError::Templates(p) => p,
            other => panic!("expected template problems, got {other}"),
        }
    }

    #[test]
    fn shipped_templates_load() {
        Templates::shipped().expect("the templates in config/replies are valid");
    }

    #[test]
    fn loader_reports_a_missing_template_and_an_unknown_placeholder_together() {
        let pairs: Vec<(String, String)> = SHIPPED
            .iter()
            .filter(|(n, _)| *n != "query_ack")
            .map(|(n, t)| {
                let text = if *n == "unauthorised" {
                    t.replace("{org_name}", "{organisation_nmae}")
                } else {
                    t.to_string()
                };
                (format!("{n}.txt"), text)
            })
            .collect();
        let err = Templates::from_pairs(pairs).expect_err("two problems");
        let shown = err.to_string();
        let found = problems(err);
        assert!(
            found.iter().any(|p| p.template == "query_ack" && p.problem == "missing"),
            "{shown}"
        );
        let unknown: Vec<_> = found.iter().filter(|p| p.template == "unauthorised").collect();
        assert!(!unknown.is_empty(), "{shown}");
        assert!(unknown
            .iter()
            .all(|p| p.problem.contains("{organisation_nmae}") && p.line.is_some()));
        assert!(shown.contains("unauthorised.txt line"), "{shown}");
    }

    #[test]
    fn loader_reports_a_stray_file_and_a_syntax_error() {
        let mut pairs: Vec<(&str, String)> =
            SHIPPED.iter().map(|(n, t)| (*n, t.to_string())).collect();
        pairs.push(("submision", "typo'd file name".into()));
        pairs[1].1.push_str("\n{#candidates}\nnever closed\n");
        let found = problems(Templates::from_pairs(pairs).expect_err("two problems"));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found
            .iter()
            .any(|p| p.template == "submision" && p.problem.contains("not a reply")));
        assert!(found
            .iter()
            .any(|p| p.template == "subject_rule" && p.problem.contains("never closed")));
    }
}
