//! Prometheus metrics: the `metrics` facade everywhere, one process-wide Prometheus recorder.
//!
//! Code that observes something calls `metrics::counter!`/`histogram!` with the names below;
//! `/metrics` renders the recorder. Gauges that describe current state (queue depth, serving
//! version, jobs by status) are set just before rendering, from the source of truth.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "textclf_http_requests_total";
pub const HTTP_DURATION: &str = "textclf_http_request_duration_seconds";
pub const TEXTS_CLASSIFIED: &str = "textclf_texts_classified_total";
pub const BATCH_SIZE: &str = "textclf_batch_size";
pub const QUEUE_WAIT: &str = "textclf_queue_wait_seconds";
pub const INFERENCE: &str = "textclf_inference_seconds";
pub const REQUEST_TOTAL: &str = "textclf_classify_duration_seconds";
pub const DROPPED: &str = "textclf_jobs_dropped_total";
pub const REJECTED: &str = "textclf_requests_rejected_total";
pub const QUEUE_DEPTH: &str = "textclf_queue_texts";
pub const MODEL_INFO: &str = "textclf_model_info";
pub const TRAIN_JOBS: &str = "textclf_train_jobs";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Serving versions last reported, so a swapped-out version's info series drops to 0.
static REPORTED_VERSIONS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

/// Installs the recorder once per process (later calls return the same handle). If another
/// recorder was installed first (e.g. by an embedding program), metrics render empty.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS))
            .expect("static, non-empty buckets. This is a bug.")
            .build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration by route"
    );
    describe_counter!(TEXTS_CLASSIFIED, "Texts classified, by model");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Texts per forward pass, by model");
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time a classify job waited before its forward pass"
    );
    describe_histogram!(
        INFERENCE,
        Unit::Seconds,
        "Tokenisation + forward pass time of a batch"
    );
    describe_histogram!(
        REQUEST_TOTAL,
        Unit::Seconds,
        "Classify request time from arrival to answer"
    );
    describe_counter!(
        DROPPED,
        "Queued jobs skipped before their forward pass (reason=disconnected|expired)"
    );
    describe_counter!(
        REJECTED,
        "Classify requests refused before queueing (reason=overloaded|too_large)"
    );
    describe_gauge!(QUEUE_DEPTH, "Texts queued or in flight, by model");
    describe_gauge!(
        MODEL_INFO,
        "1 for the model version now serving, 0 for versions that served before"
    );
    describe_gauge!(TRAIN_JOBS, "Fine-tune jobs by status");
}

/// Records which version of each model serves now.
pub fn set_serving_versions(current: impl IntoIterator<Item = (String, u32)>) {
    let mut reported = REPORTED_VERSIONS.lock().unwrap_or_else(|e| e.into_inner());
    for (model, version) in current {
        if let Some(old) = reported
            .insert(model.clone(), version)
            .filter(|old| *old != version)
        {
            metrics::gauge!(MODEL_INFO, "model" => model.clone(), "version" => old.to_string())
                .set(0.0);
        }
        metrics::gauge!(MODEL_INFO, "model" => model, "version" => version.to_string()).set(1.0);
    }
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    handle().render()
}
