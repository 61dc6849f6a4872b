//! In-process model speed (issue 6): the ceiling the server's forward passes can reach.
//!
//! * `tokenize/encode`: one THUCNews test headline → tokenizer → vocabulary rows (what a
//!   handler/worker does per text before the forward pass).
//! * `forward/<batch>`: `LoadedModel::classify_encoded` on pre-encoded headlines at batch sizes
//!   1, 8, 32, 128 — padding, tensor creation, the forward pass and reading the scores back, i.e.
//!   exactly the worker's inference call. Throughput is reported in texts.
//! * `burnforward/<batch>`: the whole network in burn (`pad_batch` + `TextClassifier::scores`),
//!   embedding gather and masked mean included: what `classify_encoded` did before it pooled on
//!   the host (burn-ndarray's embedding `select` took ~3/4 of it; see bench/FINDINGS.md). Kept to
//!   compare ndarray and flex on burn's own ops.
//!
//! Run through `bench/run.sh` (which also runs it with `--features flex` in a separate target
//! dir), or alone: `cargo bench --bench model`. Reads `models/news-zh` and the THUCNews test split
//! from `../shared/data` (override with `TEXTCLF_BENCH_DATA`).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use textclf::model::LoadedModel;
use textclf::model::backend;
use textclf::model::network::{pad_batch, tensor_to_vec};
use textclf::text::Encoded;

const BATCHES: [usize; 4] = [1, 8, 32, 128];

fn headlines(n: usize) -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var_os("TEXTCLF_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data/thucnews_titles/test.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    // Every 37th line, so the sample spans all classes (the file is grouped by label).
    text.lines()
        .step_by(37)
        .take(n)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSONL line");
            v["text"].as_str().expect("text field").to_owned()
        })
        .collect()
}

fn model_bench(c: &mut Criterion) {
    let device = backend::device();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/news-zh");
    let model = LoadedModel::load(&dir, &device).expect("load models/news-zh");
    let texts = headlines(256);
    let encoded: Vec<Encoded> = texts.iter().map(|t| model.encode(t)).collect();

    let mut g = c.benchmark_group(format!("tokenize-{}", backend::BACKEND));
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("encode", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            black_box(model.encode(black_box(&texts[i])))
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("forward-{}", backend::BACKEND));
    for batch in BATCHES {
        g.throughput(Throughput::Elements(batch as u64));
        let mut start = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                start = (start + batch) % (encoded.len() - batch + 1);
                black_box(
                    model.classify_encoded(black_box(&encoded[start..start + batch]), &device),
                )
            })
        });
    }
    g.finish();

    // The whole network in burn (embedding gather + masked mean included): the product's path
    // before the host-side pooling of `classify_encoded`, kept to compare backends on it.
    let burn_forward = |chunk: &[Encoded]| -> Vec<f32> {
        let rows: Vec<&[u32]> = chunk.iter().map(|e| e.rows.as_slice()).collect();
        let (ids, mask) = pad_batch(&rows, &device);
        tensor_to_vec(model.network.scores(ids, mask))
    };
    let product: Vec<f32> = model
        .classify_encoded(&encoded[..32], &device)
        .into_iter()
        .flat_map(|p| p.scores)
        .collect();
    let reference = burn_forward(&encoded[..32]);
    assert!(
        reference
            .iter()
            .zip(&product)
            .all(|(a, b)| (a - b).abs() < 1e-4),
        "classify_encoded differs from the network's burn forward"
    );
    let mut g = c.benchmark_group(format!("burnforward-{}", backend::BACKEND));
    for batch in BATCHES {
        g.throughput(Throughput::Elements(batch as u64));
        let mut start = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                start = (start + batch) % (encoded.len() - batch + 1);
                black_box(burn_forward(black_box(&encoded[start..start + batch])))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, model_bench);
criterion_main!(benches);
