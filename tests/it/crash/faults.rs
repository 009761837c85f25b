//! Store faults under the running daemon (issue 5): the filesystem holding the database and the
//! blobs fills up, then the blob directory becomes unwritable. Each time the daemon must stop taking mail and say why,
//! leave the messages in the inbox, keep running, and file them once the store can take them.
//!
//! The store lives on a 4 MB tmpfs mounted for the test (root, as CI runs; `chmod` does not stop
//! root writing), filled with a filler file; then the blob directory is replaced by a plain
//! file (a read-only remount is refused while the database is open for writing).

use super::{assert_store_consistent, log_text, wait_until, Daemon, StoreView, NOW};
use crate::pipeline::support::{self, reply_of, Mail, ReturnBook, Settings, ANN};
use iapt_intake::mailbox::Maildir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A small tmpfs, unmounted on drop (after the daemon using it has been dropped).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> SmallDisk {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        SmallDisk(at.to_path_buf())
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn deliver(mailbox: &Maildir, from: usize, to: usize) {
    for i in from..to {
        let mail = Mail::new(ANN, "IAPT KPI Q1 2011/12 Leeds PCT", &format!("fault-{i}@leeds"))
            .xlsx("leeds.xlsx", ReturnBook::leeds().xlsx());
        mailbox.deliver(&mail.bytes()).expect("delivered");
    }
}

/// Whether the log names the cause in any of the ways the OS or SQLite put it.
fn mentions(log: &str, causes: &[&str]) -> bool {
    let log = log.to_lowercase();
    causes.iter().any(|c| log.contains(c))
}

fn waiting(mailbox: &Maildir) -> usize {
    std::fs::read_dir(mailbox.root().join("new")).expect("new/").count()
}

fn replies(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter(|p| reply_of(&std::fs::read(p).expect("reply")).in_reply_to.is_some())
        .count()
}

#[test]
fn a_full_disk_then_an_unwritable_store_leave_mail_in_the_inbox_say_why_and_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("store"));
    let db = disk.0.join("iapt-intake.db");
    let settings = Settings { store_path: Some(db.clone()), ..Settings::default() };
    let text = support::config_text(dir.path(), &settings).replace(
        &dir.path().join("var/blobs").display().to_string(),
        &disk.0.join("blobs").display().to_string(),
    );
    let config = dir.path().join("iapt-intake.toml");
    std::fs::write(&config, text).expect("config");
    let mailbox = Maildir::open(dir.path().join("var/mail")).expect("maildir");
    let reply_dir = dir.path().join("var/replies");
    let log = dir.path().join("daemon.log");
    // The file exists a moment before the daemon has made its tables; wait for those too.
    let ready = |db: &Path| {
        db.exists()
            && StoreView::open(db).count(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'",
            ) == 1
    };
    let filed = |n: i64| {
        wait_until(Duration::from_secs(60), || ready(&db) && StoreView::open(&db).messages() == n)
    };

    let mut daemon = Daemon::spawn(&config, &log, Some(NOW));
    deliver(&mailbox, 0, 3);
    assert!(filed(3), "baseline not filed:\n{}", log_text(&log));

    // Disk full.
    let filler = disk.fill();
    let before = log_text(&log).len();
    deliver(&mailbox, 3, 8);
    std::thread::sleep(Duration::from_secs(6));
    let said = log_text(&log)[before..].to_string();
    assert_eq!(waiting(&mailbox), 5, "left in the inbox while the disk is full:\n{said}");
    assert_eq!(StoreView::open(&db).messages(), 3);
    assert!(!daemon.exited(), "the daemon gave up:\n{said}");
    assert!(
        said.contains("left in the inbox") && mentions(&said, &["no space left", "disk is full"]),
        "the log does not say why:\n{said}"
    );
    let complaints = said.lines().filter(|l| l.contains("left in the inbox")).count();
    std::fs::remove_file(&filler).expect("free the disk");
    assert!(filed(8), "not resumed after the disk was freed:\n{}", log_text(&log));

    // Unwritable: the blob directory replaced by a file. (A read-only remount is refused while
    // the daemon holds the database open for writing — "mount point is busy" — so this is how
    // the store is made unwritable under a running daemon.)
    let blobs = disk.0.join("blobs");
    let aside = disk.0.join("blobs.aside");
    std::fs::rename(&blobs, &aside).expect("move the blobs aside");
    std::fs::write(&blobs, b"not a directory").expect("a file in its place");
    let before = log_text(&log).len();
    deliver(&mailbox, 8, 11);
    std::thread::sleep(Duration::from_secs(6));
    let said = log_text(&log)[before..].to_string();
    assert_eq!(waiting(&mailbox), 3, "left in the inbox while unwritable:\n{said}");
    assert!(!daemon.exited(), "the daemon gave up:\n{said}");
    assert!(
        said.contains("left in the inbox") && mentions(&said, &["not a directory"]),
        "the log does not say why:\n{said}"
    );
    std::fs::remove_file(&blobs).expect("remove the file");
    std::fs::rename(&aside, &blobs).expect("blobs back");
    assert!(filed(11), "not resumed once writable:\n{}", log_text(&log));
    assert!(
        wait_until(Duration::from_secs(20), || waiting(&mailbox) == 0 && replies(&reply_dir) == 11)
    );

    let stopped = daemon.stop();
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    assert_store_consistent(&db, &disk.0.join("blobs"));
    println!("faults: {complaints} log lines about the full disk in 6 s (a retry a second)");
}
