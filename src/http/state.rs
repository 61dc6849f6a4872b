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
}

impl AppState {
    pub fn new(registry: ModelRegistry, limits: Limits) -> Self {
        AppState {
            registry: Arc::new(registry),
            limits,
            ready: Arc::new(AtomicBool::new(true)),
            started_at: Instant::now(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
