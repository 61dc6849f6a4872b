//! `/models`: model versions and promotion (modelled on TorchServe's management API, where a
//! new version never becomes the default by itself and `set-default` switches).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::jobs::{blocking, manager};
use crate::http::state::AppState;
use crate::jobs::{ModelView, Promoted};

/// Every model with its versions.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelView>,
}

/// Models, their versions (with the metrics measured when each was trained) and which version
/// serves.
#[utoipa::path(
    get,
    path = "/models",
    tag = "models",
    operation_id = "list_models",
    responses(
        (status = 200, description = "Every served model and every model with a version on disk.",
            body = ModelList),
        (status = 503, description = "Jobs are disabled.", body = ErrorBody)
    )
)]
pub async fn list_models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let jobs = manager(&state)?;
    let data = blocking(move || Ok(jobs.models())).await?;
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}

/// The body of `POST /models/{name}/promote`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The version to serve (an older one rolls back).
    #[schema(example = 2)]
    pub version: u32,
}

/// Serve a version of a model. Requests in flight finish on the old version, later ones get the
/// new one, none fails; the choice survives a restart. Rolling back is promoting an older
/// version.
#[utoipa::path(
    post,
    path = "/models/{name}/promote",
    tag = "models",
    operation_id = "promote_model",
    params(("name" = String, Path, description = "The model name")),
    request_body(content = PromoteRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The version now serves.", body = Promoted),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
        (status = 413, description = "The body is too large.", body = ErrorBody),
        (status = 422, description = "The body is not `{\"version\": N}`.", body = ErrorBody),
        (status = 503, description = "Jobs are disabled.", body = ErrorBody)
    )
)]
pub async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Promoted>, ApiError> {
    let jobs = manager(&state)?;
    let body = body.map_err(crate::http::body_rejection)?;
    let req: PromoteRequest = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_json(format!("the body is not valid JSON: {e}"))
        } else {
            ApiError::invalid(format!("send {{\"version\": N}}: {e}"))
        }
    })?;
    Ok(Json(
        blocking(move || jobs.promote(&name, req.version)).await?,
    ))
}
