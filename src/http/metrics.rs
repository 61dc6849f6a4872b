//! `GET /metrics` (Prometheus text format) and the middleware that counts HTTP requests.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::state::AppState;
use crate::metrics as m;

/// Prometheus metrics of this process.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut versions = Vec::new();
    for (name, worker) in state.registry.workers() {
        metrics::gauge!(m::QUEUE_DEPTH, "model" => name.to_string())
            .set(worker.queued_texts() as f64);
        versions.push((name.to_string(), worker.current().version()));
    }
    m::set_serving_versions(versions);
    if let Some(jobs) = &state.jobs {
        // A store error only leaves the gauge at its last value; metrics must still render.
        if let Ok(counts) = jobs.count_by_status() {
            for (status, n) in counts {
                metrics::gauge!(m::TRAIN_JOBS, "status" => status.as_str()).set(n as f64);
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m::render(),
    )
}

/// Counts every routed request by route template, method and status, and times it.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!(m::HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    resp
}
