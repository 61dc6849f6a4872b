//! The shipped models, padding invariance, artifact round trips and load errors.

use std::fs;
use std::path::Path;

use textclf::cli::evaluate_model;
use textclf::model::LoadedModel;
use textclf::model::artifact::{self, ModelParts};
use textclf::model::backend;
use textclf::model::network::{pad_batch, tensor_to_vec};
use textclf::train::{self, Example, Silent, TrainConfig};

use crate::common::{data, load_model, read};

#[test]
fn news_zh_scores_at_least_0_89_on_the_thucnews_test_split() {
    let Some(dir) = data("thucnews_titles") else {
        return;
    };
    let model = load_model("news-zh");
    let test = read(&dir.join("test.jsonl"));
    assert_eq!(test.len(), 10_000);
    let eval = evaluate_model(&model, &test, "test", 256).unwrap();
    println!(
        "news-zh test accuracy {:.4} macro-F1 {:.4}",
        eval.accuracy, eval.macro_f1
    );
    assert!(eval.accuracy >= 0.89, "accuracy {}", eval.accuracy);
    // The manifest records the same figure that this code path measures.
    assert!((model.manifest.metrics["test"].accuracy - eval.accuracy).abs() < 1e-9);
}

#[test]
fn newsgroups_en_scores_its_recorded_accuracy() {
    let Some(dir) = data("20newsgroups") else {
        return;
    };
    let model = load_model("newsgroups-en");
    let test = read(&dir.join("test.jsonl.gz"));
    let eval = evaluate_model(&model, &test, "test", 256).unwrap();
    println!("newsgroups-en test accuracy {:.4}", eval.accuracy);
    assert!(eval.accuracy >= 0.75, "accuracy {}", eval.accuracy);
    assert!((model.manifest.metrics["test"].accuracy - eval.accuracy).abs() < 1e-9);
}

#[test]
fn shipped_weights_fit_the_size_budget() {
    let bytes = fs::metadata(crate::common::models_dir().join("news-zh/model.bpk"))
        .unwrap()
        .len();
    assert!(
        bytes <= 20 * 1024 * 1024,
        "news-zh weights are {bytes} bytes"
    );
}

#[test]
fn padding_does_not_change_a_result() {
    let model = load_model("news-zh");
    let device = backend::device();
    let short = "詹姆斯砍下40分带领湖人击败勇士";
    let long1 =
        "央行宣布下调存款准备金率0.5个百分点 释放长期资金约1万亿元 支持实体经济发展 稳定市场预期";
    let long2 = "教育部：2024年全国硕士研究生招生考试报名人数公布 考研竞争依然激烈 多所高校扩招";
    let encoded: Vec<_> = [long1, short, long2]
        .iter()
        .map(|t| model.encode(t))
        .collect();
    assert!(
        encoded[1].rows.len() < encoded[0].rows.len(),
        "the short text must be padded in the batch"
    );
    // The burn module's forward: embedding → masked mean → dense layers, alone and padded.
    let burn_scores = |rows: &[&[u32]]| {
        let (ids, mask) = pad_batch(rows, &device);
        tensor_to_vec(model.network.scores(ids, mask))
    };
    let classes = model.labels().len();
    let alone = burn_scores(&[encoded[1].rows.as_slice()]);
    let padded = burn_scores(
        &encoded
            .iter()
            .map(|e| e.rows.as_slice())
            .collect::<Vec<_>>(),
    );
    for (a, b) in alone.iter().zip(&padded[classes..2 * classes]) {
        assert!((a - b).abs() <= 1e-5, "padding changed a score: {a} vs {b}");
    }
    // The serving path (host-side pooling, see `LoadedModel::classify_encoded`) gives the
    // module's answer, alone and inside a batch of longer texts.
    let served_alone = model.classify(&[short], &device).remove(0);
    let served_batch = model.classify(&[long1, short, long2], &device);
    for (i, a) in alone.iter().enumerate() {
        assert!(
            (a - served_alone.scores[i]).abs() <= 1e-5,
            "{a} vs {}",
            served_alone.scores[i]
        );
        assert!((a - served_batch[1].scores[i]).abs() <= 1e-5);
    }
    for (j, text_scores) in padded.chunks_exact(classes).enumerate() {
        for (a, b) in text_scores.iter().zip(&served_batch[j].scores) {
            assert!((a - b).abs() <= 1e-5, "text {j}: {a} vs {b}");
        }
    }
    assert_eq!(model.labels()[served_alone.best()], "sports");
    let sum: f32 = served_alone.scores.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "softmax scores sum to {sum}");
}

fn tiny_examples() -> Vec<Example> {
    let mut v = Vec::new();
    for i in 0..20 {
        v.push(Example {
            text: format!("球队 比赛 进球 胜利 {i}"),
            label: "sports".into(),
        });
        v.push(Example {
            text: format!("股票 市场 上涨 基金 {i}"),
            label: "finance".into(),
        });
    }
    v
}

/// Trains a small real model and writes it to `dir`.
fn write_tiny_model(dir: &Path) -> LoadedModel {
    let config = TrainConfig {
        epochs: 20,
        batch_size: 8,
        embed_dim: 8,
        hidden_dim: 8,
        min_count: 1,
        ..TrainConfig::default()
    };
    let out = train::train(&config, &tiny_examples(), None, None, &mut Silent).unwrap();
    let manifest = out.manifest("tiny", 3);
    let device = backend::device();
    let before = {
        let tokenizer = textclf::text::Tokenizer::new(out.tokenizer.clone());
        let enc = out.vocab.encode(&tokenizer.tokenize("球队 比赛"));
        let (ids, mask) = textclf::model::network::pad_batch(&[enc.rows.as_slice()], &device);
        textclf::model::network::tensor_to_vec(out.network.scores(ids, mask))
    };
    artifact::save(
        dir,
        ModelParts {
            manifest,
            vocab: &out.vocab,
            network: out.network,
        },
    )
    .unwrap();
    let loaded = LoadedModel::load(dir, &device).unwrap();
    let after = loaded.classify(&["球队 比赛"], &device).remove(0).scores;
    assert_eq!(before, after, "weights survive the round trip exactly");
    loaded
}

#[test]
fn artifact_round_trip_keeps_manifest_and_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    let loaded = write_tiny_model(&dir);
    assert_eq!(loaded.name(), "tiny");
    assert_eq!(loaded.version(), 3);
    assert_eq!(loaded.labels(), ["finance", "sports"]);
    assert_eq!(
        loaded.classify(&["股票 基金"], &backend::device())[0].best(),
        0
    );
    // Versions are immutable: saving over an existing directory fails.
    let again = artifact::save(
        &dir,
        ModelParts {
            manifest: loaded.manifest.clone(),
            vocab: &loaded.vocab,
            network: loaded.network.clone(),
        },
    );
    assert!(again.unwrap_err().to_string().contains("already exists"));
    // No temporary directories are left behind.
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("tiny")]);
}

fn load_err(dir: &Path) -> String {
    LoadedModel::load(dir, &backend::device())
        .unwrap_err()
        .to_string()
}

#[test]
fn loading_a_broken_model_names_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_tiny_model(&dir);
    let manifest_text = fs::read_to_string(dir.join("manifest.json")).unwrap();

    // Missing file.
    let vocab = fs::read(dir.join("vocab.txt")).unwrap();
    fs::remove_file(dir.join("vocab.txt")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("vocab.txt") && e.contains("missing"), "{e}");
    fs::write(dir.join("vocab.txt"), &vocab).unwrap();

    // Wrong checksum.
    let mut weights = fs::read(dir.join("model.bpk")).unwrap();
    let last = weights.len() - 1;
    weights[last] ^= 0xff;
    fs::write(dir.join("model.bpk"), &weights).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.bpk") && e.contains("checksum mismatch"),
        "{e}"
    );
    weights[last] ^= 0xff;
    fs::write(dir.join("model.bpk"), &weights).unwrap();
    assert!(LoadedModel::load(&dir, &backend::device()).is_ok());

    // Label count differs from the output size.
    let mut m: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    m["labels"].as_array_mut().unwrap().push("extra".into());
    fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("3 labels but the network has 2 outputs"),
        "{e}"
    );

    // Unknown format version.
    let mut m: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    m["format_version"] = 99.into();
    fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("unsupported model format version 99"),
        "{e}"
    );

    // Not a manifest at all.
    fs::write(dir.join("manifest.json"), "{").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("manifest.json") && e.contains("not JSON"), "{e}");

    // No manifest.
    fs::remove_file(dir.join("manifest.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("manifest.json") && e.contains("missing"), "{e}");
}
