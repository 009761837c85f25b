//! The validator's `History` port, answered from the store. The validator is pure and cannot
//! fail, so a store error is kept here and turned into a transient pipeline error afterwards
//! (the message stays in the mailbox and is tried again) rather than validating without history.

use crate::collection::PeriodId;
use crate::store::{self, Store, StoreError};
use crate::validate::{History, Prior};
use std::cell::RefCell;

pub struct StoreHistory<'a, S: Store + ?Sized> {
    store: &'a S,
    error: RefCell<Option<StoreError>>,
}

impl<'a, S: Store + ?Sized> StoreHistory<'a, S> {
    pub fn new(store: &'a S) -> Self {
        StoreHistory { store, error: RefCell::new(None) }
    }

    /// The first store error met while answering, if any.
    pub fn take_error(&self) -> Option<StoreError> {
        self.error.borrow_mut().take()
    }

    fn keep(&self, r: Result<Option<store::Prior>, StoreError>) -> Option<Prior> {
        match r {
            Ok(p) => p.and_then(|p| {
                Some(Prior {
                    period: PeriodId::parse(&p.period)?,
                    receipt: p.receipt,
                    values: p.values,
                })
            }),
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
}

impl<S: Store + ?Sized> History for StoreHistory<'_, S> {
    fn last_accepted(&self, org: &str) -> Option<Prior> {
        self.keep(self.store.last_accepted(org))
    }

    fn accepted(&self, org: &str, period: PeriodId) -> Option<Prior> {
        self.keep(self.store.accepted(org, &period.to_string()))
    }
}
