//! Command-line arguments. Every flag has a `RECUR_*` environment variable where that helps.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use recur_engine::store::{ClickHouseConfig, StoreChoice};

#[derive(Parser)]
#[command(
    name = "recur",
    version,
    about = "Marketing analytics and personalized push recommendations for merchants",
    long_about = "Recur ingests merchants' purchase and browse events, builds customer profiles and \
                  repeat-purchase-aware recommendations, and serves them over HTTP.",
    after_help = "Start with `recur demo`, which generates data, ingests it, runs the jobs and serves the result.\n\
                  Logs go to stderr (--log-format json for collectors); set RECUR_LOG=debug for more."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text for people or as one JSON object per line for log collectors.
    #[arg(long, global = true, value_enum, env = "RECUR_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A recur.toml with settings of serve and ingest (store, listen address, Kafka, limits);
    /// flags and RECUR_* variables override it. README lists every key.
    #[arg(long, global = true, env = "RECUR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

impl Cli {
    pub(crate) fn is_server(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

#[derive(Args, Clone)]
pub(crate) struct DataDir {
    /// Directory of the embedded store and its snapshots (created if missing).
    #[arg(long, env = "RECUR_DATA_DIR", value_name = "DIR")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl DataDir {
    /// The data directory with the embedded store (the demo's choice, whatever is configured).
    pub(crate) fn embedded(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            store: StoreArgs::default(),
        }
    }

    /// Opens the chosen event store; the data directory keeps snapshots, settings, keys and
    /// campaigns whichever it is.
    pub(crate) fn open_store(&self) -> anyhow::Result<recur_engine::store::AnyStore> {
        let choice = self.store.choice();
        recur_engine::store::AnyStore::open(&choice, &self.data_dir).with_context(
            || match &choice {
                StoreChoice::Embedded => {
                    format!("cannot open the store in {}", self.data_dir.display())
                }
                StoreChoice::ClickHouse(c) => format!(
                    "cannot open the ClickHouse store (database {} at {})",
                    c.database, c.url
                ),
            },
        )
    }
}

/// Where `--store clickhouse` looks without `--clickhouse-url`: ClickHouse's default HTTP port.
const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:8123";
const DEFAULT_CLICKHOUSE_DATABASE: &str = "recur";

/// Which store holds the events: the embedded one in --data-dir, or a ClickHouse server.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Event store")]
pub(crate) struct StoreArgs {
    /// Where events are stored: `embedded` (Parquet files under --data-dir) or `clickhouse`.
    #[arg(id = "store", long = "store", env = "RECUR_STORE", value_enum, default_value_t = StoreKind::Embedded, value_name = "STORE")]
    pub kind: StoreKind,
    /// ClickHouse's HTTP interface (with --store clickhouse).
    #[arg(
        long,
        env = "RECUR_CLICKHOUSE_URL",
        default_value = DEFAULT_CLICKHOUSE_URL,
        value_name = "URL"
    )]
    pub clickhouse_url: String,
    /// ClickHouse database of Recur's tables, created with them on first use.
    #[arg(
        long,
        env = "RECUR_CLICKHOUSE_DATABASE",
        default_value = DEFAULT_CLICKHOUSE_DATABASE,
        value_name = "NAME"
    )]
    pub clickhouse_database: String,
    /// ClickHouse user (default: the server's `default`).
    #[arg(long, env = "RECUR_CLICKHOUSE_USER", value_name = "USER")]
    pub clickhouse_user: Option<String>,
    /// ClickHouse password; prefer the variable or the config file, which stay out of
    /// process listings.
    #[arg(
        long,
        env = "RECUR_CLICKHOUSE_PASSWORD",
        hide_env_values = true,
        hide_default_value = true,
        value_name = "PASSWORD"
    )]
    pub clickhouse_password: Option<String>,
}

impl Default for StoreArgs {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            clickhouse_url: DEFAULT_CLICKHOUSE_URL.to_owned(),
            clickhouse_database: DEFAULT_CLICKHOUSE_DATABASE.to_owned(),
            clickhouse_user: None,
            clickhouse_password: None,
        }
    }
}

impl StoreArgs {
    pub(crate) fn choice(&self) -> StoreChoice {
        match self.kind {
            StoreKind::Embedded => StoreChoice::Embedded,
            StoreKind::Clickhouse => StoreChoice::ClickHouse(ClickHouseConfig {
                url: self.clickhouse_url.clone(),
                database: self.clickhouse_database.clone(),
                user: self.clickhouse_user.clone(),
                password: self.clickhouse_password.clone(),
            }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    Embedded,
    Clickhouse,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Store events from NDJSON files, stdin or a Kafka topic, once each; invalid lines go to
    /// DIR/rejected/ (or, from Kafka, to a dead-letter topic).
    #[command(
        after_help = "Examples:\n  recur ingest --data-dir data events.ndjson\n  \
                            zcat day-*.ndjson.gz | recur ingest --data-dir data --json -\n  \
                            recur ingest --data-dir data --kafka 127.0.0.1:9092 --topic events --group recur --dlq-topic events.dlq"
    )]
    Ingest(IngestArgs),

    /// Publish NDJSON events to Kafka, keyed by merchant_id/user_id, with the idempotent producer.
    #[command(
        after_help = "Example:\n  recur produce --kafka 127.0.0.1:9092 --topic events events.ndjson.gz"
    )]
    Produce(ProduceArgs),

    /// Count stored events in total, per merchant and per type.
    #[command(after_help = "Example:\n  recur stats --data-dir data --json")]
    Stats(StatsArgs),

    /// Offline evaluation of the recommenders: hold out customers' last orders (or the last N
    /// days), predict them from everything before, and score every model side by side.
    #[command(
        after_help = "Examples:\n  recur eval --data-dir data --k 10\n  recur eval --data-dir data --merchant m_bakery --holdout days:30 --json\n  recur eval --data-dir data --models als,tifu_knn --write-matrix matrices"
    )]
    Eval(EvalArgs),

    /// Merge the small files and key runs that many small appends leave, checkpoint the log,
    /// and delete what earlier compactions replaced (after a grace period). Appends compact
    /// what is due by themselves; this merges everything mergeable now.
    #[command(after_help = "Example:\n  recur compact --data-dir data --json")]
    Compact(CompactArgs),

    /// Run the batch jobs (profiles, recommendations) and publish a new snapshot.
    #[command(after_help = "Example:\n  recur run --data-dir data --k 20")]
    Run(RunArgs),

    /// Export results of the current snapshot.
    #[command(subcommand)]
    Export(ExportCommand),

    /// Serve recommendations and accept events over HTTP.
    #[command(
        after_help = "Example:\n  recur serve --data-dir data --listen 127.0.0.1:8080\n  \
                            curl 'http://127.0.0.1:8080/v1/merchants/m_bakery/users/u0000001/recommendations?k=5'"
    )]
    Serve(ServeArgs),

    /// Write a realistic synthetic event stream (and its ground truth) for demos and tests.
    #[command(
        after_help = "Example:\n  recur generate --out events.ndjson --merchants 3 --users 2000 --days 180 --seed 42\n\
                            Writes events.ndjson and events.truth.jsonl; a name ending in .gz is compressed."
    )]
    Generate(GenerateArgs),

    /// Repeat-purchase models: fit BG/NBD, Pareto/NBD and Gamma-Gamma, forecast customers.
    #[command(subcommand)]
    Clv(ClvCommand),

    /// Customer analytics reports of one merchant, computed now from the stored events.
    #[command(subcommand)]
    Report(ReportCommand),

    /// Audiences: named customer segments defined by a JSON rule, re-evaluated on every run.
    #[command(subcommand)]
    Audience(AudienceCommand),

    /// A merchant's settings: time zone, list rules, push caps, quiet hours, delivery.
    #[command(subcommand)]
    Merchant(MerchantCommand),

    /// Push campaigns: plan who gets which items when (consent, caps, opt-outs, quiet hours,
    /// holdout), send them exactly once in effect, and measure the lift.
    #[command(subcommand)]
    Campaign(crate::commands::CampaignCommand),

    /// API keys: each of one merchant with a scope (read, write, admin); with any key created,
    /// every API call needs one.
    #[command(subcommand)]
    Keys(crate::commands::KeysCommand),

    /// Generate → ingest → run → show the results → serve, in one go.
    #[command(
        after_help = "Examples:\n  recur demo\n  recur demo --data-dir /tmp/recur-demo --no-serve"
    )]
    Demo(DemoArgs),
}

/// How incoming events are judged, beyond the fixed contract.
#[derive(Args, Clone)]
pub(crate) struct ValidationArgs {
    /// Highest accepted unit price; a higher one is rejected as a likely unit mistake.
    #[arg(long, env = "RECUR_MAX_PRICE", default_value_t = recur_engine::event::DEFAULT_MAX_PRICE, value_name = "PRICE")]
    pub max_price: f64,
}

impl ValidationArgs {
    /// The validator for these settings, on the wall clock (read for every event).
    pub(crate) fn validator(&self) -> anyhow::Result<recur_engine::event::EventValidator> {
        if !(self.max_price.is_finite() && self.max_price > 0.0) {
            anyhow::bail!(
                "--max-price must be a positive number, got {}",
                self.max_price
            );
        }
        Ok(recur_engine::event::EventValidator::system().with_max_price(self.max_price))
    }
}

/// How to reach Kafka; plain Kafka protocol (Apache Kafka, Redpanda, managed Kafka, tansu).
#[derive(Args, Clone, Default)]
pub(crate) struct KafkaArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// A librdkafka property passed through, e.g. security.protocol=SASL_SSL (repeatable).
    /// Values are never logged.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    pub kafka_options: Vec<String>,
    /// The events topic.
    #[arg(long, env = "RECUR_KAFKA_TOPIC", default_value = "events")]
    pub topic: String,
}

#[derive(Args)]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// NDJSON files (plain or gzip); `-` reads stdin. Not with --kafka.
    #[arg(value_name = "FILE", conflicts_with = "kafka")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Consumer group (with --kafka); instances in one group share the partitions.
    #[arg(long, default_value = "recur", requires = "kafka")]
    pub group: String,
    /// Topic for invalid messages, with headers saying why (with --kafka); without it they go to DIR/rejected/.
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub dlq_topic: Option<String>,
    /// Exit 0 after this many seconds without a message once the group has read the whole topic (with --kafka), for batch jobs and tests.
    #[arg(long, value_name = "SECS", requires = "kafka")]
    pub until_idle: Option<f64>,
    /// Longest a consumed message waits before its batch is written, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub max_batch_wait_ms: u64,
    /// Print one JSON line {"accepted","duplicates","rejected"} instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Lines per atomic commit.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub batch_events: usize,
    #[command(flatten)]
    pub validation: ValidationArgs,
}

#[derive(Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// NDJSON files (plain or gzip); `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON line {"produced","failed"} instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Only this merchant (default: every merchant).
    #[arg(long, value_name = "ID")]
    pub merchant: Option<String>,
    /// List length the metrics are computed at.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub k: usize,
    /// `last-order` (each customer with two or more orders: the last one) or `days:N`
    /// (everything in the last N days; "now" is the cut for everyone).
    #[arg(long, default_value = "last-order", value_name = "HOLDOUT")]
    pub holdout: String,
    /// Only these models, comma-separated (popularity, p_topfreq, tifu_knn, repeat_timing,
    /// co_purchase, bought_after, viewed_then_bought, als, blend, blend_explore); default all.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub models: Option<Vec<String>>,
    /// Also write each merchant's training matrix (customers × items ALS confidences, Matrix
    /// Market, `{merchant}.mtx`) and held-out cases (`{merchant}.cases.jsonl`) into DIR, to fit
    /// the same problem with another library.
    #[arg(long, value_name = "DIR")]
    pub write_matrix: Option<std::path::PathBuf>,
    /// Print JSON (one object with every merchant) instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Keep replaced files this many seconds for readers still scanning them (default one hour;
    /// 0 deletes them at once: only when nothing else reads the store).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub grace: u64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Recommendations kept per user (the API serves up to this many).
    #[arg(long, default_value_t = 20, value_name = "K")]
    pub k: usize,
    /// Measure everything at this moment instead of each merchant's newest event: a date
    /// (YYYY-MM-DD, the end of that day in the merchant's time zone) or an RFC 3339 instant.
    /// Events after it are not read.
    #[arg(long, value_name = "DATE|INSTANT")]
    pub as_of: Option<String>,
    /// Print the snapshot manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub(crate) enum ExportCommand {
    /// Every user's recommendations as JSONL on stdout.
    #[command(
        after_help = "Examples:\n  recur export recommendations --data-dir data --k 10 > recs.jsonl\n  recur export recommendations --data-dir data --k 10 --exclude-purchased > explore.jsonl"
    )]
    Recommendations(ExportRecommendationsArgs),
    /// Every item's most frequent companions in orders as JSONL on stdout.
    #[command(
        after_help = "Example:\n  recur export similar --data-dir data --k 10 --merchant m_bakery > similar.jsonl"
    )]
    Similar(ExportSimilarArgs),
}

#[derive(Args)]
pub(crate) struct ExportSimilarArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Similar items per item.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub k: usize,
    /// Only this merchant's items.
    #[arg(long, value_name = "MERCHANT_ID")]
    pub merchant: Option<String>,
}

#[derive(Args)]
pub(crate) struct ExportRecommendationsArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Items per user.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub k: usize,
    /// Only this merchant's users.
    #[arg(long, value_name = "MERCHANT_ID")]
    pub merchant: Option<String>,
    /// Each customer's explore list: no item they bought and kept (cross-sell and new-item
    /// feeds).
    #[arg(long)]
    pub exclude_purchased: bool,
    /// Only items of this category.
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,
    /// Only items whose current unit price is at least this.
    #[arg(long, value_name = "PRICE", value_parser = parse_price)]
    pub min_price: Option<f64>,
    /// Only items whose current unit price is at most this.
    #[arg(long, value_name = "PRICE", value_parser = parse_price)]
    pub max_price: Option<f64>,
}

/// A price bound: a finite number of 0 or more.
fn parse_price(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
        .ok_or_else(|| format!("a price is a number of 0 or more, got {text:?}"))
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Address to listen on.
    #[arg(long, env = "RECUR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Seconds between checks for a newer snapshot.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub reload_every: f64,
    /// Largest accepted POST /v1/events body in bytes (other POSTs: 64 KiB).
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Seconds before an unanswered request gets 503 timeout.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub request_timeout: f64,
    /// Requests in progress at once; more get 503 overloaded at once.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_concurrent_requests: usize,
    /// With --kafka, POST /v1/events publishes to the topic (answering after the broker
    /// acked) instead of writing the store; `recur ingest --kafka` stores them.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// With --kafka: the consumer group of `recur ingest --kafka` whose lag (accepted events
    /// not stored yet) /metrics reports as recur_kafka_consumer_lag.
    #[arg(long, default_value = "recur", requires = "kafka")]
    pub group: String,
    /// With --kafka: seconds between measurements of that lag.
    #[arg(long, default_value_t = 10.0, value_name = "SECS", requires = "kafka")]
    pub kafka_lag_every: f64,
    #[command(flatten)]
    pub validation: ValidationArgs,
}

#[derive(Args)]
pub(crate) struct GenerateArgs {
    /// Output file; `.gz` compresses. Ground truth goes to <stem>.truth.jsonl beside it.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub shape: SynthShape,
}

#[derive(Args, Clone)]
pub(crate) struct SynthShape {
    /// Merchants (bakery, children's education, laundry, then repeating).
    #[arg(long, default_value_t = 3)]
    pub merchants: usize,
    /// Users over all merchants.
    #[arg(long, default_value_t = 2_000)]
    pub users: usize,
    /// Days of history.
    #[arg(long, default_value_t = 180)]
    pub days: u32,
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Last day of the stream (YYYY-MM-DD).
    #[arg(long, default_value = "2026-10-31", value_name = "DATE")]
    pub end: String,
    /// Share of events sent twice (a producer retry).
    #[arg(long, default_value_t = 0.01, value_name = "RATE")]
    pub duplicate_rate: f64,
    /// Share of extra malformed lines.
    #[arg(long, default_value_t = 0.005, value_name = "RATE")]
    pub malformed_rate: f64,
    /// Items per merchant: the named catalogue (10-18 items) extended by a generated long
    /// tail with Zipf popularity (e.g. 50000 for a supermarket-sized catalogue).
    #[arg(long, value_name = "N")]
    pub items: Option<usize>,
    /// Simulate a past push campaign of this name with a known effect per segment: planned
    /// at 10:00 the day before --campaign-day, delivered at 10:00 on it, holding out the
    /// customers `recur campaign plan` would hold out (see the truth file).
    #[arg(long, value_name = "NAME")]
    pub campaign: Option<String>,
    /// The simulated campaign's delivery day (YYYY-MM-DD); default: 14 days before --end.
    #[arg(long, value_name = "DATE", requires = "campaign")]
    pub campaign_day: Option<String>,
    /// The simulated campaign's holdout share.
    #[arg(long, default_value_t = 0.1, value_name = "SHARE")]
    pub campaign_holdout: f64,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Where the demo keeps its data.
    #[arg(
        long,
        env = "RECUR_DATA_DIR",
        default_value = ".recur-demo",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Exit after printing the summary instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub shape: SynthShape,
    /// Run the events through a Kafka broker: produce, then consume into the store.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Subcommand)]
pub(crate) enum ClvCommand {
    /// Fit the models and print their parameters as JSON.
    #[command(
        after_help = "Examples:\n  recur clv fit --summary cdnow_summary.csv\n  \
                            recur clv fit --transactions orders.csv --customer-col customer --date-col date \\\n    \
                            --date-format %Y%m%d --amount-col amount --calibration-end 1997-09-30 --time-unit week"
    )]
    Fit(ClvFitArgs),
    /// Fit BG/NBD (and Gamma-Gamma) and write one JSON line of forecasts per customer.
    #[command(
        after_help = "Example:\n  recur clv predict --summary summary.csv --horizon 30 --clv-months 12 > forecasts.jsonl"
    )]
    Predict(ClvPredictArgs),
    /// Model check: fit on the calibration period, then predicted vs actual repeat purchases
    /// in the holdout per frequency bucket, and cumulated over time (the papers' tracking plot).
    #[command(
        after_help = "Example:\n  recur clv check --transactions CDNOW_master.csv --customer-col customer_id --date-col date \\\n    \
                            --date-format %Y%m%d --calibration-end 1997-09-30 --observation-end 1998-06-30 --time-unit week"
    )]
    Check(ClvCheckArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["summary", "transactions"]))]
pub(crate) struct ClvInput {
    /// CSV with columns frequency, recency, T and optionally monetary_value (and customer_id or ID).
    #[arg(long, value_name = "CSV")]
    pub summary: Option<PathBuf>,
    /// CSV of transactions, summarized first (lifetimes' conventions).
    #[arg(long, value_name = "CSV", requires_all = ["customer_col", "date_col", "calibration_end"])]
    pub transactions: Option<PathBuf>,
    #[arg(long, value_name = "COLUMN")]
    pub customer_col: Option<String>,
    #[arg(long, value_name = "COLUMN")]
    pub date_col: Option<String>,
    /// strftime format of the date column.
    #[arg(long, default_value = "%Y-%m-%d", value_name = "FMT")]
    pub date_format: String,
    /// Column of the transaction value; without it Gamma-Gamma is skipped.
    #[arg(long, value_name = "COLUMN")]
    pub amount_col: Option<String>,
    /// Last day of the calibration period (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub calibration_end: Option<String>,
    /// End of a holdout period after calibration (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub observation_end: Option<String>,
    /// Period of frequency, recency and T.
    #[arg(long, value_enum, default_value = "week")]
    pub time_unit: TimeUnitArg,
    /// L2 penalty on the parameters (lifetimes' penalizer_coef).
    #[arg(long, default_value_t = 0.0)]
    pub penalizer: f64,
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub(crate) enum TimeUnitArg {
    Day,
    Week,
}

#[derive(Args)]
pub(crate) struct ClvFitArgs {
    #[command(flatten)]
    pub input: ClvInput,
    /// Skip Pareto/NBD (the slowest of the three).
    #[arg(long)]
    pub no_pareto: bool,
}

#[derive(Args)]
pub(crate) struct ClvPredictArgs {
    #[command(flatten)]
    pub input: ClvInput,
    /// Periods ahead for expected purchases.
    #[arg(long, default_value_t = 30.0)]
    pub horizon: f64,
    /// Months of customer lifetime value.
    #[arg(long, default_value_t = 12)]
    pub clv_months: u32,
    /// Monthly discount rate for CLV.
    #[arg(long, default_value_t = 0.01)]
    pub discount: f64,
    /// The purchase-count model behind P(alive), expected purchases and CLV.
    #[arg(long, value_parser = ["bgnbd", "pareto"], default_value = "bgnbd")]
    pub model: String,
}

#[derive(Args)]
pub(crate) struct ClvCheckArgs {
    #[command(flatten)]
    pub input: ClvInput,
    /// Frequencies from this one up share the last bucket.
    #[arg(long, default_value_t = 7)]
    pub max_frequency: u32,
    /// Skip Pareto/NBD (the slowest fit).
    #[arg(long)]
    pub no_pareto: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Table for people, JSON for scripts, CSV for spreadsheets.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

#[derive(Args, Clone)]
pub(crate) struct MerchantScope {
    #[command(flatten)]
    pub data: DataDir,
    /// The merchant whose customers are analysed.
    #[arg(long, value_name = "ID")]
    pub merchant: String,
    /// Measure "now" (recency, the current period, forecasts) at the end of this local day
    /// (YYYY-MM-DD) or at an RFC 3339 instant, instead of at the merchant's newest event.
    /// Events after it are not read.
    #[arg(long, value_name = "DATE|INSTANT")]
    pub as_of: Option<String>,
}

#[derive(Args, Clone)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub scope: MerchantScope,
    /// Calendar period, in the merchant's time zone.
    #[arg(long, value_parser = ["day", "week", "month"], value_name = "PERIOD")]
    pub period: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Subcommand)]
pub(crate) enum ReportCommand {
    /// Cohort retention: cohorts by first purchase (or --cohort-event) per week or month,
    /// and the share active (--return-event) in each later period.
    #[command(
        after_help = "Examples:\n  recur report retention --data-dir data --merchant m_bakery --period week\n  \
                            recur report retention --data-dir data --merchant m_bakery --period month --mode recurring --return-event view --format json"
    )]
    Retention {
        #[command(flatten)]
        report: ReportArgs,
        /// first_time: one cohort per customer, at the first cohort event; recurring: a
        /// cohort for every period with the cohort event.
        #[arg(long, value_parser = ["first_time", "recurring"], default_value = "first_time")]
        mode: String,
        /// The event that puts a customer in a cohort (purchase = kept orders).
        #[arg(long, default_value = "purchase", value_name = "TYPE")]
        cohort_event: String,
        /// The event that counts as coming back.
        #[arg(long, default_value = "purchase", value_name = "TYPE")]
        return_event: String,
    },
    /// New, returning, resurrecting and dormant customers per period.
    #[command(
        after_help = "Example:\n  recur report lifecycle --data-dir data --merchant m_bakery --period month --event view"
    )]
    Lifecycle {
        #[command(flatten)]
        report: ReportArgs,
        /// The activity followed (purchase = kept orders).
        #[arg(long, default_value = "purchase", value_name = "TYPE")]
        event: String,
    },
    /// RFM segments (or, with --scheme value-class, the eight high/low classes), or with
    /// --customers every customer's scores.
    #[command(
        after_help = "Examples:\n  recur report rfm --data-dir data --merchant m_bakery\n  \
                            recur report rfm --data-dir data --merchant m_bakery --scheme value-class --format csv"
    )]
    Rfm {
        #[command(flatten)]
        report: ReportArgs,
        #[arg(long, value_parser = ["segments", "value-class"], default_value = "segments")]
        scheme: String,
        /// One row per customer instead of the summary.
        #[arg(long)]
        customers: bool,
    },
    /// Repeat-purchase rate per cohort of first order: overall and within 30, 60, 90 days.
    #[command(
        after_help = "Example:\n  recur report repeat --data-dir data --merchant m_bakery --period month"
    )]
    Repeat {
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Days between orders per category (drives replenishment timing).
    #[command(
        after_help = "Example:\n  recur report intervals --data-dir data --merchant m_laundry"
    )]
    Intervals {
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Behavioural clusters (KMeans, k by silhouette), each described in words.
    #[command(after_help = "Example:\n  recur report clusters --data-dir data --merchant m_bakery")]
    Clusters {
        #[command(flatten)]
        report: ReportArgs,
    },
    /// User ids stitched into one customer by WeChat unionid.
    #[command(
        after_help = "Example:\n  recur report identities --data-dir data --merchant m_bakery --format csv"
    )]
    Identities {
        #[command(flatten)]
        report: ReportArgs,
    },
    /// A campaign's treated customers against its holdout: conversion, revenue, opens, and
    /// the lift with its 95% interval.
    #[command(
        after_help = "Example:\n  recur report campaign --data-dir data --merchant m_bakery --name weekend-repeat --window-days 7 --format json"
    )]
    Campaign(crate::commands::CampaignReportArgs),
}

#[derive(Subcommand)]
pub(crate) enum AudienceCommand {
    /// Define (or with --replace, redefine) an audience; the rule is checked first.
    #[command(
        after_help = "Example:\n  recur audience create --data-dir data --merchant m_bakery --name lapsed-regulars \\\n    \
                            --rule '{\"and\":[{\"rfm_segment\":[\"at_risk\",\"cant_lose_them\"]},{\"not_performed_since\":{\"event\":\"purchase\",\"days\":30}}]}'\n\
                            Rules: and, or, not, performed, not_performed_since, rfm_segment, value_class, lifecycle,\n\
                            cluster, bought_category, used_channel, subscribed, p_alive, clv (see README, Audiences).\n\
                            --rule @file.json reads the rule from a file."
    )]
    Create {
        #[command(flatten)]
        data: DataDir,
        #[arg(long, value_name = "ID")]
        merchant: String,
        /// 1–64 characters of a-z, 0-9, _ and -.
        #[arg(long)]
        name: String,
        /// The rule as JSON, or @FILE.
        #[arg(long)]
        rule: String,
        #[arg(long)]
        description: Option<String>,
        /// Replace an audience of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// The merchant's audiences with their size in the current snapshot.
    #[command(after_help = "Example:\n  recur audience list --data-dir data --merchant m_bakery")]
    List {
        #[command(flatten)]
        data: DataDir,
        #[arg(long, value_name = "ID")]
        merchant: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Evaluate an audience (stored, or a rule not yet saved) now: its size and a sample.
    #[command(
        after_help = "Examples:\n  recur audience preview --data-dir data --merchant m_bakery --name lapsed-regulars\n  \
                            recur audience preview --data-dir data --merchant m_bakery --rule '{\"lifecycle\":\"dormant\"}'"
    )]
    Preview {
        #[command(flatten)]
        scope: MerchantScope,
        #[arg(long, required_unless_present = "rule", conflicts_with = "rule")]
        name: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        /// Customers shown.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Evaluate an audience now and write its customers (ids and openids, for WeChat pushes).
    #[command(
        after_help = "Example:\n  recur audience export --data-dir data --merchant m_bakery --name lapsed-regulars --format csv > push.csv"
    )]
    Export {
        #[command(flatten)]
        scope: MerchantScope,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["csv", "jsonl"], default_value = "csv")]
        format: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum MerchantCommand {
    /// Set the merchant's time zone (IANA name; reports count days, weeks and months in it)
    /// and/or the business rules of its recommendation lists.
    #[command(
        after_help = "Examples:\n  recur merchant set --data-dir data --merchant m_bakery --time-zone Asia/Shanghai\n  \
                      recur merchant set --data-dir data --merchant m_bakery --list-rules \\\n    \
                      '{\"out_of_stock\":[\"croissant\"],\"pinned\":[\"mooncake\"],\"max_per_category\":3}'"
    )]
    Set {
        #[command(flatten)]
        data: DataDir,
        #[arg(long, value_name = "ID")]
        merchant: String,
        #[arg(long, value_name = "TZ")]
        time_zone: Option<String>,
        /// The list rules as JSON, replacing the current ones: excluded_categories,
        /// excluded_items, out_of_stock, pinned (lists of ids), max_per_category (a number).
        /// `{}` clears them.
        #[arg(long, value_name = "JSON")]
        list_rules: Option<String>,
        #[command(flatten)]
        push: Box<PushSettingArgs>,
    },
    /// Show the merchant's settings as JSON.
    #[command(after_help = "Example:\n  recur merchant show --data-dir data --merchant m_bakery")]
    Show {
        #[command(flatten)]
        data: DataDir,
        #[arg(long, value_name = "ID")]
        merchant: String,
    },
}

/// `recur merchant set` flags for pushes.
#[derive(Args, Clone, Default)]
pub(crate) struct PushSettingArgs {
    /// Pushes per customer per local day, over all campaigns (default 1).
    #[arg(long, value_name = "N")]
    pub cap_per_day: Option<u32>,
    /// Pushes per customer in any seven local days (default 3).
    #[arg(long, value_name = "N")]
    pub cap_per_week: Option<u32>,
    /// No pushes in these local hours, FROM-UNTIL (default 22:00-08:00; 00:00-00:00 for none).
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub quiet_hours: Option<String>,
    /// Where webhook campaigns POST their messages.
    #[arg(long, value_name = "URL", requires = "webhook_secret")]
    pub webhook_url: Option<String>,
    /// The key that signs each webhook body (X-Recur-Signature); stored, never shown.
    #[arg(
        long,
        value_name = "SECRET",
        env = "RECUR_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// The mini program's app id, for subscription messages.
    #[arg(long, value_name = "ID", requires = "wechat_secret")]
    pub wechat_appid: Option<String>,
    /// The mini program's app secret; stored, never shown.
    #[arg(
        long,
        value_name = "SECRET",
        env = "RECUR_WECHAT_SECRET",
        hide_env_values = true
    )]
    pub wechat_secret: Option<String>,
    /// WeChat's API base URL (a stand-in's in tests).
    #[arg(long, value_name = "URL", default_value = recur_engine::settings::WECHAT_API)]
    pub wechat_api_base: String,
}
