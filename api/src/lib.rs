//! Recur's HTTP API: recommendations from the in-memory snapshot, and event intake.
//!
//! [`router`] builds the whole app, so tests drive it with `tower::ServiceExt::oneshot`
//! without a socket. To add an endpoint: a handler in `routes.rs`, a line in [`router`].

mod analytics;
mod assets;
mod auth;
mod campaigns;
mod error;
mod guard;
mod list_body;
mod metrics;
mod openapi;
mod routes;
mod schema;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

pub use error::ApiError;
pub use metrics::KafkaLagWatch;
pub use state::{ApiLimits, AppState};

/// The whole application.
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    guarded(routes(state), limits)
}

/// `app` behind the shared guards: metrics, the concurrency limit, the timeout and the panic
/// catcher ([`guard`]), applied once to every route.
fn guarded(app: Router, limits: ApiLimits) -> Router {
    metrics::handle();
    app.layer(guard::GuardLayer::new(
        limits.max_concurrent_requests,
        limits.request_timeout,
    ))
}

/// Every endpoint, without the guards.
fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/whoami", get(auth::whoami))
        .route("/docs", get(openapi::docs))
        .route("/docs/rapidoc-min.js", get(openapi::rapidoc))
        .route("/", get(assets::index))
        .route("/ui/app.js", get(assets::app_js))
        .route("/ui/app.css", get(assets::app_css))
        .route("/ui/echarts.min.js", get(assets::echarts))
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
        .method_not_allowed_fallback(routes::method_not_allowed)
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
            "/v1/merchants/{merchant_id}/audiences/{name}/members",
            get(analytics::audience_members),
        )
        .route(
            "/v1/merchants/{merchant_id}/summary",
            get(analytics::summary),
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
        .layer(DefaultBodyLimit::max(state.limits.max_admin_body_bytes))
        .route_layer(auth::MerchantKeyLayer(state))
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
    use axum::http::{Method, Request, StatusCode};
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
        let (status, bytes) = call_raw(app, request).await;
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    async fn call_raw(app: &Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, bytes.to_vec())
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
        let limits = state.limits;
        let boom = |Path(id): Path<String>| async move {
            let ids: Vec<&str> = Vec::new();
            // A handler bug: indexing past the end.
            ids[id.len()].to_owned()
        };
        let app = guarded(routes(state).route("/boom/{id}", get(boom)), limits);
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

    /// A state serving a snapshot of merchant m1 (three customers who bought item a).
    async fn served() -> (tempfile::TempDir, AppState) {
        let (dir, open_state) = state();
        // A served snapshot of merchant m1, so requests reach the handlers' own checks.
        let purchases: String = (1..=3)
            .map(|i| {
                format!(
                    "{{\"event_id\":\"p{i}\",\"merchant_id\":\"m1\",\"user_id\":\"u{i}\",\"type\":\"purchase\",\"ts\":177760080000{i},\"item_id\":\"a\",\"category\":\"c\",\"price\":3,\"order_id\":\"o{i}\"}}\n"
                )
            })
            .collect();
        let (status, body) = call(
            &router(open_state.clone()),
            Request::post("/v1/events")
                .body(Body::from(purchases))
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (runner, data_dir) = (open_state.clone(), dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            recur_engine::jobs::run_all(
                &mut *runner.store(),
                &data_dir,
                recur_engine::jobs::RunOptions::default(),
                &mut |_, _, _| {},
            )
        })
        .await
        .expect("join")
        .expect("run");
        assert_eq!(open_state.reload_if_newer().await, Ok(true));
        (dir, open_state)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_count_requests_by_route_and_events_by_outcome_without_ids() {
        let (_dir, state) = served().await;
        let app = router(state);
        let (status, _) = call(
            &app,
            Request::get("/v1/merchants/m1/users/u1/recommendations")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, bytes) = call_raw(
            &app,
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(bytes).expect("text");
        for expected in [
            r#"recur_http_requests_total{route="/v1/merchants/{merchant_id}/users/{user_id}/recommendations",method="GET",status="200"}"#,
            r#"recur_http_request_duration_seconds_bucket{route="/v1/merchants/{merchant_id}/users/{user_id}/recommendations",method="GET",status="200",le="0.001"}"#,
            r#"recur_events_total{outcome="accepted"}"#,
            "recur_snapshot_age_seconds ",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert!(
            !text.contains("\"m1\"") && !text.contains("u1"),
            "ids leak:\n{text}"
        );
    }

    /// A request of the malformed corpus: method, path, headers, body.
    type Case = (Method, String, Vec<(&'static str, String)>, Vec<u8>);

    // Multi-threaded, as the server runs: Polars (the run and the snapshot load) blocks in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_requests_get_a_4xx_and_a_json_error_never_a_5xx() {
        let (dir, open_state) = served().await;
        let long_id = "u".repeat(300);
        let unicode = "%E4%BD%A0%E5%A5%BD%F0%9F%8D%9E";
        let mut cases: Vec<Case> =
            vec![
            (Method::POST, "/v1/events".into(), vec![], b"{".to_vec()),
            (Method::POST, "/v1/events".into(), vec![], b"[1, 2, \"x\"]".to_vec()),
            (Method::POST, "/v1/events".into(), vec![], vec![0xff, 0xfe, 0x00]),
            (
                Method::POST,
                "/v1/events".into(),
                vec![("content-type", "text/html".into())],
                b"<html>".to_vec(),
            ),
            (
                Method::POST,
                "/v1/merchants/m1/campaigns".into(),
                vec![("content-type", "application/json".into())],
                br#"{"name":"c","goal":"repurchase","channel":"webhook","k":"three"}"#.to_vec(),
            ),
            (
                Method::POST,
                "/v1/merchants/m1/campaigns".into(),
                vec![],
                br#"{"name":"c","goal":"repurchase","channel":"webhook","k":-1,"holdout":1e308}"#
                    .to_vec(),
            ),
            (
                Method::POST,
                "/v1/merchants/m1/audiences".into(),
                vec![],
                vec![b'x'; 100 << 10],
            ),
            (
                Method::DELETE,
                "/v1/merchants/m1/audiences".into(),
                vec![],
                vec![],
            ),
            (Method::GET, "/v1/nothing/here".into(), vec![], vec![]),
        ];
        for query in [
            "k=99999999999999999999",
            "k=-1",
            "k=abc",
            "offset=-5",
            "offset=1000000000",
            "min_price=-3",
            "min_price=5&max_price=1",
            "channel=%00",
        ] {
            cases.push((
                Method::GET,
                format!("/v1/merchants/m1/users/u1/recommendations?{query}"),
                vec![],
                vec![],
            ));
        }
        for path in [
            format!("/v1/merchants/m1/users/{long_id}/recommendations"),
            format!("/v1/merchants/{unicode}/users/{unicode}/profile"),
            "/v1/merchants/..%2F..%2Fetc/users/x/profile".to_owned(),
            "/v1/merchants/m1/campaigns/..%2F..%2Fkeys/plan".to_owned(),
            "/v1/merchants/m1/users/%FF%FE/recommendations".to_owned(),
            "/v1/merchants/m1/users/a%00b/profile".to_owned(),
            "/v1/merchants/m1/reports/%2E%2E".to_owned(),
            "/v1/merchants/m1/campaigns/x/report?window_days=-1".to_owned(),
            "/v1/merchants/m1/campaigns/x/plan?limit=0&offset=-1".to_owned(),
        ] {
            cases.push((Method::GET, path, vec![], vec![]));
        }
        let check = |app: Router, cases: Vec<Case>| async move {
            for (method, path, headers, body) in cases {
                let mut request = Request::builder().method(method.clone()).uri(&path);
                for (name, value) in &headers {
                    request = request.header(*name, value);
                }
                let (status, bytes) =
                    call_raw(&app, request.body(Body::from(body)).expect("request")).await;
                assert!(
                    status.is_client_error(),
                    "{method} {path}: {status} {}",
                    String::from_utf8_lossy(&bytes)
                );
                let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "{method} {path}: not JSON ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                });
                assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
            }
        };
        check(router(open_state), cases).await;

        // With keys: missing, garbage and wrong-scheme Authorization headers.
        recur_engine::keys::create_key(dir.path(), "m1", recur_engine::keys::Scope::Read, 1)
            .expect("key");
        let keyed = AppState::open(
            dir.path().to_path_buf(),
            ApiLimits::default(),
            EventValidator::new(1_780_000_000_000),
        )
        .expect("state");
        let path = "/v1/merchants/m1/users/u1/recommendations".to_owned();
        let auth_cases = [
            "",
            "Bearer",
            "Bearer ",
            "Bearer rk_",
            "Bearer rk_x_y",
            "Token abc",
            "Bearer rk_00_",
        ]
        .into_iter()
        .map(|h| {
            let headers = if h.is_empty() {
                vec![]
            } else {
                vec![("authorization", h.to_owned())]
            };
            (Method::GET, path.clone(), headers, Vec::new())
        })
        .collect();
        check(router(keyed), auth_cases).await;
    }
}
