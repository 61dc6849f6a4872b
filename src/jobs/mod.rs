//! Fine-tune jobs: submit labelled examples, get a trained, evaluated, versioned model.
//!
//! No web framework here: [`JobManager`] is the whole API and `src/http/jobs.rs` only translates.
//!
//! - **Accepted means persisted.** [`JobManager::submit`] validates the request, writes the
//!   examples under `<data_dir>/jobs/<id>/` (fsynced) and commits the job row before it returns,
//!   so a job that got its 202 survives any crash after that.
//! - **Scheduling.** A dispatcher thread starts queued jobs in FIFO order, at most
//!   `max_concurrent_jobs` at once; each runs on its own OS thread (never a tokio thread, never an
//!   inference worker) and reports through an [`Observer`](crate::train::Observer) that writes
//!   progress, epoch metrics and events to the store and stops the run within one batch when
//!   cancelled.
//! - **Restart.** A job found `running` at startup died with the process: it becomes `failed`
//!   with code `interrupted`. Queued jobs are queued again in their order. A graceful
//!   shutdown ([`JobManager::begin_shutdown`]) stops running jobs within one batch and ends
//!   them the same way, `failed`/`interrupted` with no version written: the client resubmits.
//! - **Versions.** A succeeded job writes a new immutable version (see [`versions`]); it serves
//!   only once promoted ([`JobManager::promote`], or `promote: true` in the job). Which version
//!   serves is persisted and restored at startup.

mod runner;
pub mod store;
pub mod versions;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use crate::model::LoadedModel;
use crate::model::artifact::ArtifactError;
use crate::model::backend;
use crate::serve::ModelRegistry;
use crate::train::Example;

pub use store::{
    Hyperparameters, Job, JobErrorInfo, JobEvent, JobSpec, JobStatus, Progress, ResultModel, Store,
    StoreError,
};
pub use versions::{ModelStore, VersionInfo, valid_model_name};

/// Settings of the job system.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Holds `jobs.sqlite3`, `jobs/<id>/` (uploaded data) and `models/<name>/<version>/`.
    pub data_dir: PathBuf,
    /// The shipped models (version 1 of their names).
    pub models_dir: PathBuf,
    pub max_concurrent_jobs: usize,
    /// Most examples (training + validation) in one job.
    pub max_train_examples: usize,
    /// Largest `POST /train-job` body (enforced by the HTTP layer; reported here for `/info`).
    pub max_train_body_bytes: usize,
}

impl JobsConfig {
    pub fn new(data_dir: &Path, models_dir: &Path) -> Self {
        JobsConfig {
            data_dir: data_dir.to_path_buf(),
            models_dir: models_dir.to_path_buf(),
            max_concurrent_jobs: 1,
            max_train_examples: 200_000,
            max_train_body_bytes: 64 << 20,
        }
    }
}

/// A job as submitted, before validation.
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    pub model: String,
    pub base_model: Option<String>,
    pub examples: Vec<Example>,
    pub validation_examples: Option<Vec<Example>>,
    /// Fraction held out (stratified, seeded) when no validation examples are given; default 0.1.
    pub validation_split: Option<f64>,
    pub hyperparameters: Hyperparameters,
    pub promote: bool,
}

/// Held-out fraction when a job names none.
pub const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;
/// Fewer training examples than this: no validation split (it would be too small to mean much).
pub const MIN_EXAMPLES_FOR_SPLIT: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Invalid(String),
    #[error("{given} examples given; at most {limit} are allowed per job")]
    TooManyExamples { given: usize, limit: usize },
    #[error("no served model named {0:?} to fine-tune from; served models: {1:?}")]
    BaseModelNotFound(String, Vec<String>),
    #[error("no job with id {0:?}")]
    NotFound(String),
    #[error(
        "job {id} has already finished ({status}); only queued or running jobs can be cancelled"
    )]
    AlreadyFinished { id: String, status: &'static str },
    #[error("no model named {0:?}")]
    ModelNotFound(String),
    #[error("model {name:?} has no version {version}; it has {known:?}")]
    VersionNotFound {
        name: String,
        version: u32,
        known: Vec<u32>,
    },
    #[error("the job system is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// What a promotion did.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Promoted {
    pub model: String,
    pub version: u32,
    /// The version that served before (`None`: the model was not served).
    pub previous_version: Option<u32>,
}

/// A version in `GET /models`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ModelVersionView {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub serving: bool,
}

/// A model in `GET /models`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ModelView {
    pub name: String,
    /// The version answering `/classify`, if the model is served.
    pub serving_version: Option<u32>,
    /// The model `/classify` uses when a request names none.
    pub default: bool,
    pub versions: Vec<ModelVersionView>,
}

/// Cancel/shutdown flags of a running job.
#[derive(Default)]
struct RunFlags {
    cancel: AtomicBool,
    shutdown: AtomicBool,
}

#[derive(Default)]
struct Sched {
    queue: VecDeque<String>,
    running: HashMap<String, Arc<RunFlags>>,
    shutdown: bool,
}

struct Inner {
    config: JobsConfig,
    store: Store,
    models: ModelStore,
    registry: Arc<ModelRegistry>,
    sched: Mutex<Sched>,
    /// Signalled when the queue grows, a job ends or shutdown begins.
    wake: Condvar,
    /// Serialises promotions (load + persist + swap) and version allocation + save.
    promote_lock: Mutex<()>,
    version_lock: Mutex<()>,
}

impl Inner {
    fn sched(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load_version(&self, name: &str, version: u32) -> Result<LoadedModel, JobError> {
        let versions = self.models.versions(name);
        if versions.is_empty() {
            return Err(JobError::ModelNotFound(name.into()));
        }
        let Some(v) = versions.iter().find(|v| v.version == version) else {
            return Err(JobError::VersionNotFound {
                name: name.into(),
                version,
                known: versions.iter().map(|v| v.version).collect(),
            });
        };
        Ok(LoadedModel::load(&v.dir, &backend::device())?)
    }

    fn promote(&self, name: &str, version: u32) -> Result<Promoted, JobError> {
        let _g = self.promote_lock.lock().unwrap_or_else(|e| e.into_inner());
        let model = self.load_version(name, version)?;
        self.store.set_serving(name, version)?;
        let previous_version = self.registry.serve(Arc::new(model));
        tracing::info!(model = %name, version, ?previous_version, "promoted");
        Ok(Promoted {
            model: name.into(),
            version,
            previous_version,
        })
    }
}

/// The job system's handle; cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> JobError {
    JobError::Io(format!("{what} {}: {e}", path.display()))
}

/// Writes examples as JSONL and fsyncs the file.
fn write_examples(path: &Path, examples: &[Example]) -> Result<(), JobError> {
    let mut buf = Vec::with_capacity(examples.len() * 64);
    for e in examples {
        serde_json::to_writer(&mut buf, e).expect("an example serialises. This is a bug.");
        buf.push(b'\n');
    }
    let mut f = std::fs::File::create(path).map_err(|e| io_error("cannot create", path, e))?;
    f.write_all(&buf)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_error("cannot write", path, e))
}

fn check_examples(examples: &[Example], field: &str) -> Result<(), JobError> {
    for (i, e) in examples.iter().enumerate() {
        if e.text.trim().is_empty() {
            return Err(JobError::Invalid(format!("{field}[{i}].text is empty")));
        }
        if e.label.trim().is_empty() {
            return Err(JobError::Invalid(format!("{field}[{i}].label is empty")));
        }
        let chars = e.label.trim().chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(JobError::Invalid(format!(
                "{field}[{i}].label has {chars} characters; a label may have at most {MAX_LABEL_CHARS}"
            )));
        }
    }
    Ok(())
}

/// Labels are names (they go into every manifest and every answer), not documents.
const MAX_LABEL_CHARS: usize = 200;

fn check_hyperparameters(h: &Hyperparameters) -> Result<(), JobError> {
    if let Some(e) = h.epochs
        && !(1..=1000).contains(&e)
    {
        return Err(JobError::Invalid(format!(
            "hyperparameters.epochs must be 1 to 1000, got {e}"
        )));
    }
    if let Some(lr) = h.learning_rate
        && !(lr > 0.0 && lr <= 1.0)
    {
        return Err(JobError::Invalid(format!(
            "hyperparameters.learning_rate must be in (0, 1], got {lr}"
        )));
    }
    if let Some(b) = h.batch_size
        && !(1..=65_536).contains(&b)
    {
        return Err(JobError::Invalid(format!(
            "hyperparameters.batch_size must be 1 to 65536, got {b}"
        )));
    }
    Ok(())
}

/// The error of a job that was running when the server stopped, gracefully or not.
fn interrupted_error() -> JobErrorInfo {
    JobErrorInfo {
        code: "interrupted".into(),
        message:
            "the server stopped while this job was running; no version was written, submit it again"
                .into(),
    }
}

impl JobManager {
    /// Opens the store under `config.data_dir`, recovers jobs left by the previous process,
    /// restores which versions serve, and starts the dispatcher. Call inside the server's tokio
    /// runtime context is not required: promotions start workers through the registry's handle.
    pub fn open(config: JobsConfig, registry: Arc<ModelRegistry>) -> Result<Self, JobError> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir.join("jobs"))
            .map_err(|e| io_error("cannot create", data_dir, e))?;
        let store = Store::open(&data_dir.join("jobs.sqlite3"))?;
        let models = ModelStore::new(&config.models_dir, data_dir);
        let inner = Arc::new(Inner {
            config,
            store,
            models,
            registry,
            sched: Mutex::new(Sched::default()),
            wake: Condvar::new(),
            promote_lock: Mutex::new(()),
            version_lock: Mutex::new(()),
        });
        for id in inner.store.ids_with_status(JobStatus::Running)? {
            let error = interrupted_error();
            inner.store.transition(
                &id,
                JobStatus::Failed,
                Some(&error),
                None,
                ("failed", &error.message, None),
            )?;
            tracing::warn!(job = %id, "job was running when the process died: marked interrupted");
        }
        let queued = inner.store.ids_with_status(JobStatus::Queued)?;
        if !queued.is_empty() {
            tracing::info!(jobs = queued.len(), "re-queued jobs from the previous run");
        }
        inner.sched().queue.extend(queued);
        let manager = JobManager { inner };
        manager.restore_serving();
        let inner = manager.inner.clone();
        std::thread::Builder::new()
            .name("job-dispatcher".into())
            .spawn(move || runner::dispatch(inner))
            .map_err(|e| JobError::Io(format!("cannot start the job dispatcher: {e}")))?;
        Ok(manager)
    }

    pub fn config(&self) -> &JobsConfig {
        &self.inner.config
    }

    /// Puts the persisted serving versions back into the registry. A version that no longer
    /// loads is skipped with a warning (the shipped version keeps serving) rather than stopping
    /// the server.
    fn restore_serving(&self) {
        let serving = match self.inner.store.serving() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the serving versions");
                return;
            }
        };
        for (name, version) in serving {
            let current = self.inner.registry.get(Some(&name));
            if current.is_some_and(|w| w.current().version() == version) {
                continue;
            }
            match self.inner.load_version(&name, version) {
                Ok(model) => {
                    self.inner.registry.serve(Arc::new(model));
                    tracing::info!(model = %name, version, "restored serving version");
                }
                Err(e) => {
                    tracing::error!(model = %name, version, error = %e, "cannot restore serving version")
                }
            }
        }
    }

    /// Validates and persists a job, then queues it. Returns the job as stored (`queued`).
    pub fn submit(&self, job: NewJob) -> Result<Job, JobError> {
        let cfg = &self.inner.config;
        if !valid_model_name(&job.model) {
            return Err(JobError::Invalid(format!(
                "model name {:?} is invalid: use 1 to 64 characters from a-z, 0-9, '-' and '_'",
                job.model
            )));
        }
        if job.examples.is_empty() {
            return Err(JobError::Invalid(
                "no training examples; send at least two labels' worth".into(),
            ));
        }
        let total = job.examples.len() + job.validation_examples.as_ref().map_or(0, |v| v.len());
        if total > cfg.max_train_examples {
            return Err(JobError::TooManyExamples {
                given: total,
                limit: cfg.max_train_examples,
            });
        }
        check_examples(&job.examples, "examples")?;
        let labels: BTreeSet<&str> = job.examples.iter().map(|e| e.label.trim()).collect();
        if labels.len() < 2 {
            return Err(JobError::Invalid(format!(
                "the training examples have only one label ({:?}); a classifier needs at least 2",
                labels.first().copied().unwrap_or_default()
            )));
        }
        if let Some(valid) = &job.validation_examples {
            if valid.is_empty() {
                return Err(JobError::Invalid(
                    "validation_examples is empty; omit it to split the training data".into(),
                ));
            }
            check_examples(valid, "validation_examples")?;
            if let Some(e) = valid.iter().find(|e| !labels.contains(e.label.trim())) {
                return Err(JobError::Invalid(format!(
                    "validation label {:?} does not occur in the training examples",
                    e.label
                )));
            }
        }
        let validation_split = job.validation_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
        if !(0.0..=0.5).contains(&validation_split) {
            return Err(JobError::Invalid(format!(
                "validation_split must be between 0 and 0.5, got {validation_split}"
            )));
        }
        check_hyperparameters(&job.hyperparameters)?;
        if let Some(base) = &job.base_model
            && self.inner.registry.get(Some(base)).is_none()
        {
            return Err(JobError::BaseModelNotFound(
                base.clone(),
                self.inner.registry.names().collect(),
            ));
        }
        if self.inner.sched().shutdown {
            return Err(JobError::ShuttingDown);
        }

        let id = format!("ftjob-{:016x}", rand::random::<u64>());
        let rel_dir = PathBuf::from("jobs").join(&id);
        let dir = cfg.data_dir.join(&rel_dir);
        std::fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, e))?;
        let trim = |xs: Vec<Example>| -> Vec<Example> {
            xs.into_iter()
                .map(|e| Example {
                    label: e.label.trim().to_string(),
                    text: e.text,
                })
                .collect()
        };
        let train_file = rel_dir.join("train.jsonl");
        write_examples(&cfg.data_dir.join(&train_file), &trim(job.examples.clone()))?;
        let validation_file = match job.validation_examples.clone() {
            Some(v) => {
                let f = rel_dir.join("validation.jsonl");
                write_examples(&cfg.data_dir.join(&f), &trim(v))?;
                Some(f)
            }
            None => None,
        };
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("cannot sync", &dir, e))?;
        let spec = JobSpec {
            model: job.model,
            base_model: job.base_model,
            hyperparameters: job.hyperparameters,
            validation_split,
            promote: job.promote,
            train_examples: job.examples.len() as u64,
            validation_examples: job.validation_examples.map_or(0, |v| v.len() as u64),
            train_file: train_file.to_string_lossy().into_owned(),
            validation_file: validation_file.map(|f| f.to_string_lossy().into_owned()),
        };
        self.inner.store.insert_job(&id, &spec, Utc::now())?;
        // Read back before queueing: the answer shows the job as accepted (`queued`), even if the
        // dispatcher starts it a moment later.
        let job = self.get(&id)?;
        {
            let mut s = self.inner.sched();
            s.queue.push_back(id.clone());
        }
        self.inner.wake.notify_all();
        tracing::info!(job = %id, model = %spec.model, examples = spec.train_examples, "job queued");
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Result<Job, JobError> {
        self.inner
            .store
            .get(id)?
            .ok_or_else(|| JobError::NotFound(id.into()))
    }

    /// Newest first; see [`Store::list`].
    pub fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Job>, bool), JobError> {
        // A cursor that names no job would silently restart the listing from the newest job.
        if let Some(id) = after
            && self.inner.store.get(id)?.is_none()
        {
            return Err(JobError::Invalid(format!(
                "after = {id:?} names no job; pass the last id of the previous page"
            )));
        }
        Ok(self.inner.store.list(status, limit, after)?)
    }

    pub fn events(&self, id: &str) -> Result<Vec<JobEvent>, JobError> {
        self.get(id)?;
        Ok(self.inner.store.events(id)?)
    }

    /// Cancels a job: a queued one never starts; a running one stops within one batch, and this
    /// waits (up to `wait`) for it to stop. Blocking: call off the async runtime.
    pub fn cancel(&self, id: &str, wait: Duration) -> Result<Job, JobError> {
        let mut s = self.inner.sched();
        let job = self.get(id)?;
        if job.status.is_finished() {
            return Err(JobError::AlreadyFinished {
                id: id.into(),
                status: job.status.as_str(),
            });
        }
        if let Some(pos) = s.queue.iter().position(|q| q == id) {
            s.queue.remove(pos);
            self.inner.store.transition(
                id,
                JobStatus::Cancelled,
                None,
                None,
                ("cancelled", "cancelled before it started", None),
            )?;
            drop(s);
            return self.get(id);
        }
        if let Some(flags) = s.running.get(id) {
            flags.cancel.store(true, Ordering::SeqCst);
            let until = Instant::now() + wait;
            while s.running.contains_key(id) {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = self
                    .inner
                    .wake
                    .wait_timeout(s, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        drop(s);
        self.get(id)
    }

    /// Serves `version` of `name` (loading it first, so requests never wait on a load), and
    /// records the choice so it survives a restart. Requests in flight finish on the old
    /// version. Blocking: call off the async runtime.
    pub fn promote(&self, name: &str, version: u32) -> Result<Promoted, JobError> {
        self.inner.promote(name, version)
    }

    /// Every model that is served or has a version on disk, with its versions.
    pub fn models(&self) -> Vec<ModelView> {
        let mut names: BTreeSet<String> = self.inner.models.names().into_iter().collect();
        names.extend(self.inner.registry.names());
        names
            .into_iter()
            .map(|name| {
                let serving_version = self
                    .inner
                    .registry
                    .get(Some(&name))
                    .map(|w| w.current().version());
                let versions = self
                    .inner
                    .models
                    .versions(&name)
                    .into_iter()
                    .map(|info| ModelVersionView {
                        serving: Some(info.version) == serving_version,
                        info,
                    })
                    .collect();
                ModelView {
                    default: name == self.inner.registry.default_name(),
                    name,
                    serving_version,
                    versions,
                }
            })
            .collect()
    }

    /// Stops taking jobs and tells running jobs to stop (within one batch); returns at once.
    /// A job stopped this way ends `failed` with code `interrupted` and writes no version, as
    /// if the process had died under it; queued jobs stay queued for the next start.
    pub fn begin_shutdown(&self) {
        let mut s = self.inner.sched();
        s.shutdown = true;
        for flags in s.running.values() {
            flags.shutdown.store(true, Ordering::SeqCst);
        }
        self.inner.wake.notify_all();
    }

    /// [`JobManager::begin_shutdown`], then waits up to `wait` for the running jobs to record
    /// their end.
    pub fn shutdown(&self, wait: Duration) {
        self.begin_shutdown();
        let mut s = self.inner.sched();
        let until = Instant::now() + wait;
        while !s.running.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(jobs = s.running.len(), "jobs still running at shutdown");
                break;
            }
            s = self
                .inner
                .wake
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Jobs per status, for the `textclf_train_jobs` gauge.
    pub fn count_by_status(&self) -> Result<Vec<(JobStatus, u64)>, JobError> {
        Ok(self.inner.store.count_by_status()?)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.inner.sched().running.len()
    }
}
