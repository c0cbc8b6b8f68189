//! The writer's dedup index: every live key run of the store, opened for lookups, plus the
//! keys of rejected lines.
//!
//! Memory grows with the runs' Bloom filters and fences (about 2 bytes an event key for large
//! runs), not with the keys themselves, so a writer of a store of a hundred million events
//! stays well under a gigabyte. Reject keys (one per invalid line ever recorded) are held in
//! memory whole. The index follows the store's state: runs a compaction replaced are dropped,
//! runs committed by other processes are opened.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::dedup::{Key, KeySet};
use super::keyrun::{self, KeyRun};
use super::log::StoreState;
use crate::error::Result;

#[derive(Default)]
pub(crate) struct KeyIndex {
    /// Open runs by path (`_log/<seq>.keys` sorts by commit).
    runs: BTreeMap<String, KeyRun>,
    rejects: KeySet,
}

impl KeyIndex {
    /// Opens the runs `state` lists that are not open yet and closes the ones it no longer
    /// lists (replaced by a merged run, which holds their keys).
    pub(crate) fn sync(&mut self, data_dir: &Path, state: &StoreState) -> Result<()> {
        let live: HashSet<&str> = state.key_runs.iter().map(|r| r.path.as_str()).collect();
        self.runs.retain(|path, _| live.contains(path.as_str()));
        for run in &state.key_runs {
            if self.runs.contains_key(&run.path) {
                continue;
            }
            let opened =
                keyrun::open_run(&data_dir.join(&run.path), (run.event_keys, run.reject_keys))?;
            self.rejects.extend(opened.reject_keys);
            self.runs.insert(run.path.clone(), opened.run);
        }
        Ok(())
    }

    /// Whether an event with this key is stored. Newest runs first: a replay after a crash
    /// usually repeats the latest events.
    pub(crate) fn contains_event(&self, key: Key) -> Result<bool> {
        for run in self.runs.values().rev() {
            if run.contains(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn contains_reject(&self, key: Key) -> bool {
        self.rejects.contains(&key)
    }

    /// Adds a run this process just committed: a small one from the keys in hand (sorted),
    /// a large one from its file (Bloom filter and fences only).
    pub(crate) fn add_committed(
        &mut self,
        data_dir: &Path,
        path: String,
        sorted_events: Vec<Key>,
        rejects: &[Key],
    ) -> Result<()> {
        self.rejects.extend(rejects.iter().copied());
        let run = if sorted_events.len() as u64 <= keyrun::IN_MEMORY_KEYS {
            KeyRun::InMemory {
                keys: sorted_events,
            }
        } else {
            keyrun::open_run(
                &data_dir.join(&path),
                (sorted_events.len() as u64, rejects.len() as u64),
            )?
            .run
        };
        self.runs.insert(path, run);
        Ok(())
    }

    /// Bytes of memory the index holds (runs and reject keys).
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.runs.values().map(KeyRun::memory_bytes).sum::<u64>() + self.rejects.len() as u64 * 24
    }
}
