//! One xlsx worksheet part streamed into a sparse `Sheet`: the declared `<dimension>` is ignored
//! (a sheet whose columns were formatted whole declares A1:XFD1048576), every real cell and its
//! text are counted against the budget as they stream, and values are kept as the file stored
//! them (`#SPILL!` verbatim, a formula with no `<v>` as
//! `FormulaNoValue`, dates as serial numbers unless the cell says `t="d"`).

use std::io::BufReader;

use quick_xml::events::{BytesStart, Event};

use crate::workbook::grid::{Cell, CellRef, ReadError, Sheet};

use super::budget::Budget;
use super::xml;
use super::zipped::Archive;

/// Where the text of the current event belongs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Nothing,
    Value,
    Formula,
    Inline,
}

/// The cell being read, between `<c>` and `</c>`.
struct Pending {
    at: CellRef,
    kind: String,
    value: Option<String>,
    formula: Option<String>,
    inline: Option<String>,
}

/// Position bookkeeping for rows and cells that omit their `r` attribute.
struct Cursor {
    row: u32,
    next_col: u32,
    started: bool,
}

pub fn read(
    zip: &mut Archive<'_>,
    part: &str,
    strings: &[String],
    sheet: &mut Sheet,
    budget: &mut Budget,
) -> Result<(), ReadError> {
    let mut stream = zip.stream(part, budget)?;
    let limit = stream.limit();
    let mut reader = xml::reader(BufReader::new(xml::TokenCap::new(&mut stream)));
    let mut buf = Vec::new();
    let mut pos = Cursor { row: 0, next_col: 0, started: false };
    let mut cell: Option<Pending> = None;
    let mut into = Target::Nothing;
    let mut in_phonetic = false;
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| xml::error(&e, part, limit))?;
        budget.tick()?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let empty = matches!(event, Event::Empty(_));
                match xml::local(e) {
                    "row" => start_row(e, &mut pos),
                    "c" => {
                        let pending = start_cell(e, &mut pos);
                        if !empty {
                            cell = Some(pending);
                        }
                    }
                    "v" => {
                        // `<v></v>` is a saved empty result, not a missing one.
                        if let Some(c) = cell.as_mut() {
                            c.value.get_or_insert_with(String::new);
                        }
                        into = if empty { Target::Nothing } else { Target::Value };
                    }
                    "f" => {
                        if let Some(c) = cell.as_mut() {
                            c.formula.get_or_insert_with(String::new);
                        }
                        into = if empty { Target::Nothing } else { Target::Formula };
                    }
                    "is" => {
                        if let Some(c) = cell.as_mut() {
                            c.inline.get_or_insert_with(String::new);
                        }
                    }
                    "t" if !empty && cell.as_ref().is_some_and(|c| c.inline.is_some()) => {
                        into = Target::Inline
                    }
                    "rPh" if !empty => in_phonetic = true,
                    "mergeCell" => merge(e, sheet, budget)?,
                    _ => {}
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "c" => {
                    if let Some(done) = cell.take() {
                        finish_cell(done, strings, sheet, budget)?;
                    }
                    into = Target::Nothing;
                }
                "v" | "f" | "t" => into = Target::Nothing,
                "rPh" => in_phonetic = false,
                _ => {}
            },
            Event::Eof => break,
            other => {
                if let (Some(c), false) = (cell.as_mut(), in_phonetic) {
                    let target = match into {
                        Target::Value => c.value.get_or_insert_with(String::new),
                        Target::Formula => c.formula.get_or_insert_with(String::new),
                        Target::Inline => c.inline.get_or_insert_with(String::new),
                        Target::Nothing => {
                            buf.clear();
                            continue;
                        }
                    };
                    xml::push_text(target, other);
                    budget.check_pending(target.len())?;
                }
            }
        }
        buf.clear();
    }
    drop(reader);
    budget.charge_unpacked(stream.seen());
    Ok(())
}

fn start_row(e: &BytesStart<'_>, pos: &mut Cursor) {
    let explicit = xml::attr(e, "r").and_then(|r| r.trim().parse::<u32>().ok());
    pos.row = match explicit {
        Some(r) if r > 0 => r - 1,
        _ if pos.started => pos.row.saturating_add(1),
        _ => 0,
    };
    pos.started = true;
    pos.next_col = 0;
}

fn start_cell(e: &BytesStart<'_>, pos: &mut Cursor) -> Pending {
    let (mut at, mut kind) = (None, String::new());
    xml::each_attr(e, |_, name, value| match name {
        "r" => at = CellRef::parse_a1(value),
        "t" => kind = value.to_string(),
        _ => {}
    });
    let at = at.unwrap_or(CellRef::new(pos.row, pos.next_col));
    pos.next_col = at.col.saturating_add(1);
    Pending { at, kind, value: None, formula: None, inline: None }
}

fn finish_cell(
    c: Pending,
    strings: &[String],
    sheet: &mut Sheet,
    budget: &mut Budget,
) -> Result<(), ReadError> {
    let value = match (c.kind.as_str(), c.value, c.formula, c.inline) {
        ("inlineStr", _, _, Some(text)) => Cell::Text(text),
        (_, None, Some(formula), _) => Cell::FormulaNoValue(formula),
        // openpyxl and other writers that never calculate save `<f>…</f><v/>`: an empty value is
        // a saved result only for a string formula (`t="str"`), whose result may be "".
        (kind, Some(v), Some(formula), _) if v.is_empty() && kind != "str" => {
            Cell::FormulaNoValue(formula)
        }
        (_, None, None, _) => return Ok(()),
        // An empty index is an empty cell (some writers save `<c t="s"><v/></c>`).
        ("s", Some(v), _, _) if v.trim().is_empty() => return Ok(()),
        ("s", Some(v), _, _) => {
            let found = v.trim().parse::<usize>().ok().and_then(|i| strings.get(i));
            match found {
                Some(s) => {
                    // Checked before the copy: a shared string used by many cells is the bomb.
                    budget.check_pending(s.len())?;
                    Cell::Text(s.clone())
                }
                None => {
                    return Err(ReadError::Corrupt(format!(
                        "cell {} of sheet '{}' refers to a missing shared string",
                        c.at, sheet.name
                    )))
                }
            }
        }
        ("str" | "inlineStr", Some(v), _, _) => Cell::Text(v),
        ("b", Some(v), _, _) => {
            Cell::Bool(v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
        }
        ("e", Some(v), _, _) => Cell::Error(v),
        ("d", Some(v), _, _) => iso_serial(&v).map_or(Cell::Text(v), Cell::DateTime),
        (_, Some(v), _, _) => v.trim().parse::<f64>().map_or(Cell::Text(v), Cell::Number),
    };
    budget.put(sheet, c.at, value)
}

fn merge(e: &BytesStart<'_>, sheet: &mut Sheet, budget: &mut Budget) -> Result<(), ReadError> {
    let Some(reference) = xml::attr(e, "ref") else { return Ok(()) };
    let mut corners = reference.split(':').filter_map(CellRef::parse_a1);
    if let (Some(a), Some(b)) = (corners.next(), corners.next()) {
        // Merged ranges are held in memory too, so they count against the same cap as cells.
        budget.charge_cell(&sheet.name, sheet.merged.len())?;
        sheet.merged.push((a, b));
    }
    Ok(())
}

/// An ISO 8601 date or date-time (`t="d"` cells) as the serial number Excel uses.
fn iso_serial(text: &str) -> Option<f64> {
    use chrono::{NaiveDate, NaiveDateTime};
    let text = text.trim().trim_end_matches('Z');
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let at = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0))?;
    let seconds = at.signed_duration_since(epoch).num_milliseconds() as f64 / 1000.0;
    Some(seconds / 86_400.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_become_excel_serials() {
        assert_eq!(iso_serial("2011-06-30"), Some(40724.0));
        assert_eq!(iso_serial("2011-06-30T12:00:00"), Some(40724.5));
        assert_eq!(iso_serial("not a date"), None);
    }
}
