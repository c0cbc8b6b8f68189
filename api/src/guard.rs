//! The guards every route shares, as one service: the request's metrics, the concurrency limit
//! (a request over it gets `503 overloaded` at once, never a queue), the request timeout
//! (`503 timeout`) and the panic catcher (`500 internal`, the server carries on).
//!
//! These are what tower's `load_shed`, `concurrency_limit` and `timeout`, tower-http's
//! `CatchPanicLayer` and a `from_fn` metrics middleware did, with the same answers. Stacked,
//! the five cost each request a boxed future and a poll per layer, a `HandleError` conversion
//! and a timer in tokio's wheel; fused, a request costs one boxed future and a semaphore
//! permit, and a handler that answers on its first poll (most do: they read the in-memory
//! snapshot) never arms a timer at all. The deadline still counts from the request's start.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::ApiError;
use crate::metrics;

/// Applies [`Guard`] to every route of a router.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl GuardLayer {
    /// At most `max_concurrent` requests in progress, each answered within `timeout`.
    pub(crate) fn new(max_concurrent: usize, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            timeout,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            permits: Arc::clone(&self.permits),
            timeout: self.timeout,
        }
    }
}

/// One route behind the shared guards (see the module's docs).
#[derive(Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    /// Shared by every route of the router: the limit is the server's, not each route's.
    permits: Arc<Semaphore>,
    timeout: Duration,
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
        // Always ready: a request over the limit is answered, not held back (load shedding).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", |p| metrics::route_label(p.as_str()));
        let method = metrics::method_label(request.method());
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        // The routes this wraps (axum's) are always ready, so a clone serves this request
        // without a `poll_ready` of its own.
        let mut inner = self.inner.clone();
        let deadline = started + self.timeout;
        Box::pin(async move {
            let response = match permit {
                Some(permit) => guarded(&mut inner, request, deadline, permit).await,
                None => overloaded(),
            };
            metrics::record_request(route, method, response.status(), started.elapsed());
            Ok(response)
        })
    }
}

/// `request` answered by `inner`: a panic becomes a 500, passing `deadline` a 503. The permit
/// is held until the handler's future is dropped, on an answer or on the timeout alike.
async fn guarded<S>(
    inner: &mut S,
    request: Request,
    deadline: Instant,
    _permit: OwnedSemaphorePermit,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let future = match catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
        Ok(future) => future,
        Err(payload) => return panic_response(payload),
    };
    let mut future = pin!(future);
    // Armed only when the handler did not answer at once.
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(Ok(response))) => return Poll::Ready(response),
            Ok(Poll::Ready(Err(never))) => match never {},
            Err(payload) => return Poll::Ready(panic_response(payload)),
            Ok(Poll::Pending) => {}
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx).map(|()| timed_out())
    })
    .await
}

fn overloaded() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the server is at its limit of requests in progress; retry shortly",
    )
    .into_response()
}

fn timed_out() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "the request took too long and was stopped; retry, or ask for less (a smaller k or limit)",
    )
    .into_response()
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(&format!("handler panicked: {what}")).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::GuardLayer;

    async fn answer(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    #[tokio::test]
    async fn a_slow_request_is_stopped_at_its_deadline_and_the_next_one_is_served() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .layer(GuardLayer::new(4, Duration::from_millis(200)));
        let started = tokio::time::Instant::now();
        let (status, body) = answer(&app, "/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "timeout");
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(200)..Duration::from_secs(30)).contains(&waited),
            "answered after {waited:?}, not at the 200 ms deadline"
        );
        assert_eq!(answer(&app, "/fast").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_is_refused_at_once_and_the_permit_comes_back() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let (wait, enter) = (Arc::clone(&release), Arc::clone(&entered));
        let app = Router::new()
            .route(
                "/hold",
                get(move || {
                    let (wait, enter) = (Arc::clone(&wait), Arc::clone(&enter));
                    async move {
                        enter.notify_one();
                        wait.notified().await;
                        "held"
                    }
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            // One permit for the whole router, not one per route.
            .layer(GuardLayer::new(1, Duration::from_secs(30)));
        let holder = tokio::spawn({
            let app = app.clone();
            async move { answer(&app, "/hold").await.0 }
        });
        entered.notified().await;
        let (status, body) = answer(&app, "/fast").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "overloaded");
        release.notify_one();
        assert_eq!(holder.await.expect("holder"), StatusCode::OK);
        assert_eq!(answer(&app, "/fast").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_panic_after_the_first_poll_is_a_500_and_frees_the_permit() {
        let app = Router::new()
            .route(
                "/late-panic",
                get(|| async {
                    tokio::task::yield_now().await;
                    let empty: Vec<&str> = Vec::new();
                    empty[0].to_owned()
                }),
            )
            .layer(GuardLayer::new(1, Duration::from_secs(30)));
        for _ in 0..2 {
            let (status, body) = answer(&app, "/late-panic").await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body["error"]["code"], "internal");
        }
    }
}
