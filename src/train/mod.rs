//! Training and evaluation. Nothing here knows about HTTP.
//!
//! ## Fine-tuning rule (`base` model)
//! - The base model's tokenizer and vocabulary are kept; features of the new data that the base
//!   vocabulary lacks (seen at least `min_count` times) are appended as new rows, so existing rows
//!   never move and their embeddings are reused.
//! - If every training label is one of the base model's labels, the whole network continues from
//!   the base weights and keeps the base label order.
//! - Otherwise the labels are the new data's labels: the embeddings and the hidden layer are
//!   reused and a new output layer is trained.
//! - Without a base, everything starts fresh from the seed.

pub mod data;
pub mod metrics;
pub mod sparse_adam;
pub mod trainer;

pub use data::{Example, read_all, read_examples};
pub use trainer::{
    EpochMetrics, Observer, Silent, TrainConfig, TrainError, TrainEvent, TrainOutput,
    stratified_split, train,
};
