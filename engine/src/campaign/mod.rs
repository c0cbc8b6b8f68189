//! Push campaigns: who gets which items when, within WeChat's consent rules, frequency caps,
//! opt-outs and quiet hours, with a stable holdout to measure the lift.
//!
//! - [`definition`]: campaigns as a merchant defines them, stored beside its audiences.
//! - [`plan`]: one decision per audience member (send, holdout or skip with a reason),
//!   deterministic for the same inputs.
//! - [`outbox`]: the delivery log — every planned, held-out, delivered and failed message —
//!   which makes sends exactly-once in effect and feeds caps, consent and the report.
//! - [`report`]: treated against holdout, with the lift and its interval.
//! - [`trigger`]: who a triggered campaign fires for, and the occurrence that keys it.
//! - [`uplift`]: who a push moves, learned from a past campaign's holdout, for targeting.

pub mod definition;
pub mod outbox;
pub mod plan;
pub mod report;
pub mod trigger;
pub mod uplift;

pub use definition::{
    Campaign, Goal, PushChannel, Target, Trigger, create_campaign, find_campaign, load_campaigns,
};
