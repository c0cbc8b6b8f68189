//! The ceiling of Recur's HTTP stack on this machine, for `scripts/bench-api`: axum on tokio
//! answering the recommendation route with a fixed JSON body of a given size, and nothing
//! else (no key, no snapshot, no metrics, no limits).
//!
//!   cargo run --release -p recur-bare-server -- 127.0.0.1:18081 1234

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let body = fixed_body(size);
    let app = Router::new().route(
        "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
        }),
    );
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await
    })
}

/// A JSON object of exactly `size` bytes (at least 12).
fn fixed_body(size: usize) -> axum::body::Bytes {
    let frame = r#"{"items":""}"#.len();
    let padding = "x".repeat(size.saturating_sub(frame));
    axum::body::Bytes::from(format!(r#"{{"items":"{padding}"}}"#))
}
