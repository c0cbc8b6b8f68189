//! The benchmark peer of `recur ingest --kafka`: a bare rdkafka consumer in a consumer group
//! that reads messages and does nothing with them, to measure the broker-and-client ceiling.
//!
//!     cargo run --release -p recur-ingest --example bare_consumer -- BROKERS TOPIC MESSAGES
//!
//! Prints one JSON line: {"messages", "seconds", "per_second"}; the clock starts before the
//! group join, as it does for `recur ingest`.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, expected] = args.as_slice() else {
        eprintln!("usage: bare_consumer BROKERS TOPIC MESSAGES");
        std::process::exit(2);
    };
    let expected: u64 = expected.parse().expect("MESSAGES is a number");
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bare-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < expected {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::Message as _;
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "gave up after 10 minutes at {seen} messages"
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"messages\":{seen},\"bytes\":{bytes},\"seconds\":{seconds:.3},\"per_second\":{:.0}}}",
        seen as f64 / seconds
    );
}
