//! The models being served, by name, each with its batching worker.
//!
//! The map sits behind a lock because fine-tune jobs add models at runtime (a promoted model
//! with a new name gets a new worker) while requests read it; a lookup clones the worker's `Arc`
//! and drops the lock at once, so no request holds it across an `await`. Swapping a version of
//! an existing model does not touch the map at all: it goes through [`ModelWorker::swap`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
    workers: RwLock<BTreeMap<String, Arc<ModelWorker>>>,
    default: String,
    config: BatchConfig,
    /// The runtime the workers' batcher tasks run on, so a worker can be added from any thread.
    runtime: tokio::runtime::Handle,
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
            workers: RwLock::new(workers),
            default: default.to_string(),
            config: config.clone(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ModelWorker>>> {
        // A panic while holding the lock cannot leave the map half-updated (every write is one
        // insert), so a poisoned lock is still consistent.
        self.workers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker for `name`, or the default model's with `None`.
    pub fn get(&self, name: Option<&str>) -> Option<Arc<ModelWorker>> {
        self.read().get(name.unwrap_or(&self.default)).cloned()
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Names of the served models, sorted.
    pub fn names(&self) -> std::vec::IntoIter<String> {
        self.read().keys().cloned().collect::<Vec<_>>().into_iter()
    }

    /// A snapshot of the served models and their workers, sorted by name.
    pub fn workers(&self) -> std::vec::IntoIter<(String, Arc<ModelWorker>)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Serves `model`: swaps it into the worker of its name (batches already taken finish on the
    /// old version), or starts a new worker when no model of that name is served yet. Returns the
    /// version that served before, if any. Callable from any thread.
    pub fn serve(&self, model: Arc<LoadedModel>) -> Option<u32> {
        let name = model.name().to_string();
        let mut map = self.workers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(worker) = map.get(&name) {
            let previous = worker.current().version();
            worker.swap(model);
            return Some(previous);
        }
        // A new worker's batcher task must start on the server's runtime, whichever thread
        // promotes.
        let _guard = self.runtime.enter();
        let worker = ModelWorker::spawn_shared(model, self.config.clone());
        map.insert(name, Arc::new(worker));
        None
    }
}
