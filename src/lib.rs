//! textclf: a fastText-style text classifier (burn) served over HTTP with dynamic batching.
//!
//! The request path reads top-down: [`http`] (routes, errors) → [`serve`] (batching workers,
//! model registry) → [`model`] (burn network, artifacts, inference). [`train`] and [`text`] are
//! shared by the CLI, the server and fine-tune jobs; training never imports `http`.

pub mod cli;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod serve;
pub mod server;
pub mod text;
pub mod train;
