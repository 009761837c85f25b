//! The returns of one submission: each spreadsheet attachment read under the time limit and
//! validated against the organisation's history; the results kept in attachment order for the
//! one reply that covers them all, and as return versions for the store.

use super::history::StoreHistory;
use super::{Env, Incoming, PipelineError};
use crate::collection::PeriodId;
use crate::guarded::read_with_timeout;
use crate::mail::{Inbound, Unread};
use crate::reply::{FileResult, ReplyKind};
use crate::report::{Finding, Report, Severity, Status};
use crate::store::{Assigned, NewReturn, Store};
use crate::validate::{validate, Input};
use crate::workbook::{ReadError, Workbook};
use std::collections::{BTreeMap, HashMap};

/// Rule of SPEC §2 for a file that cannot be read at all.
const UNREADABLE: &str = "IAPT-E21";
/// Rule for a return submitted after the deadline.
const LATE: &str = "IAPT-W04";

struct Entry {
    result: FileResult,
    /// Index into `new_returns` when the file was filed as a return version.
    return_index: Option<usize>,
    /// A wrapper (winmail.dat) rather than a spreadsheet.
    unreadable: bool,
}

/// The attachments of a submission, as the classification named them.
pub(super) struct Attached<'a> {
    pub inbound: &'a Inbound,
    pub attachments: &'a [usize],
    pub unreadable: &'a [usize],
    /// The sender was verified, so findings may quote earlier accepted figures (W01, W02);
    /// otherwise they say only that the figure changed (SPEC §4a).
    pub reveal_history: bool,
}

#[derive(Default)]
pub(super) struct Returns {
    pub new_returns: Vec<NewReturn>,
    entries: Vec<Entry>,
    /// Attachments and parts that were not read at all, named in the reply.
    not_read: Vec<String>,
}

impl Returns {
    /// Validate each return attachment (as already read by `prepare`, in `reads`; one not
    /// read there is read now) against the organisation's history. An attachment whose blob
    /// is not already written (its hash in `staged`) is stored now.
    pub fn validate<S: Store + ?Sized>(
        store: &S,
        env: &Env,
        org: &str,
        attached: Attached<'_>,
        reads: &mut HashMap<usize, Result<Workbook, ReadError>>,
        staged: &mut HashMap<usize, String>,
        msg: Incoming<'_>,
    ) -> Result<Returns, PipelineError> {
        let Attached { inbound, attachments, unreadable, reveal_history } = attached;
        let limits = env.config.limits;
        let mut out = Returns::default();
        for &i in attachments {
            let Some(att) = inbound.attachments.get(i) else { continue };
            let sha = match staged.remove(&i) {
                Some(sha) => sha,
                None => store.put_blob(&att.bytes)?,
            };
            let read = reads.remove(&i).unwrap_or_else(|| {
                read_with_timeout(
                    att.bytes.clone(),
                    &att.name,
                    limits.workbook,
                    limits.attachment_timeout,
                )
            });
            let history = StoreHistory::new(store);
            let report = validate(&Input {
                file_name: &att.name,
                workbook: read.as_ref(),
                collections: &env.collections,
                registry: &env.registry,
                expected_org: Some(org),
                expected_from: crate::validate::ExpectedFrom::Subject,
                expected_period: None,
                now: Some(msg.received_at),
                history: &history,
            });
            if let Some(e) = history.take_error() {
                return Err(e.into());
            }
            let mut report = report;
            if !reveal_history {
                redact_history(&mut report);
            }
            let accepted = report.is_valid();
            // A file for another organisation is kept, but numbered for neither (SPEC §4b).
            let for_other =
                report.organisation.as_deref().is_some_and(|o| !o.eq_ignore_ascii_case(org));
            let late = report.findings.iter().any(|f| f.rule == LATE);
            out.new_returns.push(NewReturn {
                org: org.to_string(),
                period: report.period.clone(),
                file_name: att.name.clone(),
                attachment_sha256: sha,
                accepted,
                late,
                values: report.values.clone(),
                derived: report.derived.clone(),
                findings: serde_json::to_value(&report.findings).unwrap_or_default(),
                numbered: accepted || !for_other,
            });
            let result = file_result(env, org, &att.name, report, late);
            out.entries.push(Entry {
                result,
                return_index: Some(out.new_returns.len() - 1),
                unreadable: false,
            });
        }
        for &i in unreadable {
            let Some(att) = inbound.attachments.get(i) else { continue };
            let report = unreadable_report(
                env,
                org,
                &att.name,
                "the attachment is an Outlook winmail.dat wrapper, not a spreadsheet: send the \
                 return again as a normal .xlsx attachment (in Outlook, send as plain text or HTML)",
            );
            out.entries.push(Entry {
                result: file_result(env, org, &att.name, report, false),
                return_index: None,
                unreadable: true,
            });
        }
        // Nothing is silent (SPEC §4b): what of the message was not read is named in the reply.
        out.not_read = inbound.skipped.clone();
        if inbound.unread.contains(&Unread::ArchiveEntry) {
            out.not_read.push(Unread::ArchiveEntry.describe());
        }
        Ok(out)
    }

    /// A message over the size limit: one rejected entry for the whole message. `size` is what
    /// was read of it: a source reads at most one byte past the limit, so then the real size is
    /// not known, only that it is over.
    pub fn message_too_large(env: &Env, org: &str, size: u64) -> Returns {
        let limit = env.config.limits.message_bytes;
        let how_big = if size > limit.saturating_add(1) {
            format!("the message is {:.1} MB, over the limit of", size as f64 / 1e6)
        } else {
            "the message is over the limit of".to_string()
        };
        let report = unreadable_report(
            env,
            org,
            "(the whole message)",
            &format!(
                "{how_big} {:.1} MB, so its attachments were not read: send only the return, as \
                 one .xlsx attachment",
                limit as f64 / 1e6
            ),
        );
        let result = file_result(env, org, "(the whole message)", report, false);
        Returns {
            entries: vec![Entry { result, return_index: None, unreadable: false }],
            ..Returns::default()
        }
    }

    /// A message whose damaged structure hid whatever return it carried: one unreadable entry
    /// per kind of damage, so the reply asks for the file again and names what was not read.
    pub fn damaged(env: &Env, org: &str, unread: &[Unread]) -> Returns {
        let entries = unread
            .iter()
            .map(|what| {
                let name = what.describe();
                let report = unreadable_report(
                    env,
                    org,
                    &name,
                    "no return could be found: the message's structure was damaged or too deep \
                     to read, so its attachments were not all seen: send the return again as one \
                     .xlsx attachment in a new message",
                );
                Entry {
                    result: file_result(env, org, &name, report, false),
                    return_index: None,
                    unreadable: true,
                }
            })
            .collect();
        Returns { entries, ..Returns::default() }
    }

    pub fn outcome(&self) -> String {
        let accepted = self.new_returns.iter().filter(|r| r.accepted).count();
        let total = self.entries.len();
        match accepted {
            0 => "rejected".into(),
            n if n == total => "accepted".into(),
            _ => "partly_accepted".into(),
        }
    }

    /// The period of the first return that names one.
    pub fn period(&self) -> Option<String> {
        self.new_returns.iter().find_map(|r| r.period.clone())
    }

    pub fn only_unreadable(&self) -> bool {
        !self.entries.is_empty() && self.entries.iter().all(|e| e.unreadable)
    }

    pub fn unreadable_names(&self) -> Vec<String> {
        self.entries.iter().filter(|e| e.unreadable).map(|e| e.result.file_name.clone()).collect()
    }

    pub fn file_results(&self) -> Vec<FileResult> {
        self.entries.iter().map(|e| e.result.clone()).collect()
    }

    /// The reply with the receipts the store assigned (only accepted returns show one).
    pub fn with_receipts(&self, kind: &ReplyKind, assigned: &Assigned) -> ReplyKind {
        let ReplyKind::Submission { not_read, .. } = kind else { return kind.clone() };
        let files = self
            .entries
            .iter()
            .map(|e| {
                let mut r = e.result.clone();
                if let Some(a) = e.return_index.and_then(|i| assigned.returns.get(i)) {
                    if r.is_accepted() {
                        r.receipt = a.receipt.clone();
                        r.replaces = a.supersedes.clone();
                    }
                }
                r
            })
            .collect();
        ReplyKind::Submission { files, not_read: not_read.clone() }
    }

    pub fn not_read(&self) -> Vec<String> {
        self.not_read.clone()
    }
}

/// W01 and W02 quote the organisation's earlier accepted figures; a sender who was not verified
/// is told only that the figure changed (SPEC §4a: stored figures go only to verified senders).
fn redact_history(report: &mut Report) {
    for f in report.findings.iter_mut() {
        let id = f.measure.clone().unwrap_or_default();
        match f.rule.as_str() {
            "IAPT-W01" => {
                f.message = format!("{id} differs from your last accepted return. KPI1 is the local estimate and normally stays the same all year; if the change is intended no action is needed, otherwise correct it and resubmit.")
            }
            "IAPT-W02" => {
                f.message = format!("{id} differs by more than half from your accepted return for the previous quarter, and has no comment. If the figure is right, explain the change in the Comment column; otherwise correct it.")
            }
            _ => {}
        }
    }
}

fn file_result(env: &Env, org: &str, file_name: &str, report: Report, late: bool) -> FileResult {
    let period = report.period.as_deref().and_then(PeriodId::parse);
    let definition =
        period.and_then(|p| env.collections.definition_for(p)).or_else(|| env.collections.latest());
    // The reply shows "name (code)" itself, from the code the file gives; name that organisation.
    let code = report.organisation.clone().unwrap_or_else(|| org.to_string());
    let mut result = FileResult::new(file_name, report);
    if let Some(d) = definition {
        result = result.with_definition(d);
    }
    result.organisation_name = env.registry.get(&code).map(|o| o.name.clone());
    result.period_label = period.map(|p| p.label());
    result.late = late;
    result
}

/// A report for a file that could not be read at all (IAPT-E21), in the validator's shape.
fn unreadable_report(env: &Env, org: &str, file: &str, message: &str) -> Report {
    let definition = env.collections.latest();
    let values: BTreeMap<String, Option<i64>> = definition
        .map(|d| d.measures.iter().map(|m| (m.id.clone(), None)).collect())
        .unwrap_or_default();
    let guidance =
        definition.and_then(|d| d.rule(UNREADABLE)).map(|r| r.guidance.clone()).unwrap_or_default();
    Report {
        file: file.to_string(),
        status: Status::Invalid,
        organisation: Some(org.to_string()),
        period: None,
        values,
        derived: BTreeMap::new(),
        findings: vec![Finding {
            rule: UNREADABLE.into(),
            severity: Severity::Error,
            measure: None,
            sheet: None,
            cell: None,
            message: message.to_string(),
            guidance,
        }],
    }
}
