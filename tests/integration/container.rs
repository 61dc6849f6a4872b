//! `textclf healthcheck`, the container's HEALTHCHECK (the runtime image has no curl).

use std::sync::atomic::Ordering;

use textclf::cli::{HealthcheckArgs, healthcheck};
use textclf::http::Limits;
use textclf::serve::BatchConfig;

use crate::common::start_server;

fn args(port: u16) -> HealthcheckArgs {
    HealthcheckArgs {
        host: "127.0.0.1".into(),
        port,
        timeout_ms: 2000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_only_while_the_server_is_ready() {
    let (addr, state) = start_server(BatchConfig::default(), Limits::default()).await;
    let check = move || tokio::task::spawn_blocking(move || healthcheck(&args(addr.port())));
    check().await.unwrap().expect("a ready server passes");

    // Draining: /health/ready answers 503, so the check must fail and say why.
    state.ready.store(false, Ordering::SeqCst);
    let err = check().await.unwrap().expect_err("a draining server fails");
    assert!(err.to_string().contains("503"), "{err}");

    // Nothing listening: fails (connection refused), well within its timeout.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || healthcheck(&args(port)))
        .await
        .unwrap()
        .expect_err("no server, no health");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
