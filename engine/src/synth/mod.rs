//! `recur generate`: a realistic, reproducible synthetic event stream with its ground truth.
//!
//! Customers follow the BG/NBD story (Fader, Hardie and Lee 2005): while alive, a customer buys
//! as a Poisson process with rate λ ~ Gamma(r, α); after each repeat purchase they drop out
//! with probability p ~ Beta(a, b) (never right after the first, as in the model). Purchases
//! are thinned by weekday so weekly seasonality shows. What goes in an order follows real
//! shopping: each customer has their own cycle for every staple they buy (the item's typical
//! cycle times a personal pace), and the staples that are due go in together; one-off items
//! (a birthday cake, a trial class) are not bought twice; some items bring a companion along
//! (croissant and latte); repeat orders now and then try something new; the rest is taste by
//! category and Zipf popularity within it. `--items` extends the named catalogue with a long
//! tail. Each order comes with a browse → cart → purchase funnel, occasional refunds, shares,
//! push opens and subscription consents.
//! Some users never buy; some appear under a second user_id sharing their unionid.
//! Duplicated lines (same event_id, a producer retry) and malformed lines are mixed in at
//! small rates. Each user has its own ChaCha8 stream derived from (seed, user index), so the
//! same seed gives the same bytes.
//!
//! Ground truth goes beside the events: a summary line (counts, each merchant's r, α, a, b),
//! then one line per user with λ, p, when they dropped out, their own cycle per staple and
//! their first-time tries.

mod campaign;
mod catalog;

use std::io::Write;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma, LogNormal};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::event::{Channel, EventType};
pub use campaign::SynthCampaign;
use campaign::{CampaignTruth, DELIVERY_HOUR, WINDOW_DAYS};
use catalog::{ARCHETYPES, Archetype, Catalogue};

/// Settings of one generated stream.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub merchants: usize,
    pub users: usize,
    pub days: u32,
    pub seed: u64,
    /// The last day of the stream (local time); fixed by default so output does not depend
    /// on when it is generated.
    pub end: NaiveDate,
    /// Share of events sent twice.
    pub duplicate_rate: f64,
    /// Share of extra malformed lines.
    pub malformed_rate: f64,
    /// Items per merchant: the named catalogue extended by a generated long tail (at least
    /// the named items; `None` keeps just those).
    pub items: Option<usize>,
    /// A past push campaign with a known effect (see [`campaign`]).
    pub campaign: Option<SynthCampaign>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            merchants: 3,
            users: 2_000,
            days: 180,
            seed: 42,
            end: NaiveDate::from_ymd_opt(2026, 10, 31).expect("a valid date"),
            duplicate_rate: 0.01,
            malformed_rate: 0.005,
            items: None,
            campaign: None,
        }
    }
}

/// Counts of what was written; `unique_events` is what a correct ingest stores.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SynthCounts {
    pub lines: u64,
    pub unique_events: u64,
    pub duplicate_lines: u64,
    pub malformed_lines: u64,
}

#[derive(Serialize)]
struct MerchantTruth {
    merchant_id: String,
    name: &'static str,
    users: u64,
    r: f64,
    alpha_days: f64,
    /// α of the rate actually realised: weekday thinning scales every λ by the mean weekday
    /// weight, i.e. divides α by it. This is what a BG/NBD fit should recover.
    alpha_days_effective: f64,
    a: f64,
    b: f64,
}

#[derive(Serialize)]
struct UserTruth<'a> {
    kind: &'static str,
    merchant_id: &'a str,
    user_id: &'a str,
    /// Purchases per day while alive; null for users who never buy.
    lambda_per_day: Option<f64>,
    dropout_p: Option<f64>,
    purchases: u32,
    first_purchase: Option<String>,
    dropped_out_at: Option<String>,
    unionid: Option<&'a str>,
    aliases: Vec<String>,
    /// The customer's own cycle for each replenished item they bought (days), which their
    /// purchases of it follow: what a timing model should recover.
    item_cycles: Vec<ItemCycleTruth>,
    /// Items added to a repeat order as something the customer never bought (first-time
    /// tries; other new items also come from taste and popularity).
    first_time_tries: u32,
    /// Their part in the simulated campaign (customers with an order before it was planned).
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<CampaignTruth>,
}

#[derive(Serialize)]
struct ItemCycleTruth {
    item_id: String,
    cycle_days: f64,
    purchases: u32,
}

/// The JSON form of one generated event; field order is fixed so output is byte-stable.
#[derive(Serialize, Clone)]
struct WireEvent<'a> {
    event_id: String,
    merchant_id: String,
    user_id: String,
    #[serde(rename = "type")]
    event_type: &'static str,
    ts: serde_json::Value,
    channel: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    openid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<serde_json::Value>,
}

/// A line waiting to be written, ordered by time then generation order.
struct Line {
    ts_ms: i64,
    seq: u64,
    text: String,
}

/// The merchant id of the `index`-th merchant.
pub fn merchant_id(index: usize) -> String {
    let archetype = &ARCHETYPES[index % ARCHETYPES.len()];
    match index / ARCHETYPES.len() {
        0 => format!("m_{}", archetype.key),
        n => format!("m_{}_{}", archetype.key, n + 1),
    }
}

/// A staple is due once this share of the customer's own cycle for it has passed…
const DUE_AT: f64 = 0.75;
/// …and then goes into an order with this probability, up to this many staples an order.
const RESTOCK_RATE: f64 = 0.85;
const MAX_RESTOCK: usize = 6;
/// A single pick (a view, an order's taste pick) prefers staples from this share of their
/// cycle on.
const PICK_DUE_AT: f64 = 0.8;

/// Share of repeat orders that add an item the customer never bought.
const FIRST_TIME_TRY_RATE: f64 = 0.15;

/// WeChat's most common entry scenes: search, QR code, chat share, official account menu.
const SCENES: [u32; 5] = [1001, 1011, 1007, 1035, 1089];

struct UserSim<'a> {
    rng: ChaCha8Rng,
    archetype: &'a Archetype,
    catalogue: &'a Catalogue,
    merchant_id: &'a str,
    user_id: String,
    alias: Option<String>,
    openid: String,
    unionid: Option<String>,
    channel: Channel,
    start: NaiveDate,
    days: u32,
    category_taste: Vec<f64>,
    /// Every item bought, with the customer's own cycle for it.
    habits: Vec<Habit>,
    first_time_tries: u32,
    lines: Vec<(i64, WireEvent<'a>)>,
    event_seq: u32,
    order_seq: u32,
    subscribed: Vec<&'static str>,
    /// When each order was paid (epoch ms).
    order_times_ms: Vec<i64>,
    /// Whether orders may be refunded (a campaign's persuaded order is kept).
    refunds: bool,
}

/// One item a customer bought: when last, how often, and their own cycle for it.
struct Habit {
    item: usize,
    last_day: f64,
    purchases: u32,
    /// The item's typical cycle scaled by this customer's pace (log-normal, σ = 0.35);
    /// `None` for one-off items.
    cycle_days: Option<f64>,
}

impl<'a> UserSim<'a> {
    fn next_event_id(&mut self) -> String {
        self.event_seq += 1;
        format!(
            "{}-{}-{:05}",
            self.merchant_id, self.user_id, self.event_seq
        )
    }

    /// A local timestamp on `day` (days since the start), at an hour drawn from the
    /// merchant's daily rhythm, offset by `seconds`.
    fn local_time(&mut self, day: f64, seconds: i64) -> DateTime<FixedOffset> {
        let shanghai = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
        let hour = weighted_index(&mut self.rng, &self.archetype.hours);
        let minute = self.rng.random_range(0..60);
        let second = self.rng.random_range(0..60);
        // Day indexes are small and non-negative by construction.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let date = self.start + Duration::days(day.floor() as i64);
        #[allow(clippy::cast_possible_truncation)]
        let time = NaiveTime::from_hms_opt(hour as u32, minute, second).expect("a valid time");
        shanghai
            .from_local_datetime(&date.and_time(time))
            .single()
            .expect("a fixed offset has no gaps")
            + Duration::seconds(seconds)
    }

    fn emit(
        &mut self,
        when: DateTime<FixedOffset>,
        event_type: EventType,
        fill: impl FnOnce(&mut WireEvent<'a>),
    ) {
        let ts_ms = when.timestamp_millis();
        // Most SDKs send RFC 3339 local time; some send epoch milliseconds.
        let ts = if self.rng.random_bool(0.1) {
            serde_json::Value::from(ts_ms)
        } else {
            serde_json::Value::from(when.to_rfc3339())
        };
        let use_alias = self.alias.is_some() && self.rng.random_bool(0.3);
        let user_id = if use_alias {
            self.alias.clone().unwrap_or_default()
        } else {
            self.user_id.clone()
        };
        let channel = if use_alias {
            Channel::OfficialAccount
        } else {
            self.channel
        };
        let mut event = WireEvent {
            event_id: self.next_event_id(),
            merchant_id: self.merchant_id.to_owned(),
            user_id,
            event_type: event_type.as_str(),
            ts,
            channel: channel.as_str(),
            item_id: None,
            category: None,
            order_id: None,
            price: None,
            quantity: None,
            scene: self
                .rng
                .random_bool(0.5)
                .then(|| SCENES[self.rng.random_range(0..SCENES.len())]),
            openid: (channel != Channel::Offline).then(|| self.openid.clone()),
            unionid: self.unionid.clone(),
            properties: None,
        };
        fill(&mut event);
        self.lines.push((ts_ms, event));
    }

    /// The staples of which at least `share` of the customer's own cycle has passed on `day`.
    fn due_staples(&self, day: f64, share: f64) -> Vec<usize> {
        self.habits
            .iter()
            .filter(|h| {
                h.cycle_days
                    .is_some_and(|cycle| day - h.last_day >= share * cycle)
            })
            .map(|h| h.item)
            .collect()
    }

    fn bought(&self, item: usize) -> bool {
        self.habits.iter().any(|h| h.item == item)
    }

    /// Whether the customer would buy `item` on `day`: not a one-off they have, nor an item
    /// they bought less than half their own cycle ago (nobody restocks bread the next day).
    fn wants(&self, item: usize, day: f64) -> bool {
        match self.habits.iter().find(|h| h.item == item) {
            None => true,
            Some(habit) => habit
                .cycle_days
                .is_some_and(|cycle| day - habit.last_day >= 0.5 * cycle),
        }
    }

    /// An item for an order or a view on `day`: most often one the customer is due to buy
    /// again by their own cycle, else one of a category they like, by popularity (a one-off
    /// item they already have is passed over).
    fn pick_item(&mut self, day: f64) -> usize {
        let due = self.due_staples(day, PICK_DUE_AT);
        if !due.is_empty() && self.rng.random_bool(0.7) {
            return due[self.rng.random_range(0..due.len())];
        }
        // An item the customer does not want now is drawn again, from another category if
        // need be (a cake lover who has had every cake moves on).
        let mut item = 0;
        for _ in 0..4 {
            let category = weighted_index(&mut self.rng, &self.category_taste);
            for _ in 0..8 {
                item = self.catalogue.draw(&mut self.rng, category);
                if self.wants(item, day) {
                    return item;
                }
            }
        }
        item
    }

    /// An item the customer never bought, from a category they like (a first-time try).
    fn pick_new_item(&mut self) -> Option<usize> {
        for _ in 0..5 {
            let category = weighted_index(&mut self.rng, &self.category_taste);
            let item = self.catalogue.draw(&mut self.rng, category);
            if !self.bought(item) {
                return Some(item);
            }
        }
        None
    }

    fn remember_purchase(&mut self, item: usize, day: f64) {
        if let Some(habit) = self.habits.iter_mut().find(|h| h.item == item) {
            habit.last_day = day;
            habit.purchases += 1;
            return;
        }
        let pace = LogNormal::new(0.0, 0.35).expect("valid log-normal");
        let cycle_days = self.catalogue.items[item]
            .cycle_days
            .map(|typical| typical * pace.sample(&mut self.rng));
        self.habits.push(Habit {
            item,
            last_day: day,
            purchases: 1,
            cycle_days,
        });
    }

    fn browse(&mut self, day: f64, with_cart: bool) {
        let views = self.rng.random_range(1..=4);
        let mut offset = -600;
        if self.rng.random_bool(0.2) {
            let item = self.pick_item(day);
            let query = self.archetype.categories[self.catalogue.items[item].category].name;
            let when = self.local_time(day, offset);
            self.emit(when, EventType::Search, |e| {
                e.properties = Some(serde_json::json!({ "query": query }));
            });
        }
        for _ in 0..views {
            offset += self.rng.random_range(20..120);
            let item = &self.catalogue.items[self.pick_item(day)];
            let category = self.archetype.categories[item.category].name;
            let when = self.local_time(day, offset);
            self.emit(when, EventType::View, |e| {
                e.item_id = Some(&item.id);
                e.category = Some(category);
            });
            if with_cart && self.rng.random_bool(0.3) {
                self.emit(when + Duration::seconds(15), EventType::AddToCart, |e| {
                    e.item_id = Some(&item.id);
                    e.category = Some(category);
                    e.price = Some(item.price);
                });
            }
            if self.rng.random_bool(0.03) {
                self.emit(when + Duration::seconds(20), EventType::Favorite, |e| {
                    e.item_id = Some(&item.id);
                    e.category = Some(category);
                });
            }
        }
    }

    fn purchase(&mut self, day: f64) {
        self.browse(day, false);
        self.order_seq += 1;
        let order_id = format!("o-{}-{:04}", self.user_id, self.order_seq);
        let basket =
            1 + usize::from(self.rng.random_bool(0.35)) + usize::from(self.rng.random_bool(0.1));
        let paid_at = self.local_time(day, 0);
        self.order_times_ms.push(paid_at.timestamp_millis());
        // Staples that are due go in together (one trip restocks them all), then what the
        // customer fancies today.
        let due = self.due_staples(day, DUE_AT);
        let mut picked: Vec<usize> = Vec::new();
        for item in due {
            if picked.len() < MAX_RESTOCK && self.rng.random_bool(RESTOCK_RATE) {
                picked.push(item);
            }
        }
        for _ in 0..basket {
            let item = self.pick_item(day);
            if !picked.contains(&item) {
                picked.push(item);
            }
        }
        // Now and then something the customer never had (their first order is all new).
        if self.order_seq > 1
            && self.rng.random_bool(FIRST_TIME_TRY_RATE)
            && let Some(item) = self.pick_new_item().filter(|i| !picked.contains(i))
        {
            picked.push(item);
            self.first_time_tries += 1;
        }
        // Items bought together.
        let catalogue = self.catalogue;
        for position in 0..picked.len() {
            if let Some((companion, probability)) = catalogue.items[picked[position]].companion
                && !picked.contains(&companion)
                && self.rng.random_bool(probability)
            {
                picked.push(companion);
            }
        }
        for index in picked.iter().copied() {
            let item = &catalogue.items[index];
            let category = self.archetype.categories[item.category].name;
            let quantity = match self.rng.random_range(0..20) {
                0 => 3,
                1..=3 => 2,
                _ => 1,
            };
            self.emit(paid_at - Duration::seconds(40), EventType::AddToCart, |e| {
                e.item_id = Some(&item.id);
                e.category = Some(category);
                e.price = Some(item.price);
                e.quantity = Some(quantity);
            });
            let order = order_id.clone();
            self.emit(paid_at, EventType::Purchase, |e| {
                e.item_id = Some(&item.id);
                e.category = Some(category);
                e.price = Some(item.price);
                e.quantity = Some(quantity);
                e.order_id = Some(order);
            });
            self.remember_purchase(index, day);
            let refund_day = day + self.rng.random_range(0.5..5.0);
            if self.refunds
                && self.rng.random_bool(self.archetype.refund_rate)
                && refund_day < f64::from(self.days)
            {
                let when = self.local_time(refund_day, 0);
                let order = order_id.clone();
                self.emit(when, EventType::Refund, |e| {
                    e.item_id = Some(&item.id);
                    e.category = Some(category);
                    e.price = Some(item.price);
                    e.quantity = Some(quantity);
                    e.order_id = Some(order);
                });
            }
        }
        let consent_rate = if self.subscribed.is_empty() {
            0.35
        } else {
            0.08
        };
        if self.rng.random_bool(consent_rate) {
            let template =
                self.archetype.templates[self.rng.random_range(0..self.archetype.templates.len())];
            self.subscribed.push(template);
            self.emit(paid_at + Duration::seconds(5), EventType::Subscribe, |e| {
                e.properties = Some(serde_json::json!({ "template_id": template }));
            });
        }
        if self.rng.random_bool(0.05) {
            let item = &catalogue.items[picked[0]];
            let category = self.archetype.categories[item.category].name;
            self.emit(paid_at + Duration::seconds(30), EventType::Share, |e| {
                e.item_id = Some(&item.id);
                e.category = Some(category);
            });
        }
        let open_day = day + self.rng.random_range(1.0..10.0);
        if !self.subscribed.is_empty()
            && self.rng.random_bool(0.15)
            && open_day < f64::from(self.days)
        {
            let when = self.local_time(open_day, 0);
            self.emit(when, EventType::PushOpen, |e| {
                e.properties = Some(serde_json::json!({ "template_id": "tmpl_campaign" }));
            });
        }
    }
}

impl UserSim<'_> {
    /// The simulated campaign's effect on this customer, drawn after their organic history
    /// (which it leaves as it was); `None` if they had no order before it was planned.
    fn campaign_effect(&mut self, campaign: &SynthCampaign) -> Option<CampaignTruth> {
        let delivered = campaign.delivered_at()?;
        let planned_ms = campaign.planned_at()?.timestamp_millis();
        let sent_ms = delivered.timestamp_millis();
        let before: Vec<i64> = self
            .order_times_ms
            .iter()
            .copied()
            .filter(|t| *t < planned_ms)
            .collect();
        let last = *before.iter().max()?;
        #[allow(clippy::cast_precision_loss)]
        let days_since_last = (planned_ms - last) as f64 / 86_400_000.0;
        let (segment, uplift) = campaign::segment(before.len(), days_since_last);
        // The plan knows a customer by the id first seen with their unionid.
        let first_seen = self
            .lines
            .iter()
            .map(|(ts, e)| (*ts, e.user_id.as_str()))
            .min();
        let customer_id = match (&self.unionid, first_seen) {
            (Some(_), Some((_, id))) => id.to_owned(),
            _ => self.user_id.clone(),
        };
        let treated =
            !crate::campaign::plan::in_holdout(&campaign.name, &customer_id, campaign.holdout);
        #[allow(clippy::cast_possible_truncation)]
        let window_ms = (WINDOW_DAYS * 86_400_000.0) as i64;
        let bought_anyway = self
            .order_times_ms
            .iter()
            .any(|t| *t > sent_ms && *t <= sent_ms + window_ms);
        let (mut persuaded, mut opened) = (false, false);
        if treated {
            persuaded = !bought_anyway && self.rng.random_bool(uplift);
            opened = persuaded || self.rng.random_bool(campaign::OPEN_RATE);
            if opened {
                let when = delivered + Duration::minutes(self.rng.random_range(5..600));
                let name = campaign.name.clone();
                self.emit(when, EventType::PushOpen, |e| {
                    e.properties = Some(serde_json::json!({ "campaign": name }));
                });
            }
            if persuaded {
                // An order on one of the four days after delivery: inside the window of a
                // message delivered any time from its planning to its delivery day.
                #[allow(clippy::cast_precision_loss)]
                let day =
                    (campaign.day - self.start).num_days() as f64 + self.rng.random_range(1.0..5.0);
                self.refunds = false;
                self.purchase(day);
                self.refunds = true;
            }
        }
        Some(CampaignTruth {
            campaign: campaign.name.clone(),
            customer_id,
            arm: if treated { "treated" } else { "holdout" },
            segment,
            uplift,
            bought_anyway,
            converted_by_push: persuaded,
            opened,
        })
    }
}

fn weighted_index(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut target = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if target < *w {
            return i;
        }
        target -= w;
    }
    weights.len() - 1
}

fn user_seed(seed: u64, user_index: usize) -> u64 {
    // SplitMix64 of (seed, index): independent, stable streams per user.
    let mut z = seed ^ (user_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn local_date_string(start: NaiveDate, day: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let date = start + Duration::days(day.floor() as i64);
    date.format("%Y-%m-%d").to_string()
}

/// Writes the event stream to `events` and the ground truth to `truth`.
pub fn generate(
    config: &SynthConfig,
    events: &mut dyn Write,
    truth: &mut dyn Write,
) -> Result<SynthCounts> {
    if config.merchants == 0 || config.users == 0 || config.days == 0 {
        return Err(Error::InvalidArgument(
            "--merchants, --users and --days must each be at least 1".to_owned(),
        ));
    }
    let start = config.end - Duration::days(i64::from(config.days) - 1);
    if let Some(campaign) = &config.campaign {
        campaign_fits(campaign, start, config.end)?;
    }
    let merchant_ids: Vec<String> = (0..config.merchants).map(merchant_id).collect();
    let archetype_of = |m: usize| &ARCHETYPES[m % ARCHETYPES.len()];
    let catalogues: Vec<Catalogue> = (0..config.merchants)
        .map(|m| {
            Catalogue::build(
                archetype_of(m),
                config.items,
                user_seed(config.seed, m) ^ 0xCA7A,
            )
        })
        .collect();
    let weights: Vec<f64> = (0..config.merchants)
        .map(|m| archetype_of(m).user_weight)
        .collect();
    let mut assign_rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut merchant_users = vec![0u64; config.merchants];
    let mut lines: Vec<Line> = Vec::new();
    let mut user_truths: Vec<String> = Vec::new();
    let mut counts = SynthCounts::default();
    let mut seq = 0u64;
    let days = f64::from(config.days);

    for user_index in 0..config.users {
        let m = weighted_index(&mut assign_rng, &weights);
        merchant_users[m] += 1;
        let archetype = archetype_of(m);
        let mut rng = ChaCha8Rng::seed_from_u64(user_seed(config.seed, user_index));
        let user_id = format!("u{user_index:07}");
        let alias = rng.random_bool(0.03).then(|| format!("u{user_index:07}b"));
        let has_unionid = alias.is_some() || rng.random_bool(0.6);
        let openid: String = format!(
            "o{}",
            (0..27)
                .map(|_| char::from(b'a' + rng.random_range(0..26)))
                .collect::<String>()
        );
        let unionid = has_unionid.then(|| format!("un_{:016x}", rng.random::<u64>()));
        let channels: Vec<f64> = archetype.channels.iter().map(|(_, w)| *w).collect();
        let channel = archetype.channels[weighted_index(&mut rng, &channels)].0;
        let taste: Vec<f64> = archetype
            .categories
            .iter()
            .map(|_| Gamma::new(0.7, 1.0).expect("valid gamma").sample(&mut rng))
            .collect();
        // 30% were customers before the window opened; the rest arrive during it.
        let arrival = if rng.random_bool(0.3) {
            0.0
        } else {
            rng.random_range(0.0..days)
        };
        let mut sim = UserSim {
            rng,
            archetype,
            catalogue: &catalogues[m],
            merchant_id: &merchant_ids[m],
            user_id: user_id.clone(),
            alias: alias.clone(),
            openid,
            unionid: unionid.clone(),
            channel,
            start,
            days: config.days,
            category_taste: taste,
            habits: Vec::new(),
            first_time_tries: 0,
            lines: Vec::new(),
            event_seq: 0,
            order_seq: 0,
            subscribed: Vec::new(),
            order_times_ms: Vec::new(),
            refunds: true,
        };

        let is_buyer = !sim.rng.random_bool(archetype.browser_share);
        let mut truth = UserTruth {
            kind: "user",
            merchant_id: &merchant_ids[m],
            user_id: &user_id,
            lambda_per_day: None,
            dropout_p: None,
            purchases: 0,
            first_purchase: None,
            dropped_out_at: None,
            unionid: unionid.as_deref(),
            aliases: alias.iter().cloned().collect(),
            item_cycles: Vec::new(),
            first_time_tries: 0,
            campaign: None,
        };
        if is_buyer {
            let lambda = Gamma::new(archetype.r, 1.0 / archetype.alpha)
                .expect("valid gamma")
                .sample(&mut sim.rng)
                .max(1e-6);
            let p = Beta::new(archetype.a, archetype.b)
                .expect("valid beta")
                .sample(&mut sim.rng);
            truth.lambda_per_day = Some(lambda);
            truth.dropout_p = Some(p);
            let max_weekday = archetype.weekday.iter().copied().fold(0.0, f64::max);
            let gaps = Exp::new(lambda * max_weekday).expect("a positive rate");
            let mut t = arrival;
            let mut alive = true;
            // The first purchase starts the customer's life (BG/NBD's time zero).
            while alive && t < days {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let weekday = (start + Duration::days(t.floor() as i64))
                    .weekday()
                    .num_days_from_monday() as usize;
                let keep = truth.purchases == 0
                    || sim
                        .rng
                        .random_bool(archetype.weekday[weekday] / max_weekday);
                if keep {
                    sim.purchase(t);
                    truth.purchases += 1;
                    if truth.first_purchase.is_none() {
                        truth.first_purchase = Some(local_date_string(start, t));
                    }
                    // BG/NBD's dropout follows repeat purchases only: a customer is alive
                    // right after the purchase that made them a customer.
                    if truth.purchases > 1 && sim.rng.random_bool(p) {
                        alive = false;
                        truth.dropped_out_at = Some(local_date_string(start, t));
                    }
                }
                // Between purchases, abandoned browsing sessions.
                let next = t + gaps.sample(&mut sim.rng);
                if alive && sim.rng.random_bool(0.6) {
                    let browse_day = sim.rng.random_range(t..next.max(t + 0.01));
                    if browse_day < days {
                        sim.browse(browse_day, true);
                    }
                }
                t = next;
            }
        } else {
            let leave = arrival
                + Exp::new(1.0 / 30.0)
                    .expect("a positive rate")
                    .sample(&mut sim.rng);
            let visits = Exp::new(0.08).expect("a positive rate");
            let mut t = arrival;
            while t < leave.min(days) {
                sim.browse(t, true);
                t += visits.sample(&mut sim.rng);
            }
        }
        if let Some(campaign) = &config.campaign {
            truth.campaign = sim.campaign_effect(campaign);
        }
        truth.first_time_tries = sim.first_time_tries;
        truth.item_cycles = sim
            .habits
            .iter()
            .filter_map(|h| {
                Some(ItemCycleTruth {
                    item_id: sim.catalogue.items[h.item].id.clone(),
                    cycle_days: (h.cycle_days? * 100.0).round() / 100.0,
                    purchases: h.purchases,
                })
            })
            .collect();
        user_truths.push(serde_json::to_string(&truth).expect("truth serializes"));

        let duplicate_rate = config.duplicate_rate;
        let malformed_rate = config.malformed_rate;
        let mut rng = sim.rng;
        for (ts_ms, event) in sim.lines {
            let text = serde_json::to_string(&event).expect("an event serializes");
            counts.unique_events += 1;
            if rng.random_bool(duplicate_rate) {
                // A producer retry: the same bytes again, a little later.
                lines.push(Line {
                    ts_ms: ts_ms + rng.random_range(1_000..600_000),
                    seq,
                    text: text.clone(),
                });
                seq += 1;
                counts.duplicate_lines += 1;
            }
            if rng.random_bool(malformed_rate) {
                lines.push(Line {
                    ts_ms: ts_ms + 1,
                    seq,
                    text: malform(&mut rng, &event),
                });
                seq += 1;
                counts.malformed_lines += 1;
            }
            lines.push(Line { ts_ms, seq, text });
            seq += 1;
        }
        if lines.len() >= SORTED_BLOCK_LINES {
            flush_sorted(&mut lines, events, &mut counts)?;
        }
    }

    flush_sorted(&mut lines, events, &mut counts)?;

    let merchants: Vec<MerchantTruth> = (0..config.merchants)
        .map(|m| {
            let a = archetype_of(m);
            MerchantTruth {
                merchant_id: merchant_ids[m].clone(),
                name: a.name,
                users: merchant_users[m],
                r: a.r,
                alpha_days: a.alpha,
                alpha_days_effective: a.alpha / (a.weekday.iter().sum::<f64>() / 7.0),
                a: a.a,
                b: a.b,
            }
        })
        .collect();
    let summary = serde_json::json!({
        "kind": "summary",
        "seed": config.seed,
        "start": start.format("%Y-%m-%d").to_string(),
        "end": config.end.format("%Y-%m-%d").to_string(),
        "time_zone": "+08:00",
        "counts": counts,
        "merchants": merchants,
        "campaign": config.campaign.as_ref().map(campaign_summary),
    });
    let mut write_truth = |text: &str| {
        truth
            .write_all(text.as_bytes())
            .and_then(|()| truth.write_all(b"\n"))
    };
    write_truth(&summary.to_string()).map_err(Error::io("write", "truth output"))?;
    for line in &user_truths {
        write_truth(line).map_err(Error::io("write", "truth output"))?;
    }
    Ok(counts)
}

/// A campaign must be planned after the stream starts and its window end before it does.
fn campaign_fits(campaign: &SynthCampaign, start: NaiveDate, end: NaiveDate) -> Result<()> {
    #[allow(clippy::cast_possible_truncation)]
    let window = Duration::days(WINDOW_DAYS as i64);
    if campaign.day - Duration::days(1) <= start || campaign.day + window > end {
        return Err(Error::InvalidArgument(format!(
            "--campaign-day {} must fall between {} and {} (planned the day before, measured \
             over the {WINDOW_DAYS} days after)",
            campaign.day,
            start + Duration::days(2),
            end - window
        )));
    }
    if !(0.0..=0.5).contains(&campaign.holdout) {
        return Err(Error::InvalidArgument(format!(
            "--campaign-holdout must be a share from 0 to 0.5, got {}",
            campaign.holdout
        )));
    }
    Ok(())
}

/// The truth summary's description of the campaign.
fn campaign_summary(campaign: &SynthCampaign) -> serde_json::Value {
    let at =
        |date: NaiveDate| format!("{}T{DELIVERY_HOUR:02}:00:00+08:00", date.format("%Y-%m-%d"));
    let segments: serde_json::Map<String, serde_json::Value> =
        [(1, 1.0), (3, 1.0), (8, 1.0), (1, 90.0)]
            .into_iter()
            .map(|(orders, days)| {
                let (name, uplift) = campaign::segment(orders, days);
                (name.to_owned(), serde_json::json!(uplift))
            })
            .collect();
    serde_json::json!({
        "name": campaign.name,
        "holdout": campaign.holdout,
        "planned_at": at(campaign.day - Duration::days(1)),
        "delivered_at": at(campaign.day),
        "window_days": WINDOW_DAYS,
        "uplift_by_segment": segments,
    })
}

/// Lines are written in time order within blocks of about this many: a stream of millions of
/// customers need not be held in memory at once (a Kafka topic is not globally ordered either).
const SORTED_BLOCK_LINES: usize = 2_000_000;

/// Writes `lines` in time order (then generation order) and empties it.
fn flush_sorted(
    lines: &mut Vec<Line>,
    events: &mut dyn Write,
    counts: &mut SynthCounts,
) -> Result<()> {
    lines.sort_unstable_by_key(|l| (l.ts_ms, l.seq));
    counts.lines += lines.len() as u64;
    for line in lines.drain(..) {
        events
            .write_all(line.text.as_bytes())
            .and_then(|()| events.write_all(b"\n"))
            .map_err(Error::io("write", "events output"))?;
    }
    Ok(())
}

/// A broken copy of an event, of one of the kinds real pipelines see.
fn malform(rng: &mut ChaCha8Rng, event: &WireEvent) -> String {
    let mut broken = event.clone();
    broken.event_id = format!("{}-bad", event.event_id);
    let text = |e: &WireEvent| serde_json::to_string(e).expect("an event serializes");
    match rng.random_range(0..6) {
        0 => {
            broken.event_type = "purchase";
            broken.item_id = broken.item_id.or(Some("sku_unknown"));
            broken.order_id = Some("o-bad".to_owned());
            broken.price = Some(-3.0);
            text(&broken)
        }
        1 => text(&broken).replacen("\"user_id\"", "\"userid\"", 1),
        2 => {
            let full = text(&broken);
            full[..full.len() / 2].to_owned()
        }
        3 => {
            broken.event_type = "buy";
            text(&broken)
        }
        4 => {
            broken.ts = serde_json::Value::from("yesterday");
            text(&broken)
        }
        _ => text(&broken).replacen("\"merchant_id\"", "\"prise\":1,\"merchant_id\"", 1),
    }
}

use chrono::Datelike as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: &SynthConfig) -> (Vec<u8>, Vec<u8>, SynthCounts) {
        let (mut events, mut truth) = (Vec::new(), Vec::new());
        let counts = generate(config, &mut events, &mut truth).expect("generate");
        (events, truth, counts)
    }

    /// Purchases of generated events as one bakery's baskets, and the truth lines.
    fn bakery_history(
        users: usize,
        days: u32,
    ) -> (crate::recs::baskets::BasketHistory, Vec<serde_json::Value>) {
        use crate::recs::baskets::{Basket, BasketHistory};
        use std::collections::BTreeMap;
        let config = SynthConfig {
            merchants: 1,
            users,
            days,
            duplicate_rate: 0.0,
            malformed_rate: 0.0,
            ..SynthConfig::default()
        };
        let (events, truth, _) = run(&config);
        let validator = crate::event::EventValidator::new(i64::MAX / 4);
        // user → order → (time, items)
        let mut orders: BTreeMap<String, BTreeMap<String, (i64, Vec<String>)>> = BTreeMap::new();
        for line in events.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let event = validator.validate(line).expect("a clean line");
            if event.event_type != EventType::Purchase {
                continue;
            }
            let order = orders
                .entry(event.user_id)
                .or_default()
                .entry(event.order_id.expect("an order"))
                .or_insert((event.ts_ms, Vec::new()));
            order.1.push(event.item_id.expect("an item"));
        }
        let mut history = BasketHistory::default();
        let mut index: BTreeMap<String, u32> = BTreeMap::new();
        for (user, user_orders) in orders {
            let mut baskets: Vec<Basket> = user_orders
                .into_values()
                .map(|(at_ms, ids)| {
                    let mut items: Vec<u32> = ids
                        .into_iter()
                        .map(|id| {
                            let next = u32::try_from(index.len()).expect("small");
                            *index.entry(id).or_insert(next)
                        })
                        .collect();
                    items.sort_unstable();
                    items.dedup();
                    Basket { at_ms, items }
                })
                .collect();
            baskets.sort_by_key(|b| b.at_ms);
            history.users.push(user);
            history.baskets.push(baskets);
        }
        history.items = vec![String::new(); index.len()];
        for (id, i) in index {
            history.items[i as usize] = id;
        }
        let truth = truth
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("truth is JSON"))
            .collect();
        (history, truth)
    }

    #[test]
    fn the_timing_model_recovers_each_customers_own_cycles() {
        use crate::recs::repeat::{ItemStats, RepeatTiming};
        let (history, truth) = bakery_history(4000, 360);
        let stats = ItemStats::from_history(&history);
        let model = RepeatTiming::default();
        let user_index: std::collections::HashMap<&str, usize> = history
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.as_str(), i))
            .collect();
        // (truth cycle, the customer's own mean gap as the model measures it)
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        for line in truth.iter().filter(|t| t["kind"] == "user") {
            let (Some(lambda), Some(&user)) = (
                line["lambda_per_day"].as_f64(),
                user_index.get(line["user_id"].as_str().expect("id")),
            ) else {
                continue;
            };
            let baskets = &history.baskets[user];
            let measured = model.candidates(&stats, baskets, i64::MAX / 4);
            for cycle in line["item_cycles"].as_array().expect("cycles") {
                let truth_days = cycle["cycle_days"].as_f64().expect("days");
                // A cycle shows only in a customer who shops several times within it.
                if cycle["purchases"].as_u64() < Some(4) || lambda * truth_days < 1.5 {
                    continue;
                }
                let id = cycle["item_id"].as_str().expect("id");
                let own = measured
                    .iter()
                    .find(|c| history.items[c.item as usize] == id)
                    .and_then(|c| c.own_cycle_days);
                if let Some(own) = own {
                    pairs.push((truth_days, own));
                }
            }
        }
        assert!(
            pairs.len() >= 30,
            "too few frequent shoppers: {}",
            pairs.len()
        );
        let rank = |values: Vec<f64>| -> Vec<f64> {
            let mut order: Vec<usize> = (0..values.len()).collect();
            order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
            let mut ranks = vec![0.0; values.len()];
            for (r, i) in order.into_iter().enumerate() {
                ranks[i] = r as f64;
            }
            ranks
        };
        let a = rank(pairs.iter().map(|p| p.0).collect());
        let b = rank(pairs.iter().map(|p| p.1).collect());
        let n = a.len() as f64;
        let mean = (n - 1.0) / 2.0;
        let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - mean) * (y - mean)).sum();
        let var: f64 = a.iter().map(|x| (x - mean).powi(2)).sum();
        let spearman = cov / var;
        let mut ratios: Vec<f64> = pairs.iter().map(|(t, o)| o / t).collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        assert!(
            spearman > 0.5,
            "measured cycles follow the true ones: Spearman {spearman:.2} over {} pairs",
            pairs.len()
        );
        assert!(
            (0.8..1.8).contains(&median),
            "measured ÷ true cycle, median {median:.2}"
        );
    }

    #[test]
    fn companions_come_along_and_one_offs_are_not_bought_twice() {
        let (history, _) = bakery_history(1500, 180);
        let id = |name: &str| {
            u32::try_from(history.items.iter().position(|i| i == name).expect(name)).expect("small")
        };
        let (croissant, latte, cake) = (
            id("sku_croissant"),
            id("sku_latte"),
            id("sku_birthday_cake_6in"),
        );
        let baskets: Vec<&crate::recs::baskets::Basket> =
            history.baskets.iter().flatten().collect();
        let with = |a: u32| baskets.iter().filter(move |b| b.items.contains(&a));
        let latte_share = with(latte).count() as f64 / baskets.len() as f64;
        let latte_given_croissant = with(croissant).filter(|b| b.items.contains(&latte)).count()
            as f64
            / with(croissant).count() as f64;
        assert!(
            latte_given_croissant > 0.4 && latte_given_croissant > 1.5 * latte_share,
            "P(latte | croissant) {latte_given_croissant:.2}, P(latte) {latte_share:.2}"
        );
        let cakes: Vec<usize> = history
            .baskets
            .iter()
            .map(|b| b.iter().filter(|b| b.items.contains(&cake)).count())
            .filter(|n| *n > 0)
            .collect();
        let twice = cakes.iter().filter(|n| **n > 1).count();
        assert!(!cakes.is_empty());
        assert!(
            (twice as f64) < 0.1 * cakes.len() as f64,
            "{twice} of {} cake buyers bought it twice",
            cakes.len()
        );
    }

    #[test]
    fn a_long_tail_catalogue_has_the_size_asked_for() {
        let config = SynthConfig {
            merchants: 1,
            users: 300,
            days: 60,
            items: Some(2_000),
            ..SynthConfig::default()
        };
        let (events, _, _) = run(&config);
        let text = String::from_utf8(events).expect("utf-8");
        let catalogue = Catalogue::build(&ARCHETYPES[0], Some(2_000), 1);
        assert!((1_990..=2_000).contains(&catalogue.items.len()));
        assert!(
            text.contains("\"item_id\":\"bread_"),
            "long-tail items are bought"
        );
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let config = SynthConfig {
            users: 60,
            days: 60,
            ..SynthConfig::default()
        };
        let (a, ta, _) = run(&config);
        let (b, tb, _) = run(&config);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        let (c, _, _) = run(&SynthConfig { seed: 7, ..config });
        assert_ne!(a, c);
    }

    #[test]
    fn counts_add_up_and_every_clean_line_validates() {
        let config = SynthConfig {
            users: 150,
            days: 90,
            ..SynthConfig::default()
        };
        let (events, _, counts) = run(&config);
        let validator = crate::event::EventValidator::new(i64::MAX / 4);
        let mut valid = std::collections::HashSet::new();
        let mut invalid = 0;
        let mut total = 0;
        for line in events.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            total += 1;
            match validator.validate(line) {
                Ok(e) => {
                    valid.insert((e.merchant_id, e.event_id));
                }
                Err(_) => invalid += 1,
            }
        }
        assert_eq!(total, counts.lines);
        assert_eq!(valid.len() as u64, counts.unique_events);
        assert_eq!(invalid, counts.malformed_lines);
        assert_eq!(
            counts.lines,
            counts.unique_events + counts.duplicate_lines + counts.malformed_lines
        );
        assert!(counts.duplicate_lines > 0 && counts.malformed_lines > 0);
    }
}
