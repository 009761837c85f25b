//! The mail keys checked here rather than in `validate`: IMAP folder names (written as a mail
//! client shows them, sent in modified UTF-7) and the SMTP transaction's step limits and EHLO
//! name. Kept apart so the checks of one protocol read together.

use super::raw::RawSmtp;
use super::Validator;
use std::time::Duration;

/// Limits on each step of an SMTP mail transaction. The defaults are RFC 5321 §4.5.3.2's
/// minimums: a relay that answers slowly is waited for, never given the same reply twice for
/// answering late — above all after the end of the data, when it may already have taken the
/// message ("a spurious timeout at this point would be very wasteful and would typically result
/// in delivery of multiple copies of the message").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpSteps {
    /// The relay's 220 greeting (§4.5.3.2.1: 5 minutes).
    pub greeting: Duration,
    /// The answer to MAIL FROM (§4.5.3.2.2: 5 minutes).
    pub mail: Duration,
    /// The answer to each RCPT TO (§4.5.3.2.3: 5 minutes).
    pub rcpt: Duration,
    /// The 354 answer to DATA (§4.5.3.2.4: 2 minutes).
    pub data: Duration,
    /// Each block of message data written (§4.5.3.2.5: 3 minutes).
    pub block: Duration,
    /// The answer to the end of the data, `.` or `BDAT … LAST` (§4.5.3.2.6: 10 minutes).
    pub data_end: Duration,
}

impl Default for SmtpSteps {
    fn default() -> SmtpSteps {
        let min = |m: u64| Duration::from_secs(m * 60);
        SmtpSteps {
            greeting: min(5),
            mail: min(5),
            rcpt: min(5),
            data: min(2),
            block: min(3),
            data_end: min(10),
        }
    }
}

/// Why a folder name cannot be used, or `None`. Names are written as a mail client shows them
/// (UTF-8, e.g. "Verarbeitet/Rückläufer") and sent in modified UTF-7 (RFC 3501 §5.1.3), so any
/// text can be one; what is refused is what IMAP cannot carry in a name or would read as
/// something else.
pub fn check_folder_name(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("must not be empty")
    } else if name.trim() != name {
        Some("must not start or end with a space")
    } else if name.chars().any(char::is_control) {
        Some("must not hold control characters")
    } else if name.contains(['*', '%']) {
        Some("must not hold * or %, which IMAP reads as wildcards")
    } else {
        None
    }
}

impl Validator {
    pub(super) fn folder(&mut self, key: &str, value: Option<String>, default: &str) -> String {
        let name = value.unwrap_or_else(|| default.to_string());
        if let Some(why) = check_folder_name(&name) {
            self.problem(key, format!("{name:?} {why}"));
        }
        name
    }

    /// The processed folder must differ from the one watched, or nothing would ever leave it.
    /// INBOX is one name in any case (RFC 3501 §5.1).
    pub(super) fn distinct_folders(&mut self, folder: &str, processed: &str) {
        let inbox = |n: &str| n.eq_ignore_ascii_case("INBOX");
        if folder == processed || (inbox(folder) && inbox(processed)) {
            self.problem(
                "imap.processed_folder",
                format!("{processed:?} is the folder watched (imap.folder): messages would never leave it"),
            );
        }
    }

    pub(super) fn smtp_steps(&mut self, raw: &RawSmtp) -> SmtpSteps {
        let d = SmtpSteps::default();
        let mut step = |key: &str, value: &Option<String>, default: Duration| {
            self.duration(&format!("smtp.{key}"), value.clone(), default)
        };
        SmtpSteps {
            greeting: step("greeting_timeout", &raw.greeting_timeout, d.greeting),
            mail: step("mail_timeout", &raw.mail_timeout, d.mail),
            rcpt: step("rcpt_timeout", &raw.rcpt_timeout, d.rcpt),
            data: step("data_timeout", &raw.data_timeout, d.data),
            block: step("block_timeout", &raw.block_timeout, d.block),
            data_end: step("data_end_timeout", &raw.data_end_timeout, d.data_end),
        }
    }

    /// At most four replies in flight (SPEC §5); Microsoft 365 takes three at once from one
    /// mailbox (`432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded` past that).
    pub(super) fn connections(&mut self, value: Option<u32>) -> u32 {
        match value {
            None => 4,
            Some(n @ 1..=4) => n,
            Some(n) => {
                self.problem("smtp.connections", format!("{n} is not between 1 and 4"));
                4
            }
        }
    }

    /// A host name for EHLO: letters, digits, hyphens and dots, with at least one dot (a fully
    /// qualified name, RFC 5321 §4.1.1.1), or an address literal such as `[192.0.2.1]`.
    pub(super) fn helo_name(&mut self, value: Option<String>) -> Option<String> {
        let name = value?.trim().to_string();
        let literal = name.starts_with('[') && name.ends_with(']') && name.len() > 2;
        let fqdn = name.contains('.')
            && !name.starts_with('.')
            && !name.ends_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if literal || fqdn {
            Some(name)
        } else {
            self.problem(
                "smtp.helo_name",
                format!("{name:?} is not a fully qualified host name (mail.example.nhs.uk) or an address literal ([192.0.2.1])"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match Config::parse(Path::new("t.toml"), text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Ok(_) => Vec::new(),
            Err(other) => panic!("{other}"),
        }
    }

    const IMAP: &str = "[intake]\nsource = \"imap\"\n[imap]\nhost = \"h\"\nusername = \"u\"\n\
                        password_env = \"P\"\n";

    #[test]
    fn folder_names_in_any_script_are_fine_but_wildcards_controls_and_the_same_folder_are_not() {
        let ok =
            format!("{IMAP}folder = \"Eingang/Rückläufer\"\nprocessed_folder = \"Обработано\"\n");
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
        for (line, key) in [
            ("processed_folder = \"Done*\"", "imap.processed_folder"),
            ("processed_folder = \"a%b\"", "imap.processed_folder"),
            ("processed_folder = \"\"", "imap.processed_folder"),
            ("folder = \"In\\tbox\"", "imap.folder"),
            ("processed_folder = \"inbox\"", "imap.processed_folder"),
            ("folder = \"Returns\"\nprocessed_folder = \"Returns\"", "imap.processed_folder"),
        ] {
            let p = problems(&format!("{IMAP}{line}\n"));
            assert_eq!(p.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), [key], "{line}");
        }
    }

    #[test]
    fn smtp_step_limits_default_to_rfc_5321_and_each_can_be_set() {
        let base = "[outbound]\ntransport = \"smtp\"\n[smtp]\nhost = \"relay.test\"\n";
        let c = Config::parse(Path::new("t.toml"), base).expect("valid");
        let Transport::Smtp(smtp) = c.outbound.transport else { panic!("smtp") };
        assert_eq!(smtp.steps.data_end, Duration::from_secs(600));
        assert_eq!(smtp.steps.greeting, Duration::from_secs(300));
        assert_eq!(smtp.steps.data, Duration::from_secs(120));
        assert_eq!(smtp.helo_name, None);
        let text = format!("{base}data_end_timeout = \"20s\"\nrcpt_timeout = \"1m\"\nhelo_name = \"iapt.example.nhs.uk\"\n");
        let c = Config::parse(Path::new("t.toml"), &text).expect("valid");
        let Transport::Smtp(smtp) = c.outbound.transport else { panic!("smtp") };
        assert_eq!(smtp.steps.data_end, Duration::from_secs(20));
        assert_eq!(smtp.steps.rcpt, Duration::from_secs(60));
        assert_eq!(smtp.helo_name.as_deref(), Some("iapt.example.nhs.uk"));
        assert_eq!(smtp.connections, 4);
        let p = problems(&format!(
            "{base}mail_timeout = \"soon\"\nhelo_name = \"vm\"\nconnections = 9\n"
        ));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["smtp.mail_timeout", "smtp.helo_name", "smtp.connections"]);
    }
}
