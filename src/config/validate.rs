//! The one validation pass from raw to checked config. Each check pushes a problem named by key
//! and carries on with a placeholder, so the user sees every problem in one run.

use super::raw::*;
use super::*;

/// `[routing] technical_keywords` when the config gives none.
pub const DEFAULT_TECHNICAL: &[&str] = &[
    "submit",
    "submission",
    "upload",
    "attach",
    "attachment",
    "file",
    "spreadsheet",
    "template",
    "xlsx",
    "excel",
    "mailbox",
    "email",
    "deadline",
    "late",
    "extension",
    "access",
    "password",
    "receipt",
    "error",
    "rejected",
    "bounce",
    "resubmit",
];
/// `[routing] content_keywords` when the config gives none.
pub const DEFAULT_CONTENT: &[&str] = &[
    "definition",
    "define",
    "count",
    "counted",
    "caseness",
    "recovery",
    "recovered",
    "kpi",
    "measure",
    "guidance",
    "prevalence",
    "referral",
    "referred",
    "treatment",
    "completed",
    "waiting",
    "28 days",
    "benefits",
    "sick pay",
    "psychiatric morbidity",
    "wording",
];

impl Validator {
    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem { key: key.to_string(), message: message.into() });
    }

    fn required(&mut self, key: &str, value: Option<String>) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => {
                self.problem(key, "is required");
                String::new()
            }
        }
    }

    fn address(&mut self, key: &str, value: Option<String>, default: &str) -> String {
        let v = value.unwrap_or_else(|| default.to_string()).trim().to_string();
        let ok = v.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !v.contains(char::is_whitespace);
        if !ok {
            self.problem(key, format!("'{v}' is not an email address"));
        }
        v
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<String>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(v) => match humantime::parse_duration(v.trim()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.problem(key, "must be longer than zero");
                    default
                }
                Err(e) => {
                    self.problem(key, format!("'{v}' is not a duration such as \"30s\" ({e})"));
                    default
                }
            },
        }
    }

    fn tls(&mut self, key: &str, value: Option<String>, default: Tls) -> Tls {
        match value.as_deref().map(str::trim) {
            None => default,
            Some("implicit") => Tls::Implicit,
            Some("starttls") => Tls::StartTls,
            Some("none") => Tls::None,
            Some(other) => {
                self.problem(key, format!("'{other}' is not one of implicit, starttls, none"));
                default
            }
        }
    }

    fn auth(&mut self, key: &str, value: Option<String>) -> Auth {
        match value.as_deref().map(str::trim) {
            None | Some("plain") => Auth::Plain,
            Some("xoauth2") => Auth::XOAuth2,
            Some(other) => {
                self.problem(key, format!("'{other}' is not one of plain, xoauth2"));
                Auth::Plain
            }
        }
    }

    /// Exactly one credential source for the chosen auth; secrets are never inline.
    fn credential(
        &mut self,
        section: &str,
        auth: Auth,
        env: Option<String>,
        file: Option<String>,
        command: Option<String>,
    ) -> Option<Credential> {
        match (auth, env, file, command) {
            (Auth::XOAuth2, None, None, Some(c)) if !c.trim().is_empty() => {
                Some(Credential::TokenCommand(c))
            }
            (Auth::XOAuth2, ..) => {
                self.problem(
                    &format!("{section}.oauth2_token_command"),
                    "auth = \"xoauth2\" needs oauth2_token_command (and no password_env/password_file)",
                );
                None
            }
            (Auth::Plain, _, _, Some(_)) => {
                self.problem(
                    &format!("{section}.oauth2_token_command"),
                    "is only used with auth = \"xoauth2\"",
                );
                None
            }
            (Auth::Plain, Some(_), Some(_), None) => {
                self.problem(
                    &format!("{section}.password_env"),
                    "give password_env or password_file, not both",
                );
                None
            }
            (Auth::Plain, Some(e), None, None) => Some(Credential::Password(SecretSource::Env(e))),
            (Auth::Plain, None, Some(f), None) => {
                Some(Credential::Password(SecretSource::File(PathBuf::from(f))))
            }
            (Auth::Plain, None, None, None) => None,
        }
    }

    pub(super) fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let intake = self.intake(raw.intake, raw.imap);
        let outbound = self.outbound(raw.outbound, raw.smtp);
        let store = StoreConfig {
            path: PathBuf::from(raw.store.path.unwrap_or_else(|| "var/iapt-intake.db".into())),
            blobs: PathBuf::from(raw.store.blobs.unwrap_or_else(|| "var/blobs".into())),
        };
        let collection = CollectionConfig {
            definitions: PathBuf::from(
                raw.collection.definitions.unwrap_or_else(|| "config/collections".into()),
            ),
            organisations: PathBuf::from(
                raw.collection.organisations.unwrap_or_else(|| "config/organisations.csv".into()),
            ),
        };
        let routing = self.routing(raw.routing);
        let limits = self.limits(raw.limits);
        let classify = self.classify(raw.classify);
        let auth = self.auth_section(raw.auth);
        Config {
            path: path.to_path_buf(),
            intake,
            outbound,
            store,
            collection,
            routing,
            limits,
            classify,
            auth,
        }
    }

    fn intake(&mut self, raw: RawIntake, imap: Option<RawImap>) -> Intake {
        let poll_interval =
            self.duration("intake.poll_interval", raw.poll_interval, Duration::from_secs(30));
        let source = match raw.source.as_deref().map(str::trim) {
            None | Some("maildir") => {
                Source::Maildir(PathBuf::from(raw.maildir.unwrap_or_else(|| "var/mail".into())))
            }
            Some("imap") => match imap {
                Some(i) => Source::Imap(self.imap(i)),
                None => {
                    self.problem("imap", "intake.source = \"imap\" needs an [imap] section");
                    Source::Maildir(PathBuf::new())
                }
            },
            Some(other) => {
                self.problem("intake.source", format!("'{other}' is not one of maildir, imap"));
                Source::Maildir(PathBuf::new())
            }
        };
        Intake { source, poll_interval }
    }

    fn imap(&mut self, raw: RawImap) -> Imap {
        let tls = self.tls("imap.tls", raw.tls, Tls::Implicit);
        let auth = self.auth("imap.auth", raw.auth);
        let credential = self.credential(
            "imap",
            auth,
            raw.password_env,
            raw.password_file,
            raw.oauth2_token_command,
        );
        if credential.is_none() && auth == Auth::Plain {
            self.problem("imap.password_env", "IMAP needs password_env or password_file");
        }
        let folder = self.folder("imap.folder", raw.folder, "INBOX");
        let processed_folder =
            self.folder("imap.processed_folder", raw.processed_folder, "Processed");
        self.distinct_folders(&folder, &processed_folder);
        Imap {
            host: self.required("imap.host", raw.host),
            port: raw.port.unwrap_or(if tls == Tls::Implicit { 993 } else { 143 }),
            tls,
            username: self.required("imap.username", raw.username),
            auth,
            credential: credential
                .unwrap_or_else(|| Credential::Password(SecretSource::Env(String::new()))),
            folder,
            processed_folder,
            idle: raw.idle.unwrap_or(true),
            ca_file: raw.ca_file.map(PathBuf::from),
            timeout: self.duration("imap.timeout", raw.timeout, Duration::from_secs(60)),
        }
    }

    fn outbound(&mut self, raw: RawOutbound, smtp: Option<RawSmtp>) -> Outbound {
        let transport = match raw.transport.as_deref().map(str::trim) {
            None | Some("file") => Transport::File(PathBuf::from(
                raw.directory.unwrap_or_else(|| "var/replies".into()),
            )),
            Some("sendmail") => Transport::Sendmail(
                raw.sendmail_command.unwrap_or_else(|| "/usr/sbin/sendmail".into()),
            ),
            Some("smtp") => match smtp {
                Some(s) => Transport::Smtp(self.smtp(s)),
                None => {
                    self.problem("smtp", "outbound.transport = \"smtp\" needs an [smtp] section");
                    Transport::File(PathBuf::new())
                }
            },
            Some(other) => {
                self.problem(
                    "outbound.transport",
                    format!("'{other}' is not one of file, sendmail, smtp"),
                );
                Transport::File(PathBuf::new())
            }
        };
        Outbound {
            transport,
            from: self.address("outbound.from", raw.from, "iapt.returns@example.nhs.test"),
            from_name: raw.from_name.unwrap_or_else(|| "IAPT KPI Returns".into()),
            templates: PathBuf::from(raw.templates.unwrap_or_else(|| "config/replies".into())),
        }
    }

    fn smtp(&mut self, raw: RawSmtp) -> Smtp {
        let steps = self.smtp_steps(&raw);
        let helo_name = self.helo_name(raw.helo_name.clone());
        let connections = self.connections(raw.connections);
        let tls = self.tls("smtp.tls", raw.tls, Tls::StartTls);
        let auth = self.auth("smtp.auth", raw.auth);
        let credential = self.credential(
            "smtp",
            auth,
            raw.password_env,
            raw.password_file,
            raw.oauth2_token_command,
        );
        if credential.is_some() && raw.username.is_none() {
            self.problem("smtp.username", "is required when a password or token is given");
        }
        Smtp {
            host: self.required("smtp.host", raw.host),
            port: raw.port.unwrap_or(match tls {
                Tls::Implicit => 465,
                Tls::StartTls => 587,
                Tls::None => 25,
            }),
            tls,
            username: raw.username,
            auth,
            credential,
            ca_file: raw.ca_file.map(PathBuf::from),
            timeout: self.duration("smtp.timeout", raw.timeout, Duration::from_secs(30)),
            steps,
            helo_name,
            connections,
        }
    }

    fn routing(&mut self, raw: RawRouting) -> Routing {
        let words = |given: Option<Vec<String>>, default: &[&str]| -> Vec<String> {
            given
                .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
                .into_iter()
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect()
        };
        Routing {
            data_collection_team: self.address(
                "routing.data_collection_team",
                raw.data_collection_team,
                "iapt.datacollection@example.nhs.test",
            ),
            data_collection_team_name: raw
                .data_collection_team_name
                .unwrap_or_else(|| "the IAPT Data Collection Team".into()),
            content_team: self.address(
                "routing.content_team",
                raw.content_team,
                "iapt.content@example.nhs.test",
            ),
            content_team_name: raw
                .content_team_name
                .unwrap_or_else(|| "the IAPT KPI content contacts".into()),
            technical_keywords: words(raw.technical_keywords, DEFAULT_TECHNICAL),
            content_keywords: words(raw.content_keywords, DEFAULT_CONTENT),
        }
    }

    fn limits(&mut self, raw: RawLimits) -> LimitsConfig {
        let d = Limits::default();
        let mut positive = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => {
                self.problem(key, "must be greater than zero");
                default
            }
            Some(n) => n,
            None => default,
        };
        let workbook = Limits {
            attachment_bytes: positive(
                "limits.attachment_bytes",
                raw.attachment_bytes,
                d.attachment_bytes,
            ),
            unpacked_bytes: positive("limits.unpacked_bytes", raw.unpacked_bytes, d.unpacked_bytes),
            cells_per_sheet: positive(
                "limits.cells_per_sheet",
                raw.cells_per_sheet,
                d.cells_per_sheet,
            ),
            text_bytes: positive("limits.text_bytes", raw.text_bytes, d.text_bytes),
        };
        let message_bytes = positive("limits.message_bytes", raw.message_bytes, 25 * 1000 * 1000);
        let mut count = |key: &str, v: Option<u64>, default: u32| {
            u32::try_from(positive(key, v, u64::from(default))).unwrap_or(u32::MAX)
        };
        let replies_per_address_per_day =
            count("limits.replies_per_address_per_day", raw.replies_per_address_per_day, 10);
        let guidance_per_address_per_day =
            count("limits.guidance_per_address_per_day", raw.guidance_per_address_per_day, 1);
        let replies_per_hour = count("limits.replies_per_hour", raw.replies_per_hour, 300);
        LimitsConfig {
            message_bytes,
            replies_per_address_per_day,
            guidance_per_address_per_day,
            replies_per_hour,
            workbook,
            attachment_timeout: self.duration(
                "limits.attachment_timeout",
                raw.attachment_timeout,
                Duration::from_secs(10),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match Config::parse(Path::new("t.toml"), text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn empty_config_is_the_embedded_default() {
        let c = Config::parse(Path::new("t.toml"), "").expect("valid");
        assert!(matches!(c.intake.source, Source::Maildir(ref p) if p == Path::new("var/mail")));
        assert!(matches!(c.outbound.transport, Transport::File(_)));
        assert_eq!(c.intake.poll_interval, Duration::from_secs(30));
        assert_eq!(c.limits.workbook.cells_per_sheet, 1_000_000);
    }

    #[test]
    fn reports_every_problem_by_key() {
        let p = problems(
            "[intake]\nsource = \"pop3\"\npoll_interval = \"soon\"\n\
             [outbound]\nfrom = \"nobody\"\ntransport = \"smtp\"\n\
             [limits]\ncells_per_sheet = 0\n",
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "intake.poll_interval",
                "intake.source",
                "smtp",
                "outbound.from",
                "limits.cells_per_sheet"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse(Path::new("t.toml"), "[store]\npath = \"x\"\npassword = \"p\"\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("password"), "{err}");
    }

    #[test]
    fn imap_xoauth2_needs_a_token_command_and_secrets_are_never_inline() {
        let p = problems(
            "[intake]\nsource = \"imap\"\n[imap]\nhost = \"h\"\nusername = \"u\"\nauth = \"xoauth2\"\npassword_env = \"X\"\n",
        );
        assert_eq!(p[0].key, "imap.oauth2_token_command");
        let ok = Config::parse(
            Path::new("t.toml"),
            "[intake]\nsource = \"imap\"\n[imap]\nhost = \"h\"\nusername = \"u\"\nauth = \"xoauth2\"\noauth2_token_command = \"get-token\"\n",
        )
        .expect("valid");
        let Source::Imap(imap) = ok.intake.source else { panic!("imap") };
        assert!(matches!(imap.credential, Credential::TokenCommand(ref c) if c == "get-token"));
        assert_eq!(imap.port, 993);
    }
}

#[cfg(test)]
mod shipped {
    use super::super::*;

    #[test]
    fn the_shipped_default_config_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/iapt-intake.toml"));
        let c = Config::load(path).expect("shipped config is valid");
        assert_eq!(c.outbound.from, "iapt.returns@example.nhs.test");
        assert!(
            matches!(c.outbound.transport, Transport::File(ref d) if d == Path::new("var/replies"))
        );
    }
}
