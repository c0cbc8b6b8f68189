//! The handlers: thin, they parse, call the engine or ingest, and map the result.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use recur_engine::event::{Channel, EventValidator};
use recur_engine::snapshot::{ListFilter, ServingSnapshot};
use recur_engine::store::EventStore;
use recur_ingest::kafka::EventPublisher;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, check_merchants};
use crate::error::ApiError;
use crate::state::AppState;

/// Items returned when `k` is not given.
const DEFAULT_K: usize = 10;

/// `ok`, or `degraded` (still serving the last good snapshot) when the newest snapshot
/// could not be loaded; `reload_error` says why.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The server and the snapshot it serves", body = crate::schema::Health))
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.snapshot.load();
    let reload = state.reload.load();
    let store_error = state.store_error.load();
    let degraded = reload.error.is_some() || store_error.is_some();
    let mut body = json!({
        "status": if degraded { "degraded" } else { "ok" },
        "snapshot": snapshot.as_ref().map(|s| s.manifest.name.clone()),
    });
    if let Some(error) = &reload.error {
        body["reload_error"] = Value::from(error.clone());
    }
    if let Some(error) = store_error.as_ref() {
        body["store_error"] = Value::from(error.as_str());
    }
    Json(body)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecommendationQuery {
    /// List length, 1 to 100 (default 10); a list holds at most what `recur run --k` kept.
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
    /// The explore list: no item the customer bought and kept.
    #[serde(default)]
    exclude_purchased: bool,
    /// Only items of this category.
    category: Option<String>,
    /// Items skipped from the top (paging), at most 1,000.
    #[serde(default)]
    #[param(minimum = 0, maximum = 1000)]
    offset: usize,
    /// Only items whose current unit price is at least this.
    #[param(minimum = 0)]
    min_price: Option<f64>,
    /// Only items whose current unit price is at most this.
    #[param(minimum = 0)]
    max_price: Option<f64>,
    /// An unknown user's WeChat scene: popular items of that scene first.
    scene: Option<String>,
    /// An unknown user's channel (`mini_program`, …): its popular items next.
    channel: Option<String>,
}

/// Checks a price band: finite, not negative, min not above max.
fn price_band(min: Option<f64>, max: Option<f64>) -> Result<(), ApiError> {
    for (name, value) in [("min_price", min), ("max_price", max)] {
        if let Some(v) = value
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(ApiError::bad_request(
                "bad_price",
                format!("{name} must be a price of 0 or more, got {v}"),
            ));
        }
    }
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(ApiError::bad_request(
            "bad_price",
            format!("min_price {min} is above max_price {max}"),
        ));
    }
    Ok(())
}

/// The deepest page: lists are at most `recur run --k` long, and a larger offset is a bug in
/// the caller, not a request to honour.
const MAX_OFFSET: usize = 1_000;

/// The longest list a request may ask for.
const MAX_K: usize = 100;

/// The snapshot to answer from, and the list length asked for (`k`, default 10, at most
/// [`MAX_K`]; a list holds at most what `recur run --k` kept, 20 by default).
fn snapshot_and_k(
    state: &AppState,
    k: Option<usize>,
) -> Result<(std::sync::Arc<ServingSnapshot>, usize), ApiError> {
    let snapshot = state.snapshot.load_full().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_snapshot",
            "no recommendations yet: run `recur run --data-dir DIR` and the server picks them up",
        )
    })?;
    let k = k.unwrap_or(DEFAULT_K);
    if k == 0 || k > MAX_K {
        return Err(ApiError::bad_request(
            "bad_k",
            format!("k must be between 1 and {MAX_K}, got {k}"),
        ));
    }
    Ok((snapshot, k))
}

/// A customer's top-k items with their reasons.
///
/// Any user id of a customer stitched by unionid gets that customer's list; an unknown user
/// gets popular items (`personalized: false`), of their WeChat `scene` or `channel` when given.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/users/{user_id}/recommendations",
    tag = "recommendations",
    params(
        ("merchant_id" = String, Path, description = "The merchant", example = "m_bakery"),
        ("user_id" = String, Path, description = "Any linked id of the customer", example = "u0000001"),
        RecommendationQuery,
    ),
    responses(
        (status = 200, description = "The list, best first", body = crate::schema::RecommendationList),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn recommendations(
    State(state): State<AppState>,
    Path((merchant_id, user_id)): Path<(String, String)>,
    query: Result<Query<RecommendationQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let (snapshot, k) = snapshot_and_k(&state, query.k)?;
    if query.offset > MAX_OFFSET {
        return Err(ApiError::bad_request(
            "bad_offset",
            format!("offset must be at most {MAX_OFFSET}, got {}", query.offset),
        ));
    }
    price_band(query.min_price, query.max_price)?;
    if let Some(channel) = query.channel.as_deref()
        && Channel::parse(channel).is_none()
    {
        return Err(ApiError::bad_request(
            "bad_channel",
            format!(
                "channel must be one of {}, got {channel:?}",
                Channel::names()
            ),
        ));
    }
    let filter = ListFilter {
        exclude_purchased: query.exclude_purchased,
        category: query.category,
        offset: query.offset,
        min_price: query.min_price,
        max_price: query.max_price,
        scene: query.scene,
        channel: query.channel,
        first_seen_since_ms: None,
    };
    if !snapshot.has_merchant(&merchant_id) {
        return Err(ApiError::not_found(
            "unknown_merchant",
            format!("no data for merchant {merchant_id:?}"),
        ));
    }
    let rules = state
        .list_rules(&merchant_id)
        .map_err(|e| ApiError::internal(&e))?;
    let list = snapshot
        .recommend_view(&merchant_id, &user_id, k, &filter, &rules)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_merchant",
                format!("no data for merchant {merchant_id:?}"),
            )
        })?;
    // The hottest endpoint: the list is borrowed from the snapshot and written straight into
    // its body (see `list_body`).
    let body = crate::list_body::render(&list, &snapshot.manifest.name);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SimilarQuery {
    /// Items, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
}

/// Items most often bought with an item (`bought_together`, with the share of its orders).
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/items/{item_id}/similar",
    tag = "recommendations",
    params(
        ("merchant_id" = String, Path, description = "The merchant", example = "m_bakery"),
        ("item_id" = String, Path, description = "The item", example = "sourdough"),
        SimilarQuery,
    ),
    responses(
        (status = 200, description = "Items in the same orders, best first", body = crate::schema::SimilarItems),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn similar(
    State(state): State<AppState>,
    Path((merchant_id, item_id)): Path<(String, String)>,
    query: Result<Query<SimilarQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let (snapshot, k) = snapshot_and_k(&state, query.k)?;
    let items = snapshot
        .similar(&merchant_id, &item_id, k)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_merchant",
                format!("no data for merchant {merchant_id:?}"),
            )
        })?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_item",
                format!(
                    "merchant {merchant_id:?} has no orders holding {item_id:?} with other items"
                ),
            )
        })?;
    Ok(Json(json!({
        "merchant_id": merchant_id,
        "item_id": item_id,
        "snapshot": snapshot.manifest.name,
        "items": items,
    })))
}

/// Events in, validated like files; durable when the answer is sent.
///
/// NDJSON (one event per line) or a JSON array of events. With keys, a `write` key of the
/// merchant every event names.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(
        description = "Events as in README's event contract",
        content(
            (String = "application/x-ndjson", example = json!("{\"event_id\":\"e1\",\"merchant_id\":\"m_bakery\",\"user_id\":\"u1\",\"type\":\"view\",\"ts\":\"2026-11-01T09:00:00+08:00\",\"item_id\":\"sourdough\"}")),
            (Vec<crate::schema::Event> = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "What was stored; invalid lines with their reasons", body = crate::schema::IngestResult),
        crate::schema::EventErrors,
    ),
    security((), ("merchant_key" = []))
)]
pub(crate) async fn post_events(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller.map(|Extension(c)| c);
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the body is larger than {} bytes; split it into several requests",
                    state.limits.max_body_bytes
                ),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    if let Some(publisher) = &state.publisher {
        return publish_events(publisher, &state.validator, &body, caller.as_ref()).await;
    }
    let batch = recur_ingest::body::parse_body(&body, "http", &state.validator)
        .map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
    check_merchants(
        caller.as_ref(),
        batch.events.iter().map(|e| e.merchant_id.as_str()),
    )?;
    let errors: Vec<Value> = batch
        .rejects
        .iter()
        .map(|r| json!({ "line": r.line, "reason": r.reason }))
        .collect();
    let invalid_only = batch.events.is_empty();
    let n = batch.rejects.len();
    // Even a body with no valid event is recorded under rejected/, so nothing sent is lost.
    let store = state.store_handle();
    let appended = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .append(&batch)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let outcome = match appended {
        Ok(outcome) => {
            state.note_store_result(None);
            outcome
        }
        // ClickHouse down: nothing of the body was stored, and the sender may retry it.
        Err(e) if e.is_transient() => {
            state.note_store_result(Some(e.to_string()));
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the event store does not answer; nothing of this body was stored: send it again later",
            ));
        }
        Err(e) => return Err(ApiError::internal(&e)),
    };
    crate::metrics::count_events(
        outcome.accepted as u64,
        outcome.duplicates as u64,
        outcome.rejected as u64,
    );
    if invalid_only {
        return Err(ApiError::bad_request(
            "no_valid_events",
            format!("none of the {n} events is valid; `details` says why for each line"),
        )
        .with_details(Value::Array(errors)));
    }
    Ok(Json(json!({
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "rejected": outcome.rejected,
        "errors": errors,
    })))
}

/// Kafka mode: valid events are published and acknowledged by the broker before the
/// response; duplicates are dropped later by the consumer, so none are counted here.
async fn publish_events(
    publisher: &EventPublisher,
    validator: &EventValidator,
    body: &[u8],
    caller: Option<&Caller>,
) -> Result<Json<Value>, ApiError> {
    let lines = recur_ingest::body::split_body(body)
        .map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
    let mut valid = Vec::new();
    let mut merchants = Vec::new();
    let mut errors = Vec::new();
    for (line, raw) in &lines {
        match validator.validate(raw) {
            Ok(event) => {
                valid.push(*raw);
                merchants.push(event.merchant_id);
            }
            Err(rejection) => errors.push(json!({ "line": line, "reason": rejection.reason })),
        }
    }
    check_merchants(caller, merchants.iter().map(String::as_str))?;
    if valid.is_empty() {
        return Err(ApiError::bad_request(
            "no_valid_events",
            format!(
                "none of the {} events is valid; `details` says why for each line",
                errors.len()
            ),
        )
        .with_details(Value::Array(errors)));
    }
    let published = publisher.publish(&valid).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            format!("the events were not accepted by Kafka, retry later: {e}"),
        )
    })?;
    crate::metrics::count_events(published as u64, 0, errors.len() as u64);
    Ok(Json(json!({
        "accepted": published,
        "duplicates": 0,
        "rejected": errors.len(),
        "errors": errors,
    })))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see README for the API",
    )
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint; see README for the API")
}
