//! The mail a crash run loads: good and bad returns from several organisations, questions,
//! subject-rule mistakes, automatic mail and exact duplicates, each sent from one of the mail
//! stack's load accounts (`pNNN@load.nhs.test`) so its replies land in a mailbox of its own, and
//! each with what SPEC §4 says must come back.

use crate::pipeline::support::{Mail, ReturnBook, Val};
use std::path::Path;

/// Organisations in the crash registry; organisation `k` has one submitter, `p{k+1}`.
pub const ORGS: usize = 10;

/// What must come back for one original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Replies to the sender (acceptance, rejection, acknowledgement, guidance).
    pub sender: usize,
    /// Copies forwarded to a team mailbox (questions).
    pub team: usize,
}

#[derive(Debug, Clone)]
pub struct Original {
    /// `crash-N@load.nhs.test`
    pub message_id: String,
    pub from: String,
    pub raw: Vec<u8>,
    pub expect: Expect,
    /// The same message again (same Message-ID): filed and answered once, under the first.
    pub duplicate: bool,
}

/// The load account `n` (1-based).
pub fn load_address(n: usize) -> String {
    format!("p{n:03}@load.nhs.test")
}

/// The first `ORGS` organisations of the repository's registry, each with one load account as
/// its submitter. Returns (code, name) of each, in order.
pub fn write_registry(path: &Path) -> Vec<(String, String)> {
    let repo = crate::pipeline::support::repo();
    let mut reader = csv::Reader::from_path(repo.join("config/organisations.csv")).expect("csv");
    let mut writer = csv::Writer::from_path(path).expect("registry");
    writer.write_record(["code", "name", "aliases", "submitters"]).expect("header");
    let mut orgs = Vec::new();
    for (k, row) in reader.records().take(ORGS).enumerate() {
        let row = row.expect("registry row");
        let (code, name, aliases) = (&row[0], &row[1], &row[2]);
        writer.write_record([code, name, aliases, &load_address(k + 1)]).expect("row");
        orgs.push((code.to_string(), name.to_string()));
    }
    writer.flush().expect("flush registry");
    orgs
}

/// `n` originals in a fixed mix (in eighths: three good returns, one and a half bad ones, one
/// and a half questions, one subject-rule mistake, one automatic reply), plus `dups` exact
/// repeats of earlier good returns. Senders of guidance each send one message, as the
/// once-a-day guidance limit would otherwise (rightly) swallow their second.
pub fn build(orgs: &[(String, String)], n: usize, dups: usize) -> Vec<Original> {
    let mut out: Vec<Original> = Vec::with_capacity(n + dups);
    let mut guidance_sender = 61; // p061 … one each
    for i in 0..n {
        let id = format!("crash-{i}@load.nhs.test");
        let k = i % orgs.len();
        let (code, name) = &orgs[k];
        let subject_ok = format!("IAPT KPI Q1 2011/12 {name}");
        let submitter = load_address(k + 1);
        let asker = load_address(11 + i % 50);
        let (from, mail, expect) = match i % 16 {
            0..=5 => {
                let book = ReturnBook::good(code, name);
                let mail = Mail::new(&submitter, &subject_ok, &id)
                    .xlsx(&format!("return-{i}.xlsx"), book.xlsx());
                (submitter, mail, Expect { sender: 1, team: 0 })
            }
            6..=8 => {
                // KPI6b above KPI5: IAPT-E03, rejected with a numbered error.
                let book = ReturnBook::good(code, name).set("KPI6b", Val::Num(500.0));
                let mail = Mail::new(&submitter, &subject_ok, &id)
                    .xlsx(&format!("return-{i}.xlsx"), book.xlsx());
                (submitter, mail, Expect { sender: 1, team: 0 })
            }
            9..=11 => {
                let topic = if i % 2 == 0 {
                    "how caseness is counted for recovery"
                } else {
                    "the mailbox deadline"
                };
                let mail = Mail::new(&asker, &format!("IAPT {name} question {i}"), &id)
                    .body(&format!("Hello, a question about {topic}.\n"));
                (asker, mail, Expect { sender: 1, team: 1 })
            }
            12 | 13 => {
                let sender = load_address(guidance_sender);
                guidance_sender += 1;
                let mail = Mail::new(&sender, &format!("Our quarterly figures {i}"), &id)
                    .xlsx("figures.xlsx", ReturnBook::good(code, name).xlsx());
                (sender, mail, Expect { sender: 1, team: 0 })
            }
            _ => {
                let mail = Mail::new(&asker, &format!("Out of office: IAPT {name}"), &id)
                    .header("Auto-Submitted", "auto-replied")
                    .body("I am away until Monday.\n");
                (asker, mail, Expect { sender: 0, team: 0 })
            }
        };
        out.push(Original { message_id: id, from, raw: mail.bytes(), expect, duplicate: false });
    }
    let goods: Vec<usize> = (0..out.len()).filter(|&i| i % 16 <= 5).collect();
    for d in 0..dups {
        let mut again = out[goods[(d * 7) % goods.len()]].clone();
        again.duplicate = true;
        out.push(again);
    }
    assert!(guidance_sender <= 201, "more guidance senders than load accounts");
    out
}
