//! Appends to ClickHouse: a batch's new events, their fingerprints, its new rejected lines and
//! a row for the append, in that order.
//!
//! Why that order keeps counts exact: events are inserted before their fingerprints, so an
//! append interrupted between the two stores the events again when retried (the fingerprints
//! were not there), and the second copy, identical row for row, is folded by FINAL; the other
//! order could record a fingerprint whose event never arrived, and lose it. Each fingerprint
//! names the batch that stored it (a hash of the batch's event keys) and the append's row is
//! written last, so a retry of an interrupted batch recognises its own fingerprints and counts
//! those events as accepted, not as duplicates, while the same batch sent again after it
//! completed counts them as duplicates. Nothing of a batch is acknowledged to the caller
//! before ClickHouse acknowledged every insert.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use super::connection::Connection;
use crate::error::Result;
use crate::event::Event;
use crate::store::dedup::{self, Key, KeySet};
use crate::store::{AppendOutcome, IngestBatch, RejectedLine};

/// Fingerprints per lookup query (about 800 KiB of SQL). Each query reads the merchant's
/// whole key range (random fingerprints touch every granule), so fewer, larger lookups keep
/// an append cheap: with 8,192 per query the lookups were 62% of a 13M-event ingest. The
/// bound is the server's: `max_ast_elements` (50,000 by default) counts each listed value,
/// and parsing the list costs about 9 µs a value on 18.16 however it is chunked.
const KEYS_PER_LOOKUP: usize = 40_000;

#[derive(Row, Serialize)]
struct EventRow<'a> {
    event_id: &'a str,
    merchant_id: &'a str,
    user_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    ts: i64,
    channel: &'a str,
    item_id: Option<&'a str>,
    category: Option<&'a str>,
    order_id: Option<&'a str>,
    price: Option<f64>,
    quantity: u32,
    scene: Option<&'a str>,
    openid: Option<&'a str>,
    unionid: Option<&'a str>,
    properties: Option<&'a str>,
}

impl<'a> From<&'a Event> for EventRow<'a> {
    fn from(e: &'a Event) -> Self {
        Self {
            event_id: &e.event_id,
            merchant_id: &e.merchant_id,
            user_id: &e.user_id,
            event_type: e.event_type.as_str(),
            ts: e.ts_ms,
            channel: e.channel.as_str(),
            item_id: e.item_id.as_deref(),
            category: e.category.as_deref(),
            order_id: e.order_id.as_deref(),
            price: e.price,
            quantity: e.quantity,
            scene: e.scene.as_deref(),
            openid: e.openid.as_deref(),
            unionid: e.unionid.as_deref(),
            properties: e.properties.as_deref(),
        }
    }
}

#[derive(Row, Serialize)]
struct EventKeyRow<'a> {
    merchant_id: &'a str,
    key_hi: u64,
    key_lo: u64,
    batch: u64,
}

#[derive(Row, Serialize)]
struct RejectedRow<'a> {
    key_hi: u64,
    key_lo: u64,
    source: &'a str,
    line: u64,
    reason: &'a str,
    raw: &'a str,
    recorded_at: u32,
}

#[derive(Row, Serialize)]
struct AppendRow {
    at: u32,
    batch: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
}

#[derive(Row, Deserialize)]
struct StoredKey {
    key_hi: u64,
    key_lo: u64,
    batch: u64,
}

fn halves(key: Key) -> (u64, u64) {
    // The two halves of a 128-bit fingerprint: 18.16 has no UInt128.
    #[allow(clippy::cast_possible_truncation)]
    ((key >> 64) as u64, key as u64)
}

fn join(hi: u64, lo: u64) -> Key {
    (u128::from(hi) << 64) | u128::from(lo)
}

/// `1, 2, 3`: numbers written into the SQL text, since 18.16 takes no array after `IN` (and a
/// number needs no escaping).
fn number_list(numbers: impl Iterator<Item = u64>) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    for (i, n) in numbers.enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{n}");
    }
    text
}

fn now_secs() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

pub(super) fn append(connection: &Connection, batch: &IngestBatch) -> Result<AppendOutcome> {
    let mut outcome = AppendOutcome::default();

    // Events: first the batch against itself, then against what is stored.
    let mut seen = KeySet::with_capacity_and_hasher(batch.events.len(), Default::default());
    let mut candidates: Vec<(Key, &Event)> = Vec::with_capacity(batch.events.len());
    for event in &batch.events {
        let key = dedup::event_key(&event.merchant_id, &event.event_id);
        if seen.insert(key) {
            candidates.push((key, event));
        } else {
            outcome.duplicates += 1;
        }
    }
    let batch_id = batch_fingerprint(candidates.iter().map(|(key, _)| *key));
    let stored = stored_event_keys(connection, &candidates, batch_id)?;
    let new_events: Vec<(Key, &Event)> = candidates
        .into_iter()
        .filter(|(key, _)| !stored.contains(key))
        .collect();
    outcome.duplicates += stored.len() as u64;

    // Rejected lines: each bad line of a source once.
    let mut seen_rejects = KeySet::default();
    let keyed_rejects: Vec<(Key, &RejectedLine)> = batch
        .rejects
        .iter()
        .map(|r| (dedup::reject_key(&r.source, r.line, &r.raw), r))
        .filter(|(key, _)| seen_rejects.insert(*key))
        .collect();
    let stored_rejects = stored_reject_keys(connection, &keyed_rejects)?;
    let new_rejects: Vec<(Key, &RejectedLine)> = keyed_rejects
        .into_iter()
        .filter(|(key, _)| !stored_rejects.contains(key))
        .collect();

    outcome.accepted = new_events.len() as u64;
    // As in the embedded store: every invalid line of the batch counts, each is recorded once.
    outcome.rejected = batch.rejects.len() as u64;
    if new_events.is_empty() && new_rejects.is_empty() {
        return Ok(outcome);
    }

    let client = connection.client();
    if !new_events.is_empty() {
        connection.run("inserting events", async {
            let mut insert = client.insert::<EventRow<'_>>("events").await?;
            for (_, event) in &new_events {
                insert.write(&EventRow::from(*event)).await?;
            }
            insert.end().await
        })?;
        connection.run("inserting event keys", async {
            let mut insert = client.insert::<EventKeyRow<'_>>("event_keys").await?;
            for (key, event) in &new_events {
                let (key_hi, key_lo) = halves(*key);
                insert
                    .write(&EventKeyRow {
                        merchant_id: &event.merchant_id,
                        key_hi,
                        key_lo,
                        batch: batch_id,
                    })
                    .await?;
            }
            insert.end().await
        })?;
    }
    if !new_rejects.is_empty() {
        let recorded_at = now_secs();
        connection.run("inserting rejected lines", async {
            let mut insert = client.insert::<RejectedRow<'_>>("rejected").await?;
            for (key, line) in &new_rejects {
                let (key_hi, key_lo) = halves(*key);
                insert
                    .write(&RejectedRow {
                        key_hi,
                        key_lo,
                        source: &line.source,
                        line: line.line,
                        reason: &line.reason,
                        raw: &line.raw,
                        recorded_at,
                    })
                    .await?;
            }
            insert.end().await
        })?;
    }
    connection.run("recording the append", async {
        let mut insert = client.insert::<AppendRow>("appends").await?;
        insert
            .write(&AppendRow {
                at: now_secs(),
                batch: batch_id,
                accepted: outcome.accepted,
                duplicates: outcome.duplicates,
                rejected: outcome.rejected,
            })
            .await?;
        insert.end().await
    })?;
    Ok(outcome)
}

/// A batch's identity: the hash of its event keys in order. The same lines ingested again
/// make the same batch.
fn batch_fingerprint(keys: impl Iterator<Item = Key>) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for key in keys {
        hasher.update(&key.to_le_bytes());
    }
    hasher.digest()
}

/// Which of the batch's event fingerprints are stored already, merchant by merchant (the key
/// table is ordered by merchant first, so each lookup reads one merchant's range). A
/// fingerprint stored by an interrupted earlier attempt at this same batch (no append row
/// for it) does not count: the retry stores and counts those events itself.
fn stored_event_keys(
    connection: &Connection,
    candidates: &[(Key, &Event)],
    batch_id: u64,
) -> Result<KeySet> {
    let interrupted = !batch_completed(connection, batch_id)?;
    let mut by_merchant: std::collections::BTreeMap<&str, Vec<Key>> = Default::default();
    for (key, event) in candidates {
        by_merchant
            .entry(event.merchant_id.as_str())
            .or_default()
            .push(*key);
    }
    let mut stored = KeySet::default();
    for (merchant_id, keys) in by_merchant {
        let found = stored_keys(connection, "event_keys", Some(merchant_id), &keys)?;
        stored.extend(
            found
                .into_iter()
                .filter(|(_, batch)| !(interrupted && *batch == batch_id))
                .map(|(key, _)| key),
        );
    }
    Ok(stored)
}

fn stored_reject_keys(connection: &Connection, keyed: &[(Key, &RejectedLine)]) -> Result<KeySet> {
    let keys: Vec<Key> = keyed.iter().map(|(key, _)| *key).collect();
    Ok(stored_keys(connection, "rejected", None, &keys)?
        .into_iter()
        .map(|(key, _)| key)
        .collect())
}

/// Whether an append of `batch_id` finished (its row is written last).
fn batch_completed(connection: &Connection, batch_id: u64) -> Result<bool> {
    let rows = connection.run(
        "looking up an earlier attempt at the batch",
        connection
            .client()
            .query("SELECT count() FROM appends WHERE batch = ?")
            .bind(batch_id)
            .fetch_one::<u64>(),
    )?;
    Ok(rows > 0)
}

/// Which of `keys` are in `table` (of one merchant, if given), with the batch that stored
/// each (0 where the table does not say), a chunk per query.
fn stored_keys(
    connection: &Connection,
    table: &str,
    merchant_id: Option<&str>,
    keys: &[Key],
) -> Result<Vec<(Key, u64)>> {
    let mut stored = Vec::new();
    for chunk in keys.chunks(KEYS_PER_LOOKUP) {
        let wanted: KeySet = chunk.iter().copied().collect();
        let (merchant, batch) = if merchant_id.is_some() {
            ("merchant_id = ? AND ", "batch")
        } else {
            ("", "toUInt64(0) AS batch")
        };
        let sql = format!(
            "SELECT key_hi, key_lo, {batch} FROM {table} WHERE {merchant}key_hi IN ({})",
            number_list(chunk.iter().map(|k| halves(*k).0))
        );
        let mut query = connection.client().query(&sql);
        if let Some(merchant_id) = merchant_id {
            query = query.bind(merchant_id);
        }
        let found = connection.run(
            &format!("looking up stored keys in {table}"),
            query.fetch_all::<StoredKey>(),
        )?;
        stored.extend(
            found
                .into_iter()
                .map(|k| (join(k.key_hi, k.key_lo), k.batch))
                .filter(|(k, _)| wanted.contains(k)),
        );
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_being_split_in_halves() {
        let key = dedup::event_key("m1", "e1");
        let (hi, lo) = halves(key);
        assert_eq!(join(hi, lo), key);
    }
}
