//! `recur demo`: generate → ingest → replay a past push campaign → run → show → serve, with
//! nothing to set up.
//!
//! Rerunning on the same directory regenerates the same events (same seed), which the store
//! recognises as duplicates: the demo is idempotent, and shows it.

use crate::output::outln;
use recur_engine::event::EventValidator;
use std::time::{Duration, Instant};

use std::path::Path;

use anyhow::Context;
use recur_api::ApiLimits;
use recur_engine::jobs::RunOptions;
use recur_engine::snapshot::{ServingSnapshot, top_customers};
use recur_engine::store::AppendOutcome;
use recur_ingest::Source;
use recur_ingest::kafka::{ConsumeOptions, KafkaSettings, ensure_topic, produce_lines};

use super::{demo_campaign, generate, ingest, run, serve};
use crate::cli::{DataDir, DemoArgs, SynthShape};
use crate::output::thousands;
use recur_engine::synth;

const HIGHLIGHTED_CUSTOMERS: usize = 2;
const ITEMS_SHOWN: usize = 5;
/// Partitions of the topic `recur demo --kafka` creates when it is missing.
const DEMO_PARTITIONS: i32 = 4;

pub(crate) fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    // The demo keeps its events in its own directory, whatever store is configured.
    let data = DataDir::embedded(dir.clone());
    let events = dir.join("demo-events.ndjson.gz");
    outln!(
        "Recur demo: {} merchants, {} simulated users over {} days (seed {})\n",
        args.shape.merchants,
        thousands(args.shape.users as u64),
        args.shape.days,
        args.shape.seed
    );

    let started = Instant::now();
    let shape = with_campaign(&args.shape);
    let (counts, _) = generate::generate_to(&events, &shape)?;
    outln!(
        "  generated  {} lines: {} events, {} resent duplicates, {} malformed  ({:.1} s)",
        thousands(counts.lines),
        thousands(counts.unique_events),
        thousands(counts.duplicate_lines),
        thousands(counts.malformed_lines),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let (outcome, via) = match &args.kafka.kafka {
        Some(brokers) => (ingest_through_kafka(brokers, args, &events)?, " via Kafka"),
        None => (
            ingest::ingest_files(
                &data,
                std::slice::from_ref(&events),
                200_000,
                EventValidator::system(),
            )?,
            "",
        ),
    };
    outln!(
        "  ingested   {} accepted, {} duplicates, {} rejected{via}  ({:.1} s; reasons in {})",
        thousands(outcome.accepted),
        thousands(outcome.duplicates),
        thousands(outcome.rejected),
        started.elapsed().as_secs_f64(),
        dir.join("rejected").display()
    );
    if outcome.accepted == 0 && outcome.duplicates > 0 {
        outln!(
            "             (an earlier demo stored these events already: ingest stores each event once)"
        );
    }

    let merchants: Vec<String> = (0..shape.merchants).map(synth::merchant_id).collect();
    demo_campaign::set_time_zones(dir, &merchants)?;
    let started = Instant::now();
    let campaigns = match generate::config_of(&shape)?.campaign {
        Some(simulated) => demo_campaign::replay(&data, &simulated)?,
        None => Vec::new(),
    };
    if let Some(first) = campaigns.first() {
        outln!(
            "  campaign   {} replayed for {} merchants: planned the day before, delivered to a stand-in receiver  ({:.1} s)",
            first.campaign,
            campaigns.len(),
            started.elapsed().as_secs_f64()
        );
    }

    let started = Instant::now();
    let manifest = run::run_jobs(&data, RunOptions::default())?;
    outln!(
        "  jobs       snapshot {}  ({:.1} s)\n",
        manifest.name,
        started.elapsed().as_secs_f64()
    );
    outln!("{}\n", run::merchant_table(&manifest));

    if !campaigns.is_empty() {
        outln!(
            "The push campaign, measured against its holdout ({} days):",
            campaigns[0].window_days
        );
        for report in &campaigns {
            outln!("  {:<14} {}", report.merchant_id, report.summary);
        }
        outln!();
    }

    let snapshot = ServingSnapshot::load(dir, &manifest.name)?;
    let highlights = top_customers(dir, HIGHLIGHTED_CUSTOMERS)?;
    outln!("Your best customers, and what to push to them next:");
    for customer in &highlights {
        outln!(
            "\n  {} / {}  ({} orders, {:.2} spent)",
            customer.merchant_id,
            customer.user_id,
            customer.orders,
            customer.revenue
        );
        let Some(list) = snapshot.recommend(&customer.merchant_id, &customer.user_id, ITEMS_SHOWN)
        else {
            continue;
        };
        for (rank, item) in list.items.iter().enumerate() {
            outln!(
                "    {}. {:<26} {:>6.3}  {}",
                rank + 1,
                item.item_id,
                item.score,
                item.detail
            );
        }
    }

    let base = format!("http://{}", args.listen);
    outln!("\nOpen:");
    // The demo's data directory has no API key, so the server runs open on loopback and the
    // dashboard signs in by itself (a server with keys takes `/#key=rk_…`).
    outln!(
        "  {base}/   (the dashboard: overview, retention, RFM, audiences, campaigns, customers)"
    );
    if let Some(c) = highlights.first() {
        outln!(
            "  {base}/v1/merchants/{}/users/{}/recommendations?k=5",
            c.merchant_id,
            c.user_id
        );
    }
    if let Some(c) = highlights.first() {
        outln!(
            "  {base}/v1/merchants/{}/users/{}/profile   (RFM, lifecycle, cluster, P(alive), CLV)",
            c.merchant_id,
            c.user_id
        );
    }
    if let Some(m) = manifest.merchants.first() {
        let id = &m.merchant_id;
        outln!(
            "  {base}/v1/merchants/{id}/users/someone-new/recommendations   (an unknown user gets popular items)"
        );
        outln!("  {base}/v1/merchants/{id}/reports/retention?period=month");
        outln!("  {base}/v1/merchants/{id}/reports/rfm");
    }
    outln!("  {base}/healthz");
    let first = manifest
        .merchants
        .first()
        .map_or("m_bakery", |m| m.merchant_id.as_str());
    let shown = dir.display();
    outln!(
        "\nData: {shown}   Next: `recur report retention --data-dir {shown} --merchant {first} --period month`, \
         `recur report rfm --data-dir {shown} --merchant {first}`, `recur export recommendations --data-dir {shown} --k 10`"
    );

    if args.no_serve {
        return Ok(());
    }
    outln!("\nServing on {base} until Ctrl-C.");
    serve::serve_until_shutdown(
        &data,
        args.listen,
        ApiLimits::default(),
        EventValidator::system(),
        Duration::from_secs(2),
        None,
    )
}

/// The shape to generate: with the demo's past campaign unless the history is too short for
/// one or `--campaign` names another.
fn with_campaign(shape: &SynthShape) -> SynthShape {
    let mut shape = shape.clone();
    if shape.campaign.is_none() && shape.days >= demo_campaign::MIN_DAYS {
        shape.campaign = Some(demo_campaign::DEMO_CAMPAIGN.to_owned());
    }
    shape
}

/// Publishes the generated events to the topic, then consumes them into the store until the
/// topic has been idle for a few seconds.
fn ingest_through_kafka(
    brokers: &str,
    args: &DemoArgs,
    events: &Path,
) -> anyhow::Result<AppendOutcome> {
    let settings = KafkaSettings::new(brokers, &args.kafka.kafka_options)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ensure_topic(&settings, &args.kafka.topic, DEMO_PARTITIONS))
        .with_context(|| {
            format!("is a Kafka broker running at {brokers}? `scripts/services up` starts one")
        })?;
    let sources = [Source::File(events.to_path_buf())];
    let produced = produce_lines(&settings, &args.kafka.topic, &sources, &mut |_| {})?;
    if produced.failed > 0 {
        anyhow::bail!(
            "{} of the demo events were not accepted by the broker at {brokers}",
            produced.failed
        );
    }
    outln!(
        "  produced   {} messages to {} at {brokers}",
        thousands(produced.produced),
        args.kafka.topic
    );
    let options = ConsumeOptions {
        topic: args.kafka.topic.clone(),
        group: "recur-demo".to_owned(),
        until_idle: Some(Duration::from_secs(5)),
        ..ConsumeOptions::default()
    };
    ingest::consume_kafka(
        &DataDir::embedded(args.data_dir.clone()),
        &settings,
        &options,
    )
}
