//! Production behaviour (issue 4): metrics, API keys, explanations, deadlines, health during
//! shutdown, and SIGTERM draining a real process.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use textclf::http::Limits;
use textclf::http::auth::ApiKeys;
use textclf::jobs::store::{JobStatus, Store};
use textclf::serve::BatchConfig;

use crate::common::{serve_state, shipped_state, start_server};

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Parses a Prometheus text exposition into `series → value`; panics on a malformed line.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        assert!(
            name_end == series.len() || series.ends_with('}'),
            "unterminated labels in {line:?}"
        );
        out.insert(series.to_string(), value);
    }
    out
}

async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    parse_exposition(&resp.text().await.unwrap())
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_their_counters_move() {
    let (addr, _) = start_server(BatchConfig::default(), Limits::default()).await;
    let ok = r#"textclf_http_requests_total{route="/classify",method="POST",status="200"}"#;
    let bad = r#"textclf_http_requests_total{route="/classify",method="POST",status="422"}"#;
    let texts = r#"textclf_texts_classified_total{model="news-zh"}"#;
    let batches = r#"textclf_batch_size_count{model="news-zh"}"#;
    let before = scrape(addr).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/classify");
    let (s, _) = send(
        client
            .post(&url)
            .body(json!({"texts": ["比赛", "股市", "游戏"]}).to_string()),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(client.post(&url).body(json!({"text": ""}).to_string())).await;
    assert_eq!(s, 422);
    let after = scrape(addr).await;
    // Other tests in this process share the recorder: counters only ever grow by at least ours.
    assert!(get(&after, ok) >= get(&before, ok) + 1.0);
    assert!(get(&after, bad) >= get(&before, bad) + 1.0);
    assert!(get(&after, texts) >= get(&before, texts) + 3.0);
    assert!(get(&after, batches) >= get(&before, batches) + 1.0);
    assert_eq!(
        get(&after, r#"textclf_model_info{model="news-zh",version="1"}"#),
        1.0
    );
    assert!(after.contains_key(r#"textclf_queue_texts{model="news-zh"}"#));
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("textclf_queue_wait_seconds_bucket"))
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("textclf_inference_seconds_bucket"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_management_and_classify_separately() {
    let keys = ApiKeys {
        admin: Some("admin-secret".into()),
        classify: Some("classify-secret".into()),
    };
    let state = shipped_state(BatchConfig::default(), Limits::default()).with_keys(keys);
    let (addr, _) = serve_state(state, std::future::pending()).await;
    let c = reqwest::Client::new();
    let classify = || {
        c.post(format!("http://{addr}/classify"))
            .body(json!({"text": "比赛"}).to_string())
    };
    let (s, body) = send(classify()).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(send(classify().bearer_auth("wrong")).await.0, 401);
    assert_eq!(
        send(classify().bearer_auth("admin-secret")).await.0,
        401,
        "keys are separate"
    );
    assert_eq!(send(classify().bearer_auth("classify-secret")).await.0, 200);
    let resp = c
        .get(format!("http://{addr}/train-job"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (s, _) = send(
        c.post(format!("http://{addr}/models/news-zh/promote"))
            .bearer_auth("classify-secret")
            .body("{}"),
    )
    .await;
    assert_eq!(s, 401);
    for open in [
        "/health",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/info",
    ] {
        assert_eq!(
            c.get(format!("http://{addr}{open}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200,
            "{open}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_point_at_the_sports_words_of_real_headlines() {
    let (addr, _) = start_server(BatchConfig::default(), Limits::default()).await;
    // The issue's example and real THUCNews test headlines, with the words that make them sport.
    let cases: [(&str, &[&str]); 4] = [
        (
            "詹姆斯砍下40分带领湖人击败勇士",
            &["湖人", "詹姆", "姆斯", "勇士", "砍"],
        ),
        (
            "男子冰壶中国队8比1大胜丹麦 赢得冬奥会首场胜利",
            &["冰壶", "冬奥", "奥会", "大胜", "胜利", "首场", "冰", "壶"],
        ),
        (
            "主帅称热火输给一班替补球员 闪电侠感冒不忘自责",
            &["主帅", "热火", "替补", "球员", "闪电侠", "闪电", "电侠"],
        ),
        (
            "里皮回避卸任问题谈世界杯卫冕：只靠年轻人是不够的",
            &["里皮", "世界杯", "世界", "界杯", "卫冕", "冕"],
        ),
    ];
    let c = reqwest::Client::new();
    for (text, sports_words) in cases {
        let (s, body) = send(
            c.post(format!("http://{addr}/classify"))
                .body(json!({"text": text, "explain": true}).to_string()),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["label"], "sports", "{text}");
        let exp = body["explanation"].as_array().expect("explanation present");
        assert!(!exp.is_empty());
        let chars: Vec<char> = text.chars().collect();
        for e in exp {
            let (start, end) = (
                e["start"].as_u64().unwrap() as usize,
                e["end"].as_u64().unwrap() as usize,
            );
            assert_eq!(
                chars[start..end].iter().collect::<String>(),
                e["token"].as_str().unwrap(),
                "offsets are in characters"
            );
        }
        let contributions: Vec<f64> = exp
            .iter()
            .map(|e| e["contribution"].as_f64().unwrap())
            .collect();
        assert!(
            contributions.windows(2).all(|w| w[0] >= w[1]),
            "largest first"
        );
        let top: Vec<&str> = exp
            .iter()
            .take(2)
            .map(|e| e["token"].as_str().unwrap())
            .collect();
        for t in &top {
            assert!(sports_words.contains(t), "{text}: top tokens {top:?}");
        }
        assert!(
            contributions[0] > 0.5,
            "{text}: top contribution {}",
            contributions[0]
        );
    }
    // Plain requests carry no explanation.
    let (_, body) = send(
        c.post(format!("http://{addr}/classify"))
            .body(json!({"text": "比赛"}).to_string()),
    )
    .await;
    assert!(body.get("explanation").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_do_not_hold_up_plain_requests() {
    let (addr, state) = start_server(BatchConfig::default(), Limits::default()).await;
    let stats = state.registry.get(None).unwrap().stats.clone();
    let c = reqwest::Client::new();
    // 256 texts of four real headlines each, with explanations: one extra forward row per
    // feature (~150 per text), about a second of work or more.
    let dir = crate::common::data("thucnews_titles").expect("THUCNews titles");
    let headlines: Vec<String> = crate::common::read(&dir.join("test.jsonl"))
        .into_iter()
        .take(1024)
        .map(|e| e.text)
        .collect();
    let texts: Vec<String> = headlines.chunks(4).map(|c| c.join("，")).collect();
    let heavy = tokio::spawn(send(
        c.post(format!("http://{addr}/classify"))
            .body(json!({"texts": texts, "explain": true, "top_k": 1}).to_string()),
    ));
    let until = Instant::now() + Duration::from_secs(30);
    while stats.explaining.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the explanations never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // While they are computed, a plain request gets its forward pass and its answer.
    let batches = stats.batches.load(Ordering::SeqCst);
    let (status, body) = send(
        c.post(format!("http://{addr}/classify"))
            .body(json!({"text": "詹姆斯砍下40分带领湖人击败勇士"}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["label"].as_str()),
        (200, Some("sports")),
        "{body}"
    );
    assert_eq!(stats.batches.load(Ordering::SeqCst), batches + 1);
    assert_eq!(
        stats.explaining.load(Ordering::SeqCst),
        1,
        "the plain request was answered while the explanations were still being computed"
    );
    let (status, body) = heavy.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 256);
    assert!(results.iter().all(|r| r["explanation"].is_array()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_may_shorten_its_deadline_but_not_lengthen_it() {
    let batch = BatchConfig {
        max_batch_delay: Duration::from_millis(300),
        ..BatchConfig::default()
    };
    let limits = Limits {
        request_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let (addr, _) = start_server(batch, limits).await;
    let c = reqwest::Client::new();
    let started = Instant::now();
    let (s, body) = send(
        c.post(format!("http://{addr}/classify"))
            .body(json!({"text": "比赛", "timeout_ms": 50}).to_string()),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (503, Some("deadline_exceeded")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(290),
        "answered at the request's own deadline"
    );
    let (s, _) = send(
        c.post(format!("http://{addr}/classify"))
            .body(json!({"text": "比赛", "timeout_ms": 60_000}).to_string()),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_false_at_once_when_shutdown_begins() {
    use tower::ServiceExt;
    // A request lingers ~1.5 s in the batcher, so the drain has something to wait for.
    let batch = BatchConfig {
        max_batch_delay: Duration::from_millis(1500),
        ..BatchConfig::default()
    };
    let state = shipped_state(batch, Limits::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, handle) = serve_state(state.clone(), async move {
        let _ = rx.await;
    })
    .await;
    let ready = |state: textclf::http::AppState| async move {
        let req = axum::http::Request::get("/health/ready")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = textclf::http::router(state).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    assert_eq!(ready(state.clone()).await.0, 200);
    let c = reqwest::Client::new();
    let inflight = tokio::spawn(send(
        c.post(format!("http://{addr}/classify"))
            .body(json!({"text": "湖人击败勇士"}).to_string()),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Draining: the request has not been answered yet, and readiness already says 503.
    assert!(!inflight.is_finished(), "the request is still in flight");
    let (status, body) = ready(state.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(!state.is_ready());
    let (status, body) = inflight.await.unwrap();
    assert_eq!(status, 200, "the in-flight request finished: {body}");
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

/// A free loopback port (bound, then released for the child process).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real `textclf serve` process on a free port with the shipped models and `data` as its
/// data directory, once it answers ready. Its log goes to `data/server-<port>.log`.
// The child is handed to the caller, which waits for it; clippy cannot see past the return.
#[allow(clippy::zombie_processes)]
async fn spawn_server(data: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    let port = free_port();
    let log = data.join(format!("server-{port}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_textclf"))
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .arg("--models-dir")
        .arg(crate::common::models_dir())
        .arg("--data-dir")
        .arg(data)
        .env_remove("TEXTCLF_API_KEY")
        .env_remove("TEXTCLF_CLASSIFY_API_KEY")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start textclf");
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = c.get(format!("{base}/health/ready")).send().await
            && r.status().as_u16() == 200
        {
            return (child, base);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("server never became ready; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` sms_spam training rows as a JSONL upload body.
fn spam_upload(n: usize) -> Option<Vec<u8>> {
    let dir = crate::common::data("sms_spam")?;
    let mut body = Vec::new();
    for e in crate::common::read(&dir.join("train.jsonl")).iter().take(n) {
        serde_json::to_writer(&mut body, e).unwrap();
        body.push(b'\n');
    }
    Some(body)
}

/// Waits until job `id` is running and has taken a training step.
async fn wait_training(c: &reqwest::Client, base: &str, id: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, job) = send(c.get(format!("{base}/train-job/{id}"))).await;
        if job["status"] == "running" && job["progress"]["step"].as_u64().unwrap_or(0) > 0 {
            return;
        }
        assert!(Instant::now() < until, "the job never ran: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_stops_training_and_exits_zero() {
    let Some(upload) = spam_upload(1000) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_server(data.path(), &["--max-batch-delay-ms", "1500"]).await;
    let c = reqwest::Client::new();
    // A fine-tune job that would train for minutes is running when the signal comes.
    let (status, job) = send(
        c.post(format!(
            "{base}/train-job?model=long&epochs=500&validation_split=0"
        ))
        .header("content-type", "application/x-ndjson")
        .body(upload),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().unwrap().to_string();
    wait_training(&c, &base, &job_id).await;
    // Two requests wait ~1.5 s in the batcher; SIGTERM arrives while they are in flight.
    let inflight: Vec<_> = ["詹姆斯砍下40分带领湖人击败勇士", "央行宣布下调存款准备金率"]
        .into_iter()
        .map(|t| {
            let req = c
                .post(format!("{base}/classify"))
                .body(json!({"text": t}).to_string());
            tokio::spawn(async move { send(req).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for h in inflight {
        let (s, body) = h.await.unwrap();
        assert_eq!(
            s, 200,
            "in-flight request finished during the drain: {body}"
        );
    }
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "process did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // Within the drain bound (10 s by default), training included.
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(
        c.get(format!("{base}/health/live")).send().await.is_err(),
        "no new connections after exit"
    );
    // The training job recorded its end before the process exited: failed, interrupted.
    let store = Store::open(&data.path().join("jobs.sqlite3")).unwrap();
    let job = store
        .get(&job_id)
        .unwrap()
        .expect("the accepted job is kept");
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.map(|e| e.code).as_deref(), Some("interrupted"));
    assert!(job.result.is_none(), "no version was written");
    assert!(
        !data.path().join("models/long/1").exists(),
        "no version directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_when_the_process_is_killed_is_failed_interrupted_at_the_next_start() {
    let Some(body) = spam_upload(1000) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_server(data.path(), &[]).await;
    let c = reqwest::Client::new();
    let submit = |model: &str, epochs: u32| {
        c.post(format!(
            "{base}/train-job?model={model}&epochs={epochs}&validation_split=0"
        ))
        .header("content-type", "application/x-ndjson")
        .body(body.clone())
    };
    let (status, running) = send(submit("doomed", 500)).await;
    assert_eq!(status, 202, "{running}");
    let (status, waiting) = send(submit("after", 1)).await;
    assert_eq!(status, 202, "{waiting}");
    let id = running["id"].as_str().unwrap().to_string();
    wait_training(&c, &base, &id).await;
    // kill -9: no shutdown code runs, the store still says "running".
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, base) = spawn_server(data.path(), &[]).await;
    let (status, job) = send(c.get(format!("{base}/train-job/{id}"))).await;
    assert_eq!(status, 200, "the accepted job survived the kill: {job}");
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "interrupted", "{job}");
    // The job queued behind it was accepted too: it is still there and runs now.
    let waiting_id = waiting["id"].as_str().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, w) = send(c.get(format!("{base}/train-job/{waiting_id}"))).await;
        if w["status"] == "succeeded" {
            break;
        }
        assert!(
            ["queued", "running"].contains(&w["status"].as_str().unwrap_or("")),
            "{w}"
        );
        assert!(
            Instant::now() < until,
            "the waiting job never finished: {w}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The killed job left no model version; the one after it left exactly one.
    let (_, models) = send(c.get(format!("{base}/models"))).await;
    let text = models.to_string();
    assert!(!text.contains("\"doomed\""), "{models}");
    assert!(text.contains("\"after\""), "{models}");
    child.kill().unwrap();
    child.wait().unwrap();
}
