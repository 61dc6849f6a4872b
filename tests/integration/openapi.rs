//! The API contract: the committed `openapi.yaml` is the document the code generates, the server
//! serves it, and every operation in it is routed. (CI's `.ci/contract.sh` then runs
//! schemathesis against a live server with the same document.)

use std::collections::BTreeSet;

use serde_json::Value;
use textclf::http::Limits;
use textclf::serve::BatchConfig;

use crate::common::{repo, start_server};

const REGENERATE: &str = "regenerate it with `cargo run --release -- openapi --out openapi.yaml` \
    (or `UPDATE_OPENAPI=1 cargo test --release openapi`) and commit it";

#[test]
fn committed_openapi_yaml_is_the_generated_one() {
    let path = repo().join("openapi.yaml");
    let generated = textclf::http::openapi::yaml();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).expect("write openapi.yaml");
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()));
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "openapi.yaml differs from the document the routes generate (first difference at \
             line {}: committed {:?}, generated {:?}); {REGENERATE}",
            line + 1,
            committed.lines().nth(line),
            generated.lines().nth(line),
        );
    }
}

/// Routes registered with plain `.route(..)` would be served but missing from the document.
#[test]
fn the_router_registers_routes_only_with_their_documentation() {
    let src = std::fs::read_to_string(repo().join("src/http/mod.rs")).expect("read mod.rs");
    let undocumented: Vec<&str> = src
        .lines()
        .filter(|l| l.contains(".route(") || l.contains(".route_service(") || l.contains(".nest("))
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "src/http/mod.rs registers routes outside the OpenAPI router: {undocumented:?}; use \
         `.routes(routes!(handler))` with a #[utoipa::path] on the handler"
    );
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_its_document_and_routes_every_operation() {
    let (addr, _state) = start_server(BatchConfig::default(), Limits::default()).await;
    let client = reqwest::Client::new();

    let resp = client
        .get(format!("http://{addr}/openapi.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    assert_eq!(resp.text().await.unwrap(), textclf::http::openapi::yaml());

    let doc: Value = client
        .get(format!("http://{addr}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, serde_json::to_value(textclf::http::openapi()).unwrap());

    let page = client
        .get(format!("http://{addr}/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("api-reference") && html.contains("/classify"));

    let ops = operations(&doc);
    for path in [
        "/classify",
        "/health",
        "/health/ready",
        "/health/live",
        "/info",
    ] {
        assert!(
            ops.iter().any(|(_, p)| p == path),
            "{path} is not in the document"
        );
    }
    // Every documented operation reaches a handler: neither the 404 fallback nor a 405. Path
    // parameters get a value that names nothing, bodies are empty objects, so nothing changes.
    for (method, path) in &ops {
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "no-such-id"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let url = format!("http://{addr}{concrete}");
        let req = match method.as_str() {
            "get" => client.get(&url),
            "post" => client
                .post(&url)
                .header("content-type", "application/json")
                .body("{}"),
            "put" => client.put(&url).body("{}"),
            "patch" => client.patch(&url).body("{}"),
            _ => client.delete(&url),
        };
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), req.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {path} timed out"))
            .unwrap();
        let status = resp.status().as_u16();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        if status == 404 {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_ne!(
                body["error"]["code"], "not_found",
                "{method} {path} is documented but falls through to the 404 fallback"
            );
        }
        let documented = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} documents no responses"));
        assert!(
            documented.contains_key(&status.to_string()),
            "{method} {path} answered {status}, which it does not document ({:?})",
            documented.keys().collect::<Vec<_>>()
        );
    }
}
