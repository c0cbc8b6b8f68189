//! The Kafka consumer behind `recur ingest --kafka`: a consumer group member whose effect on
//! the store is exactly once.
//!
//! Promises:
//! - An offset is stored (and later committed) only after every message below it is durable:
//!   its event appended to the store, its rejection recorded under `rejected/`, or — with a
//!   dead-letter topic — its dead letter committed in the same Kafka transaction as the offset
//!   ([`super::dead_letters`]). A crash therefore replays at most the uncommitted tail, and the
//!   store's dedup on (merchant_id, event_id) absorbs what was already written.
//! - No polled message is ever dropped: while the store fails (or the writer is behind), every
//!   assigned partition is paused — partitions assigned by a rebalance meanwhile included — and
//!   a message that arrives anyway is kept for the next batch.
//! - The offset of a revoked partition is never stored: each revocation starts a new
//!   generation of the partition, and only offsets read in the current generation of a
//!   partition this consumer still owns are stored. The new owner replays the rest.
//!
//! Without a dead-letter topic, `enable.auto.offset.store=false` and librdkafka auto-commits
//! only stored offsets; on revocation and on shutdown they are committed synchronously.
//!
//! Batches are pipelined: the poll loop reads and validates the next batch while a writer
//! thread ([`super::writer`]) appends the previous one, one batch in flight at a time, so the
//! consumer keeps up with the broker instead of stalling on every fsync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use recur_engine::event::EventValidator;
use recur_engine::store::{AppendOutcome, EventStore, IngestBatch, RejectedLine};
use tracing::{debug, info, warn};

use super::KafkaSettings;
use super::dead_letters::{DeadLetter, DeadLetterSink, Delivered};
use super::lag::partition_lags;
use super::writer::{self, Written};
use crate::error::{Error, Result};

/// How `recur ingest --kafka` consumes.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub topic: String,
    pub group: String,
    /// Invalid messages go here with headers saying why; without it, to `rejected/`.
    pub dlq_topic: Option<String>,
    /// The `transactional.id` of the dead-letter producer; see
    /// [`super::dead_letters::InstanceSlot`]. Needed with `dlq_topic`.
    pub transactional_id: Option<String>,
    /// Exit after this long without a message, once the group has read the whole topic.
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
            transactional_id: None,
            until_idle: None,
            max_batch_messages: 50_000,
            max_batch_wait: Duration::from_secs(1),
            validator: EventValidator::system(),
        }
    }
}

/// How long the poll loop waits for a busy writer before it pauses the partitions.
const HOLD_AFTER: Duration = Duration::from_millis(500);

/// How often an idle consumer repeats which partitions of the topic are still unread.
const UNREAD_REPORT_EVERY: Duration = Duration::from_secs(30);

/// How often a quiet `--until-idle` consumer asks the broker whether the topic is drained:
/// each answer takes every partition's watermarks and the group's committed offsets, too
/// many round trips for every 100 ms poll pass while a departed member's partitions wait.
const DRAIN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Rebalance hooks: commit what is durable before partitions leave, start a new generation of
/// each revoked partition, pause newly assigned partitions while consumption is on hold.
struct GroupContext {
    /// When the group last moved partitions (an idle clock restarts then).
    rebalanced_at: Mutex<Option<Instant>>,
    /// Between a revocation and the next assignment: not idle, just rejoining.
    rejoining: AtomicBool,
    /// While set, every assigned partition is paused, including ones assigned from now on.
    holding: AtomicBool,
    /// Revocations of each partition so far: offsets read under an older one are not stored.
    generations: Mutex<HashMap<i32, u64>>,
    /// Offsets are committed inside dead-letter transactions, never by the consumer.
    transactional: bool,
}

impl GroupContext {
    fn note_rebalance(&self) {
        *self
            .rebalanced_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    fn generation(&self, partition: i32) -> u64 {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&partition)
            .copied()
            .unwrap_or(0)
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.note_rebalance();
            self.rejoining.store(true, Ordering::Relaxed);
            {
                let mut generations = self
                    .generations
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for partition in partitions.elements() {
                    *generations.entry(partition.partition()).or_default() += 1;
                }
            }
            if self.transactional {
                return;
            }
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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            info!(partitions = partitions.count(), "partitions assigned");
            self.note_rebalance();
            self.rejoining.store(false, Ordering::Relaxed);
            // librdkafka keeps a partition's pause flag across a revocation and a new
            // assignment: one paused by a hold that was released while the group was
            // rejoining (so `release` could not see it) would never deliver again. Every
            // assignment therefore sets the flag to what the consumer wants now.
            if self.holding.load(Ordering::Relaxed) {
                if let Err(e) = consumer.pause(partitions) {
                    warn!(error = %e, "cannot pause newly assigned partitions");
                }
            } else if let Err(e) = consumer.resume(partitions) {
                warn!(error = %e, "cannot resume newly assigned partitions");
            }
        }
    }
}

/// partition → (next offset to consume, generation it was read in)
type Progress = BTreeMap<i32, (i64, u64)>;

/// What has been read but is not yet handed to the writer.
#[derive(Default)]
struct Pending {
    batch: IngestBatch,
    dead_letters: Vec<DeadLetter>,
    next_offsets: Progress,
    messages: usize,
    first_at: Option<Instant>,
}

/// The batch the writer is appending: what to commit once it is durable.
struct InFlight {
    next_offsets: Progress,
    dead_letters: Vec<DeadLetter>,
}

/// Consumes until `stop` is set or the topic has been idle for `until_idle`; returns totals.
pub fn consume(
    store: &mut dyn EventStore,
    settings: &KafkaSettings,
    options: &ConsumeOptions,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(AppendOutcome),
) -> Result<AppendOutcome> {
    let transactional = options.dlq_topic.is_some();
    let auto_commit = if transactional { "false" } else { "true" };
    let consumer: BaseConsumer<GroupContext> = settings
        .client_config(
            &[("auto.offset.reset", "earliest")],
            &[
                ("group.id", &options.group),
                ("enable.auto.offset.store", "false"),
                ("enable.auto.commit", auto_commit),
                ("enable.partition.eof", "false"),
            ],
        )?
        .create_with_context(GroupContext {
            rebalanced_at: Mutex::new(None),
            rejoining: AtomicBool::new(false),
            holding: AtomicBool::new(false),
            generations: Mutex::new(HashMap::new()),
            transactional,
        })
        .map_err(|e| Error::Kafka(format!("cannot create the consumer: {e}")))?;
    let dead_letters = match &options.dlq_topic {
        Some(dlq) => {
            let id = options.transactional_id.as_deref().ok_or_else(|| {
                Error::KafkaConfig("a dead-letter topic needs a transactional id".to_owned())
            })?;
            Some(DeadLetterSink::new(
                settings,
                id,
                &options.group,
                dlq,
                &options.topic,
            )?)
        }
        None => None,
    };
    consumer
        .subscribe(&[&options.topic])
        .map_err(|e| Error::Kafka(format!("cannot subscribe to {}: {e}", options.topic)))?;
    info!(topic = %options.topic, group = %options.group, transactional, "consuming");

    std::thread::scope(|scope| {
        let (batches, to_write) = mpsc::sync_channel::<IngestBatch>(1);
        let (written, done) = mpsc::channel::<Written>();
        scope.spawn(move || writer::run(store, &to_write, &written, stop));
        let mut run = Consumption {
            consumer: &consumer,
            options,
            dead_letters,
            batches,
            done,
            in_flight: None,
            pending: Pending::default(),
            total: AppendOutcome::default(),
            stop,
            on_progress,
            unread_reported: None,
            drain_checked: None,
        };
        run.run()
        // Dropping `run` closes the batch channel, so the writer thread ends.
    })
}

struct Consumption<'a> {
    consumer: &'a BaseConsumer<GroupContext>,
    options: &'a ConsumeOptions,
    dead_letters: Option<DeadLetterSink>,
    batches: SyncSender<IngestBatch>,
    done: Receiver<Written>,
    in_flight: Option<InFlight>,
    pending: Pending,
    total: AppendOutcome,
    stop: &'a AtomicBool,
    on_progress: &'a mut dyn FnMut(AppendOutcome),
    /// When `--until-idle` last said which partitions keep it from stopping.
    unread_reported: Option<Instant>,
    /// When `--until-idle` last asked the broker whether the topic is drained.
    drain_checked: Option<Instant>,
}

impl Consumption<'_> {
    fn run(&mut self) -> Result<AppendOutcome> {
        let started = Instant::now();
        let mut last_message: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if self.poll(Duration::from_millis(100)) {
                last_message = Some(Instant::now());
            }
            if let Ok(written) = self.done.try_recv() {
                self.finish(written)?;
            }
            let due = self
                .pending
                .first_at
                .is_some_and(|t| t.elapsed() >= self.options.max_batch_wait);
            let full = self.pending.messages >= self.options.max_batch_messages;
            if full || due {
                if self.in_flight.is_some() && full {
                    self.wait_for_writer()?;
                }
                if self.in_flight.is_none() {
                    self.hand_over()?;
                }
            }
            if let Some(idle) = self.options.until_idle
                && self.is_idle(idle, started, last_message)
            {
                info!(idle_secs = idle.as_secs_f64(), "idle; stopping");
                break;
            }
        }
        // Finish what was read: the batch in flight, then the rest, then commit.
        if self.in_flight.is_some() {
            self.wait_for_writer()?;
        }
        if self.pending.messages > 0 {
            self.hand_over()?;
            self.wait_for_writer()?;
        }
        if self.dead_letters.is_none() {
            match self.consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => return Err(Error::Kafka(format!("final commit failed: {e}"))),
            }
        }
        info!(
            accepted = self.total.accepted,
            duplicates = self.total.duplicates,
            rejected = self.total.rejected,
            "consumer stopped"
        );
        Ok(self.total)
    }

    /// Polls once; a message is validated into the pending batch. Returns whether one came.
    fn poll(&mut self, timeout: Duration) -> bool {
        match self.consumer.poll(timeout) {
            None => false,
            Some(Err(e)) => {
                warn!(error = %e, "kafka error; librdkafka retries");
                false
            }
            Some(Ok(message)) => {
                self.accept(&message);
                true
            }
        }
    }

    fn accept(&mut self, message: &BorrowedMessage<'_>) {
        let pending = &mut self.pending;
        if pending.messages == 0 {
            pending
                .batch
                .events
                .reserve(self.options.max_batch_messages.min(1 << 20));
        }
        let payload = message.payload().unwrap_or_default();
        match self.options.validator.validate(payload) {
            Ok(event) => pending.batch.events.push(event),
            Err(rejection) if self.options.dlq_topic.is_some() => {
                pending.dead_letters.push(DeadLetter {
                    key: message.key().map(<[u8]>::to_vec),
                    payload: payload.to_vec(),
                    reason: rejection.reason,
                    partition: message.partition(),
                    offset: message.offset(),
                });
            }
            Err(rejection) => pending.batch.rejects.push(RejectedLine {
                source: format!("kafka:{}/{}", message.topic(), message.partition()),
                line: u64::try_from(message.offset()).unwrap_or_default(),
                reason: rejection.reason,
                raw: String::from_utf8_lossy(payload).into_owned(),
            }),
        }
        let generation = self.consumer.context().generation(message.partition());
        pending
            .next_offsets
            .insert(message.partition(), (message.offset() + 1, generation));
        pending.messages += 1;
        pending.first_at.get_or_insert_with(Instant::now);
    }

    /// Gives the pending batch to the (idle) writer.
    fn hand_over(&mut self) -> Result<()> {
        let taken = std::mem::take(&mut self.pending);
        self.in_flight = Some(InFlight {
            next_offsets: taken.next_offsets,
            dead_letters: taken.dead_letters,
        });
        self.batches
            .send(taken.batch)
            .map_err(|_| Error::Kafka("the store writer stopped unexpectedly".to_owned()))
    }

    /// Waits until the batch in flight is written, serving the group meanwhile; pauses every
    /// partition if that takes long, so reading cannot outrun a slow or failing store.
    fn wait_for_writer(&mut self) -> Result<()> {
        let started = Instant::now();
        let result = loop {
            match self.done.recv_timeout(Duration::from_millis(50)) {
                Ok(written) => break self.finish(written),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(Error::Kafka(
                        "the store writer stopped unexpectedly".to_owned(),
                    ));
                }
            }
            if started.elapsed() >= HOLD_AFTER {
                self.hold();
                // Keeps the group membership; paused partitions deliver nothing, and a
                // message that still arrives is kept, never dropped.
                self.poll(Duration::ZERO);
            }
        };
        self.release();
        result
    }

    /// Commits what the written batch covers, if it was made durable.
    fn finish(&mut self, written: Written) -> Result<()> {
        let Some(flight) = self.in_flight.take() else {
            return Err(Error::Kafka(
                "the store writer answered without a batch in flight".to_owned(),
            ));
        };
        let mut outcome = match written {
            Written::Durable(outcome) => outcome,
            Written::Abandoned(error) => {
                return Err(Error::Kafka(format!(
                    "stopped while the batch could not be written ({error}); its offsets were not committed, so the next run replays it"
                )));
            }
        };
        if self.dead_letters.is_some() {
            outcome.rejected += self.deliver_dead_letters(&flight)?;
        } else {
            let offsets = self.owned_offsets(&flight.next_offsets)?;
            if offsets.count() > 0
                && let Err(e) = self.consumer.store_offsets(&offsets)
            {
                debug!(error = %e, "some offsets could not be stored; their new owner replays them");
            }
        }
        debug!(accepted = outcome.accepted, "batch durable, offsets stored");
        self.total += outcome;
        (self.on_progress)(self.total);
        Ok(())
    }

    /// Delivers the batch's dead letters and commits its offsets — in one transaction where the
    /// broker supports it — retrying with backoff (partitions paused) until it succeeds or the
    /// consumer is stopped. Letters of partitions no longer owned are left to their new owner.
    /// Returns the letters delivered.
    fn deliver_dead_letters(&mut self, flight: &InFlight) -> Result<u64> {
        let mut backoff = writer::retry_policy();
        let result = loop {
            let offsets = self.owned_offsets(&flight.next_offsets)?;
            let owned: HashSet<i32> = offsets.elements().iter().map(|e| e.partition()).collect();
            let letters: Vec<&DeadLetter> = flight
                .dead_letters
                .iter()
                .filter(|l| owned.contains(&l.partition))
                .collect();
            if offsets.count() == 0 {
                break Ok(0);
            }
            let Some(group) = self.consumer.group_metadata() else {
                break Err(Error::Kafka(
                    "the consumer has no group metadata".to_owned(),
                ));
            };
            let attempt = self.try_deliver(&letters, &offsets, &group);
            match attempt {
                Ok(()) => break Ok(letters.len() as u64),
                Err(e) if self.stop.load(Ordering::Relaxed) => {
                    break Err(Error::Kafka(format!(
                        "stopped while the dead letters could not be delivered ({e}); their offsets were not committed, so the next run replays them"
                    )));
                }
                Err(_) => {
                    self.hold();
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    let until = Instant::now() + delay;
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        self.poll(Duration::from_millis(100));
                    }
                }
            }
        };
        self.release();
        result
    }

    fn try_deliver(
        &mut self,
        letters: &[&DeadLetter],
        offsets: &TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
    ) -> Result<()> {
        match self.sink()?.deliver(letters, offsets, group)? {
            Delivered::OffsetsCommitted => Ok(()),
            Delivered::CommitOffsets => {
                if let Err(e) = self.consumer.commit(offsets, CommitMode::Sync) {
                    // The letters are out; a replay repeats them (recognisable by headers).
                    warn!(error = %e, "offsets not committed after the dead letters were delivered");
                }
                Ok(())
            }
        }
    }

    fn sink(&mut self) -> Result<&mut DeadLetterSink> {
        self.dead_letters
            .as_mut()
            .ok_or_else(|| Error::Kafka("no dead-letter topic".to_owned()))
    }

    /// The next offsets of `progress` for partitions this consumer owns now and read in their
    /// current generation.
    fn owned_offsets(&self, progress: &Progress) -> Result<TopicPartitionList> {
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| Error::Kafka(format!("cannot read the assignment: {e}")))?;
        let assigned: HashSet<i32> = assignment
            .elements_for_topic(&self.options.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let context = self.consumer.context();
        let mut offsets = TopicPartitionList::new();
        for (&partition, &(next, generation)) in progress {
            if !assigned.contains(&partition) || context.generation(partition) != generation {
                debug!(
                    partition,
                    "partition revoked since it was read; its offset is left to the new owner"
                );
                continue;
            }
            offsets
                .add_partition_offset(&self.options.topic, partition, Offset::Offset(next))
                .map_err(|e| Error::Kafka(format!("bad offset: {e}")))?;
        }
        Ok(offsets)
    }

    /// Pauses every assigned partition, and (through the rebalance hook) every partition
    /// assigned from now on, until [`Self::release`].
    fn hold(&self) {
        let context = self.consumer.context();
        if context.holding.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.consumer.assignment() {
            Ok(assignment) => {
                if let Err(e) = self.consumer.pause(&assignment) {
                    warn!(error = %e, "cannot pause partitions");
                }
                info!(
                    partitions = assignment.count(),
                    "consumption paused until the batch is durable"
                );
            }
            Err(e) => warn!(error = %e, "cannot read the assignment to pause it"),
        }
    }

    fn release(&self) {
        let context = self.consumer.context();
        if !context.holding.swap(false, Ordering::Relaxed) {
            return;
        }
        match self.consumer.assignment() {
            Ok(assignment) => {
                if let Err(e) = self.consumer.resume(&assignment) {
                    warn!(error = %e, "cannot resume partitions");
                }
                info!("consumption resumed");
            }
            Err(e) => warn!(error = %e, "cannot read the assignment to resume it"),
        }
    }

    fn is_idle(&mut self, idle: Duration, started: Instant, last_message: Option<Instant>) -> bool {
        let context = self.consumer.context();
        if self.pending.messages > 0
            || self.in_flight.is_some()
            || context.rejoining.load(Ordering::Relaxed)
        {
            return false;
        }
        let rebalanced_at = *context
            .rebalanced_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let quiet_since = match (last_message, rebalanced_at) {
            (Some(m), Some(a)) => Some(m.max(a)),
            (m, a) => m.or(a),
        };
        // Never assigned, or assigned nothing (a departed member may still hold the
        // partitions until its session times out): give the group a generous chance to settle
        // before calling the topic idle.
        let settle = Duration::from_secs(30);
        let idle_for =
            quiet_since.map_or_else(|| started.elapsed().saturating_sub(settle), |t| t.elapsed());
        let owns_nothing = self.consumer.assignment().map_or(true, |a| a.count() == 0);
        let needed = if owns_nothing { idle.max(settle) } else { idle };
        if idle_for < needed
            || self
                .drain_checked
                .is_some_and(|at| at.elapsed() < DRAIN_CHECK_EVERY)
        {
            return false;
        }
        self.drain_checked = Some(Instant::now());
        self.drained()
    }

    /// Whether the group has read the whole topic: this member's partitions up to their high
    /// watermark from its read positions (a partition nothing was fetched from yet stands
    /// where the group committed), and every other partition by the group's committed offset.
    /// A member that died still holds its partitions until its session times out, and one
    /// that hangs holds them longer; the topic is not idle while they are unread, so the
    /// group's rebalance hands them here instead of `--until-idle` stopping short.
    fn drained(&mut self) -> bool {
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        let lags = match partition_lags(
            self.consumer,
            &self.options.topic,
            &self.options.group,
            Some(&positions),
            Duration::from_secs(5),
        ) {
            Ok(lags) => lags,
            Err(e) => {
                debug!(error = %e, "cannot tell whether the topic is drained");
                return false;
            }
        };
        let unread: Vec<_> = lags.iter().filter(|p| p.lag > 0).collect();
        if unread.is_empty() {
            return true;
        }
        if self
            .unread_reported
            .is_none_or(|at| at.elapsed() >= UNREAD_REPORT_EVERY)
        {
            self.unread_reported = Some(Instant::now());
            let partitions: Vec<String> = unread
                .iter()
                .map(|p| format!("{}:{}", p.partition, p.lag))
                .collect();
            info!(
                unread = %partitions.join(","),
                "no message for the idle time, but partitions (partition:messages) are unread; \
                 waiting for the group to hand them over or their holder to commit them"
            );
        }
        false
    }
}
