//! What the end-to-end tests share: return workbooks written with rust_xlsxwriter, messages
//! built as RFC 5322 text, a config in a temporary directory that points at the repository's
//! collections, registry and reply templates, replies parsed back with mail-parser, and golden
//! reply bodies under `tests/fixtures/pipeline/`.
//!
//! Owns test scaffolding only: it never decides what a correct answer is.

pub mod daemon;
pub mod fake_imap;
pub mod fake_smtp;
pub mod mail;
pub mod stack_config;
pub mod workbook;

pub use mail::{reply_of, Mail, Reply};
pub use stack_config::{write_stack_config, Replies, StackConfig};
pub use workbook::{value_cell, ReturnBook, Val};

use chrono::{DateTime, Utc};
use iapt_intake::collection::{Collections, Registry};
use iapt_intake::config::Config;
use iapt_intake::pipeline::Env;
use iapt_intake::reply::Templates;
use std::path::{Path, PathBuf};

/// Our own address (the config's `outbound.from`) and the teams', as the test config sets them.
pub const US: &str = "iapt.returns@example.nhs.test";
pub const DCT: &str = "iapt.datacollection@example.nhs.test";
pub const CONTENT: &str = "iapt.content@example.nhs.test";
/// A registered submitter of Leeds PCT (5N1): the registry admits `@leeds.nhs.test`.
pub const ANN: &str = "ann.analyst@leeds.nhs.test";

/// 2011-12-Q1: opens 2011-07-01 09:00 BST, deadline 2011-07-29 17:00 BST, closes 2011-11-11.
pub const ON_TIME: &str = "2011-07-20T09:00:00Z";
pub const BEFORE_OPENS: &str = "2011-06-20T09:00:00Z";
pub const LATE: &str = "2011-08-15T09:00:00Z";
pub const AFTER_CLOSES: &str = "2011-11-20T09:00:00Z";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("test time").with_timezone(&Utc)
}

/// What a test config may change from the embedded default.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Another registry instead of the repository's `config/organisations.csv`.
    pub organisations: Option<PathBuf>,
    /// `limits.message_bytes`.
    pub message_bytes: Option<u64>,
    /// The store's database file (default `<dir>/var/iapt-intake.db`).
    pub store_path: Option<PathBuf>,
    /// The test files a burst from one sender (the load is the point): the limits of SPEC §4b
    /// are raised out of its way. They have tests of their own (`attacks`).
    pub burst: bool,
    /// `[auth] require = "none"`: for corpora of stored messages that carry no evidence of
    /// their sender (the hostile corpus is about content, not about who sent it).
    pub unverified_welcome: bool,
}

/// The receiving server the test mailbox trusts (`[auth] trusted_authserv_ids`). `Mail`
/// stamps its messages with this server's `Authentication-Results`, as the mailbox's own MX
/// would, unless told otherwise.
pub const MX: &str = "mx.example.nhs.test";

/// A config like the embedded default, with the collection data, registry and templates taken
/// from the repository by absolute path, and everything the daemon writes under `dir`.
pub fn config_text(dir: &Path, s: &Settings) -> String {
    let repo = repo();
    let organisations =
        s.organisations.clone().unwrap_or_else(|| repo.join("config/organisations.csv"));
    let store = s.store_path.clone().unwrap_or_else(|| dir.join("var/iapt-intake.db"));
    let mut limits = s.message_bytes.map(|n| format!("message_bytes = {n}\n")).unwrap_or_default();
    if s.burst {
        limits.push_str("replies_per_address_per_day = 100000\nreplies_per_hour = 100000\n");
    }
    format!(
        r#"[intake]
source = "maildir"
maildir = "{maildir}"
poll_interval = "2s"

[outbound]
transport = "file"
directory = "{replies}"
from = "{US}"
from_name = "IAPT KPI Returns"
templates = "{templates}"

[store]
path = "{store}"
blobs = "{blobs}"

[collection]
definitions = "{definitions}"
organisations = "{organisations}"

[routing]
data_collection_team = "{DCT}"
data_collection_team_name = "the IAPT Data Collection Team"
content_team = "{CONTENT}"
content_team_name = "the IAPT KPI content contacts"

[auth]
trusted_authserv_ids = ["{MX}"]
require = "{require}"

[limits]
{limits}"#,
        require = if s.unverified_welcome { "none" } else { "aligned" },
        maildir = dir.join("var/mail").display(),
        replies = dir.join("var/replies").display(),
        templates = repo.join("config/replies").display(),
        store = store.display(),
        blobs = dir.join("var/blobs").display(),
        definitions = repo.join("config/collections").display(),
        organisations = organisations.display(),
    )
}

/// The pipeline's environment, loaded the way the commands load it.
pub fn env(dir: &Path, s: &Settings) -> Env {
    let path = dir.join("iapt-intake.toml");
    let config = Config::parse(&path, &config_text(dir, s)).expect("test config is valid");
    let collections = Collections::from_files(&dir_files(&config.collection.definitions, "toml"))
        .expect("shipped collection definitions load");
    let text = std::fs::read_to_string(&config.collection.organisations).expect("registry");
    let registry = Registry::from_csv(&text).expect("registry loads");
    let templates = Templates::from_pairs(dir_files(&config.outbound.templates, "txt"))
        .expect("shipped reply templates load");
    Env::new(config, collections, registry, templates)
}

/// (file name, text) of every `*.ext` file in `dir`, sorted.
fn dir_files(dir: &Path, ext: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| {
            let name = p.file_name().expect("file name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read file"))
        })
        .collect();
    files.sort();
    files
}

/// Compares `actual` with `tests/fixtures/pipeline/<name>`. On a mismatch (or a missing file)
/// writes `<name>.actual` beside it, so a reviewer can diff, and fails.
pub fn golden(name: &str, actual: &str) {
    let path = repo().join("tests/fixtures/pipeline").join(name);
    let actual_path = path.with_file_name(format!("{name}.actual"));
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        let _ = std::fs::remove_file(&actual_path);
        return;
    }
    std::fs::write(&actual_path, actual).expect("write .actual");
    panic!(
        "reply body differs from {}; the actual text is in {}",
        path.display(),
        actual_path.display()
    );
}
