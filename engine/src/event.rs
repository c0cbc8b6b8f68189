//! The event contract: parses one NDJSON line into a validated [`Event`], or says exactly why not.
//!
//! Everything that enters Recur, from a file, HTTP or Kafka, passes through [`EventValidator`],
//! so the rest of the engine never re-checks a field. The rules are documented in README
//! ("Event contract") and every rejection reason names the field and the offending value.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest accepted event, in bytes of its JSON text.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Longest accepted id (event, merchant, user, item, order, openid, unionid), in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// How far in the future an event's timestamp may lie, to absorb clock skew on phones.
pub const MAX_FUTURE_SKEW_MS: i64 = 24 * 60 * 60 * 1000;
/// Timestamps before this are surely a unit mistake (seconds sent as milliseconds).
const EARLIEST_TS_MS: i64 = 946_684_800_000; // 2000-01-01T00:00:00Z
/// The default highest unit price accepted; above it a price is surely a unit or parsing
/// mistake (cents sent as yuan, a serial number in the price field). `--max-price` changes it.
pub const DEFAULT_MAX_PRICE: f64 = 100_000_000.0;
/// The highest quantity of one line: bounds a line's amount so money sums stay exact in
/// integer cents (see `jobs::purchases`).
pub const MAX_QUANTITY: i64 = 1_000_000;

/// What a customer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    View,
    Search,
    AddToCart,
    Favorite,
    Purchase,
    Refund,
    Share,
    PushOpen,
    Subscribe,
    /// The customer dismissed an item ("not interested"): it is not recommended to them again
    /// until they buy it.
    NotInterested,
    /// The customer opted out of pushes: of one subscription message template
    /// (`properties.template_id`) or, without it, of all; honoured from its time on.
    Unsubscribe,
    /// Member attributes (`properties.birthday` as `MM-DD`, `member_level`, `points`, `tags`):
    /// the latest value of each wins.
    Identify,
}

impl EventType {
    pub const ALL: [Self; 12] = [
        Self::View,
        Self::Search,
        Self::AddToCart,
        Self::Favorite,
        Self::Purchase,
        Self::Refund,
        Self::Share,
        Self::PushOpen,
        Self::Subscribe,
        Self::NotInterested,
        Self::Unsubscribe,
        Self::Identify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Search => "search",
            Self::AddToCart => "add_to_cart",
            Self::Favorite => "favorite",
            Self::Purchase => "purchase",
            Self::Refund => "refund",
            Self::Share => "share",
            Self::PushOpen => "push_open",
            Self::Subscribe => "subscribe",
            Self::NotInterested => "not_interested",
            Self::Unsubscribe => "unsubscribe",
            Self::Identify => "identify",
        }
    }

    /// Every type's name, comma-separated, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    fn needs_item(self) -> bool {
        matches!(
            self,
            Self::View
                | Self::AddToCart
                | Self::Favorite
                | Self::Purchase
                | Self::Refund
                | Self::NotInterested
        )
    }

    fn is_money_movement(self) -> bool {
        matches!(self, Self::Purchase | Self::Refund)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Channel {
    #[default]
    MiniProgram,
    MicroStore,
    OfficialAccount,
    H5,
    Offline,
}

impl Channel {
    pub const ALL: [Self; 5] = [
        Self::MiniProgram,
        Self::MicroStore,
        Self::OfficialAccount,
        Self::H5,
        Self::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MiniProgram => "mini_program",
            Self::MicroStore => "micro_store",
            Self::OfficialAccount => "official_account",
            Self::H5 => "h5",
            Self::Offline => "offline",
        }
    }

    /// Every type's name, comma-separated, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// A validated event. Field invariants (ids non-empty and short, price >= 0, quantity >= 1,
/// type-specific fields present) hold for every value of this type.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub merchant_id: String,
    pub user_id: String,
    pub event_type: EventType,
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: i64,
    pub channel: Channel,
    pub item_id: Option<String>,
    pub category: Option<String>,
    pub order_id: Option<String>,
    pub price: Option<f64>,
    pub quantity: u32,
    pub scene: Option<String>,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    /// The `properties` object as compact JSON text.
    pub properties: Option<String>,
}

impl Event {
    /// The month partition (`YYYY-MM`, UTC) this event is stored under.
    pub fn month(&self) -> String {
        month_of(self.ts_ms)
    }
}

/// The UTC month of a timestamp as one number (`year * 12 + month - 1`): what partitions
/// compare, without formatting text for every event.
pub fn month_number(ts_ms: i64) -> i32 {
    use chrono::Datelike;
    DateTime::from_timestamp_millis(ts_ms).map_or(0, |t| t.year() * 12 + t.month0() as i32)
}

/// `YYYY-MM` of a UTC timestamp in milliseconds.
pub fn month_of(ts_ms: i64) -> String {
    DateTime::from_timestamp_millis(ts_ms)
        .map_or_else(|| "0000-00".to_owned(), |t| t.format("%Y-%m").to_string())
}

/// The wire form: every field optional so that missing ones get our own message,
/// unknown top-level fields rejected so typos surface.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<'a> {
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    merchant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    category: Option<Cow<'a, str>>,
    #[serde(borrow)]
    order_id: Option<Cow<'a, str>>,
    price: Option<f64>,
    quantity: Option<i64>,
    #[serde(borrow)]
    scene: Option<&'a RawValue>,
    #[serde(borrow)]
    openid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    unionid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
}

/// The fields of `properties` that some event types require.
#[derive(Deserialize, Default)]
struct KnownProperties<'a> {
    #[serde(borrow, default)]
    query: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    template_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    birthday: Option<Cow<'a, str>>,
}

/// Why a line was not accepted; the text is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Where "now" comes from when judging whether a timestamp lies too far in the future.
///
/// A long-running consumer or server must read it for every batch: a "now" taken once at
/// start-up would, after a day of uptime, reject every fresh event as future-dated.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock of this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that stands still until told to move: for tests, and for validating historic
/// data against a chosen "now".
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }

    pub fn advance(&self, by_ms: i64) {
        self.0.fetch_add(by_ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Validates raw lines against the contract. "Now" is read from its clock on every call, so
/// one validator serves a process for as long as it runs.
#[derive(Debug, Clone)]
pub struct EventValidator {
    clock: Arc<dyn Clock>,
    max_price: f64,
}

impl EventValidator {
    /// A validator that judges future timestamps against a fixed `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self::with_clock(Arc::new(ManualClock::new(now_ms)))
    }

    /// A validator that judges future timestamps against the wall clock, read at every call.
    pub fn system() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A validator that asks `clock` for "now" at every call.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            max_price: DEFAULT_MAX_PRICE,
        }
    }

    /// Refuses unit prices above `max_price` (default [`DEFAULT_MAX_PRICE`]).
    #[must_use]
    pub fn with_max_price(mut self, max_price: f64) -> Self {
        self.max_price = max_price;
        self
    }

    /// The highest unit price accepted.
    pub fn max_price(&self) -> f64 {
        self.max_price
    }

    /// Parses and validates one event. All problems found are reported together, `; `-separated.
    pub fn validate(&self, line: &[u8]) -> Result<Event, Rejection> {
        if line.len() > MAX_EVENT_BYTES {
            return Err(reject(format!(
                "event is {} bytes; the limit is {MAX_EVENT_BYTES}",
                line.len()
            )));
        }
        let text = std::str::from_utf8(line).map_err(|e| {
            reject(format!(
                "line is not valid UTF-8 (byte {})",
                e.valid_up_to()
            ))
        })?;
        let wire: WireEvent<'_> =
            serde_json::from_str(text).map_err(|e| reject(describe_json_error(&e)))?;
        let mut problems = Vec::new();
        let now_ms = self.clock.now_ms();
        let event = self.check(wire, now_ms, &mut problems);
        match event {
            Some(event) if problems.is_empty() => Ok(event),
            _ => Err(reject(problems.join("; "))),
        }
    }

    fn check(&self, wire: WireEvent<'_>, now_ms: i64, problems: &mut Vec<String>) -> Option<Event> {
        let event_id = required_id("event_id", wire.event_id, problems);
        let merchant_id = required_id("merchant_id", wire.merchant_id, problems);
        let user_id = required_id("user_id", wire.user_id, problems);
        let event_type = match wire.event_type.as_deref() {
            None => {
                problems.push("missing required field `type`".to_owned());
                None
            }
            Some(t) => EventType::parse(t).or_else(|| {
                problems.push(format!(
                    "type must be one of {}; got {t:?}",
                    EventType::names()
                ));
                None
            }),
        };
        let ts_ms = match wire.ts {
            None => {
                problems.push("missing required field `ts`".to_owned());
                None
            }
            Some(raw) => parse_ts(raw.get(), now_ms)
                .map_err(|p| problems.push(p))
                .ok(),
        };
        let channel = match wire.channel.as_deref() {
            None => Some(Channel::default()),
            Some(c) => Channel::parse(c).or_else(|| {
                problems.push(format!(
                    "channel must be one of mini_program, micro_store, official_account, h5, offline; got {c:?}"
                ));
                None
            }),
        };
        let has_item = wire.item_id.is_some();
        let has_order = wire.order_id.is_some();
        let item_id = optional_id("item_id", wire.item_id, problems);
        let order_id = optional_id("order_id", wire.order_id, problems);
        let openid = optional_id("openid", wire.openid, problems);
        let unionid = optional_id("unionid", wire.unionid, problems);
        let category = optional_text("category", wire.category, problems);
        let scene = wire.scene.and_then(|raw| parse_scene(raw.get(), problems));
        if let Some(price) = wire.price {
            if !(price >= 0.0 && price.is_finite()) {
                problems.push(format!("price must be >= 0, got {price}"));
            } else if price > self.max_price {
                problems.push(format!(
                    "price {price} is above the highest accepted price {}; prices are per unit in the merchant's currency (raise the limit with --max-price if it is real)",
                    self.max_price
                ));
            }
        }
        let quantity = match wire.quantity {
            None => Some(1),
            Some(q) if (1..=MAX_QUANTITY).contains(&q) => u32::try_from(q).ok(),
            Some(q) => {
                problems.push(format!(
                    "quantity must be an integer from 1 to {MAX_QUANTITY}, got {q}"
                ));
                None
            }
        };
        let properties = wire.properties.map(RawValue::get);
        let known = match properties {
            None => KnownProperties::default(),
            Some(p) if p.trim_start().starts_with('{') => {
                serde_json::from_str(p).unwrap_or_else(|_| {
                    problems.push(
                        "properties.query, properties.template_id and properties.birthday must be strings".to_owned(),
                    );
                    KnownProperties::default()
                })
            }
            Some(p) => {
                problems.push(format!(
                    "properties must be a JSON object, got {}",
                    abbreviate(p)
                ));
                KnownProperties::default()
            }
        };

        if let Some(t) = event_type {
            if t.needs_item() && !has_item {
                problems.push(format!("a {t} event needs item_id"));
            }
            if t.is_money_movement() {
                if wire.price.is_none() {
                    problems.push(format!("a {t} event needs price"));
                }
                if !has_order {
                    problems.push(format!("a {t} event needs order_id"));
                }
            }
            if t == EventType::Search && known.query.as_deref().is_none_or(|q| q.trim().is_empty())
            {
                problems
                    .push("a search event needs properties.query (a non-empty string)".to_owned());
            }
            if t == EventType::Subscribe && known.template_id.as_deref().is_none_or(str::is_empty) {
                problems.push("a subscribe event needs properties.template_id (the consented subscription message template)".to_owned());
            }
            if let Some(birthday) = known.birthday.as_deref()
                && parse_birthday(birthday).is_none()
            {
                problems.push(format!(
                    "properties.birthday must be MM-DD (e.g. 03-15), got {birthday:?}"
                ));
            }
        }

        Some(Event {
            event_id: event_id?,
            merchant_id: merchant_id?,
            user_id: user_id?,
            event_type: event_type?,
            ts_ms: ts_ms?,
            channel: channel?,
            item_id,
            category,
            order_id,
            price: wire.price,
            quantity: quantity?,
            scene,
            openid,
            unionid,
            properties: properties.map(compact_json),
        })
    }
}

/// A birthday as `MM-DD` → (month, day), a real day of some year (02-29 included).
pub fn parse_birthday(text: &str) -> Option<(u32, u32)> {
    let (month, day) = text.split_once('-')?;
    if month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (month, day): (u32, u32) = (month.parse().ok()?, day.parse().ok()?);
    NaiveDate::from_ymd_opt(2000, month, day).map(|_| (month, day))
}

fn parse_ts(raw: &str, now_ms: i64) -> Result<i64, String> {
    let ts_ms = if raw.starts_with('"') {
        let text: Cow<'_, str> =
            serde_json::from_str(raw).map_err(|e| format!("ts is not a valid string: {e}"))?;
        DateTime::parse_from_rfc3339(&text)
            .map_err(|e| {
                format!("ts must be RFC 3339 with an offset (e.g. 2026-03-01T08:30:00+08:00) or epoch milliseconds; {text:?} is not: {e}")
            })?
            .timestamp_millis()
    } else {
        raw.parse::<i64>().map_err(|_| {
            format!(
                "ts must be RFC 3339 text or integer epoch milliseconds, got {}",
                abbreviate(raw)
            )
        })?
    };
    if ts_ms < EARLIEST_TS_MS {
        return Err(format!(
            "ts {ts_ms} is before 2000-01-01; epoch timestamps must be in milliseconds, not seconds"
        ));
    }
    if ts_ms > now_ms + MAX_FUTURE_SKEW_MS {
        let when = DateTime::from_timestamp_millis(ts_ms)
            .map_or_else(|| ts_ms.to_string(), |t| t.to_rfc3339());
        return Err(format!("ts {when} is more than 24 h in the future"));
    }
    Ok(ts_ms)
}

fn reject(reason: String) -> Rejection {
    Rejection { reason }
}

fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("not valid JSON: {e}"),
        Category::Data | Category::Io => {
            let text = e.to_string();
            // serde's "at line 1 column N" is noise for one-line events; keep the column only.
            match text.rsplit_once(" at line 1 column ") {
                Some((what, column)) => format!("{what} (column {column})"),
                None => text,
            }
        }
    }
}

/// Checks an id field (`merchant_id`, `user_id`, …): non-empty, at most [`MAX_ID_BYTES`], no
/// control characters.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(format!(
            "{field} is {} bytes; ids are at most {MAX_ID_BYTES}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{field} must not contain control characters, got {value:?}"
        ));
    }
    Ok(())
}

fn required_id(
    field: &str,
    value: Option<Cow<'_, str>>,
    problems: &mut Vec<String>,
) -> Option<String> {
    match value {
        None => {
            problems.push(format!("missing required field `{field}`"));
            None
        }
        Some(v) => check_id(field, &v)
            .map(|()| v.into_owned())
            .map_err(|p| problems.push(p))
            .ok(),
    }
}

fn optional_id(
    field: &str,
    value: Option<Cow<'_, str>>,
    problems: &mut Vec<String>,
) -> Option<String> {
    let v = value?;
    check_id(field, &v)
        .map(|()| v.into_owned())
        .map_err(|p| problems.push(p))
        .ok()
}

fn optional_text(
    field: &str,
    value: Option<Cow<'_, str>>,
    problems: &mut Vec<String>,
) -> Option<String> {
    let v = value?;
    if v.len() > MAX_ID_BYTES {
        problems.push(format!(
            "{field} is {} bytes; at most {MAX_ID_BYTES}",
            v.len()
        ));
        return None;
    }
    Some(v.into_owned())
}

/// WeChat entry scenes are numbers (1001, 1047, ...); SDKs send them as numbers or strings.
fn parse_scene(raw: &str, problems: &mut Vec<String>) -> Option<String> {
    if raw == "null" {
        return None;
    }
    let text = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()
    } else if raw.bytes().all(|b| b.is_ascii_digit()) {
        Some(raw.to_owned())
    } else {
        None
    };
    match text {
        Some(t) if t.len() <= MAX_ID_BYTES => Some(t),
        _ => {
            problems.push(format!(
                "scene must be a number or a short string, got {}",
                abbreviate(raw)
            ));
            None
        }
    }
}

/// Re-serializes JSON without insignificant whitespace, so stored properties are uniform.
fn compact_json(raw: &str) -> String {
    if !raw.contains(['\n', '\r', '\t', ' ']) {
        return raw.to_owned();
    }
    serde_json::from_str::<serde_json::Value>(raw)
        .map_or_else(|_| raw.to_owned(), |v| v.to_string())
}

fn abbreviate(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Parses a `YYYY-MM-DD` date given on the command line.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("{text:?} is not a date like 2026-03-01: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000; // 2026-05-28

    fn check(line: &str) -> Result<Event, String> {
        EventValidator::new(NOW)
            .validate(line.as_bytes())
            .map_err(|r| r.reason)
    }

    const PURCHASE: &str = r#"{"event_id":"e1","merchant_id":"m1","user_id":"u1","type":"purchase","ts":"2026-05-01T10:00:00+08:00","item_id":"i1","price":12.5,"order_id":"o1","quantity":2,"category":"bread","properties":{"coupon": "X"}}"#;

    #[test]
    fn valid_purchase_is_accepted_with_all_fields() {
        let e = check(PURCHASE).expect("valid");
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.event_type, EventType::Purchase);
        assert_eq!(e.ts_ms, 1_777_600_800_000);
        assert_eq!(e.channel, Channel::MiniProgram);
        assert_eq!(e.quantity, 2);
        assert_eq!(e.price, Some(12.5));
        assert_eq!(e.properties.as_deref(), Some(r#"{"coupon":"X"}"#));
        assert_eq!(e.month(), "2026-05");
    }

    #[test]
    fn epoch_millis_are_accepted() {
        let e = check(
            r#"{"event_id":"e","merchant_id":"m","user_id":"u","type":"share","ts":1777600800000}"#,
        )
        .expect("valid");
        assert_eq!(e.ts_ms, 1_777_600_800_000);
    }

    #[test]
    fn negative_price_names_the_value() {
        let line = PURCHASE.replace("12.5", "-3");
        assert_eq!(
            check(&line).expect_err("must fail"),
            "price must be >= 0, got -3"
        );
    }

    #[test]
    fn unknown_field_is_rejected_so_typos_surface() {
        let line = PURCHASE.replace("\"price\"", "\"prise\"");
        let reason = check(&line).expect_err("must fail");
        assert!(
            reason.starts_with("unknown field `prise`, expected one of"),
            "{reason}"
        );
    }

    #[test]
    fn missing_fields_are_all_listed() {
        let reason = check(r#"{"event_id":"e","type":"purchase","ts":1777600800000}"#)
            .expect_err("must fail");
        assert_eq!(
            reason,
            "missing required field `merchant_id`; missing required field `user_id`; a purchase event needs item_id; a purchase event needs price; a purchase event needs order_id"
        );
    }

    #[test]
    fn per_type_requirements() {
        let base = r#"{"event_id":"e","merchant_id":"m","user_id":"u","ts":1777600800000,"type":"#;
        assert_eq!(
            check(&format!("{base}\"search\"}}")).expect_err("must fail"),
            "a search event needs properties.query (a non-empty string)"
        );
        assert!(
            check(&format!(
                "{base}\"search\",\"properties\":{{\"query\":\"croissant\"}}}}"
            ))
            .is_ok()
        );
        assert_eq!(
            check(&format!("{base}\"subscribe\"}}")).expect_err("must fail"),
            "a subscribe event needs properties.template_id (the consented subscription message template)"
        );
        assert_eq!(
            check(&format!("{base}\"view\"}}")).expect_err("must fail"),
            "a view event needs item_id"
        );
        assert!(
            check(&format!("{base}\"unsubscribe\"}}")).is_ok(),
            "all pushes"
        );
        assert!(
            check(&format!(
                "{base}\"identify\",\"properties\":{{\"birthday\":\"02-29\",\"member_level\":\"gold\",\"points\":120}}}}"
            ))
            .is_ok()
        );
        assert_eq!(
            check(&format!(
                "{base}\"identify\",\"properties\":{{\"birthday\":\"1990-02-30\"}}}}"
            ))
            .expect_err("must fail"),
            "properties.birthday must be MM-DD (e.g. 03-15), got \"1990-02-30\""
        );
        assert_eq!(parse_birthday("02-30"), None);
        assert_eq!(parse_birthday("12-31"), Some((12, 31)));
        assert_eq!(
            check(&format!("{base}\"buy\"}}")).expect_err("must fail"),
            "type must be one of view, search, add_to_cart, favorite, purchase, refund, share, push_open, subscribe, not_interested, unsubscribe, identify; got \"buy\""
        );
    }

    #[test]
    fn limits_are_enforced() {
        let long_id = "x".repeat(129);
        let line = PURCHASE.replace("\"u1\"", &format!("\"{long_id}\""));
        assert_eq!(
            check(&line).expect_err("must fail"),
            "user_id is 129 bytes; ids are at most 128"
        );
        let big = format!("{}{}", PURCHASE, " ".repeat(MAX_EVENT_BYTES));
        assert_eq!(
            check(&big).expect_err("must fail"),
            format!("event is {} bytes; the limit is 32768", big.len())
        );
        let future = PURCHASE.replace("2026-05-01T10:00:00+08:00", "2026-06-01T10:00:00+08:00");
        assert_eq!(
            check(&future).expect_err("must fail"),
            "ts 2026-06-01T02:00:00+00:00 is more than 24 h in the future"
        );
        let seconds = PURCHASE.replace("\"2026-05-01T10:00:00+08:00\"", "1777600800");
        assert_eq!(
            check(&seconds).expect_err("must fail"),
            "ts 1777600800 is before 2000-01-01; epoch timestamps must be in milliseconds, not seconds"
        );
        let zero_qty = PURCHASE.replace("\"quantity\":2", "\"quantity\":0");
        assert_eq!(
            check(&zero_qty).expect_err("must fail"),
            "quantity must be an integer from 1 to 1000000, got 0"
        );
    }

    #[test]
    fn a_validator_follows_its_clock_after_days_of_uptime() {
        let clock = Arc::new(ManualClock::new(NOW));
        let validator = EventValidator::with_clock(clock.clone());
        let stamped = |ts_ms: i64| {
            format!(
                r#"{{"event_id":"e","merchant_id":"m","user_id":"u","type":"share","ts":{ts_ms}}}"#
            )
        };
        const DAY: i64 = 86_400_000;
        assert!(validator.validate(stamped(NOW).as_bytes()).is_ok());
        assert!(
            validator
                .validate(stamped(NOW + 3 * DAY).as_bytes())
                .is_err()
        );
        // Three days of uptime later, an event stamped "now" is on time, not in the future.
        clock.advance(3 * DAY);
        assert!(
            validator
                .validate(stamped(NOW + 3 * DAY).as_bytes())
                .is_ok()
        );
        // Clones share the clock, as the consumer's and server's workers do.
        let clone = validator.clone();
        clock.advance(DAY);
        assert!(clone.validate(stamped(NOW + 4 * DAY).as_bytes()).is_ok());
    }

    #[test]
    fn prices_above_the_limit_and_huge_quantities_are_refused() {
        let line = PURCHASE.replace("12.5", "250000000");
        assert_eq!(
            check(&line).expect_err("must fail"),
            "price 250000000 is above the highest accepted price 100000000; prices are per unit in the merchant's currency (raise the limit with --max-price if it is real)"
        );
        let lenient = EventValidator::new(NOW).with_max_price(1e9);
        assert!(lenient.validate(line.as_bytes()).is_ok());
        let strict = EventValidator::new(NOW).with_max_price(10.0);
        assert!(strict.validate(PURCHASE.as_bytes()).is_err());
        // JSON cannot spell infinity; a number too large for f64 is refused by the parser.
        let reason = check(&PURCHASE.replace("12.5", "1e400")).expect_err("must fail");
        assert!(reason.contains("number out of range"), "{reason}");
        let many = PURCHASE.replace("\"quantity\":2", "\"quantity\":1000001");
        assert_eq!(
            check(&many).expect_err("must fail"),
            "quantity must be an integer from 1 to 1000000, got 1000001"
        );
    }

    #[test]
    fn broken_json_says_so() {
        let reason = check(r#"{"event_id":"e1","merchant_id""#).expect_err("must fail");
        assert!(reason.starts_with("not valid JSON:"), "{reason}");
        let reason = check(
            r#"{"event_id":"e","merchant_id":"m","user_id":"u","type":"share","ts":"yesterday"}"#,
        )
        .expect_err("must fail");
        assert!(
            reason.starts_with("ts must be RFC 3339 with an offset"),
            "{reason}"
        );
        let reason = check(r#"{"event_id":"e","merchant_id":"m","user_id":"u","type":"share","ts":1777600800000,"properties":[1]}"#).expect_err("must fail");
        assert_eq!(reason, "properties must be a JSON object, got [1]");
    }
}
