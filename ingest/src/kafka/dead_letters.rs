//! The dead-letter topic: exactly once for `read_committed` readers where the broker supports
//! transactions, at least once (at most one batch again after a crash) where it does not.
//!
//! Transactional: a batch's invalid messages and the consumer offsets that cover the whole
//! batch are committed in one Kafka transaction, after the batch's events are durable in the
//! store. A dead letter becomes visible to `read_committed` readers exactly when the offset past
//! its source message is committed; a crash before the commit aborts both (the next producer
//! with the same `transactional.id` fences and aborts the open transaction), and the replay
//! produces it again in a new transaction.
//!
//! Whether the broker can commit transactions is found out at start, before any letter is
//! produced and before the consumer joins its group: a probe transaction commits one offset
//! (partition 0 of the dead-letter topic, offset 0) for a probe group of its own,
//! `<group>.recur-txn-probe`, which nothing consumes. A broker without EndTxn (tansu 0.6)
//! fails it, and the sink falls back to at least once: letters are delivered by an idempotent producer, then
//! the batch's offsets are committed synchronously at once, so a crash between the two repeats
//! one batch's letters. Every letter carries `reason`, `source_topic`, `source_partition` and
//! `source_offset` headers, so a reader can recognise a repeat.
//!
//! The `transactional.id` of an instance ([`InstanceSlot`]) is the same after a restart, so
//! the restarted consumer fences its predecessor at once instead of waiting for the broker
//! to time the open transaction out, and different from every other instance running.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, info, warn};

use super::KafkaSettings;
use crate::error::{Error, Result};

/// Longest wait for one transactional call before it counts as failed and is retried.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A message that failed validation, bound for the dead-letter topic.
#[derive(Debug, Clone)]
pub(super) struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub reason: String,
    pub partition: i32,
    pub offset: i64,
}

/// Counts failed deliveries; a failed one makes the commit fail, and the batch is retried.
struct DeliveryCounter {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, (): ()) {
        if let Err((e, _)) = result {
            debug!(error = %e, "dead-letter delivery failed; the transaction is retried");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// This consumer instance's `transactional.id`, held (by a lock file) while it runs.
pub struct InstanceSlot {
    _lock: File,
    pub transactional_id: String,
}

impl InstanceSlot {
    /// The lowest free slot of `group` among the consumers on this host that keep their lock
    /// files in `lock_dir` (the data directory): `recur-<group>-<host>-<n>`.
    pub fn acquire(lock_dir: &Path, group: &str) -> Result<Self> {
        let dir = lock_dir.join("_kafka");
        std::fs::create_dir_all(&dir).map_err(|e| Error::Read {
            path: dir.clone(),
            source: e,
        })?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        for n in 0..10_000 {
            let path = dir.join(format!("{safe}.slot-{n}.lock"));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::Read {
                    path: path.clone(),
                    source: e,
                })?;
            if file.try_lock().is_ok() {
                return Ok(Self {
                    _lock: file,
                    transactional_id: format!("recur-{group}-{host}-{n}"),
                });
            }
        }
        Err(Error::Kafka(format!(
            "no free consumer slot for group {group} in {}",
            dir.display()
        )))
    }
}

/// How letters reach the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Letters and offsets in one transaction.
    Transactional,
    /// Letters delivered, then the caller commits the offsets.
    AtLeastOnce,
}

/// What a successful [`DeadLetterSink::deliver`] leaves to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivered {
    /// The offsets were committed with the letters.
    OffsetsCommitted,
    /// The letters are acknowledged; the caller commits the offsets now.
    CommitOffsets,
}

/// The dead-letter producer of one consumer instance.
pub(super) struct DeadLetterSink {
    settings: KafkaSettings,
    transactional_id: String,
    dlq_topic: String,
    source_topic: String,
    producer: ThreadedProducer<DeliveryCounter>,
    mode: Mode,
}

impl DeadLetterSink {
    /// The sink of a consumer in `group`; finds out first whether the broker commits
    /// transactions (see the module documentation).
    pub(super) fn new(
        settings: &KafkaSettings,
        transactional_id: &str,
        group: &str,
        dlq_topic: &str,
        source_topic: &str,
    ) -> Result<Self> {
        let producer = Self::producer(settings, transactional_id)?;
        let mut sink = Self {
            settings: settings.clone(),
            transactional_id: transactional_id.to_owned(),
            dlq_topic: dlq_topic.to_owned(),
            source_topic: source_topic.to_owned(),
            producer,
            mode: Mode::Transactional,
        };
        sink.probe(group)?;
        Ok(sink)
    }

    /// Commits one offset for a probe group of `group`'s own in a transaction without letters.
    /// On a broker that cannot commit transactions, switches to at least once.
    fn probe(&mut self, group: &str) -> Result<()> {
        let probe_group = format!("{group}.recur-txn-probe");
        let probe_consumer: rdkafka::consumer::BaseConsumer = self
            .settings
            .client_config(
                &[],
                &[("group.id", &probe_group), ("enable.auto.commit", "false")],
            )?
            .create()
            .map_err(|e| Error::Kafka(format!("cannot create the probe consumer: {e}")))?;
        let metadata = rdkafka::consumer::Consumer::group_metadata(&probe_consumer)
            .ok_or_else(|| Error::Kafka("the probe consumer has no group metadata".to_owned()))?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.dlq_topic, 0, rdkafka::Offset::Offset(0))
            .map_err(|e| Error::Kafka(format!("bad probe offset: {e}")))?;
        match self.try_commit(&[], &offsets, &metadata) {
            Ok(()) => {
                info!(
                    "the broker commits transactions: dead letters are exactly once for read_committed readers"
                );
                self.mode = Mode::Transactional;
                Ok(())
            }
            Err(e) if e.to_string().contains("not supported by broker") => {
                warn!(error = %e, "the broker cannot commit transactions: dead letters are delivered at least once (a crash may repeat one batch; the source_* headers identify repeats)");
                self.producer = self.plain_producer()?;
                self.mode = Mode::AtLeastOnce;
                Ok(())
            }
            Err(e) => Err(Error::Kafka(format!(
                "cannot find out whether the broker commits transactions: {e}"
            ))),
        }
    }

    /// Sends `letters`: with `offsets` in one transaction, or delivered and acknowledged for
    /// the caller to commit `offsets`. On failure nothing is committed and the caller retries.
    pub(super) fn deliver(
        &mut self,
        letters: &[&DeadLetter],
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<Delivered> {
        match self.mode {
            Mode::Transactional => {
                self.commit(letters, offsets, group)?;
                Ok(Delivered::OffsetsCommitted)
            }
            Mode::AtLeastOnce => {
                self.producer.context().failed.store(0, Ordering::Relaxed);
                for letter in letters {
                    self.send(letter)?;
                }
                self.producer
                    .flush(TRANSACTION_TIMEOUT)
                    .map_err(|e| Error::Kafka(format!("dead letters not acknowledged: {e}")))?;
                self.check_delivered()?;
                Ok(Delivered::CommitOffsets)
            }
        }
    }

    /// An idempotent producer without transactions, for brokers that cannot commit them.
    fn plain_producer(&self) -> Result<ThreadedProducer<DeliveryCounter>> {
        self.settings
            .client_config(&[], &[("enable.idempotence", "true"), ("acks", "all")])?
            .create_with_context(DeliveryCounter {
                failed: AtomicU64::new(0),
            })
            .map_err(|e| Error::Kafka(format!("cannot create the dead-letter producer: {e}")))
    }

    fn check_delivered(&self) -> Result<()> {
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(Error::Kafka(format!(
                "{failed} dead letters were not delivered to {}",
                self.dlq_topic
            )));
        }
        Ok(())
    }

    /// A producer with `transactional.id`, initialised: any transaction a previous instance
    /// left open under that id is aborted now.
    fn producer(
        settings: &KafkaSettings,
        transactional_id: &str,
    ) -> Result<ThreadedProducer<DeliveryCounter>> {
        let producer: ThreadedProducer<DeliveryCounter> = settings
            .client_config(&[], &[("transactional.id", transactional_id)])?
            .create_with_context(DeliveryCounter {
                failed: AtomicU64::new(0),
            })
            .map_err(|e| Error::Kafka(format!("cannot create the dead-letter producer: {e}")))?;
        producer.init_transactions(TRANSACTION_TIMEOUT).map_err(|e| {
            Error::Kafka(format!(
                "cannot start transactions as {transactional_id} (does the broker support them?): {e}"
            ))
        })?;
        Ok(producer)
    }

    /// Sends `letters` and commits `offsets` for `group` in one transaction. On failure the
    /// transaction is aborted (nothing of it becomes visible) and the error returned; the
    /// caller retries with the offsets it then owns.
    fn commit(
        &mut self,
        letters: &[&DeadLetter],
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let attempt = self.try_commit(letters, offsets, group);
        if let Err(e) = &attempt {
            warn!(error = %e, letters = letters.len(), "dead-letter transaction failed; aborting it");
            self.recover(e);
        }
        attempt
    }

    fn try_commit(
        &self,
        letters: &[&DeadLetter],
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let txn = |what: &str| {
            let what = what.to_owned();
            move |e: KafkaError| Error::Kafka(format!("{what}: {e}"))
        };
        self.producer.context().failed.store(0, Ordering::Relaxed);
        self.producer
            .begin_transaction()
            .map_err(txn("cannot begin a transaction"))?;
        for letter in letters {
            self.send(letter)?;
        }
        if offsets.count() > 0 {
            self.producer
                .send_offsets_to_transaction(offsets, group, TRANSACTION_TIMEOUT)
                .map_err(txn("cannot add the offsets to the transaction"))?;
        }
        self.producer
            .commit_transaction(TRANSACTION_TIMEOUT)
            .map_err(txn("cannot commit the transaction"))?;
        // librdkafka fails the commit when a message failed; this is a second guard.
        self.check_delivered()
    }

    fn send(&self, letter: &DeadLetter) -> Result<()> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(self.source_topic.as_str()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_str()),
            });
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.dlq_topic)
            .payload(&letter.payload[..])
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(&key[..]);
        }
        super::send_waiting(&self.producer, record)
    }

    /// Leaves the producer ready for the next transaction: aborts the failed one, and starts
    /// over with a new producer when the error was fatal (fenced, say).
    fn recover(&mut self, error: &Error) {
        if let Err(e) = self.producer.abort_transaction(TRANSACTION_TIMEOUT) {
            debug!(error = %e, "abort after a failed transaction");
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            warn!(%code, %reason, after = %error, "the dead-letter producer hit a fatal error; starting a new one");
            match Self::producer(&self.settings, &self.transactional_id) {
                Ok(producer) => self.producer = producer,
                Err(e) => warn!(error = %e, "cannot restart the dead-letter producer yet"),
            }
        }
    }
}
