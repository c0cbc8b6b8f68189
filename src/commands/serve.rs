//! `recur serve`: the HTTP API until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use recur_api::{ApiLimits, AppState, KafkaLagWatch};
use recur_engine::event::EventValidator;
use recur_ingest::kafka::{EventPublisher, KafkaSettings, LagProbe};
use tracing::info;

use crate::cli::{DataDir, ServeArgs};

pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    if !args.reload_every.is_finite() || args.reload_every <= 0.0 {
        anyhow::bail!("--reload-every must be a positive number of seconds");
    }
    if !args.request_timeout.is_finite() || args.request_timeout <= 0.0 {
        anyhow::bail!("--request-timeout must be a positive number of seconds");
    }
    let limits = ApiLimits {
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        max_concurrent_requests: args.max_concurrent_requests.max(1),
        ..ApiLimits::default()
    };
    if !args.kafka_lag_every.is_finite() || args.kafka_lag_every <= 0.0 {
        anyhow::bail!("--kafka-lag-every must be a positive number of seconds");
    }
    // The lag watch measures for as long as this function serves.
    let (publisher, _lag_watch) = match &args.kafka.kafka {
        Some(brokers) => {
            let settings = KafkaSettings::new(brokers, &args.kafka.kafka_options)?;
            let watch = KafkaLagWatch::start(
                LagProbe::new(&settings, &args.kafka.topic, &args.group)?,
                Duration::from_secs_f64(args.kafka_lag_every),
            )
            .context("cannot start measuring the Kafka consumer lag")?;
            (
                Some(EventPublisher::new(&settings, &args.kafka.topic)?),
                Some(watch),
            )
        }
        None => (None, None),
    };
    serve_until_shutdown(
        &args.data,
        args.listen,
        limits,
        args.validation.validator()?,
        Duration::from_secs_f64(args.reload_every),
        publisher,
    )
}

pub(crate) fn serve_until_shutdown(
    data: &DataDir,
    listen: SocketAddr,
    limits: ApiLimits,
    validator: EventValidator,
    reload_every: Duration,
    publisher: Option<EventPublisher>,
) -> anyhow::Result<()> {
    // A server gives freed memory back (`recur serve`, and `recur demo` after its jobs).
    crate::allocator::return_freed_memory();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let data_dir = &data.data_dir;
        let choice = data.store.choice();
        let mut state = AppState::open_with_store(data_dir.clone(), &choice, limits, validator)
            .with_context(|| format!("cannot open {} and its event store", data_dir.display()))?;
        if let Some(publisher) = publisher {
            state = state.with_publisher(publisher);
        }
        if state.keys().is_open() {
            if !listen.ip().is_loopback() {
                anyhow::bail!(
                    "no API key exists in {}, so anyone who can reach {listen} could read and write every merchant's data; \
                     create keys first (`recur keys create --data-dir {} --merchant M --scope read`) or listen on 127.0.0.1",
                    data_dir.display(),
                    data_dir.display()
                );
            }
            eprintln!(
                "no API keys yet: serving without authentication, on loopback only; `recur keys create` makes every call need a key"
            );
        }
        let _watcher = state.spawn_snapshot_watcher(reload_every);
        let _store_watcher = state.spawn_store_watcher(Duration::from_secs(2));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}; is another server using it? try --listen 127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        info!(%address, data_dir = %data_dir.display(), "listening");
        eprintln!("listening on http://{address}");
        recur_api::serve(listener, state, shutdown_signal())
            .await
            .context("the server failed")?;
        info!("shut down");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
