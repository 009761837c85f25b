//! The config file exactly as written (SPEC §7): serde types that reject unknown keys. Nothing
//! here is trusted; `super::validate` turns it into a `Config`, reporting every problem by key.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub intake: RawIntake,
    pub imap: Option<RawImap>,
    #[serde(default)]
    pub outbound: RawOutbound,
    pub smtp: Option<RawSmtp>,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub collection: RawCollection,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub classify: RawClassify,
    // [auth] (issue 11, sender verification)
    #[serde(default)]
    pub auth: RawAuth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntake {
    pub source: Option<String>,
    pub maildir: Option<String>,
    pub poll_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImap {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub auth: Option<String>,
    pub oauth2_token_command: Option<String>,
    pub folder: Option<String>,
    pub processed_folder: Option<String>,
    pub idle: Option<bool>,
    pub ca_file: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    pub transport: Option<String>,
    pub directory: Option<String>,
    pub sendmail_command: Option<String>,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub templates: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub auth: Option<String>,
    pub oauth2_token_command: Option<String>,
    pub ca_file: Option<String>,
    pub timeout: Option<String>,
    // The steps of a mail transaction (RFC 5321 §4.5.3.2) and our EHLO name: see `super::mail`.
    pub greeting_timeout: Option<String>,
    pub mail_timeout: Option<String>,
    pub rcpt_timeout: Option<String>,
    pub data_timeout: Option<String>,
    pub block_timeout: Option<String>,
    pub data_end_timeout: Option<String>,
    pub helo_name: Option<String>,
    pub connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<String>,
    pub blobs: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollection {
    pub definitions: Option<String>,
    pub organisations: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub data_collection_team: Option<String>,
    pub data_collection_team_name: Option<String>,
    pub content_team: Option<String>,
    pub content_team_name: Option<String>,
    pub technical_keywords: Option<Vec<String>>,
    pub content_keywords: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub message_bytes: Option<u64>,
    pub attachment_bytes: Option<u64>,
    pub unpacked_bytes: Option<u64>,
    pub cells_per_sheet: Option<u64>,
    pub text_bytes: Option<u64>,
    pub attachment_timeout: Option<String>,
    pub replies_per_address_per_day: Option<u64>,
    pub guidance_per_address_per_day: Option<u64>,
    pub replies_per_hour: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassify {
    pub automatic_subjects: Option<Vec<String>>,
    pub bounce_subjects: Option<Vec<String>>,
    pub automatic_senders: Option<Vec<String>>,
}

/// `[auth]`: who may be believed to have sent a message (SPEC §4a).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub require: Option<String>,
    pub alignment: Option<String>,
    pub trusted_authserv_ids: Option<Vec<String>>,
    pub verify_dkim: Option<bool>,
    pub dns: Option<String>,
    pub shared_domains: Option<Vec<String>>,
}
