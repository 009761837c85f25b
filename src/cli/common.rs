//! What several commands load: the config, the collection definitions and the registry.

use crate::collection::{Collections, Registry};
use crate::config::{Config, DEFAULT_PATH};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The config plus the collection data it points to.
pub struct Loaded {
    pub config: Config,
    pub collections: Collections,
    pub registry: Registry,
}

pub fn config(path: Option<&Path>) -> anyhow::Result<Config> {
    let path = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    Ok(Config::load(&path)?)
}

pub fn load(path: Option<&Path>) -> anyhow::Result<Loaded> {
    let config = config(path)?;
    let collections = collections(&config.collection.definitions)?;
    let registry = registry(&config.collection.organisations, &config.auth.shared_domains)?;
    Ok(Loaded { config, collections, registry })
}

fn collections(dir: &Path) -> anyhow::Result<Collections> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read collection definitions in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push((name, text));
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no collection definitions (*.toml) in {}", dir.display());
    }
    Collections::from_files(&files).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!("collection definitions have problems:\n{}", list.join("\n"))
    })
}

/// The registry, refused with every problem listed when a line is wrong or a domain entry could
/// let one organisation's mail stand for another's (SPEC §4a).
fn registry(path: &Path, shared_domains: &[String]) -> anyhow::Result<Registry> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read organisation registry {}", path.display()))?;
    let registry = Registry::from_csv(&text);
    let problems = match &registry {
        Ok(r) => r.domain_problems(shared_domains),
        Err(problems) => problems.clone(),
    };
    if problems.is_empty() {
        if let Ok(r) = registry {
            return Ok(r);
        }
    }
    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::bail!("{} has problems:\n{}", path.display(), list.join("\n"))
}

/// The reply templates from the configured directory (every `*.txt`), checked all at once.
pub fn templates(dir: &Path) -> anyhow::Result<crate::reply::Templates> {
    let mut pairs = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read reply templates in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            pairs.push((name, text));
        }
    }
    crate::reply::Templates::from_pairs(pairs)
        .with_context(|| format!("reply templates in {}", dir.display()))
}

/// Everything the pipeline needs, loaded and checked before the first message is touched.
pub fn env(path: Option<&Path>) -> anyhow::Result<crate::pipeline::Env> {
    let Loaded { config, collections, registry } = load(path)?;
    let templates = templates(&config.outbound.templates)?;
    let env = crate::pipeline::Env::new(config, collections, registry, templates);
    if env.config.auth.require == crate::auth::Require::None {
        tracing::warn!(
            "[auth] require = \"none\": returns are accepted without evidence of who sent them; \
             only for a mailbox behind a relay that admits the providers alone"
        );
    }
    env.with_dkim().context("[auth] dns: cannot set up the DNS resolver for DKIM")
}

/// The SQLite store of the config, creating its directories on first use.
pub fn open_store(config: &Config) -> anyhow::Result<crate::store::SqliteStore> {
    for dir in
        [config.store.path.parent(), Some(config.store.blobs.as_path())].into_iter().flatten()
    {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    crate::store::SqliteStore::open(&config.store.path, &config.store.blobs)
        .with_context(|| format!("cannot open the store {}", config.store.path.display()))
}

/// The reporting period a command means when none is given: the one open now, else the latest.
pub fn default_period(
    collections: &Collections,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<crate::collection::PeriodId> {
    use crate::collection::Window;
    let all = || collections.iter().flat_map(|d| d.periods.iter());
    all()
        .filter(|p| matches!(p.window(now), Window::OnTime | Window::Late))
        .map(|p| p.id)
        .max()
        .or_else(|| all().filter(|p| p.opens <= now).map(|p| p.id).max())
        .or_else(|| all().map(|p| p.id).max())
}

pub fn parse_period(p: &str) -> anyhow::Result<crate::collection::PeriodId> {
    crate::collection::PeriodId::parse(p)
        .ok_or_else(|| anyhow::anyhow!("'{p}' is not a period such as 2011-12-Q1"))
}

/// The configured reply transport; for SMTP with XOAUTH2, fed by the token command.
pub fn transport(config: &Config) -> anyhow::Result<Box<dyn crate::outbound::Transport>> {
    use crate::config::{Credential, Transport};
    let tokens: Option<std::sync::Arc<dyn crate::outbound::smtp::TokenProvider>> =
        match &config.outbound.transport {
            Transport::Smtp(smtp) => match &smtp.credential {
                Some(Credential::TokenCommand(cmd)) => {
                    Some(std::sync::Arc::new(crate::oauth2::TokenSource::new(cmd.clone())))
                }
                _ => None,
            },
            _ => None,
        };
    crate::outbound::transport_with_tokens(&config.outbound, tokens)
        .map_err(|e| anyhow::anyhow!("outbound transport: {e}"))
}
