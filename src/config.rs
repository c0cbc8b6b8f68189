//! `recur.toml`: settings of serve and ingest (store, listen address, Kafka, limits) in one
//! file, found by `--config FILE` or `RECUR_CONFIG`.
//!
//! Guarantees: an unknown key or a value of the wrong type is refused with its line and
//! column, before any command runs; a setting from the file is only a default, so a flag or
//! a `RECUR_*` variable given for the same setting wins (clap resolves flag, then variable,
//! then default, and the file's values become the defaults). `recur demo` ignores the file's
//! store and Kafka, so trying the demo never writes into a configured store.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use serde::Deserialize;

/// The whole file. Every section and key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    clickhouse: ClickHouseSection,
    #[serde(default)]
    serve: ServeSection,
    #[serde(default)]
    ingest: IngestSection,
    #[serde(default)]
    kafka: KafkaSection,
    #[serde(default)]
    validation: ValidationSection,
    #[serde(default)]
    log: LogSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    data_dir: Option<PathBuf>,
    /// `embedded` or `clickhouse`, as `--store`.
    kind: Option<StoreKindSetting>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKindSetting {
    Embedded,
    Clickhouse,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClickHouseSection {
    url: Option<String>,
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeSection {
    listen: Option<SocketAddr>,
    reload_every: Option<f64>,
    max_body_bytes: Option<u64>,
    request_timeout: Option<f64>,
    max_concurrent_requests: Option<u64>,
    kafka_lag_every: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestSection {
    batch_events: Option<u64>,
    max_batch_wait_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaSection {
    brokers: Option<String>,
    topic: Option<String>,
    group: Option<String>,
    dlq_topic: Option<String>,
    /// librdkafka properties, as `--kafka-option KEY=VALUE`.
    #[serde(default)]
    options: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidationSection {
    max_price: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    format: Option<LogFormatSetting>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormatSetting {
    Text,
    Json,
}

/// A setting: the clap argument id it feeds and its value(s) as the command line spells them.
struct Setting {
    arg: &'static str,
    values: Vec<String>,
}

impl Config {
    /// The file named by `--config` in `args` or by `RECUR_CONFIG`, if any.
    pub(crate) fn locate(args: &[OsString]) -> Option<PathBuf> {
        let mut args = args.iter().skip(1).take_while(|a| *a != "--");
        while let Some(arg) = args.next() {
            if arg == "--config" {
                return args.next().map(PathBuf::from);
            }
            if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
                return Some(PathBuf::from(path));
            }
        }
        std::env::var_os("RECUR_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| {
            format!(
                "{} is not a valid Recur config (README lists every key)",
                path.display()
            )
        })
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        // toml's message names the line, the column and the unknown key with the keys it expected.
        let config: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.check()?;
        Ok(config)
    }

    /// Values serde accepts but no command would.
    fn check(&self) -> anyhow::Result<()> {
        let positive = [
            ("serve.reload_every", self.serve.reload_every),
            ("serve.request_timeout", self.serve.request_timeout),
            ("serve.kafka_lag_every", self.serve.kafka_lag_every),
            ("validation.max_price", self.validation.max_price),
        ];
        for (key, value) in positive {
            if let Some(value) = value
                && !(value.is_finite() && value > 0.0)
            {
                anyhow::bail!("{key} must be a positive number, got {value}");
            }
        }
        if let Some(brokers) = &self.kafka.brokers
            && brokers.trim().is_empty()
        {
            anyhow::bail!("kafka.brokers is empty; remove it or give host:port[,host:port...]");
        }
        Ok(())
    }

    /// The settings, each as the argument it is a default for.
    fn settings(&self) -> Vec<Setting> {
        fn text<T: ToString>(value: Option<&T>) -> Option<String> {
            value.map(ToString::to_string)
        }
        let log_format = self.log.format.map(|f| match f {
            LogFormatSetting::Text => "text".to_owned(),
            LogFormatSetting::Json => "json".to_owned(),
        });
        let store_kind = self.store.kind.map(|k| match k {
            StoreKindSetting::Embedded => "embedded".to_owned(),
            StoreKindSetting::Clickhouse => "clickhouse".to_owned(),
        });
        let single = [
            ("store", store_kind),
            ("clickhouse_url", self.clickhouse.url.clone()),
            ("clickhouse_database", self.clickhouse.database.clone()),
            ("clickhouse_user", self.clickhouse.user.clone()),
            ("clickhouse_password", self.clickhouse.password.clone()),
            (
                "data_dir",
                self.store
                    .data_dir
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
            ),
            ("listen", text(self.serve.listen.as_ref())),
            ("reload_every", text(self.serve.reload_every.as_ref())),
            ("max_body_bytes", text(self.serve.max_body_bytes.as_ref())),
            ("request_timeout", text(self.serve.request_timeout.as_ref())),
            (
                "max_concurrent_requests",
                text(self.serve.max_concurrent_requests.as_ref()),
            ),
            ("kafka_lag_every", text(self.serve.kafka_lag_every.as_ref())),
            ("batch_events", text(self.ingest.batch_events.as_ref())),
            (
                "max_batch_wait_ms",
                text(self.ingest.max_batch_wait_ms.as_ref()),
            ),
            ("kafka", self.kafka.brokers.clone()),
            ("topic", self.kafka.topic.clone()),
            ("group", self.kafka.group.clone()),
            ("dlq_topic", self.kafka.dlq_topic.clone()),
            ("max_price", text(self.validation.max_price.as_ref())),
            ("log_format", log_format),
        ];
        let mut settings: Vec<Setting> = single
            .into_iter()
            .filter_map(|(arg, value)| {
                value.map(|v| Setting {
                    arg,
                    values: vec![v],
                })
            })
            .collect();
        if !self.kafka.options.is_empty() {
            settings.push(Setting {
                arg: "kafka_options",
                values: self
                    .kafka
                    .options
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            });
        }
        settings
    }

    /// The command line with the file's settings as defaults of every (sub)command that has
    /// the argument, except `demo`.
    pub(crate) fn apply(&self, command: clap::Command) -> clap::Command {
        let settings = self.settings();
        apply_to(command, &settings)
    }
}

fn apply_to(mut command: clap::Command, settings: &[Setting]) -> clap::Command {
    for setting in settings {
        if command.get_arguments().any(|a| a.get_id() == setting.arg) {
            let values = setting.values.clone();
            // A required flag (`--data-dir`) is satisfied by the file.
            command = command.mut_arg(setting.arg, |arg| {
                arg.default_values(values).required(false)
            });
        }
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .filter(|name| name != "demo")
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| apply_to(sub, settings));
    }
    command
}

/// Settles what only the parsed command line can: `recur ingest` reads files unless it
/// consumes Kafka, so files named on its command line win over brokers from the config file
/// (and naming none with brokers configured means "consume").
pub(crate) fn resolve(cli: &mut crate::cli::Cli, matches: &clap::ArgMatches) {
    if let crate::cli::Command::Ingest(args) = &mut cli.command
        && let Some(("ingest", ingest)) = matches.subcommand()
        && !args.files.is_empty()
        && ingest.value_source("kafka") == Some(ValueSource::DefaultValue)
    {
        args.kafka.kafka = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let error = Config::parse("[serve]\nlisten = \"127.0.0.1:9000\"\nlistn = 1\n")
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("listn"), "{error}");
    }

    #[test]
    fn a_wrong_type_is_refused_with_its_line() {
        let error = Config::parse("[kafka]\ntopic = \"t\"\n\n[serve]\nmax_body_bytes = \"big\"\n")
            .expect_err("wrong type")
            .to_string();
        assert!(error.contains("line 5"), "{error}");
    }

    #[test]
    fn a_bad_listen_address_and_a_negative_timeout_are_refused() {
        assert!(Config::parse("[serve]\nlisten = \"everywhere\"\n").is_err());
        let error = Config::parse("[serve]\nrequest_timeout = -1.0\n")
            .expect_err("negative")
            .to_string();
        assert!(error.contains("serve.request_timeout"), "{error}");
    }

    #[test]
    fn the_config_is_found_by_flag_before_the_variable() {
        let args: Vec<OsString> = ["recur", "serve", "--config", "a.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(Config::locate(&args), Some(PathBuf::from("a.toml")));
        let args: Vec<OsString> = ["recur", "--config=b.toml", "stats"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(Config::locate(&args), Some(PathBuf::from("b.toml")));
    }
}
