//! The daemon's config for tests on the project's real mail stack: IMAP in with STARTTLS and
//! IDLE as the intake account, verified against the stack's CA; the repository's definitions and
//! templates; the stack's team mailboxes. Each test chooses only what it needs to differ.

use super::repo;
use crate::mailstack::MailStack;
use std::path::{Path, PathBuf};

/// Where replies go.
pub enum Replies {
    /// Through the stack's Postfix (STARTTLS, login as the intake account).
    Smtp,
    /// Written as files into `<dir>/replies`.
    Files,
}

/// What differs between the tests; everything else is common.
pub struct StackConfig<'a> {
    pub poll_interval: &'a str,
    pub imap_timeout: &'a str,
    pub replies: Replies,
    /// Directory holding `intake.db` and `blobs/`.
    pub store: &'a Path,
    pub registry: &'a Path,
}

/// Writes `<dir>/iapt-intake.toml` and returns its path.
pub fn write_stack_config(stack: &MailStack, dir: &Path, c: &StackConfig<'_>) -> PathBuf {
    let root = repo();
    let intake = stack.account("INTAKE").expect("intake account");
    let dct = stack.account("DCT").expect("dct account");
    let content = stack.account("CONTENT").expect("content account");
    let (ca, user, pw) = (stack.ca.display(), &intake.address, intake.password_file.display());
    let outbound = match c.replies {
        Replies::Smtp => format!(
            "transport = \"smtp\"\n\n[smtp]\nhost = \"localhost\"\nport = {port}\n\
             tls = \"starttls\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n\
             ca_file = \"{ca}\"\ntimeout = \"10s\"\n",
            port = stack.smtp_port
        ),
        Replies::Files => {
            format!("transport = \"file\"\ndirectory = \"{}/replies\"\n", dir.display())
        }
    };
    // `[outbound] transport` comes last in its section, so the `[smtp]` section can follow it.
    let text = format!(
        r#"[intake]
source = "imap"
poll_interval = "{poll}"

[imap]
host = "localhost"
port = {imap}
tls = "starttls"
ca_file = "{ca}"
username = "{user}"
password_file = "{pw}"
folder = "INBOX"
processed_folder = "Processed"
idle = true
timeout = "{imap_timeout}"

[store]
path = "{store}/intake.db"
blobs = "{store}/blobs"

[collection]
definitions = "{root}/config/collections"
organisations = "{registry}"

[routing]
data_collection_team = "{dct}"
content_team = "{content}"

# These tests file bursts of hundreds from a few test accounts: the load is the point, and the
# limits of SPEC 4b have tests of their own (`attacks`).
[limits]
replies_per_address_per_day = 100000
replies_per_hour = 100000

# The stack's SMTP port takes mail only from its own logged-in accounts: a relay that admits
# only the providers (SPEC 4a's case for "none"). Verification is tested on the stack's
# signing submission port (`auth`, `dkim` tests).
[auth]
require = "none"

[outbound]
from = "{user}"
from_name = "IAPT KPI Returns"
templates = "{root}/config/replies"
{outbound}"#,
        poll = c.poll_interval,
        imap = stack.imap_port,
        imap_timeout = c.imap_timeout,
        store = c.store.display(),
        root = root.display(),
        registry = c.registry.display(),
        dct = dct.address,
        content = content.address,
    );
    let path = dir.join("iapt-intake.toml");
    std::fs::write(&path, text).expect("write config");
    path
}
