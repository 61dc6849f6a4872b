//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes, and the routes
//! that serve it: `/openapi.yaml`, `/openapi.json` and the browsable `/docs` page.
//!
//! The document is built from the same [`OpenApiRouter`](utoipa_axum::router::OpenApiRouter) that
//! builds the axum router (see [`super::api`]), so a route cannot be served without being
//! documented. The committed top-level `openapi.yaml` is checked against [`yaml`] by the
//! integration test `openapi`; regenerate it with `textclf openapi --out openapi.yaml` (or run
//! the tests with `UPDATE_OPENAPI=1`).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::OpenApi;

/// The parts of the document that no handler owns: title, description, tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "textclf",
        description = "Text classification service: a fastText-style bag-of-embeddings classifier \
            (burn, CPU) for Chinese and English text, served with dynamic batching.\n\n\
            Every error is JSON `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}` with a status \
            that says whose fault it is; every response carries an `x-request-id` header (the \
            client's own when it sent one).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
    ),
    tags(
        (name = "classify", description = "Classify texts with a loaded model."),
        (name = "health", description = "Liveness, readiness and service information."),
        (name = "meta", description = "This API's own description.")
    )
)]
pub struct ApiDoc;

fn rendered() -> &'static (String, String) {
    static SPEC: OnceLock<(String, String)> = OnceLock::new();
    SPEC.get_or_init(|| {
        let doc = super::openapi();
        let yaml = doc
            .to_yaml()
            .expect("the OpenAPI document serialises to YAML. This is a bug.");
        let json = doc
            .to_pretty_json()
            .expect("the OpenAPI document serialises to JSON. This is a bug.");
        (yaml, json)
    })
}

/// The OpenAPI document as YAML, exactly as served at `/openapi.yaml`.
pub fn yaml() -> &'static str {
    &rendered().0
}

/// The OpenAPI document as JSON, exactly as served at `/openapi.json`.
pub fn json() -> &'static str {
    &rendered().1
}

/// The OpenAPI 3.1 document of this API, as YAML.
#[utoipa::path(
    get,
    path = "/openapi.yaml",
    tag = "meta",
    operation_id = "openapi_yaml",
    responses(
        (status = 200, description = "The OpenAPI document (identical to the repository's `openapi.yaml`).",
            content_type = "application/yaml", body = Object)
    )
)]
pub async fn spec_yaml() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], yaml())
}

/// The OpenAPI 3.1 document of this API, as JSON.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi_json",
    responses(
        (status = 200, description = "The OpenAPI document as JSON.", body = Object)
    )
)]
pub async fn spec_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

/// A browsable API reference (Scalar). The document is embedded in the page; the viewer's
/// script is loaded by the browser from a CDN, so nothing is downloaded when the crate builds.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "meta",
    operation_id = "docs",
    responses(
        (status = 200, description = "An HTML page rendering the OpenAPI document.",
            content_type = "text/html", body = String)
    )
)]
pub async fn docs() -> Html<&'static str> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| {
        let spec: serde_json::Value =
            serde_json::from_str(json()).expect("the served JSON document parses. This is a bug.");
        utoipa_scalar::Scalar::new(spec).to_html()
    }))
}
