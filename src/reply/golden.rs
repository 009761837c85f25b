//! Golden reply texts (`tests/fixtures/replies/<case>.txt`; a mismatch writes `<case>.actual`
//! beside it) and the headers of the built messages, read back with mail-parser as a mail
//! client would.

use super::*;
use crate::collection::{Derived, Measure};
use crate::report::{Finding, Severity, Status};
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};
use std::collections::BTreeMap;
use std::path::PathBuf;

const OUR: &str = "iapt-returns@dct.nhs.test";
const TEAM: &str = "data.collections@dct.nhs.test";

fn definition() -> Definition {
    let measure = |id: &str, label: &str| Measure {
        id: id.into(),
        label: label.into(),
        wording: String::new(),
        unit: "people".into(),
        required: id != "KPI7",
        period_basis: "during the reporting quarter".into(),
    };
    let rate = |id: &str, label: &str, num: &str, den: Vec<(i8, String)>, target: f64| Derived {
        id: id.into(),
        label: label.into(),
        numerator: num.into(),
        denominator: den,
        target: Some(target),
        explanation: String::new(),
    };
    Definition {
        id: "iapt-kpi-2011-12".into(),
        title: "IAPT KPI Quarterly Return 2011/12".into(),
        start_year: 2011,
        template_version: "1".into(),
        measures: vec![
            measure("KPI1", "Prevalence (local estimate)"),
            measure("KPI2", "Referred for therapy"),
            measure("KPI3a", "Entered treatment after over 28 days"),
            measure("KPI3b", "Waiting over 28 days (end of quarter)"),
            measure("KPI4", "Entered treatment"),
            measure("KPI5", "Completed treatment"),
            measure("KPI6", "Moving to recovery"),
            measure("KPI6b", "Completed, not at caseness at start"),
            measure("KPI7", "Completed and moved off sick pay or benefits"),
        ],
        derived: vec![
            rate("access_rate", "Access rate", "KPI4", vec![(1, "KPI1".into())], 0.0375),
            rate(
                "recovery_rate",
                "Recovery rate",
                "KPI6",
                vec![(1, "KPI5".into()), (-1, "KPI6b".into())],
                0.5,
            ),
        ],
        rules: vec![],
        periods: vec![],
        guidance_links: vec![],
    }
}

fn finding(
    rule: &str,
    measure: Option<&str>,
    cell: Option<&str>,
    message: &str,
    guidance: &str,
) -> Finding {
    Finding {
        rule: rule.into(),
        severity: if rule.contains("-E") { Severity::Error } else { Severity::Warning },
        measure: measure.map(String::from),
        sheet: cell.map(|_| "Return".to_string()),
        cell: cell.map(String::from),
        message: message.into(),
        guidance: guidance.into(),
    }
}

/// A report as the validator gives it: the rates computed from the figures.
fn report(file: &str, figures: &[(&str, Option<i64>)], findings: Vec<Finding>) -> Report {
    let values: BTreeMap<String, Option<i64>> =
        figures.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let get = |k: &str| values.get(k).copied().flatten().map(|v| v as f64);
    let ratio = |n: Option<f64>, d: Option<f64>| match (n, d) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    };
    let recovery_base = get("KPI5").zip(get("KPI6b")).map(|(a, b)| a - b);
    let derived = BTreeMap::from([
        ("access_rate".to_string(), ratio(get("KPI4"), get("KPI1"))),
        ("recovery_rate".to_string(), ratio(get("KPI6"), recovery_base)),
    ]);
    let status = if findings.iter().any(|f| f.severity == Severity::Error) {
        Status::Invalid
    } else {
        Status::Valid
    };
    Report {
        file: file.into(),
        status,
        organisation: Some("5N1".into()),
        period: Some("2011-12-Q1".into()),
        values,
        derived,
        findings,
    }
}

const LEEDS: [(&str, Option<i64>); 9] = [
    ("KPI1", Some(68653)),
    ("KPI2", Some(2410)),
    ("KPI3a", Some(120)),
    ("KPI3b", Some(85)),
    ("KPI4", Some(1830)),
    ("KPI5", Some(900)),
    ("KPI6", Some(410)),
    ("KPI6b", Some(80)),
    ("KPI7", None),
];

fn accepted_resubmission() -> FileResult {
    let warning = finding(
        "IAPT-W03",
        Some("KPI2"),
        Some("C9"),
        "KPI2 was stored as text (\"2410\"); it was read as the number 2,410.",
        "No action is needed if 2,410 is right. To avoid this warning, format the cell as a \
         number before typing the figure.",
    );
    let mut f =
        FileResult::new("Leeds IAPT Q1.xlsx", report("Leeds IAPT Q1.xlsx", &LEEDS, vec![warning]))
            .with_definition(&definition());
    f.receipt = Some("IAPT-2011-12-Q1-5N1-2".into());
    f.replaces = Some("IAPT-2011-12-Q1-5N1-1".into());
    f.organisation_name = Some("Leeds PCT".into());
    f.period_label = Some("Q1 2011/12".into());
    f.late = true;
    f
}

fn rejected() -> FileResult {
    let mut figures = LEEDS;
    figures[5].1 = None;
    figures[6].1 = Some(950);
    let findings = vec![
        finding(
            "IAPT-E01",
            Some("KPI5"),
            Some("C12"),
            "KPI5 (people who completed treatment) is blank.",
            "Enter the number of people who completed treatment in the quarter; enter 0 if there \
             were none.",
        ),
        finding(
            "IAPT-E02",
            Some("KPI6"),
            Some("C13"),
            "KPI6 is \"950.5\", which is not a whole number.",
            "Enter a whole number of people, 0 or more, with no decimals.",
        ),
        finding(
            "IAPT-W02",
            Some("KPI2"),
            Some("C9"),
            "KPI2 is 52% lower than last quarter.",
            "Explain the change in the Comment cell of the KPI2 row.",
        ),
    ];
    let mut f = FileResult::new("leeds-v2.xls", report("leeds-v2.xls", &figures, findings))
        .with_definition(&definition());
    f.organisation_name = Some("Leeds PCT".into());
    f.period_label = Some("Q1 2011/12".into());
    f
}

fn original(subject: &str) -> Original {
    Original {
        from_address: "jane.analyst@leeds.nhs.test".into(),
        from_name: Some("Jane Analyst".into()),
        subject: subject.into(),
        message_id: Some("<CAB123.leeds@mail.leeds.nhs.test>".into()),
        references: vec!["<root.1@mail.leeds.nhs.test>".into()],
    }
}

fn ctx() -> ReplyContext {
    ReplyContext {
        from_address: OUR.into(),
        from_name: "IAPT KPI Data Collection".into(),
        our_domain: "dct.nhs.test".into(),
        loop_marker: OUR.into(),
        message_id: "reply-42".into(),
        date: DateTime::parse_from_rfc3339("2011-07-21T10:15:00Z")
            .expect("valid date")
            .with_timezone(&Utc),
    }
}

fn raw_question() -> Vec<u8> {
    b"From: Jane Analyst <jane.analyst@leeds.nhs.test>\n\
      To: iapt-returns@dct.nhs.test\n\
      Subject: IAPT Leeds PCT: does KPI6 count people who dropped out?\n\
      Message-ID: <CAB123.leeds@mail.leeds.nhs.test>\n\
      \n\
      Does caseness at the final session count if the last session was missed?\n"
        .to_vec()
}

fn leeds() -> OrgRef {
    OrgRef { code: "5N1".into(), name: "Leeds PCT".into() }
}

/// Every case: (golden file, kind, original subject).
fn cases() -> Vec<(&'static str, ReplyKind, &'static str)> {
    let subject = "IAPT KPI Q1 2011/12 Leeds PCT";
    vec![
        (
            "submission_accepted",
            ReplyKind::Submission { files: vec![accepted_resubmission()], not_read: vec![] },
            subject,
        ),
        (
            "submission_mixed",
            ReplyKind::Submission {
                files: vec![accepted_resubmission(), rejected()],
                not_read: vec![],
            },
            subject,
        ),
        (
            "subject_rule_no_iapt",
            ReplyKind::SubjectRule { reason: SubjectProblem::NoIapt },
            "Q1 return Leeds",
        ),
        (
            "subject_rule_ambiguous",
            ReplyKind::SubjectRule {
                reason: SubjectProblem::Ambiguous(vec![
                    OrgRef { code: "5NG".into(), name: "Central Lancashire PCT".into() },
                    OrgRef { code: "5NE".into(), name: "Cumbria Teaching PCT".into() },
                ]),
            },
            "IAPT KPI Q1 2011/12 Central",
        ),
        (
            "unauthorised",
            ReplyKind::Unauthorised { organisation: leeds(), contact: TEAM.into() },
            subject,
        ),
        (
            "team_notice",
            ReplyKind::TeamNotice {
                to: TEAM.into(),
                organisation: Some(leeds()),
                reason: "the sender is not registered as a submitter for 5N1".into(),
                unverified: false,
                summary: summary(),
                evidence: Vec::new(),
                carry: Carry::Original(raw_question()),
            },
            subject,
        ),
        (
            "query_ack",
            ReplyKind::QueryAck {
                reference: "Q-2011-0007".into(),
                route: Route::Content,
                team_name: "the IAPT content contacts".into(),
                team_address: "iapt.content@dh.nhs.test".into(),
            },
            "IAPT Leeds PCT: does KPI6 count people who dropped out?",
        ),
        (
            "query_forward",
            ReplyKind::QueryForward {
                to: TEAM.into(),
                reference: "Q-2011-0008".into(),
                route: Route::Technical,
                summary: summary(),
                text: None,
                carry: Carry::Original(raw_question()),
            },
            "IAPT Leeds PCT: deadline for Q1?",
        ),
        (
            "ask_for_attachment",
            ReplyKind::AskForAttachment { file_names: vec!["winmail.dat".into()] },
            subject,
        ),
        (
            "unverified_notice",
            ReplyKind::UnverifiedNotice { organisation: leeds(), contact: TEAM.into() },
            subject,
        ),
        (
            "replacement_notice",
            ReplyKind::ReplacementNotice {
                to: "kim.lead@leeds.nhs.test".into(),
                organisation: leeds(),
                old_receipt: "IAPT-2011-12-Q1-5N1-1".into(),
                new_receipt: "IAPT-2011-12-Q1-5N1-2".into(),
            },
            subject,
        ),
        (
            "limit_notice",
            ReplyKind::LimitNotice {
                to: TEAM.into(),
                limit: "10 automatic replies a day to jane.analyst@leeds.nhs.test".into(),
                address: Some("jane.analyst@leeds.nhs.test".into()),
            },
            subject,
        ),
    ]
}

/// What a forward or notice summarises: a verified registered sender with one PDF.
fn summary() -> Summary {
    Summary {
        verified: true,
        verification: "dkim=pass for leeds.nhs.test, reported by mx.example.nhs.test".into(),
        registered_for: Some(leeds()),
        attachments: vec![AttachmentLine {
            name: "notes.pdf".into(),
            real_type: "a PDF document".into(),
            withheld: None,
        }],
    }
}

fn render_case(kind: &ReplyKind, subject: &str) -> Reply {
    let templates = Templates::shipped().expect("shipped templates");
    render(kind, &original(subject), &ctx(), &templates).expect("renders")
}

#[test]
fn every_reply_body_matches_its_golden_text() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replies");
    let mut mismatches = Vec::new();
    for (name, kind, subject) in cases() {
        let body = render_case(&kind, subject).body;
        let golden = dir.join(format!("{name}.txt"));
        let actual = dir.join(format!("{name}.actual"));
        if std::fs::read_to_string(&golden).ok().as_deref() == Some(body.as_str()) {
            let _ = std::fs::remove_file(&actual);
        } else {
            std::fs::write(&actual, &body).expect("write .actual");
            mismatches.push(name);
        }
    }
    assert!(mismatches.is_empty(), "bodies differ from golden texts (see .actual): {mismatches:?}");
}

#[test]
fn reply_bodies_stay_within_74_columns_and_fill_every_placeholder() {
    let templates = Templates::shipped().expect("shipped templates");
    for (name, kind, subject) in cases() {
        let common = body::common(&original(subject), &ctx());
        let (_, missing) = templates.render_strict(&kind, &common, body::scope(&kind));
        assert!(missing.is_empty(), "{name}: no value for {missing:?}");
        let reply = render_case(&kind, subject);
        for line in reply.body.lines() {
            assert!(line.chars().count() <= 74, "{name}: {line:?}");
        }
    }
}

#[test]
fn the_code_fills_every_name_each_schema_promises() {
    // A template that uses every name of its schema, rendered for every case: a name the code
    // forgets to fill would render as nothing in an edited template, silently.
    fn uses(schema: &template::Schema, out: &mut String) {
        for f in schema.fields {
            out.push_str(&format!("{{{f}}}\n"));
        }
        for (name, inner) in schema.lists {
            out.push_str(&format!("{{#{name}}}\n"));
            uses(inner, out);
            out.push_str(&format!("{{/{name}}}\n"));
        }
    }
    let mut pairs = Vec::new();
    for (i, name) in TEMPLATE_NAMES.iter().enumerate() {
        let mut text = String::new();
        uses(&texts::COMMON, &mut text);
        uses(texts::SCHEMAS[i], &mut text);
        pairs.push((name.to_string(), text));
    }
    let templates = Templates::from_pairs(pairs).expect("generated templates are valid");
    let mut covered = std::collections::BTreeSet::new();
    for (name, kind, subject) in cases() {
        covered.insert(texts::index(&kind));
        let common = body::common(&original(subject), &ctx());
        let (_, missing) = templates.render_strict(&kind, &common, body::scope(&kind));
        assert!(missing.is_empty(), "{name}: no value for {missing:?}");
    }
    assert_eq!(covered.len(), TEMPLATE_NAMES.len(), "every kind has a case");
}

fn parse(bytes: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default().parse(bytes).expect("our message parses")
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    v.as_text_list().map(|l| l.iter().map(|s| s.to_string()).collect()).unwrap_or_default()
}

#[test]
fn acceptance_threads_under_the_original_and_marks_itself_automatic() {
    let kind = ReplyKind::Submission { files: vec![accepted_resubmission()], not_read: vec![] };
    let bytes =
        render_case(&kind, "RE: Re: IAPT KPI Q1 2011/12 Leeds PCT").to_bytes().expect("bytes");
    let m = parse(&bytes);
    assert_eq!(
        m.subject(),
        Some("Re: IAPT KPI Q1 2011/12 Leeds PCT — accepted, receipt IAPT-2011-12-Q1-5N1-2")
    );
    assert_eq!(m.message_id(), Some("reply-42@dct.nhs.test"));
    assert_eq!(ids(m.in_reply_to()), ["CAB123.leeds@mail.leeds.nhs.test"]);
    assert_eq!(
        ids(m.references()),
        ["root.1@mail.leeds.nhs.test", "CAB123.leeds@mail.leeds.nhs.test"]
    );
    assert_eq!(m.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert_eq!(m.header_raw("X-Loop").map(str::trim), Some(OUR));
    let from = m.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.address(), Some(OUR));
    let to = m.to().and_then(|a| a.first()).expect("To");
    assert_eq!(
        (to.address(), to.name()),
        (Some("jane.analyst@leeds.nhs.test"), Some("Jane Analyst"))
    );
    assert!(m.reply_to().is_none());
    assert_eq!(m.date().map(|d| d.to_rfc3339()), Some("2011-07-21T10:15:00Z".to_string()));
    let text = m.body_text(0).expect("text body");
    assert!(text.contains("Receipt:       IAPT-2011-12-Q1-5N1-2"), "{text}");
    assert_eq!(m.attachment_count(), 0);
    // All ASCII within 74 columns: readable as it travels, even in a raw-source view.
    assert!(String::from_utf8_lossy(&bytes).contains("Content-Transfer-Encoding: 7bit"));
}

#[test]
fn rejection_subject_counts_errors_and_mixed_counts_files() {
    let one = ReplyKind::Submission { files: vec![rejected()], not_read: vec![] };
    let two = ReplyKind::Submission {
        files: vec![accepted_resubmission(), rejected()],
        not_read: vec![],
    };
    let subject = |k: &ReplyKind| render_case(k, "IAPT KPI Q1 2011/12 Leeds PCT").subject;
    assert_eq!(subject(&one), "Re: IAPT KPI Q1 2011/12 Leeds PCT — rejected, 2 errors");
    assert_eq!(subject(&two), "Re: IAPT KPI Q1 2011/12 Leeds PCT — 1 accepted, 1 rejected");
}

#[test]
fn forward_goes_to_the_team_with_reply_to_the_sender_and_the_original_attached() {
    let kind = ReplyKind::QueryForward {
        to: TEAM.into(),
        reference: "Q-2011-0008".into(),
        route: Route::Technical,
        summary: summary(),
        text: None,
        carry: Carry::Original(raw_question()),
    };
    let bytes = render_case(&kind, "IAPT Leeds PCT: deadline for Q1?").to_bytes().expect("bytes");
    let m = parse(&bytes);
    assert_eq!(m.to().and_then(|a| a.first()).and_then(|a| a.address()), Some(TEAM));
    let reply_to = m.reply_to().and_then(|a| a.first()).expect("Reply-To");
    assert_eq!(reply_to.address(), Some("jane.analyst@leeds.nhs.test"));
    assert_eq!(
        m.subject(),
        Some("Fwd: IAPT Leeds PCT: deadline for Q1? — technical question, reference Q-2011-0008")
    );
    assert_eq!(m.attachment_count(), 1);
    let part = m.attachment(0).expect("attachment");
    let ct = part.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("message", Some("rfc822")));
    let inner = part.message().expect("the original as a message");
    assert_eq!(inner.subject(), Some("IAPT Leeds PCT: does KPI6 count people who dropped out?"));
    assert_eq!(inner.message_id(), Some("CAB123.leeds@mail.leeds.nhs.test"));
    assert!(String::from_utf8_lossy(&bytes).contains("Content-Transfer-Encoding: 7bit"));
}

#[test]
fn non_ascii_subjects_and_names_survive_encoding() {
    let mut orig = original("IAPT KPI Q1 2011/12 Bath and North East Somerset PCT – révisé ✓");
    orig.from_name = Some("Zoë Ó Briain".into());
    let kind = ReplyKind::Unauthorised { organisation: leeds(), contact: TEAM.into() };
    let reply =
        render(&kind, &orig, &ctx(), &Templates::shipped().expect("templates")).expect("renders");
    let bytes = reply.to_bytes().expect("bytes");
    assert!(bytes.is_ascii(), "headers are RFC 2047 encoded and the body quoted-printable");
    let m = parse(&bytes);
    assert_eq!(m.subject(), Some(reply.subject.as_str()));
    assert!(reply.subject.contains("révisé ✓ — not accepted"), "{}", reply.subject);
    assert_eq!(m.to().and_then(|a| a.first()).and_then(|a| a.name()), Some("Zoë Ó Briain"));
    assert!(m.body_text(0).expect("body").starts_with("Dear Zoë Ó Briain,"));
}

#[test]
fn the_same_reply_gives_the_same_bytes() {
    let kind = ReplyKind::TeamNotice {
        to: TEAM.into(),
        organisation: Some(leeds()),
        reason: "unregistered sender".into(),
        unverified: false,
        summary: summary(),
        evidence: Vec::new(),
        carry: Carry::Original(raw_question()),
    };
    let a = render_case(&kind, "IAPT Leeds").to_bytes().expect("bytes");
    let b = render_case(&kind, "IAPT Leeds").to_bytes().expect("bytes");
    assert_eq!(a, b);
}

#[test]
fn hostile_ids_are_left_out_and_long_reference_chains_trimmed() {
    let mut orig = original("IAPT Leeds");
    orig.message_id = Some("<bad id with spaces@x>".into());
    orig.references = (0..50_000).map(|i| format!("<r{i}@x.test>")).collect();
    let kind = ReplyKind::AskForAttachment { file_names: vec!["winmail.dat".into()] };
    let reply = render(&kind, &orig, &ctx(), &Templates::shipped().expect("t")).expect("renders");
    assert_eq!(reply.in_reply_to, None);
    assert_eq!(reply.references.len(), 20);
    assert_eq!(reply.references.first().map(String::as_str), Some("r0@x.test"));
    assert_eq!(reply.references.last().map(String::as_str), Some("r49999@x.test"));
    reply.to_bytes().expect("still builds");
}

#[test]
fn an_unusable_sender_address_is_an_error_not_a_panic() {
    let mut orig = original("IAPT Leeds");
    orig.from_address = "not an address".into();
    let kind = ReplyKind::SubjectRule { reason: SubjectProblem::NoOrganisation };
    let err =
        render(&kind, &orig, &ctx(), &Templates::shipped().expect("t")).expect_err("no address");
    assert!(matches!(err, ReplyError::Address { role: "sender", .. }), "{err}");
}
