//! `/train-job`: fine-tune jobs over HTTP (modelled on OpenAI's fine-tuning jobs API).
//!
//! Only translation lives here; [`crate::jobs::JobManager`] does the work. Every call into it
//! runs on tokio's blocking pool: it touches SQLite and the disk (a 64 MiB upload is fsynced
//! before the 202), and cancel waits for the job to stop.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::state::AppState;
use crate::jobs::{Hyperparameters, Job, JobError, JobEvent, JobManager, JobStatus, NewJob};
use crate::train::Example;
use crate::train::data::{DataError, parse_csv, parse_jsonl};

/// How long `POST /train-job/{id}/cancel` waits for a running job to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Maps job-system errors to statuses: the client's fault is a 4xx that says what to fix.
pub fn job_error(e: JobError) -> ApiError {
    let message = e.to_string();
    match e {
        JobError::Invalid(_) => ApiError::invalid(message),
        JobError::TooManyExamples { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_examples", message)
        }
        JobError::BaseModelNotFound(..) | JobError::ModelNotFound(_) => {
            ApiError::not_found("model_not_found", message)
        }
        JobError::NotFound(_) => ApiError::not_found("job_not_found", message),
        JobError::VersionNotFound { .. } => ApiError::not_found("version_not_found", message),
        JobError::AlreadyFinished { .. } => {
            ApiError::new(StatusCode::CONFLICT, "job_finished", message)
        }
        JobError::ShuttingDown => ApiError {
            retry_after: Some(5),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
        },
        JobError::Store(_) | JobError::Io(_) | JobError::Artifact(_) => {
            tracing::error!(error = %message, "job system error");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
        }
    }
}

pub(crate) fn manager(state: &AppState) -> Result<JobManager, ApiError> {
    state.jobs.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "jobs_disabled",
            "this server runs without a data directory, so it takes no fine-tune jobs",
        )
    })
}

/// Runs a job-manager call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the job call crashed: {e}"),
            )
        })?
        .map_err(job_error)
}

/// A labelled example.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelledText {
    #[schema(example = "Free entry in 2 a wkly comp to win FA Cup final tkts")]
    pub text: String,
    #[schema(example = "spam")]
    pub label: String,
}

/// The JSON body of `POST /train-job`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// Name of the model to write a new version of: `[a-z0-9_-]`, 1–64 characters. The same
    /// name as a served model makes a new version of it.
    #[schema(example = "spam")]
    pub model: String,
    /// A served model to start from (see the fine-tuning rule in the README).
    #[serde(default)]
    pub base_model: Option<String>,
    pub examples: Vec<LabelledText>,
    /// Validation data; without it `validation_split` of the examples are held out.
    #[serde(default)]
    pub validation_examples: Option<Vec<LabelledText>>,
    /// Fraction held out for validation (stratified, seeded), 0–0.5; default 0.1.
    #[serde(default)]
    pub validation_split: Option<f64>,
    #[serde(default)]
    pub hyperparameters: Option<Hyperparameters>,
    /// Serve the new version as soon as the job succeeds (default false).
    #[serde(default)]
    pub promote: Option<bool>,
}

/// Options of a raw upload (`application/x-ndjson` or `text/csv` body), in the query string.
#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// Output model name (required for an upload).
    pub model: Option<String>,
    pub base_model: Option<String>,
    pub epochs: Option<u32>,
    pub learning_rate: Option<f64>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
    pub validation_split: Option<f64>,
    pub promote: Option<bool>,
}

fn examples(xs: Vec<LabelledText>) -> Vec<Example> {
    xs.into_iter()
        .map(|x| Example {
            text: x.text,
            label: x.label,
        })
        .collect()
}

fn data_error(e: DataError) -> ApiError {
    match e {
        DataError::Line { line, message, .. } => {
            ApiError::invalid(format!("line {line} of the upload: {message}"))
        }
        other => ApiError::invalid(other.to_string()),
    }
}

/// What kind of body the content type announces.
enum BodyKind {
    Json,
    Jsonl,
    Csv,
}

fn body_kind(headers: &HeaderMap) -> BodyKind {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-ndjson"
        | "application/jsonl"
        | "application/json-lines"
        | "application/x-jsonlines" => BodyKind::Jsonl,
        "text/csv" => BodyKind::Csv,
        _ => BodyKind::Json,
    }
}

/// Parses a `POST /train-job` request into a [`NewJob`] (validation of the content is the job
/// manager's).
pub fn parse_create(
    kind_headers: &HeaderMap,
    params: UploadParams,
    query_given: bool,
    body: &[u8],
) -> Result<NewJob, ApiError> {
    match body_kind(kind_headers) {
        BodyKind::Json => {
            if query_given {
                return Err(ApiError::invalid(
                    "query options are for raw uploads (application/x-ndjson or text/csv); \
                     a JSON body carries its options itself",
                ));
            }
            let req: CreateJobRequest = serde_json::from_slice(body).map_err(|e| {
                if e.is_syntax() || e.is_eof() {
                    ApiError::bad_json(format!("the body is not valid JSON: {e}"))
                } else {
                    ApiError::invalid(format!("invalid job request: {e}"))
                }
            })?;
            Ok(NewJob {
                model: req.model,
                base_model: req.base_model,
                examples: examples(req.examples),
                validation_examples: req.validation_examples.map(examples),
                validation_split: req.validation_split,
                hyperparameters: req.hyperparameters.unwrap_or_default(),
                promote: req.promote.unwrap_or(false),
            })
        }
        kind => {
            let model = params.model.ok_or_else(|| {
                ApiError::invalid("an upload needs the output model name: ?model=NAME")
            })?;
            let examples = match kind {
                BodyKind::Csv => parse_csv(body, "upload"),
                _ => parse_jsonl(body, "upload"),
            }
            .map_err(data_error)?;
            Ok(NewJob {
                model,
                base_model: params.base_model,
                examples,
                validation_examples: None,
                validation_split: params.validation_split,
                hyperparameters: Hyperparameters {
                    epochs: params.epochs,
                    learning_rate: params.learning_rate,
                    batch_size: params.batch_size,
                    seed: params.seed,
                },
                promote: params.promote.unwrap_or(false),
            })
        }
    }
}

/// Submit a fine-tune job.
///
/// Either a JSON body, or the examples as a raw upload — JSONL (`Content-Type:
/// application/x-ndjson`, one `{"text","label"}` object a line) or CSV (`text/csv`, a
/// `text,label` header) — with the options in the query string. The job is validated and stored
/// before the answer: a 202 means it will run, even across a restart.
#[utoipa::path(
    post,
    path = "/train-job",
    tag = "jobs",
    operation_id = "create_train_job",
    params(UploadParams),
    request_body(
        content(
            (CreateJobRequest = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv")
        ),
        description = "A JSON job request, or examples as JSONL/CSV with the options in the \
            query string. At most 64 MiB (`--max-train-body-bytes`) and 200,000 examples \
            (`--max-train-examples`) by default."
    ),
    responses(
        (status = 202, description = "Accepted and queued.", body = Job),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 404, description = "`base_model` names no served model.", body = ErrorBody),
        (status = 413, description = "More bytes or examples than allowed.", body = ErrorBody),
        (status = 422, description = "Invalid request: no examples, one label, an empty text or \
            label, a malformed line (named), a bad model name or hyperparameter.", body = ErrorBody),
        (status = 503, description = "Jobs are disabled or the server is shutting down.", body = ErrorBody)
    )
)]
pub async fn create_job(
    State(state): State<AppState>,
    query: Result<Query<UploadParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let jobs = manager(&state)?;
    let limit = jobs.config().max_train_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the training data is larger than the limit of {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let Query(params) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let query_given = params.model.is_some()
        || params.base_model.is_some()
        || params.epochs.is_some()
        || params.learning_rate.is_some()
        || params.batch_size.is_some()
        || params.seed.is_some()
        || params.validation_split.is_some()
        || params.promote.is_some();
    // The route reads its own body with its own, larger limit than the 1 MiB of /classify.
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if e.to_string().contains("length limit") {
            too_large()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
        }
    })?;
    let new_job =
        tokio::task::spawn_blocking(move || parse_create(&headers, params, query_given, &bytes))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    let job = blocking(move || jobs.submit(new_job)).await?;
    let location = HeaderValue::from_str(&format!("/train-job/{}", job.id))
        .expect("a job id is a valid header value. This is a bug.");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

/// Filters and cursor of `GET /train-job`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs in this status: queued, running, succeeded, failed, cancelled.
    pub status: Option<String>,
    /// Jobs per page, 1–100 (default 20).
    pub limit: Option<usize>,
    /// The id of the last job of the previous page.
    pub after: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub object: &'static str,
    pub data: Vec<Job>,
    /// More jobs follow: ask again with `after` = the last id of `data`.
    pub has_more: bool,
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/train-job",
    tag = "jobs",
    operation_id = "list_train_jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs, newest first.", body = JobList),
        (status = 422, description = "A bad status or limit, or an `after` that names no job.", body = ErrorBody),
        (status = 503, description = "Jobs are disabled.", body = ErrorBody)
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let jobs = manager(&state)?;
    let Query(p) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown status {s:?}; use queued, running, succeeded, failed or cancelled"
            ))
        })?),
    };
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to 100, got {limit}"
        )));
    }
    let (data, has_more) = blocking(move || jobs.list(status, limit, p.after.as_deref())).await?;
    Ok(Json(JobList {
        object: "list",
        data,
        has_more,
    }))
}

/// A job: status, progress, epoch metrics, evaluation, result, error.
#[utoipa::path(
    get,
    path = "/train-job/{id}",
    tag = "jobs",
    operation_id = "get_train_job",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job.", body = Job),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 503, description = "Jobs are disabled.", body = ErrorBody)
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let jobs = manager(&state)?;
    Ok(Json(blocking(move || jobs.get(&id)).await?))
}

/// A job's event log.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub object: &'static str,
    pub data: Vec<JobEvent>,
}

/// The job's events in order: created, started, training_started, epoch_finished (with
/// metrics), checkpoint_written, promoted, succeeded / failed / cancelled.
#[utoipa::path(
    get,
    path = "/train-job/{id}/events",
    tag = "jobs",
    operation_id = "list_train_job_events",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The events, oldest first.", body = EventList),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 503, description = "Jobs are disabled.", body = ErrorBody)
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EventList>, ApiError> {
    let jobs = manager(&state)?;
    let data = blocking(move || jobs.events(&id)).await?;
    Ok(Json(EventList {
        object: "list",
        data,
    }))
}

/// Cancel a job: a queued one never starts; a running one stops within one batch and leaves no
/// model version. Answers with the job once it has stopped.
#[utoipa::path(
    post,
    path = "/train-job/{id}/cancel",
    tag = "jobs",
    operation_id = "cancel_train_job",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job, now `cancelled`.", body = Job),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 409, description = "The job has already finished.", body = ErrorBody),
        (status = 503, description = "Jobs are disabled.", body = ErrorBody)
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let jobs = manager(&state)?;
    Ok(Json(blocking(move || jobs.cancel(&id, CANCEL_WAIT)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        HeaderMap::new()
    }

    fn ndjson_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        h
    }

    #[test]
    fn parses_json_and_jsonl_bodies() {
        let body = br#"{"model":"m","examples":[{"text":"a","label":"x"}],"hyperparameters":{"epochs":3},"promote":true}"#;
        let j = parse_create(&json_headers(), UploadParams::default(), false, body).unwrap();
        assert_eq!(
            (j.model.as_str(), j.examples.len(), j.promote),
            ("m", 1, true)
        );
        assert_eq!(j.hyperparameters.epochs, Some(3));

        let body = b"{\"text\":\"a\",\"label\":\"x\"}\n\n{\"text\":\"b\",\"label\":\"y\"}\n";
        let params = UploadParams {
            model: Some("m".into()),
            epochs: Some(2),
            ..Default::default()
        };
        let j = parse_create(&ndjson_headers(), params, true, body).unwrap();
        assert_eq!(j.examples.len(), 2);
        assert_eq!(j.hyperparameters.epochs, Some(2));
    }

    #[test]
    fn rejects_malformed_requests_naming_the_problem() {
        let e =
            parse_create(&json_headers(), UploadParams::default(), false, b"{oops").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_create(
            &json_headers(),
            UploadParams::default(),
            false,
            br#"{"model":"m"}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("examples"), "{}", e.message);
        let e = parse_create(
            &json_headers(),
            UploadParams::default(),
            false,
            br#"{"model":"m","examples":[],"epochs":3}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);

        let params = || UploadParams {
            model: Some("m".into()),
            ..Default::default()
        };
        let body = b"{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\"\n";
        let e = parse_create(&ndjson_headers(), params(), true, body).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("line 2"), "{}", e.message);
        let body = b"{\"text\":\"a\",\"label\":\"\"}\n";
        let e = parse_create(&ndjson_headers(), params(), true, body).unwrap_err();
        assert!(
            e.message.contains("line 1") && e.message.contains("label"),
            "{}",
            e.message
        );
        let e = parse_create(&ndjson_headers(), UploadParams::default(), false, body).unwrap_err();
        assert!(e.message.contains("?model="), "{}", e.message);
    }
}
