//! The delivery log of one merchant: an append-only JSONL file (`outbox.jsonl` beside the
//! merchant's settings) recording every message a send decided on — planned, held out — and
//! what became of it — delivered, failed, refused.
//!
//! Guarantees:
//! - A message is recorded, with the exact body it will be sent with, and made durable
//!   (fsync) before any delivery attempt; a send killed at any moment and run again resends
//!   the recorded body under the same key, so no key ever goes out with two bodies and a rerun
//!   never makes new keys for messages already decided.
//! - One writer per merchant at a time ([`OutboxWriter`] holds an exclusive lock); readers read
//!   whole lines only. A line torn by a crash is cut off by the next writer before it appends.
//! - Keys are a hash of (merchant, campaign, user, occurrence): the receiver's idempotency key.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::definition::PushChannel;
use crate::error::{Error, Result};
use crate::settings::merchant_config_dir;
use crate::store::fsutil;

const OUTBOX_FILE: &str = "outbox.jsonl";
const OUTBOX_LOCK: &str = "outbox.lock";

/// One item of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    pub item_id: String,
    pub score: f64,
    pub reason: String,
}

/// A decided message: sent when due, or held out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub key: String,
    pub campaign: String,
    pub user_id: String,
    /// "once" for a one-off campaign; what fired it for a trigger.
    pub occurrence: String,
    pub channel: PushChannel,
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub openid: Option<String>,
    pub items: Vec<MessageItem>,
    /// When it is (or, held out, would have been) sent.
    pub send_at_ms: i64,
    /// The plan's "now" when it was decided.
    pub planned_at_ms: i64,
    /// The exact bytes POSTed (webhook) or the request's data (subscription message); empty
    /// for a holdout.
    #[serde(default)]
    pub body: String,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Record {
    /// To be delivered at its `send_at_ms`.
    Planned(Message),
    /// In the holdout: never delivered, measured against the delivered.
    HeldOut(Message),
    Delivered {
        key: String,
        at_ms: i64,
    },
    /// Gave up (a 4xx, or retries exhausted); `reason` says why.
    Failed {
        key: String,
        at_ms: i64,
        reason: String,
    },
    /// The customer refused the subscription message (WeChat errcode 43101): their consent is
    /// used up, nothing was delivered.
    Refused {
        key: String,
        at_ms: i64,
    },
}

/// Where a message stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Pending,
    HeldOut,
    Delivered { at_ms: i64 },
    Failed { reason: String },
    Refused,
}

impl Status {
    /// Whether the message counts against the customer's caps (sent or about to be).
    pub fn counts_for_caps(&self) -> bool {
        matches!(self, Self::Pending | Self::Delivered { .. })
    }

    /// Whether it used up a subscription consent.
    pub fn uses_consent(&self) -> bool {
        matches!(self, Self::Pending | Self::Delivered { .. } | Self::Refused)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::HeldOut => "held_out",
            Self::Delivered { .. } => "delivered",
            Self::Failed { .. } => "failed",
            Self::Refused => "refused",
        }
    }
}

/// A message and its latest status.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub message: Message,
    pub status: Status,
}

/// The folded log: every message by key, and each customer's keys in log order.
#[derive(Debug, Default)]
pub struct OutboxState {
    pub entries: HashMap<String, Entry>,
    pub by_user: HashMap<String, Vec<String>>,
    /// Keys in the order first recorded.
    pub order: Vec<String>,
}

impl OutboxState {
    fn apply(&mut self, record: Record) {
        let (key, status) = match record {
            Record::Planned(message) | Record::HeldOut(message)
                if self.entries.contains_key(&message.key) =>
            {
                // Recorded twice (a rerun after a crash between the two writes): the first
                // decision stands.
                let _ = message;
                return;
            }
            Record::Planned(message) => {
                self.insert(message, Status::Pending);
                return;
            }
            Record::HeldOut(message) => {
                self.insert(message, Status::HeldOut);
                return;
            }
            Record::Delivered { key, at_ms } => (key, Status::Delivered { at_ms }),
            Record::Failed { key, reason, .. } => (key, Status::Failed { reason }),
            Record::Refused { key, .. } => (key, Status::Refused),
        };
        if let Some(entry) = self.entries.get_mut(&key) {
            // A delivery is final: a late duplicate outcome does not undo it.
            if !matches!(entry.status, Status::Delivered { .. }) {
                entry.status = status;
            }
        }
    }

    fn insert(&mut self, message: Message, status: Status) {
        self.by_user
            .entry(message.user_id.clone())
            .or_default()
            .push(message.key.clone());
        self.order.push(message.key.clone());
        self.entries
            .insert(message.key.clone(), Entry { message, status });
    }

    /// The customer's messages, in log order.
    pub fn of_user<'a>(&'a self, user_id: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|key| self.entries.get(key))
    }

    /// Every message of one campaign, in log order.
    pub fn of_campaign<'a>(&'a self, campaign: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.order
            .iter()
            .filter_map(|key| self.entries.get(key))
            .filter(move |e| e.message.campaign == campaign)
    }
}

fn outbox_path(data_dir: &Path, merchant_id: &str) -> PathBuf {
    merchant_config_dir(data_dir, merchant_id).join(OUTBOX_FILE)
}

/// The idempotency key of a message: stable for (merchant, campaign, user, occurrence).
pub fn message_key(merchant_id: &str, campaign: &str, user_id: &str, occurrence: &str) -> String {
    let mut text = String::with_capacity(
        merchant_id.len() + campaign.len() + user_id.len() + occurrence.len() + 3,
    );
    for (i, part) in [merchant_id, campaign, user_id, occurrence]
        .iter()
        .enumerate()
    {
        if i > 0 {
            text.push('\u{0}');
        }
        text.push_str(part);
    }
    format!(
        "{campaign}-{:032x}",
        xxhash_rust::xxh3::xxh3_128(text.as_bytes())
    )
}

/// Reads a merchant's log (empty before its first send). A torn last line is ignored; a
/// damaged line elsewhere is an error naming it.
pub fn read_outbox(data_dir: &Path, merchant_id: &str) -> Result<OutboxState> {
    let path = outbox_path(data_dir, merchant_id);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OutboxState::default()),
        Err(e) => return Err(Error::io("open", &path)(e)),
    };
    let mut state = OutboxState::default();
    let mut lines = BufReader::new(file).split(b'\n').peekable();
    let mut number = 0usize;
    while let Some(line) = lines.next() {
        number += 1;
        let line = line.map_err(Error::io("read", &path))?;
        let is_last = lines.peek().is_none();
        match serde_json::from_slice::<Record>(&line) {
            Ok(record) => state.apply(record),
            // The tail a crash tore off mid-write: never acted on.
            Err(_) if is_last => {}
            Err(e) => {
                return Err(Error::CorruptStore {
                    path,
                    reason: format!("line {number} of the delivery log is not a record: {e}"),
                });
            }
        }
    }
    Ok(state)
}

/// The one writer of a merchant's log, holding its lock.
pub struct OutboxWriter {
    path: PathBuf,
    file: File,
    _lock: File,
}

impl OutboxWriter {
    /// Takes the merchant's outbox lock (waiting for another send to finish), cuts off a line
    /// torn by a crash, and opens the log for appending.
    pub fn open(data_dir: &Path, merchant_id: &str) -> Result<Self> {
        let dir = merchant_config_dir(data_dir, merchant_id);
        let lock = fsutil::lock_exclusive(&dir.join(OUTBOX_LOCK))?;
        let path = dir.join(OUTBOX_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        let whole = complete_length(&mut file).map_err(Error::io("read", &path))?;
        let length = file.metadata().map_err(Error::io("stat", &path))?.len();
        if whole < length {
            file.set_len(whole).map_err(Error::io("truncate", &path))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(Error::io("seek", &path))?;
        Ok(Self {
            path,
            file,
            _lock: lock,
        })
    }

    /// Appends records and makes them durable before returning.
    pub fn append(&mut self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(records.len() * 256);
        for record in records {
            serde_json::to_writer(&mut bytes, record).expect("records always serialize");
            bytes.push(b'\n');
        }
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(Error::io("append to", &self.path))
    }
}

/// The length of the file up to and including its last newline.
fn complete_length(file: &mut File) -> std::io::Result<u64> {
    let length = file.metadata()?.len();
    let mut end = length;
    let mut buffer = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        std::io::Read::read_exact(file, chunk)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, user: &str) -> Message {
        Message {
            key: key.to_owned(),
            campaign: "spring".to_owned(),
            user_id: user.to_owned(),
            occurrence: "once".to_owned(),
            channel: PushChannel::Webhook,
            template_id: None,
            openid: None,
            items: vec![],
            send_at_ms: 10,
            planned_at_ms: 5,
            body: "{}".to_owned(),
        }
    }

    #[test]
    fn the_log_folds_to_each_messages_latest_state_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut writer = OutboxWriter::open(dir.path(), "m1").expect("open");
            writer
                .append(&[
                    Record::Planned(message("a", "u1")),
                    Record::Planned(message("b", "u2")),
                    Record::HeldOut(message("c", "u3")),
                    Record::Delivered {
                        key: "a".into(),
                        at_ms: 11,
                    },
                ])
                .expect("append");
        }
        // A crash mid-line.
        let path = outbox_path(dir.path(), "m1");
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(br#"{"state":"delivered","key":"b","at"#)
            .expect("write");
        drop(file);

        let state = read_outbox(dir.path(), "m1").expect("read");
        assert_eq!(state.entries["a"].status, Status::Delivered { at_ms: 11 });
        assert_eq!(
            state.entries["b"].status,
            Status::Pending,
            "the torn line is not acted on"
        );
        assert_eq!(state.entries["c"].status, Status::HeldOut);

        // The next writer cuts the torn tail and appends whole lines after it.
        let mut writer = OutboxWriter::open(dir.path(), "m1").expect("open");
        writer
            .append(&[
                Record::Failed {
                    key: "b".into(),
                    at_ms: 12,
                    reason: "400".into(),
                },
                // A duplicate decision after a crash: the first one stands.
                Record::Planned(Message {
                    send_at_ms: 99,
                    ..message("a", "u1")
                }),
            ])
            .expect("append");
        drop(writer);
        let state = read_outbox(dir.path(), "m1").expect("read");
        assert_eq!(
            state.entries["b"].status,
            Status::Failed {
                reason: "400".into()
            }
        );
        assert_eq!(state.entries["a"].message.send_at_ms, 10);
        assert_eq!(state.entries["a"].status, Status::Delivered { at_ms: 11 });
        assert_eq!(state.of_user("u1").count(), 1);
        assert_eq!(state.of_campaign("spring").count(), 3);
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let a = message_key("m1", "spring", "u1", "once");
        assert_eq!(a, message_key("m1", "spring", "u1", "once"));
        assert_ne!(a, message_key("m2", "spring", "u1", "once"));
        assert_ne!(a, message_key("m1", "spring", "u1", "2026-05-01"));
        // Separators keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            message_key("m", "s", "ab", "c"),
            message_key("m", "s", "a", "bc")
        );
        assert!(a.starts_with("spring-"));
    }
}
