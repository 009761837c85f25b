//! Unit tests of `classify`: the order of the checks and each automatic sign, authorisation
//! and routing, on hand-built messages.

use super::*;
use crate::mail::attachment::Attachment;
use crate::mail::inbound::{DeliveryReport, Mailbox};

fn registry() -> Registry {
    Registry {
        organisations: vec![Organisation {
            code: "5N1".into(),
            name: "Leeds PCT".into(),
            aliases: vec!["NHS Leeds".into()],
            submitters: vec![
                Submitter::Domain("leeds.nhs.test".into()),
                Submitter::Address("kpi@partner.nhs.test".into()),
            ],
        }],
    }
}

struct Fixture {
    registry: Registry,
    ours: Vec<String>,
    technical: Vec<String>,
    content: Vec<String>,
    automatic_subjects: Vec<String>,
    bounce_subjects: Vec<String>,
    automatic_senders: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
        Fixture {
            registry: registry(),
            ours: vec!["IAPT.KPI@collection.test".into()],
            technical: words(&["deadline", "file", "access to"]),
            content: words(&["caseness", "recovery", "count"]),
            automatic_subjects: words(crate::config::DEFAULT_AUTOMATIC_SUBJECTS),
            bounce_subjects: words(crate::config::DEFAULT_BOUNCE_SUBJECTS),
            automatic_senders: words(crate::config::DEFAULT_AUTOMATIC_SENDERS),
        }
    }

    fn ctx(&self) -> ClassifyContext<'_> {
        ClassifyContext {
            registry: &self.registry,
            our_addresses: &self.ours,
            message_id_domain: "intake.collection.test",
            loop_marker: "iapt-intake@collection.test",
            technical_keywords: &self.technical,
            content_keywords: &self.content,
            automatic_subjects: &self.automatic_subjects,
            bounce_subjects: &self.bounce_subjects,
            automatic_senders: &self.automatic_senders,
            require_verified: false,
            verified: true,
        }
    }
}

fn message(from: &str, subject: &str) -> Inbound {
    Inbound {
        message_id: Some("abc@leeds.nhs.test".into()),
        from: Some(Mailbox { address: from.into(), name: None }),
        subject: subject.into(),
        ..Inbound::default()
    }
}

fn with_attachment(mut inbound: Inbound, kind: AttachmentKind) -> Inbound {
    inbound.attachments.push(Attachment {
        name: "a".into(),
        declared_name: None,
        content_type: String::new(),
        kind,
        depth: 0,
        size: 0,
        danger: None,
        container: None,
        bytes: Vec::new(),
    });
    inbound
}

fn reason(inbound: &Inbound) -> Option<AutoReason> {
    match classify(inbound, &Fixture::new().ctx()) {
        Classification::Automatic { reason, .. } => Some(reason),
        _ => None,
    }
}

const LEEDS: &str = "IAPT KPI Q1 2011/12 Leeds PCT";

#[test]
fn authorised_return_is_a_submission_with_spreadsheets_and_tnef_listed_apart() {
    let m = with_attachment(message("ann@leeds.nhs.test", LEEDS), AttachmentKind::Other);
    let m = with_attachment(m, AttachmentKind::Spreadsheet);
    let m = with_attachment(m, AttachmentKind::Tnef);
    assert_eq!(
        classify(&m, &Fixture::new().ctx()),
        Classification::Submission { org: "5N1".into(), attachments: vec![1], unreadable: vec![2] }
    );
}

/// A return the parser could not find (damaged MIME, forward too deep, past the attachment cap)
/// is not a question: the submitter is asked for the file again, a stranger is held.
#[test]
fn damaged_structure_without_a_return_is_not_a_question() {
    let f = Fixture::new();
    let mut m = message("ann@leeds.nhs.test", LEEDS);
    m.body = "Please find our return attached; any question about the deadline, ask.".into();
    let question = classify(&m, &f.ctx());
    assert!(matches!(question, Classification::Question { .. }), "intact: {question:?}");
    m.unread = vec![Unread::BrokenMime, Unread::AttachmentCap];
    let m = with_attachment(m, AttachmentKind::Other);
    assert_eq!(
        classify(&m, &f.ctx()),
        Classification::Damaged {
            org: "5N1".into(),
            unread: vec![Unread::BrokenMime, Unread::AttachmentCap]
        }
    );
    let mut stranger = message("someone@gmail.test", LEEDS);
    stranger.unread = vec![Unread::NestingCut];
    assert_eq!(
        classify(&stranger, &f.ctx()),
        Classification::Unauthorised { org: "5N1".into(), attachments: vec![] }
    );
}

#[test]
fn a_return_found_in_a_damaged_message_is_still_validated() {
    let mut m = message("ann@leeds.nhs.test", LEEDS);
    m.unread = vec![Unread::BrokenMime];
    let m = with_attachment(m, AttachmentKind::Spreadsheet);
    assert_eq!(
        classify(&m, &Fixture::new().ctx()),
        Classification::Submission { org: "5N1".into(), attachments: vec![0], unreadable: vec![] }
    );
}

#[test]
fn submitters_are_exact_addresses_or_exact_domains() {
    let org = &registry().organisations[0];
    assert!(is_submitter(org, "ann@leeds.nhs.test"));
    assert!(is_submitter(org, "KPI@Partner.nhs.test"));
    assert!(!is_submitter(org, "other@partner.nhs.test"));
    assert!(!is_submitter(org, "ann@mail.leeds.nhs.test"));
    assert!(!is_submitter(org, "ann@evilleeds.nhs.test"));
    assert!(!is_submitter(org, "leeds.nhs.test"));
}

#[test]
fn return_from_an_unregistered_address_is_unauthorised() {
    let m = with_attachment(message("ann@gmail.test", LEEDS), AttachmentKind::Spreadsheet);
    assert_eq!(
        classify(&m, &Fixture::new().ctx()),
        Classification::Unauthorised { org: "5N1".into(), attachments: vec![0] }
    );
}

#[test]
fn subject_rule_comes_before_authorisation_and_attachments() {
    let ctx_owner = Fixture::new();
    let m = with_attachment(
        message("ann@leeds.nhs.test", "IAPT Q1 return"),
        AttachmentKind::Spreadsheet,
    );
    assert_eq!(
        classify(&m, &ctx_owner.ctx()),
        Classification::SubjectRule { reason: SubjectProblem::NoOrganisation }
    );
    let m = with_attachment(message("x@gmail.test", "Leeds PCT Q1"), AttachmentKind::Spreadsheet);
    assert_eq!(
        classify(&m, &ctx_owner.ctx()),
        Classification::SubjectRule { reason: SubjectProblem::NoIapt }
    );
}

#[test]
fn questions_are_routed_by_keyword_counts_and_anyone_may_ask() {
    let f = Fixture::new();
    let mut m = message("commissioner@ccg.test", "IAPT question NHS Leeds");
    m.body = "How do we count caseness and recovery? Also the deadline.".into();
    assert_eq!(
        classify(&m, &f.ctx()),
        Classification::Question {
            org: "5N1".into(),
            route: Route::Content,
            keywords: vec!["caseness".into(), "recovery".into(), "count".into()],
        }
    );
    m.body = "When is the deadline? Which file? Is recovery counted?".into();
    assert!(matches!(
        classify(&m, &f.ctx()),
        Classification::Question { route: Route::Technical, .. }
    ));
    m.body = "Caseness deadline".into(); // a tie goes to the Data Collection Team
    assert!(matches!(
        classify(&m, &f.ctx()),
        Classification::Question { route: Route::Technical, .. }
    ));
    m.body = "Hello".into(); // nothing matched: the default contact, no keywords
    assert_eq!(
        classify(&m, &f.ctx()),
        Classification::Question { org: "5N1".into(), route: Route::Technical, keywords: vec![] }
    );
}

#[test]
fn each_automatic_sign_is_recognised() {
    let base = || message("ann@leeds.nhs.test", LEEDS);
    let mut m = base();
    m.signals.auto_submitted = Some("auto-generated".into());
    assert_eq!(reason(&m), Some(AutoReason::AutoSubmitted("auto-generated".into())));
    m.signals.auto_submitted = Some("no".into());
    assert_eq!(reason(&m), None);
    for p in ["bulk", "junk", "list", "auto_reply"] {
        let mut m = base();
        m.signals.precedence = Some(p.into());
        assert_eq!(reason(&m), Some(AutoReason::Precedence(p.into())));
    }
    let mut m = base();
    m.signals.precedence = Some("first-class".into());
    assert_eq!(reason(&m), None);
    m.signals.list_id = Some("<leads.lists.test>".into());
    assert!(matches!(reason(&m), Some(AutoReason::ListId(_))));
    let mut m = base();
    m.signals.return_path = Some(String::new());
    assert_eq!(reason(&m), Some(AutoReason::NullReturnPath));
    let m = message("MAILER-DAEMON@mx.test", LEEDS);
    assert!(matches!(reason(&m), Some(AutoReason::DaemonSender(_))));
    let m = message("postmaster@mx.test", LEEDS);
    assert!(matches!(reason(&m), Some(AutoReason::DaemonSender(_))));
    let m = message("iapt.kpi@collection.test", LEEDS);
    assert_eq!(reason(&m), Some(AutoReason::FromUs));
    let mut m = base();
    m.message_id = Some("reply-9@Intake.Collection.test".into());
    assert_eq!(reason(&m), Some(AutoReason::OurMessageId));
    let mut m = base();
    m.signals.x_loop = vec!["other@x.test".into(), "iapt-intake@collection.test".into()];
    assert_eq!(reason(&m), Some(AutoReason::OurLoop));
    let mut m = base();
    m.signals.extra_headers = vec!["X-Autoreply".into()];
    assert_eq!(reason(&m), Some(AutoReason::AutoReplyHeader("X-Autoreply".into())));
    let m = message("ann@leeds.nhs.test", "Out of Office: IAPT KPI Leeds");
    assert_eq!(reason(&m), Some(AutoReason::AutoReplySubject));
    let mut m = base();
    m.from = None;
    assert_eq!(reason(&m), Some(AutoReason::NoSender));
}

#[test]
fn inbox_rule_header_alone_does_not_drop_a_real_return() {
    let mut m = with_attachment(message("ann@leeds.nhs.test", LEEDS), AttachmentKind::Spreadsheet);
    m.signals.extra_headers = vec!["X-MS-Exchange-Inbox-Rules-Loop".into()];
    assert!(matches!(classify(&m, &Fixture::new().ctx()), Classification::Submission { .. }));
}

#[test]
fn automatic_is_checked_before_anything_else() {
    let mut m = with_attachment(message("ann@leeds.nhs.test", LEEDS), AttachmentKind::Spreadsheet);
    m.signals.auto_submitted = Some("auto-replied".into());
    assert!(matches!(classify(&m, &Fixture::new().ctx()), Classification::Automatic { .. }));
}

fn bounce(report_type: Option<&str>, actions: &[&str], original: &str) -> Inbound {
    let mut m = message("mailer-daemon@mx.leeds.nhs.test", "Undeliverable");
    m.report = Some(DeliveryReport {
        report_type: report_type.map(str::to_string),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        original_message_id: Some(original.into()),
    });
    m
}

fn bounce_of_(m: &Inbound) -> Option<String> {
    match classify(m, &Fixture::new().ctx()) {
        Classification::Automatic { bounce_of, .. } => bounce_of,
        other => panic!("not automatic: {other:?}"),
    }
}

#[test]
fn only_failed_deliveries_of_our_own_messages_are_bounces_of() {
    let ours = "r-1@intake.collection.test";
    assert_eq!(bounce_of_(&bounce(Some("delivery-status"), &["failed"], ours)), Some(ours.into()));
    assert_eq!(bounce_of_(&bounce(Some("delivery-status"), &[], ours)), Some(ours.into()));
    assert_eq!(bounce_of_(&bounce(None, &[], ours)), Some(ours.into()));
    assert_eq!(bounce_of_(&bounce(Some("delivery-status"), &["delayed"], ours)), None);
    assert_eq!(bounce_of_(&bounce(Some("disposition-notification"), &[], ours)), None);
    assert_eq!(bounce_of_(&bounce(Some("delivery-status"), &["failed"], "x@elsewhere.test")), None);
}
