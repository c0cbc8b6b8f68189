//! How far a consumer group is behind a topic, per partition: the high watermark minus the
//! group's committed offset (the whole retained partition while the group has committed
//! nothing there). The probe never subscribes, so it never joins the group, takes no
//! partition from its members and commits nothing.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSettings;
use crate::error::{Error, Result};

/// One partition's lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// Messages at or above the committed offset, never negative.
    pub lag: i64,
}

/// Reads a group's committed offsets and a topic's watermarks.
pub struct LagProbe {
    consumer: BaseConsumer,
    topic: String,
    group: String,
}

impl LagProbe {
    pub fn new(settings: &KafkaSettings, topic: &str, group: &str) -> Result<Self> {
        let consumer = settings
            .client_config(
                &[],
                &[
                    ("group.id", group),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ],
            )?
            .create()
            .map_err(|e| Error::Kafka(format!("cannot create the lag probe: {e}")))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Every partition of the topic with its lag, in partition order.
    pub fn measure(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        partition_lags(&self.consumer, &self.topic, &self.group, None, timeout)
    }
}

/// Every partition of `topic` with its lag in partition order: behind the read position in
/// `positions` where it gives one (a member's own partitions), else behind `group`'s committed
/// offset, else the whole retained partition.
pub(crate) fn partition_lags<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    group: &str,
    positions: Option<&TopicPartitionList>,
    timeout: Duration,
) -> Result<Vec<PartitionLag>> {
    let offset_of = |list: &TopicPartitionList, partition: i32| match list
        .find_partition(topic, partition)
        .map(|p| p.offset())
    {
        Some(Offset::Offset(offset)) => Some(offset),
        _ => None,
    };
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Error::Kafka(format!("cannot read {topic}'s partitions: {e}")))?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.sort_unstable();
    if partitions.is_empty() {
        return Err(Error::Kafka(format!(
            "topic {topic} has no partitions (does it exist?)"
        )));
    }
    let mut wanted = TopicPartitionList::new();
    for &partition in &partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(wanted, timeout).map_err(|e| {
        Error::Kafka(format!(
            "cannot read group {group}'s committed offsets: {e}"
        ))
    })?;
    partitions
        .into_iter()
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|e| {
                    Error::Kafka(format!("cannot read {topic}/{partition}'s watermarks: {e}"))
                })?;
            let from = positions
                .and_then(|p| offset_of(p, partition))
                .or_else(|| offset_of(&committed, partition))
                // Retention may have removed messages below a committed offset.
                .map_or(low, |offset| offset.max(low));
            Ok(PartitionLag {
                partition,
                lag: (high - from).max(0),
            })
        })
        .collect()
}
