//! Reads one workbook with the default limits and prints what came out, with the time taken.
//! For measuring the reader on hostile files: `/usr/bin/time -v cargo run --example read_one F`.

use std::time::Instant;

use iapt_intake::workbook::grid::Limits;
use iapt_intake::workbook::read::read;

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: read_one FILE");
        return std::process::ExitCode::from(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let result = read(&bytes, &path, &Limits::default());
    let took = started.elapsed();
    match result {
        Ok(wb) => {
            println!("{path}: {} in {took:?}", wb.format.name());
            for sheet in &wb.sheets {
                println!(
                    "  sheet '{}' visible={} cells={} merged={}",
                    sheet.name,
                    sheet.visible,
                    sheet.cells.len(),
                    sheet.merged.len()
                );
                for (at, cell) in sheet.cells.iter().take(40) {
                    println!("    {at}: {cell:?}");
                }
            }
        }
        Err(e) => println!("{path}: error in {took:?}: {e:?}\n  {e}"),
    }
    std::process::ExitCode::SUCCESS
}
