//! The HTTP API, served in-process on a free port with the shipped models.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use textclf::http::Limits;
use textclf::model::backend;
use textclf::serve::BatchConfig;

use crate::common::{data, load_model, read, start_server};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("every answer is JSON"))
}

async fn post(
    addr: std::net::SocketAddr,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .post(format!("http://{addr}/classify"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.expect("every answer is JSON");
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_the_issue_example_and_real_headlines() {
    let (addr, _) = start_server(BatchConfig::default(), Limits::default()).await;
    let (status, headers, body) = post(
        addr,
        json!({"text": "詹姆斯砍下40分带领湖人击败勇士"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["label"], "sports");
    assert_eq!(body["model"], "news-zh");
    assert_eq!(body["model_version"], 1);
    assert_eq!(body["predictions"].as_array().unwrap().len(), 5);
    assert_eq!(body["predictions"][0]["label"], "sports");
    assert_eq!(body["truncated"], false);
    assert!(headers.contains_key("x-inference-time") && headers.contains_key("x-queue-time"));
    assert!(headers.contains_key("x-request-id"));

    let (_, _, body) = post(addr, json!({"text": "NASA launches a new probe to study the Sun's corona; the spacecraft will orbit closer than any before", "model": "newsgroups-en", "top_k": null}).to_string()).await;
    assert_eq!(body["label"], "sci.space", "{body}");
    assert_eq!(body["predictions"].as_array().unwrap().len(), 20);

    let Some(dir) = data("thucnews_titles") else {
        return;
    };
    let test = read(&dir.join("test.jsonl"));
    let sample: Vec<_> = test.iter().step_by(50).take(200).collect();
    let texts: Vec<&str> = sample.iter().map(|e| e.text.as_str()).collect();
    let (status, _, body) = post(addr, json!({"texts": texts}).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), sample.len());
    let correct = results
        .iter()
        .zip(&sample)
        .filter(|(r, e)| r["label"] == e.label.as_str())
        .count();
    let accuracy = correct as f64 / sample.len() as f64;
    assert!(
        accuracy >= 0.85,
        "HTTP accuracy on 200 test headlines: {accuracy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_answer_and_are_batched() {
    // A short linger makes sure that requests share batches even if the worker keeps up.
    let batch = BatchConfig {
        max_batch_delay: Duration::from_millis(5),
        ..BatchConfig::default()
    };
    let (addr, state) = start_server(batch, Limits::default()).await;
    let Some(dir) = data("thucnews_titles") else {
        return;
    };
    let texts: Vec<String> = read(&dir.join("test.jsonl"))
        .into_iter()
        .step_by(37)
        .take(200)
        .map(|e| e.text)
        .collect();
    // The answer each text gets alone, from the model directly.
    let model = load_model("news-zh");
    let device = backend::device();
    let alone: Vec<(String, f32)> = texts
        .iter()
        .map(|t| {
            let p = model.classify(&[t.as_str()], &device).remove(0);
            (model.labels()[p.best()].clone(), p.scores[p.best()])
        })
        .collect();
    let handles: Vec<_> = texts
        .iter()
        .cloned()
        .map(|t| tokio::spawn(async move { post(addr, json!({"text": t}).to_string()).await }))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (status, _, body) = h.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["label"],
            alone[i].0.as_str(),
            "request {i} got another text's answer"
        );
        let score = body["score"].as_f64().unwrap() as f32;
        assert!(
            (score - alone[i].1).abs() <= 1e-5,
            "request {i}: {score} vs {}",
            alone[i].1
        );
    }
    let stats = &state.registry.get(None).unwrap().stats;
    let multi = stats.multi_job_batches.load(Ordering::Relaxed);
    let jobs = stats.jobs.load(Ordering::Relaxed);
    let batches = stats.batches.load(Ordering::Relaxed);
    println!(
        "{jobs} requests in {batches} forward passes, {multi} of them with more than one request"
    );
    assert_eq!(jobs, 200);
    assert!(multi >= 1, "no forward pass served more than one request");
    assert!(batches < jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_requests_keep_order() {
    let (addr, _) = start_server(BatchConfig::default(), Limits::default()).await;
    let (status, _, body) = post(addr, json!({"texts": ["詹姆斯砍下40分带领湖人击败勇士", "央行下调存款准备金率 股市大涨", "新款网络游戏今日公测"], "top_k": 1}).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let labels: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels[0], "sports");
    assert!(["stocks", "finance"].contains(&labels[1]), "{labels:?}");
    assert_eq!(labels[2], "game");
    assert_eq!(
        body["results"][0]["predictions"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_with_the_right_status() {
    let limits = Limits {
        max_body_bytes: 4096,
        max_texts_per_request: 8,
        ..Limits::default()
    };
    let (addr, _) = start_server(BatchConfig::default(), limits).await;
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "invalid_json"),
        ("".into(), 400, "invalid_json"),
        (json!({"text": ""}).to_string(), 422, "validation_error"),
        (json!({"text": 12}).to_string(), 422, "validation_error"),
        (json!({}).to_string(), 422, "validation_error"),
        (json!({"texts": []}).to_string(), 422, "validation_error"),
        (
            json!({"text": "x", "top_k": -1}).to_string(),
            422,
            "validation_error",
        ),
        (
            json!({"text": "x", "model": "nope"}).to_string(),
            404,
            "model_not_found",
        ),
        (
            json!({"texts": vec!["x"; 9]}).to_string(),
            413,
            "too_many_texts",
        ),
        (
            json!({"text": "长".repeat(3000)}).to_string(),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let (got, _, answer) = post(addr, body.clone()).await;
        assert_eq!(got, status, "{body:.60}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body:.60}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, body) = get_json(addr, "/classify").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (405, &json!("method_not_allowed"))
    );
    let (status, body) = get_json(addr, "/nope").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_texts_are_truncated_not_rejected() {
    let (addr, _) = start_server(BatchConfig::default(), Limits::default()).await;
    let long = "湖人队今天在主场击败了勇士队。".repeat(2000);
    let (status, _, body) = post(addr, json!({"text": long}).to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated"], true);
    assert_eq!(body["label"], "sports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_at_once_never_5xx() {
    // A tiny queue and a long batching delay: most of a burst cannot be admitted.
    let batch = BatchConfig {
        max_batch_size: 4,
        max_batch_delay: Duration::from_millis(200),
        max_queued_texts: 4,
    };
    let (addr, _) = start_server(batch, Limits::default()).await;
    let handles: Vec<_> = (0..40)
        .map(|i| {
            tokio::spawn(async move {
                post(addr, json!({"text": format!("比赛 {i}")}).to_string()).await
            })
        })
        .collect();
    let (mut ok, mut overloaded) = (0, 0);
    for h in handles {
        let (status, headers, body) = h.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                overloaded += 1;
                assert_eq!(body["error"]["code"], "overloaded");
                assert_eq!(headers["retry-after"], "1");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(ok >= 4 && overloaded >= 1, "ok {ok}, 429 {overloaded}");
    // A request larger than the whole queue can never be admitted: 413, not 429 forever.
    let (status, _, body) = post(addr, json!({"texts": vec!["比赛"; 5]}).to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_many_texts")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_info_describe_the_loaded_models() {
    let (addr, _) = start_server(BatchConfig::default(), Limits::default()).await;
    for path in ["/health", "/health/ready"] {
        let (status, body) = get_json(addr, path).await;
        assert_eq!((status, &body["status"]), (200, &json!("ok")));
        let names: Vec<&str> = body["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["news-zh", "newsgroups-en"]);
    }
    let (status, live) = get_json(addr, "/health/live").await;
    assert_eq!((status, &live["status"]), (200, &json!("ok")));
    let (status, info) = get_json(addr, "/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["batching"]["max_batch_size"], 64);
    assert_eq!(info["limits"]["max_texts_per_request"], 256);
    assert_eq!(info["models"][0]["labels"].as_array().unwrap().len(), 10);
    assert_eq!(info["models"][0]["max_tokens"], 256);
}

/// A batching window longer than the client's patience: the job is still queued when it goes.
fn slow_batches() -> BatchConfig {
    BatchConfig {
        max_batch_delay: Duration::from_millis(400),
        ..BatchConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_queued_at_its_deadline_gets_503() {
    let limits = Limits {
        request_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let (addr, state) = start_server(slow_batches(), limits).await;
    let (status, headers, body) = post(addr, json!({"text": "比赛"}).to_string()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert_eq!(headers["retry-after"], "1");
    // The worker skips it when its batch comes up: counted as expired, no forward pass.
    let stats = state.registry.get(None).unwrap().stats.clone();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while stats.expired.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.expired.load(Ordering::Relaxed), 1);
    assert_eq!(stats.dropped_disconnected.load(Ordering::Relaxed), 0);
    assert_eq!(
        stats.batches.load(Ordering::Relaxed),
        0,
        "no forward pass ran for it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_client_is_dropped_before_the_forward_pass() {
    use std::io::Write;
    let batch = BatchConfig {
        max_batch_delay: Duration::from_millis(1500),
        ..BatchConfig::default()
    };
    let (addr, state) = start_server(batch, Limits::default()).await;
    let worker = state.registry.get(None).unwrap();
    // A raw connection: send the request, wait until the job is queued, then hang up.
    let body = json!({"text": "比赛"}).to_string();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while worker.queued_texts() == 0 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(worker.queued_texts(), 1, "the job was queued");
    drop(conn);
    let stats = state.registry.get(None).unwrap().stats.clone();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while stats.dropped_disconnected.load(Ordering::Relaxed) == 0
        && std::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.dropped_disconnected.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.batches.load(Ordering::Relaxed),
        0,
        "no forward pass ran for it"
    );
}
