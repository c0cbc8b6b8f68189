//! `recur produce`: NDJSON files onto a Kafka topic.

use crate::output::outln;
use recur_ingest::Source;
use recur_ingest::kafka::{KafkaSettings, produce_lines};

use crate::cli::ProduceArgs;
use crate::output::{progress_bar, thousands};

pub(crate) fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let Some(brokers) = &args.kafka.kafka else {
        anyhow::bail!(
            "--kafka BROKERS (or RECUR_KAFKA_BROKERS) is required, e.g. --kafka 127.0.0.1:9092"
        );
    };
    let settings = KafkaSettings::new(brokers, &args.kafka.kafka_options)?;
    let sources: Vec<Source> = args.files.iter().map(|f| Source::parse(f)).collect();
    let bar = progress_bar(None, "producing");
    let summary = produce_lines(&settings, &args.kafka.topic, &sources, &mut |n| {
        bar.set_position(n)
    })?;
    bar.finish_and_clear();
    if args.json {
        outln!("{}", serde_json::to_string(&summary)?);
    } else {
        outln!(
            "produced {} messages to {} ({} failed)",
            thousands(summary.produced),
            args.kafka.topic,
            thousands(summary.failed)
        );
    }
    if summary.failed > 0 {
        anyhow::bail!(
            "{} messages were not acknowledged by the broker",
            summary.failed
        );
    }
    Ok(())
}
