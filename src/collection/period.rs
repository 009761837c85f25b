//! Reporting periods: the quarter id (`2011-12-Q1`), its four accepted spellings, and the
//! submission window (`opens`, `deadline`, `closes`) judged at a given moment. PURE.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::fmt;

/// A financial-year quarter: `start_year` 2011 and `quarter` 1 is April–June 2011, written
/// `2011-12-Q1`; quarter 4 is January–March of the following calendar year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeriodId {
    pub start_year: u16,
    pub quarter: u8,
}

impl PeriodId {
    pub fn new(start_year: u16, quarter: u8) -> Option<PeriodId> {
        ((1..=4).contains(&quarter) && (1990..=2200).contains(&start_year))
            .then_some(PeriodId { start_year, quarter })
    }

    /// The collection year this quarter belongs to, written `2011-12`.
    pub fn year(&self) -> String {
        format!("{}-{:02}", self.start_year, (self.start_year + 1) % 100)
    }

    /// The quarter before this one (Q1 2011/12 → Q4 2010/11).
    pub fn previous(&self) -> PeriodId {
        if self.quarter == 1 {
            PeriodId { start_year: self.start_year - 1, quarter: 4 }
        } else {
            PeriodId { start_year: self.start_year, quarter: self.quarter - 1 }
        }
    }

    /// How a submitter writes it: `Q1 2011/12`.
    pub fn label(&self) -> String {
        format!("Q{} {}/{:02}", self.quarter, self.start_year, (self.start_year + 1) % 100)
    }

    /// First and last day of the quarter.
    pub fn dates(&self) -> (NaiveDate, NaiveDate) {
        let (y, m) = match self.quarter {
            1 => (self.start_year as i32, 4),
            2 => (self.start_year as i32, 7),
            3 => (self.start_year as i32, 10),
            _ => (self.start_year as i32 + 1, 1),
        };
        let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default();
        let next = if m == 10 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m + 3, 1)
        }
        .unwrap_or_default();
        (first, next.pred_opt().unwrap_or(next))
    }

    /// Parse any of the accepted spellings (SPEC §3): `2011/12 Q1`, `Q1 2011/12`, `2011-12-Q1`,
    /// `Q1 2011-12`; case and spaces ignored. The two years must be consecutive.
    pub fn parse(s: &str) -> Option<PeriodId> {
        let norm: String = s.trim().to_ascii_uppercase();
        let tokens: Vec<&str> =
            norm.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()).collect();
        let (year_part, q_part) = match tokens.as_slice() {
            [one] => {
                // 2011-12-Q1
                let idx = one.rfind("-Q")?;
                (&one[..idx], &one[idx + 1..])
            }
            [a, b] if a.starts_with('Q') => (*b, *a),
            [a, b] if b.starts_with('Q') => (*a, *b),
            _ => return None,
        };
        let quarter: u8 = q_part.strip_prefix('Q')?.parse().ok()?;
        let (y1, y2) = year_part.split_once(['/', '-'])?;
        let y1: u16 = y1.parse().ok()?;
        if y1 < 1000 || y2.is_empty() || y2.len() > 4 || !y2.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let y2: u16 = y2.parse().ok()?;
        let follows = if y2 < 100 { (y1 + 1) % 100 == y2 } else { y1 + 1 == y2 };
        if !follows {
            return None;
        }
        PeriodId::new(y1, quarter)
    }
}

impl fmt::Display for PeriodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-Q{}", self.year(), self.quarter)
    }
}

impl Serialize for PeriodId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One reporting period of a collection year, with its submission window.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub id: PeriodId,
    /// When submissions open (the launch).
    pub opens: DateTime<Utc>,
    /// The date shown to submitters; after it a return is accepted but marked late.
    pub deadline: DateTime<Utc>,
    /// The hard close; after it returns are rejected.
    pub closes: DateTime<Utc>,
}

/// Where a moment falls in a period's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    NotOpen,
    OnTime,
    Late,
    Closed,
}

impl Period {
    pub fn window(&self, at: DateTime<Utc>) -> Window {
        if at < self.opens {
            Window::NotOpen
        } else if at <= self.deadline {
            Window::OnTime
        } else if at <= self.closes {
            Window::Late
        } else {
            Window::Closed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_spellings() {
        let want = PeriodId::new(2011, 1);
        for s in
            ["2011/12 Q1", "Q1 2011/12", "2011-12-Q1", "Q1 2011-12", " q1 2011/12 ", "2011-12-q1"]
        {
            assert_eq!(PeriodId::parse(s), want, "{s}");
        }
    }

    #[test]
    fn rejects_non_consecutive_years_and_bad_quarters() {
        for s in ["2011/13 Q1", "Q5 2011/12", "Q0 2011/12", "2011 Q1", "", "Q1", "hello"] {
            assert_eq!(PeriodId::parse(s), None, "{s}");
        }
    }

    #[test]
    fn display_previous_and_dates() {
        let q1 = PeriodId::new(2011, 1).expect("valid");
        assert_eq!(q1.to_string(), "2011-12-Q1");
        assert_eq!(q1.label(), "Q1 2011/12");
        assert_eq!(q1.previous().to_string(), "2010-11-Q4");
        let q4 = PeriodId::new(2011, 4).expect("valid");
        let (a, b) = q4.dates();
        assert_eq!((a.to_string(), b.to_string()), ("2012-01-01".into(), "2012-03-31".into()));
    }
}
