//! Shared state of the server: the snapshot being served and the store POST /v1/events writes.
//!
//! The request path only reads the snapshot through an `ArcSwap`; a watcher loads a newer
//! snapshot on a blocking thread and swaps it in, so requests never wait on disk or Polars.
//! A load that fails (or panics) is logged, shown by /healthz as `degraded`, and retried on
//! the next tick; the previous snapshot keeps being served meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use recur_engine::campaign::plan::Plan;
use recur_engine::event::EventValidator;
use recur_engine::keys::{KeyRing, keys_path};
use recur_engine::settings::{ListRules, MerchantSettings, settings_path};
use recur_engine::snapshot::{self, ServingSnapshot};
use recur_engine::store::{AnyStore, ClickHouseStore, StoreChoice};
use recur_ingest::kafka::EventPublisher;
use tracing::{info, warn};

/// Limits of the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest accepted body of `POST /v1/events`, in bytes.
    pub max_body_bytes: usize,
    /// Largest body of the other POSTs (an audience rule, a campaign), in bytes.
    pub max_admin_body_bytes: usize,
    /// A request not answered within this gets `503 timeout`.
    pub request_timeout: Duration,
    /// Requests in progress at once; more get `503 overloaded` at once instead of queueing.
    pub max_concurrent_requests: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_admin_body_bytes: 64 << 10,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
        }
    }
}

/// How the last attempt to load the newest snapshot went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Why the newest snapshot could not be loaded, if it could not.
    pub error: Option<String>,
}

/// What every handler can reach: a handle to [`Shared`], which it dereferences to.
///
/// The router clones the state for every request (each `State` extractor and each
/// middleware with state), so the handle is one `Arc`: a clone is one atomic increment, and
/// the futures that hold it stay small.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The server's state behind [`AppState`].
#[derive(Clone)]
pub struct Shared {
    pub data_dir: Arc<Path>,
    pub snapshot: Arc<ArcSwapOption<ServingSnapshot>>,
    pub reload: Arc<ArcSwap<ReloadStatus>>,
    store: Arc<Mutex<AnyStore>>,
    /// Which event store: plans and reports open readers of their own on it.
    pub store_choice: Arc<StoreChoice>,
    /// Checks that a ClickHouse store answers, without waiting for the store's lock.
    store_probe: Option<ClickHouseStore>,
    /// Why the event store is unusable, if it is (ClickHouse down): /healthz says degraded.
    pub store_error: Arc<ArcSwapOption<String>>,
    /// When set, POST /v1/events publishes here instead of writing the store.
    pub publisher: Option<Arc<EventPublisher>>,
    pub limits: ApiLimits,
    /// Validates posted events; reads the wall clock for every request.
    pub validator: EventValidator,
    /// Each merchant's list rules, with the modification time of the settings file they
    /// were read from and when that was last compared.
    rules: Arc<Mutex<HashMap<String, CachedRules>>>,
    /// The API keys requests are checked against, and when the key file was last looked at.
    keys: Arc<ArcSwap<KeyRing>>,
    keys_seen: Arc<Mutex<KeysSeen>>,
    /// Campaign plans computed lately.
    pub(crate) plans: Arc<PlanCache>,
}

/// Which plan: a campaign of a merchant, planned from a snapshot at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanKey {
    pub merchant_id: String,
    pub campaign: String,
    pub snapshot: String,
    pub at_ms: i64,
}

/// Plans the API computed in the last minute, a few at most: a client paging through a plan
/// and the dashboard's campaigns page read one plan instead of recomputing it for every page
/// (seconds at a million customers), and the pages agree with each other. A send, an opt-out
/// or a settings change shows in the API's plans within [`PLAN_TTL`]; `recur campaign send`
/// always plans afresh.
#[derive(Default)]
pub(crate) struct PlanCache {
    entries: Mutex<Vec<(PlanKey, Instant, Arc<Plan>)>>,
}

/// How long a computed plan is served again.
pub(crate) const PLAN_TTL: Duration = Duration::from_secs(60);
/// Plans kept at once (a plan of a million customers holds a few hundred megabytes).
const PLANS_KEPT: usize = 4;

impl PlanCache {
    pub(crate) fn get(&self, key: &PlanKey) -> Option<Arc<Plan>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|(_, at, _)| at.elapsed() < PLAN_TTL);
        entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, plan)| Arc::clone(plan))
    }

    pub(crate) fn insert(&self, key: PlanKey, plan: Arc<Plan>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|(k, _, _)| *k != key);
        entries.push((key, Instant::now(), plan));
        if entries.len() > PLANS_KEPT {
            entries.remove(0);
        }
    }
}

/// When the key file was last checked, and its modification time then.
struct KeysSeen {
    checked: Instant,
    modified: Option<SystemTime>,
}

/// How often requests look at the key file for changes: a new or revoked key holds within this.
const KEYS_RECHECK: Duration = Duration::from_secs(1);

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Drops a replaced snapshot once requests still answering from it are done, so the last
/// reference (and the freeing) is this blocking thread's, never a request's.
fn release(mut previous: Option<Arc<ServingSnapshot>>) {
    while let Some(snapshot) = previous {
        match Arc::try_unwrap(snapshot) {
            Ok(owned) => {
                drop(owned);
                return;
            }
            Err(shared) => {
                previous = Some(shared);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn settings_modified(data_dir: &Path, merchant_id: &str) -> Option<SystemTime> {
    std::fs::metadata(settings_path(data_dir, merchant_id))
        .and_then(|m| m.modified())
        .ok()
}

fn key_file_modified(data_dir: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(keys_path(data_dir))
        .and_then(|m| m.modified())
        .ok()
}

/// A merchant's list rules, the modification time of the settings file they came from, and
/// when that file was last looked at.
struct CachedRules {
    modified: Option<SystemTime>,
    checked: Instant,
    rules: Arc<ListRules>,
}

/// How often a merchant's settings file is looked at for new list rules: a change holds
/// within this, and a busy server does not `stat` the file for every request.
const RULES_RECHECK: Duration = Duration::from_millis(250);

impl AppState {
    /// Opens the embedded store and loads the current snapshot, if there is one.
    pub fn open(
        data_dir: PathBuf,
        limits: ApiLimits,
        validator: EventValidator,
    ) -> recur_engine::Result<Self> {
        Self::open_with_store(data_dir, &StoreChoice::Embedded, limits, validator)
    }

    /// Opens the chosen event store and loads the current snapshot, if there is one.
    pub fn open_with_store(
        data_dir: PathBuf,
        choice: &StoreChoice,
        limits: ApiLimits,
        validator: EventValidator,
    ) -> recur_engine::Result<Self> {
        let store = AnyStore::open(choice, &data_dir)?;
        let store_probe = store.prober();
        let keys_modified = key_file_modified(&data_dir);
        let keys = KeyRing::load(&data_dir)?;
        let current = match snapshot::current_name(&data_dir)? {
            Some(name) => Some(Arc::new(ServingSnapshot::load(&data_dir, &name)?)),
            None => None,
        };
        Ok(Self(Arc::new(Shared {
            data_dir: Arc::from(data_dir),
            snapshot: Arc::new(ArcSwapOption::new(current)),
            reload: Arc::new(ArcSwap::from_pointee(ReloadStatus::default())),
            store: Arc::new(Mutex::new(store)),
            store_choice: Arc::new(choice.clone()),
            store_probe,
            store_error: Arc::new(ArcSwapOption::empty()),
            publisher: None,
            limits,
            validator,
            rules: Arc::default(),
            keys: Arc::new(ArcSwap::from_pointee(keys)),
            keys_seen: Arc::new(Mutex::new(KeysSeen {
                checked: Instant::now(),
                modified: keys_modified,
            })),
            plans: Arc::default(),
        })))
    }

    /// The key ring, re-read when the key file changed (looked at most once per
    /// [`KEYS_RECHECK`], by one request at a time; the others use the ring they have). A key
    /// file that cannot be read keeps the previous ring, and says so in the log.
    pub fn keys(&self) -> Arc<KeyRing> {
        if let Ok(mut seen) = self.keys_seen.try_lock()
            && seen.checked.elapsed() >= KEYS_RECHECK
        {
            seen.checked = Instant::now();
            let modified = key_file_modified(&self.data_dir);
            if modified != seen.modified {
                match KeyRing::load(&self.data_dir) {
                    Ok(ring) => {
                        self.keys.store(Arc::new(ring));
                        seen.modified = modified;
                    }
                    Err(e) => {
                        warn!(error = %e, "could not re-read the API keys; the previous keys stay in force")
                    }
                }
            }
        }
        self.keys.load_full()
    }

    /// The merchant's list rules as its settings file says: the file is looked at (one
    /// `stat`) at most once per [`RULES_RECHECK`] and re-read only when it changed, so `recur
    /// merchant set --list-rules` (an item out of stock) holds within a quarter second, without
    /// a new run. Call it for merchants of the snapshot only: the cache holds one entry per
    /// merchant asked for.
    pub fn list_rules(&self, merchant_id: &str) -> recur_engine::Result<Arc<ListRules>> {
        let mut cache = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = cache.get_mut(merchant_id) {
            if cached.checked.elapsed() < RULES_RECHECK {
                return Ok(Arc::clone(&cached.rules));
            }
            let modified = settings_modified(&self.data_dir, merchant_id);
            cached.checked = Instant::now();
            if cached.modified == modified {
                return Ok(Arc::clone(&cached.rules));
            }
        }
        let modified = settings_modified(&self.data_dir, merchant_id);
        let rules = Arc::new(MerchantSettings::load(&self.data_dir, merchant_id)?.list_rules);
        cache.insert(
            merchant_id.to_owned(),
            CachedRules {
                modified,
                checked: Instant::now(),
                rules: Arc::clone(&rules),
            },
        );
        Ok(rules)
    }

    /// Sends POST /v1/events to Kafka through `publisher`.
    #[must_use]
    pub fn with_publisher(self, publisher: EventPublisher) -> Self {
        // Called before the state is shared; were it shared, the others keep theirs.
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.publisher = Some(Arc::new(publisher));
        Self(Arc::new(shared))
    }

    /// The store, for appends. A request that panicked while holding it cannot have left it
    /// half-changed (an append changes memory only after its commit is durable, and re-reads
    /// the commit log first), so a poisoned lock is taken over rather than failing forever.
    pub fn store(&self) -> MutexGuard<'_, AnyStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A shared handle to the store for blocking tasks.
    pub(crate) fn store_handle(&self) -> Arc<Mutex<AnyStore>> {
        Arc::clone(&self.store)
    }

    /// Loads the newest snapshot if it differs from the one served. Returns whether it swapped.
    /// A failure, or a panic while loading, is returned as an error and recorded for /healthz.
    pub async fn reload_if_newer(&self) -> Result<bool, String> {
        let result = self.try_reload().await;
        let status = ReloadStatus {
            error: result.as_ref().err().cloned(),
        };
        if **self.reload.load() != status {
            self.reload.store(Arc::new(status));
        }
        result
    }

    async fn try_reload(&self) -> Result<bool, String> {
        let data_dir = self.data_dir.clone();
        let newest = tokio::task::spawn_blocking(move || snapshot::current_name(&data_dir))
            .await
            .map_err(|e| format!("looking up the current snapshot failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let Some(newest) = newest else {
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
        let data_dir = self.data_dir.clone();
        let name = newest.clone();
        let loaded = tokio::task::spawn_blocking(move || ServingSnapshot::load(&data_dir, &name))
            .await
            .map_err(|e| format!("loading snapshot {newest} failed: {e}"))?
            .map_err(|e| format!("loading snapshot {newest} failed: {e}"))?;
        info!(snapshot = %loaded.manifest.name, users = loaded.users(), "serving new snapshot");
        let previous = self.snapshot.swap(Some(Arc::new(loaded)));
        // Freeing a large snapshot takes seconds: never on an async worker, where it would
        // stall every request meanwhile.
        tokio::task::spawn_blocking(move || release(previous));
        Ok(true)
    }

    /// Checks for a newer snapshot every `interval`, until the runtime stops. A failed check
    /// is logged and tried again on the next tick.
    /// Records whether the event store works after an operation on it, for /healthz.
    pub(crate) fn note_store_result(&self, error: Option<String>) {
        if error.is_some() || self.store_error.load().is_some() {
            self.store_error.store(error.map(Arc::new));
        }
    }

    /// Asks a ClickHouse store whether it answers every `interval`, so /healthz says degraded
    /// while it is down (and ok again once it is back) even when nothing is posted. Nothing to
    /// watch for the embedded store.
    pub fn spawn_store_watcher(&self, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let probe = self.store_probe.clone()?;
        let state = self.clone();
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let probe = probe.clone();
                let answer = tokio::task::spawn_blocking(move || probe.ping()).await;
                let error = match answer {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("the store check failed: {e}")),
                };
                if error.is_some() != state.store_error.load().is_some() {
                    match &error {
                        Some(e) => {
                            warn!(error = %e, "the event store does not answer; serving the last snapshot")
                        }
                        None => info!("the event store answers again"),
                    }
                }
                state.note_store_result(error);
            }
        }))
    }

    pub fn spawn_snapshot_watcher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = state.reload_if_newer().await {
                    warn!(error = %e, "could not load the newest snapshot; still serving the previous one, retrying");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(at_ms: i64) -> Arc<Plan> {
        Arc::new(Plan {
            lines: Vec::new(),
            snapshot: "s1".to_owned(),
            at_ms,
            settings: MerchantSettings::default(),
            outbox: Default::default(),
            uplift: None,
        })
    }

    fn key(campaign: &str, at_ms: i64) -> PlanKey {
        PlanKey {
            merchant_id: "m1".to_owned(),
            campaign: campaign.to_owned(),
            snapshot: "s1".to_owned(),
            at_ms,
        }
    }

    #[test]
    fn a_plan_is_served_again_for_its_key_only_and_few_are_kept() {
        let cache = PlanCache::default();
        let first = plan(60_000);
        cache.insert(key("a", 60_000), Arc::clone(&first));
        let again = cache.get(&key("a", 60_000)).expect("cached");
        assert!(Arc::ptr_eq(&again, &first));
        // Another moment, campaign or snapshot is another plan.
        assert!(cache.get(&key("a", 120_000)).is_none());
        assert!(cache.get(&key("b", 60_000)).is_none());
        let mut other_snapshot = key("a", 60_000);
        other_snapshot.snapshot = "s2".to_owned();
        assert!(cache.get(&other_snapshot).is_none());
        // The oldest goes once more than PLANS_KEPT are held.
        for n in 1..=PLANS_KEPT as i64 {
            cache.insert(key("a", 60_000 * (n + 1)), plan(60_000 * (n + 1)));
        }
        assert!(cache.get(&key("a", 60_000)).is_none());
        assert!(cache.get(&key("a", 120_000)).is_some());
    }
}
