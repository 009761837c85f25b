//! What an IAPT KPI return is: collection definitions loaded from `config/collections/*.toml`
//! (measures, derived rates, rule texts, periods and windows), and the organisation registry
//! (`config/organisations.csv`) with submitter authorisation.
//! PURE: loading takes file contents, not paths; nothing here touches the clock.

pub mod collections;
pub mod definition;
pub mod load;
pub mod period;
pub mod problem;
pub mod registry;

pub use collections::Collections;
pub use definition::{Definition, Derived, GuidanceLink, Measure, RuleText};
pub use load::{load_definition, CHECKED_MEASURES, RULE_IDS};
pub use period::{Period, PeriodId, Window};
pub use problem::Problem;
pub use registry::{Organisation, Registry, Submitter};
