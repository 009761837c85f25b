//! The daemon binary as a child process, as the crash, fault and end-to-end tests run it:
//! `iapt-intake run`, its stdout and stderr appended to a log file that outlives it (so a test
//! can read what every incarnation said), stopped with SIGTERM or SIGKILL, and killed on drop
//! if a test fails before stopping it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_iapt-intake");

/// How long a SIGTERMed daemon may take to exit before it counts as hung.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// One `iapt-intake run` process.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// `iapt-intake run --config <config>`, at the fixed moment `now` or on the real clock
    /// (`None`), logging at `info` to `log` (appended).
    pub fn spawn(config: &Path, log: &Path, now: Option<&str>) -> Daemon {
        let out = File::options().create(true).append(true).open(log).expect("daemon log");
        let err = out.try_clone().expect("log handle");
        let mut cmd = Command::new(BIN);
        cmd.arg("run");
        if let Some(now) = now {
            cmd.args(["--now", now]);
        }
        let child = cmd
            .arg("--config")
            .arg(config)
            .env("IAPT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the daemon starts");
        Daemon { child, log: log.to_path_buf() }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no warning, then reap it.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM and wait up to 10 s for it to exit; its exit status, or `None` if it was still
    /// running (it is then killed).
    pub fn stop(mut self) -> Option<ExitStatus> {
        let sent = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        assert!(sent.expect("kill").success());
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// [`Daemon::stop`] for a daemon that must exit: its status, how long it took from the
    /// SIGTERM, and its log. Panics if it did not exit within 10 s.
    pub fn stop_and_log(self) -> (ExitStatus, Duration, String) {
        let asked = Instant::now();
        let log = self.log.clone();
        let Some(status) = self.stop() else {
            panic!("no exit within {STOP_LIMIT:?} of SIGTERM:\n{}", log_text(&log));
        };
        (status, asked.elapsed(), log_text(&log))
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_some()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's log so far.
pub fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}
