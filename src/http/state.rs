//! What every handler can see.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::serve::ModelRegistry;

/// Request limits in force (reported by `/info`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_texts_per_request: usize,
    /// Milliseconds a classify request may wait for its answer.
    #[serde(serialize_with = "as_millis")]
    #[schema(value_type = u64)]
    pub request_timeout: Duration,
    /// Milliseconds in-flight and queued requests may take to finish after SIGTERM/SIGINT.
    #[serde(serialize_with = "as_millis")]
    #[schema(value_type = u64)]
    pub shutdown_timeout: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_texts_per_request: 256,
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<ModelRegistry>,
    pub limits: Limits,
    /// False until the models are loaded and again once shutdown begins.
    pub ready: Arc<AtomicBool>,
    pub started_at: Instant,
    /// Fine-tune jobs and model versions (`/train-job`, `/models`); `None` when the server runs
    /// without a data directory (the job routes then answer 503).
    pub jobs: Option<crate::jobs::JobManager>,
    /// API keys guarding training/model management and `/classify` (see [`crate::http::auth`]).
    pub keys: crate::http::auth::ApiKeys,
}

impl AppState {
    pub fn new(registry: ModelRegistry, limits: Limits) -> Self {
        AppState {
            registry: Arc::new(registry),
            limits,
            ready: Arc::new(AtomicBool::new(true)),
            started_at: Instant::now(),
            jobs: None,
            keys: Default::default(),
        }
    }

    /// Requires API keys (see [`crate::http::auth`]).
    pub fn with_keys(mut self, keys: crate::http::auth::ApiKeys) -> Self {
        self.keys = keys;
        self
    }

    /// Turns on the job routes.
    pub fn with_jobs(mut self, jobs: crate::jobs::JobManager) -> Self {
        self.jobs = Some(jobs);
        self
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
