//! Analytics endpoints: reports, audiences and customer profiles of one merchant.
//!
//! Reports and profiles come from the in-memory copy of the current snapshot (what the last
//! `recur run` computed): no request reads disk, so a pruned snapshot directory cannot fail
//! one. Audience definitions are stored beside the store and evaluated on the next run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use recur_engine::analytics::audience::{self, AudienceDefinition};
use recur_engine::snapshot::ServingSnapshot;
use recur_engine::snapshot::serving::report_key;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::error::ApiError;
use crate::state::AppState;

fn current(state: &AppState, merchant_id: &str) -> Result<Arc<ServingSnapshot>, ApiError> {
    let snapshot = state.snapshot.load_full().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_snapshot",
            "no analytics yet: run `recur run --data-dir DIR` and the server picks them up",
        )
    })?;
    if snapshot.manifest.merchant(merchant_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_merchant",
            format!(
                "no data for merchant {merchant_id:?} in snapshot {}",
                snapshot.manifest.name
            ),
        ));
    }
    Ok(snapshot)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// `retention` and `repeat`: `week` or `month`; `lifecycle`: `day`, `week` or `month`.
    period: Option<String>,
    /// `retention`: `first_time` (default) or `recurring`.
    mode: Option<String>,
    /// `rfm`: `segments` (default) or `value-class`.
    scheme: Option<String>,
}

fn choose<'a>(
    name: &str,
    given: Option<&'a str>,
    allowed: &[&'a str],
    default: &'a str,
) -> Result<&'a str, ApiError> {
    match given {
        None => Ok(default),
        Some(value) => allowed
            .iter()
            .find(|a| **a == value)
            .copied()
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_query",
                    format!(
                        "{name} must be one of {}, got {value:?}",
                        allowed.join(", ")
                    ),
                )
            }),
    }
}

/// A customer analytics report of the current snapshot.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/reports/{report}",
    tag = "analytics",
    params(
        ("merchant_id" = String, Path, description = "The merchant", example = "m_bakery"),
        ("report" = String, Path, description = "`retention`, `lifecycle`, `rfm`, `repeat`, `intervals`, `clusters` or `identities`", example = "retention"),
        ReportQuery,
    ),
    responses(
        (status = 200, description = "The report's parameters and rows", body = crate::schema::Report),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    Path((merchant_id, kind)): Path<(String, String)>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ReportBody>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let snapshot = current(&state, &merchant_id)?;
    let period = query.period.as_deref();
    // Which stored view answers; it was rendered to JSON when the snapshot was loaded.
    let (params, table, period_kind, mode): (Value, &str, Option<&str>, Option<&str>) = match kind
        .as_str()
    {
        "retention" => {
            let period = choose("period", period, &["week", "month"], "week")?;
            let mode = choose(
                "mode",
                query.mode.as_deref(),
                &["first_time", "recurring"],
                "first_time",
            )?;
            let params = json!({"period": period, "mode": mode, "cohort_event": "purchase", "return_event": "purchase"});
            (params, "retention", Some(period), Some(mode))
        }
        "lifecycle" => {
            let period = choose("period", period, &["day", "week", "month"], "week")?;
            let params = json!({"period": period, "event": "purchase"});
            (params, "lifecycle", Some(period), None)
        }
        "repeat" => {
            let period = choose("period", period, &["week", "month"], "month")?;
            (json!({"period": period}), "repeat", Some(period), None)
        }
        "rfm" => {
            let scheme = choose(
                "scheme",
                query.scheme.as_deref(),
                &["segments", "value-class"],
                "segments",
            )?;
            (json!({"scheme": scheme}), "rfm", None, None)
        }
        "intervals" => (json!({}), "time_between_orders", None, None),
        "clusters" => (json!({}), "clusters", None, None),
        "identities" => (json!({}), "identities", None, None),
        other => {
            return Err(ApiError::not_found(
                "unknown_report",
                format!(
                    "no report {other:?}: use retention, lifecycle, rfm, repeat, intervals, clusters or identities"
                ),
            ));
        }
    };
    let key = if table == "rfm" {
        report_key("rfm", params["scheme"].as_str(), None)
    } else {
        report_key(table, period_kind, mode)
    };
    // A merchant without rows for a view (no stitched ids, say) has an empty one.
    let rows = snapshot
        .report(&merchant_id, &key)
        .unwrap_or_else(|| Arc::from("[]"));
    let rows = serde_json::value::RawValue::from_string(rows.to_string())
        .map_err(|e| ApiError::internal(&e))?;
    let summary = snapshot.manifest.merchant(&merchant_id);
    let body = json!({
        "merchant_id": merchant_id,
        "report": kind,
        "snapshot": snapshot.manifest.name,
        "as_of_ms": summary.map(|s| s.as_of_ms),
        "time_zone": summary.and_then(|s| s.time_zone.clone()),
    });
    let mut head = serde_json::Map::new();
    if let (Value::Object(body), Value::Object(params)) = (body, params) {
        head.extend(body);
        head.extend(params);
    }
    Ok(Json(ReportBody { head, rows }))
}

/// A report response: the header fields, then the pre-rendered rows spliced in as they are.
#[derive(serde::Serialize)]
pub(crate) struct ReportBody {
    #[serde(flatten)]
    head: serde_json::Map<String, Value>,
    rows: Box<serde_json::value::RawValue>,
}

/// A customer's profile: orders, RFM, value class, lifecycle, forecasts, linked ids, recent orders.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/users/{user_id}/profile",
    tag = "analytics",
    params(
        ("merchant_id" = String, Path, description = "The merchant", example = "m_bakery"),
        ("user_id" = String, Path, description = "Any linked id of the customer", example = "u0000001"),
    ),
    responses(
        (status = 200, description = "The profile", body = crate::schema::ProfileBody),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn profile(
    State(state): State<AppState>,
    Path((merchant_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let snapshot = current(&state, &merchant_id)?;
    let profile = snapshot.profile(&merchant_id, &user_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_user",
            format!("merchant {merchant_id:?} has no user {user_id:?}"),
        )
    })?;
    Ok(Json(
        json!({"snapshot": snapshot.manifest.name, "profile": profile}),
    ))
}

/// The merchant's audiences with their size at the last run.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/audiences",
    tag = "analytics",
    params(("merchant_id" = String, Path, description = "The merchant", example = "m_bakery")),
    responses(
        (status = 200, description = "The audiences", body = crate::schema::AudienceList),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn list_audiences(
    State(state): State<AppState>,
    Path(merchant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let data_dir = state.data_dir.clone();
    let m = merchant_id.clone();
    let definitions =
        tokio::task::spawn_blocking(move || audience::load_definitions(&data_dir, &m))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&e))?;
    let snapshot = state.snapshot.load_full();
    let sizes = snapshot
        .as_ref()
        .and_then(|s| s.manifest.merchant(&merchant_id))
        .map(|s| s.audiences.clone())
        .unwrap_or_default();
    let audiences: Vec<Value> = definitions
        .into_iter()
        .map(|d| {
            let customers = sizes.iter().find(|s| s.name == d.name).map(|s| s.customers);
            json!({"name": d.name, "description": d.description, "rule": d.rule, "created_at_ms": d.created_at_ms, "customers": customers})
        })
        .collect();
    Ok(Json(
        json!({"merchant_id": merchant_id, "audiences": audiences}),
    ))
}

/// A new audience.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "lapsed_regulars", "rule": {"and": [{"rfm_segment": ["at_risk", "cant_lose_them"]}, {"not_performed_since": {"event": "purchase", "days": 30}}]}}))]
struct NewAudience {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// The rule (README, "Audiences").
    #[schema(value_type = Object)]
    rule: Box<serde_json::value::RawValue>,
    /// Replace an audience of the same name instead of answering 409.
    #[serde(default)]
    replace: bool,
}

/// Stores an audience (admin key); its members come with the next `recur run`.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant_id}/audiences",
    tag = "analytics",
    params(("merchant_id" = String, Path, description = "The merchant", example = "m_bakery")),
    request_body = NewAudience,
    responses(
        (status = 201, description = "Stored", body = crate::schema::AudienceCreated),
        crate::schema::MerchantErrors,
        crate::schema::CreateErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn create_audience(
    State(state): State<AppState>,
    Path(merchant_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|e| ApiError::bad_request("bad_body", e.body_text()))?;
    let new: NewAudience = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("bad_audience", format!("the body must be {{\"name\", \"rule\", optional \"description\", \"replace\"}}: {e}"))
    })?;
    let rule = audience::parse(new.rule.get())
        .map_err(|e| ApiError::bad_request("bad_rule", e.to_string()))?;
    audience::store::check_name(&new.name)
        .map_err(|e| ApiError::bad_request("bad_name", e.to_string()))?;
    let definition = AudienceDefinition {
        name: new.name,
        description: new.description,
        rule,
        created_at_ms: crate::state::now_ms(),
    };
    let data_dir = state.data_dir.clone();
    let saved = definition.clone();
    let replace = new.replace;
    tokio::task::spawn_blocking(move || {
        audience::save_definition(&data_dir, &merchant_id, saved, replace)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| match e {
        recur_engine::Error::InvalidArgument(message) => {
            ApiError::new(StatusCode::CONFLICT, "audience_exists", message)
        }
        other => ApiError::internal(&other),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"audience": definition, "customers": null, "note": "members are computed by the next `recur run`"}),
        ),
    ))
}

/// A merchant's headline numbers in the current snapshot.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/summary",
    tag = "analytics",
    params(("merchant_id" = String, Path, description = "The merchant", example = "m_bakery")),
    responses(
        (status = 200, description = "Customers, orders, revenue, the repeat-purchase rate, the fitted models, clusters and audience sizes", body = crate::schema::Summary),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn summary(
    State(state): State<AppState>,
    Path(merchant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snapshot = current(&state, &merchant_id)?;
    let summary = snapshot
        .manifest
        .merchant(&merchant_id)
        .ok_or_else(|| ApiError::not_found("unknown_merchant", "no data for this merchant"))?;
    let mut body = serde_json::to_value(summary).map_err(|e| ApiError::internal(&e))?;
    body["repeat_purchase_rate"] = json!(summary.repeat_purchase_rate());
    body["snapshot"] = json!(snapshot.manifest.name);
    Ok(Json(body))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MembersQuery {
    /// Members shown, 1 to 100 (default 20), by user id.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// The first members of an audience (by user id) at the last run, and how many it has.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/audiences/{name}/members",
    tag = "analytics",
    params(
        ("merchant_id" = String, Path, description = "The merchant", example = "m_bakery"),
        ("name" = String, Path, description = "The audience", example = "lapsed_regulars"),
        MembersQuery,
    ),
    responses(
        (status = 200, description = "A preview of the members; `recur export` gives them all", body = crate::schema::AudienceMembers),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn audience_members(
    State(state): State<AppState>,
    Path((merchant_id, name)): Path<(String, String)>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=recur_engine::snapshot::serving::AUDIENCE_PREVIEW).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!(
                "limit must be from 1 to {}, got {limit}",
                recur_engine::snapshot::serving::AUDIENCE_PREVIEW
            ),
        ));
    }
    let snapshot = current(&state, &merchant_id)?;
    let customers = snapshot
        .manifest
        .merchant(&merchant_id)
        .and_then(|s| s.audiences.iter().find(|a| a.name == name))
        .map(|a| a.customers)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_audience",
                format!(
                    "merchant {merchant_id:?} has no audience {name:?} in snapshot {} (a new one gets members with the next run)",
                    snapshot.manifest.name
                ),
            )
        })?;
    let members = snapshot
        .audience_preview(&merchant_id, &name)
        .unwrap_or_default();
    Ok(Json(json!({
        "merchant_id": merchant_id,
        "audience": name,
        "snapshot": snapshot.manifest.name,
        "customers": customers,
        "members": &members[..limit.min(members.len())],
    })))
}
