//! Integration tests, in one binary so the release build links once.
//!
//! They read the real data sets from `../shared/data` (never copied into the repo). Under CI
//! (`CI` set) a missing data directory fails loudly; elsewhere those tests are skipped with a note.

mod batching;
mod common;
mod container;
mod http_api;
mod jobs;
mod model_artifacts;
mod openapi;
mod operations;
mod training;
