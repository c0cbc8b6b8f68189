//! The floor of Recur's guarded route: the bare server plus what every Recur request must pass
//! before its list is rendered — the same tower stack as `recur-api` (metrics per route and
//! status, load shedding, a concurrency limit, a timeout, a panic catcher), a bearer key's
//! SHA-256 checked against a key ring and its merchant against the path, the query parsed,
//! and the customer looked up in a map of a million ids. The answer is a prerendered body.
//!
//! Recur cannot be faster than this on the same stack; the gap between it and the bare
//! server is the price of the must-haves, and the gap between it and `recur serve`
//! is the handler's own work (finding, filtering and rendering the list).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Path, Query, RawPathParams, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

/// Prerendered bodies the customers' lookups point at: enough that they are not all in
/// cache, few enough to build in a moment.
const BODIES: usize = 64;

struct Guarded {
    /// SHA-256 of each key → its merchant.
    keys: HashMap<Vec<u8>, String>,
    /// Customer id → index into `bodies`.
    customers: HashMap<String, u32>,
    bodies: Vec<Bytes>,
}

#[derive(Deserialize)]
struct ListQuery {
    k: Option<usize>,
    #[serde(default)]
    offset: usize,
}

/// The guarded app: `key` is a key of `merchant`, whose customers are `u0000001..=u{users}`
/// (the ids `recur generate` writes), each answered with a body of `size` bytes.
pub(crate) fn app(key: &str, merchant: &str, users: u32, size: usize) -> Router {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _ = metrics::set_global_recorder(recorder);
    let bodies = (0..BODIES).map(|i| super::fixed_body(size, i)).collect();
    let customers = (1..=users)
        .map(|u| (format!("u{u:07}"), u % BODIES as u32))
        .collect();
    let state = Arc::new(Guarded {
        keys: HashMap::from([(Sha256::digest(key.as_bytes()).to_vec(), merchant.to_owned())]),
        customers,
        bodies,
    });
    Router::new()
        .route(
            "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
            get(list),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), merchant_key))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(track))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    StatusCode::SERVICE_UNAVAILABLE
                }))
                .load_shed()
                .concurrency_limit(1024)
                .timeout(Duration::from_secs(30))
                .layer(CatchPanicLayer::new()),
        )
}

fn refuse(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

/// The key check of `recur-api`'s `merchant_key`, reduced to its work.
async fn merchant_key(
    State(state): State<Arc<Guarded>>,
    path: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let Some(owner) = state.keys.get(Sha256::digest(token.as_bytes()).as_slice()) else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let merchant = path.iter().find(|(name, _)| *name == "merchant_id");
    if merchant.is_none_or(|(_, m)| m != owner) {
        return refuse(StatusCode::FORBIDDEN, "forbidden");
    }
    next.run(request).await
}

async fn list(
    State(state): State<Arc<Guarded>>,
    Path((_merchant, user)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Response {
    if query.k.unwrap_or(10) > 100 || query.offset > 10_000 {
        return refuse(StatusCode::BAD_REQUEST, "bad_query");
    }
    match state.customers.get(&user) {
        Some(body) => (
            [(header::CONTENT_TYPE, "application/json")],
            state.bodies[*body as usize].clone(),
        )
            .into_response(),
        None => refuse(StatusCode::NOT_FOUND, "unknown_user"),
    }
}

/// A request counter and its latency histogram.
type Handles = (Counter, Histogram);

/// `recur-api`'s request metrics: a counter and a latency histogram per route, method and
/// status, their handles cached per worker thread.
async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route: &'static str = match request.extensions().get::<MatchedPath>() {
        Some(_) => "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
        None => "unmatched",
    };
    let response = next.run(request).await;
    let status = response.status().as_u16();
    thread_local! {
        static HANDLES: RefCell<HashMap<(&'static str, u16), Handles>> =
            RefCell::new(HashMap::new());
    }
    HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        let (requests, latency) = handles.entry((route, status)).or_insert_with(|| {
            let labels = [
                ("route", route.to_owned()),
                ("method", "GET".to_owned()),
                ("status", status.to_string()),
            ];
            (
                metrics::counter!("recur_http_requests_total", &labels),
                metrics::histogram!("recur_http_request_duration_seconds", &labels),
            )
        });
        requests.increment(1);
        latency.record(started.elapsed().as_secs_f64());
    });
    response
}
