//! `[classify]` (SPEC §4b): how automatic mail is recognised beyond its headers — the subjects
//! of out-of-office replies in the languages providers write in, the subjects of delivery
//! failures, and the senders that never write by hand. Each list replaces its default when
//! given; the defaults are here, in one place.

use super::raw::RawClassify;
use super::Validator;

/// `[classify] automatic_subjects` by default: out-of-office and auto-responder subjects in
/// English, German, French, Welsh, Dutch and Spanish, and the Lotus Notes form (`*…` matches
/// the end of a subject, everything else its start).
pub const DEFAULT_AUTOMATIC_SUBJECTS: &[&str] = &[
    // English (Outlook, Exchange, Gmail, webmail vacation tools)
    "automatic reply:",
    "auto reply:",
    "auto-reply:",
    "autoreply:",
    "[auto-reply]",
    "[autoreply]",
    "auto response:",
    "auto-response:",
    "autoresponse:",
    "out of office:",
    "out of office -",
    "out of office reply",
    "out of office autoreply",
    "out of the office:",
    "away from the office:",
    "absence notice:",
    "vacation reply:",
    "on leave:",
    // Lotus Notes: "Ann Analyst is out of the office."
    "*is out of the office",
    // German
    "abwesenheitsnotiz",
    "automatische antwort:",
    "automatische abwesenheitsnotiz",
    "abwesend:",
    // French
    "réponse automatique:",
    "réponse automatique :",
    "absence du bureau",
    "message d'absence",
    // Welsh
    "ateb awtomatig:",
    "allan o'r swyddfa",
    // Dutch
    "automatisch antwoord:",
    "afwezig:",
    "niet aanwezig:",
    // Spanish
    "respuesta automática:",
    "fuera de la oficina",
    "fuera de oficina",
];

/// `[classify] bounce_subjects` by default: how delivery failures without a delivery report
/// are titled (Exchange and Microsoft 365, Postfix, Exim, qmail, Sendmail, Gmail, OpenSMTPD).
pub const DEFAULT_BOUNCE_SUBJECTS: &[&str] = &[
    "undeliverable:",
    "undelivered mail returned to sender",
    "undelivered mail:",
    "delivery status notification (failure)",
    "delivery status notification: error",
    "delivery status notification: failure",
    "mail delivery failed",
    "mail delivery failure",
    "delivery failure",
    "failure notice",
    "returned mail:",
    "mail system error",
    "unzustellbar:",
    "non remis :",
    "non remis:",
    "onbestelbaar:",
    "no se puede entregar:",
];

/// `[classify] automatic_senders` by default: local parts (`*` any characters) of addresses that
/// send only automatic mail: no-reply senders, bounce and quarantine addresses, provider
/// notifications (AWS `no-reply@sns.amazonaws.com`, Microsoft's `no-reply@microsoft.com`).
pub const DEFAULT_AUTOMATIC_SENDERS: &[&str] = &[
    "*noreply*",
    "*no-reply*",
    "*no_reply*",
    "*donotreply*",
    "*do-not-reply*",
    "*do_not_reply*",
    "mailer-daemon",
    "mailer_daemon",
    "postmaster",
    "post_master",
    "post-master",
    "bounce",
    "bounces",
    "bounce+*",
    "bounce-*",
    "bounces+*",
    "bounces-*",
    "quarantine",
    "notification",
    "notifications",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classify {
    pub automatic_subjects: Vec<String>,
    pub bounce_subjects: Vec<String>,
    pub automatic_senders: Vec<String>,
}

impl Default for Classify {
    fn default() -> Classify {
        let list = |d: &[&str]| d.iter().map(|s| s.to_string()).collect();
        Classify {
            automatic_subjects: list(DEFAULT_AUTOMATIC_SUBJECTS),
            bounce_subjects: list(DEFAULT_BOUNCE_SUBJECTS),
            automatic_senders: list(DEFAULT_AUTOMATIC_SENDERS),
        }
    }
}

impl Validator {
    pub(super) fn classify(&mut self, raw: RawClassify) -> Classify {
        let d = Classify::default();
        let mut list = |key: &str, given: Option<Vec<String>>, default: Vec<String>| {
            let Some(given) = given else { return default };
            let mut kept = Vec::new();
            for (i, entry) in given.into_iter().enumerate() {
                let entry = entry.trim().to_lowercase();
                if entry.is_empty() || entry == "*" {
                    self.problem(&format!("{key}[{i}]"), "must not be empty or match everything");
                } else {
                    kept.push(entry);
                }
            }
            kept
        };
        Classify {
            automatic_subjects: list(
                "classify.automatic_subjects",
                raw.automatic_subjects,
                d.automatic_subjects,
            ),
            bounce_subjects: list(
                "classify.bounce_subjects",
                raw.bounce_subjects,
                d.bounce_subjects,
            ),
            automatic_senders: list(
                "classify.automatic_senders",
                raw.automatic_senders,
                d.automatic_senders,
            ),
        }
    }
}
