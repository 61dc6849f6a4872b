//! The classifier network: a fastText-style bag of embeddings with one hidden layer.
//!
//! rows → embedding → masked mean pooling over the real tokens → Linear + ReLU → Linear → logits.
//! Softmax turns logits into scores. Padding positions carry mask 0 and never change a result.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Shape of the network; stored in the model manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Rows of the embedding table (the vocabulary size, at least 1).
    pub vocab_size: usize,
    pub embed_dim: usize,
    pub hidden_dim: usize,
    pub num_classes: usize,
}

/// The dense part: pooled text vector → logits.
#[derive(Module, Debug)]
pub struct Head {
    pub hidden: Linear,
    pub output: Linear,
}

/// The whole classifier.
#[derive(Module, Debug)]
pub struct TextClassifier {
    pub embedding: Embedding,
    pub head: Head,
}

/// Mean of the embeddings of the real (mask = 1) positions; all-padding rows give a zero vector.
///
/// `emb`: `[batch, seq, dim]`, `mask`: `[batch, seq]` of 0.0/1.0 → `[batch, dim]`.
pub fn masked_mean(emb: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let mask = mask.unsqueeze_dim::<3>(2);
    let summed = (emb * mask.clone()).sum_dim(1);
    let count = mask.sum_dim(1).clamp_min(1.0);
    (summed / count).squeeze_dim::<2>(1)
}

impl Head {
    /// Builds a head with Kaiming-uniform weights drawn from `rng` (never burn's global RNG,
    /// so training is reproducible whatever else runs in the process).
    pub fn init(
        embed_dim: usize,
        hidden_dim: usize,
        num_classes: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        Head {
            hidden: linear(embed_dim, hidden_dim, rng, device),
            output: linear(hidden_dim, num_classes, rng, device),
        }
    }

    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.output.forward(relu(self.hidden.forward(pooled)))
    }
}

impl TextClassifier {
    /// A freshly initialised network; the embedding table is drawn from `rng` too.
    pub fn init(config: &NetworkConfig, seed: u64, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let table = init_embedding_table(config.vocab_size, config.embed_dim, &mut rng);
        let head = Head::init(
            config.embed_dim,
            config.hidden_dim,
            config.num_classes,
            &mut rng,
            device,
        );
        Self::from_parts(table, config.embed_dim, head, device)
    }

    /// Assembles a classifier from a row-major embedding table and a head.
    pub fn from_parts(table: Vec<f32>, embed_dim: usize, head: Head, device: &Device) -> Self {
        let rows = table.len() / embed_dim.max(1);
        let weight = Tensor::<2>::from_data(TensorData::new(table, [rows, embed_dim]), device);
        TextClassifier {
            embedding: Embedding {
                weight: Param::from_tensor(weight),
            },
            head,
        }
    }

    /// Logits `[batch, classes]` for padded row ids `[batch, seq]` and their mask.
    pub fn forward(&self, rows: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let pooled = masked_mean(self.embedding.forward(rows), mask);
        self.head.forward(pooled)
    }

    /// Softmax scores `[batch, classes]`.
    pub fn scores(&self, rows: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        softmax(self.forward(rows, mask), 1)
    }

    /// The embedding table as a row-major vector (for training and fine-tuning).
    pub fn embedding_table(&self) -> Vec<f32> {
        tensor_to_vec(self.embedding.weight.val())
    }

    pub fn config(&self) -> NetworkConfig {
        let [vocab_size, embed_dim] = self.embedding.weight.dims();
        let [_, hidden_dim] = self.head.hidden.weight.dims();
        let [_, num_classes] = self.head.output.weight.dims();
        NetworkConfig {
            vocab_size,
            embed_dim,
            hidden_dim,
            num_classes,
        }
    }
}

/// Embedding rows start small: N(0, 0.1²) scaled so a mean of a few rows stays O(0.1).
pub fn init_embedding_table(rows: usize, dim: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let bound = 1.0 / (dim as f32).sqrt();
    (0..rows * dim)
        .map(|_| rng.random_range(-bound..bound))
        .collect()
}

fn linear(d_in: usize, d_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> Linear {
    let k = (1.0 / d_in as f32).sqrt();
    let w: Vec<f32> = (0..d_in * d_out).map(|_| rng.random_range(-k..k)).collect();
    let b: Vec<f32> = (0..d_out).map(|_| rng.random_range(-k..k)).collect();
    Linear {
        weight: Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(w, [d_in, d_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(b, [d_out]),
            device,
        ))),
    }
}

/// Copies a float tensor out as a flat f32 vector.
pub fn tensor_to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor data converts to Vec<f32>. This is a bug.")
}

/// Pads variable-length row lists into `[batch, max_len]` ids plus a 0/1 mask.
/// Padding uses row 0 under mask 0, so it is never counted.
pub fn pad_batch(rows: &[&[u32]], device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let batch = rows.len();
    let max_len = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let mut ids = vec![0i64; batch * max_len];
    let mut mask = vec![0f32; batch * max_len];
    for (b, r) in rows.iter().enumerate() {
        for (s, &row) in r.iter().enumerate() {
            ids[b * max_len + s] = row as i64;
            mask[b * max_len + s] = 1.0;
        }
    }
    (
        Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, max_len]), device),
        Tensor::<2>::from_data(TensorData::new(mask, [batch, max_len]), device),
    )
}
