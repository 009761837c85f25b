//! The built binary as the Data Collection Team and an MTA run it (SPEC §7): `run --once` over a
//! Maildir, `ingest` from a pipe (exit 75 when the store is unusable), `status`, `export`,
//! `check` and `template`, each in a temporary directory holding its own config, mailbox,
//! replies and store, with exit codes and output checked as a script would.

use crate::pipeline::support::{
    self, reply_of, Mail, ReturnBook, Settings, Val, ANN, DCT, ON_TIME,
};
use iapt_intake::mailbox::Maildir;
use iapt_intake::store::{SqliteStore, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SUBJECT: &str = "IAPT KPI Q1 2011/12 Leeds PCT";
const BRADFORD: &str = "analyst@bradford-and-airedale.nhs.test";

/// A working directory with a config whose collection data, registry and templates are the
/// repository's (by absolute path) and whose mailbox, replies and store are its own.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Site {
    fn new() -> Site {
        Site::with(Settings::default())
    }

    fn with(settings: Settings) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("iapt-intake.toml");
        let site = Site { dir, config };
        site.configure(&settings);
        site
    }

    fn configure(&self, settings: &Settings) {
        std::fs::write(&self.config, support::config_text(self.dir.path(), settings))
            .expect("write config");
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `iapt-intake <args> --config <ours>` in the directory, with `stdin` piped in.
    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iapt-intake"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("IAPT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
        child.wait_with_output().expect("the binary finishes")
    }

    fn maildir(&self) -> Maildir {
        Maildir::open(self.path("var/mail")).expect("maildir")
    }

    /// The `.eml` reply files written, parsed, sorted by file name.
    fn reply_files(&self) -> Vec<support::Reply> {
        let mut paths = files(&self.path("var/replies"), "eml");
        paths.sort();
        paths.iter().map(|p| reply_of(&std::fs::read(p).expect("read reply"))).collect()
    }

    fn message_count(&self) -> u64 {
        let store = SqliteStore::open(self.path("var/iapt-intake.db"), self.path("var/blobs"))
            .expect("open store");
        store.message_count().expect("count")
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails with both output streams shown.
fn expect_code(out: &Output, want: i32) {
    assert_eq!(code(out), want, "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
}

fn good_mail(id: &str) -> Vec<u8> {
    Mail::new(ANN, SUBJECT, id).xlsx("leeds.xlsx", ReturnBook::leeds().xlsx()).bytes()
}

#[test]
fn run_once_answers_every_waiting_message_and_a_second_run_changes_nothing() {
    let site = Site::new();
    let maildir = site.maildir();
    let bad = ReturnBook::good("5NY", "Bradford and Airedale Teaching PCT").set("KPI5", Val::Blank);
    let messages = [
        good_mail("run-good@leeds.nhs.test"),
        Mail::new(BRADFORD, "IAPT Q1 2011/12 Bradford and Airedale", "run-bad@bradford.test")
            .xlsx("bradford.xlsx", bad.xlsx())
            .bytes(),
        Mail::new(ANN, "IAPT Leeds: upload deadline", "run-q@leeds.nhs.test")
            .body("Is there an extension to the deadline?\n")
            .bytes(),
        Mail::new(ANN, "Q1 return", "run-noiapt@leeds.nhs.test").bytes(),
        Mail::new(ANN, "Automatic reply: IAPT", "run-ooo@leeds.nhs.test")
            .header("Auto-Submitted", "auto-replied")
            .bytes(),
    ];
    for m in &messages {
        maildir.deliver(m).expect("deliver");
    }

    let out = site.run(&["run", "--once", "--now", ON_TIME], b"");
    expect_code(&out, 0);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("5 message(s) processed"), "{stdout}");
    assert!(stdout.contains("receipt IAPT-2011-12-Q1-5N1-1"), "{stdout}");
    assert_eq!(count(&site.path("var/mail/new")), 0, "every message left the inbox");
    assert_eq!(count(&site.path("var/mail/cur")), 5);

    // Acceptance, rejection, forward + acknowledgement, guidance; nothing for the autoreply.
    let replies = site.reply_files();
    let mut recipients: Vec<String> = replies.iter().map(|r| r.to.join(",")).collect();
    recipients.sort();
    assert_eq!(recipients, vec![BRADFORD, ANN, ANN, ANN, DCT]);
    let subjects: Vec<&str> = replies.iter().map(|r| r.subject.as_str()).collect();
    assert!(subjects.iter().any(|s| s.ends_with("accepted, receipt IAPT-2011-12-Q1-5N1-1")));
    assert!(subjects.iter().any(|s| s.contains("Bradford") && s.ends_with("rejected, 1 error")));
    assert_eq!(site.message_count(), 5);

    let again = site.run(&["run", "--once", "--now", "2011-07-20T10:00:00Z"], b"");
    expect_code(&again, 0);
    assert!(text(&again.stdout).contains("No new messages."), "{}", text(&again.stdout));
    assert_eq!(site.reply_files().len(), replies.len(), "no reply written twice");
    assert_eq!(site.message_count(), 5);
}

#[test]
fn ingest_files_and_answers_a_message_once() {
    let site = Site::new();
    let raw = good_mail("ingest@leeds.nhs.test");
    let out = site.run(&["ingest", "--now", ON_TIME], &raw);
    expect_code(&out, 0);
    assert!(text(&out.stdout).contains("submission: accepted IAPT-2011-12-Q1-5N1-1"));
    let replies = site.reply_files();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].to, vec![ANN]);
    assert_eq!(replies[0].in_reply_to.as_deref(), Some("ingest@leeds.nhs.test"));

    // The MTA hands the same message over again (a retry after a lost acknowledgement).
    let again = site.run(&["ingest", "--now", "2011-07-20T09:30:00Z"], &raw);
    expect_code(&again, 0);
    assert!(text(&again.stdout).starts_with("duplicate"), "{}", text(&again.stdout));
    assert_eq!(site.reply_files().len(), 1, "no second reply");
    assert_eq!(site.message_count(), 1);
}

#[test]
fn ingest_with_an_unusable_store_exits_75_and_loses_nothing() {
    let site = Site::new();
    // Tests run as root, so permissions cannot make the store unusable; a FILE where its
    // directory should be does.
    std::fs::write(site.path("afile"), b"not a directory").expect("write");
    let broken = Settings { store_path: Some(site.path("afile/db.sqlite")), ..Settings::default() };
    site.configure(&broken);
    let raw = good_mail("tempfail@leeds.nhs.test");
    let out = site.run(&["ingest", "--now", ON_TIME], &raw);
    expect_code(&out, 75);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("temporary failure"), "{stderr}");
    assert!(stderr.contains("afile"), "names the path: {stderr}");
    assert!(site.reply_files().is_empty());

    // Fixed, the MTA's retry of the same message is filed and answered.
    site.configure(&Settings::default());
    let retry = site.run(&["ingest", "--now", "2011-07-20T09:30:00Z"], &raw);
    expect_code(&retry, 0);
    assert!(text(&retry.stdout).contains("accepted"), "{}", text(&retry.stdout));
    assert_eq!(site.reply_files().len(), 1);
}

#[test]
fn status_lists_every_organisation_with_the_submitter_accepted() {
    let site = Site::new();
    expect_code(&site.run(&["ingest", "--now", ON_TIME], &good_mail("st@leeds.nhs.test")), 0);

    let out = site.run(&["status", "--period", "2011-12-Q1", "--format", "json"], b"");
    expect_code(&out, 0);
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 149, "one line per organisation in the registry");
    let leeds = rows.iter().find(|r| r["code"] == "5N1").expect("Leeds listed");
    assert_eq!(leeds["status"], "accepted");
    assert_eq!(leeds["receipt"], "IAPT-2011-12-Q1-5N1-1");
    assert!(leeds["received_at"].as_str().is_some_and(|t| t.starts_with("2011-07-20T09:00:00")));
    let others: Vec<&serde_json::Value> = rows.iter().filter(|r| r["code"] != "5N1").collect();
    assert!(others.iter().all(|r| r["status"] == "missing" && r["receipt"].is_null()));

    let table = site.run(&["status", "--period", "2011-12-Q1"], b"");
    expect_code(&table, 0);
    let stdout = text(&table.stdout);
    assert!(
        stdout.contains(
            "149 organisations: 1 accepted, 0 late, 0 rejected, 0 held, 0 unverified, 148 missing"
        ),
        "{stdout}"
    );
}

/// The repository's registry with Leeds PCT renamed to something a spreadsheet would run.
fn hostile_registry(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(support::repo().join("config/organisations.csv"))
        .expect("registry");
    let renamed =
        text.replace("5N1,Leeds PCT,", "5N1,\"=HYPERLINK(\"\"http://x.test\"\",\"\"Leeds\"\")\",");
    assert_ne!(renamed, text, "the Leeds row was found");
    let path = dir.join("organisations.csv");
    std::fs::write(&path, renamed).expect("write registry");
    path
}

#[test]
fn export_gives_the_standing_return_with_rates_and_no_cell_a_formula() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = Site::with(Settings {
        organisations: Some(hostile_registry(dir.path())),
        ..Settings::default()
    });
    expect_code(&site.run(&["ingest", "--now", ON_TIME], &good_mail("ex@leeds.nhs.test")), 0);

    let out = site.run(&["export", "--period", "2011-12-Q1"], b"");
    expect_code(&out, 0);
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> =
        reader.headers().expect("header").iter().map(str::to_string).collect();
    for col in [
        "code",
        "name",
        "receipt",
        "KPI1",
        "KPI3a",
        "KPI6b",
        "KPI7",
        "access_rate",
        "recovery_rate",
    ] {
        assert!(header.iter().any(|h| h == col), "{col} in {header:?}");
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1, "one standing return");
    let cell =
        |name: &str| rows[0][header.iter().position(|h| h == name).expect("column")].to_string();
    assert_eq!(cell("code"), "5N1");
    assert_eq!(cell("receipt"), "IAPT-2011-12-Q1-5N1-1");
    assert_eq!(cell("KPI1"), "68653");
    assert_eq!(cell("name"), "'=HYPERLINK(\"http://x.test\",\"Leeds\")");
    let access: f64 = cell("access_rate").parse().expect("a number");
    assert!((access - 700.0 / 68653.0).abs() < 1e-6, "{access}");
    for field in rows[0].iter() {
        assert!(!field.starts_with(['=', '+', '-', '@']), "{field:?} would run as a formula");
    }

    let json = site.run(&["export", "--period", "2011-12-Q1", "--format", "json"], b"");
    expect_code(&json, 0);
    let lines: Vec<serde_json::Value> =
        text(&json.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["code"], "5N1");
    assert_eq!(lines[0]["values"]["KPI4"], 700);
    assert!(lines[0]["derived"]["recovery_rate"]
        .as_f64()
        .is_some_and(|r| (r - 150.0 / 340.0).abs() < 1e-9));
}

#[test]
fn check_exit_codes_are_0_valid_1_errors_2_unusable() {
    let site = Site::new();
    std::fs::write(site.path("good.xlsx"), ReturnBook::leeds().xlsx()).expect("write");
    let bad = ReturnBook::leeds().set("KPI2", Val::Num(-5.0));
    std::fs::write(site.path("bad.xlsx"), bad.xlsx()).expect("write");

    expect_code(&site.run(&["check", "good.xlsx"], b""), 0);
    let out = site.run(&["check", "bad.xlsx", "--format", "json"], b"");
    expect_code(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["status"], "invalid");
    assert_eq!(report["findings"][0]["rule"], "IAPT-E02");
    assert_eq!(report["findings"][0]["cell"], "C12");

    let missing = site.run(&["check", "no-such-file.xlsx"], b"");
    expect_code(&missing, 2);
    assert!(text(&missing.stderr).contains("no-such-file.xlsx"));
    let garbage = site.run(&["check", "good.xlsx", "--period", "next tuesday"], b"");
    expect_code(&garbage, 2);
    assert!(text(&garbage.stderr).contains("next tuesday"), "{}", text(&garbage.stderr));
}

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let site = Site::new();
    let mut config = std::fs::read_to_string(&site.config).expect("config");
    config = config.replace("[intake]\n", "[intake]\npoll_intervall = \"5s\"\n");
    std::fs::write(&site.config, config).expect("write config");
    let out = site.run(&["status", "--period", "2011-12-Q1"], b"");
    expect_code(&out, 2);
    assert!(text(&out.stderr).contains("poll_intervall"), "{}", text(&out.stderr));
}

#[test]
fn the_blank_template_is_written_and_fails_check_for_its_blank_measures() {
    let site = Site::new();
    let out =
        site.run(&["template", "--period", "2011-12-Q1", "--org", "5N1", "-o", "f.xlsx"], b"");
    expect_code(&out, 0);
    assert!(site.path("f.xlsx").is_file());
    let check = site.run(&["check", "f.xlsx"], b"");
    expect_code(&check, 1);
    assert!(text(&check.stdout).contains("IAPT-E01"), "{}", text(&check.stdout));
}
