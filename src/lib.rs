//! iapt-intake: the daemon behind the IAPT KPI Quarterly Return mailbox.
//!
//! The map (PURE modules never touch sockets, files, tokio or the clock):
//! - [`auth`]        who sent it: Authentication-Results, DKIM tags, the verdict (PURE),
//!   and its one adapter, our own DKIM check through mail-auth and DNS
//! - [`collection`]  definitions, periods and windows, the organisation registry     PURE
//! - [`workbook`]    bytes → cell grid with every guard; locating the return; template  PURE
//! - [`report`]      findings and the per-file report (the `check --format json` shape) PURE
//! - [`validate`]    grid + definition (+ previous return) + now → report               PURE
//! - [`mail`]        bytes → inbound message; classification; subject and organisation PURE
//! - [`reply`]       outcome → reply (plain data) → RFC 5322 message                    PURE
//! - [`echo`]        the one sanitiser for values echoed from mail or a spreadsheet     PURE
//! - [`config`]      raw TOML → validated config, every problem reported by key
//! - [`store`]       the Store port; SQLite (default) and blobs by SHA-256
//! - [`mailbox`]     the MailSource port; Maildir
//! - [`outbound`]    reply transports (file, sendmail, SMTP) and the outbox sender
//! - [`tls`]         the rustls client (system roots plus a private CA) for IMAP and SMTP
//! - [`guarded`]     the reader under the per-attachment time limit
//! - [`lock`]        one active daemon per store; a second waits as a standby
//! - [`pipeline`]    one message end to end, against the Store and clock it is given
//! - [`daemon`]      the loops: polling, shutdown, retries
//! - [`shutdown`]    the stop flag every loop and long wait honours
//! - [`cli`]         one file per subcommand
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod collection;
pub mod config;
pub mod daemon;
pub mod echo;
pub mod guarded;
pub mod lock;
pub mod mail;
pub mod mailbox;
pub mod oauth2;
pub mod outbound;
pub mod pipeline;
pub mod reply;
pub mod report;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod validate;
pub mod workbook;
