//! How far a consumer group is behind a topic, per partition: the high watermark minus the
//! group's committed offset (the whole retained partition while the group has committed
//! nothing there). The probe never subscribes, so it never joins the group, takes no
//! partition from its members and commits nothing.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
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
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| Error::Kafka(format!("cannot read {}'s partitions: {e}", self.topic)))?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            return Err(Error::Kafka(format!(
                "topic {} has no partitions (does it exist?)",
                self.topic
            )));
        }
        let mut wanted = TopicPartitionList::new();
        for &partition in &partitions {
            wanted.add_partition(&self.topic, partition);
        }
        let committed = self
            .consumer
            .committed_offsets(wanted, timeout)
            .map_err(|e| {
                Error::Kafka(format!(
                    "cannot read group {}'s committed offsets: {e}",
                    self.group
                ))
            })?;
        partitions
            .into_iter()
            .map(|partition| {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&self.topic, partition, timeout)
                    .map_err(|e| {
                        Error::Kafka(format!(
                            "cannot read {}/{partition}'s watermarks: {e}",
                            self.topic
                        ))
                    })?;
                let from = match committed
                    .find_partition(&self.topic, partition)
                    .map(|p| p.offset())
                {
                    // Retention may have removed messages below a committed offset.
                    Some(Offset::Offset(offset)) => offset.max(low),
                    _ => low,
                };
                Ok(PartitionLag {
                    partition,
                    lag: (high - from).max(0),
                })
            })
            .collect()
    }
}
