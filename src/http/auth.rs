//! Bearer-token protection, decided by path so that routes added later are covered too.
//!
//! - `TEXTCLF_API_KEY` (`--api-key`) guards training and model management: `/train-job…` and
//!   `/models…`, every method.
//! - `TEXTCLF_CLASSIFY_API_KEY` (`--classify-api-key`) guards `/classify`, separately.
//! - Health, info, metrics and the API document stay open.
//!
//! Keys are compared in constant time (`subtle`), so response timing does not leak a prefix.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The keys in force (none by default).
#[derive(Clone, Default)]
pub struct ApiKeys {
    pub admin: Option<String>,
    pub classify: Option<String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("admin", &self.admin.as_ref().map(|_| "<set>"))
            .field("classify", &self.classify.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Which key, if any, a path needs.
fn required<'a>(keys: &'a ApiKeys, path: &str) -> Option<&'a str> {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/train-job") || under("/models") {
        keys.admin.as_deref()
    } else if under("/classify") {
        keys.classify.as_deref()
    } else {
        None
    }
}

fn presented(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Middleware: 401 unless the request carries the key its path needs.
pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(expected) = required(&state.keys, req.uri().path()) {
        let ok = presented(&req)
            .is_some_and(|got| bool::from(got.as_bytes().ct_eq(expected.as_bytes())));
        if !ok {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs `Authorization: Bearer <key>` with the server's API key",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_right_key() {
        let keys = ApiKeys {
            admin: Some("a".into()),
            classify: Some("c".into()),
        };
        assert_eq!(required(&keys, "/train-job"), Some("a"));
        assert_eq!(required(&keys, "/train-job/abc/cancel"), Some("a"));
        assert_eq!(required(&keys, "/models/news-zh/promote"), Some("a"));
        assert_eq!(required(&keys, "/classify"), Some("c"));
        assert_eq!(required(&keys, "/modelsx"), None);
        for open in [
            "/health",
            "/health/ready",
            "/metrics",
            "/info",
            "/openapi.yaml",
        ] {
            assert_eq!(required(&keys, open), None, "{open}");
        }
        assert_eq!(required(&ApiKeys::default(), "/train-job"), None);
    }
}
