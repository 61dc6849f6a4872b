//! One batching worker per model.
//!
//! Handlers hand a [`ClassifyJob`] (its texts plus a oneshot reply channel) to a bounded tokio
//! mpsc channel. An async batcher task collects jobs and passes them, as one batch of at most
//! `max_batch_size` texts, to an OS thread that owns inference as soon as that thread is idle
//! (see [`batch_jobs`]). The thread drops jobs whose client has gone or whose deadline has
//! passed, tokenises and pads the rest and runs one forward pass for all of them, then answers
//! each job; jobs that asked for explanations go on to an explanation thread of the same model,
//! so they never hold up the next batch. Async code only routes messages; burn never runs on
//! the runtime's threads.
//!
//! Admission is counted in texts, not requests: a semaphore of `max_queued_texts` permits is taken
//! with `try_acquire` before a job is queued (full → the caller answers 429 at once) and released
//! when the job is answered or dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::metrics as m;
use crate::model::LoadedModel;
use crate::model::backend;
use crate::model::explain::Contribution;
use crate::model::inference::Prediction;
use crate::text::Encoded;

/// Batching settings of a worker.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// Most texts in one forward pass.
    pub max_batch_size: usize,
    /// How long a batch may wait for more jobs after its first one while the worker is idle
    /// (while it is busy the batch grows anyway).
    pub max_batch_delay: Duration,
    /// Most texts queued or in flight for this model; beyond it requests are refused (429).
    pub max_queued_texts: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_size: 64,
            max_batch_delay: Duration::ZERO,
            max_queued_texts: 2048,
        }
    }
}

/// A batch's answer to one job.
#[derive(Debug)]
pub struct JobReply {
    pub predictions: Vec<Prediction>,
    /// The model version that answered (versions can be swapped between batches).
    pub model: Arc<LoadedModel>,
    pub queue_time: Duration,
    pub inference_time: Duration,
    /// Texts in the forward pass that answered this job.
    pub batch_texts: usize,
    /// Per text, the contributions of its features to its best label (when asked for).
    pub explanations: Option<Vec<Vec<Contribution>>>,
}

/// Why a job got no predictions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("the model's queue is full ({queued} of {capacity} texts waiting); retry shortly")]
    Overloaded { queued: usize, capacity: usize },
    #[error(
        "a request may carry at most {capacity} texts for this model (the whole queue), got {texts}"
    )]
    TooLarge { texts: usize, capacity: usize },
    #[error("the request waited longer than its deadline in the queue")]
    DeadlineExceeded,
    #[error("the model worker is shutting down")]
    ShuttingDown,
}

/// A queued unit of work.
pub struct ClassifyJob {
    pub texts: Vec<String>,
    /// Also compute token contributions (an extra forward pass per text, after the batch).
    pub explain: bool,
    pub reply: oneshot::Sender<Result<JobReply, ClassifyError>>,
    pub enqueued_at: Instant,
    pub deadline: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Counters the worker keeps (read by tests, `/info` and `/metrics`).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub batches: AtomicU64,
    pub texts: AtomicU64,
    pub jobs: AtomicU64,
    pub max_batch_texts: AtomicU64,
    /// Batches with more than one job.
    pub multi_job_batches: AtomicU64,
    /// Jobs dropped before their forward pass because the client had gone.
    pub dropped_disconnected: AtomicU64,
    /// Jobs answered 503 because their deadline passed while queued.
    pub expired: AtomicU64,
    /// Jobs whose explanations are being computed right now (on the explanation thread).
    pub explaining: AtomicU64,
    /// Histogram of texts per forward pass: buckets ≤1, ≤2, ≤4, … ≤256, >256.
    pub batch_size_buckets: [AtomicU64; 10],
    pub inference_nanos: AtomicU64,
}

/// Upper bounds of [`WorkerStats::batch_size_buckets`] (the last bucket is everything above).
pub const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

impl WorkerStats {
    fn record_batch(&self, jobs: usize, texts: usize, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(jobs as u64, Ordering::Relaxed);
        self.texts.fetch_add(texts as u64, Ordering::Relaxed);
        self.max_batch_texts
            .fetch_max(texts as u64, Ordering::Relaxed);
        if jobs > 1 {
            self.multi_job_batches.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = BATCH_BUCKETS
            .iter()
            .position(|&b| texts as u64 <= b)
            .unwrap_or(BATCH_BUCKETS.len());
        self.batch_size_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.inference_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Handle to a model's worker; cheap to share behind an `Arc`.
pub struct ModelWorker {
    tx: mpsc::Sender<ClassifyJob>,
    permits: Arc<Semaphore>,
    current: Arc<ArcSwap<LoadedModel>>,
    pub stats: Arc<WorkerStats>,
    pub config: BatchConfig,
}

impl ModelWorker {
    /// Starts the batcher task (on the current tokio runtime) and the inference thread.
    pub fn spawn(model: LoadedModel, config: BatchConfig) -> Self {
        Self::spawn_shared(Arc::new(model), config)
    }

    /// [`ModelWorker::spawn`] for a model already behind an `Arc` (a version promoted at runtime).
    pub fn spawn_shared(model: Arc<LoadedModel>, config: BatchConfig) -> Self {
        let config = BatchConfig {
            max_batch_size: config.max_batch_size.max(1),
            max_queued_texts: config.max_queued_texts.max(1),
            ..config
        };
        let current = Arc::new(ArcSwap::new(model));
        let stats = Arc::new(WorkerStats::default());
        // Every queued job holds at least one permit, so the channel can never hold more jobs
        // than there are permits: `send` never waits for room.
        let (tx, rx) = mpsc::channel(config.max_queued_texts);
        // The inference thread holds the one `idle` permit while it runs a batch, so at most one
        // batch is ever in flight and the next one forms in the batcher meanwhile.
        let idle = Arc::new(Semaphore::new(1));
        let (batch_tx, batch_rx) = mpsc::channel(1);
        tokio::spawn(batch_jobs(rx, batch_tx, idle, config.clone()));
        let thread_current = current.clone();
        let thread_stats = stats.clone();
        let name = current.load().name().to_string();
        let max_batch = config.max_batch_size;
        // burn-ndarray spreads some ops over rayon. From a plain thread each such op is handed to
        // rayon's global pool and waited for, and the idle pool workers spin in sched_yield: under
        // load that was ~11% of the 2 cores (perf, bench/FINDINGS.md). The inference thread is
        // therefore a one-thread rayon pool of its own: burn's parallel ops run inline on it and
        // nothing spins. Training keeps the global pool.
        let one_thread = |role: &'static str| {
            let name = name.clone();
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(move |_| format!("{role}-{name}"))
                .build()
                .expect("starting a model thread")
        };
        // Explanations (one extra forward pass per token) run on a thread of their own, so a
        // request with `explain` never holds up the plain batches behind it.
        let (explain_tx, explain_rx) = std::sync::mpsc::channel();
        let explain_stats = stats.clone();
        one_thread("explain").spawn(move || run_explanations(explain_rx, explain_stats));
        one_thread("infer").spawn(move || {
            run_inference(
                batch_rx,
                thread_current,
                thread_stats,
                max_batch,
                explain_tx,
            )
        });
        ModelWorker {
            tx,
            permits: Arc::new(Semaphore::new(config.max_queued_texts)),
            current,
            stats,
            config,
        }
    }

    /// The version now serving.
    pub fn current(&self) -> Arc<LoadedModel> {
        self.current.load_full()
    }

    /// Swaps the serving version. Batches already taken finish on the old version.
    pub fn swap(&self, model: Arc<LoadedModel>) {
        self.current.store(model);
    }

    /// Texts queued or in flight.
    pub fn queued_texts(&self) -> usize {
        self.config.max_queued_texts - self.permits.available_permits()
    }

    /// Queues texts and waits for their predictions, at most until `deadline`.
    pub async fn classify(
        &self,
        texts: Vec<String>,
        deadline: Instant,
    ) -> Result<JobReply, ClassifyError> {
        self.classify_with(texts, deadline, false).await
    }

    /// [`ModelWorker::classify`], optionally with token contributions (`explain`).
    pub async fn classify_with(
        &self,
        texts: Vec<String>,
        deadline: Instant,
        explain: bool,
    ) -> Result<JobReply, ClassifyError> {
        let capacity = self.config.max_queued_texts;
        let n = texts.len().max(1);
        let model = self.current.load().name().to_string();
        if n > capacity {
            metrics::counter!(m::REJECTED, "model" => model, "reason" => "too_large").increment(1);
            return Err(ClassifyError::TooLarge { texts: n, capacity });
        }
        let Ok(permit) = self.permits.clone().try_acquire_many_owned(n as u32) else {
            metrics::counter!(m::REJECTED, "model" => model, "reason" => "overloaded").increment(1);
            return Err(ClassifyError::Overloaded {
                queued: self.queued_texts(),
                capacity,
            });
        };
        let (reply, rx) = oneshot::channel();
        let job = ClassifyJob {
            texts,
            explain,
            reply,
            enqueued_at: Instant::now(),
            deadline,
            _permit: permit,
        };
        self.tx
            .send(job)
            .await
            .map_err(|_| ClassifyError::ShuttingDown)?;
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClassifyError::ShuttingDown),
            // Dropping `rx` here lets the worker see the job is abandoned and skip it.
            Err(_) => Err(ClassifyError::DeadlineExceeded),
        }
    }
}

/// Collects jobs into batches of at most `max_batch_size` texts (a single larger job forms a
/// batch of its own) and hands each to the inference thread as soon as that thread is idle.
///
/// This is the dynamic batching of Triton (and TEI's continuous batching): an idle worker takes
/// whatever is queued at once, and while it is busy the next batch grows by itself, so batches
/// are as large as the load makes them and a lone request never waits for a timer.
/// `max_batch_delay` is how long the batch may linger for more jobs after its first one even
/// though the worker is idle (Triton's `max_queue_delay_microseconds`); `bench/` measured that
/// any linger lowers throughput on this model, so the default is 0.
async fn batch_jobs(
    mut rx: mpsc::Receiver<ClassifyJob>,
    batch_tx: mpsc::Sender<(Vec<ClassifyJob>, OwnedSemaphorePermit)>,
    idle: Arc<Semaphore>,
    config: BatchConfig,
) {
    let mut carry: Option<ClassifyJob> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut texts = first.texts.len();
        let mut batch = vec![first];
        let linger_until = tokio::time::Instant::now() + config.max_batch_delay;
        let mut open = true; // the request channel still delivers
        let worker_idle = loop {
            // Everything already queued joins at once.
            while texts < config.max_batch_size && carry.is_none() && open {
                match rx.try_recv() {
                    Ok(job) if texts + job.texts.len() > config.max_batch_size => carry = Some(job),
                    Ok(job) => {
                        texts += job.texts.len();
                        batch.push(job);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            let full = texts >= config.max_batch_size || carry.is_some() || !open;
            let lingering = !full && tokio::time::Instant::now() < linger_until;
            if full {
                match idle.clone().acquire_owned().await {
                    Ok(permit) => break permit,
                    Err(_) => return,
                }
            }
            tokio::select! {
                biased;
                permit = idle.clone().acquire_owned(), if !lingering => match permit {
                    Ok(permit) => break permit,
                    Err(_) => return,
                },
                job = rx.recv() => match job {
                    Some(job) if texts + job.texts.len() > config.max_batch_size => carry = Some(job),
                    Some(job) => {
                        texts += job.texts.len();
                        batch.push(job);
                    }
                    None => open = false,
                },
                _ = tokio::time::sleep_until(linger_until), if lingering => {}
            }
        };
        if batch_tx.send((batch, worker_idle)).await.is_err() {
            return;
        }
    }
}

/// The inference thread: one forward pass per batch (chunked only when one job alone exceeds
/// `max_batch_size`).
fn run_inference(
    mut batches: mpsc::Receiver<(Vec<ClassifyJob>, OwnedSemaphorePermit)>,
    current: Arc<ArcSwap<LoadedModel>>,
    stats: Arc<WorkerStats>,
    max_batch: usize,
    explain: std::sync::mpsc::Sender<ExplainWork>,
) {
    let device = backend::device();
    // `_busy` (the batcher's idle permit) is released when the batch is answered.
    while let Some((batch, _busy)) = batches.blocking_recv() {
        let model = current.load_full();
        let name = model.name().to_string();
        let now = Instant::now();
        let mut live = Vec::with_capacity(batch.len());
        for job in batch {
            // Deadline first: at its deadline the handler stops waiting (answers 503) and drops
            // its receiver, so an expired job also looks disconnected.
            if now >= job.deadline {
                stats.expired.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::DROPPED, "model" => name.clone(), "reason" => "expired")
                    .increment(1);
                let _ = job.reply.send(Err(ClassifyError::DeadlineExceeded));
            } else if job.reply.is_closed() {
                stats.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::DROPPED, "model" => name.clone(), "reason" => "disconnected")
                    .increment(1);
            } else {
                live.push(job);
            }
        }
        if live.is_empty() {
            continue;
        }
        let started = Instant::now();
        let encoded: Vec<Encoded> = live
            .iter()
            .flat_map(|j| j.texts.iter().map(|t| model.encode(t)))
            .collect();
        let mut predictions = Vec::with_capacity(encoded.len());
        for chunk in encoded.chunks(max_batch) {
            predictions.extend(model.classify_encoded(chunk, &device));
        }
        let took = started.elapsed();
        stats.record_batch(live.len(), encoded.len(), took);
        metrics::histogram!(m::BATCH_SIZE, "model" => name.clone()).record(encoded.len() as f64);
        metrics::histogram!(m::INFERENCE, "model" => name.clone()).record(took.as_secs_f64());
        metrics::counter!(m::TEXTS_CLASSIFIED, "model" => name.clone())
            .increment(encoded.len() as u64);
        let batch_texts = encoded.len();
        // Jobs that asked for explanations go to the explanation thread with their predictions.
        let mut predictions = predictions.into_iter();
        let mut encoded = encoded.into_iter();
        for job in live {
            let mine: Vec<Prediction> = predictions.by_ref().take(job.texts.len()).collect();
            let mine_encoded: Vec<Encoded> = encoded.by_ref().take(job.texts.len()).collect();
            let queue_time = started.saturating_duration_since(job.enqueued_at);
            metrics::histogram!(m::QUEUE_WAIT, "model" => name.clone())
                .record(queue_time.as_secs_f64());
            let reply = JobReply {
                predictions: mine,
                model: model.clone(),
                queue_time,
                inference_time: took,
                batch_texts,
                explanations: None,
            };
            if job.explain {
                // The explanation thread lives as long as this one; if it is gone, answer
                // without explanations rather than not at all.
                if let Err(std::sync::mpsc::SendError((job, reply, _))) =
                    explain.send((job, reply, mine_encoded))
                {
                    let _ = job.reply.send(Ok(reply));
                }
            } else {
                let _ = job.reply.send(Ok(reply));
            }
        }
    }
}

/// A job that asked for explanations, its batch's answer, and its encoded texts.
type ExplainWork = (ClassifyJob, JobReply, Vec<Encoded>);

/// The explanation thread: computes token contributions for jobs whose predictions are known,
/// on the model version that predicted them, and answers them. A job whose client has gone or
/// whose deadline has passed is dropped (its handler has stopped waiting and answered 503).
fn run_explanations(jobs: std::sync::mpsc::Receiver<ExplainWork>, stats: Arc<WorkerStats>) {
    let device = backend::device();
    while let Ok((job, mut reply, encoded)) = jobs.recv() {
        if job.reply.is_closed() || Instant::now() >= job.deadline {
            continue;
        }
        stats.explaining.fetch_add(1, Ordering::SeqCst);
        let model = reply.model.clone();
        let explanations = job
            .texts
            .iter()
            .zip(&encoded)
            .zip(&reply.predictions)
            .map(|((text, e), p)| model.explain(text, e, p.best(), &device))
            .collect();
        reply.explanations = Some(explanations);
        stats.explaining.fetch_sub(1, Ordering::SeqCst);
        let _ = job.reply.send(Ok(reply));
    }
}
