//! Shared state of the server: the snapshot being served and the store POST /v1/events writes.
//!
//! The request path only reads the snapshot through an `ArcSwap`; a watcher loads a newer
//! snapshot on a blocking thread and swaps it in, so requests never wait on disk or Polars.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use recur_engine::event::EventValidator;
use recur_engine::snapshot::{self, ServingSnapshot};
use recur_engine::store::EmbeddedStore;
use recur_ingest::kafka::EventPublisher;
use tracing::{info, warn};

/// Limits of the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub data_dir: PathBuf,
    pub snapshot: Arc<ArcSwapOption<ServingSnapshot>>,
    pub store: Arc<Mutex<EmbeddedStore>>,
    /// When set, POST /v1/events publishes here instead of writing the store.
    pub publisher: Option<Arc<EventPublisher>>,
    pub limits: ApiLimits,
    /// Validates posted events; reads the wall clock for every request.
    pub validator: EventValidator,
}

impl AppState {
    /// Opens the store and loads the current snapshot, if there is one.
    pub fn open(
        data_dir: PathBuf,
        limits: ApiLimits,
        validator: EventValidator,
    ) -> recur_engine::Result<Self> {
        let store = EmbeddedStore::open(&data_dir)?;
        let current = match snapshot::current_name(&data_dir)? {
            Some(name) => Some(Arc::new(ServingSnapshot::load(&data_dir, &name)?)),
            None => None,
        };
        Ok(Self {
            data_dir,
            snapshot: Arc::new(ArcSwapOption::new(current)),
            store: Arc::new(Mutex::new(store)),
            publisher: None,
            limits,
            validator,
        })
    }

    /// Sends POST /v1/events to Kafka through `publisher`.
    #[must_use]
    pub fn with_publisher(mut self, publisher: EventPublisher) -> Self {
        self.publisher = Some(Arc::new(publisher));
        self
    }

    /// Loads the newest snapshot if it differs from the one served. Returns whether it swapped.
    pub async fn reload_if_newer(&self) -> recur_engine::Result<bool> {
        let data_dir = self.data_dir.clone();
        let Some(newest) = tokio::task::spawn_blocking({
            let data_dir = data_dir.clone();
            move || snapshot::current_name(&data_dir)
        })
        .await
        .expect("the name lookup does not panic")?
        else {
            return Ok(false);
        };
        let served = self
            .snapshot
            .load()
            .as_ref()
            .map(|s| s.manifest.name.clone());
        if served.as_deref() == Some(newest.as_str()) {
            return Ok(false);
        }
        let loaded = tokio::task::spawn_blocking(move || ServingSnapshot::load(&data_dir, &newest))
            .await
            .expect("snapshot loading does not panic")?;
        info!(snapshot = %loaded.manifest.name, users = loaded.users(), "serving new snapshot");
        self.snapshot.store(Some(Arc::new(loaded)));
        Ok(true)
    }

    /// Checks for a newer snapshot every `interval`, forever.
    pub fn spawn_snapshot_watcher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = state.reload_if_newer().await {
                    warn!(error = %e, "could not load the newest snapshot; still serving the previous one");
                }
            }
        })
    }
}
