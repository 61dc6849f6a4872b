use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use textclf::http::{AppState, Limits};
use textclf::model::LoadedModel;
use textclf::model::backend;
use textclf::serve::{BatchConfig, ModelRegistry};
use textclf::train::{self, Example};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn models_dir() -> PathBuf {
    repo().join("models")
}

/// `../shared/data/<name>`, or `None` (with a note) when absent outside CI.
pub fn data(name: &str) -> Option<PathBuf> {
    let dir = repo().join("..").join("shared").join("data").join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: CI must provide ../shared/data",
            dir.display()
        );
    }
    eprintln!("skipping: {} not found", dir.display());
    None
}

pub fn read(path: &Path) -> Vec<Example> {
    train::read_examples(path).unwrap_or_else(|e| panic!("{e}"))
}

pub fn load_model(name: &str) -> LoadedModel {
    LoadedModel::load(&models_dir().join(name), &backend::device())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Serves an already-built state on a free loopback port; `shutdown` ends it gracefully.
pub async fn serve_state(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    (
        addr,
        tokio::spawn(textclf::server::serve(listener, state, shutdown)),
    )
}

/// A state with the shipped models (no job manager).
pub fn shipped_state(batch: BatchConfig, limits: Limits) -> AppState {
    let models = ModelRegistry::load_dir(&models_dir()).expect("shipped models load");
    let registry = ModelRegistry::start(models, "news-zh", &batch).expect("registry starts");
    AppState::new(registry, limits)
}

/// Starts the real router with the shipped models on a free loopback port.
pub async fn start_server(batch: BatchConfig, limits: Limits) -> (SocketAddr, AppState) {
    let models = ModelRegistry::load_dir(&models_dir()).expect("shipped models load");
    let registry = ModelRegistry::start(models, "news-zh", &batch).expect("registry starts");
    let state = AppState::new(registry, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(textclf::server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    (addr, state)
}
