//! Benchmark of the embedded store at scale: builds a store of N events through ordinary
//! appends (compaction as it happens in production), then, in fresh processes, measures what
//! opening it costs a reader and a writer, and how much memory the writer's dedup index takes
//! against holding every key in a hash set (what the store did before key runs).
//!
//!     cargo run --release -p recur-engine --example store_bench -- build DIR EVENTS
//!     cargo run --release -p recur-engine --example store_bench -- open DIR
//!     cargo run --release -p recur-engine --example store_bench -- hashset EVENTS
//!
//! Each mode prints one JSON line; `peak_rss_mib` is the process's VmHWM.

use std::time::Instant;

use recur_engine::event::{Channel, Event, EventType};
use recur_engine::store::dedup::{KeySet, event_key};
use recur_engine::store::{EmbeddedStore, EventStore, IngestBatch, TimeRange};

const BATCH: u64 = 200_000;
const MERCHANTS: u64 = 3;
/// 2024-01-01T00:00:00Z: events spread over two years.
const START_MS: i64 = 1_704_067_200_000;
const SPAN_MS: i64 = 2 * 365 * 86_400_000;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The `i`-th synthetic event: a view of one of 50k items by one of 5M users.
fn event(i: u64, total: u64) -> Event {
    let merchant = i % MERCHANTS;
    // Time grows with i (as a stream does), with jitter inside a day.
    let ts_ms = START_MS
        + i64::try_from(u128::from(i) * SPAN_MS as u128 / u128::from(total)).expect("fits")
        + i64::try_from((i * 7919) % 86_400_000).expect("fits");
    Event {
        event_id: format!("e{i:012}"),
        merchant_id: format!("m{merchant}"),
        user_id: format!("u{:07}", (i * 2_654_435_761) % 5_000_000),
        event_type: EventType::View,
        ts_ms,
        channel: Channel::MiniProgram,
        item_id: Some(format!("i{:05}", (i * 40_503) % 50_000)),
        category: None,
        order_id: None,
        price: None,
        quantity: 1,
        scene: None,
        openid: None,
        unionid: None,
        properties: None,
    }
}

fn batch(from: u64, to: u64, total: u64) -> IngestBatch {
    IngestBatch {
        events: (from..to).map(|i| event(i, total)).collect(),
        rejects: Vec::new(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["build", dir, events] => build(dir, events.parse()?),
        ["open", dir] => open(dir),
        ["hashset", events] => hashset(events.parse()?),
        _ => {
            eprintln!("usage: store_bench build DIR EVENTS | open DIR | hashset EVENTS");
            std::process::exit(2);
        }
    }
}

fn build(dir: &str, total: u64) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut store = EmbeddedStore::open(dir)?;
    let mut accepted = 0;
    let mut from = 0;
    while from < total {
        let to = (from + BATCH).min(total);
        accepted += store.append(&batch(from, to, total))?.accepted;
        from = to;
        if from % (BATCH * 50) == 0 {
            eprintln!(
                "{from} events, {:.0} s, index {:.0} MiB",
                started.elapsed().as_secs_f64(),
                store.index_memory_bytes() as f64 / 1_048_576.0
            );
        }
    }
    let stats = store.stats()?;
    println!(
        "{}",
        serde_json::json!({
            "mode": "build",
            "events": accepted,
            "seconds": started.elapsed().as_secs_f64(),
            "files": stats.files,
            "commits": stats.commits,
            "index_mib": store.index_memory_bytes() as f64 / 1_048_576.0,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

fn open(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut store = EmbeddedStore::open(dir)?;
    let reader_open_ms = started.elapsed().as_secs_f64() * 1000.0;
    let merchants = store.merchants()?;
    let scan_started = Instant::now();
    let planned = store.scan(&merchants[0], TimeRange::ALL)?.is_some();
    let plan_ms = scan_started.elapsed().as_secs_f64() * 1000.0;
    // From the log: `stats()` would scan every data file, and its memory would count as the
    // writer's below.
    let total = store.stored_events()?;
    // A writer: the first append opens the dedup index. Half new events, half replayed ones.
    let writer_started = Instant::now();
    let mut replay = batch(total - 25_000, total, total);
    replay
        .events
        .extend(batch(total, total + 25_000, total).events);
    let outcome = store.append(&replay)?;
    let first_append_ms = writer_started.elapsed().as_secs_f64() * 1000.0;
    let steady_started = Instant::now();
    let outcome_2 = store.append(&batch(total + 25_000, total + 75_000, total))?;
    let second_append_ms = steady_started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "mode": "open",
            "events": total,
            "reader_open_ms": reader_open_ms,
            "scan_plan_ms": plan_ms,
            "planned": planned,
            "first_append_ms": first_append_ms,
            "first_append": {"accepted": outcome.accepted, "duplicates": outcome.duplicates},
            "second_append_ms": second_append_ms,
            "second_append_accepted": outcome_2.accepted,
            "index_mib": store.index_memory_bytes() as f64 / 1_048_576.0,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

/// The peer: every key of `total` events in a hash set, as the store held them before.
fn hashset(total: u64) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut keys = KeySet::default();
    for i in 0..total {
        keys.insert(event_key(
            &format!("m{}", i % MERCHANTS),
            &format!("e{i:012}"),
        ));
    }
    println!(
        "{}",
        serde_json::json!({
            "mode": "hashset",
            "keys": keys.len(),
            "seconds": started.elapsed().as_secs_f64(),
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
