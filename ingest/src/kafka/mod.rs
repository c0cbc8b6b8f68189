//! Kafka: consuming events with an exactly-once effect on the store, publishing them, and the
//! dead-letter topic (transactional, so exactly once for `read_committed` readers).
//!
//! Recur speaks plain Kafka protocol through librdkafka: Apache Kafka, Redpanda, a managed
//! Kafka or the tansu broker the tests use all work with the same flags. Security settings
//! pass through as librdkafka properties (`--kafka-option sasl.mechanism=PLAIN`); their
//! values are never logged.

mod consumer;
mod dead_letters;
mod lag;
mod producer;
mod writer;

use rdkafka::ClientConfig;

pub use consumer::{ConsumeOptions, consume};
pub use dead_letters::InstanceSlot;
pub use lag::{LagProbe, PartitionLag};
pub use producer::{EventPublisher, ProduceSummary, event_key, produce_lines};

use crate::error::{Error, Result};

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`
    pub brokers: String,
    /// Extra librdkafka properties, e.g. `security.protocol=SASL_SSL`.
    pub options: Vec<(String, String)>,
}

impl KafkaSettings {
    /// Parses `key=value` options as given on the command line.
    pub fn new(brokers: impl Into<String>, options: &[String]) -> Result<Self> {
        let options = options
            .iter()
            .map(|o| {
                o.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| {
                        Error::KafkaConfig(format!("--kafka-option {o:?} is not key=value"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            brokers: brokers.into(),
            options,
        })
    }

    /// A client configuration with the brokers and the user's options. `defaults` apply unless
    /// the user sets them; `fixed` are settings Recur's guarantees depend on, which the user
    /// may not override.
    pub(crate) fn client_config(
        &self,
        defaults: &[(&str, &str)],
        fixed: &[(&str, &str)],
    ) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.options {
            if fixed.iter().any(|(k, v)| k == key && v != value) {
                return Err(Error::KafkaConfig(format!(
                    "--kafka-option {key} cannot be changed: Recur's delivery guarantee depends on it"
                )));
            }
            config.set(key, value);
        }
        for (key, value) in fixed {
            config.set(*key, *value);
        }
        Ok(config)
    }
}

/// A flag set by SIGTERM or SIGINT, so a consumer finishes its batch, commits and exits 0.
pub fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .map_err(|e| Error::Kafka(format!("cannot watch for signal {signal}: {e}")))?;
    }
    Ok(stop)
}

/// Creates `topic` with `partitions` partitions unless it exists (for the demo, which should
/// need no setup). Any Kafka-protocol broker with the CreateTopics API works.
pub async fn ensure_topic(settings: &KafkaSettings, topic: &str, partitions: i32) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;

    let admin: AdminClient<DefaultClientContext> = settings
        .client_config(&[], &[])?
        .create()
        .map_err(|e| Error::Kafka(format!("cannot create an admin client: {e}")))?;
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .map_err(|e| Error::Kafka(format!("cannot create topic {topic}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Kafka(format!("cannot create topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

/// Sends one record, waiting while librdkafka's local queue is full (back-pressure).
pub(crate) fn send_waiting<C, K, P>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P>,
) -> Result<()>
where
    C: rdkafka::producer::ProducerContext<DeliveryOpaque = ()> + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let topic = record.topic.to_owned();
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err((e, _)) => return Err(Error::Kafka(format!("cannot send to {topic}: {e}"))),
        }
    }
}
