//! Recur's HTTP API: recommendations from the in-memory snapshot, and event intake.
//!
//! [`router`] builds the whole app, so tests drive it with `tower::ServiceExt::oneshot`
//! without a socket. To add an endpoint: a handler in `routes.rs`, a line in [`router`].

mod analytics;
mod campaigns;
mod error;
mod routes;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;
pub use state::{ApiLimits, AppState};

/// The whole application.
pub fn router(state: AppState) -> Router {
    guarded(routes(state))
}

/// Every endpoint, without the guards.
fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route(
            "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
            get(routes::recommendations),
        )
        .route(
            "/v1/merchants/{merchant_id}/items/{item_id}/similar",
            get(routes::similar),
        )
        .route(
            "/v1/merchants/{merchant_id}/reports/{report}",
            get(analytics::report),
        )
        .route(
            "/v1/merchants/{merchant_id}/users/{user_id}/profile",
            get(analytics::profile),
        )
        .route(
            "/v1/merchants/{merchant_id}/audiences",
            get(analytics::list_audiences).post(analytics::create_audience),
        )
        .route(
            "/v1/merchants/{merchant_id}/campaigns",
            get(campaigns::list_campaigns).post(campaigns::create),
        )
        .route(
            "/v1/merchants/{merchant_id}/campaigns/{name}/plan",
            get(campaigns::plan),
        )
        .route(
            "/v1/merchants/{merchant_id}/campaigns/{name}/report",
            get(campaigns::report),
        )
        .route(
            "/v1/events",
            post(routes::post_events).layer(DefaultBodyLimit::max(state.limits.max_body_bytes)),
        )
        .fallback(routes::not_found)
        .with_state(state)
}

/// A bug that panics in one handler answers that request with a 500 and our JSON error; the
/// server, its store and its other requests carry on.
fn guarded(app: Router) -> Router {
    app.layer(CatchPanicLayer::custom(panic_response))
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    axum::response::IntoResponse::into_response(ApiError::internal(&format!(
        "handler panicked: {what}"
    )))
}

/// Serves the app on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Path;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use recur_engine::event::EventValidator;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    fn state() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = AppState::open(
            dir.path().to_path_buf(),
            ApiLimits::default(),
            EventValidator::new(1_780_000_000_000),
        )
        .expect("state");
        (dir, state)
    }

    async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    fn post_event(id: &str) -> Request<Body> {
        let line = format!(
            r#"{{"event_id":"{id}","merchant_id":"m","user_id":"u","type":"share","ts":1777600800000}}"#
        );
        Request::post("/v1/events")
            .body(Body::from(line))
            .expect("request")
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_only_its_own_request() {
        let (_dir, state) = state();
        let boom = |Path(id): Path<String>| async move {
            let ids: Vec<&str> = Vec::new();
            // A handler bug: indexing past the end.
            ids[id.len()].to_owned()
        };
        let app = guarded(routes(state).route("/boom/{id}", get(boom)));
        let (status, body) = call(
            &app,
            Request::get("/boom/x").body(Body::empty()).expect("req"),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        let (status, _) = call(
            &app,
            Request::get("/healthz").body(Body::empty()).expect("req"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(&app, post_event("e1")).await;
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (StatusCode::OK, Some(1))
        );
    }

    #[tokio::test]
    async fn intake_goes_on_after_a_panic_while_the_store_was_locked() {
        let (_dir, state) = state();
        let poisoner = state.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.store();
            panic!("a panic while appending");
        })
        .join();
        let app = router(state);
        let (status, body) = call(&app, post_event("e1")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], 1);
        let (status, body) = call(&app, post_event("e1")).await;
        assert_eq!(
            (status, body["duplicates"].as_u64()),
            (StatusCode::OK, Some(1))
        );
    }

    #[tokio::test]
    async fn a_snapshot_that_cannot_be_loaded_makes_health_degraded_until_fixed() {
        let (dir, state) = state();
        let snapshots = dir.path().join("snapshots");
        std::fs::create_dir_all(snapshots.join("broken")).expect("mkdir");
        std::fs::write(snapshots.join("CURRENT"), "broken").expect("write");
        assert!(state.reload_if_newer().await.is_err());
        let app = router(state.clone());
        let (status, body) = call(
            &app,
            Request::get("/healthz").body(Body::empty()).expect("req"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "degraded");
        assert!(
            body["reload_error"]
                .as_str()
                .is_some_and(|e| e.contains("broken")),
            "{body}"
        );
        std::fs::remove_file(snapshots.join("CURRENT")).expect("remove");
        assert_eq!(state.reload_if_newer().await, Ok(false));
        let (_, body) = call(
            &app,
            Request::get("/healthz").body(Body::empty()).expect("req"),
        )
        .await;
        assert_eq!(body["status"], "ok");
    }
}
