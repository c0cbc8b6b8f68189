//! Benchmark of the customer-analytics jobs (issue: 10M events, 1M customers, embedded
//! store): RFM, weekly lifecycle, weekly retention over 52 cohorts and clustering, timed one
//! after another on one merchant, with the process's peak memory.
//!
//!     cargo run --release --example analytics_bench -- DATA_DIR [CUSTOMERS]
//!
//! Generates the events into DATA_DIR through the store's normal append path when it is
//! empty (about 10 events per customer over 364 days: orders of 1–2 lines, some refunded,
//! views, 10% of customers with a unionid and 2% with a second, stitched user id), then
//! prints one JSON line of timings.

use std::time::Instant;

use polars::prelude::IntoLazy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur_engine::analytics::MerchantAnalytics;
use recur_engine::analytics::activity::Activity;
use recur_engine::analytics::cohort::RetentionSpec;
use recur_engine::analytics::period::Period;
use recur_engine::event::{Channel, Event, EventType};
use recur_engine::settings::MerchantSettings;
use recur_engine::store::{EmbeddedStore, EventStore, IngestBatch};

const MERCHANT: &str = "m_bench";
const DAY_MS: i64 = 86_400_000;
const DAYS: i64 = 364;
/// Monday 2025-11-03 00:00 Shanghai: 52 whole weeks follow.
const START_MS: i64 = 1_762_099_200_000;
const CATEGORIES: [&str; 8] = [
    "bread", "cake", "coffee", "dairy", "snacks", "fruit", "frozen", "gifts",
];

struct Generator {
    rng: ChaCha8Rng,
    next_id: u64,
}

impl Generator {
    fn event(&mut self, user: &str, kind: EventType, ts_ms: i64, channel: Channel) -> Event {
        self.next_id += 1;
        Event {
            event_id: format!("b{}", self.next_id),
            merchant_id: MERCHANT.to_owned(),
            user_id: user.to_owned(),
            event_type: kind,
            ts_ms,
            channel,
            item_id: None,
            category: None,
            order_id: None,
            price: None,
            quantity: 1,
            scene: None,
            openid: Some(format!("o_{user}")),
            unionid: None,
            properties: None,
        }
    }

    fn customer(&mut self, i: u64, out: &mut Vec<Event>) {
        let user = format!("c{i:07}");
        let alias = format!("c{i:07}s");
        let unionid = self.rng.random_bool(0.1).then(|| format!("un{i}"));
        let has_alias = unionid.is_some() && self.rng.random_bool(0.2);
        let channel = Channel::ALL[self.rng.random_range(0..4)];
        let taste = self.rng.random_range(0..CATEGORIES.len());
        let mut t = START_MS + self.rng.random_range(0..DAYS * DAY_MS);
        let mut order = 0;
        loop {
            order += 1;
            let who = if has_alias && self.rng.random_bool(0.5) {
                &alias
            } else {
                &user
            };
            let order_id = format!("{user}-o{order}");
            let lines = self.rng.random_range(1..=2);
            for line in 0..lines {
                let category = if self.rng.random_bool(0.7) {
                    taste
                } else {
                    self.rng.random_range(0..CATEGORIES.len())
                };
                let item = format!("{}-{}", CATEGORIES[category], self.rng.random_range(0..50));
                let price = 5.0 + f64::from(self.rng.random_range(0..60u32));
                let mut event = self.event(who, EventType::Purchase, t + line, channel);
                event.item_id = Some(item.clone());
                event.category = Some(CATEGORIES[category].to_owned());
                event.order_id = Some(order_id.clone());
                event.price = Some(price);
                event.unionid.clone_from(&unionid);
                if self.rng.random_bool(0.03) {
                    let mut refund = event.clone();
                    self.next_id += 1;
                    refund.event_id = format!("b{}", self.next_id);
                    refund.event_type = EventType::Refund;
                    refund.ts_ms = t + 3 * DAY_MS;
                    out.push(refund);
                }
                out.push(event);
            }
            for _ in 0..self.rng.random_range(0..=5) {
                let seen = t - self.rng.random_range(0..DAY_MS);
                let mut view = self.event(&user, EventType::View, seen, channel);
                view.item_id = Some(format!(
                    "{}-{}",
                    CATEGORIES[taste],
                    self.rng.random_range(0..50)
                ));
                view.unionid.clone_from(&unionid);
                out.push(view);
            }
            // Exponential gaps (mean 40 days); 30% leave after each order.
            let gap = -40.0 * (1.0 - self.rng.random::<f64>()).ln();
            t += (gap * DAY_MS as f64) as i64;
            if self.rng.random_bool(0.3) || t >= START_MS + DAYS * DAY_MS {
                break;
            }
        }
    }
}

fn generate(store: &mut EmbeddedStore, customers: u64) -> recur_engine::Result<u64> {
    let mut generator = Generator {
        rng: ChaCha8Rng::seed_from_u64(7),
        next_id: 0,
    };
    let mut total = 0;
    let chunk = 50_000;
    for start in (0..customers).step_by(chunk as usize) {
        let mut events = Vec::with_capacity(chunk as usize * 12);
        for i in start..(start + chunk).min(customers) {
            generator.customer(i, &mut events);
        }
        total += store
            .append(&IngestBatch {
                events,
                rejects: Vec::new(),
            })?
            .accepted;
        eprintln!(
            "generated {} customers, {total} events",
            (start + chunk).min(customers)
        );
    }
    Ok(total)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let data_dir = args
        .next()
        .ok_or("usage: analytics_bench DATA_DIR [CUSTOMERS]")?;
    let customers: u64 = args.next().map_or(Ok(1_000_000), |c| c.parse())?;
    let mut store = EmbeddedStore::open(&data_dir)?;
    if store.merchants()?.is_empty() {
        generate(&mut store, customers)?;
    }
    let events = store.stats()?.total;

    let settings = MerchantSettings::default();
    let as_of = START_MS + DAYS * DAY_MS - 1;
    let mut timings = Vec::new();
    let started = Instant::now();
    let mut lap = Instant::now();
    let mut time = |name: &str, timings: &mut Vec<(String, f64)>| {
        timings.push((name.to_owned(), lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let analytics = MerchantAnalytics::load(
        &mut store,
        MERCHANT,
        &settings,
        Some(recur_engine::analytics::period::AsOf::Instant(as_of)),
    )?
    .ok_or("no events")?;
    time("load_stitch_net", &mut timings);
    let rfm = analytics.rfm()?;
    time("rfm", &mut timings);
    let lifecycle = analytics.lifecycle(Period::Week, Activity::Purchase)?;
    time("lifecycle_week", &mut timings);
    let retention = analytics.retention(&RetentionSpec {
        period: Period::Week,
        ..RetentionSpec::default()
    })?;
    time("retention_week", &mut timings);
    let (features, names) = recur_engine::analytics::cluster::features(
        rfm.clone().lazy(),
        analytics.lines.clone().lazy(),
        analytics.categories.clone().lazy(),
    )?;
    time("cluster_features", &mut timings);
    let clusters =
        recur_engine::analytics::cluster::cluster(&features, &names)?.ok_or("too few customers")?;
    time("clusters", &mut timings);
    let total = started.elapsed().as_secs_f64();
    let cohorts = retention.column("cohort")?.n_unique()?;
    let report = serde_json::json!({
        "events": events,
        "customers": rfm.height(),
        "stitched_user_ids": analytics.stitched()?.height(),
        "weeks": lifecycle.height(),
        "cohorts": cohorts,
        "k": clusters.k,
        "seconds": timings.iter().map(|(n, s)| (n.clone(), serde_json::json!((s * 1000.0).round() / 1000.0))).collect::<serde_json::Map<_, _>>(),
        "total_seconds": (total * 1000.0).round() / 1000.0,
        "peak_rss_mib": peak_rss_mib().round(),
    });
    println!("{report}");
    Ok(())
}
