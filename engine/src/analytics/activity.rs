//! What counts as "active": kept orders, or events of a chosen type, bucketed into periods.
//!
//! Lifecycle, cohort and retention reports all start from the distinct (customer, period)
//! pairs this module produces, so they agree on what an active customer is.

use std::fmt;
use std::str::FromStr;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::period::{Period, TimeZoneName, local_day, period_of_day};
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::jobs::purchases::ORDERED_AT;
use crate::store::{EVENT_TYPE, TS, USER_ID};

pub const PERIOD: &str = "period";
/// A customer's most frequent local hour of activity (UInt32, 0–23).
pub const ACTIVE_HOUR: &str = "active_hour";
pub const AT_MS: &str = "at_ms";
/// Local day number (Int32) of an order, in the merchant's zone; computed once on load.
pub const LOCAL_DAY: &str = "local_day";

/// The activity a report follows: kept purchases (refunds netted, the default) or any
/// stored event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum Activity {
    #[default]
    Purchase,
    Event(EventType),
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Event(kind) => kind.as_str(),
        }
    }
}

impl FromStr for Activity {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match EventType::parse(text) {
            Some(EventType::Purchase) => Ok(Self::Purchase),
            Some(kind) => Ok(Self::Event(kind)),
            None => Err(Error::InvalidArgument(format!(
                "unknown event type {text:?}: use one of {}",
                EventType::ALL.map(EventType::as_str).join(", ")
            ))),
        }
    }
}

impl TryFrom<String> for Activity {
    type Error = String;

    /// For serde: the message alone, so rule errors read "at <path>: unknown event type ...".
    fn try_from(text: String) -> std::result::Result<Self, String> {
        text.parse().map_err(|e: Error| match e {
            Error::InvalidArgument(message) => message,
            other => other.to_string(),
        })
    }
}

impl From<Activity> for String {
    fn from(activity: Activity) -> Self {
        activity.as_str().to_owned()
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inputs every activity-based report reads.
#[derive(Clone)]
pub struct ActivitySources {
    /// Stitched events with `user_id`, `type`, `ts`.
    pub events: LazyFrame,
    /// [`crate::jobs::purchases::kept_orders`] of the stitched events, with [`LOCAL_DAY`].
    pub orders: LazyFrame,
    pub zone: TimeZoneName,
}

impl ActivitySources {
    /// `user_id`, `at_ms` (epoch ms, UTC) and `local_day` of each occurrence of `activity`.
    pub fn occurrences(&self, activity: Activity) -> LazyFrame {
        match activity {
            Activity::Purchase => self.orders.clone().select([
                col(USER_ID),
                col(ORDERED_AT).alias(AT_MS),
                col(LOCAL_DAY),
            ]),
            Activity::Event(kind) => self
                .events
                .clone()
                .filter(col(EVENT_TYPE).eq(lit(kind.as_str())))
                .select([col(USER_ID), col(TS).cast(DataType::Int64).alias(AT_MS)])
                .with_column(local_day(col(AT_MS), &self.zone).alias(LOCAL_DAY)),
        }
    }

    /// Distinct `user_id`, `period` (Int32) pairs of `activity`.
    pub fn active_periods(&self, activity: Activity, period: Period) -> LazyFrame {
        self.occurrences(activity)
            .select([
                col(USER_ID),
                period_of_day(col(LOCAL_DAY), period).alias(PERIOD),
            ])
            .unique(None, UniqueKeepStrategy::Any)
    }
}

/// Each customer's most frequent local hour of activity over `events` (`user_id`, `ts`), ties
/// to the earlier hour: `user_id`, `active_hour`. Pushes go out at this hour.
pub fn active_hours(events: LazyFrame, zone: &TimeZoneName) -> LazyFrame {
    let hour = super::period::local_hour(col(TS).cast(DataType::Int64), zone).alias("hour");
    // The mode per customer from each one's (at most 24) hours, sorted within the group: a
    // global sort of every (customer, hour) row by customer id costs far more.
    events
        .select([col(USER_ID), hour])
        .group_by([col(USER_ID), col("hour")])
        .agg([len().alias("events")])
        .group_by([col(USER_ID)])
        .agg([col("hour")
            .sort_by(
                [col("events"), col("hour")],
                SortMultipleOptions::default().with_order_descending_multi([true, false]),
            )
            .first()
            .alias(ACTIVE_HOUR)])
}
