//! The dispatcher and the body of a job: read its data, train, save a version, promote.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Inner, JobErrorInfo, JobStatus, Progress, ResultModel, RunFlags, interrupted_error};
use crate::model::LoadedModel;
use crate::model::artifact::{Evaluation, ModelParts};
use crate::model::backend;
use crate::train::metrics::evaluate;
use crate::train::{self, Example, Observer, TrainConfig, TrainError, TrainEvent};

/// Progress is written at most this often (every batch would be thousands of writes a second).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Starts queued jobs in order while fewer than `max_concurrent_jobs` run; returns at shutdown.
pub(super) fn dispatch(inner: Arc<Inner>) {
    let max = inner.config.max_concurrent_jobs.max(1);
    let mut s = inner.sched();
    loop {
        if s.shutdown {
            return;
        }
        if s.running.len() < max
            && let Some(id) = s.queue.pop_front()
        {
            // Marked running under the scheduler lock, so a cancel sees either a queued job or a
            // running one, never something in between.
            if let Err(e) = inner.store.transition(
                &id,
                JobStatus::Running,
                None,
                None,
                ("started", "job started", None),
            ) {
                tracing::error!(job = %id, error = %e, "cannot start job");
                continue;
            }
            let flags = Arc::new(RunFlags::default());
            s.running.insert(id.clone(), flags.clone());
            let job_inner = inner.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("train-{id}"))
                .spawn({
                    let id = id.clone();
                    move || {
                        run(&job_inner, &id, &flags);
                        job_inner.sched().running.remove(&id);
                        job_inner.wake.notify_all();
                    }
                });
            if let Err(e) = spawned {
                s.running.remove(&id);
                let error = JobErrorInfo {
                    code: "internal".into(),
                    message: format!("cannot start a training thread: {e}"),
                };
                let _ = inner.store.transition(
                    &id,
                    JobStatus::Failed,
                    Some(&error),
                    None,
                    ("failed", &error.message, None),
                );
            }
            continue;
        }
        s = inner.wake.wait(s).unwrap_or_else(|e| e.into_inner());
    }
}

/// How a run ended, short of success.
enum Stop {
    Cancelled,
    Shutdown,
    Failed(JobErrorInfo),
}

fn fail(code: &str, message: impl Into<String>) -> Stop {
    Stop::Failed(JobErrorInfo {
        code: code.into(),
        message: message.into(),
    })
}

struct Done {
    result: ResultModel,
    evaluation: Option<Evaluation>,
}

/// Runs one job to its end state, whatever happens (a panic in training fails the job).
fn run(inner: &Inner, id: &str, flags: &RunFlags) {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| execute(inner, id, flags)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(fail("internal", format!("training crashed: {message}")))
        });
    let secs = started.elapsed().as_secs_f64();
    let stored = match outcome {
        Ok(done) => {
            let message = match &done.evaluation {
                Some(e) => format!(
                    "succeeded in {secs:.1} s: {} version {}, {} accuracy {:.4}, macro-F1 {:.4}",
                    done.result.model, done.result.version, e.data, e.accuracy, e.macro_f1
                ),
                None => format!(
                    "succeeded in {secs:.1} s: {} version {}",
                    done.result.model, done.result.version
                ),
            };
            tracing::info!(job = %id, "{message}");
            inner.store.transition(
                id,
                JobStatus::Succeeded,
                None,
                Some((&done.result, done.evaluation.as_ref())),
                (
                    "succeeded",
                    &message,
                    Some(json!({"model": done.result.model, "version": done.result.version, "seconds": secs})),
                ),
            )
        }
        Err(Stop::Cancelled) => {
            tracing::info!(job = %id, "cancelled");
            inner.store.transition(
                id,
                JobStatus::Cancelled,
                None,
                None,
                (
                    "cancelled",
                    "cancelled while running; no model version was written",
                    None,
                ),
            )
        }
        Err(Stop::Shutdown) => {
            // The same end as a process that died mid-run (see `JobManager::open`): the
            // client resubmits; no version was written.
            let error = interrupted_error();
            tracing::info!(job = %id, "stopped by shutdown: failed, interrupted");
            inner.store.transition(
                id,
                JobStatus::Failed,
                Some(&error),
                None,
                ("failed", &error.message, Some(json!({"code": error.code}))),
            )
        }
        Err(Stop::Failed(error)) => {
            tracing::warn!(job = %id, code = %error.code, "failed: {}", error.message);
            inner.store.transition(
                id,
                JobStatus::Failed,
                Some(&error),
                None,
                ("failed", &error.message, None),
            )
        }
    };
    if let Err(e) = stored {
        tracing::error!(job = %id, error = %e, "cannot record the end of a job");
    }
}

/// Writes progress, epoch metrics and events to the store; cancels on request.
struct JobObserver<'a> {
    inner: &'a Inner,
    id: &'a str,
    flags: &'a RunFlags,
    progress: Progress,
    last_write: Instant,
}

impl JobObserver<'_> {
    fn log_err(&self, r: Result<(), super::StoreError>) {
        if let Err(e) = r {
            tracing::warn!(job = %self.id, error = %e, "cannot record job progress");
        }
    }
}

impl Observer for JobObserver<'_> {
    fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                examples,
                valid_examples,
                vocab_size,
                labels,
                total_steps,
            } => {
                self.progress.total_steps = *total_steps;
                let message = format!(
                    "training on {examples} examples ({valid_examples} validation), {} labels, vocabulary {vocab_size} rows, {total_steps} steps",
                    labels.len()
                );
                let data = json!({"examples": examples, "validation_examples": valid_examples,
                    "labels": labels, "vocab_size": vocab_size, "total_steps": total_steps});
                let r = self.inner.store.event(
                    self.id,
                    "info",
                    "training_started",
                    &message,
                    Some(data),
                );
                self.log_err(r);
                let r = self.inner.store.set_progress(self.id, &self.progress);
                self.log_err(r);
            }
            TrainEvent::Step {
                epoch,
                step,
                total_steps,
                loss,
                examples_per_sec,
            } => {
                self.progress.epoch = *epoch;
                self.progress.step = *step;
                self.progress.total_steps = *total_steps;
                self.progress.loss = *loss;
                self.progress.examples_per_sec = *examples_per_sec;
                if self.last_write.elapsed() >= PROGRESS_EVERY {
                    self.last_write = Instant::now();
                    let r = self.inner.store.set_progress(self.id, &self.progress);
                    self.log_err(r);
                }
            }
            TrainEvent::EpochFinished(m) => {
                self.progress.epoch = m.epoch;
                self.progress.examples_per_sec = m.examples_per_sec;
                let r = self.inner.store.epoch_finished(self.id, m, &self.progress);
                self.log_err(r);
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.flags.cancel.load(Ordering::SeqCst) || self.flags.shutdown.load(Ordering::SeqCst)
    }
}

fn stopped(flags: &RunFlags) -> Option<Stop> {
    if flags.shutdown.load(Ordering::SeqCst) {
        Some(Stop::Shutdown)
    } else if flags.cancel.load(Ordering::SeqCst) {
        Some(Stop::Cancelled)
    } else {
        None
    }
}

/// Scores `model` on `examples` through the serving inference path.
fn evaluate_on(model: &LoadedModel, examples: &[Example], data: &str) -> Evaluation {
    let device = backend::device();
    let index: std::collections::HashMap<&str, usize> = model
        .labels()
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut gold = Vec::with_capacity(examples.len());
    let mut predicted = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(512) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        for (e, p) in chunk.iter().zip(model.classify(&texts, &device)) {
            if let Some(&g) = index.get(e.label.as_str()) {
                gold.push(g);
                predicted.push(p.best());
            }
        }
    }
    evaluate(data, model.labels(), &gold, &predicted)
}

fn execute(inner: &Inner, id: &str, flags: &RunFlags) -> Result<Done, Stop> {
    let job = inner
        .store
        .get(id)
        .map_err(|e| fail("internal", e.to_string()))?
        .ok_or_else(|| fail("internal", "the job row disappeared"))?;
    let spec = job
        .spec
        .ok_or_else(|| fail("internal", "the job has no spec"))?;
    let read = |rel: &str| {
        train::read_examples(&inner.config.data_dir.join(rel))
            .map_err(|e| fail("data_unreadable", e.to_string()))
    };
    let examples = read(&spec.train_file)?;
    let h = &spec.hyperparameters;
    let defaults = TrainConfig::default();
    let config = TrainConfig {
        epochs: h.epochs.unwrap_or(defaults.epochs),
        learning_rate: h.learning_rate.unwrap_or(defaults.learning_rate),
        batch_size: h.batch_size.unwrap_or(defaults.batch_size),
        seed: h.seed.unwrap_or(defaults.seed),
        ..defaults
    };
    let (train_set, valid_set, valid_name) = match &spec.validation_file {
        Some(f) => (examples, Some(read(f)?), "validation examples".to_string()),
        None if spec.validation_split > 0.0 && examples.len() >= super::MIN_EXAMPLES_FOR_SPLIT => {
            let (t, v) = train::stratified_split(&examples, spec.validation_split, config.seed);
            let name = format!(
                "stratified {:.0}% of the training examples (seed {})",
                spec.validation_split * 100.0,
                config.seed
            );
            if v.is_empty() {
                (t, None, String::new())
            } else {
                (t, Some(v), name)
            }
        }
        None => (examples, None, String::new()),
    };
    let base = match &spec.base_model {
        Some(name) => Some(
            inner
                .registry
                .get(Some(name))
                .ok_or_else(|| {
                    fail(
                        "base_model_unavailable",
                        format!("base model {name:?} is no longer served"),
                    )
                })?
                .current(),
        ),
        None => None,
    };
    let mut observer = JobObserver {
        inner,
        id,
        flags,
        progress: Progress {
            epochs: config.epochs,
            ..Default::default()
        },
        last_write: Instant::now(),
    };
    let output = match train::train(
        &config,
        &train_set,
        valid_set.as_deref(),
        base.as_deref(),
        &mut observer,
    ) {
        Ok(o) => o,
        Err(TrainError::Cancelled) => return Err(stopped(flags).unwrap_or(Stop::Cancelled)),
        Err(TrainError::InvalidData(m)) => return Err(fail("invalid_data", m)),
    };
    // The last moment a cancel can still prevent a version.
    if let Some(stop) = stopped(flags) {
        return Err(stop);
    }

    let (version, dir) = {
        let _g = inner.version_lock.lock().unwrap_or_else(|e| e.into_inner());
        let version = inner.models.next_version(&spec.model);
        let mut manifest = output.manifest(&spec.model, version);
        manifest.training.train_data = vec![format!("train-job {id}")];
        manifest.training.validation_data = valid_set.as_ref().map(|_| valid_name.clone());
        manifest.training.command = Some(format!("POST /train-job ({id})"));
        if let Some(v) = &output.validation {
            let mut v = v.clone();
            v.data = valid_name.clone();
            manifest.metrics.insert("validation".into(), v);
        }
        inner
            .models
            .save(
                &spec.model,
                version,
                ModelParts {
                    manifest,
                    vocab: &output.vocab,
                    network: output.network,
                },
            )
            .map_err(|e| fail("save_failed", e.to_string()))?;
        (version, inner.models.dir(&spec.model, version))
    };
    let r = inner.store.event(
        id,
        "info",
        "checkpoint_written",
        &format!("wrote {} version {version}", spec.model),
        Some(json!({"model": spec.model, "version": version, "dir": dir.display().to_string()})),
    );
    if let Err(e) = r {
        tracing::warn!(job = %id, error = %e, "cannot record an event");
    }

    // Reload what was written (checks every checksum) and evaluate it through the same inference
    // path the server uses.
    let model = LoadedModel::load(&dir, &backend::device()).map_err(|e| {
        fail(
            "save_failed",
            format!("the written version does not load: {e}"),
        )
    })?;
    let evaluation = match &valid_set {
        Some(v) => Some(evaluate_on(&model, v, &valid_name)),
        None => Some(evaluate_on(
            &model,
            &train_set,
            "training examples (too few for a validation split)",
        )),
    };
    if spec.promote {
        match inner.promote(&spec.model, version) {
            Ok(p) => {
                let _ = inner.store.event(
                    id,
                    "info",
                    "promoted",
                    &format!("{} version {version} now serves", spec.model),
                    serde_json::to_value(&p).ok(),
                );
            }
            Err(e) => {
                let _ = inner.store.event(
                    id,
                    "warn",
                    "promotion_failed",
                    &format!("could not promote {} version {version}: {e}", spec.model),
                    None,
                );
            }
        }
    }
    Ok(Done {
        result: ResultModel {
            model: spec.model,
            version,
        },
        evaluation,
    })
}
