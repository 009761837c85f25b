//! Reading one value cell as a whole number of people (IAPT-E01, E02, W03): what a cell holds,
//! how to describe it to an analyst, and what they should change. PURE.

use crate::echo;
use crate::workbook::Cell;

/// Counts above this are not plausible for one PCT and would lose precision as floats.
const MAX_COUNT: f64 = 1e12;

/// How a value cell reads.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reading {
    /// Empty, or only spaces.
    Blank,
    /// A whole number ≥ 0; `from_text` when it was stored as text (IAPT-W03).
    Whole { value: i64, from_text: bool },
    /// Not acceptable: what was found (`the text "n/a"`) and what to do instead.
    Bad { found: String, fix: &'static str },
}

const TYPE_NUMBER: &str =
    "Type the count as a whole number, for example 1234 (0 if there were none).";

pub(super) fn read(cell: Option<&Cell>) -> Reading {
    match cell {
        None => Reading::Blank,
        Some(c) if c.is_blank() => Reading::Blank,
        Some(Cell::Number(n)) => number(*n, None),
        Some(Cell::Text(s)) => text(s),
        Some(Cell::Bool(b)) => Reading::Bad {
            found: format!("{}, a TRUE/FALSE value", if *b { "TRUE" } else { "FALSE" }),
            fix: TYPE_NUMBER,
        },
        Some(Cell::Error(e)) => Reading::Bad {
            found: format!("the error value {}", echo::capped(e, echo::CELL_MAX)),
            fix: "Correct the formula that produces the error, or type the count in as a whole number.",
        },
        Some(Cell::FormulaNoValue(f)) => Reading::Bad {
            found: format!("the formula ={} with no saved result", echo::capped(f, echo::CELL_MAX)),
            fix: "Open the file in Excel or LibreOffice Calc so the formula is calculated, save it and send it again, or type the count in as a whole number.",
        },
        Some(c @ Cell::DateTime(_)) => Reading::Bad {
            found: format!("formatted as a date or time (serial {})", c.display()),
            fix: "Format the cell as a number, not a date, and type the count as a whole number.",
        },
    }
}

/// A number, or a number that was typed as text (`as_text` holds the text for messages).
fn number(n: f64, as_text: Option<&str>) -> Reading {
    let shown = match as_text {
        Some(t) => format!("the text {}", echo::quoted(t, echo::CELL_MAX)),
        None => Cell::Number(n).display(),
    };
    if !n.is_finite() {
        Reading::Bad { found: format!("{shown}, which is not a number"), fix: TYPE_NUMBER }
    } else if n.abs() > MAX_COUNT {
        Reading::Bad { found: format!("{shown}, too large to be a count"), fix: TYPE_NUMBER }
    } else if n < 0.0 {
        Reading::Bad {
            found: format!("{shown}, a negative number"),
            fix: "Counts cannot be negative: enter the number of people, 0 or more.",
        }
    } else if n.fract() != 0.0 {
        Reading::Bad {
            found: format!("{shown}, which is not a whole number"),
            fix: "Enter a count of people as a whole number, without decimals.",
        }
    } else {
        Reading::Whole { value: n as i64, from_text: as_text.is_some() }
    }
}

fn text(raw: &str) -> Reading {
    let t = raw.trim();
    match numeric_text(t) {
        Some(n) => number(n, Some(t)),
        None => Reading::Bad {
            found: format!("the text {}", echo::quoted(t, echo::CELL_MAX)),
            fix: TYPE_NUMBER,
        },
    }
}

/// `1234`, `1,234`, `-3`, `12.5` typed as text → the number; anything else → `None`.
fn numeric_text(t: &str) -> Option<f64> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()) => (w, Some(f)),
        Some(_) => return None,
        None => (digits, None),
    };
    let grouped = whole.contains(',');
    let plain: String = whole.chars().filter(|c| *c != ',').collect();
    if plain.is_empty() || !plain.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Thousands separators only in the usual places: 1,234,567.
    if grouped {
        let groups: Vec<&str> = whole.split(',').collect();
        let first_ok = (1..=3).contains(&groups[0].len());
        if !first_ok || groups[1..].iter().any(|g| g.len() != 3) {
            return None;
        }
    }
    let normal = match frac {
        Some(f) => format!("{plain}.{f}"),
        None => plain,
    };
    let n: f64 = normal.parse().ok()?;
    Some(if t.starts_with('-') { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(v: i64, from_text: bool) -> Reading {
        Reading::Whole { value: v, from_text }
    }

    #[test]
    fn whole_numbers_and_numbers_stored_as_text() {
        assert_eq!(read(Some(&Cell::Number(68653.0))), whole(68653, false));
        assert_eq!(read(Some(&Cell::Number(-0.0))), whole(0, false));
        assert_eq!(read(Some(&Cell::Text(" 1234 ".into()))), whole(1234, true));
        assert_eq!(read(Some(&Cell::Text("1,234,567".into()))), whole(1234567, true));
        assert_eq!(read(Some(&Cell::Text("12.0".into()))), whole(12, true));
    }

    #[test]
    fn blanks() {
        assert_eq!(read(None), Reading::Blank);
        assert_eq!(read(Some(&Cell::Text(" \u{a0} ".into()))), Reading::Blank);
    }

    #[test]
    fn bad_values_say_what_was_found() {
        let found = |c: Cell| match read(Some(&c)) {
            Reading::Bad { found, .. } => found,
            other => panic!("{c:?} read as {other:?}"),
        };
        assert_eq!(found(Cell::Number(12.5)), "12.5, which is not a whole number");
        assert_eq!(found(Cell::Number(-3.0)), "-3, a negative number");
        assert_eq!(found(Cell::Text("-3".into())), "the text \"-3\", a negative number");
        assert_eq!(found(Cell::Text("n/a".into())), "the text \"n/a\"");
        assert_eq!(found(Cell::Text("12,34".into())), "the text \"12,34\"");
        assert_eq!(found(Cell::Text("1e5".into())), "the text \"1e5\"");
        assert_eq!(found(Cell::Error("#DIV/0!".into())), "the error value #DIV/0!");
        assert_eq!(
            found(Cell::FormulaNoValue("SUM(C1:C3)".into())),
            "the formula =SUM(C1:C3) with no saved result"
        );
        assert_eq!(found(Cell::Bool(true)), "TRUE, a TRUE/FALSE value");
        assert_eq!(found(Cell::DateTime(40725.0)), "formatted as a date or time (serial 40725)");
        assert_eq!(found(Cell::Number(f64::NAN)), "NaN, which is not a number");
        assert_eq!(found(Cell::Number(1e13)), "10000000000000, too large to be a count");
    }
}
