//! The one integration-test binary: each module tests one part end to end on real files.

#[path = "../mailstack/harness.rs"]
mod mailstack;

mod attacks;
mod auth;
mod check;
mod cli;
mod crash;
mod hostile;
mod imap;
mod mail;
mod outbound;
mod pipeline;
mod production;
mod reader_daemon;
mod smtp;
mod stack;
mod store;
mod workbook;
