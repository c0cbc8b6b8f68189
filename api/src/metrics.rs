//! Prometheus metrics at `GET /metrics` (text format, names prefixed `recur_`): requests and
//! their latency per route template, method and status; events accepted, duplicate and
//! rejected by `POST /v1/events`; the served snapshot's age; with `--kafka`, the ingest
//! consumer group's lag per partition. Labels are route templates,
//! never ids, so no merchant's or customer's id reaches a metric.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use recur_ingest::kafka::LagProbe;

use crate::state::AppState;

/// The per-thread maps of the request path: their keys are a bounded set of our own labels.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub(crate) const REQUESTS: &str = "recur_http_requests_total";
pub(crate) const LATENCY: &str = "recur_http_request_duration_seconds";
pub(crate) const EVENTS: &str = "recur_events_total";
pub(crate) const SNAPSHOT_AGE: &str = "recur_snapshot_age_seconds";
pub(crate) const KAFKA_LAG: &str = "recur_kafka_consumer_lag";

/// Latency buckets, in seconds: sub-millisecond answers from memory up to slow plans.
const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The process's recorder, installed on first use (one per process: every router of a test
/// binary shares it).
pub(crate) fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), &BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a host program's) keeps recording; ours then
        // renders what it saw, which is nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Counts and times one answered request by its route template, method and status.
pub(crate) fn record_request(
    route: &'static str,
    method: &'static str,
    status: StatusCode,
    elapsed: Duration,
) {
    let status = status.as_u16();
    // The hot path: per worker thread, the handles of each (route, method, status) seen, so a
    // request costs two atomic updates, not a registry lookup with freshly built labels.
    thread_local! {
        static HANDLES: RefCell<HashMap<RequestLabels, (Counter, Histogram)>> =
            RefCell::new(HashMap::default());
    }
    HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        let (requests, latency) = handles.entry((route, method, status)).or_insert_with(|| {
            let labels = [
                ("route", route),
                ("method", method),
                ("status", interned(&status.to_string())),
            ];
            (
                metrics::counter!(REQUESTS, &labels),
                metrics::histogram!(LATENCY, &labels),
            )
        });
        requests.increment(1);
        latency.record(elapsed.as_secs_f64());
    });
}

/// A route template as a label, kept for the life of the process. Each worker thread keeps
/// the templates it has seen, so a request takes no lock to find its label.
pub(crate) fn route_label(template: &str) -> &'static str {
    thread_local! {
        static SEEN: RefCell<HashMap<Box<str>, &'static str>> = RefCell::new(HashMap::default());
    }
    SEEN.with(|seen| {
        if let Some(known) = seen.borrow().get(template) {
            return *known;
        }
        let label = interned(template);
        seen.borrow_mut().insert(template.into(), label);
        label
    })
}

/// Route template, method and status of a request.
type RequestLabels = (&'static str, &'static str, u16);

/// The method as a label: the standard ones by name, any other as `other` (a client choosing
/// methods must not grow the label set without bound).
pub(crate) fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

/// A label value kept for the life of the process. Only bounded sets come here (route
/// templates of the router, status codes), so each distinct value is allocated once.
fn interned(value: &str) -> &'static str {
    static SEEN: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let seen = SEEN.get_or_init(RwLock::default);
    if let Some(known) = seen
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(value)
    {
        return known;
    }
    let mut seen = seen.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = seen.get(value) {
        return known;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format (names prefixed `recur_`)", body = String, content_type = "text/plain"))
)]
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let age = state.snapshot.load().as_ref().map(|s| {
        let created = s.manifest.created_at_ms;
        let now = crate::state::now_ms();
        (now - created).max(0) as f64 / 1000.0
    });
    if let Some(age) = age {
        metrics::gauge!(SNAPSHOT_AGE).set(age);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}

/// Counts `POST /v1/events` outcomes.
pub(crate) fn count_events(accepted: u64, duplicates: u64, rejected: u64) {
    for (outcome, n) in [
        ("accepted", accepted),
        ("duplicate", duplicates),
        ("rejected", rejected),
    ] {
        if n > 0 {
            metrics::counter!(EVENTS, "outcome" => outcome).increment(n);
        }
    }
}

/// Measures a consumer group's lag in the background while it lives (`recur serve --kafka`
/// publishes what `recur ingest --kafka` stores; the lag is what was accepted but is not
/// stored yet).
pub struct KafkaLagWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl KafkaLagWatch {
    /// Sets `recur_kafka_consumer_lag{topic,group,partition}` every `every`. A failed
    /// measurement is logged and keeps the last figures (the broker may be restarting).
    pub fn start(probe: LagProbe, every: Duration) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        std::thread::Builder::new()
            .name("kafka-lag".to_owned())
            .spawn(move || {
                let mut failing = false;
                while !stopped.load(Ordering::Relaxed) {
                    match probe.measure(every.max(Duration::from_secs(5))) {
                        Ok(partitions) => {
                            failing = false;
                            for p in partitions {
                                metrics::gauge!(
                                    KAFKA_LAG,
                                    "topic" => probe.topic().to_owned(),
                                    "group" => probe.group().to_owned(),
                                    "partition" => p.partition.to_string()
                                )
                                .set(p.lag as f64);
                            }
                        }
                        // Once per outage, not once per tick.
                        Err(error) if !failing => {
                            failing = true;
                            tracing::warn!(%error, "cannot measure the Kafka consumer lag");
                        }
                        Err(_) => {}
                    }
                    std::thread::sleep(every);
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for KafkaLagWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
