//! The store's decisions that do not depend on where data is kept, shared by the SQLite and the
//! in-memory store so both behave alike: key normalisation, receipts, what a filing must hold,
//! and how `status` sums up an organisation's period.

use super::{Filing, NewReply, ReturnState, StatusRow, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// Organisation codes are compared upper-case (`5n1` is `5N1`).
pub fn norm_org(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

/// A Message-ID without angle brackets or spaces; `None` when nothing is left.
pub fn norm_message_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id).trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The Message-ID a queued reply is kept under: every reply must have one.
pub fn reply_message_id(reply: &NewReply) -> Result<String, StoreError> {
    norm_message_id(&reply.message_id).ok_or_else(|| {
        StoreError::InvalidFiling(format!("a {} reply has no Message-ID", reply.kind))
    })
}

/// Senders are compared as [`recipient_key`]s.
pub fn norm_sender(sender: &str) -> String {
    recipient_key(sender)
}

/// The address a limit counts against (SPEC §4b): lower-cased, and without a `+tag` in the
/// local part, so `victim+1@x` and `Victim+2@X` are the same person.
pub fn recipient_key(address: &str) -> String {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>').to_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{local}@{domain}")
        }
        None => address,
    }
}

/// The receipt of a return version: `IAPT-2011-12-Q1-5N1-2`.
pub fn receipt(period: &str, org: &str, version: u32) -> String {
    format!("IAPT-{period}-{org}-{version}")
}

/// The day a guidance reply counts against (UTC).
pub fn guidance_day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// Rejects a filing the store cannot keep consistently; these are bugs in the caller, so the
/// error is not transient.
pub fn check_filing(filing: &Filing) -> Result<(), StoreError> {
    if !super::blobs::is_sha256_hex(&filing.sha256) {
        return Err(StoreError::BadHash(filing.sha256.clone()));
    }
    for r in &filing.returns {
        if r.accepted && r.period.is_none() {
            return Err(StoreError::InvalidFiling(format!(
                "accepted return {:?} has no period",
                r.file_name
            )));
        }
        if norm_org(&r.org).is_empty() {
            return Err(StoreError::InvalidFiling(format!(
                "return {:?} has no organisation",
                r.file_name
            )));
        }
    }
    Ok(())
}

/// Sums up each organisation's period for `status`. Rejected returns and held messages are fed
/// in filing order (a later one overrides an earlier one); a standing accepted return overrides
/// them all, whenever it is fed.
#[derive(Debug, Default)]
pub struct StatusBuilder {
    rows: BTreeMap<String, StatusRow>,
}

impl StatusBuilder {
    pub fn later_attempt(&mut self, row: StatusRow) {
        if !matches!(self.rows.get(&row.org), Some(r) if is_accepted(r.status)) {
            self.rows.insert(row.org.clone(), row);
        }
    }

    pub fn standing(&mut self, org: &str, receipt: &str, late: bool, at: DateTime<Utc>) {
        let status = if late { ReturnState::Late } else { ReturnState::Accepted };
        let row = StatusRow {
            org: org.to_owned(),
            status,
            receipt: Some(receipt.to_owned()),
            received_at: at,
        };
        self.rows.insert(org.to_owned(), row);
    }

    /// Ordered by organisation code.
    pub fn finish(self) -> Vec<StatusRow> {
        self.rows.into_values().collect()
    }
}

fn is_accepted(s: ReturnState) -> bool {
    matches!(s, ReturnState::Accepted | ReturnState::Late)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_keys_ignore_case_and_plus_tags() {
        assert_eq!(recipient_key(" Victim+1@Example.TEST "), "victim@example.test");
        assert_eq!(recipient_key("<victim+a+b@example.test>"), "victim@example.test");
        assert_eq!(recipient_key("ann@leeds.nhs.test"), "ann@leeds.nhs.test");
    }

    #[test]
    fn message_ids_lose_brackets_and_spaces() {
        assert_eq!(norm_message_id(" <a.b@x.test> ").as_deref(), Some("a.b@x.test"));
        assert_eq!(norm_message_id("a.b@x.test").as_deref(), Some("a.b@x.test"));
        assert_eq!(norm_message_id("<>"), None);
    }

    #[test]
    fn accepted_return_stands_over_a_later_rejection() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let mut b = StatusBuilder::default();
        b.standing("5N1", "IAPT-2011-12-Q1-5N1-1", false, at);
        b.later_attempt(StatusRow {
            org: "5N1".into(),
            status: ReturnState::Rejected,
            receipt: Some("IAPT-2011-12-Q1-5N1-2".into()),
            received_at: at,
        });
        let rows = b.finish();
        assert_eq!(rows[0].status, ReturnState::Accepted);
        assert_eq!(rows[0].receipt.as_deref(), Some("IAPT-2011-12-Q1-5N1-1"));
    }
}
