//! The batcher in front of a model worker, driven directly (no HTTP).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use textclf::serve::{BatchConfig, ModelWorker};

use crate::common::{data, load_model, read};

fn far() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_worker_is_busy_the_next_batch_grows_without_any_delay() {
    let Some(dir) = data("thucnews_titles") else {
        return;
    };
    // No linger at all: batches form only because the worker is busy.
    let config = BatchConfig {
        max_batch_delay: Duration::ZERO,
        max_queued_texts: 8192,
        ..BatchConfig::default()
    };
    let worker = Arc::new(ModelWorker::spawn(load_model("news-zh"), config));
    // Occupy the worker: one job of 4096 texts of two headlines each, 64 forward passes.
    let headlines: Vec<String> = read(&dir.join("dev.jsonl"))
        .into_iter()
        .map(|e| e.text)
        .collect();
    let long: Vec<String> = headlines.chunks(2).take(4096).map(|c| c.concat()).collect();
    assert_eq!(long.len(), 4096);
    let busy = {
        let w = worker.clone();
        tokio::spawn(async move { w.classify(long, far()).await })
    };
    until("the long job is queued", || worker.queued_texts() == 4096).await;
    let singles: Vec<_> = headlines[..10]
        .iter()
        .cloned()
        .map(|t| {
            let w = worker.clone();
            tokio::spawn(async move { w.classify(vec![t], far()).await })
        })
        .collect();
    until("all ten jobs are queued", || {
        worker.queued_texts() == 4096 + 10
    })
    .await;
    assert!(
        !busy.is_finished(),
        "the long job ended before the ten were queued; make it longer"
    );
    let busy = busy.await.unwrap().expect("the long job is answered");
    assert_eq!(busy.batch_texts, 4096);
    for single in singles {
        let reply = single.await.unwrap().expect("answered");
        assert_eq!(
            reply.batch_texts, 10,
            "the ten jobs that queued behind a busy worker run as one batch"
        );
    }
    assert_eq!(worker.stats.batches.load(Ordering::SeqCst), 2);
    assert_eq!(worker.stats.multi_job_batches.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_takes_a_lone_job_at_once_or_lingers_when_asked() {
    // No linger: two jobs sent well apart run as two batches of one.
    let worker = ModelWorker::spawn(load_model("news-zh"), BatchConfig::default());
    let a = worker.classify(vec!["比赛".into()], far()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = worker.classify(vec!["股市".into()], far()).await.unwrap();
    assert_eq!((a.batch_texts, b.batch_texts), (1, 1));

    // A linger much longer than the gap: the second job joins the first one's batch.
    let worker = Arc::new(ModelWorker::spawn(
        load_model("news-zh"),
        BatchConfig {
            max_batch_delay: Duration::from_millis(1500),
            ..BatchConfig::default()
        },
    ));
    let first = {
        let w = worker.clone();
        tokio::spawn(async move { w.classify(vec!["比赛".into()], far()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = worker.classify(vec!["股市".into()], far()).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!((first.batch_texts, second.batch_texts), (2, 2));
}
