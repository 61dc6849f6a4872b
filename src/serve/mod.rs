//! Serving core, with no web framework in it: batching workers and the model registry.

pub mod registry;
pub mod worker;

pub use registry::{ModelRegistry, RegistryError};
pub use worker::{BatchConfig, ClassifyError, JobReply, ModelWorker, WorkerStats};
