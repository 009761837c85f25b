//! The history port: what the validator needs to know about an organisation's earlier accepted
//! returns (IAPT-W01, IAPT-W02). The store implements it; `NoHistory` and `MemoryHistory` live
//! here for `check` and tests. PURE.

use crate::collection::PeriodId;
use std::collections::BTreeMap;

/// An accepted return, as far as the validator needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    pub period: PeriodId,
    /// The receipt it was accepted under, e.g. `IAPT-2011-12-Q1-5N1-2`.
    pub receipt: String,
    /// Measure id → value (as in `Report::values`).
    pub values: BTreeMap<String, Option<i64>>,
}

/// Earlier accepted returns. `org` is the upper-case ODS code.
pub trait History {
    /// The organisation's most recently accepted return, for any period.
    fn last_accepted(&self, org: &str) -> Option<Prior>;
    /// The return that stands for the organisation and period (the latest accepted one).
    fn accepted(&self, org: &str, period: PeriodId) -> Option<Prior>;
}

/// No earlier returns (e.g. `check` without a store).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

impl History for NoHistory {
    fn last_accepted(&self, _org: &str) -> Option<Prior> {
        None
    }
    fn accepted(&self, _org: &str, _period: PeriodId) -> Option<Prior> {
        None
    }
}

/// Accepted returns held in memory, in the order they were accepted.
#[derive(Debug, Clone, Default)]
pub struct MemoryHistory {
    accepted: Vec<(String, Prior)>,
}

impl MemoryHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record an accepted return for `org`; a later one for the same period supersedes it.
    pub fn accept(&mut self, org: &str, prior: Prior) {
        self.accepted.push((org.trim().to_ascii_uppercase(), prior));
    }
}

impl History for MemoryHistory {
    fn last_accepted(&self, org: &str) -> Option<Prior> {
        let org = org.trim().to_ascii_uppercase();
        self.accepted.iter().rev().find(|(o, _)| *o == org).map(|(_, p)| p.clone())
    }

    fn accepted(&self, org: &str, period: PeriodId) -> Option<Prior> {
        let org = org.trim().to_ascii_uppercase();
        self.accepted
            .iter()
            .rev()
            .find(|(o, p)| *o == org && p.period == period)
            .map(|(_, p)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior(q: u8, receipt: &str, kpi1: i64) -> Prior {
        let period = PeriodId::new(2011, q).expect("period");
        let values = BTreeMap::from([("KPI1".to_string(), Some(kpi1))]);
        Prior { period, receipt: receipt.into(), values }
    }

    #[test]
    fn latest_acceptance_stands() {
        let mut h = MemoryHistory::new();
        h.accept("5n1", prior(1, "r1", 10));
        h.accept("5N1", prior(1, "r2", 11));
        h.accept("5N1", prior(2, "r3", 12));
        h.accept("5NY", prior(3, "other", 99));
        assert_eq!(h.last_accepted("5N1").map(|p| p.receipt), Some("r3".into()));
        let q1 = PeriodId::new(2011, 1).expect("period");
        assert_eq!(h.accepted("5N1", q1).map(|p| p.receipt), Some("r2".into()));
        assert_eq!(h.accepted("5NY", q1), None);
        assert_eq!(NoHistory.last_accepted("5N1"), None);
    }
}
