//! A local webhook receiver for `scripts/bench-campaign`: answers every POST with 200 after
//! checking its signature, and counts requests, distinct idempotency keys and bad signatures
//! (printed on SIGINT/SIGTERM or every 5 seconds to stderr).
//!
//!     cargo run --release -p recur-push --example webhook_sink -- 127.0.0.1:18200 SECRET

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

#[derive(Default)]
struct Counts {
    requests: u64,
    bad_signatures: u64,
    keys: HashSet<String>,
}

struct Sink {
    secret: String,
    counts: Mutex<Counts>,
}

async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let valid = header("x-recur-signature") == recur_push::signature(&sink.secret, &body);
    let mut counts = sink.counts.lock().unwrap_or_else(|p| p.into_inner());
    counts.requests += 1;
    counts.bad_signatures += u64::from(!valid);
    counts.keys.insert(header("idempotency-key").to_owned());
    if valid {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

fn report(sink: &Sink) {
    let counts = sink.counts.lock().unwrap_or_else(|p| p.into_inner());
    eprintln!(
        "requests={} keys={} bad_signatures={}",
        counts.requests,
        counts.keys.len(),
        counts.bad_signatures
    );
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:18200".to_owned());
    let secret = args.next().unwrap_or_default();
    let sink = Arc::new(Sink {
        secret,
        counts: Mutex::new(Counts::default()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        let app = Router::new()
            .route("/push", post(receive))
            .with_state(sink.clone());
        let reporter = sink.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                report(&reporter);
            }
        });
        let done = sink.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = tokio::signal::ctrl_c().await;
                report(&done);
            })
            .await
    })
}
