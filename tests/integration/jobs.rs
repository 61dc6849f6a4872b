//! Fine-tune jobs over HTTP: the whole loop (submit, watch, evaluate, promote, roll back),
//! cancellation, restart, promotion under load and bad requests. Each test has its own data
//! directory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use textclf::http::{AppState, Limits};
use textclf::jobs::{Hyperparameters, JobManager, JobSpec, JobStatus, JobsConfig, Store};
use textclf::serve::{BatchConfig, ModelRegistry};
use textclf::train::Example;

use crate::common::{data, models_dir, read};

struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    fn jobs(&self) -> &JobManager {
        self.state.jobs.as_ref().expect("jobs are on")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops serving and shuts the job system down (running jobs go back to the queue).
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let jobs = self.jobs().clone();
        tokio::task::spawn_blocking(move || jobs.shutdown(Duration::from_secs(20)))
            .await
            .unwrap();
    }
}

async fn start(config: JobsConfig) -> Server {
    let models = ModelRegistry::load_dir(&models_dir()).expect("shipped models load");
    let registry =
        ModelRegistry::start(models, "news-zh", &BatchConfig::default()).expect("registry");
    let state = AppState::new(registry, Limits::default());
    let registry = state.registry.clone();
    let jobs = tokio::task::spawn_blocking(move || JobManager::open(config, registry))
        .await
        .unwrap()
        .expect("job manager opens");
    let state = state.with_jobs(jobs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(textclf::server::serve(
        listener,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        state,
        stop: Some(tx),
    }
}

fn config(dir: &Path) -> JobsConfig {
    JobsConfig::new(dir, &models_dir())
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = client().get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn post_json(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = client().post(s.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn upload(s: &Server, query: &str, body: Vec<u8>) -> (u16, Value) {
    let r = client()
        .post(s.url(&format!("/train-job?{query}")))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn jsonl(examples: &[Example]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in examples {
        serde_json::to_writer(&mut out, e).unwrap();
        out.push(b'\n');
    }
    out
}

/// Polls a job until `done(job)` or the timeout.
async fn wait_for(s: &Server, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, job) = get(s, &format!("/train-job/{id}")).await;
        assert_eq!(status, 200, "{job}");
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < until, "job {id} timed out: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_finished(s: &Server, id: &str, secs: u64) -> Value {
    wait_for(s, id, secs, |j| {
        matches!(
            j["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
    })
    .await
}

/// Accuracy of `/classify` with `model` on `examples`, and the versions that answered.
async fn http_accuracy(s: &Server, model: &str, examples: &[Example]) -> (f64, Vec<u64>) {
    let mut correct = 0;
    let mut versions = Vec::new();
    for chunk in examples.chunks(256) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let (status, body) = post_json(
            s,
            "/classify",
            &json!({"texts": texts, "model": model, "top_k": 1}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        versions.push(body["model_version"].as_u64().unwrap());
        for (e, r) in chunk.iter().zip(body["results"].as_array().unwrap()) {
            if r["label"] == e.label.as_str() {
                correct += 1;
            }
        }
    }
    (correct as f64 / examples.len() as f64, versions)
}

fn event_types(events: &Value) -> Vec<String> {
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_sms_spam_job_succeeds_and_scores_what_offline_training_scores() {
    let Some(dir) = data("sms_spam") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let s = start(config(tmp.path())).await;
    let test = read(&dir.join("test.jsonl"));
    let body = std::fs::read(dir.join("train.jsonl")).unwrap();

    // Every hyperparameter at its default, as a user would first try.
    let started = Instant::now();
    let (status, job) = upload(&s, "model=spam", body).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["train_examples"], 4460);
    let id = job["id"].as_str().unwrap().to_string();
    assert!(job["created_at"].is_string());
    let job = wait_finished(&s, &id, 120).await;
    let job_secs = started.elapsed().as_secs_f64();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"], json!({"model": "spam", "version": 1}));
    let epochs = job["epochs"].as_array().unwrap().len();
    assert!(
        (1..=8).contains(&epochs),
        "{epochs} epochs (default 8, early stopping)"
    );
    assert!(job["epochs"][0]["valid_accuracy"].as_f64().unwrap() > 0.5);
    let progress = &job["progress"];
    assert!(progress["step"].as_u64().unwrap() > 0, "{progress}");
    let eval = &job["evaluation"];
    assert_eq!(eval["examples"], 446, "a stratified 10% of 4460");
    assert_eq!(eval["confusion"].as_array().unwrap().len(), 2);
    assert_eq!(eval["per_class"].as_array().unwrap().len(), 2);
    let (_, events) = get(&s, &format!("/train-job/{id}/events")).await;
    let mut expected = vec!["created", "started", "training_started"];
    expected.extend(std::iter::repeat_n("epoch_finished", epochs));
    expected.extend(["checkpoint_written", "succeeded"]);
    assert_eq!(event_types(&events), expected);

    // The `textclf_train_jobs` gauge is fed from the store's counts. (The gauge itself is
    // process-wide and other tests' stores scrape it too, so its value is checked at the source.)
    let counts = s.jobs().count_by_status().unwrap();
    let count = |st: &str| counts.iter().find(|(s, _)| s.as_str() == st).unwrap().1;
    assert_eq!(
        (count("succeeded"), count("queued"), count("failed")),
        (1, 0, 0)
    );
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(r#"textclf_train_jobs{status="succeeded"} "#)),
        "{metrics}"
    );

    // A new version never serves by itself.
    let (status, _) = post_json(
        &s,
        "/classify",
        &json!({"text": "win a prize", "model": "spam"}),
    )
    .await;
    assert_eq!(status, 404);
    let (_, models) = get(&s, "/models").await;
    let spam = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "spam")
        .unwrap()
        .clone();
    assert_eq!(spam["serving_version"], Value::Null);
    assert_eq!(spam["versions"][0]["version"], 1);
    assert_eq!(spam["versions"][0]["serving"], false);
    assert!(
        spam["versions"][0]["metrics"]["validation"]["accuracy"]
            .as_f64()
            .unwrap()
            > 0.9
    );

    let (status, p) = post_json(&s, "/models/spam/promote", &json!({"version": 1})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p,
        json!({"model": "spam", "version": 1, "previous_version": null})
    );
    let (served, versions) = http_accuracy(&s, "spam", &test).await;
    assert!(versions.iter().all(|&v| v == 1));

    // Offline: `textclf train` itself on the same file, scored by the CLI on the same test
    // split (the accuracy it writes into the manifest). With `--valid-split 0.1` it follows the
    // job's default protocol (a stratified, seeded 10% held out for early stopping); with no
    // options it trains on every row.
    let cli_accuracy = |name: &str, extra: &[&str]| {
        let out_dir = tmp.path().join(name);
        let t0 = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_textclf"))
            .arg("train")
            .arg("--train")
            .arg(dir.join("train.jsonl"))
            .arg("--test")
            .arg(dir.join("test.jsonl"))
            .arg("--out")
            .arg(&out_dir)
            .args(extra)
            .output()
            .expect("run textclf train");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["metrics"]["test"]["examples"], test.len());
        let accuracy = manifest["metrics"]["test"]["accuracy"].as_f64().unwrap();
        (accuracy, t0.elapsed().as_secs_f64())
    };
    let (same_protocol, same_secs) = cli_accuracy("offline-split", &["--valid-split", "0.1"]);
    let (all_rows, all_secs) = cli_accuracy("offline-all", &[]);
    eprintln!(
        "sms_spam test accuracy: job via HTTP {served:.4} (job {job_secs:.1} s incl. queue); \
         `textclf train --valid-split 0.1` {same_protocol:.4} ({same_secs:.1} s); \
         `textclf train` on all rows {all_rows:.4} ({all_secs:.1} s)"
    );
    assert!(served >= same_protocol, "{served} < {same_protocol}");
    // Holding out 10% for early stopping may cost the job a little against training on
    // every row, at most half a point here.
    assert!(served >= all_rows - 0.005, "{served} vs {all_rows}");
    assert!(served > 0.95, "{served}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_tuning_news_zh_with_a_new_label_set_serves_only_after_promotion() {
    let Some(dir) = data("trec") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let s = start(config(tmp.path())).await;
    let all = read(&dir.join("train.jsonl"));
    let examples: Vec<Value> = all
        .iter()
        .map(|e| json!({"text": e.text, "label": e.label}))
        .collect();
    let test = read(&dir.join("test.jsonl"));
    let (status, job) = post_json(
        &s,
        "/train-job",
        &json!({"model": "news-zh", "base_model": "news-zh", "examples": examples,
                "hyperparameters": {"epochs": 4, "seed": 7}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    // While it runs and after it succeeds, version 1 keeps serving.
    let job = wait_finished(&s, &id, 60).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"], json!({"model": "news-zh", "version": 2}));
    let (_, c) = post_json(
        &s,
        "/classify",
        &json!({"text": "詹姆斯砍下40分带领湖人击败勇士"}),
    )
    .await;
    assert_eq!(
        (c["model_version"].as_u64(), c["label"].as_str()),
        (Some(1), Some("sports"))
    );

    let (_, models) = get(&s, "/models").await;
    let news = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "news-zh")
        .unwrap()
        .clone();
    assert_eq!(news["serving_version"], 1);
    assert_eq!(news["default"], true);
    let v: Vec<(u64, bool)> = news["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["serving"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(v, [(1, true), (2, false)]);
    assert_eq!(news["versions"][1]["base_model"], "news-zh@1");
    assert_eq!(news["versions"][1]["labels"].as_array().unwrap().len(), 6);

    let (status, p) = post_json(&s, "/models/news-zh/promote", &json!({"version": 2})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["previous_version"], 1);
    let (acc, versions) = http_accuracy(&s, "news-zh", &test).await;
    assert!(versions.iter().all(|&v| v == 2));
    eprintln!("news-zh fine-tuned on TREC (coarse labels): TREC test accuracy {acc:.4}");
    // The majority class (DESC) is 27.6% of the test split.
    assert!(acc > 0.6, "{acc}");

    // Roll back.
    let (status, p) = post_json(&s, "/models/news-zh/promote", &json!({"version": 1})).await;
    assert_eq!((status, p["previous_version"].as_u64()), (200, Some(2)));
    let (_, c) = post_json(
        &s,
        "/classify",
        &json!({"text": "詹姆斯砍下40分带领湖人击败勇士"}),
    )
    .await;
    assert_eq!(
        (c["model_version"].as_u64(), c["label"].as_str()),
        (Some(1), Some("sports"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_queued_and_running_jobs_leaves_no_version() {
    let Some(dir) = data("sms_spam") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let s = start(config(tmp.path())).await;
    let body = std::fs::read(dir.join("train.jsonl")).unwrap();
    let (status, long) = upload(&s, "model=long&epochs=500", body.clone()).await;
    assert_eq!(status, 202);
    let (status, queued) = upload(&s, "model=queued&epochs=1", body).await;
    assert_eq!(status, 202);
    let long_id = long["id"].as_str().unwrap().to_string();
    let queued_id = queued["id"].as_str().unwrap().to_string();

    wait_for(&s, &long_id, 30, |j| {
        j["status"] == "running" && j["progress"]["step"].as_u64().unwrap_or(0) > 0
    })
    .await;
    // One job at a time: the second waits.
    let (_, q) = get(&s, &format!("/train-job/{queued_id}")).await;
    assert_eq!(q["status"], "queued");
    let (_, page) = get(&s, "/train-job?status=running").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);

    let (status, q) = post_json(&s, &format!("/train-job/{queued_id}/cancel"), &json!({})).await;
    assert_eq!(
        (status, q["status"].as_str()),
        (200, Some("cancelled")),
        "{q}"
    );
    assert_eq!(q["started_at"], Value::Null);

    let t = Instant::now();
    let (status, l) = post_json(&s, &format!("/train-job/{long_id}/cancel"), &json!({})).await;
    assert_eq!(
        (status, l["status"].as_str()),
        (200, Some("cancelled")),
        "{l}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(l["result"], Value::Null);
    let (_, events) = get(&s, &format!("/train-job/{long_id}/events")).await;
    assert_eq!(event_types(&events).last().unwrap(), "cancelled");

    let (status, e) = post_json(&s, &format!("/train-job/{long_id}/cancel"), &json!({})).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("job_finished"))
    );
    assert!(!tmp.path().join("models/long").exists());
    assert!(!tmp.path().join("models/queued").exists());
    let (_, models) = get(&s, "/models").await;
    let names: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["news-zh", "newsgroups-en"]);
    let (_, page) = get(&s, "/train-job?status=cancelled").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    s.stop().await;
}

fn spam_subset(n: usize) -> Option<Vec<Example>> {
    let dir = data("sms_spam")?;
    Some(read(&dir.join("train.jsonl")).into_iter().take(n).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_versions_and_serving_survive_a_restart_and_a_killed_job_is_interrupted() {
    let Some(examples) = spam_subset(1000) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = start(config(tmp.path())).await;
    let (status, done) = upload(&s, "model=spam&epochs=2&promote=true", jsonl(&examples)).await;
    assert_eq!(status, 202);
    let done_id = done["id"].as_str().unwrap().to_string();
    let job = wait_finished(&s, &done_id, 60).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, events) = get(&s, &format!("/train-job/{done_id}/events")).await;
    assert!(event_types(&events).contains(&"promoted".to_string()));
    let (status, c) = post_json(
        &s,
        "/classify",
        &json!({"text": "WINNER! claim your prize", "model": "spam"}),
    )
    .await;
    assert_eq!((status, c["model_version"].as_u64()), (200, Some(1)), "{c}");

    // A long job runs and another waits behind it when the server stops gracefully.
    let (_, running) = upload(
        &s,
        "model=later&epochs=500&validation_split=0",
        jsonl(&examples),
    )
    .await;
    let (_, waiting) = upload(&s, "model=later&epochs=1", jsonl(&examples)).await;
    let running_id = running["id"].as_str().unwrap().to_string();
    let waiting_id = waiting["id"].as_str().unwrap().to_string();
    wait_for(&s, &running_id, 30, |j| j["status"] == "running").await;
    s.stop().await;

    // A process killed mid-run leaves a job marked running in the store.
    let killed_id = "ftjob-killed00000000";
    {
        let store = Store::open(&tmp.path().join("jobs.sqlite3")).unwrap();
        let spec = JobSpec {
            model: "killed".into(),
            base_model: None,
            hyperparameters: Hyperparameters::default(),
            validation_split: 0.1,
            promote: false,
            train_examples: 1,
            validation_examples: 0,
            train_file: "jobs/none/train.jsonl".into(),
            validation_file: None,
        };
        store
            .insert_job(killed_id, &spec, chrono::Utc::now())
            .unwrap();
        store
            .transition(
                killed_id,
                JobStatus::Running,
                None,
                None,
                ("started", "job started", None),
            )
            .unwrap();
    }

    let s = start(config(tmp.path())).await;
    let (_, killed) = get(&s, &format!("/train-job/{killed_id}")).await;
    assert_eq!(killed["status"], "failed");
    assert_eq!(killed["error"]["code"], "interrupted");
    let (_, job) = get(&s, &format!("/train-job/{done_id}")).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["result"]["version"], 1);
    assert_eq!(job["epochs"].as_array().unwrap().len(), 2);
    let (_, ev) = get(&s, &format!("/train-job/{done_id}/events")).await;
    assert_eq!(
        ev["data"].as_array().unwrap().len(),
        events["data"].as_array().unwrap().len()
    );
    // The promoted version serves again without anyone promoting it.
    let (status, c) = post_json(
        &s,
        "/classify",
        &json!({"text": "WINNER! claim your prize", "model": "spam"}),
    )
    .await;
    assert_eq!((status, c["model_version"].as_u64()), (200, Some(1)), "{c}");
    // The job stopped by the graceful shutdown ended like a killed one: failed, interrupted,
    // no version; the job waiting behind it was kept and runs after the restart.
    let (_, r) = get(&s, &format!("/train-job/{running_id}")).await;
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["code"], "interrupted", "{r}");
    assert!(r["result"].is_null() && r["finished_at"].is_string(), "{r}");
    let (_, ev) = get(&s, &format!("/train-job/{running_id}/events")).await;
    assert_eq!(
        event_types(&ev).last().map(String::as_str),
        Some("failed"),
        "{ev}"
    );
    let w = wait_finished(&s, &waiting_id, 60).await;
    assert_eq!(w["status"], "succeeded", "{w}");
    assert_eq!(
        (
            w["result"]["model"].as_str(),
            w["result"]["version"].as_u64()
        ),
        (Some("later"), Some(1)),
        "the interrupted job wrote no version: {w}"
    );
    let (_, page) = get(&s, "/train-job?limit=2").await;
    assert_eq!(page["has_more"], true);
    let last = page["data"][1]["id"].as_str().unwrap().to_string();
    let (_, rest) = get(&s, &format!("/train-job?limit=10&after={last}")).await;
    assert_eq!(rest["data"].as_array().unwrap().len() + 2, 4);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_under_load_fails_no_request_and_switches_versions() {
    let Some(examples) = spam_subset(800) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = start(config(tmp.path())).await;
    for (epochs, promote) in [(1, true), (2, false)] {
        let (status, job) = upload(
            &s,
            &format!("model=spam&epochs={epochs}&promote={promote}"),
            jsonl(&examples),
        )
        .await;
        assert_eq!(status, 202);
        let job = wait_finished(&s, job["id"].as_str().unwrap(), 60).await;
        assert_eq!(job["status"], "succeeded");
    }
    let promoted_at = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = s.url("/classify");
        let promoted_at = promoted_at.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut seen = Vec::new();
            for round in 0..5 {
                tokio::time::sleep(Duration::from_millis((i % 20) as u64 * 3 + round * 20)).await;
                let sent = Instant::now();
                let r = c
                    .post(&url)
                    .json(&json!({"text": format!("free prize call now {i}"), "model": "spam"}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                let after = promoted_at.get().is_some_and(|t| sent > *t);
                seen.push((status, body["model_version"].as_u64(), after));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, p) = post_json(&s, "/models/spam/promote", &json!({"version": 2})).await;
    promoted_at.set(Instant::now()).unwrap();
    assert_eq!((status, p["previous_version"].as_u64()), (200, Some(1)));
    let mut by_version = [0usize; 3];
    for t in tasks {
        for (status, version, after) in t.await.unwrap() {
            assert_eq!(status, 200, "a request failed during promotion");
            let v = version.unwrap() as usize;
            by_version[v] += 1;
            if after {
                assert_eq!(
                    v, 2,
                    "a request sent after the promotion answered from version 1"
                );
            }
        }
    }
    eprintln!(
        "answers by version during promotion: v1 {}, v2 {}",
        by_version[1], by_version[2]
    );
    assert!(by_version[1] > 0 && by_version[2] > 0, "{by_version:?}");
    assert_eq!(by_version[1] + by_version[2], 1000);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_request_gets_its_4xx_and_creates_no_job() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(JobsConfig {
        max_train_examples: 50,
        max_train_body_bytes: 20_000,
        ..config(tmp.path())
    })
    .await;
    // The limits in force are in /info.
    let (status, info) = get(&s, "/info").await;
    assert_eq!(status, 200);
    assert_eq!(
        info["jobs"],
        json!({"max_concurrent_jobs": 1, "max_train_examples": 50, "max_train_body_bytes": 20_000})
    );
    let ex = |t: &str, l: &str| json!({"text": t, "label": l});
    let two = json!([ex("good game", "sports"), ex("stocks fell", "finance")]);
    let many: Vec<Value> = (0..51)
        .map(|i| ex(&format!("text {i}"), if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    let json_cases = [
        (json!({"model": "m"}), 422, "examples"),
        (
            json!({"model": "m", "examples": []}),
            422,
            "no training examples",
        ),
        (
            json!({"model": "m", "examples": [ex("a", "x"), ex("b", "x")]}),
            422,
            "only one label",
        ),
        (
            json!({"model": "m", "examples": [ex(" ", "x"), ex("b", "y")]}),
            422,
            "examples[0].text is empty",
        ),
        (
            json!({"model": "m", "examples": [ex("a", "x"), ex("b", "")]}),
            422,
            "examples[1].label is empty",
        ),
        (
            json!({"model": "m", "examples": [ex("a", "x"), ex("b", &"y".repeat(201))]}),
            422,
            "examples[1].label has 201 characters",
        ),
        (json!({"model": "m", "examples": many}), 413, "at most 50"),
        (
            json!({"model": "m", "base_model": "nope", "examples": two}),
            404,
            "nope",
        ),
        (
            json!({"model": "../evil", "examples": two}),
            422,
            "model name",
        ),
        (
            json!({"model": "Upper", "examples": two}),
            422,
            "model name",
        ),
        (json!({"model": "", "examples": two}), 422, "model name"),
        (
            json!({"model": "m", "examples": two, "hyperparameters": {"epochs": 0}}),
            422,
            "epochs",
        ),
        (
            json!({"model": "m", "examples": two, "hyperparameters": {"learning_rate": -1.0}}),
            422,
            "learning_rate",
        ),
        (
            json!({"model": "m", "examples": two, "hyperparameters": {"batch_size": 0}}),
            422,
            "batch_size",
        ),
        (
            json!({"model": "m", "examples": two, "hyperparameters": {"momentum": 1}}),
            422,
            "unknown field",
        ),
        (
            json!({"model": "m", "examples": two, "validation_split": 0.9}),
            422,
            "validation_split",
        ),
        (
            json!({"model": "m", "examples": two, "validation_examples": [ex("x", "other")]}),
            422,
            "validation label",
        ),
    ];
    for (body, status, needle) in json_cases {
        let (got, e) = post_json(&s, "/train-job", &body).await;
        assert_eq!(got, status, "{body}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let r = client()
        .post(s.url("/train-job"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let (status, e) = upload(
        &s,
        "model=m",
        b"{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"y\"}\n{\"text\": oops}\n"
            .to_vec(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("line 3"),
        "{e}"
    );
    let (status, e) = upload(&s, "", b"{\"text\":\"a\",\"label\":\"x\"}\n".to_vec()).await;
    assert_eq!(status, 422, "{e}");
    let (status, e) = upload(
        &s,
        "model=m&epochs=lots",
        b"{\"text\":\"a\",\"label\":\"x\"}\n".to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{e}");
    let big: Vec<u8> = "{\"text\":\"some long text here\",\"label\":\"x\"}\n"
        .repeat(1000)
        .into_bytes();
    let (status, e) = upload(&s, "model=m", big).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{e}"
    );

    let (status, e) = get(&s, "/train-job/ftjob-nope").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("job_not_found"))
    );
    let (status, _) = post_json(&s, "/train-job/ftjob-nope/cancel", &json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = get(&s, "/train-job?status=bogus").await;
    assert_eq!(status, 422);
    let (status, _) = get(&s, "/train-job?limit=0").await;
    assert_eq!(status, 422);
    let (status, e) = get(&s, "/train-job?after=ftjob-nope").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("validation_error")),
        "{e}"
    );
    let (status, e) = post_json(&s, "/models/nope/promote", &json!({"version": 1})).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let (status, e) = post_json(&s, "/models/news-zh/promote", &json!({"version": 9})).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("version_not_found"))
    );
    let (status, _) = post_json(&s, "/models/news-zh/promote", &json!({"v": 1})).await;
    assert_eq!(status, 422);
    // A path trick in the name never reaches the filesystem: the name is not a model's.
    for name in ["..%2Fmodels%2Fnews-zh", "News-ZH"] {
        let (status, e) = post_json(
            &s,
            &format!("/models/{name}/promote"),
            &json!({"version": 1}),
        )
        .await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (404, Some("model_not_found")),
            "{name}: {e}"
        );
    }

    let (status, page) = get(&s, "/train-job").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]), "no job was created");
    let leftovers = std::fs::read_dir(tmp.path().join("jobs")).unwrap().count();
    assert_eq!(leftovers, 0, "no job data was written");
    s.stop().await;
}
