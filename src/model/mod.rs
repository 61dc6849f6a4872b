//! The burn model: network definition, artifacts on disk, and batched inference.

pub mod artifact;
pub mod backend;
pub mod explain;
pub mod inference;
pub mod network;

pub use artifact::{Evaluation, LoadedModel, Manifest};
pub use inference::Prediction;
pub use network::{NetworkConfig, TextClassifier};
