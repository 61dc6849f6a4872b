//! `GET /health`, `/health/live`, `/health/ready` and `/info`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::http::state::{AppState, Limits};
use crate::model::backend;

#[derive(Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub version: u32,
    pub labels: Vec<String>,
    pub default: bool,
}

#[derive(Serialize)]
pub struct Health {
    /// "ok" when ready, "unavailable" otherwise.
    pub status: &'static str,
    pub models: Vec<ModelStatus>,
}

fn models(state: &AppState) -> Vec<ModelStatus> {
    state
        .registry
        .workers()
        .map(|(name, w)| {
            let m = w.current();
            ModelStatus {
                name: name.to_string(),
                version: m.version(),
                labels: m.labels().to_vec(),
                default: name == state.registry.default_name(),
            }
        })
        .collect()
}

/// Readiness with details: 200 when the models are loaded and the server is not draining.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if ready { "ok" } else { "unavailable" },
            models: models(&state),
        }),
    )
}

#[derive(Serialize)]
pub struct Live {
    pub status: &'static str,
}

/// Liveness: the process answers.
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: u32,
    pub labels: Vec<String>,
    pub max_tokens: usize,
    pub vocab_size: usize,
    pub default: bool,
    pub queued_texts: usize,
}

#[derive(Serialize)]
pub struct BatchingInfo {
    pub max_batch_size: usize,
    pub max_batch_delay_ms: f64,
    pub max_queued_texts: usize,
}

#[derive(Serialize)]
pub struct Info {
    pub service: &'static str,
    pub version: &'static str,
    pub backend: &'static str,
    pub models: Vec<ModelInfo>,
    pub limits: Limits,
    pub batching: BatchingInfo,
}

/// Service version, models and every limit in force.
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    let mut batching = None;
    let models = state
        .registry
        .workers()
        .map(|(name, w)| {
            batching.get_or_insert_with(|| BatchingInfo {
                max_batch_size: w.config.max_batch_size,
                max_batch_delay_ms: w.config.max_batch_delay.as_secs_f64() * 1000.0,
                max_queued_texts: w.config.max_queued_texts,
            });
            let m = w.current();
            ModelInfo {
                name: name.to_string(),
                version: m.version(),
                labels: m.labels().to_vec(),
                max_tokens: m.manifest.tokenizer.max_tokens,
                vocab_size: m.vocab.len(),
                default: name == state.registry.default_name(),
                queued_texts: w.queued_texts(),
            }
        })
        .collect();
    Json(Info {
        service: "textclf",
        version: env!("CARGO_PKG_VERSION"),
        backend: backend::BACKEND,
        models,
        limits: state.limits.clone(),
        batching: batching.expect("a registry always holds at least one model. This is a bug."),
    })
}
