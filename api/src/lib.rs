//! Recur's HTTP API: recommendations from the in-memory snapshot, and event intake.
//!
//! [`router`] builds the whole app, so tests drive it with `tower::ServiceExt::oneshot`
//! without a socket. To add an endpoint: a handler in `routes.rs`, a line in [`router`].

mod analytics;
mod auth;
mod campaigns;
mod error;
mod routes;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
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
        .merge(merchant_routes(state.clone()))
        .route(
            "/v1/events",
            post(routes::post_events)
                .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::events_key,
                )),
        )
        .fallback(routes::not_found)
        .with_state(state)
}

/// The `/v1/merchants/{merchant_id}/…` endpoints, each behind the merchant's key.
fn merchant_routes(state: AppState) -> Router<AppState> {
    Router::new()
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
        .route_layer(middleware::from_fn_with_state(state, auth::merchant_key))
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

    fn with_key(request: axum::http::request::Builder, key: &str) -> axum::http::request::Builder {
        request.header("authorization", format!("Bearer {key}"))
    }

    fn events_of(merchant: &str, id: &str) -> Body {
        Body::from(format!(
            r#"{{"event_id":"{id}","merchant_id":"{merchant}","user_id":"u","type":"share","ts":1777600800000}}"#
        ))
    }

    #[tokio::test]
    async fn with_keys_every_call_needs_one_of_its_merchant_and_scope() {
        use recur_engine::keys::{Scope, create_key, revoke_key};
        let (dir, _) = state();
        let key = |merchant: &str, scope| {
            create_key(dir.path(), merchant, scope, 1)
                .expect("create key")
                .1
        };
        let (m1_read, m1_write, m1_admin, m2_read) = (
            key("m1", Scope::Read),
            key("m1", Scope::Write),
            key("m1", Scope::Admin),
            key("m2", Scope::Read),
        );
        // Opened after the keys exist (a running server sees new keys within a second).
        let state = AppState::open(
            dir.path().to_path_buf(),
            ApiLimits::default(),
            EventValidator::new(1_780_000_000_000),
        )
        .expect("state");
        let app = router(state);
        let get = |key: Option<&str>, path: &str| {
            let request = Request::get(path);
            match key {
                Some(k) => with_key(request, k),
                None => request,
            }
            .body(Body::empty())
            .expect("request")
        };
        let campaigns = "/v1/merchants/m1/campaigns";
        for (key, status) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("rk_garbage"), StatusCode::UNAUTHORIZED),
            (Some(m2_read.as_str()), StatusCode::FORBIDDEN),
            (Some(m1_read.as_str()), StatusCode::OK),
        ] {
            let (got, body) = call(&app, get(key, campaigns)).await;
            assert_eq!(got, status, "{key:?}: {body}");
            if status != StatusCode::OK {
                assert!(body["error"]["code"].is_string(), "{body}");
            }
        }
        let (status, _) = call(
            &app,
            Request::get(campaigns)
                .header("authorization", "Basic dXNlcjpwYXNz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Another merchant's key learns nothing, not even whether the user exists.
        let (status, body) = call(
            &app,
            get(Some(&m2_read), "/v1/merchants/m1/users/nobody/profile"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!body.to_string().contains("nobody"), "{body}");
        // Creating a campaign takes an admin key.
        let campaign = r#"{"name":"c1","goal":"repurchase","channel":"webhook"}"#;
        let post = |key: &str, path: &str, body: Body| {
            with_key(Request::post(path), key)
                .body(body)
                .expect("request")
        };
        let (status, _) = call(&app, post(&m1_write, campaigns, Body::from(campaign))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = call(&app, post(&m1_admin, campaigns, Body::from(campaign))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // Events: a write key, of the events' own merchant; nothing of a mixed batch is kept.
        let (status, _) = call(&app, post(&m1_read, "/v1/events", events_of("m1", "e1"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = call(&app, post(&m1_write, "/v1/events", events_of("m2", "e1"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = call(&app, post(&m1_write, "/v1/events", events_of("m1", "e1"))).await;
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (StatusCode::OK, Some(1))
        );
        let (status, _) = call(
            &app,
            Request::post("/v1/events")
                .body(events_of("m1", "e2"))
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Health stays open.
        let (status, _) = call(&app, get(None, "/healthz")).await;
        assert_eq!(status, StatusCode::OK);
        // A revoked key stops working within a second.
        let id = recur_engine::keys::list_keys(dir.path(), Some("m1")).expect("list")[0]
            .id
            .clone();
        revoke_key(dir.path(), &id, 2).expect("revoke");
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let (status, _) = call(&app, get(Some(&m1_read), campaigns)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
