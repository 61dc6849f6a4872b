//! The models being served, by name, each with its batching worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::LoadedModel;
use crate::model::artifact::{ArtifactError, MANIFEST_FILE};
use crate::model::backend;
use crate::serve::worker::{BatchConfig, ModelWorker};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: cannot list model directories: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("no models found under {0} (each model is a directory holding a manifest.json)")]
    Empty(PathBuf),
    #[error("default model {name:?} is not among the loaded models {loaded:?}")]
    NoDefault { name: String, loaded: Vec<String> },
    #[error("two model directories declare the same name {name:?}: {a} and {b}")]
    Duplicate {
        name: String,
        a: PathBuf,
        b: PathBuf,
    },
}

/// Loaded models and their workers.
pub struct ModelRegistry {
    workers: BTreeMap<String, Arc<ModelWorker>>,
    default: String,
}

impl ModelRegistry {
    /// Loads every model directory directly under `dir` (sorted, so startup is deterministic).
    pub fn load_dir(dir: &Path) -> Result<Vec<LoadedModel>, RegistryError> {
        let list_err = |source| RegistryError::List {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(list_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(MANIFEST_FILE).is_file())
            .collect();
        paths.sort();
        let device = backend::device();
        let mut models: Vec<LoadedModel> = Vec::new();
        for p in paths {
            let m = LoadedModel::load(&p, &device)?;
            if let Some(other) = models.iter().find(|o| o.name() == m.name()) {
                return Err(RegistryError::Duplicate {
                    name: m.name().into(),
                    a: other.dir.clone(),
                    b: p,
                });
            }
            models.push(m);
        }
        if models.is_empty() {
            return Err(RegistryError::Empty(dir.to_path_buf()));
        }
        Ok(models)
    }

    /// Starts one worker per model. Must run inside a tokio runtime.
    pub fn start(
        models: Vec<LoadedModel>,
        default: &str,
        config: &BatchConfig,
    ) -> Result<Self, RegistryError> {
        let loaded: Vec<String> = models.iter().map(|m| m.name().to_string()).collect();
        if !loaded.iter().any(|n| n == default) {
            return Err(RegistryError::NoDefault {
                name: default.into(),
                loaded,
            });
        }
        let workers = models
            .into_iter()
            .map(|m| {
                (
                    m.name().to_string(),
                    Arc::new(ModelWorker::spawn(m, config.clone())),
                )
            })
            .collect();
        Ok(ModelRegistry {
            workers,
            default: default.to_string(),
        })
    }

    /// The worker for `name`, or the default model's with `None`.
    pub fn get(&self, name: Option<&str>) -> Option<&Arc<ModelWorker>> {
        self.workers.get(name.unwrap_or(&self.default))
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.workers.keys().map(|s| s.as_str())
    }

    pub fn workers(&self) -> impl Iterator<Item = (&str, &Arc<ModelWorker>)> {
        self.workers.iter().map(|(k, v)| (k.as_str(), v))
    }
}
