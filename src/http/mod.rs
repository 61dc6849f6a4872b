//! HTTP transport: routes, JSON errors, request ids and tracing. Handlers only translate between
//! HTTP and the serving core in [`crate::serve`].
//!
//! # Adding a route
//!
//! The OpenAPI document (`/openapi.yaml`, the committed `openapi.yaml`) is generated from the
//! same router that serves requests, so a route and its documentation cannot drift apart:
//!
//! 1. put `#[utoipa::path(get|post, path = "/x/{id}", tag = "...", params(..), request_body = ..,
//!    responses((status = 200, body = T), (status = 404, body = ErrorBody), ..))]` on the
//!    handler, listing **every** status it can return (errors use [`error::ErrorBody`]);
//! 2. derive `utoipa::ToSchema` on its request/response types (and `IntoParams` on query/path
//!    structs);
//! 3. register it in [`api`] with `.routes(routes!(module::handler))` — never with `.route(..)`
//!    (the `openapi` integration test rejects `.route(` in this file, because such a route
//!    would be missing from the document);
//! 4. regenerate the committed document: `cargo run --release -- openapi --out openapi.yaml`
//!    (or `UPDATE_OPENAPI=1 cargo test --release openapi`). CI's schemathesis run
//!    (`.ci/contract.sh`) then checks the live server against it.

pub mod auth;
pub mod classify;
pub mod error;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod schema;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderName, Request, StatusCode};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use state::{AppState, Limits};

/// Maps a body-reading failure to a JSON error (413 when over the size limit).
pub fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than the limit: {}",
                r.body_text()
            ),
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", r.body_text())
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: random 128-bit hex, unless the client sent one.
#[derive(Clone, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id: u128 = rand::random();
        Some(RequestId::new(
            format!("{id:032x}")
                .parse()
                .expect("hex is a valid header value. This is a bug."),
        ))
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route; see /openapi.yaml for the API")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Every route with its OpenAPI operation (see "Adding a route" above). No state is needed to
/// build it, so the document can be produced without loading models.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(classify::classify))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::live))
        .routes(routes!(health::info))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::spec_yaml))
        .routes(routes!(openapi::spec_json))
        .routes(routes!(openapi::docs))
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::job_events))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(models::list_models))
        .routes(routes!(models::promote))
}

/// The OpenAPI document of [`api`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    crate::metrics::handle(); // install the recorder before anything records
    let (routes, _) = api().split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::check))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .with_state(state)
}
