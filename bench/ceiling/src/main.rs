//! HTTP ceiling: what axum + serde_json alone cost for textclf's `/classify` traffic.
//!
//! Parses the same request body (`text` or `texts`, `top_k`, `model`) and answers a fixed
//! prediction of the same shape as textclf (5 labels per text), so the load generator sees the
//! same request and a same-sized response. No model, no batching, no middleware.
//! Usage: `textclf-ceiling [PORT]` (default 8090); `GET /health/ready` answers 200.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    text: Option<String>,
    texts: Option<Vec<String>>,
    #[allow(dead_code)]
    top_k: Option<usize>,
    #[allow(dead_code)]
    model: Option<String>,
}

#[derive(Serialize, Clone, Copy)]
struct Label {
    label: &'static str,
    score: f32,
}

const PREDICTIONS: [Label; 5] = [
    Label {
        label: "sports",
        score: 0.9999747,
    },
    Label {
        label: "game",
        score: 0.0000167968,
    },
    Label {
        label: "entertainment",
        score: 0.000004702477,
    },
    Label {
        label: "finance",
        score: 0.0000011162343,
    },
    Label {
        label: "stocks",
        score: 0.0000010731814,
    },
];

#[derive(Serialize)]
struct One {
    label: &'static str,
    score: f32,
    predictions: [Label; 5],
    truncated: bool,
}

#[derive(Serialize)]
struct Single {
    model: &'static str,
    model_version: u32,
    #[serde(flatten)]
    result: One,
}

#[derive(Serialize)]
struct Many {
    model: &'static str,
    model_version: u32,
    results: Vec<One>,
}

fn one() -> One {
    One {
        label: "sports",
        score: 0.9999747,
        predictions: PREDICTIONS,
        truncated: false,
    }
}

async fn classify(body: axum::body::Bytes) -> Response {
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match (req.text, req.texts) {
        (Some(_), None) => Json(Single {
            model: "news-zh",
            model_version: 1,
            result: one(),
        })
        .into_response(),
        (None, Some(texts)) if !texts.is_empty() => Json(Many {
            model: "news-zh",
            model_version: 1,
            results: texts.iter().map(|_| one()).collect(),
        })
        .into_response(),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "need text or texts").into_response(),
    }
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8090);
    let app = Router::new()
        .route("/classify", post(classify))
        .route("/health/ready", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
