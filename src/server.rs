//! Startup and shutdown of `textclf serve`: load models, start workers, bind, serve, drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use crate::http::{self, AppState, Limits};
use crate::serve::{BatchConfig, ModelRegistry};

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Directory holding one sub-directory per model.
    #[arg(long, env = "TEXTCLF_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Model used when a request names none.
    #[arg(long, env = "TEXTCLF_DEFAULT_MODEL", default_value = "news-zh")]
    pub default_model: String,
    #[arg(long, env = "TEXTCLF_HOST", default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Most texts in one forward pass.
    #[arg(long, env = "TEXTCLF_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,
    /// How long (milliseconds, fractions allowed) a batch waits for more requests after its first
    /// one even though the model worker is idle. While the worker is busy, batches grow anyway;
    /// 0 (the default) dispatches at once (BENCHMARKS.md measures the alternatives).
    #[arg(long, env = "TEXTCLF_MAX_BATCH_DELAY_MS", default_value_t = 0.0)]
    pub max_batch_delay_ms: f64,
    /// Most texts queued per model; beyond it requests get 429.
    #[arg(long, env = "TEXTCLF_MAX_QUEUED_TEXTS", default_value_t = 2048)]
    pub max_queued_texts: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "TEXTCLF_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most texts in one request.
    #[arg(long, env = "TEXTCLF_MAX_TEXTS_PER_REQUEST", default_value_t = 256)]
    pub max_texts_per_request: usize,
    /// Deadline of a classify request in milliseconds; still queued then → 503.
    #[arg(long, env = "TEXTCLF_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    #[arg(long, env = "TEXTCLF_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Bearer key required by training and model-management routes (`/train-job…`, `/models…`).
    #[arg(long, env = "TEXTCLF_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Bearer key required by `/classify` (separate from `--api-key`).
    #[arg(long, env = "TEXTCLF_CLASSIFY_API_KEY", hide_env_values = true)]
    pub classify_api_key: Option<String>,
    /// On SIGTERM/SIGINT, how long in-flight and queued requests may take to finish (seconds).
    #[arg(long, env = "TEXTCLF_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
    /// Fine-tune jobs' database, uploaded data and trained model versions.
    #[arg(long, env = "TEXTCLF_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Fine-tune jobs that train at once; the rest wait in order.
    #[arg(long, env = "TEXTCLF_MAX_CONCURRENT_JOBS", default_value_t = 1)]
    pub max_concurrent_jobs: usize,
    /// Most examples (training + validation) in one fine-tune job.
    #[arg(long, env = "TEXTCLF_MAX_TRAIN_EXAMPLES", default_value_t = 200_000)]
    pub max_train_examples: usize,
    /// Largest `POST /train-job` body in bytes (its own limit, apart from --max-body-bytes).
    #[arg(long, env = "TEXTCLF_MAX_TRAIN_BODY_BYTES", default_value_t = 64 << 20)]
    pub max_train_body_bytes: usize,
}

impl ServeArgs {
    pub fn batch_config(&self) -> BatchConfig {
        BatchConfig {
            max_batch_size: self.max_batch_size.max(1),
            max_batch_delay: Duration::from_secs_f64(self.max_batch_delay_ms.max(0.0) / 1000.0),
            max_queued_texts: self.max_queued_texts.max(1),
        }
    }

    pub fn jobs_config(&self) -> crate::jobs::JobsConfig {
        crate::jobs::JobsConfig {
            max_concurrent_jobs: self.max_concurrent_jobs.max(1),
            max_train_examples: self.max_train_examples.max(1),
            max_train_body_bytes: self.max_train_body_bytes.max(1),
            ..crate::jobs::JobsConfig::new(&self.data_dir, &self.models_dir)
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_texts_per_request: self.max_texts_per_request.max(1),
            request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Loads the models and builds the application state (inside a tokio runtime: workers start).
pub fn build_state(args: &ServeArgs) -> anyhow::Result<AppState> {
    let models = ModelRegistry::load_dir(&args.models_dir)?;
    let registry = ModelRegistry::start(models, &args.default_model, &args.batch_config())?;
    let keys = crate::http::auth::ApiKeys {
        admin: args.api_key.clone().filter(|k| !k.is_empty()),
        classify: args.classify_api_key.clone().filter(|k| !k.is_empty()),
    };
    let state = AppState::new(registry, args.limits()).with_keys(keys);
    let jobs = crate::jobs::JobManager::open(args.jobs_config(), state.registry.clone())
        .with_context(|| format!("cannot open the job store in {}", args.data_dir.display()))?;
    Ok(state.with_jobs(jobs))
}

/// Serves `state` on `listener` until `shutdown` resolves; readiness turns false first.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ready = state.ready.clone();
    let drain = state.limits.shutdown_timeout;
    let app = http::router(state);
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        ready.store(false, Ordering::SeqCst);
        tracing::info!(
            bound_secs = drain.as_secs_f64(),
            "shutting down: no new connections, finishing in-flight requests"
        );
        let _ = draining_tx.send(());
    });
    // Graceful shutdown waits for every open connection; the drain bound stops it waiting on a
    // client that never finishes.
    let bound = async move {
        if draining_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served.context("HTTP server failed"),
        _ = bound => {
            tracing::warn!("drain bound reached with requests still open; exiting");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `textclf serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let state = build_state(&args)?;
        let addr: SocketAddr = format!("{}:{}", args.host, args.port).parse().with_context(|| format!("bad listen address {}:{}", args.host, args.port))?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let names: Vec<String> = state.registry.workers().map(|(n, w)| format!("{n}@{}", w.current().version())).collect();
        tracing::info!(%addr, models = ?names, default = state.registry.default_name(), ms = started.elapsed().as_millis() as u64, "ready");
        let jobs = state.jobs.clone();
        let stop_jobs = jobs.clone();
        let drain = state.limits.shutdown_timeout;
        // Training stops the moment the signal arrives, in parallel with the HTTP drain, so the
        // whole shutdown stays within the drain bound.
        let signal = async move {
            shutdown_signal().await;
            if let Some(jobs) = &stop_jobs {
                jobs.begin_shutdown();
            }
        };
        let served = serve(listener, state, signal).await;
        if let Some(jobs) = jobs {
            // A running job stops within one batch and records itself failed/interrupted.
            tokio::task::spawn_blocking(move || jobs.shutdown(drain)).await.ok();
        }
        served
    })
}
