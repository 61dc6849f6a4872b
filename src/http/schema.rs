//! OpenAPI schemas for bodies that are not (de)serialised through serde types.
//!
//! `POST /classify` parses its body by hand ([`super::classify::parse_request`]) to give precise
//! error messages, so its request schema is described here by types that mirror that parser:
//! exactly one of `text`/`texts`, no other fields than those listed (`additionalProperties:
//! false`). They derive `Deserialize` only so that the unit tests below can check that the schema
//! accepts and rejects the same bodies as the parser; keep both in step when a field is added.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::classify::{BatchResponse, SingleResponse};

/// A text to classify: it must contain a non-whitespace character. A text longer than the model
/// reads is truncated (its result says `"truncated": true`), not rejected.
#[derive(Deserialize, ToSchema)]
#[schema(value_type = String, pattern = r"\S", example = "詹姆斯砍下40分带领湖人击败勇士")]
pub struct Text(pub String);

/// One text: answered by one result object.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "詹姆斯砍下40分带领湖人击败勇士"}))]
pub struct SingleRequest {
    pub text: Text,
    /// How many of the best labels to return (default 5); `null` for every label. The parser
    /// accepts whole numbers from 1 up to `u64::MAX` (larger ones are read as floats: 422).
    #[serde(default)]
    #[schema(
        minimum = 1,
        maximum = 18446744073709551615_u64,
        default = 5,
        example = 3
    )]
    pub top_k: Option<u64>,
    /// A loaded model's name (see `/info`); default: the server's default model.
    #[serde(default)]
    #[schema(example = "news-zh")]
    pub model: Option<String>,
    /// Also return each token's contribution to the predicted label (occlusion; costs one
    /// extra forward pass per text).
    #[serde(default)]
    #[schema(default = false)]
    pub explain: Option<bool>,
    /// A deadline shorter than the server's default, in milliseconds (a longer one is ignored).
    /// Still queued when it passes → 503 `deadline_exceeded`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 18446744073709551615_u64, example = 500)]
    pub timeout_ms: Option<u64>,
}

/// Several texts: answered by one result per text, in order. At most 256 texts per request by
/// default (`--max-texts-per-request`); more is a 413.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"texts": ["央行宣布降准0.5个百分点", "詹姆斯砍下40分带领湖人击败勇士"], "top_k": 2}))]
pub struct BatchRequest {
    #[schema(min_items = 1)]
    pub texts: Vec<Text>,
    /// How many of the best labels to return per text (default 5); `null` for every label.
    #[serde(default)]
    #[schema(
        minimum = 1,
        maximum = 18446744073709551615_u64,
        default = 5,
        example = 2
    )]
    pub top_k: Option<u64>,
    /// A loaded model's name (see `/info`); default: the server's default model.
    #[serde(default)]
    #[schema(example = "news-zh")]
    pub model: Option<String>,
    /// Also return each token's contribution to the predicted label (occlusion; costs one
    /// extra forward pass per text).
    #[serde(default)]
    #[schema(default = false)]
    pub explain: Option<bool>,
    /// A deadline shorter than the server's default, in milliseconds (a longer one is ignored).
    /// Still queued when it passes → 503 `deadline_exceeded`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 18446744073709551615_u64, example = 500)]
    pub timeout_ms: Option<u64>,
}

/// The body of `POST /classify`: `{"text": ...}` or `{"texts": [...]}`, never both.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ClassifyRequest {
    Single(SingleRequest),
    Batch(BatchRequest),
}

/// The answer of `POST /classify`: the shape follows the request's (`text` → one result,
/// `texts` → `results`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClassifyResponse {
    Single(SingleResponse),
    Batch(BatchResponse),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::classify::parse_request;

    fn schema_accepts(body: &str) -> bool {
        serde_json::from_str::<ClassifyRequest>(body).is_ok()
    }

    /// Bodies the parser accepts must fit the schema, so that generated clients can send them.
    #[test]
    fn schema_accepts_what_the_parser_accepts() {
        for body in [
            r#"{"text":"hi"}"#,
            r#"{"text":"hi","top_k":null,"model":null}"#,
            r#"{"text":"hi","top_k":18446744073709551615,"model":"news-zh"}"#,
            r#"{"texts":["a","b"],"top_k":2}"#,
            r#"{"texts":["a"],"model":"newsgroups-en"}"#,
        ] {
            assert!(parse_request(body.as_bytes(), 256).is_ok(), "{body}");
            assert!(schema_accepts(body), "the schema rejects {body}");
        }
    }

    /// Bodies whose shape the parser rejects must not fit the schema either (the checks that
    /// serde cannot express here, blank texts, `top_k` < 1 and `min_items`, are written as
    /// `pattern`, `minimum` and `minItems` in the document and checked by schemathesis).
    #[test]
    fn schema_rejects_the_shapes_the_parser_rejects() {
        for body in [
            r#"{}"#,
            r#"{"text":"a","texts":["b"]}"#,
            r#"{"txt":"a"}"#,
            r#"{"text":"a","extra":1}"#,
            r#"{"text":5}"#,
            r#"{"texts":"a"}"#,
            r#"{"texts":["a",3]}"#,
            r#"{"text":"a","top_k":"3"}"#,
            r#"{"text":"a","top_k":1.5}"#,
            r#"{"text":"a","top_k":-1}"#,
            r#"{"text":"a","model":7}"#,
            r#"[{"text":"a"}]"#,
        ] {
            assert!(parse_request(body.as_bytes(), 256).is_err(), "{body}");
            assert!(!schema_accepts(body), "the schema accepts {body}");
        }
    }

    #[test]
    fn documented_request_schema_is_strict() {
        let doc = serde_json::to_value(crate::http::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for name in ["SingleRequest", "BatchRequest"] {
            assert_eq!(
                schemas[name]["additionalProperties"],
                serde_json::Value::Bool(false),
                "{name}"
            );
        }
        assert_eq!(
            schemas["SingleRequest"]["required"],
            serde_json::json!(["text"])
        );
        assert_eq!(
            schemas["BatchRequest"]["required"],
            serde_json::json!(["texts"])
        );
        assert_eq!(schemas["Text"]["pattern"], "\\S");
        assert_eq!(
            schemas["SingleRequest"]["properties"]["top_k"]["maximum"],
            serde_json::json!(u64::MAX)
        );
    }
}
