//! The training loop: seeded shuffled mini-batches, cross-entropy, Adam, early stopping.
//!
//! Runs on the calling thread (the CLI's main thread, or a job's own OS thread) and reports
//! progress to an [`Observer`], which can also cancel the run between batches.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::artifact::{self, Evaluation, LoadedModel, Manifest, TrainingInfo};
use crate::model::backend;
use crate::model::inference::argmax;
use crate::model::network::{
    Head, TextClassifier, init_embedding_table, masked_mean, tensor_to_vec,
};
use crate::text::{Tokenizer, TokenizerConfig, Vocab, VocabBuilder};
use crate::train::data::Example;
use crate::train::metrics::evaluate;
use crate::train::sparse_adam::SparseAdam;

/// Hyperparameters and shape of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: u32,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub embed_dim: usize,
    pub hidden_dim: usize,
    /// A feature enters the vocabulary if it occurs at least this often in the training data.
    pub min_count: u64,
    /// At most this many vocabulary rows (the most frequent features win).
    pub max_vocab: usize,
    pub tokenizer: TokenizerConfig,
    pub seed: u64,
    /// Stop after this many epochs without a better validation accuracy (0 = never stop early).
    pub patience: u32,
    /// Each feature of a training text is left out with this probability (a regulariser for
    /// bags of features; never applied at inference).
    #[serde(default)]
    pub feature_dropout: f64,
    /// Decay the learning rate linearly to zero over the run (as fastText does).
    #[serde(default)]
    pub lr_decay: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 8,
            learning_rate: 5e-3,
            batch_size: 64,
            embed_dim: 48,
            hidden_dim: 64,
            min_count: 2,
            max_vocab: 200_000,
            tokenizer: TokenizerConfig::default(),
            seed: 42,
            patience: 2,
            feature_dropout: 0.5,
            lr_decay: true,
        }
    }
}

/// Metrics of one finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: u32,
    pub train_loss: f64,
    pub valid_loss: Option<f64>,
    pub valid_accuracy: Option<f64>,
    pub seconds: f64,
    pub examples_per_sec: f64,
}

/// What a training run reports as it goes.
#[derive(Clone, Debug)]
pub enum TrainEvent {
    Started {
        examples: usize,
        valid_examples: usize,
        vocab_size: usize,
        labels: Vec<String>,
        total_steps: u64,
    },
    Step {
        epoch: u32,
        step: u64,
        total_steps: u64,
        loss: f64,
        examples_per_sec: f64,
    },
    EpochFinished(EpochMetrics),
}

/// Receives progress; may cancel between batches.
pub trait Observer {
    fn on_event(&mut self, event: &TrainEvent);
    fn cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {
    fn on_event(&mut self, _: &TrainEvent) {}
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training was cancelled")]
    Cancelled,
    #[error("{0}")]
    InvalidData(String),
}

/// The result of a training run: the network on the inference device and what describes it.
pub struct TrainOutput {
    pub network: TextClassifier,
    pub vocab: Vocab,
    pub labels: Vec<String>,
    pub tokenizer: TokenizerConfig,
    pub info: TrainingInfo,
    pub epochs: Vec<EpochMetrics>,
    /// Evaluation of the best epoch on the validation data, if any.
    pub validation: Option<Evaluation>,
}

impl TrainOutput {
    /// A manifest describing this output as model `name` at `version` (files and metrics are
    /// filled in when it is saved and evaluated).
    pub fn manifest(&self, name: &str, version: u32) -> Manifest {
        Manifest {
            format: artifact::FORMAT.into(),
            format_version: artifact::FORMAT_VERSION,
            name: name.into(),
            version,
            labels: self.labels.clone(),
            tokenizer: self.tokenizer.clone(),
            network: self.network.config(),
            training: self.info.clone(),
            metrics: Default::default(),
            created_at: chrono::Utc::now(),
            files: Default::default(),
        }
    }
}

/// Examples already tokenised into vocabulary rows.
struct Encoded {
    rows: Vec<Vec<u32>>,
    targets: Vec<usize>,
}

fn encode(
    examples: &[Example],
    tokenizer: &Tokenizer,
    vocab: &Vocab,
    label_index: &HashMap<&str, usize>,
) -> Result<Encoded, TrainError> {
    let mut rows = Vec::with_capacity(examples.len());
    let mut targets = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let Some(&t) = label_index.get(ex.label.as_str()) else {
            return Err(TrainError::InvalidData(format!(
                "example {}: label {:?} is not among the training labels",
                i + 1,
                ex.label
            )));
        };
        rows.push(vocab.encode(&tokenizer.tokenize(&ex.text)).rows);
        targets.push(t);
    }
    Ok(Encoded { rows, targets })
}

/// Trains a classifier. With `base`, training starts from that model (see [`crate::train`] docs
/// for the fine-tuning rule).
pub fn train(
    config: &TrainConfig,
    train_examples: &[Example],
    valid_examples: Option<&[Example]>,
    base: Option<&LoadedModel>,
    observer: &mut dyn Observer,
) -> Result<TrainOutput, TrainError> {
    let started = Instant::now();
    if config.batch_size == 0
        || config.epochs == 0
        || config.embed_dim == 0
        || config.hidden_dim == 0
    {
        return Err(TrainError::InvalidData(
            "epochs, batch_size, embed_dim and hidden_dim must be at least 1".into(),
        ));
    }
    if !(config.learning_rate > 0.0 && config.learning_rate.is_finite()) {
        return Err(TrainError::InvalidData(
            "learning_rate must be a positive number".into(),
        ));
    }
    let train_labels: BTreeSet<&str> = train_examples.iter().map(|e| e.label.as_str()).collect();
    if train_labels.len() < 2 {
        return Err(TrainError::InvalidData(format!(
            "training data needs at least 2 distinct labels, found {}",
            train_labels.len()
        )));
    }
    let device = backend::device();
    let ad = backend::autodiff_device();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);

    // Vocabulary, labels, tokenizer, initial weights: fresh, or from the base model.
    let (tokenizer_config, vocab, labels, mut table, head, embed_dim) = match base {
        None => {
            let tokenizer = Tokenizer::new(config.tokenizer.clone());
            let mut builder = VocabBuilder::new();
            for ex in train_examples {
                builder.add(&tokenizer, &ex.text);
            }
            let vocab = builder.build(config.min_count, config.max_vocab);
            let labels: Vec<String> = train_labels.iter().map(|s| s.to_string()).collect();
            let table = init_embedding_table(vocab.len().max(1), config.embed_dim, &mut rng);
            let head = Head::init(
                config.embed_dim,
                config.hidden_dim,
                labels.len(),
                &mut rng,
                &ad,
            );
            (
                config.tokenizer.clone(),
                vocab,
                labels,
                table,
                head,
                config.embed_dim,
            )
        }
        Some(base) => {
            let tokenizer = Tokenizer::new(base.manifest.tokenizer.clone());
            let mut vocab = base.vocab.clone();
            let mut builder = VocabBuilder::new();
            for ex in train_examples {
                builder.add(&tokenizer, &ex.text);
            }
            let room = config.max_vocab.saturating_sub(vocab.len());
            vocab.extend_with(builder, config.min_count, room);
            let base_cfg = base.network.config();
            let d = base_cfg.embed_dim;
            let mut table = base.network.embedding_table();
            table.truncate(base.vocab.len() * d); // an empty base vocabulary still has one row
            let new_rows = vocab.len().max(1) - table.len() / d;
            table.extend(init_embedding_table(new_rows, d, &mut rng));
            let base_head = base.network.head.clone().fork(&ad).train();
            let same_labels = train_labels
                .iter()
                .all(|l| base.manifest.labels.iter().any(|b| b == l));
            let (labels, head) = if same_labels {
                (base.manifest.labels.clone(), base_head)
            } else {
                // A new label set: keep the embeddings and the hidden layer, train a new output layer.
                let labels: Vec<String> = train_labels.iter().map(|s| s.to_string()).collect();
                let fresh = Head::init(d, base_cfg.hidden_dim, labels.len(), &mut rng, &ad);
                (
                    labels,
                    Head {
                        hidden: base_head.hidden,
                        output: fresh.output,
                    },
                )
            };
            (
                base.manifest.tokenizer.clone(),
                vocab,
                labels,
                table,
                head,
                d,
            )
        }
    };
    let mut head = head;
    let tokenizer = Tokenizer::new(tokenizer_config.clone());
    let label_index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let train_set = encode(train_examples, &tokenizer, &vocab, &label_index)?;
    let valid_set = valid_examples
        .map(|v| encode(v, &tokenizer, &vocab, &label_index))
        .transpose()?;

    let vocab_rows = vocab.len().max(1);
    let steps_per_epoch = train_set.rows.len().div_ceil(config.batch_size) as u64;
    let total_steps = steps_per_epoch * config.epochs as u64;
    observer.on_event(&TrainEvent::Started {
        examples: train_set.rows.len(),
        valid_examples: valid_set.as_ref().map_or(0, |v| v.rows.len()),
        vocab_size: vocab.len(),
        labels: labels.clone(),
        total_steps,
    });

    let mut optim = AdamConfig::new().init();
    let mut emb_adam = SparseAdam::new(vocab_rows, embed_dim);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let lr = config.learning_rate;
    let mut order: Vec<usize> = (0..train_set.rows.len()).collect();
    let mut slot = vec![u32::MAX; vocab_rows];
    let mut epochs = Vec::new();
    let mut best: Option<(f64, u32, Vec<f32>, Head, Evaluation)> = None;
    let mut since_best = 0;
    let mut step: u64 = 0;

    for epoch in 1..=config.epochs {
        let epoch_start = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut seen = 0usize;
        for chunk in order.chunks(config.batch_size) {
            if observer.cancelled() {
                return Err(TrainError::Cancelled);
            }
            // Gather the rows this batch uses into a small local table.
            let mut used: Vec<u32> = Vec::new();
            let batch_rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| {
                    let rows = &train_set.rows[i];
                    let keep: Vec<u32> = if config.feature_dropout > 0.0 && rows.len() > 1 {
                        let kept: Vec<u32> = rows
                            .iter()
                            .copied()
                            .filter(|_| rng.random::<f64>() >= config.feature_dropout)
                            .collect();
                        if kept.is_empty() {
                            vec![rows[(rng.random::<u64>() % rows.len() as u64) as usize]]
                        } else {
                            kept
                        }
                    } else {
                        rows.clone()
                    };
                    keep.iter()
                        .map(|&r| {
                            if slot[r as usize] == u32::MAX {
                                slot[r as usize] = used.len() as u32;
                                used.push(r);
                            }
                            slot[r as usize]
                        })
                        .collect()
                })
                .collect();
            if used.is_empty() {
                used.push(0); // every text in the batch is unknown: keep the table non-empty
            }
            let mut local = Vec::with_capacity(used.len() * embed_dim);
            for &r in &used {
                local.extend_from_slice(
                    &table[r as usize * embed_dim..(r as usize + 1) * embed_dim],
                );
            }
            let local_table =
                Tensor::<2>::from_data(TensorData::new(local, [used.len(), embed_dim]), &ad)
                    .require_grad();
            let refs: Vec<&[u32]> = batch_rows.iter().map(|r| r.as_slice()).collect();
            let (ids, mask) = crate::model::network::pad_batch(&refs, &ad);
            let targets: Vec<i64> = chunk.iter().map(|&i| train_set.targets[i] as i64).collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [chunk.len()]), &ad);

            let emb = burn::tensor::module::embedding(local_table.clone(), ids);
            let logits = head.forward(masked_mean(emb, mask));
            let loss = loss_fn.forward(logits, targets);
            let loss_value = tensor_to_vec(loss.clone().detach())[0] as f64;
            let lr = if config.lr_decay {
                config.learning_rate * (1.0 - step as f64 / total_steps as f64).max(0.02)
            } else {
                config.learning_rate
            };
            let grads = loss.backward();
            if let Some(g) = local_table.grad(&grads) {
                let g = tensor_to_vec(g);
                emb_adam.step(&mut table, &used, &g, lr as f32);
            }
            let grads = GradientsParams::from_grads(grads, &head);
            head = optim.step(lr, head, grads);
            for &r in &used {
                slot[r as usize] = u32::MAX;
            }

            step += 1;
            seen += chunk.len();
            loss_sum += loss_value * chunk.len() as f64;
            observer.on_event(&TrainEvent::Step {
                epoch,
                step,
                total_steps,
                loss: loss_value,
                examples_per_sec: seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9),
            });
        }

        let train_loss = loss_sum / seen.max(1) as f64;
        let seconds = epoch_start.elapsed().as_secs_f64();
        let mut metrics = EpochMetrics {
            epoch,
            train_loss,
            valid_loss: None,
            valid_accuracy: None,
            seconds,
            examples_per_sec: seen as f64 / seconds.max(1e-9),
        };
        let mut stop = false;
        if let Some(valid) = &valid_set {
            let network =
                TextClassifier::from_parts(table.clone(), embed_dim, head.valid(), &device);
            let (valid_loss, predicted) =
                score_rows(&network, &valid.rows, &valid.targets, &device);
            let eval = evaluate("validation", &labels, &valid.targets, &predicted);
            metrics.valid_loss = Some(valid_loss);
            metrics.valid_accuracy = Some(eval.accuracy);
            let better = best.as_ref().is_none_or(|(acc, ..)| eval.accuracy > *acc);
            if better {
                best = Some((eval.accuracy, epoch, table.clone(), head.clone(), eval));
                since_best = 0;
            } else {
                since_best += 1;
                stop = config.patience > 0 && since_best >= config.patience;
            }
        }
        observer.on_event(&TrainEvent::EpochFinished(metrics.clone()));
        epochs.push(metrics);
        if stop {
            break;
        }
    }

    let epochs_run = epochs.len() as u32;
    let (best_epoch, table, head, validation) = match best {
        Some((_, e, t, h, eval)) => (e, t, h, Some(eval)),
        None => (epochs_run, table, head, None),
    };
    let network = TextClassifier::from_parts(table, embed_dim, head.valid(), &device);
    let info = TrainingInfo {
        train_data: Vec::new(),
        train_examples: train_examples.len() as u64,
        validation_data: None,
        epochs_run,
        best_epoch,
        learning_rate: lr,
        batch_size: config.batch_size,
        seed: config.seed,
        min_count: config.min_count,
        seconds: started.elapsed().as_secs_f64(),
        base_model: base.map(|b| format!("{}@{}", b.manifest.name, b.manifest.version)),
        command: None,
    };
    Ok(TrainOutput {
        network,
        vocab,
        labels,
        tokenizer: tokenizer_config,
        info,
        epochs,
        validation,
    })
}

/// Mean cross-entropy and predicted label of each encoded text, in chunks of 512.
fn score_rows(
    network: &TextClassifier,
    rows: &[Vec<u32>],
    targets: &[usize],
    device: &Device,
) -> (f64, Vec<usize>) {
    let classes = network.config().num_classes;
    let mut loss = 0.0;
    let mut predicted = Vec::with_capacity(rows.len());
    for (chunk, gold) in rows.chunks(512).zip(targets.chunks(512)) {
        let refs: Vec<&[u32]> = chunk.iter().map(|r| r.as_slice()).collect();
        let (ids, mask) = crate::model::network::pad_batch(&refs, device);
        let scores = tensor_to_vec(network.scores(ids, mask));
        for (s, &g) in scores.chunks_exact(classes).zip(gold) {
            loss -= (s[g].max(1e-12) as f64).ln();
            predicted.push(argmax(s));
        }
    }
    (loss / rows.len().max(1) as f64, predicted)
}

/// Splits examples into train and validation, stratified by label, deterministically for a seed.
/// Every label keeps at least one training example.
pub fn stratified_split(
    examples: &[Example],
    fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let mut by_label: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, e) in examples.iter().enumerate() {
        by_label.entry(e.label.as_str()).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0005_9117);
    let mut valid_idx = Vec::new();
    for idx in by_label.values_mut() {
        idx.shuffle(&mut rng);
        let n = ((idx.len() as f64) * fraction).round() as usize;
        let n = n.min(idx.len().saturating_sub(1));
        valid_idx.extend_from_slice(&idx[..n]);
    }
    let mut is_valid = vec![false; examples.len()];
    for i in valid_idx {
        is_valid[i] = true;
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (i, e) in examples.iter().enumerate() {
        if is_valid[i] {
            valid.push(e.clone())
        } else {
            train.push(e.clone())
        }
    }
    (train, valid)
}
