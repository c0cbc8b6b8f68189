//! `send`: records the plan's new decisions in the delivery log, then delivers every pending
//! message of the campaign whose time has come.
//!
//! Order of durability (what makes a killed send safe to run again):
//! 1. under the merchant's outbox lock, plan against the log as it stands;
//! 2. append the new `planned` and `held_out` records, with the exact bodies, and fsync;
//! 3. deliver due messages in batches, several at a time, and after each batch append and
//!    fsync its outcomes.
//!
//! A kill before 2 leaves nothing; between 2 and 3, or inside a batch, leaves messages pending
//! that the next run delivers with the recorded body under the same key. The receiver may see
//! a key twice (at least once), never two bodies for one key.

use std::sync::atomic::{AtomicUsize, Ordering};

use polars::prelude::LazyFrame;
use recur_engine::campaign::Campaign;
use recur_engine::campaign::outbox::{Message, OutboxWriter, Record, Status};
use recur_engine::campaign::plan::{Decision, plan_campaign};
use recur_engine::snapshot::ServingSnapshot;
use serde::Serialize;
use tracing::warn;

use crate::{Outcome, Result, Sender};

/// How a send proceeds.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Messages whose outcomes are made durable together.
    pub batch: usize,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            batch: 512,
        }
    }
}

/// What a send did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SendReport {
    /// New `send` decisions recorded by this run.
    pub planned: usize,
    /// New holdout decisions recorded by this run.
    pub held_out: usize,
    pub delivered: usize,
    pub failed: usize,
    pub refused: usize,
    /// Still pending after every retry: the next send tries again.
    pub unavailable: usize,
    /// Pending, not due yet.
    pub not_due: usize,
    /// The last reason a message failed or stayed pending.
    pub last_problem: Option<String>,
}

/// Plans `campaign` at `at_ms`, records the new decisions and delivers what is due through
/// `sender`; `progress` is told (done, due) as messages complete.
#[allow(clippy::too_many_arguments)]
pub fn send_campaign(
    data_dir: &std::path::Path,
    snapshot: &ServingSnapshot,
    events: Option<LazyFrame>,
    merchant_id: &str,
    campaign: &Campaign,
    at_ms: i64,
    sender: &dyn Sender,
    options: SendOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SendReport> {
    let mut writer = OutboxWriter::open(data_dir, merchant_id)?;
    let plan = plan_campaign(data_dir, snapshot, events, merchant_id, campaign, at_ms)?;
    let mut report = SendReport::default();
    let context = plan.context(merchant_id, campaign);
    let outbox = &plan.outbox;
    let mut new_records = Vec::new();
    for line in &plan.lines {
        let Some(message) = context.message(line) else {
            continue;
        };
        if outbox.entries.contains_key(&message.key) {
            continue;
        }
        match line.decision {
            Decision::Send => {
                report.planned += 1;
                new_records.push(Record::Planned(message));
            }
            Decision::Holdout => {
                report.held_out += 1;
                new_records.push(Record::HeldOut(message));
            }
            Decision::Skip => {}
        }
    }
    writer.append(&new_records)?;

    // Pending messages of this campaign, recorded now or by an earlier (perhaps killed) run.
    let mut due: Vec<Message> = Vec::new();
    let recorded = outbox
        .of_campaign(&campaign.name)
        .filter(|e| e.status == Status::Pending)
        .map(|e| &e.message)
        .chain(new_records.iter().filter_map(|r| match r {
            Record::Planned(m) => Some(m),
            _ => None,
        }));
    for message in recorded {
        if message.send_at_ms <= at_ms {
            due.push(message.clone());
        } else {
            report.not_due += 1;
        }
    }

    let total = due.len();
    let done = AtomicUsize::new(0);
    for batch in due.chunks(options.batch.max(1)) {
        let outcomes = deliver_batch(batch, sender, options.concurrency, &|| {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(n, total);
        });
        // Delivered "at" the send's now: with --at (a backfill, a test) the log, the caps and
        // the report stay on the timeline of the data.
        let now = at_ms;
        let mut records = Vec::with_capacity(batch.len());
        for (message, outcome) in batch.iter().zip(outcomes) {
            let key = message.key.clone();
            match outcome {
                Outcome::Delivered => {
                    report.delivered += 1;
                    records.push(Record::Delivered { key, at_ms: now });
                }
                Outcome::Failed(reason) => {
                    report.failed += 1;
                    report.last_problem = Some(reason.clone());
                    records.push(Record::Failed {
                        key,
                        at_ms: now,
                        reason,
                    });
                }
                Outcome::Refused => {
                    report.refused += 1;
                    records.push(Record::Refused { key, at_ms: now });
                }
                Outcome::Unavailable(reason) => {
                    report.unavailable += 1;
                    warn!(key = %message.key, %reason, "message left pending for the next send");
                    report.last_problem = Some(reason);
                }
            }
        }
        writer.append(&records)?;
    }
    Ok(report)
}

/// Delivers `batch` with `concurrency` workers; outcomes in the batch's order.
fn deliver_batch(
    batch: &[Message],
    sender: &dyn Sender,
    concurrency: usize,
    tick: &(dyn Fn() + Sync),
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
    let results = std::sync::Mutex::new(&mut outcomes);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, batch.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(message) = batch.get(i) else {
                        return;
                    };
                    let outcome = sender.deliver(message);
                    tick();
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Unavailable("not attempted".to_owned())))
        .collect()
}
