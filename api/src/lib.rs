//! Recur's HTTP API: recommendations from the in-memory snapshot, and event intake.
//!
//! [`router`] builds the whole app, so tests drive it with `tower::ServiceExt::oneshot`
//! without a socket. To add an endpoint: a handler in `routes.rs`, a line in [`router`].

mod analytics;
mod error;
mod routes;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;
pub use state::{ApiLimits, AppState};

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route(
            "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
            get(routes::recommendations),
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
            "/v1/events",
            post(routes::post_events).layer(DefaultBodyLimit::max(state.limits.max_body_bytes)),
        )
        .fallback(routes::not_found)
        .with_state(state)
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
