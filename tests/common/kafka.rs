//! Kafka helpers for the end-to-end tests: the broker started by `scripts/services up`, topics
//! made with the Kafka admin API, and reading a topic back.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

/// Kafka tests restart the shared broker, so they take turns.
static BROKER: Mutex<()> = Mutex::new(());

/// The broker for one test: taken in turn, and empty (see `scripts/services fresh-kafka`), so
/// no test depends on what the ones before it left in the broker.
pub fn exclusive_broker() -> MutexGuard<'static, ()> {
    let guard = BROKER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    services("fresh-kafka");
    guard
}

pub fn services(command: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services");
    let status = std::process::Command::new(script)
        .arg(command)
        .status()
        .expect("scripts/services runs");
    assert!(status.success(), "scripts/services {command} failed");
}

/// The broker address; the test command starts the broker and sets this.
pub fn brokers() -> String {
    std::env::var("RECUR_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("RECUR_KAFKA_BROKERS is not set: run the tests with scripts/test, which starts the Kafka broker (scripts/services up)")
    })
}

/// Consumer settings that make group joins fast enough for tests.
pub const GROUP_OPTIONS: [&str; 6] = [
    "--kafka-option",
    "session.timeout.ms=6000",
    "--kafka-option",
    "heartbeat.interval.ms=1000",
    "--kafka-option",
    "max.poll.interval.ms=7000",
];

/// A topic name no other test run used.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Creates a topic through the admin API (any Kafka-protocol broker).
pub fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("cannot create topic {topic}: {e}"));
    }
}

/// A message read back from a topic: payload and headers.
pub struct ReadMessage {
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Reads every committed message of `topic` from the beginning (as a `read_committed` reader:
/// records of open or aborted transactions are not returned), until none arrived for `idle`.
pub fn read_topic(topic: &str, idle: Duration) -> Vec<ReadMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique_topic("reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let started = Instant::now();
    let mut last = Instant::now();
    // The first message can take a group join; then stop after `idle` of silence.
    while last.elapsed() < idle || (out.is_empty() && started.elapsed() < Duration::from_secs(30)) {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.expect("message");
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ReadMessage {
                payload: message.payload().unwrap_or_default().to_vec(),
                headers,
            });
            last = Instant::now();
        }
    }
    out
}

/// Restarts the broker (SIGKILL, then start again on the same port and data).
pub fn restart_broker() {
    services("restart-kafka");
}

/// The group's committed offset of each partition of `topic` (`None` where nothing was
/// committed), read without joining the group.
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(30))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| {
            committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
        })
        .collect()
}

/// The high watermark (next offset to be written) of each partition of `topic`.
pub fn high_watermarks(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// Asserts that `group` committed every message of `topic`: nothing was skipped past and
/// nothing is left to replay.
pub fn assert_all_committed(group: &str, topic: &str, partitions: i32) {
    let ends: Vec<Option<i64>> = high_watermarks(topic, partitions)
        .into_iter()
        .map(Some)
        .collect();
    assert_eq!(
        committed_offsets(group, topic, partitions),
        ends,
        "the group's committed offsets are the ends of the partitions"
    );
}

/// A member of a consumer group that takes its share of the partitions, reads them and never
/// commits: a consumer that hung. It leaves the group when dropped.
pub struct HungMember {
    stop: Arc<AtomicBool>,
    assigned: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HungMember {
    pub fn join(group: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let assigned = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let (stop, assigned) = (stop.clone(), assigned.clone());
            // Polling keeps it in the group and answers rebalances; closing it leaves.
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = consumer.poll(Duration::from_millis(100));
                    let count = consumer.assignment().map_or(0, |a| a.count());
                    assigned.store(count, Ordering::Relaxed);
                }
            }
        });
        Self {
            stop,
            assigned,
            thread: Some(thread),
        }
    }

    /// How many partitions the group gave it at its last poll.
    pub fn assigned(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }
}

impl Drop for HungMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
