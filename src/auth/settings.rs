//! `[auth]` as the rest of the program sees it (SPEC §4a, §7), and what "aligned" means.
//! PURE: the organisational domain comes from the public suffix list compiled into `psl`.

use serde::Serialize;
use std::net::SocketAddr;

/// `[auth] shared_domains` when the config gives none: domains many organisations (or anyone)
/// send from, so a registry entry `@domain` for them would admit strangers (SPEC §4a).
pub const DEFAULT_SHARED_DOMAINS: &[&str] = &[
    "nhs.net",
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "hotmail.co.uk",
    "live.com",
    "live.co.uk",
    "msn.com",
    "yahoo.com",
    "yahoo.co.uk",
    "ymail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "aol.co.uk",
    "btinternet.com",
    "sky.com",
    "talktalk.net",
    "virginmedia.com",
    "protonmail.com",
    "proton.me",
    "gmx.com",
    "gmx.co.uk",
    "mail.com",
    "zoho.com",
    "yandex.com",
];

/// `[auth] require`: what a return needs before it can be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Verified evidence aligned with the From domain (the default).
    Aligned,
    /// Nothing: for a mailbox behind a relay that admits only the providers.
    None,
}

/// `[auth] alignment`: how a signing domain must relate to the From domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Alignment {
    /// The same domain (the default): `leeds.nhs.uk` never signs for `kirklees.nhs.uk`.
    Strict,
    /// The same organisational domain (RFC 7489 §3.2); a trusted `dmarc=pass` also counts.
    Relaxed,
}

/// `[auth] dns`: where iapt-intake's own DKIM check looks up keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dns {
    /// The system resolver (`/etc/resolv.conf`).
    System,
    /// One nameserver, asked over UDP and TCP.
    Server(SocketAddr),
}

impl Dns {
    /// `"system"` or `"HOST:PORT"` with HOST an IP address (`"127.0.0.1:5353"`, `"[::1]:53"`).
    pub fn parse(s: &str) -> Result<Dns, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("system") {
            return Ok(Dns::System);
        }
        s.parse::<SocketAddr>().map(Dns::Server).map_err(|_| {
            format!("'{s}' is not \"system\" or an IP address and port such as \"10.0.0.53:53\"")
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub require: Require,
    pub alignment: Alignment,
    /// Authserv-ids of the mailbox's own receiving servers, whose Authentication-Results
    /// count; compared case-insensitively. Empty: no Authentication-Results is trusted.
    pub trusted_authserv_ids: Vec<String>,
    /// Verify DKIM signatures ourselves (mail-auth, DNS through `dns`).
    pub verify_dkim: bool,
    pub dns: Dns,
    /// Lower-cased domains that take exact addresses only in the registry.
    pub shared_domains: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            require: Require::Aligned,
            alignment: Alignment::Strict,
            trusted_authserv_ids: Vec::new(),
            verify_dkim: false,
            dns: Dns::System,
            shared_domains: DEFAULT_SHARED_DOMAINS.iter().map(|d| d.to_string()).collect(),
        }
    }
}

impl AuthSettings {
    pub fn trusts(&self, authserv_id: &str) -> bool {
        self.trusted_authserv_ids.iter().any(|t| t.trim().eq_ignore_ascii_case(authserv_id.trim()))
    }

    /// Whether a signing domain is aligned with the From domain under `alignment`.
    pub fn aligned(&self, signer: &str, from: &str) -> bool {
        aligned(self.alignment, signer, from)
    }
}

/// Lower-cased, without a trailing dot.
pub fn normalise_domain(d: &str) -> String {
    d.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Strict: equal. Relaxed: the same organisational domain (RFC 7489 §3.2), taken from the
/// public suffix list; a domain under no listed suffix (`leeds.nhs.test`) counts its last two
/// labels (`nhs.test`), as the list's default rule says.
pub fn aligned(alignment: Alignment, signer: &str, from: &str) -> bool {
    let (signer, from) = (normalise_domain(signer), normalise_domain(from));
    if signer.is_empty() || from.is_empty() {
        return false;
    }
    match alignment {
        Alignment::Strict => signer == from,
        Alignment::Relaxed => organisational_domain(&signer) == organisational_domain(&from),
    }
}

pub fn organisational_domain(domain: &str) -> String {
    psl::domain_str(domain).unwrap_or(domain).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_is_equal_and_relaxed_is_the_organisational_domain() {
        assert!(aligned(Alignment::Strict, "Leeds.NHS.test.", "leeds.nhs.test"));
        assert!(!aligned(Alignment::Strict, "bradford.nhs.test", "leeds.nhs.test"));
        assert!(!aligned(Alignment::Strict, "mail.leeds.nhs.uk", "leeds.nhs.uk"));
        // nhs.uk is on the public suffix list, so relaxed keeps its PCTs apart but lets a
        // PCT's own subdomain sign for it; under an unlisted parent they would merge.
        assert!(!aligned(Alignment::Relaxed, "kirklees.nhs.uk", "leeds.nhs.uk"));
        assert!(aligned(Alignment::Relaxed, "mail.leeds.nhs.uk", "leeds.nhs.uk"));
        assert!(aligned(Alignment::Relaxed, "bradford.nhs.test", "leeds.nhs.test"));
        assert!(aligned(Alignment::Relaxed, "mail.example.co.uk", "example.co.uk"));
        assert!(!aligned(Alignment::Relaxed, "other.co.uk", "example.co.uk"), "co.uk is a suffix");
        assert!(!aligned(Alignment::Relaxed, "", "leeds.nhs.test"));
        assert_eq!(organisational_domain("a.b.leeds.nhs.uk"), "leeds.nhs.uk");
        assert_eq!(organisational_domain("a.leeds.nhs.test"), "nhs.test");
    }

    #[test]
    fn dns_is_system_or_an_address_and_port() {
        assert_eq!(Dns::parse("system"), Ok(Dns::System));
        assert_eq!(
            Dns::parse(" 127.0.0.1:5353 "),
            Ok(Dns::Server("127.0.0.1:5353".parse().expect("addr")))
        );
        assert_eq!(Dns::parse("[::1]:53"), Ok(Dns::Server("[::1]:53".parse().expect("addr"))));
        assert!(Dns::parse("ns.example.test:53").is_err());
        assert!(Dns::parse("127.0.0.1").is_err());
    }

    #[test]
    fn trusted_ids_compare_case_insensitively() {
        let s = AuthSettings {
            trusted_authserv_ids: vec!["MX.Example.nhs.test".into()],
            ..AuthSettings::default()
        };
        assert!(s.trusts("mx.example.NHS.test"));
        assert!(!s.trusts("mx.example.nhs.test.evil.test"));
        assert!(AuthSettings::default().shared_domains.contains(&"nhs.net".to_string()));
    }
}
