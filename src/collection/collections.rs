//! The set of collection definitions the daemon knows (one per year), built from the texts of
//! the files under `config/collections/`. Problems in every file are reported together, each
//! with its file name. PURE: the caller reads the files and passes their names and texts.

use super::definition::Definition;
use super::load::load_definition;
use super::period::{Period, PeriodId};
use super::problem::Problem;

/// Every known collection year, ordered by year.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collections {
    definitions: Vec<Definition>,
}

impl Collections {
    /// Load every file: `(file name, text)`. Fails with every problem of every file, including
    /// two files for the same id or year.
    pub fn from_files(files: &[(String, String)]) -> Result<Collections, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut loaded: Vec<(&str, Definition)> = Vec::new();
        for (name, text) in files {
            match load_definition(text) {
                Ok(def) => {
                    if let Some((other, _)) = loaded.iter().find(|(_, d)| d.id == def.id) {
                        problems.push(
                            Problem::new("id", format!("{} is also the id of {other}", def.id))
                                .in_file(name),
                        );
                    } else if let Some((other, _)) =
                        loaded.iter().find(|(_, d)| d.start_year == def.start_year)
                    {
                        problems.push(
                            Problem::new("year", format!("{other} already defines this year"))
                                .in_file(name),
                        );
                    }
                    loaded.push((name, def));
                }
                Err(ps) => problems.extend(ps.into_iter().map(|p| p.in_file(name))),
            }
        }
        if files.is_empty() {
            problems.push(Problem::new("", "no collection definition files were given"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut definitions: Vec<Definition> = loaded.into_iter().map(|(_, d)| d).collect();
        definitions.sort_by_key(|d| d.start_year);
        Ok(Collections { definitions })
    }

    /// A set made of definitions already in hand (tests, tools).
    pub fn from_definitions(mut definitions: Vec<Definition>) -> Collections {
        definitions.sort_by_key(|d| d.start_year);
        Collections { definitions }
    }

    /// The definition of the year a period belongs to.
    pub fn definition_for(&self, period: PeriodId) -> Option<&Definition> {
        self.definitions.iter().find(|d| d.start_year == period.start_year)
    }

    pub fn period(&self, period: PeriodId) -> Option<&Period> {
        self.definition_for(period).and_then(|d| d.period(period))
    }

    /// The most recent year's definition.
    pub fn latest(&self) -> Option<&Definition> {
        self.definitions.last()
    }

    pub fn get(&self, id: &str) -> Option<&Definition> {
        self.definitions.iter().find(|d| d.id == id)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Definition> {
        self.definitions.iter()
    }

    pub fn len(&self) -> usize {
        self.definitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }
}

impl<'a> IntoIterator for &'a Collections {
    type Item = &'a Definition;
    type IntoIter = std::slice::Iter<'a, Definition>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The two definitions shipped in `config/collections/`, compiled in for tests across modules.
#[cfg(test)]
pub(crate) fn shipped() -> Collections {
    let files = [
        ("iapt-kpi-2010-11.toml", include_str!("../../config/collections/iapt-kpi-2010-11.toml")),
        ("iapt-kpi-2011-12.toml", include_str!("../../config/collections/iapt-kpi-2011-12.toml")),
    ]
    .map(|(n, t)| (n.to_string(), t.to_string()));
    match Collections::from_files(&files) {
        Ok(c) => c,
        Err(ps) => panic!("shipped definitions must load: {ps:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("test time").with_timezone(&Utc)
    }

    #[test]
    fn both_shipped_definitions_load_and_differ_on_kpi3b() {
        let c = shipped();
        assert_eq!(c.len(), 2);
        let y10 = c.definition_for(PeriodId::new(2010, 3).expect("id")).expect("2010/11");
        let y11 = c.latest().expect("latest");
        assert_eq!((y10.id.as_str(), y11.id.as_str()), ("iapt-kpi-2010-11", "iapt-kpi-2011-12"));
        let b10 = &y10.measure("KPI3b").expect("KPI3b").period_basis;
        let b11 = &y11.measure("KPI3b").expect("KPI3b").period_basis;
        assert!(b10.contains("start") && b11.contains("end"), "{b10} / {b11}");
        assert!(!y11.measure("KPI7").expect("KPI7").required);
        assert_eq!(y11.measures.iter().filter(|m| m.required).count(), 8);
    }

    #[test]
    fn shipped_windows_let_the_previous_quarter_be_revised_while_the_next_is_open() {
        let c = shipped();
        let all: Vec<&Period> = c.iter().flat_map(|d| d.periods.iter()).collect();
        assert_eq!(all.len(), 8);
        for pair in all.windows(2) {
            assert_eq!(pair[1].id.previous(), pair[0].id);
            assert!(
                pair[0].closes > pair[1].opens,
                "{} closes before {} opens",
                pair[0].id,
                pair[1].id
            );
            // Each quarter opens after the quarter it reports on has ended.
            let (_, last_day) = pair[1].id.dates();
            assert!(pair[1].opens.date_naive() > last_day);
        }
    }

    #[test]
    fn period_lookup_uses_the_right_year() {
        let c = shipped();
        let q1 = c.period(PeriodId::parse("Q1 2011/12").expect("id")).expect("period");
        assert_eq!(q1.opens, at("2011-07-01T08:00:00Z"));
        assert!(c.period(PeriodId::new(2009, 1).expect("id")).is_none());
        assert!(c.definition_for(PeriodId::new(2012, 1).expect("id")).is_none());
    }

    #[test]
    fn problems_in_several_files_are_all_reported_with_file_names() {
        let good = include_str!("../../config/collections/iapt-kpi-2011-12.toml");
        let files = vec![
            ("a.toml".to_string(), good.to_string()),
            ("b.toml".to_string(), good.to_string()),
            ("c.toml".to_string(), good.replace("title =", "titel =")),
        ];
        let problems = Collections::from_files(&files).expect_err("duplicates");
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("b.toml: id: iapt-kpi-2011-12 is also the id of a.toml")),
            "{shown:?}"
        );
        assert!(shown.iter().any(|s| s.starts_with("c.toml: titel: unknown key")), "{shown:?}");
        assert!(shown.iter().any(|s| s == "c.toml: title: missing"), "{shown:?}");
    }
}
