//! `GET /health`, `/health/live`, `/health/ready` and `/info`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::state::{AppState, Limits};
use crate::model::backend;

/// A loaded model as the health routes report it.
#[derive(Serialize, ToSchema)]
pub struct ModelStatus {
    #[schema(example = "news-zh")]
    pub name: String,
    pub version: u32,
    pub labels: Vec<String>,
    pub default: bool,
}

/// Readiness with the loaded models.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// "ok" when ready, "unavailable" otherwise.
    #[schema(value_type = String, pattern = "^(ok|unavailable)$", example = "ok")]
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
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    responses(
        (status = 200, description = "Ready: every model is loaded and the server is not shutting down.",
            body = Health, example = json!({"status": "ok", "models": [
                {"name": "news-zh", "version": 1, "labels": ["sports", "finance"], "default": true}]})),
        (status = 503, description = "Not ready (shutting down); the body still lists the models.",
            body = Health, example = json!({"status": "unavailable", "models": [
                {"name": "news-zh", "version": 1, "labels": ["sports", "finance"], "default": true}]}))
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    readiness(&state)
}

/// Readiness probe (Kubernetes `readinessProbe`, the container's `HEALTHCHECK`): the same answer
/// as `/health`, under the conventional name.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    operation_id = "health_ready",
    responses(
        (status = 200, description = "Ready to classify.", body = Health),
        (status = 503, description = "Not ready (shutting down): take this replica out of load balancing.",
            body = Health)
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    readiness(&state)
}

fn readiness(state: &AppState) -> (StatusCode, Json<Health>) {
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
            models: models(state),
        }),
    )
}

/// Liveness answer.
#[derive(Serialize, ToSchema)]
pub struct Live {
    /// Always "ok".
    #[schema(value_type = String, pattern = "^ok$", example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    operation_id = "health_live",
    responses(
        (status = 200, description = "The process is alive (even while shutting down).", body = Live,
            example = json!({"status": "ok"}))
    )
)]
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// A loaded model as `/info` reports it.
#[derive(Serialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    pub version: u32,
    pub labels: Vec<String>,
    pub max_tokens: usize,
    pub vocab_size: usize,
    pub default: bool,
    /// Texts waiting in this model's queue right now.
    pub queued_texts: usize,
}

/// Dynamic batching settings (the same for every model).
#[derive(Serialize, ToSchema)]
pub struct BatchingInfo {
    pub max_batch_size: usize,
    pub max_batch_delay_ms: f64,
    pub max_queued_texts: usize,
}

/// Fine-tune job limits (`/train-job`).
#[derive(Serialize, ToSchema)]
pub struct JobsInfo {
    /// Jobs that train at once; the rest wait in order.
    pub max_concurrent_jobs: usize,
    /// Most examples (training + validation) in one job.
    pub max_train_examples: usize,
    /// Largest `POST /train-job` body in bytes.
    pub max_train_body_bytes: usize,
}

/// Service version, models and limits.
#[derive(Serialize, ToSchema)]
pub struct Info {
    #[schema(value_type = String, example = "textclf")]
    pub service: &'static str,
    #[schema(value_type = String, example = "0.1.0")]
    pub version: &'static str,
    /// The burn backend inference runs on.
    #[schema(value_type = String, example = "ndarray")]
    pub backend: &'static str,
    pub models: Vec<ModelInfo>,
    pub limits: Limits,
    pub batching: BatchingInfo,
    /// Absent when the server runs without a job system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobsInfo>,
}

/// Service version, models and every limit in force.
#[utoipa::path(
    get,
    path = "/info",
    tag = "health",
    operation_id = "info",
    responses(
        (status = 200, description = "Version, backend, loaded models, request limits, batching settings and fine-tune job limits.",
            body = Info)
    )
)]
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
        jobs: state.jobs.as_ref().map(|j| {
            let c = j.config();
            JobsInfo {
                max_concurrent_jobs: c.max_concurrent_jobs,
                max_train_examples: c.max_train_examples,
                max_train_body_bytes: c.max_train_body_bytes,
            }
        }),
    })
}
