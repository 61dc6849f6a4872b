//! Batched inference: texts → tokenised rows → one padded forward pass → scores.
//!
//! This is the single code path used by the server's batching worker, `textclf eval` and
//! `textclf predict`, so what the evaluation measures is what the server answers.

use std::sync::OnceLock;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::model::artifact::LoadedModel;
use crate::model::network::tensor_to_vec;
use crate::text::Encoded;

/// Scores of one text, in label order.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub scores: Vec<f32>,
    /// The text had more features than the model's `max_tokens`; the rest were ignored.
    pub truncated: bool,
    /// How many features of the text the model knew (0 means the answer is the label prior).
    pub known_features: usize,
}

impl Prediction {
    /// Index of the best label.
    pub fn best(&self) -> usize {
        argmax(&self.scores)
    }

    /// Label indices sorted by score, best first; ties keep label order.
    pub fn ranked(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.scores.len()).collect();
        idx.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]).then(a.cmp(&b)));
        idx
    }
}

/// A model's embedding table copied to host memory on first use, for [`LoadedModel::pooled`].
#[derive(Default)]
pub struct HostTable(OnceLock<Vec<f32>>);

impl std::fmt::Debug for HostTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = self.0.get().map(Vec::len);
        f.debug_tuple("HostTable").field(&rows).finish()
    }
}

pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}

impl LoadedModel {
    /// Tokenises and encodes one text with this model's tokenizer and vocabulary.
    pub fn encode(&self, text: &str) -> Encoded {
        self.vocab.encode(&self.tokenizer.tokenize(text))
    }

    /// Mean embedding of each text's rows `[texts, dim]`: the network's embedding + masked mean,
    /// computed on a host copy of the table. burn-ndarray gathers embedding rows with a
    /// row-by-row `concatenate`, which took about 3/4 of the forward pass (bench/FINDINGS.md);
    /// this is the same arithmetic without it.
    fn pooled(&self, encoded: &[Encoded], device: &Device) -> Tensor<2> {
        let table = self
            .host_table
            .0
            .get_or_init(|| self.network.embedding_table());
        let dim = self.network.config().embed_dim;
        let mut pooled = vec![0f32; encoded.len() * dim];
        for (out, e) in pooled.chunks_exact_mut(dim.max(1)).zip(encoded) {
            for &row in &e.rows {
                let start = row as usize * dim;
                out.iter_mut()
                    .zip(&table[start..start + dim])
                    .for_each(|(o, x)| *o += x);
            }
            let n = e.rows.len().max(1) as f32;
            out.iter_mut().for_each(|o| *o /= n);
        }
        Tensor::<2>::from_data(TensorData::new(pooled, [encoded.len(), dim]), device)
    }

    /// Classifies already-encoded texts in one forward pass.
    pub fn classify_encoded(&self, encoded: &[Encoded], device: &Device) -> Vec<Prediction> {
        if encoded.is_empty() {
            return Vec::new();
        }
        let logits = self.network.head.forward(self.pooled(encoded, device));
        let scores = tensor_to_vec(softmax(logits, 1));
        let classes = self.manifest.labels.len();
        encoded
            .iter()
            .zip(scores.chunks_exact(classes))
            .map(|(e, s)| Prediction {
                scores: s.to_vec(),
                truncated: e.truncated,
                known_features: e.rows.len(),
            })
            .collect()
    }

    /// Classifies texts in one forward pass.
    pub fn classify<S: AsRef<str>>(&self, texts: &[S], device: &Device) -> Vec<Prediction> {
        let encoded: Vec<Encoded> = texts.iter().map(|t| self.encode(t.as_ref())).collect();
        self.classify_encoded(&encoded, device)
    }
}
