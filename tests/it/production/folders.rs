//! Folder names as servers report them: an existing `Processed` used for `processed` on a
//! server without regard to case (Exchange), Cyrus's `INBOX.Processed` for `Inbox.Processed`,
//! and a name outside ASCII created and used on the real Dovecot in modified UTF-7.

use super::{command, stack, write_config, Intake, Out, NOW, US};
use crate::pipeline::support::fake_imap::{FakeImap, Script};
use std::path::Path;

fn once(server_port: u16, dir: &Path, processed: &str) -> String {
    let password = dir.join("imap-password");
    std::fs::write(&password, "pw\n").expect("password");
    let imap =
        Intake::Imap { port: server_port, user: US, password: &password, processed, idle: true };
    let config = write_config(dir, &imap, &Out::Files, "30s");
    let (code, out, err) = command(&config, &["run", "--once", "--now", NOW]);
    assert_eq!(code, 0, "{out}\n{err}");
    out
}

#[test]
fn on_a_server_without_regard_to_case_the_existing_folder_is_used_not_created() {
    let server =
        FakeImap::start(Script { case_insensitive: true, ..Script::default() }, &["Processed"]);
    server.deliver("INBOX", &super::plain_message("case"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = once(server.port, dir.path(), "processed");
    assert!(out.contains("1 message(s) processed, 0 left"), "{out}");
    assert_eq!(server.count("Processed"), 1);
    assert_eq!(server.folders(), ["INBOX", "Processed"], "nothing created");
    assert!(!server.commands().iter().any(|c| c.contains("CREATE")), "{:?}", server.commands());
}

#[test]
fn a_cyrus_style_inbox_hierarchy_is_matched_as_the_server_names_it() {
    let server =
        FakeImap::start(Script { delimiter: ".", ..Script::default() }, &["INBOX.Processed"]);
    server.deliver("INBOX", &super::plain_message("cyrus"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = once(server.port, dir.path(), "Inbox.Processed");
    assert!(out.contains("1 message(s) processed, 0 left"), "{out}");
    assert_eq!(server.count("INBOX.Processed"), 1);
    assert!(!server.commands().iter().any(|c| c.contains("CREATE")), "{:?}", server.commands());
}

#[test]
fn a_folder_name_outside_ascii_is_created_and_used_in_modified_utf7_on_dovecot() {
    use iapt_intake::mailbox::imap::ImapSource;
    use iapt_intake::mailbox::MailSource;
    let stack = stack("prod-utf7");
    let intake = stack.account("INTAKE").expect("intake");
    crate::imap::smtp_send(
        stack.smtp_port,
        "analyst@leeds.nhs.test",
        &intake.address,
        &super::plain_message("utf7"),
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = "Verarbeitet/Rückläufer";
    let imap = Intake::Imap {
        port: stack.imap_port,
        user: &intake.address,
        password: &intake.password_file,
        processed: folder,
        idle: true,
    };
    let config = write_config(dir.path(), &imap, &Out::Files, "30s");
    let (code, out, err) = command(&config, &["run", "--once", "--now", NOW]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 message(s) processed, 0 left"), "{out}");
    // Dovecot keeps it under the encoded name; opened by its own name it holds the message.
    let mut cfg = iapt_intake::config::Config::load(&config).expect("config");
    let iapt_intake::config::Source::Imap(imap) = &mut cfg.intake.source else { panic!("imap") };
    imap.folder = folder.into();
    imap.processed_folder = "Processed".into();
    let mut view = ImapSource::connect(imap).expect("the folder opens by its name");
    assert_eq!(view.pending().expect("listing").len(), 1);
    let on_disk = stack.dir.join("mail/example.nhs.test/intake/Maildir");
    let names: Vec<String> = std::fs::read_dir(&on_disk)
        .expect("maildir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.contains("R&APw-ckl&AOQ-ufer")), "{names:?}");
}
