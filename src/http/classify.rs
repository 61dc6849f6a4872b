//! `POST /classify`.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::model::explain::Contribution;
use crate::model::inference::Prediction;

/// `top_k` when the request does not say.
pub const DEFAULT_TOP_K: usize = 5;

/// A validated classify request.
#[derive(Debug, PartialEq)]
pub struct ClassifyRequest {
    pub texts: Vec<String>,
    /// `{"text": ..}` (one result object) rather than `{"texts": [..]}` (a list).
    pub single: bool,
    /// `None` = all labels.
    pub top_k: Option<usize>,
    pub model: Option<String>,
    /// Return each token's contribution to the predicted label.
    pub explain: bool,
    /// A deadline shorter than the server's (`--request-timeout-ms`); never a longer one.
    pub timeout_ms: Option<u64>,
}

const FIELDS: &str =
    "\"text\" or \"texts\", and optionally \"top_k\", \"model\", \"explain\", \"timeout_ms\"";

/// Parses and validates a request body, with messages that say what to fix.
pub fn parse_request(body: &[u8], max_texts: usize) -> Result<ClassifyRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_json(format!(
            "the body is not valid JSON ({e}); send an object such as {{\"text\": \"...\"}}"
        ))
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(format!(
            "the body must be a JSON object with {FIELDS}"
        )));
    };
    if let Some(unknown) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "text" | "texts" | "top_k" | "model" | "explain" | "timeout_ms"
        )
    }) {
        return Err(ApiError::invalid(format!(
            "unknown field {unknown:?}; allowed fields are {FIELDS}"
        )));
    }
    let (texts, single) = match (obj.get("text"), obj.get("texts")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give either \"text\" or \"texts\", not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "missing \"text\" (a string) or \"texts\" (an array of strings)",
            ));
        }
        (Some(t), None) => (vec![text_field(t, "text")?], true),
        (None, Some(Value::Array(items))) => {
            if items.is_empty() {
                return Err(ApiError::invalid(
                    "\"texts\" is empty; send at least one text",
                ));
            }
            if items.len() > max_texts {
                return Err(ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_texts",
                    format!(
                        "\"texts\" has {} items; at most {max_texts} are allowed per request",
                        items.len()
                    ),
                ));
            }
            let texts = items
                .iter()
                .enumerate()
                .map(|(i, t)| text_field(t, &format!("texts[{i}]")))
                .collect::<Result<_, _>>()?;
            (texts, false)
        }
        (None, Some(_)) => return Err(ApiError::invalid("\"texts\" must be an array of strings")),
    };
    Ok(ClassifyRequest {
        texts,
        single,
        top_k: top_k(&obj)?,
        model: model_field(&obj)?,
        explain: explain_field(&obj)?,
        timeout_ms: timeout_field(&obj)?,
    })
}

fn explain_field(obj: &Map<String, Value>) -> Result<bool, ApiError> {
    match obj.get("explain") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid("\"explain\" must be true or false")),
    }
}

fn timeout_field(obj: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match obj.get("timeout_ms") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ms) if ms >= 1 => Ok(Some(ms)),
            _ => Err(ApiError::invalid(
                "\"timeout_ms\" must be a whole number of milliseconds, at least 1",
            )),
        },
        Some(_) => Err(ApiError::invalid(
            "\"timeout_ms\" must be a whole number of milliseconds, at least 1",
        )),
    }
}

fn text_field(v: &Value, name: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err(ApiError::invalid(format!(
            "{name} is empty; send some text to classify"
        ))),
        Value::String(s) => Ok(s.clone()),
        _ => Err(ApiError::invalid(format!("{name} must be a string"))),
    }
}

fn top_k(obj: &Map<String, Value>) -> Result<Option<usize>, ApiError> {
    match obj.get("top_k") {
        None => Ok(Some(DEFAULT_TOP_K)),
        Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if k >= 1 => Ok(Some(k.min(usize::MAX as u64) as usize)),
            _ => Err(ApiError::invalid(
                "\"top_k\" must be a whole number of at least 1, or null for all labels",
            )),
        },
        Some(_) => Err(ApiError::invalid(
            "\"top_k\" must be a whole number of at least 1, or null for all labels",
        )),
    }
}

fn model_field(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match obj.get("model") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            "\"model\" must be a string naming a loaded model",
        )),
    }
}

/// One label with its score.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// The classification of one text.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TextResult {
    /// The best label.
    pub label: String,
    pub score: f32,
    /// The `top_k` best labels, best first.
    pub predictions: Vec<LabelScore>,
    /// The text had more features than the model reads; the rest was ignored.
    pub truncated: bool,
    /// With `"explain": true`: each token's contribution to `label`, largest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Vec<TokenContribution>>,
}

/// How much one token (a character, word, or pair of them) supports the predicted label: the
/// drop in the label's score when the token alone is left out of the text (occlusion).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TokenContribution {
    /// The token as it appears in the request text.
    pub token: String,
    /// Offset of its first character in the text, counted in Unicode characters.
    pub start: usize,
    /// Offset just past its last character, counted in Unicode characters.
    pub end: usize,
    /// Drop in the predicted label's log-odds when this token alone is left out (negative: it
    /// spoke against the label).
    pub contribution: f32,
}

impl From<Contribution> for TokenContribution {
    fn from(c: Contribution) -> Self {
        TokenContribution {
            token: c.token,
            start: c.start,
            end: c.end,
            contribution: c.contribution,
        }
    }
}

/// Answer to `{"text": ..}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SingleResponse {
    pub model: String,
    pub model_version: u32,
    #[serde(flatten)]
    pub result: TextResult,
}

/// Answer to `{"texts": [..]}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    pub model: String,
    pub model_version: u32,
    /// One result per text, in request order.
    pub results: Vec<TextResult>,
}

fn to_result(p: &Prediction, labels: &[String], top_k: Option<usize>) -> TextResult {
    let ranked = p.ranked();
    let k = top_k.unwrap_or(labels.len()).min(labels.len());
    let best = ranked[0];
    TextResult {
        label: labels[best].clone(),
        score: p.scores[best],
        predictions: ranked[..k]
            .iter()
            .map(|&i| LabelScore {
                label: labels[i].clone(),
                score: p.scores[i],
            })
            .collect(),
        truncated: p.truncated,
        explanation: None,
    }
}

fn millis(d: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1000.0))
        .expect("a number is a valid header value. This is a bug.")
}

/// Classify one text (`text`) or several (`texts`) with a loaded model.
///
/// Requests are queued per model and answered from dynamically batched forward passes.
#[utoipa::path(
    post,
    path = "/classify",
    tag = "classify",
    operation_id = "classify",
    request_body(
        content = crate::http::schema::ClassifyRequest,
        content_type = "application/json",
        description = "`text` or `texts` (not both), optionally `top_k` and `model`. The body is \
            read as JSON whatever its content-type; at most 1 MiB by default.",
        examples(
            ("one text" = (value = json!({"text": "詹姆斯砍下40分带领湖人击败勇士"}))),
            ("several texts" = (value = json!({"texts": ["央行宣布降准0.5个百分点", "詹姆斯砍下40分带领湖人击败勇士"], "top_k": 2}))),
            ("another model" = (value = json!({"text": "The new graphics card renders 3D scenes twice as fast with OpenGL",
                "model": "newsgroups-en", "top_k": 3})))
        )
    ),
    responses(
        (status = 200, description = "The labels: one result object for `text`, `results` for `texts`.",
            body = crate::http::schema::ClassifyResponse,
            headers(
                ("x-queue-time" = String, description = "Milliseconds the texts waited for a forward pass."),
                ("x-inference-time" = String, description = "Milliseconds of the forward pass that answered."),
                ("x-total-time" = String, description = "Milliseconds from receiving the body to answering."),
                ("x-batch-size" = String, description = "Texts in the forward pass that answered (an integer)."),
                ("x-model-version" = String, description = "Version of the model that answered (an integer)."),
                ("x-request-id" = String, description = "The client's `x-request-id`, or a new random one.")
            ),
            examples(
                ("one text" = (value = json!({"model": "news-zh", "model_version": 1, "label": "sports", "score": 0.9999747,
                    "predictions": [{"label": "sports", "score": 0.9999747}, {"label": "game", "score": 0.0000168}],
                    "truncated": false}))),
                ("several texts" = (value = json!({"model": "news-zh", "model_version": 1, "results": [
                    {"label": "finance", "score": 0.7236, "predictions": [{"label": "finance", "score": 0.7236}, {"label": "stocks", "score": 0.2044}], "truncated": false},
                    {"label": "sports", "score": 0.99997, "predictions": [{"label": "sports", "score": 0.99997}, {"label": "game", "score": 0.0000168}], "truncated": false}]})))
            )),
        (status = 400, description = "`invalid_json`: the body is not JSON (`invalid_body`: it could not be read).",
            body = crate::http::error::ErrorBody,
            example = json!({"error": {"code": "invalid_json", "message": "the body is not valid JSON (expected value at line 1 column 1); send an object such as {\"text\": \"...\"}"}})),
        (status = 404, description = "`model_not_found`: `model` names no loaded model.",
            body = crate::http::error::ErrorBody,
            example = json!({"error": {"code": "model_not_found", "message": "no model named \"xx\" is loaded; loaded models: [\"news-zh\", \"newsgroups-en\"]"}})),
        (status = 405, description = "`method_not_allowed`: `/classify` only accepts POST.",
            body = crate::http::error::ErrorBody,
            example = json!({"error": {"code": "method_not_allowed", "message": "this route does not accept that method"}})),
        (status = 413, description = "`payload_too_large`: the body is over the limit (1 MiB by default); \
            `too_many_texts`: more `texts` than allowed (256 by default).",
            body = crate::http::error::ErrorBody,
            example = json!({"error": {"code": "too_many_texts", "message": "\"texts\" has 300 items; at most 256 are allowed per request"}})),
        (status = 422, description = "`validation_error`: not an object, missing or empty text, both `text` and `texts`, \
            wrong types, unknown fields, `top_k` not a whole number ≥ 1.",
            body = crate::http::error::ErrorBody,
            example = json!({"error": {"code": "validation_error", "message": "text is empty; send some text to classify"}})),
        (status = 429, description = "`overloaded`: the model's queue is full; retry after the `Retry-After` seconds.",
            body = crate::http::error::ErrorBody,
            headers(("retry-after" = String, description = "Seconds to wait before retrying (an integer).")),
            example = json!({"error": {"code": "overloaded", "message": "the model's queue is full (2048 of 2048 texts waiting); retry shortly"}})),
        (status = 503, description = "`deadline_exceeded`: the texts were still queued at the request's deadline \
            (10 s by default); `shutting_down`: the server is draining.",
            body = crate::http::error::ErrorBody,
            headers(("retry-after" = String, description = "Seconds to wait before retrying (an integer).")),
            example = json!({"error": {"code": "deadline_exceeded", "message": "the request waited longer than its deadline in the queue"}}))
    )
)]
pub async fn classify(
    State(state): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let received = Instant::now();
    let body = body.map_err(crate::http::body_rejection)?;
    let req = parse_request(&body, state.limits.max_texts_per_request)?;
    let worker = state.registry.get(req.model.as_deref()).ok_or_else(|| {
        let names: Vec<String> = state.registry.names().collect();
        ApiError::not_found(
            "model_not_found",
            format!(
                "no model named {:?} is loaded; loaded models: {names:?}",
                req.model.clone().unwrap_or_default()
            ),
        )
    })?;
    let timeout = match req.timeout_ms {
        Some(ms) => state.limits.request_timeout.min(Duration::from_millis(ms)),
        None => state.limits.request_timeout,
    };
    let deadline = received + timeout;
    let n = req.texts.len();
    let reply = worker.classify_with(req.texts, deadline, req.explain).await;
    metrics::histogram!(crate::metrics::REQUEST_TOTAL, "model" => worker.current().name().to_string())
        .record(received.elapsed().as_secs_f64());
    let mut reply = reply?;
    let labels = reply.model.labels();
    let model = reply.model.name().to_string();
    let model_version = reply.model.version();
    let mut headers = HeaderMap::new();
    headers.insert("x-queue-time", millis(reply.queue_time));
    headers.insert("x-inference-time", millis(reply.inference_time));
    headers.insert("x-total-time", millis(received.elapsed()));
    headers.insert("x-batch-size", HeaderValue::from(reply.batch_texts));
    headers.insert("x-model-version", HeaderValue::from(model_version));
    tracing::debug!(texts = n, model = %model, version = model_version, batch = reply.batch_texts, "classified");
    let explanations = reply.explanations.take().map(|e| e.into_iter());
    let mut results: Vec<TextResult> = reply
        .predictions
        .iter()
        .map(|p| to_result(p, labels, req.top_k))
        .collect();
    if let Some(explanations) = explanations {
        for (r, e) in results.iter_mut().zip(explanations) {
            r.explanation = Some(e.into_iter().map(TokenContribution::from).collect());
        }
    }
    if req.single {
        let result = results
            .into_iter()
            .next()
            .expect("one text gives one result. This is a bug.");
        Ok((
            headers,
            axum::Json(SingleResponse {
                model,
                model_version,
                result,
            }),
        )
            .into_response())
    } else {
        Ok((
            headers,
            axum::Json(BatchResponse {
                model,
                model_version,
                results,
            }),
        )
            .into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn err(body: &str) -> ApiError {
        parse_request(body.as_bytes(), 4).unwrap_err()
    }

    #[test]
    fn parses_single_and_batch_requests() {
        let r = parse_request(br#"{"text":"hi"}"#, 4).unwrap();
        assert_eq!(
            r,
            ClassifyRequest {
                texts: vec!["hi".into()],
                single: true,
                top_k: Some(5),
                model: None,
                explain: false,
                timeout_ms: None,
            }
        );
        let r = parse_request(
            br#"{"texts":["a","b"],"top_k":null,"model":"m","explain":true,"timeout_ms":250}"#,
            4,
        )
        .unwrap();
        assert_eq!(
            r,
            ClassifyRequest {
                texts: vec!["a".into(), "b".into()],
                single: false,
                top_k: None,
                model: Some("m".into()),
                explain: true,
                timeout_ms: Some(250),
            }
        );
        assert_eq!(
            parse_request(br#"{"text":"x","top_k":2}"#, 4)
                .unwrap()
                .top_k,
            Some(2)
        );
    }

    #[test]
    fn rejects_bad_requests_with_the_right_status_and_message() {
        let e = err("{not json");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        for (body, needle) in [
            ("[1]", "JSON object"),
            ("{}", "missing \"text\""),
            (r#"{"text":""}"#, "text is empty"),
            (r#"{"text":"   "}"#, "text is empty"),
            (r#"{"text":5}"#, "text must be a string"),
            (r#"{"text":"a","texts":["b"]}"#, "not both"),
            (r#"{"texts":[]}"#, "\"texts\" is empty"),
            (r#"{"texts":"a"}"#, "array of strings"),
            (r#"{"texts":["a",""]}"#, "texts[1] is empty"),
            (r#"{"texts":["a",3]}"#, "texts[1] must be a string"),
            (r#"{"text":"a","top_k":0}"#, "top_k"),
            (r#"{"text":"a","top_k":1.5}"#, "top_k"),
            (r#"{"text":"a","top_k":"3"}"#, "top_k"),
            (r#"{"text":"a","model":7}"#, "\"model\" must be a string"),
            (r#"{"txt":"a"}"#, "unknown field \"txt\""),
            (
                r#"{"text":"a","explain":"yes"}"#,
                "\"explain\" must be true or false",
            ),
            (
                r#"{"text":"a","timeout_ms":0}"#,
                "\"timeout_ms\" must be a whole number",
            ),
            (
                r#"{"text":"a","timeout_ms":-5}"#,
                "\"timeout_ms\" must be a whole number",
            ),
        ] {
            let e = err(body);
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        let e = err(r#"{"texts":["a","b","c","d","e"]}"#);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_many_texts")
        );
    }

    #[test]
    fn top_k_ranks_and_clips() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let p = Prediction {
            scores: vec![0.2, 0.7, 0.1],
            truncated: false,
            known_features: 3,
        };
        let r = to_result(&p, &labels, Some(2));
        assert_eq!(r.label, "b");
        assert_eq!(
            r.predictions
                .iter()
                .map(|l| l.label.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(to_result(&p, &labels, None).predictions.len(), 3);
        assert_eq!(to_result(&p, &labels, Some(99)).predictions.len(), 3);
    }
}
