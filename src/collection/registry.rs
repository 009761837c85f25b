//! The organisation registry (`config/organisations.csv`, SPEC §4): codes, names, aliases and
//! who may submit for each organisation.

/// Who may submit for an organisation: one address, or everyone at a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitter {
    /// `a.b@nhs.test`, stored lower-case.
    Address(String),
    /// `leeds.nhs.test` (written `@leeds.nhs.test` in the file), stored lower-case without the `@`.
    Domain(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// ODS code, upper-case: `5N1`.
    pub code: String,
    /// `Leeds PCT`.
    pub name: String,
    /// Other names the subject line may use: `NHS Leeds`.
    pub aliases: Vec<String>,
    pub submitters: Vec<Submitter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub organisations: Vec<Organisation>,
}

impl Registry {
    /// The organisation with this code (case-insensitive).
    pub fn get(&self, code: &str) -> Option<&Organisation> {
        let code = code.trim();
        self.organisations.iter().find(|o| o.code.eq_ignore_ascii_case(code))
    }
}
