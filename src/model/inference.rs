//! Batched inference: texts → tokenised rows → one padded forward pass → scores.
//!
//! This is the single code path used by the server's batching worker, `textclf eval` and
//! `textclf predict`, so what the evaluation measures is what the server answers.

use burn::tensor::Device;

use crate::model::artifact::LoadedModel;
use crate::model::network::{pad_batch, tensor_to_vec};
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

    /// Classifies already-encoded texts in one forward pass.
    pub fn classify_encoded(&self, encoded: &[Encoded], device: &Device) -> Vec<Prediction> {
        if encoded.is_empty() {
            return Vec::new();
        }
        let rows: Vec<&[u32]> = encoded.iter().map(|e| e.rows.as_slice()).collect();
        let (ids, mask) = pad_batch(&rows, device);
        let scores = tensor_to_vec(self.network.scores(ids, mask));
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
