//! The Kafka consumer behind `recur ingest --kafka`: a consumer group member whose effect on
//! the store is exactly once.
//!
//! Promise: an offset is stored (and later committed) only after every message below it is
//! durable — its event appended to the store, or its rejection delivered to the dead-letter
//! topic (or recorded under `rejected/`). A crash therefore replays at most the uncommitted
//! tail, and the store's dedup on (merchant_id, event_id) absorbs what was already written.
//! `enable.auto.offset.store=false`; librdkafka auto-commits only stored offsets; on
//! revocation and on shutdown the stored offsets are committed synchronously.
//! The dead-letter topic is at-least-once: every message there carries headers with its
//! source topic, partition and offset, so a replay's copy can be recognised.
//!
//! If the store fails, the consumer pauses its partitions, retries with exponential backoff
//! and commits nothing until the batch is written. A restarted broker is reconnected to by
//! librdkafka; consumption goes on from the committed offsets.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use recur_engine::event::EventValidator;
use recur_engine::store::{AppendOutcome, EventStore, IngestBatch, RejectedLine};
use tracing::{debug, info, warn};

use super::KafkaSettings;
use crate::error::{Error, Result};

/// How `recur ingest --kafka` consumes.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub topic: String,
    pub group: String,
    /// Invalid messages go here with headers saying why; without it, to `rejected/`.
    pub dlq_topic: Option<String>,
    /// Exit after this long without a message (once partitions were assigned).
    pub until_idle: Option<Duration>,
    /// A batch is written when it holds this many messages...
    pub max_batch_messages: usize,
    /// ...or when its first message is this old.
    pub max_batch_wait: Duration,
    /// Judges each message; its clock is read per message, so days of uptime change nothing.
    pub validator: EventValidator,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self {
            topic: "events".to_owned(),
            group: "recur".to_owned(),
            dlq_topic: None,
            until_idle: None,
            max_batch_messages: 50_000,
            max_batch_wait: Duration::from_secs(1),
            validator: EventValidator::system(),
        }
    }
}

/// Rebalance hooks: commit what is durable before partitions leave, note when the group
/// last moved partitions (an idle clock restarts then).
struct GroupContext {
    rebalanced_at: Mutex<Option<Instant>>,
}

impl GroupContext {
    fn note_rebalance(&self) {
        *self.rebalanced_at.lock().expect("not poisoned") = Some(Instant::now());
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.note_rebalance();
            // Only stored offsets are committed, and those cover durable events only.
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => info!(
                    partitions = partitions.count(),
                    "committed before revocation"
                ),
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    warn!(error = %e, "commit before revocation failed; the next owner replays, dedup absorbs")
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            info!(partitions = partitions.count(), "partitions assigned");
            self.note_rebalance();
        }
    }
}

/// Counts failed deliveries of the dead-letter producer.
struct DeliveryCounter {
    failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, (): ()) {
        if let Err((e, _)) = result {
            tracing::debug!(error = %e, "dead-letter delivery failed; it will be retried");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A message that failed validation, bound for the dead-letter topic.
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    reason: String,
    partition: i32,
    offset: i64,
}

/// What has been read but is not yet durable.
#[derive(Default)]
struct Pending {
    batch: IngestBatch,
    dead_letters: Vec<DeadLetter>,
    /// partition → next offset to consume
    next_offsets: BTreeMap<i32, i64>,
    messages: usize,
    first_at: Option<Instant>,
}

/// Consumes until `stop` is set or the topic has been idle for `until_idle`; returns totals.
pub fn consume(
    store: &mut dyn EventStore,
    settings: &KafkaSettings,
    options: &ConsumeOptions,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(AppendOutcome),
) -> Result<AppendOutcome> {
    let consumer: BaseConsumer<GroupContext> = settings
        .client_config(
            &[("auto.offset.reset", "earliest")],
            &[
                ("group.id", &options.group),
                ("enable.auto.offset.store", "false"),
                ("enable.auto.commit", "true"),
                ("enable.partition.eof", "false"),
            ],
        )?
        .create_with_context(GroupContext {
            rebalanced_at: Mutex::new(None),
        })
        .map_err(|e| Error::Kafka(format!("cannot create the consumer: {e}")))?;
    consumer
        .subscribe(&[&options.topic])
        .map_err(|e| Error::Kafka(format!("cannot subscribe to {}: {e}", options.topic)))?;
    let dead_letters = match &options.dlq_topic {
        Some(_) => Some(dead_letter_producer(settings)?),
        None => None,
    };
    info!(topic = %options.topic, group = %options.group, "consuming");

    let validator = &options.validator;
    let mut pending = Pending::default();
    let mut total = AppendOutcome::default();
    let started = Instant::now();
    let mut last_message: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => warn!(error = %e, "kafka error; librdkafka retries"),
            Some(Ok(message)) => {
                last_message = Some(Instant::now());
                accept_message(&message, validator, options, &mut pending);
            }
        }
        let due = pending
            .first_at
            .is_some_and(|t| t.elapsed() >= options.max_batch_wait);
        if pending.messages >= options.max_batch_messages || due {
            total += flush(
                store,
                &consumer,
                dead_letters.as_ref(),
                options,
                &mut pending,
                stop,
            )?;
            on_progress(total);
        }
        if let Some(idle) = options.until_idle {
            let rebalanced_at = *consumer
                .context()
                .rebalanced_at
                .lock()
                .expect("not poisoned");
            let quiet_since = match (last_message, rebalanced_at) {
                (Some(m), Some(a)) => Some(m.max(a)),
                (m, a) => m.or(a),
            };
            // Never assigned at all (the group gave every partition to others): give the
            // join a generous chance before calling the topic idle.
            let idle_for = quiet_since.map_or_else(
                || started.elapsed().saturating_sub(Duration::from_secs(30)),
                |t| t.elapsed(),
            );
            if idle_for >= idle && pending.messages == 0 && caught_up(&consumer) {
                info!(idle_secs = idle.as_secs_f64(), "idle; stopping");
                break;
            }
        }
    }
    total += flush(
        store,
        &consumer,
        dead_letters.as_ref(),
        options,
        &mut pending,
        stop,
    )?;
    on_progress(total);
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => return Err(Error::Kafka(format!("final commit failed: {e}"))),
    }
    info!(
        accepted = total.accepted,
        duplicates = total.duplicates,
        rejected = total.rejected,
        "consumer stopped"
    );
    Ok(total)
}

/// Whether every assigned partition has been read up to its high watermark, so an idle
/// consumer is truly done and not merely waiting for a slow fetch.
fn caught_up(consumer: &BaseConsumer<GroupContext>) -> bool {
    let (Ok(assignment), Ok(positions)) = (consumer.assignment(), consumer.position()) else {
        return false;
    };
    assignment.elements().iter().all(|partition| {
        let Ok((low, high)) = consumer.fetch_watermarks(
            partition.topic(),
            partition.partition(),
            Duration::from_secs(5),
        ) else {
            return false;
        };
        let position = positions
            .find_partition(partition.topic(), partition.partition())
            .and_then(|p| match p.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        // No position yet means nothing was fetched: done only if there is nothing to fetch.
        position.map_or(low >= high, |p| p >= high)
    })
}

fn accept_message(
    message: &rdkafka::message::BorrowedMessage<'_>,
    validator: &EventValidator,
    options: &ConsumeOptions,
    pending: &mut Pending,
) {
    let payload = message.payload().unwrap_or_default();
    match validator.validate(payload) {
        Ok(event) => pending.batch.events.push(event),
        Err(rejection) if options.dlq_topic.is_some() => pending.dead_letters.push(DeadLetter {
            key: message.key().map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            reason: rejection.reason,
            partition: message.partition(),
            offset: message.offset(),
        }),
        Err(rejection) => pending.batch.rejects.push(RejectedLine {
            source: format!("kafka:{}/{}", message.topic(), message.partition()),
            line: u64::try_from(message.offset()).unwrap_or_default(),
            reason: rejection.reason,
            raw: String::from_utf8_lossy(payload).into_owned(),
        }),
    }
    pending
        .next_offsets
        .insert(message.partition(), message.offset() + 1);
    pending.messages += 1;
    pending.first_at.get_or_insert_with(Instant::now);
}

fn dead_letter_producer(settings: &KafkaSettings) -> Result<ThreadedProducer<DeliveryCounter>> {
    settings
        .client_config(&[], &[("enable.idempotence", "true")])?
        .create_with_context(DeliveryCounter {
            failed: std::sync::atomic::AtomicU64::new(0),
        })
        .map_err(|e| Error::Kafka(format!("cannot create the dead-letter producer: {e}")))
}

/// Makes the pending batch durable, then stores its offsets. Retries until it succeeds or
/// `stop` is set; while retrying, the partitions are paused and nothing is committed.
fn flush(
    store: &mut dyn EventStore,
    consumer: &BaseConsumer<GroupContext>,
    dead_letters: Option<&ThreadedProducer<DeliveryCounter>>,
    options: &ConsumeOptions,
    pending: &mut Pending,
    stop: &AtomicBool,
) -> Result<AppendOutcome> {
    if pending.messages == 0 {
        return Ok(AppendOutcome::default());
    }
    let taken = std::mem::take(pending);
    let dead_letter_count = taken.dead_letters.len() as u64;
    let mut backoff = retry_policy();
    let mut paused: Option<TopicPartitionList> = None;

    if let (Some(producer), Some(topic)) = (dead_letters, &options.dlq_topic) {
        loop {
            match send_dead_letters(producer, topic, &options.topic, &taken.dead_letters) {
                Ok(()) => break,
                Err(e) => wait_before_retry(consumer, &mut paused, &mut backoff, stop, &e)?,
            }
        }
    }
    let mut outcome = loop {
        match store.append(&taken.batch) {
            Ok(outcome) => break outcome,
            Err(e) => {
                wait_before_retry(consumer, &mut paused, &mut backoff, stop, &Error::Engine(e))?;
            }
        }
    };
    if let Some(partitions) = paused {
        consumer
            .resume(&partitions)
            .map_err(|e| Error::Kafka(format!("cannot resume partitions: {e}")))?;
        info!("store is back; consumption resumed");
    }
    outcome.rejected += dead_letter_count;

    let mut offsets = TopicPartitionList::new();
    for (partition, next) in &taken.next_offsets {
        offsets
            .add_partition_offset(&options.topic, *partition, Offset::Offset(*next))
            .map_err(|e| Error::Kafka(format!("bad offset: {e}")))?;
    }
    if let Err(e) = consumer.store_offsets(&offsets) {
        // Partitions revoked meanwhile: their new owner replays them and dedup absorbs.
        debug!(error = %e, "some offsets could not be stored");
    }
    debug!(
        messages = taken.messages,
        accepted = outcome.accepted,
        "batch durable, offsets stored"
    );
    Ok(outcome)
}

fn retry_policy() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Pauses consumption (once), waits the next backoff delay while still serving the group,
/// and fails only if asked to stop.
fn wait_before_retry(
    consumer: &BaseConsumer<GroupContext>,
    paused: &mut Option<TopicPartitionList>,
    backoff: &mut impl Iterator<Item = Duration>,
    stop: &AtomicBool,
    error: &Error,
) -> Result<()> {
    if paused.is_none() {
        let assignment = consumer
            .assignment()
            .map_err(|e| Error::Kafka(format!("cannot read the assignment: {e}")))?;
        if let Err(e) = consumer.pause(&assignment) {
            warn!(error = %e, "cannot pause partitions");
        }
        *paused = Some(assignment);
    }
    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
    warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "batch not durable yet; nothing committed, retrying");
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Kafka(format!(
                "stopped while the batch could not be written ({error}); its offsets were not committed, so the next run replays it"
            )));
        }
        // Polling keeps the group membership alive; paused partitions deliver nothing.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            debug!(
                partition = message.partition(),
                offset = message.offset(),
                "message while paused is replayed later"
            );
        }
    }
    Ok(())
}

fn send_dead_letters(
    producer: &ThreadedProducer<DeliveryCounter>,
    dlq_topic: &str,
    source_topic: &str,
    letters: &[DeadLetter],
) -> Result<()> {
    producer.context().failed.store(0, Ordering::Relaxed);
    for letter in letters {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(source_topic),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_str()),
            });
        let mut record = BaseRecord::<[u8], [u8]>::to(dlq_topic)
            .payload(&letter.payload[..])
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(&key[..]);
        }
        super::send_waiting(producer, record)?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| Error::Kafka(format!("dead letters not acknowledged: {e}")))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(Error::Kafka(format!(
            "{failed} dead letters were not delivered to {dlq_topic}"
        )));
    }
    Ok(())
}
