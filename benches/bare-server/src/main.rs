//! The ceiling of Recur's HTTP stack on this machine, for `scripts/bench-api`: axum on tokio
//! answering the recommendation route with a fixed JSON body of a given size, and nothing
//! else (no key, no snapshot, no metrics, no limits). With `--guarded KEY MERCHANT USERS`,
//! the floor of Recur's guarded route instead ([`guards`]).
//!
//!   cargo run --release -p recur-bare-server -- 127.0.0.1:18081 1234
//!   cargo run --release -p recur-bare-server -- 127.0.0.1:18081 1234 --guarded rk_… m_bakery 1000000

mod guards;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// Recur's allocator, so the ceiling is measured on the same stack as `recur serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let app = match args.get(2).map(String::as_str) {
        Some("--guarded") => {
            let (Some(key), Some(merchant), Some(users)) = (
                args.get(3),
                args.get(4),
                args.get(5).and_then(|u| u.parse().ok()),
            ) else {
                eprintln!("usage: recur-bare-server LISTEN SIZE [--guarded KEY MERCHANT USERS]");
                std::process::exit(2);
            };
            guards::app(key, merchant, users, size)
        }
        _ => {
            let body = fixed_body(size, 0);
            Router::new().route(
                "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
                get(move || {
                    let body = body.clone();
                    async move {
                        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
                    }
                }),
            )
        }
    };
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await
    })
}

/// A JSON object of exactly `size` bytes (at least 12), its padding telling `variant`s apart.
fn fixed_body(size: usize, variant: usize) -> axum::body::Bytes {
    let frame = r#"{"items":""}"#.len();
    let fill = char::from(b'a' + (variant % 26) as u8);
    let padding = fill.to_string().repeat(size.saturating_sub(frame));
    axum::body::Bytes::from(format!(r#"{{"items":"{padding}"}}"#))
}
