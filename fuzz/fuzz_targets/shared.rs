//! What both targets load once: the shipped config, collection definitions and registry, read
//! from the repository so the fuzzers exercise the product's real data.

use iapt_intake::collection::{Collections, Registry};
use iapt_intake::config::Config;
use std::path::{Path, PathBuf};

pub struct Real {
    pub config: Config,
    pub collections: Collections,
    pub registry: Registry,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads the embedded default config and the data it names; panics (at start-up, not on an
/// input) if the repository's files do not load.
pub fn load() -> Real {
    let repo = repo();
    let path = repo.join("config/iapt-intake.toml");
    let config = Config::parse(&path, &read(&path)).expect("the shipped config is valid");
    let dir = repo.join("config/collections");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("config/collections")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), read(&p)))
        .collect();
    files.sort();
    let collections = Collections::from_files(&files).expect("collections load");
    let registry =
        Registry::from_csv(&read(&repo.join("config/organisations.csv"))).expect("registry loads");
    Real { config, collections, registry }
}
