//! Model versions on disk.
//!
//! The shipped models (`--models-dir`, e.g. `models/news-zh`) are version 1 of their name (or
//! whatever version their manifest says); every version a job trains lives at
//! `<data_dir>/models/<name>/<version>/`, written atomically by [`artifact::save`] (temporary
//! directory, fsync, rename), so a directory without a leading dot is always a whole version.
//! Versions are immutable; the next one is 1 + the highest known for the name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::artifact::{self, MANIFEST_FILE, Manifest};

/// Headline figures of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MetricSummary {
    pub data: String,
    pub examples: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// One version of a model, as `GET /models` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: u32,
    /// `shipped` (from the models directory) or `trained` (by a job).
    pub source: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    pub labels: Vec<String>,
    pub train_examples: u64,
    pub base_model: Option<String>,
    /// Evaluations made when it was trained, by name (`validation`, `test`).
    pub metrics: BTreeMap<String, MetricSummary>,
    #[serde(skip)]
    #[schema(ignore)]
    pub dir: PathBuf,
}

/// Where versions are found.
#[derive(Clone, Debug)]
pub struct ModelStore {
    shipped_dir: PathBuf,
    root: PathBuf,
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let raw = std::fs::read(dir.join(MANIFEST_FILE)).ok()?;
    serde_json::from_slice(&raw).ok()
}

fn info(manifest: Manifest, source: &'static str, dir: PathBuf) -> VersionInfo {
    VersionInfo {
        version: manifest.version,
        source,
        created_at: manifest.created_at,
        labels: manifest.labels,
        train_examples: manifest.training.train_examples,
        base_model: manifest.training.base_model,
        metrics: manifest
            .metrics
            .into_iter()
            .map(|(k, e)| {
                (
                    k,
                    MetricSummary {
                        data: e.data,
                        examples: e.examples,
                        accuracy: e.accuracy,
                        macro_f1: e.macro_f1,
                    },
                )
            })
            .collect(),
        dir,
    }
}

/// Only `[a-z0-9_-]`, 1–64 characters: a name is used as a directory name, so nothing that
/// could climb out of the model store (`..`, `/`) or differ only by case may pass.
pub fn valid_model_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl ModelStore {
    pub fn new(shipped_dir: &Path, data_dir: &Path) -> Self {
        ModelStore {
            shipped_dir: shipped_dir.to_path_buf(),
            root: data_dir.join("models"),
        }
    }

    /// Where version `version` of `name` is (or will be) written.
    pub fn dir(&self, name: &str, version: u32) -> PathBuf {
        self.root.join(name).join(version.to_string())
    }

    /// Every known version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<VersionInfo> {
        let mut out: BTreeMap<u32, VersionInfo> = BTreeMap::new();
        // Names come from URLs: one that is not a model name never reaches the filesystem.
        if !valid_model_name(name) {
            return Vec::new();
        }
        if let Ok(entries) = std::fs::read_dir(&self.shipped_dir) {
            for e in entries.flatten() {
                if let Some(m) = read_manifest(&e.path())
                    && m.name == name
                {
                    out.insert(m.version, info(m, "shipped", e.path()));
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.root.join(name)) {
            for e in entries.flatten() {
                let file_name = e.file_name().to_string_lossy().into_owned();
                // Temporary directories of an unfinished save start with a dot and never parse.
                let Ok(version) = file_name.parse::<u32>() else {
                    continue;
                };
                if let Some(m) = read_manifest(&e.path())
                    && m.name == name
                    && m.version == version
                {
                    out.insert(version, info(m, "trained", e.path()));
                }
            }
        }
        out.into_values().collect()
    }

    pub fn version(&self, name: &str, version: u32) -> Option<VersionInfo> {
        self.versions(name)
            .into_iter()
            .find(|v| v.version == version)
    }

    /// 1 + the highest version known for `name` (1 for a new name).
    pub fn next_version(&self, name: &str) -> u32 {
        self.versions(name).last().map_or(1, |v| v.version + 1)
    }

    /// Names with at least one version: shipped or trained.
    pub fn names(&self) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(&self.shipped_dir) {
            for e in entries.flatten() {
                if let Some(m) = read_manifest(&e.path()) {
                    names.insert(m.name);
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if valid_model_name(&n) && !self.versions(&n).is_empty() {
                    names.insert(n);
                }
            }
        }
        names.into_iter().collect()
    }

    /// Writes a new version (see [`artifact::save`]).
    pub fn save(
        &self,
        name: &str,
        version: u32,
        parts: artifact::ModelParts<'_>,
    ) -> Result<Manifest, artifact::ArtifactError> {
        artifact::save(&self.dir(name, version), parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_restricted_to_safe_directory_names() {
        for ok in ["news-zh", "a", "spam_v2", &"x".repeat(64)] {
            assert!(valid_model_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "News",
            "a b",
            "ü",
            ".hidden",
            &"x".repeat(65),
        ] {
            assert!(!valid_model_name(bad), "{bad}");
        }
    }

    #[test]
    fn shipped_model_counts_as_version_one() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let data = tempfile::tempdir().unwrap();
        let store = ModelStore::new(&models, data.path());
        let v = store.versions("news-zh");
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].version, v[0].source), (1, "shipped"));
        assert!(v[0].metrics["test"].accuracy > 0.85);
        assert_eq!(store.next_version("news-zh"), 2);
        assert_eq!(store.next_version("brand-new"), 1);
        assert!(store.names().contains(&"newsgroups-en".to_string()));
        // A leftover temporary directory is not a version.
        std::fs::create_dir_all(data.path().join("models/news-zh/.2.tmp-1")).unwrap();
        assert_eq!(store.next_version("news-zh"), 2);
    }
}
