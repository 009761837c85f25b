//! One problem found while loading a collection definition or the organisation registry, named
//! by the file and the key (or line) it is about, so the Data Collection Team can fix every
//! problem in one edit. PURE.

use std::fmt;

/// A problem in a configuration file: `iapt-kpi-2011-12.toml: periods[2].deadline: must be after
/// opens`. `file` is empty until the caller that knows the file name fills it in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problem {
    pub file: String,
    /// Where in the file: a key path (`measures[3].unit`) or a line (`line 12`).
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { file: String::new(), key: key.into(), message: message.into() }
    }

    /// The same problem, said to be in `file`.
    pub fn in_file(mut self, file: &str) -> Problem {
        self.file = file.to_string();
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}: ", self.file)?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_key_and_message() {
        let p = Problem::new("periods[2].deadline", "must be after opens").in_file("a.toml");
        assert_eq!(p.to_string(), "a.toml: periods[2].deadline: must be after opens");
        assert_eq!(Problem::new("line 3", "blank name").to_string(), "line 3: blank name");
    }
}
