//! A secret value (password, token) whose `Debug` and `Display` never show it.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a protocol library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl super::SecretSource {
    /// Read the secret now (at startup and whenever it must be refreshed).
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            super::SecretSource::Env(var) => std::env::var(var)
                .map(|v| Secret::new(v.trim_end_matches(['\r', '\n'])))
                .map_err(|_| format!("environment variable {var} is not set")),
            super::SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|v| Secret::new(v.trim_end_matches(['\r', '\n'])))
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
