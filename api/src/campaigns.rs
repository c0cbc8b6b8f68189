//! Campaign endpoints: define and list a merchant's campaigns, page through a plan, read the
//! measured report. Plans and reports read the store and compute with Polars: they run on the
//! blocking pool, never on the async workers.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use recur_engine::campaign::outbox::read_outbox;
use recur_engine::campaign::plan::{SkipReason, plan_named};
use recur_engine::campaign::report::measure;
use recur_engine::campaign::{
    Campaign, Goal, PushChannel, Target, Trigger, create_campaign, load_campaigns,
};
use recur_engine::store::AnyStore;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::{AppState, PlanKey};

/// Plan lines per page, at most.
const MAX_LIMIT: usize = 1_000;
const DEFAULT_LIMIT: usize = 100;
/// A plan asked for without `at` is as of the start of the current minute.
const PLAN_NOW_STEP_MS: i64 = 60_000;

/// Engine errors as API errors: a missing campaign or audience is a 404, a bad argument a
/// 400, a taken name a 409; anything else is ours.
fn engine_error(e: recur_engine::Error) -> ApiError {
    match e {
        recur_engine::Error::NotFound(message) => ApiError::not_found("not_found", message),
        recur_engine::Error::InvalidArgument(message) => {
            ApiError::bad_request("bad_campaign", message)
        }
        recur_engine::Error::Conflict(message) => {
            ApiError::new(StatusCode::CONFLICT, "campaign_exists", message)
        }
        recur_engine::Error::NoSnapshot { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_snapshot",
            "no lists yet: run `recur run --data-dir DIR` and the server picks them up",
        ),
        other => ApiError::internal(&other),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> recur_engine::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(engine_error)
}

/// The merchant's campaigns with their messages per state.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/campaigns",
    tag = "campaigns",
    params(("merchant_id" = String, Path, description = "The merchant", example = "m_bakery")),
    responses(
        (status = 200, description = "The campaigns", body = crate::schema::CampaignList),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn list_campaigns(
    State(state): State<AppState>,
    Path(merchant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let data_dir = state.data_dir.clone();
    let m = merchant_id.clone();
    let (campaigns, outbox) =
        blocking(move || Ok((load_campaigns(&data_dir, &m)?, read_outbox(&data_dir, &m)?))).await?;
    let listed: Vec<Value> = campaigns
        .into_iter()
        .map(|c| {
            let mut messages = std::collections::BTreeMap::<&str, u64>::new();
            for entry in outbox.of_campaign(&c.name) {
                *messages.entry(entry.status.as_str()).or_default() += 1;
            }
            json!({"campaign": c, "messages": messages})
        })
        .collect();
    Ok(Json(
        json!({"merchant_id": merchant_id, "campaigns": listed}),
    ))
}

/// A new campaign, as `recur campaign create` takes it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "winback_nov", "goal": "winback", "channel": "webhook", "audience": "lapsed_regulars", "k": 3, "holdout": 0.1}))]
struct NewCampaign {
    name: String,
    /// `repurchase`, `winback`, `cross_sell` or `new_items`.
    goal: String,
    /// `subscribe_message` (needs `template_id`) or `webhook`.
    channel: String,
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    k: Option<u32>,
    #[serde(default)]
    holdout: Option<f64>,
    /// A trigger instead of a one-off send (README, "Push campaigns").
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    trigger: Option<Box<serde_json::value::RawValue>>,
    /// `{"uplift": {"share": 0.5}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    target: Option<Target>,
}

/// Stores a campaign (admin key).
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant_id}/campaigns",
    tag = "campaigns",
    params(("merchant_id" = String, Path, description = "The merchant", example = "m_bakery")),
    request_body = NewCampaign,
    responses(
        (status = 201, description = "Stored", body = crate::schema::CampaignCreated),
        crate::schema::MerchantErrors,
        crate::schema::CreateErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(merchant_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|e| ApiError::bad_request("bad_body", e.body_text()))?;
    let new: NewCampaign = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "bad_campaign",
            format!(
                "the body must be {{\"name\", \"goal\", \"channel\", optional \"template_id\", \"audience\", \"k\", \"holdout\", \"trigger\", \"target\"}}: {e}"
            ),
        )
    })?;
    let bad = |e: recur_engine::Error| ApiError::bad_request("bad_campaign", e.to_string());
    let campaign = Campaign {
        name: new.name,
        audience: new.audience,
        goal: Goal::parse(&new.goal).map_err(bad)?,
        k: new.k.unwrap_or(3),
        channel: PushChannel::parse(&new.channel).map_err(bad)?,
        template_id: new.template_id,
        holdout: new.holdout.unwrap_or(0.1),
        trigger: new
            .trigger
            .map(|t| Trigger::from_json(t.get()))
            .transpose()
            .map_err(bad)?,
        target: new.target,
        created_at_ms: crate::state::now_ms(),
    };
    let data_dir = state.data_dir.clone();
    let saved = campaign.clone();
    blocking(move || create_campaign(&data_dir, &merchant_id, saved)).await?;
    Ok((StatusCode::CREATED, Json(json!({"campaign": campaign}))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PlanQuery {
    /// Lines skipped (paging).
    #[serde(default)]
    #[param(minimum = 0)]
    offset: usize,
    /// Lines per page, 1 to 1,000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The plan's "now", RFC 3339 with an offset; default the start of the current minute.
    /// A plan is computed once and served again for a minute, so pages agree.
    #[serde(default)]
    at: Option<String>,
}

/// A page of the campaign's plan: one line per audience member, as `recur campaign plan` writes it.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/campaigns/{name}/plan",
    tag = "campaigns",
    params(
        ("merchant_id" = String, Path, description = "The merchant", example = "m_bakery"),
        ("name" = String, Path, description = "The campaign", example = "winback_nov"),
        PlanQuery,
    ),
    responses(
        (status = 200, description = "The page and the whole plan's counts", body = crate::schema::PlanPage),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn plan(
    State(state): State<AppState>,
    Path((merchant_id, name)): Path<(String, String)>,
    query: Result<Query<PlanQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit must be from 1 to {MAX_LIMIT}, got {limit}"),
        ));
    }
    let at_ms = match query.at.as_deref() {
        // The current minute: pages read one plan, computed once (see `PlanCache`).
        None => crate::state::now_ms() / PLAN_NOW_STEP_MS * PLAN_NOW_STEP_MS,
        Some(text) => chrono_rfc3339(text).ok_or_else(|| {
            ApiError::bad_request(
                "bad_at",
                format!("at must be RFC 3339 with an offset, e.g. 2026-11-01T10:00:00+08:00; got {text:?}"),
            )
        })?,
    };
    let snapshot = state.snapshot.load_full().ok_or_else(|| {
        engine_error(recur_engine::Error::NoSnapshot {
            data_dir: state.data_dir.to_path_buf(),
        })
    })?;
    let key = PlanKey {
        merchant_id: merchant_id.clone(),
        campaign: name.clone(),
        snapshot: snapshot.manifest.name.clone(),
        at_ms,
    };
    let plan = match state.plans.get(&key) {
        Some(plan) => plan,
        None => {
            let data_dir = state.data_dir.clone();
            let choice = Arc::clone(&state.store_choice);
            let (m, n) = (merchant_id.clone(), name.clone());
            let plan = Arc::new(
                blocking(move || {
                    // A reader of its own: a plan of a large merchant takes seconds, and the
                    // server's store handle is what `POST /v1/events` appends through.
                    let mut store = AnyStore::open(&choice, &data_dir)?;
                    plan_named(&data_dir, &snapshot, &mut store, &m, &n, at_ms)
                })
                .await?,
            );
            state.plans.insert(key, Arc::clone(&plan));
            plan
        }
    };
    let (decisions, reasons) = plan.counts();
    let skipped: serde_json::Map<String, Value> = SkipReason::ALL
        .iter()
        .filter_map(|r| Some((r.as_str().to_owned(), json!(reasons.get(r)?))))
        .collect();
    let count = |d| decisions.get(&d).copied().unwrap_or(0);
    use recur_engine::campaign::plan::Decision;
    let lines: Vec<_> = plan.lines.iter().skip(query.offset).take(limit).collect();
    Ok(Json(json!({
        "merchant_id": merchant_id,
        "campaign": name,
        "snapshot": plan.snapshot,
        "at_ms": plan.at_ms,
        "total": plan.lines.len(),
        "offset": query.offset,
        "limit": limit,
        "counts": {"send": count(Decision::Send), "holdout": count(Decision::Holdout), "skip": count(Decision::Skip), "skip_reasons": skipped},
        "lines": lines,
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// Days after each delivery (or holdout) a purchase counts, 1 to 365 (default 7).
    #[serde(default = "default_window")]
    #[param(minimum = 1, maximum = 365)]
    window_days: u32,
}

fn default_window() -> u32 {
    7
}

/// The campaign's report: treated against holdout, the lift and its interval.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/campaigns/{name}/report",
    tag = "campaigns",
    params(
        ("merchant_id" = String, Path, description = "The merchant", example = "m_bakery"),
        ("name" = String, Path, description = "The campaign", example = "winback_nov"),
        ReportQuery,
    ),
    responses(
        (status = 200, description = "The report, as `recur report campaign --format json` prints it", body = crate::schema::CampaignReport),
        crate::schema::MerchantErrors,
    ),
    security(("merchant_key" = []))
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    Path((merchant_id, name)): Path<(String, String)>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    if !(1..=365).contains(&query.window_days) {
        return Err(ApiError::bad_request(
            "bad_window",
            format!(
                "window_days must be from 1 to 365, got {}",
                query.window_days
            ),
        ));
    }
    let data_dir = state.data_dir.clone();
    let choice = Arc::clone(&state.store_choice);
    let report = blocking(move || {
        recur_engine::campaign::find_campaign(&data_dir, &merchant_id, &name)?;
        // A reader of its own, as for plans: appends never wait for a report.
        let mut store = AnyStore::open(&choice, &data_dir)?;
        measure(
            &data_dir,
            &mut store,
            &merchant_id,
            &name,
            query.window_days,
        )
    })
    .await?;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| ApiError::internal(&e))?,
    ))
}

fn chrono_rfc3339(text: &str) -> Option<i64> {
    recur_engine::analytics::period::parse_instant(text)
}
