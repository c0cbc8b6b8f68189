//! The JSON bodies the handlers build, described for the OpenAPI document ([`crate::openapi`]).
//!
//! These types are never constructed: handlers build their bodies as JSON, and schemathesis
//! checks every answer of a running server against these descriptions inside `scripts/test`,
//! so they cannot drift apart unnoticed.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

// ---- Error answers, shared by the paths ----

/// The errors of every `/v1/merchants/{merchant_id}/…` call.
#[derive(utoipa::IntoResponses)]
pub(crate) enum MerchantErrors {
    /// A bad parameter, id or body (`bad_k`, `bad_offset`, `bad_price`, `bad_channel`,
    /// `bad_query`, `bad_id`, `bad_path`, `bad_limit`, `bad_at`, `bad_window`, `bad_rule`,
    /// `bad_name`, `bad_audience`, `bad_campaign`, `bad_body`).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No key, a garbled `Authorization` header, or an unknown or revoked key (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A key of another merchant or of too small a scope (`forbidden`); says nothing of what
    /// the path names.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// `unknown_merchant`, `unknown_user`, `unknown_item`, `unknown_report`,
    /// `unknown_audience`, `not_found`.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// `no_snapshot` before the first `recur run`; `timeout`; `overloaded`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The further errors of creating an audience or a campaign.
#[derive(utoipa::IntoResponses)]
pub(crate) enum CreateErrors {
    /// The name is taken (`audience_exists`, `campaign_exists`).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than 64 KiB (`body_too_large`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

/// The errors of `POST /v1/events`.
#[derive(utoipa::IntoResponses)]
pub(crate) enum EventErrors {
    /// Not one valid event (`no_valid_events`, with a reason per line in `details`), or a
    /// body that is not NDJSON nor a JSON array (`bad_body`).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No key or an unknown one, once keys exist (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Not a write key, or an event of another merchant than the key's (`forbidden`); nothing
    /// of the body is stored.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Larger than `--max-body-bytes` (`body_too_large`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// `broker_unavailable` with `--kafka`; `store_unavailable` when ClickHouse does not answer
    /// (nothing stored: send again); `timeout`; `overloaded`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

// ---- Bodies the handlers build as JSON ----

/// Every error.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": "bad_k", "message": "k must be between 1 and 100, got 500"}}))]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable code scripts can rely on (`bad_k`, `unknown_merchant`, `unauthorized`, …).
    pub code: String,
    /// What is wrong and what to do, for people.
    pub message: String,
    /// Per-line reasons of `no_valid_events`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub details: Option<Value>,
}

/// `GET /healthz`.
#[derive(ToSchema)]
#[schema(example = json!({"status": "ok", "snapshot": "20261101T020000000Z-000042"}))]
pub(crate) struct Health {
    /// `ok`, or `degraded` while the newest snapshot cannot be loaded (the last good one is
    /// served) or the event store (ClickHouse) does not answer.
    #[schema(pattern = "^(ok|degraded)$")]
    pub status: String,
    /// The snapshot being served; null before the first `recur run`.
    pub snapshot: Option<String>,
    /// Why the newest snapshot cannot be loaded.
    pub reload_error: Option<String>,
    /// Why the event store cannot be used (posted events get 503 `store_unavailable`).
    pub store_error: Option<String>,
}

/// One recommended item.
#[derive(ToSchema)]
pub(crate) struct Item {
    pub item_id: String,
    pub score: f64,
    /// Why it is on the list: `due_again`, `bought_before`, `bought_together`, `neighbours`,
    /// `als`, `category_popular`, `popular`, `pinned`, …
    pub reason: String,
    /// The reason in words, for people.
    pub detail: String,
}

/// A customer's list (or popular items for an unknown user).
#[derive(ToSchema)]
#[schema(example = json!({
    "merchant_id": "m_bakery", "user_id": "u0000001", "customer_id": "u0000001",
    "personalized": true, "snapshot": "20261101T020000000Z-000042",
    "items": [{"item_id": "sourdough", "score": 0.82, "reason": "due_again",
               "detail": "bought every ~7 days, last 8 days ago"}]
}))]
pub(crate) struct RecommendationList {
    pub merchant_id: String,
    pub user_id: String,
    /// The customer the list belongs to (the id `user_id` was stitched into, or itself).
    pub customer_id: String,
    /// False for an unknown user, who gets popular items.
    pub personalized: bool,
    /// For an unknown user: whose popular items these are (`scene`, `channel` or `merchant`).
    pub cold_start: Option<String>,
    pub items: Vec<Item>,
    pub snapshot: String,
}

/// Items bought with an item.
#[derive(ToSchema)]
pub(crate) struct SimilarItems {
    pub merchant_id: String,
    pub item_id: String,
    pub snapshot: String,
    pub items: Vec<Item>,
}

/// One event, as files, Kafka and `POST /v1/events` take it (README, "Event contract").
#[derive(ToSchema)]
#[schema(example = json!({"event_id": "m_bakery-u1-00001", "merchant_id": "m_bakery", "user_id": "u1",
    "type": "purchase", "ts": "2026-11-01T09:30:00+08:00", "item_id": "sourdough", "price": 18.5,
    "quantity": 1, "order_id": "o-1001", "channel": "mini_program", "openid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"}))]
pub(crate) struct Event {
    /// The dedup key, unique per merchant.
    #[schema(min_length = 1, max_length = 128)]
    pub event_id: String,
    #[schema(min_length = 1, max_length = 128)]
    pub merchant_id: String,
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: String,
    /// `view`, `search`, `add_to_cart`, `favorite`, `purchase`, `refund`, `share`,
    /// `push_open`, `subscribe`, `not_interested`, `unsubscribe` or `identify`.
    #[schema(example = "purchase")]
    pub r#type: String,
    /// RFC 3339 with an offset, or integer epoch milliseconds; at most 24 h in the future.
    #[schema(value_type = String, example = "2026-11-01T09:30:00+08:00")]
    pub ts: Value,
    /// `mini_program` (default), `micro_store`, `official_account`, `h5`, `offline`.
    pub channel: Option<String>,
    /// Needed by purchases, refunds, views, add-to-carts, favourites and not-interested.
    pub item_id: Option<String>,
    pub category: Option<String>,
    /// Needed by purchases and refunds.
    pub order_id: Option<String>,
    /// Per unit, at least 0; needed by purchases and refunds.
    #[schema(minimum = 0.0)]
    pub price: Option<f64>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: Option<u32>,
    /// The WeChat entry scene (a number or a string).
    #[schema(value_type = Option<String>)]
    pub scene: Option<Value>,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    /// Anything; `search` needs `query`, `subscribe` needs `template_id`, `identify` carries
    /// member attributes.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Value>,
}

/// One rejected line of an intake body.
#[derive(ToSchema)]
pub(crate) struct LineError {
    /// 1-based line (or array element) number.
    pub line: u64,
    pub reason: String,
}

/// What `POST /v1/events` did.
#[derive(ToSchema)]
#[schema(example = json!({"accepted": 2, "duplicates": 0, "rejected": 1,
    "errors": [{"line": 3, "reason": "a view event needs item_id"}]}))]
pub(crate) struct IngestResult {
    /// New events now durable in the store (with `--kafka`: acknowledged by the broker).
    pub accepted: u64,
    /// Events whose (merchant_id, event_id) was already stored.
    pub duplicates: u64,
    /// Invalid lines, recorded under `rejected/`.
    pub rejected: u64,
    pub errors: Vec<LineError>,
}

/// A report of the current snapshot: its parameters, then its rows.
#[derive(ToSchema)]
pub(crate) struct Report {
    pub merchant_id: String,
    /// `retention`, `lifecycle`, `rfm`, `repeat`, `intervals`, `clusters` or `identities`.
    pub report: String,
    pub snapshot: String,
    /// The snapshot's "now" for this merchant, in ms since the epoch.
    pub as_of_ms: Option<i64>,
    /// The merchant's IANA time zone, when set.
    pub time_zone: Option<String>,
    /// The report's rows; their columns depend on the report (README).
    #[schema(value_type = Vec<Object>)]
    pub rows: Value,
}

/// A customer's profile.
#[derive(ToSchema)]
pub(crate) struct ProfileBody {
    pub snapshot: String,
    /// Orders, revenue, RFM, value class, lifecycle, cluster, P(alive), CLV, next order date,
    /// linked ids, member attributes, active hour and recent orders (README).
    #[schema(value_type = Object)]
    pub profile: Value,
}

/// An audience and its size at the last run.
#[derive(ToSchema)]
pub(crate) struct AudienceSummary {
    pub name: String,
    pub description: Option<String>,
    /// The rule as stored (README, "Audiences").
    #[schema(value_type = Object)]
    pub rule: Value,
    pub created_at_ms: i64,
    /// Members at the last `recur run`; null until one ran after it was created.
    pub customers: Option<u64>,
}

#[derive(ToSchema)]
pub(crate) struct AudienceList {
    pub merchant_id: String,
    pub audiences: Vec<AudienceSummary>,
}

#[derive(ToSchema)]
pub(crate) struct AudienceCreated {
    /// The stored definition.
    #[schema(value_type = Object)]
    pub audience: Value,
    /// Always null: members come with the next run.
    #[schema(value_type = Option<u64>)]
    pub customers: Option<u64>,
    pub note: String,
}

/// A campaign with its messages per state.
#[derive(ToSchema)]
pub(crate) struct CampaignSummary {
    /// The definition (`recur campaign show`).
    #[schema(value_type = Object)]
    pub campaign: Value,
    /// Messages per state: `pending`, `held_out`, `delivered`, `failed`, `refused`.
    #[schema(value_type = Object)]
    pub messages: Value,
}

#[derive(ToSchema)]
pub(crate) struct CampaignList {
    pub merchant_id: String,
    pub campaigns: Vec<CampaignSummary>,
}

#[derive(ToSchema)]
pub(crate) struct CampaignCreated {
    #[schema(value_type = Object)]
    pub campaign: Value,
}

/// Decisions of the whole plan.
#[derive(ToSchema)]
pub(crate) struct PlanCounts {
    pub send: u64,
    pub holdout: u64,
    pub skip: u64,
    /// Skips per reason code (`no_consent`, `cap_day`, `low_uplift`, …).
    #[schema(value_type = Object)]
    pub skip_reasons: Value,
}

/// A page of a campaign's plan.
#[derive(ToSchema)]
pub(crate) struct PlanPage {
    pub merchant_id: String,
    pub campaign: String,
    pub snapshot: String,
    pub at_ms: i64,
    /// Lines of the whole plan.
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub counts: PlanCounts,
    /// `{"user_id","decision","reason","items","send_at","channel","template_id","openid"}`
    /// per audience member, as `recur campaign plan` writes them.
    #[schema(value_type = Vec<Object>)]
    pub lines: Value,
}

/// A campaign's measured report (`recur report campaign --format json`).
#[derive(ToSchema)]
#[schema(value_type = Object)]
pub(crate) struct CampaignReport(Value);

/// `GET /v1/whoami`.
#[derive(ToSchema)]
#[schema(example = json!({"open": false, "merchant_id": "m_bakery", "scope": "read", "key_id": "3f9a1c2b7d4e", "merchants": ["m_bakery"]}))]
pub(crate) struct WhoAmI {
    /// True when no key was ever created (the server then listens on loopback only).
    pub open: bool,
    /// The key's merchant; null when open.
    pub merchant_id: Option<String>,
    /// `read`, `write` or `admin` (`admin` when open).
    pub scope: String,
    pub key_id: Option<String>,
    /// The merchants this caller may read: the key's, or, when open, every merchant of the snapshot.
    pub merchants: Vec<String>,
}

/// `GET /v1/merchants/{merchant_id}/summary`.
#[derive(ToSchema)]
pub(crate) struct Summary {
    pub merchant_id: String,
    pub snapshot: String,
    /// The snapshot's "now" for this merchant, ms since the epoch.
    pub as_of_ms: i64,
    pub time_zone: Option<String>,
    /// Users with at least one event.
    pub users: u64,
    /// Users with at least one kept order.
    pub customers: u64,
    /// Customers with two or more kept orders.
    pub repeat_customers: u64,
    /// `repeat_customers / customers`.
    pub repeat_purchase_rate: f64,
    pub orders: u64,
    /// Net of refunds, in the merchant's currency.
    pub revenue: f64,
    pub stitched_user_ids: u64,
    /// The fitted BG/NBD, Pareto/NBD and Gamma-Gamma parameters, when fitted.
    #[schema(value_type = Option<Object>)]
    pub models: Option<Value>,
    /// Clusters with their sizes and descriptions.
    #[schema(value_type = Vec<Object>)]
    pub clusters: Value,
    /// Audiences with their sizes.
    #[schema(value_type = Vec<Object>)]
    pub audiences: Value,
}

/// `GET /v1/merchants/{merchant_id}/audiences/{name}/members`.
#[derive(ToSchema)]
pub(crate) struct AudienceMembers {
    pub merchant_id: String,
    pub audience: String,
    pub snapshot: String,
    /// Members in all.
    pub customers: u64,
    /// The first members by user id.
    pub members: Vec<String>,
}
