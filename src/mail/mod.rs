//! Inbound mail (SPEC §4, issue 3): raw bytes → [`Inbound`] with mail-parser; the subject-line
//! rule and the organisation match ([`subject`]); and the classification of SPEC §4's table
//! ([`classify()`]).
//!
//! PURE: bytes, the registry and settings in, data out. This module never touches files, sockets,
//! tokio or the clock; it never decides duplicates (the store does, by Message-ID and bytes) and
//! never writes replies (`reply` does).

pub mod attachment;
pub mod classify;
pub mod danger;
pub mod inbound;
mod parts;
pub mod route;
pub mod subject;
pub mod zipped;

pub use attachment::{Attachment, AttachmentKind};
pub use classify::{
    classify, is_delivery_failure, AutoReason, Classification, ClassifyContext, SubjectProblem,
};
pub use danger::Danger;
pub use inbound::{AutoSignals, DeliveryReport, FromProblem, Inbound, Mailbox, Unread};
pub use parts::MAX_ATTACHMENTS;
pub use route::Route;
pub use subject::{match_organisation, names_iapt, OrgMatch};
pub use zipped::ZipLimits;
