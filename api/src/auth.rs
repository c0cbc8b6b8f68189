//! Bearer keys: every `/v1/merchants/{m}/…` call needs a key of merchant m (reads a `read` key,
//! changes an `admin` key), and `POST /v1/events` a `write` key whose merchant every event must
//! be of. No key or an unknown one is a 401; a key of another merchant or of too small a scope a
//! 403 that says nothing of what the path names. A data directory where no key was ever
//! created runs open (and `recur serve` then binds loopback only).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::Either;
use recur_engine::keys::{ApiKey, Scope};
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::state::AppState;

/// The key a request was made with (absent when the API runs open).
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Arc<ApiKey>);

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// The key of `request`'s `Authorization: Bearer` header, checked against the key ring;
/// `Ok(None)` when the API runs open.
fn caller(
    state: &AppState,
    request: &Request,
    needed: Scope,
) -> Result<Option<Arc<ApiKey>>, ApiError> {
    let ring = state.keys();
    if ring.is_open() {
        return Ok(None);
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            unauthorized(
                "this API needs `Authorization: Bearer <key>`; a merchant's key comes from `recur keys create`",
            )
        })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
    let key = ring
        .authenticate(token)
        .ok_or_else(|| unauthorized("unknown or revoked key"))?;
    if key.scope < needed {
        return Err(forbidden(&format!(
            "this needs a key of scope {} or above; this key is {}",
            needed.as_str(),
            key.scope.as_str()
        )));
    }
    Ok(Some(Arc::clone(key)))
}

/// The guard of the `/v1/merchants/{merchant_id}/…` routes, as a layer for `route_layer`.
#[derive(Clone)]
pub(crate) struct MerchantKeyLayer(pub(crate) AppState);

impl<S> Layer<S> for MerchantKeyLayer {
    type Service = MerchantKey<S>;

    fn layer(&self, inner: S) -> MerchantKey<S> {
        MerchantKey {
            inner,
            state: self.0.clone(),
        }
    }
}

/// Guards the `/v1/merchants/{merchant_id}/…` routes. The check is synchronous, so this is a
/// plain service, not `from_fn` middleware: a refused request is answered at once and an
/// admitted one goes straight to its handler, without the boxed future, the boxed copy of the
/// route and the `Next` that middleware costs on every call of the hottest endpoint.
#[derive(Clone)]
pub(crate) struct MerchantKey<S> {
    inner: S,
    state: AppState,
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
        match admit(&self.state, request) {
            Ok(request) => Either::Right(self.inner.call(request)),
            Err(refusal) => Either::Left(ready(Ok(refusal.into_response()))),
        }
    }
}

/// `request` back if its key may call its merchant's route, else why not.
fn admit(state: &AppState, request: Request) -> Result<Request, ApiError> {
    // A path that does not decode, or names ids the store could never hold, is refused
    // before anything else (as JSON, like every error). The extractor only reads what the
    // router stored, so it is ready at once.
    let (mut parts, body) = request.into_parts();
    let params = match RawPathParams::from_request_parts(&mut parts, &()).now_or_never() {
        Some(Ok(params)) => params,
        Some(Err(e)) => {
            return Err(ApiError::bad_request("bad_path", e.body_text()));
        }
        None => {
            return Err(ApiError::internal(&"the path parameters were not ready"));
        }
    };
    let request = Request::from_parts(parts, body);
    let mut merchant_id = None;
    for (name, value) in &params {
        if let Err(problem) = recur_engine::event::check_id(name, value) {
            return Err(ApiError::bad_request("bad_id", problem));
        }
        if name == "merchant_id" {
            merchant_id = Some(value);
        }
    }
    let needed = if request.method() == Method::GET || request.method() == Method::HEAD {
        Scope::Read
    } else {
        Scope::Admin
    };
    match caller(state, &request, needed) {
        Ok(None) => Ok(request),
        // No handler behind this guard asks who called (the path names the merchant,
        // checked here), so the key is not put into the request.
        Ok(Some(key)) if merchant_id == Some(key.merchant_id.as_str()) => Ok(request),
        Ok(Some(_)) => Err(forbidden("this key is not for this merchant")),
        Err(e) => Err(e),
    }
}

/// Guards `POST /v1/events`: a `write` key, whose merchant the handler checks every event of.
pub(crate) async fn events_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match caller(&state, &request, Scope::Write) {
        Ok(None) => {}
        Ok(Some(key)) => {
            request.extensions_mut().insert(Caller(key));
        }
        Err(e) => return e.into_response(),
    }
    next.run(request).await
}

/// Refuses a batch with an event of another merchant than the caller's key (nothing of it is
/// stored).
pub(crate) fn check_merchants<'a>(
    caller: Option<&Caller>,
    mut merchants: impl Iterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let Some(Caller(key)) = caller else {
        return Ok(());
    };
    match merchants.find(|m| *m != key.merchant_id) {
        None => Ok(()),
        Some(_) => Err(forbidden(&format!(
            "this key posts events of merchant {} only; nothing of this batch was stored",
            key.merchant_id
        ))),
    }
}

/// Whose key a request carries: the dashboard signs in with it. With keys, only the key's own
/// merchant is named; a server running open lists the merchants of its snapshot.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "operations",
    responses(
        (status = 200, description = "The key's merchant and scope, or the open server's merchants", body = crate::schema::WhoAmI),
        (status = 401, description = "No key, a garbled header, or an unknown or revoked key (`unauthorized`)", body = crate::schema::ErrorBody),
    ),
    security((), ("merchant_key" = []))
)]
pub(crate) async fn whoami(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(match caller(&state, &request, Scope::Read)? {
        Some(key) => serde_json::json!({
            "open": false,
            "merchant_id": key.merchant_id,
            "scope": key.scope.as_str(),
            "key_id": key.id,
            "merchants": [key.merchant_id],
        }),
        None => {
            let merchants: Vec<String> = state
                .snapshot
                .load()
                .as_ref()
                .map(|s| s.merchant_ids().into_iter().map(str::to_owned).collect())
                .unwrap_or_default();
            serde_json::json!({
                "open": true,
                "merchant_id": null,
                "scope": "admin",
                "key_id": null,
                "merchants": merchants,
            })
        }
    }))
}
