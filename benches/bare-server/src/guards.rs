//! The floor of Recur's guarded route: the bare server plus what every Recur request must pass
//! before its list is rendered — the shape of `recur-api`'s guards (one service for metrics
//! per route and status, the concurrency limit, the timeout armed only for a handler that
//! does not answer at once, the panic catcher), a bearer key's SHA-256 checked against a key
//! ring and its merchant against the path, the query parsed, and the customer looked up in a
//! map of a million ids. The answer is a prerendered body.
//!
//! Recur cannot be faster than this on the same stack; the gap between it and the bare
//! server is the price of the must-haves, and the gap between it and `recur serve`
//! is the handler's own work (finding, filtering and rendering the list).

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, RawPathParams, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::FutureExt;
use futures_util::future::{Either, Ready, ready};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::Service;

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
        .route_layer(tower::layer::layer_fn({
            let state = Arc::clone(&state);
            move |inner| MerchantKey {
                inner,
                state: Arc::clone(&state),
            }
        }))
        .with_state(state)
        .layer(tower::layer::layer_fn({
            let permits = Arc::new(Semaphore::new(1024));
            move |inner| Guard {
                inner,
                permits: Arc::clone(&permits),
            }
        }))
}

fn refuse(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

/// The key check of `recur-api`'s `MerchantKey`, reduced to its work: a plain service.
#[derive(Clone)]
struct MerchantKey<S> {
    inner: S,
    state: Arc<Guarded>,
}

impl<S> Service<Request> for MerchantKey<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match refusal(&self.state, request) {
            Ok(request) => Either::Right(self.inner.call(request)),
            Err((status, code)) => Either::Left(ready(Ok(refuse(status, code)))),
        }
    }
}

/// `request` back if its key is its merchant's, else the refusal's status and code.
fn refusal(state: &Guarded, request: Request) -> Result<Request, (StatusCode, &'static str)> {
    let (mut parts, body) = request.into_parts();
    let path = match RawPathParams::from_request_parts(&mut parts, &()).now_or_never() {
        Some(Ok(path)) => path,
        _ => return Err((StatusCode::BAD_REQUEST, "bad_path")),
    };
    let request = Request::from_parts(parts, body);
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return Err((StatusCode::UNAUTHORIZED, "unauthorized"));
    };
    let Some(owner) = state.keys.get(Sha256::digest(token.as_bytes()).as_slice()) else {
        return Err((StatusCode::UNAUTHORIZED, "unauthorized"));
    };
    let merchant = path.iter().find(|(name, _)| *name == "merchant_id");
    if merchant.is_none_or(|(_, m)| m != owner) {
        return Err((StatusCode::FORBIDDEN, "forbidden"));
    }
    Ok(request)
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

/// `recur-api`'s guard, reduced to its work: a permit or `503`, the route's future polled
/// under `catch_unwind`, a timer armed only if it does not answer at once, the metrics.
#[derive(Clone)]
struct Guard<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let route: &'static str = match request.extensions().get::<MatchedPath>() {
            Some(_) => "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
            None => "unmatched",
        };
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let response = match permit {
                None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                Some(_permit) => {
                    let future = catch_unwind(AssertUnwindSafe(|| inner.call(request)));
                    match future {
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        Ok(future) => answer(future, started + Duration::from_secs(30)).await,
                    }
                }
            };
            record(route, response.status().as_u16(), started.elapsed());
            Ok(response)
        })
    }
}

/// `future`'s answer, a 500 if it panics, a 503 past `deadline`.
async fn answer(
    future: impl Future<Output = Result<Response, Infallible>>,
    deadline: Instant,
) -> Response {
    let mut future = pin!(future);
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(Ok(response))) => return Poll::Ready(response),
            Ok(Poll::Ready(Err(never))) => match never {},
            Err(_) => return Poll::Ready(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
            Ok(Poll::Pending) => {}
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer
            .as_mut()
            .poll(cx)
            .map(|()| StatusCode::SERVICE_UNAVAILABLE.into_response())
    })
    .await
}

/// `recur-api`'s request metrics: a counter and a latency histogram per route, method and
/// status, their handles cached per worker thread.
fn record(route: &'static str, status: u16, elapsed: Duration) {
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
        latency.record(elapsed.as_secs_f64());
    });
}
