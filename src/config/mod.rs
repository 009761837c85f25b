//! Configuration: the raw TOML (`raw`) is read, then checked in one pass that reports EVERY problem
//! by its key before anything connects (STYLE habit 4). Secrets are read from an environment
//! variable or a file, never inline, and print as `***`.
//!
//! Relative paths are taken relative to the working directory of the process (the repository for
//! the embedded default; the systemd unit's `WorkingDirectory` in production).

mod auth;
mod classify;
mod mail;
mod raw;
mod secret;

pub use classify::{
    Classify, DEFAULT_AUTOMATIC_SENDERS, DEFAULT_AUTOMATIC_SUBJECTS, DEFAULT_BOUNCE_SUBJECTS,
};
pub use mail::{check_folder_name, SmtpSteps};
pub use secret::Secret;

use crate::workbook::Limits;
use raw::RawConfig;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default: local Maildir in, reply files out, SQLite store.
pub const DEFAULT_PATH: &str = "config/iapt-intake.toml";

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub intake: Intake,
    pub outbound: Outbound,
    pub store: StoreConfig,
    pub collection: CollectionConfig,
    pub routing: Routing,
    pub limits: LimitsConfig,
    pub classify: Classify,
    /// `[auth]`: sender verification (SPEC §4a).
    pub auth: crate::auth::AuthSettings,
}

#[derive(Debug, Clone)]
pub struct Intake {
    pub source: Source,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum Source {
    Maildir(PathBuf),
    Imap(Imap),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Implicit,
    StartTls,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Plain,
    XOAuth2,
}

/// Where a password or token comes from.
#[derive(Debug, Clone)]
pub enum Credential {
    Password(SecretSource),
    /// A command printing a fresh OAuth2 access token (XOAUTH2).
    TokenCommand(String),
}

#[derive(Debug, Clone)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Imap {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub auth: Auth,
    pub credential: Credential,
    pub folder: String,
    pub processed_folder: String,
    pub idle: bool,
    /// Extra CA certificate (PEM) to trust besides the system roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Limit on every IMAP command; a silent connection is dropped and reopened.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub auth: Auth,
    pub credential: Option<Credential>,
    /// Extra CA certificate (PEM) to trust besides the system roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Limit on connecting, TLS and each command outside a mail transaction (EHLO, AUTH, NOOP).
    pub timeout: Duration,
    /// Limits on each step of a mail transaction (RFC 5321 §4.5.3.2).
    pub steps: SmtpSteps,
    /// The name given in EHLO; `None`: this host's name when fully qualified, else the address
    /// literal of our end of the connection (RFC 5321 §4.1.4).
    pub helo_name: Option<String>,
    /// Connections to the relay, and so replies in flight at once (1–4).
    pub connections: u32,
}

// Built once at start and never moved in bulk: the size of the SMTP variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Transport {
    File(PathBuf),
    Sendmail(String),
    Smtp(Smtp),
}

#[derive(Debug, Clone)]
pub struct Outbound {
    pub transport: Transport,
    /// The address every reply comes from, and the mailbox's own address.
    pub from: String,
    pub from_name: String,
    /// Directory of the reply templates (editable without rebuilding).
    pub templates: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub blobs: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CollectionConfig {
    pub definitions: PathBuf,
    pub organisations: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Routing {
    pub data_collection_team: String,
    pub data_collection_team_name: String,
    pub content_team: String,
    pub content_team_name: String,
    pub technical_keywords: Vec<String>,
    pub content_keywords: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct LimitsConfig {
    pub message_bytes: u64,
    pub workbook: Limits,
    pub attachment_timeout: Duration,
    /// Automatic replies to one address (lower-cased, `+tag` removed) per UTC day (SPEC §4b).
    pub replies_per_address_per_day: u32,
    /// Subject-line guidance replies to one address per UTC day.
    pub guidance_per_address_per_day: u32,
    /// Automatic mail of every kind from the mailbox in any hour.
    pub replies_per_hour: u32,
}

/// One problem in the config, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Everything wrong with a config file at once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config {path} has {} problem(s):\n{}", problems.len(), ProblemList(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            writeln!(f, "  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Read and validate the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(path, &text)
    }

    /// Validate config text; `path` is used only in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut v = Validator::default();
        let config = v.config(path, raw);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { path: path.to_path_buf(), problems: v.problems })
        }
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

mod validate;

pub use validate::{DEFAULT_CONTENT, DEFAULT_TECHNICAL};
