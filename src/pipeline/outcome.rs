//! What happened to one message, for the log line and `run --once`'s summary.

use crate::mail::Inbound;
use crate::store::MessageRef;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Processed {
    pub source_key: String,
    pub message_id: Option<String>,
    pub from: Option<String>,
    /// `submission`, `question`, `subject_rule`, `unauthorised`, `automatic`, `duplicate`.
    pub class: String,
    /// `accepted`, `rejected`, `partly_accepted`, `routed_technical`, `held`, `guidance`, …
    pub outcome: String,
    pub org: Option<String>,
    /// Receipts of the accepted returns.
    pub receipts: Vec<String>,
    /// (kind, Message-ID, recipients) of each reply queued.
    pub replies: Vec<(String, String, Vec<String>)>,
}

impl Processed {
    pub fn duplicate(source_key: &str, inbound: &Inbound, existing: MessageRef) -> Processed {
        Processed {
            source_key: source_key.to_string(),
            message_id: inbound.message_id.clone(),
            from: inbound.sender().map(str::to_string),
            class: "duplicate".into(),
            outcome: format!("already filed as message {} ({})", existing.id, existing.outcome),
            org: None,
            receipts: Vec::new(),
            replies: Vec::new(),
        }
    }
}
