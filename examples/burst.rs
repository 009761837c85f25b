//! Writes N realistic submissions into a Maildir's `new/`, for the burst benchmark
//! (`bench/maildir-burst`): xlsx returns in the template's layout for organisations drawn in turn
//! from the registry, every tenth one with errors, each in its own message from a registered
//! submitter, with a distinct Message-ID.
//!
//! Usage: cargo run --release --example burst -- N MAILDIR [organisations.csv]

use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use rust_xlsxwriter::Workbook;
use std::path::PathBuf;

const KPIS: [&str; 9] = ["KPI1", "KPI2", "KPI3a", "KPI3b", "KPI4", "KPI5", "KPI6", "KPI6b", "KPI7"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).ok_or("usage: burst N MAILDIR [organisations.csv]")?.parse()?;
    let dir = PathBuf::from(args.get(2).ok_or("usage: burst N MAILDIR")?);
    let orgs_path = args.get(3).cloned().unwrap_or_else(|| "config/organisations.csv".into());
    let mut orgs = Vec::new();
    for rec in csv::Reader::from_path(&orgs_path)?.records() {
        let rec = rec?;
        let domain = rec.get(3).unwrap_or("").split(';').find_map(|s| s.strip_prefix('@'));
        if let Some(domain) = domain {
            orgs.push((rec[0].to_string(), rec[1].to_string(), domain.to_string()));
        }
    }
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for i in 0..n {
        let (code, name, domain) = &orgs[i % orgs.len()];
        let bad = i % 10 == 9;
        let xlsx = workbook(code, name, i, bad)?;
        let from: Mailbox = format!("Analyst {i} <analyst{i}@{domain}>").parse()?;
        let msg = Message::builder()
            .from(from)
            .to("IAPT KPI Returns <iapt.returns@example.nhs.test>".parse()?)
            .subject(format!("IAPT KPI Q1 2011/12 {name} ({code})"))
            .message_id(Some(format!("<burst-{i}@{domain}>")))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(format!("Our Q1 return is attached ({i}).")))
                    .singlepart(Attachment::new(format!("{code}-q1.xlsx")).body(
                        xlsx,
                        ContentType::parse(
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        )?,
                    )),
            )?;
        let file = format!("burst.{i:06}");
        std::fs::write(dir.join("tmp").join(&file), msg.formatted())?;
        std::fs::rename(dir.join("tmp").join(&file), dir.join("new").join(&file))?;
    }
    println!("wrote {n} submissions to {}", dir.join("new").display());
    Ok(())
}

/// A filled return in the template's layout; `bad` puts KPI6 above KPI5 − KPI6b and a text value.
fn workbook(
    code: &str,
    name: &str,
    i: usize,
    bad: bool,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name("Return")?;
    ws.write(0, 0, "IAPT Key Performance Indicators Quarterly Return")?;
    for (r, (label, value)) in [
        ("Organisation code", code.to_string()),
        ("Organisation name", name.to_string()),
        ("Reporting period", "Q1 2011/12".to_string()),
        ("Contact name", format!("Analyst {i}")),
    ]
    .iter()
    .enumerate()
    {
        ws.write(2 + r as u32, 0, *label)?;
        ws.write(2 + r as u32, 1, value.as_str())?;
    }
    for (c, h) in ["KPI", "Description", "Value", "Comment"].iter().enumerate() {
        ws.write(8, c as u16, *h)?;
    }
    let base = 1000 + (i % 500) as u32;
    let values = [
        base * 40,
        base,
        base / 8,
        base / 5,
        base * 3 / 2,
        base * 2 / 3,
        base / 4,
        base / 20,
        base / 50,
    ];
    for (r, (id, v)) in KPIS.iter().zip(values).enumerate() {
        let row = 9 + r as u32;
        ws.write(row, 0, *id)?;
        if bad && *id == "KPI6" {
            ws.write(row, 2, f64::from(base * 10))?;
        } else if bad && *id == "KPI2" {
            ws.write(row, 2, "about 1000")?;
        } else {
            ws.write(row, 2, f64::from(v))?;
        }
    }
    Ok(wb.save_to_buffer()?)
}
