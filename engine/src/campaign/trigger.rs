//! Triggered campaigns: the customers a trigger fires for at a moment, each with the
//! occurrence that fired it — the key that makes it fire at most once, across reruns and
//! crashes (the delivery log keys each message by campaign, customer and occurrence).
//!
//! - `after_purchase {days, category?}`: each kept order (with an item of `category`) fires
//!   `days` after it; occurrence `order:<order_id>`.
//! - `due {}`: the customer's list (main, top `k`) holds an item due by its cycle; occurrence
//!   `due:<item>:<local date last bought>`.
//! - `p_alive_below x`: the customer's probability of still buying is under `x`; occurrence
//!   `lapse:<last purchase, epoch ms>` (one win-back per lapse).
//! - `birthday {}`: the local date is the customer's birthday (the latest `identify` event's
//!   `properties.birthday`; 02-29 falls on 02-28 in other years); occurrence `birthday:<year>`.
//!
//! A firing counts only within [`LOOKBACK_DAYS`] of its moment, so a campaign created today
//! does not fire for every order of the past years. A customer with several firings at once
//! gets the newest one.

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use polars::prelude::*;

use super::definition::Trigger;
use crate::analytics::members::BIRTHDAY;
use crate::error::{Error, Result};
use crate::event::{EventType, parse_birthday};
use crate::jobs::purchases::{
    NET_QUANTITY, ORDERED_AT, item_categories, kept_orders, net_order_lines,
};
use crate::snapshot::{ListFilter, ServingSnapshot};
use crate::store::{CATEGORY, EVENT_TYPE, ITEM_ID, ORDER_ID, PROPERTIES, TS, USER_ID};

const DAY_MS: i64 = 86_400_000;
/// How far back a firing's moment may lie and still fire.
pub const LOOKBACK_DAYS: i64 = 7;

/// One customer the trigger fires for, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Firing {
    pub user_id: String,
    pub occurrence: String,
    /// When it fired (the moment the occurrence became due), epoch ms.
    pub at_ms: i64,
}

/// What a trigger is evaluated on.
pub struct TriggerInputs<'a> {
    pub merchant_id: &'a str,
    /// The merchant's stitched events up to the moment.
    pub events: Option<LazyFrame>,
    pub snapshot: &'a ServingSnapshot,
    pub zone: Tz,
    pub at_ms: i64,
    /// Items per message (the `due` trigger looks at the top `k`).
    pub k: usize,
}

/// The customers `trigger` fires for at `inputs.at_ms`, one (the newest) per customer,
/// sorted by customer.
pub fn firings(trigger: &Trigger, inputs: &TriggerInputs<'_>) -> Result<Vec<Firing>> {
    let all = match trigger {
        Trigger::AfterPurchase { days, category } => {
            after_purchase(inputs, *days, category.as_deref())?
        }
        Trigger::Due {} => due(inputs),
        Trigger::PAliveBelow(threshold) => lapsed(inputs, *threshold)?,
        Trigger::Birthday {} => birthdays(inputs)?,
    };
    let mut newest: HashMap<String, Firing> = HashMap::new();
    for firing in all {
        let keep = newest
            .get(&firing.user_id)
            .is_none_or(|f| (f.at_ms, &f.occurrence) < (firing.at_ms, &firing.occurrence));
        if keep {
            newest.insert(firing.user_id.clone(), firing);
        }
    }
    let mut out: Vec<Firing> = newest.into_values().collect();
    out.sort_unstable();
    Ok(out)
}

fn window(inputs: &TriggerInputs<'_>) -> (i64, i64) {
    (inputs.at_ms - LOOKBACK_DAYS * DAY_MS, inputs.at_ms)
}

fn after_purchase(
    inputs: &TriggerInputs<'_>,
    days: u32,
    category: Option<&str>,
) -> Result<Vec<Firing>> {
    let Some(events) = inputs.events.clone() else {
        return Ok(Vec::new());
    };
    let lines = net_order_lines(events.clone());
    let orders = match category {
        None => kept_orders(lines),
        Some(category) => {
            let with_category = lines
                .clone()
                .filter(col(NET_QUANTITY).gt(lit(0i64)))
                .join(
                    item_categories(events),
                    [col(ITEM_ID)],
                    [col(ITEM_ID)],
                    JoinArgs::new(JoinType::Inner),
                )
                .filter(col(CATEGORY).eq(lit(category)))
                .select([col(USER_ID), col(ORDER_ID)])
                .unique(None, UniqueKeepStrategy::First);
            kept_orders(lines).join(
                with_category,
                [col(USER_ID), col(ORDER_ID)],
                [col(USER_ID), col(ORDER_ID)],
                JoinArgs::new(JoinType::Semi),
            )
        }
    };
    let (from, to) = window(inputs);
    let fire_at = (col(ORDERED_AT) + lit(i64::from(days) * DAY_MS)).alias("fire_at");
    let frame = orders
        .select([col(USER_ID), col(ORDER_ID), fire_at])
        .filter(
            col("fire_at")
                .gt(lit(from))
                .and(col("fire_at").lt_eq(lit(to))),
        )
        .collect()
        .map_err(Error::polars("finding the orders a trigger fires for"))?;
    let (users, order_ids, times) = (|| -> PolarsResult<_> {
        Ok((
            frame.column(USER_ID)?.str()?.clone(),
            frame.column(ORDER_ID)?.str()?.clone(),
            frame.column("fire_at")?.i64()?.clone(),
        ))
    })()
    .map_err(Error::polars("finding the orders a trigger fires for"))?;
    Ok(users
        .iter()
        .zip(order_ids.iter())
        .zip(times.iter())
        .filter_map(|((u, o), t)| {
            Some(Firing {
                user_id: u?.to_owned(),
                occurrence: format!("order:{}", o?),
                at_ms: t?,
            })
        })
        .collect())
}

fn due(inputs: &TriggerInputs<'_>) -> Vec<Firing> {
    let Some(as_of_ms) = inputs
        .snapshot
        .manifest
        .merchants
        .iter()
        .find(|m| m.merchant_id == inputs.merchant_id)
        .map(|m| m.as_of_ms)
    else {
        return Vec::new();
    };
    let as_of_date = local_date(inputs.zone, as_of_ms);
    inputs
        .snapshot
        .customers_with_lists(inputs.merchant_id)
        .into_iter()
        .filter_map(|customer| {
            let list = inputs.snapshot.recommend_filtered(
                inputs.merchant_id,
                customer,
                inputs.k,
                &ListFilter::default(),
                &crate::settings::ListRules::default(),
            )?;
            let item = list.items.into_iter().find(|i| i.reason == "due")?;
            let bought = as_of_date - Duration::days(i64::from(item.days_since.unwrap_or(0)));
            Some(Firing {
                user_id: customer.to_owned(),
                occurrence: format!("due:{}:{bought}", item.item_id),
                at_ms: as_of_ms,
            })
        })
        .collect()
}

fn lapsed(inputs: &TriggerInputs<'_>, threshold: f64) -> Result<Vec<Firing>> {
    let Some(profiles) = inputs.snapshot.profiles_of(inputs.merchant_id) else {
        return Ok(Vec::new());
    };
    let frame = profiles
        .clone()
        .lazy()
        .filter(
            col("p_alive")
                .lt(lit(threshold))
                .and(col("last_purchase_ms").is_not_null()),
        )
        .select([col(USER_ID), col("last_purchase_ms")])
        .collect()
        .map_err(Error::polars("finding lapsing customers"))?;
    let (users, last) = (|| -> PolarsResult<_> {
        Ok((
            frame.column(USER_ID)?.str()?.clone(),
            frame
                .column("last_purchase_ms")?
                .cast(&DataType::Int64)?
                .i64()?
                .clone(),
        ))
    })()
    .map_err(Error::polars("finding lapsing customers"))?;
    Ok(users
        .iter()
        .zip(last.iter())
        .filter_map(|(u, t)| {
            Some(Firing {
                user_id: u?.to_owned(),
                occurrence: format!("lapse:{}", t?),
                at_ms: inputs.at_ms,
            })
        })
        .collect())
}

fn birthdays(inputs: &TriggerInputs<'_>) -> Result<Vec<Firing>> {
    let Some(events) = inputs.events.clone() else {
        return Ok(Vec::new());
    };
    // Each customer's latest birthday, as profiles show it.
    let members = crate::analytics::members::member_attributes(
        events
            .filter(
                col(EVENT_TYPE)
                    .eq(lit(EventType::Identify.as_str()))
                    .and(col(PROPERTIES).str().contains_literal(lit("\"birthday\""))),
            )
            .select([col(USER_ID), col(TS), col(PROPERTIES)]),
    )?;
    let (users, birthdays) = (|| -> PolarsResult<_> {
        Ok((
            members.column(USER_ID)?.str()?.clone(),
            members.column(BIRTHDAY)?.str()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading member birthdays"))?;
    let latest: Vec<(&str, (u32, u32))> = users
        .iter()
        .zip(birthdays.iter())
        .filter_map(|(user, birthday)| Some((user?, parse_birthday(birthday?)?)))
        .collect();
    let today = local_date(inputs.zone, inputs.at_ms);
    Ok(latest
        .into_iter()
        .filter(|(_, (month, day))| celebrated_on(today, *month, *day))
        .map(|(user, _)| Firing {
            user_id: user.to_owned(),
            occurrence: format!("birthday:{}", today.year()),
            at_ms: inputs.at_ms,
        })
        .collect())
}

/// Whether a birthday (month, day) is celebrated on `date`: 02-29 on 02-28 in common years.
pub fn celebrated_on(date: NaiveDate, month: u32, day: u32) -> bool {
    if (date.month(), date.day()) == (month, day) {
        return true;
    }
    (month, day) == (2, 29)
        && (date.month(), date.day()) == (2, 28)
        && NaiveDate::from_ymd_opt(date.year(), 2, 29).is_none()
}

fn local_date(zone: Tz, ms: i64) -> NaiveDate {
    zone.timestamp_millis_opt(ms)
        .single()
        .map_or_else(NaiveDate::default, |t| t.date_naive())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_day_birthdays_fall_on_the_28th_in_common_years() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert!(celebrated_on(date(2026, 2, 28), 2, 29));
        assert!(!celebrated_on(date(2028, 2, 28), 2, 29));
        assert!(celebrated_on(date(2028, 2, 29), 2, 29));
        assert!(celebrated_on(date(2026, 3, 15), 3, 15));
        assert!(!celebrated_on(date(2026, 3, 16), 3, 15));
    }
}
