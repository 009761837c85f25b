//! The organisation registry (`config/organisations.csv`, SPEC §4): codes, names, aliases and
//! who may submit for each organisation. PURE: `from_csv` takes the file's text.
//!
//! Authorisation rule: an address entry matches that address only; a domain entry
//! (`@leeds.nhs.test`) matches addresses at exactly that domain and NOT at its subdomains
//! (`x@mail.leeds.nhs.test` is not authorised) — a subdomain may belong to someone else, so it
//! must be listed on its own. Both are compared without regard to case.

use super::problem::Problem;

/// Who may submit for an organisation: one address, or everyone at a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitter {
    /// `a.b@nhs.test`, stored lower-case.
    Address(String),
    /// `leeds.nhs.test` (written `@leeds.nhs.test` in the file), stored lower-case without the `@`.
    Domain(String),
}

impl Submitter {
    /// Parse one entry of the `submitters` column.
    pub fn parse(s: &str) -> Option<Submitter> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(domain) = s.strip_prefix('@') {
            return is_domain(domain).then(|| Submitter::Domain(domain.to_string()));
        }
        let (local, domain) = s.split_once('@')?;
        let local_ok = !local.is_empty()
            && local.chars().all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c));
        (local_ok && is_domain(domain)).then_some(Submitter::Address(s))
    }

    /// Does this entry authorise `address` (already trimmed and lower-case)?
    fn matches(&self, address: &str) -> bool {
        match self {
            Submitter::Address(a) => a == address,
            Submitter::Domain(d) => address.rsplit_once('@').is_some_and(|(_, dom)| dom == d),
        }
    }
}

/// A DNS name of at least two labels, each of letters, digits and inner hyphens.
fn is_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
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

const COLUMNS: [&str; 4] = ["code", "name", "aliases", "submitters"];

impl Registry {
    /// Read `code,name,aliases,submitters` (lists `;`-separated). Every problem is reported with
    /// its line: duplicate codes, blank codes or names, malformed submitters, wrong columns.
    pub fn from_csv(text: &str) -> Result<Registry, Vec<Problem>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let mut problems = Vec::new();
        match reader.headers() {
            Ok(h) if h.iter().map(|c| c.trim().to_ascii_lowercase()).eq(COLUMNS) => {}
            Ok(_) => problems
                .push(Problem::new("line 1", format!("the columns must be {}", COLUMNS.join(",")))),
            Err(e) => return Err(vec![Problem::new("line 1", e.to_string())]),
        }
        let mut organisations: Vec<Organisation> = Vec::new();
        let mut first_line: Vec<u64> = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    problems.push(Problem::new(format!("line {line}"), e.to_string()));
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line());
            let key = format!("line {line}");
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            if record.len() != COLUMNS.len() {
                problems.push(Problem::new(
                    key,
                    format!("has {} columns; expected 4 ({})", record.len(), COLUMNS.join(",")),
                ));
                continue;
            }
            let field = |i: usize| record.get(i).unwrap_or("").trim();
            let code = field(0).to_ascii_uppercase();
            if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
                problems
                    .push(Problem::new(&key, format!("code {code:?} must be letters and digits")));
            } else if let Some(i) = organisations.iter().position(|o| o.code == code) {
                let first = first_line.get(i).copied().unwrap_or(0);
                problems
                    .push(Problem::new(&key, format!("code {code} is already on line {first}")));
            }
            let name = field(1).to_string();
            if name.is_empty() {
                problems.push(Problem::new(&key, format!("organisation {code} has a blank name")));
            }
            let aliases = list(field(2)).map(str::to_string).collect();
            let mut submitters = Vec::new();
            for entry in list(field(3)) {
                match Submitter::parse(entry) {
                    Some(s) => submitters.push(s),
                    None => problems.push(Problem::new(
                        &key,
                        format!("submitter {entry:?} is neither an address (a.b@x.nhs.test) nor a domain (@x.nhs.test)"),
                    )),
                }
            }
            organisations.push(Organisation { code, name, aliases, submitters });
            first_line.push(line);
        }
        if problems.is_empty() {
            Ok(Registry { organisations })
        } else {
            Err(problems)
        }
    }

    /// The organisation with this code (case-insensitive).
    pub fn get(&self, code: &str) -> Option<&Organisation> {
        let code = code.trim();
        self.organisations.iter().find(|o| o.code.eq_ignore_ascii_case(code))
    }

    /// May `address` submit returns for organisation `code`? Case-insensitive; surrounding
    /// spaces and angle brackets ignored. See the module comment for how domains match.
    pub fn is_submitter(&self, code: &str, address: &str) -> bool {
        let address =
            address.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
        if !address.contains('@') {
            return false;
        }
        self.get(code).is_some_and(|o| o.submitters.iter().any(|s| s.matches(&address)))
    }

    /// SPEC §4a: a domain entry (`@leeds.nhs.test`) admits everyone at that domain, so it may
    /// stand for one organisation only, and never for a domain many organisations share
    /// (`shared`: nhs.net, public webmail), where only exact addresses can say who is who.
    /// Every such entry is reported, by organisation.
    pub fn domain_problems(&self, shared: &[String]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut owner: Vec<(&str, &str)> = Vec::new();
        for o in &self.organisations {
            for s in &o.submitters {
                let Submitter::Domain(d) = s else { continue };
                let key = format!("organisation {}", o.code);
                if shared.iter().any(|x| x.trim().eq_ignore_ascii_case(d)) {
                    problems.push(Problem::new(&key, format!(
                        "submitter @{d} is a domain shared by many organisations ([auth] shared_domains): list the exact addresses instead"
                    )));
                }
                match owner.iter().find(|(dom, _)| dom == d) {
                    Some((_, first)) if *first != o.code => problems.push(Problem::new(&key, format!(
                        "submitter @{d} is also listed for {first}: a domain entry may belong to one organisation only; list the exact addresses instead"
                    ))),
                    Some(_) => {}
                    None => owner.push((d, &o.code)),
                }
            }
        }
        problems
    }

    pub fn len(&self) -> usize {
        self.organisations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.organisations.is_empty()
    }
}

fn list(field: &str) -> impl Iterator<Item = &str> {
    field.split(';').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../config/organisations.csv");

    #[test]
    fn shipped_registry_has_all_149_organisations() {
        let reg = Registry::from_csv(SHIPPED).expect("loads");
        assert_eq!(reg.len(), 149);
        let leeds = reg.get("5n1").expect("Leeds");
        assert_eq!(leeds.name, "Leeds PCT");
        assert!(leeds.aliases.iter().any(|a| a == "Leeds"), "{:?}", leeds.aliases);
        assert!(leeds.aliases.iter().any(|a| a == "NHS Leeds"), "{:?}", leeds.aliases);
        assert_eq!(reg.get("5HG").map(|o| o.name.as_str()), Some("Ashton, Leigh and Wigan PCT"));
        let tac = reg.get("TAC").expect("Northumberland");
        assert!(tac.aliases.iter().any(|a| a == "NHS Northumberland"), "{:?}", tac.aliases);
        assert!(reg.organisations.iter().all(|o| !o.submitters.is_empty()));
    }

    #[test]
    fn shipped_registry_authorises_only_each_organisations_own_domain() {
        let reg = Registry::from_csv(SHIPPED).expect("loads");
        assert!(reg.is_submitter("5N1", "Ann.Analyst@LEEDS.nhs.test"));
        assert!(!reg.is_submitter("5N1", "ann.analyst@bradford-and-airedale.nhs.test"));
        assert!(!reg.is_submitter("XXX", "ann.analyst@leeds.nhs.test"));
    }

    const SMALL: &str = "code,name,aliases,submitters\n\
        5N1,Leeds PCT,Leeds;NHS Leeds,@leeds.nhs.test;boss@dh.test\n\
        5NY,Bradford and Airedale Teaching PCT,,ann@bradford.nhs.test\n";

    #[test]
    fn domains_match_exactly_and_addresses_match_whole() {
        let reg = Registry::from_csv(SMALL).expect("loads");
        assert!(reg.is_submitter("5n1", " <x.y@Leeds.NHS.test> "));
        assert!(reg.is_submitter("5N1", "BOSS@dh.test"));
        assert!(!reg.is_submitter("5N1", "other@dh.test"));
        assert!(!reg.is_submitter("5N1", "x@mail.leeds.nhs.test"), "subdomains do not match");
        assert!(!reg.is_submitter("5N1", "x@notleeds.nhs.test"));
        assert!(!reg.is_submitter("5N1", "leeds.nhs.test"));
        assert!(reg.is_submitter("5NY", "ann@bradford.nhs.test"));
        assert!(!reg.is_submitter("5NY", "bob@bradford.nhs.test"));
        assert!(!reg.is_submitter("5NY", "x@leeds.nhs.test"), "another organisation's domain");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "code,name,aliases,submitters\n\
            5N1,Leeds PCT,,@leeds.nhs.test\n\
            5n1,Leeds again,,@leeds.nhs.test\n\
            5NY, ,,@bradford.nhs.test\n\
            5HG,Wigan,,@wigan;not an address;a@b@c.test\n\
            5AB,Too few\n";
        let ps: Vec<String> =
            Registry::from_csv(text).expect_err("bad").iter().map(|p| p.to_string()).collect();
        assert_eq!(
            ps,
            vec![
                "line 3: code 5N1 is already on line 2",
                "line 4: organisation 5NY has a blank name",
                "line 5: submitter \"@wigan\" is neither an address (a.b@x.nhs.test) nor a domain (@x.nhs.test)",
                "line 5: submitter \"not an address\" is neither an address (a.b@x.nhs.test) nor a domain (@x.nhs.test)",
                "line 5: submitter \"a@b@c.test\" is neither an address (a.b@x.nhs.test) nor a domain (@x.nhs.test)",
                "line 6: has 2 columns; expected 4 (code,name,aliases,submitters)",
            ]
        );
    }

    #[test]
    fn a_domain_for_two_organisations_or_a_shared_domain_is_refused() {
        let text = "code,name,aliases,submitters\n\
            5N1,Leeds PCT,,@leeds.nhs.test;ann@nhs.net\n\
            5NY,Bradford PCT,,@leeds.nhs.test\n\
            5HG,Wigan PCT,,@nhs.net\n";
        let reg = Registry::from_csv(text).expect("parses");
        let shared = vec!["nhs.net".to_string(), "gmail.com".to_string()];
        let ps: Vec<String> = reg.domain_problems(&shared).iter().map(|p| p.to_string()).collect();
        assert_eq!(ps.len(), 2, "{ps:?}");
        assert!(
            ps[0].starts_with("organisation 5NY: submitter @leeds.nhs.test is also listed for 5N1")
        );
        assert!(ps[1].starts_with("organisation 5HG: submitter @nhs.net is a domain shared"));
        let shipped = Registry::from_csv(SHIPPED).expect("loads");
        assert!(shipped.domain_problems(&shared).is_empty(), "the shipped registry is clean");
    }

    #[test]
    fn wrong_header_is_reported() {
        let ps = Registry::from_csv("code,name\n5N1,Leeds PCT\n").expect_err("bad");
        assert_eq!(ps[0].to_string(), "line 1: the columns must be code,name,aliases,submitters");
    }
}
