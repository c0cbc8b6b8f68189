//! Publishing events to Kafka: `recur produce` for demos and load tests, and the HTTP intake
//! of `recur serve --kafka`.
//!
//! Messages are keyed by `merchant_id/user_id`, so one user's events land in one partition and
//! stay in order; the producer is idempotent, so its own retries never duplicate a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::producer::{
    BaseRecord, FutureProducer, FutureRecord, Producer, ProducerContext, ThreadedProducer,
};
use serde::{Deserialize, Serialize};

use super::KafkaSettings;
use crate::error::{Error, Result};
use crate::source::Source;

/// The partitioning key of an event line: `merchant_id/user_id`, or `None` if the line does
/// not even parse (it is still published, and the consumer dead-letters it).
pub fn event_key(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Ids<'a> {
        #[serde(borrow)]
        merchant_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        user_id: Option<std::borrow::Cow<'a, str>>,
    }
    let ids: Ids<'_> = serde_json::from_slice(line).ok()?;
    Some(format!("{}/{}", ids.merchant_id?, ids.user_id?))
}

/// Totals of `recur produce`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProduceSummary {
    pub produced: u64,
    pub failed: u64,
    /// Why the first failed message failed, e.g. an unknown topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

struct Outcomes {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl ClientContext for Outcomes {}

impl ProducerContext for Outcomes {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                // One line per failure would flood the terminal; the total is reported.
                tracing::debug!(error = %e, "message not delivered");
                self.first_error
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert_with(|| e.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn idempotent() -> [(&'static str, &'static str); 2] {
    [("enable.idempotence", "true"), ("acks", "all")]
}

/// Publishes every non-blank line of `sources` to `topic`; returns once all are acknowledged.
pub fn produce_lines(
    settings: &KafkaSettings,
    topic: &str,
    sources: &[Source],
    on_progress: &mut dyn FnMut(u64),
) -> Result<ProduceSummary> {
    let producer: ThreadedProducer<Outcomes> = settings
        .client_config(&[("linger.ms", "20")], &idempotent())?
        .create_with_context(Outcomes {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        })
        .map_err(|e| Error::Kafka(format!("cannot create the producer: {e}")))?;
    let mut sent = 0u64;
    let mut buf = Vec::new();
    for source in sources {
        let mut reader = source.open()?;
        while reader.next_line(&mut buf)?.is_some() {
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let key = event_key(&buf);
            let mut record = BaseRecord::<str, [u8]>::to(topic).payload(&buf[..]);
            if let Some(key) = &key {
                record = record.key(key.as_str());
            }
            super::send_waiting(&producer, record)?;
            sent += 1;
            if sent.is_multiple_of(10_000) {
                on_progress(sent);
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| Error::Kafka(format!("not every message was acknowledged: {e}")))?;
    on_progress(sent);
    let outcomes = producer.context();
    let first_error = outcomes.first_error.lock().expect("not poisoned").clone();
    Ok(ProduceSummary {
        first_error,
        produced: outcomes.delivered.load(Ordering::Relaxed),
        failed: outcomes.failed.load(Ordering::Relaxed)
            + sent.saturating_sub(
                outcomes.delivered.load(Ordering::Relaxed)
                    + outcomes.failed.load(Ordering::Relaxed),
            ),
    })
}

/// Publishes validated lines for the HTTP intake; each call returns after the broker acked.
pub struct EventPublisher {
    producer: FutureProducer,
    topic: String,
}

impl EventPublisher {
    pub fn new(settings: &KafkaSettings, topic: impl Into<String>) -> Result<Self> {
        let producer = settings
            .client_config(&[], &idempotent())?
            .create()
            .map_err(|e| Error::Kafka(format!("cannot create the producer: {e}")))?;
        Ok(Self {
            producer,
            topic: topic.into(),
        })
    }

    /// Sends all lines, then waits for every acknowledgement. Fails if any was not delivered.
    pub async fn publish(&self, lines: &[&[u8]]) -> Result<u64> {
        let mut deliveries = Vec::with_capacity(lines.len());
        for line in lines {
            let key = event_key(line).unwrap_or_default();
            let record = FutureRecord::to(&self.topic)
                .key(key.as_str())
                .payload(*line);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| Error::Kafka(format!("cannot send to {}: {e}", self.topic)))?;
            deliveries.push(delivery);
        }
        let mut acked = 0;
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => acked += 1,
                Ok(Err((e, _))) => {
                    return Err(Error::Kafka(format!(
                        "the broker did not accept an event: {e}"
                    )));
                }
                Err(_) => return Err(Error::Kafka("the producer was shut down".to_owned())),
            }
        }
        Ok(acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_merchant_and_user() {
        assert_eq!(
            event_key(br#"{"merchant_id":"m","user_id":"u","x":1}"#),
            Some("m/u".to_owned())
        );
        assert_eq!(event_key(br#"{"merchant_id":"m"}"#), None);
        assert_eq!(event_key(b"{broken"), None);
    }
}
