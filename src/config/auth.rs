//! `[auth]` checked (SPEC §4a, §7): every problem reported by its key, like the rest of the
//! config. Kept apart from `validate.rs` so the sections of different issues merge cleanly.

use super::raw::RawAuth;
use super::Validator;
use crate::auth::{Alignment, AuthSettings, Dns, Require};

impl Validator {
    pub(super) fn auth_section(&mut self, raw: RawAuth) -> AuthSettings {
        let d = AuthSettings::default();
        let require = match raw.require.as_deref().map(str::trim) {
            None | Some("aligned") => Require::Aligned,
            Some("none") => Require::None,
            Some(other) => {
                self.problem("auth.require", format!("'{other}' is not one of aligned, none"));
                d.require
            }
        };
        let alignment = match raw.alignment.as_deref().map(str::trim) {
            None | Some("strict") => Alignment::Strict,
            Some("relaxed") => Alignment::Relaxed,
            Some(other) => {
                self.problem("auth.alignment", format!("'{other}' is not one of strict, relaxed"));
                d.alignment
            }
        };
        let mut trusted_authserv_ids = Vec::new();
        for id in raw.trusted_authserv_ids.unwrap_or_default() {
            let id = id.trim().to_string();
            if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c == ';' || c == '"') {
                self.problem(
                    "auth.trusted_authserv_ids",
                    format!("'{id}' is not an authserv-id (a host or domain name such as \"mx.example.nhs.uk\")"),
                );
            } else {
                trusted_authserv_ids.push(id);
            }
        }
        let dns = match raw.dns {
            None => Dns::System,
            Some(s) => Dns::parse(&s).unwrap_or_else(|message| {
                self.problem("auth.dns", message);
                Dns::System
            }),
        };
        let shared_domains = match raw.shared_domains {
            None => d.shared_domains,
            Some(list) => {
                let mut out = Vec::new();
                for entry in list {
                    let domain = entry.trim().trim_start_matches('@').to_ascii_lowercase();
                    if domain.contains('.')
                        && !domain.contains(|c: char| c.is_whitespace() || c == '@')
                    {
                        out.push(domain);
                    } else {
                        self.problem(
                            "auth.shared_domains",
                            format!("'{entry}' is not a domain such as \"nhs.net\""),
                        );
                    }
                }
                out
            }
        };
        AuthSettings {
            require,
            alignment,
            trusted_authserv_ids,
            verify_dkim: raw.verify_dkim.unwrap_or(false),
            dns,
            shared_domains,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::auth::{Alignment, AuthSettings, Dns, Require};

    #[test]
    fn auth_defaults_to_aligned_strict_and_trusting_nobody() {
        let c = Config::parse(Path::new("t.toml"), "").expect("valid");
        assert_eq!(c.auth, AuthSettings::default());
        assert_eq!((c.auth.require, c.auth.alignment), (Require::Aligned, Alignment::Strict));
        assert!(c.auth.trusted_authserv_ids.is_empty() && !c.auth.verify_dkim);
        assert_eq!(c.auth.dns, Dns::System);
        assert!(c.auth.shared_domains.iter().any(|d| d == "gmail.com"));
    }

    #[test]
    fn auth_keys_are_read() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[auth]\nrequire = \"none\"\nalignment = \"relaxed\"\n\
             trusted_authserv_ids = [\"mx.example.nhs.test\"]\nverify_dkim = true\n\
             dns = \"127.0.0.1:5353\"\nshared_domains = [\"@NHS.net\", \"example.test\"]\n",
        )
        .expect("valid");
        assert_eq!((c.auth.require, c.auth.alignment), (Require::None, Alignment::Relaxed));
        assert_eq!(c.auth.trusted_authserv_ids, ["mx.example.nhs.test"]);
        assert!(c.auth.verify_dkim);
        assert_eq!(c.auth.dns, Dns::Server("127.0.0.1:5353".parse().expect("addr")));
        assert_eq!(c.auth.shared_domains, ["nhs.net", "example.test"]);
    }

    #[test]
    fn every_auth_problem_is_reported_by_key() {
        let err = Config::parse(
            Path::new("t.toml"),
            "[auth]\nrequire = \"dkim\"\nalignment = \"loose\"\ntrusted_authserv_ids = [\"mx example\"]\n\
             dns = \"ns.example.test\"\nshared_domains = [\"nhs\"]\n",
        )
        .expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = err else { panic!("{err}") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "auth.require",
                "auth.alignment",
                "auth.trusted_authserv_ids",
                "auth.dns",
                "auth.shared_domains"
            ]
        );
        let unknown =
            Config::parse(Path::new("t.toml"), "[auth]\nverify = true\n").expect_err("unknown");
        assert!(unknown.to_string().contains("verify"), "{unknown}");
    }
}
