//! A simulated past push campaign in the generated stream, with a known true effect, so tests
//! and demos can check that `recur report campaign` recovers the lift and that uplift
//! targeting finds the customers a push moves.
//!
//! The campaign is planned at 10:00 (local) the day before its `day` and delivered at 10:00
//! on `day`; its holdout is the same hash of (campaign, customer) `recur campaign plan` draws,
//! so a campaign of that name and holdout share, planned and sent then, holds out exactly the
//! customers the simulation left alone. Every customer with an order before the plan is in
//! it. The effect is applied after each customer's own organic history was drawn, which it
//! leaves byte for byte as it was:
//! - the push persuades a treated customer who would not have bought within the 7-day window
//!   with their segment's probability (`uplift` below), adding an order on one of the four days after;
//! - the persuaded open the push, and others do with a fixed probability.
//!
//! Segments and their true uplift (a "sure thing" buys anyway; the lapsed are persuadable):
//! `lapsed` (last order over 60 days ago) 0.20, `new` (one order) 0.12, `regular` (2–5
//! orders) 0.06, `loyal` (6 or more) 0.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use serde::Serialize;

/// Settings of the simulated campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthCampaign {
    pub name: String,
    /// The local day it is delivered (at 10:00); planned at 10:00 the day before.
    pub day: NaiveDate,
    /// The holdout share, drawn as `recur campaign plan` draws it.
    pub holdout: f64,
}

impl SynthCampaign {
    /// When it was planned: 10:00 at +08:00 the day before delivery.
    pub fn planned_at(&self) -> Option<DateTime<FixedOffset>> {
        at_delivery_hour(self.day - Duration::days(1))
    }

    /// When it was delivered: 10:00 at +08:00 on its day.
    pub fn delivered_at(&self) -> Option<DateTime<FixedOffset>> {
        at_delivery_hour(self.day)
    }
}

/// The simulation's merchants are in China: local time is +08:00.
fn at_delivery_hour(date: NaiveDate) -> Option<DateTime<FixedOffset>> {
    let shanghai = FixedOffset::east_opt(8 * 3600)?;
    shanghai
        .from_local_datetime(&date.and_hms_opt(DELIVERY_HOUR, 0, 0)?)
        .single()
}

/// The local hour of delivery (and, the day before, of planning).
pub(super) const DELIVERY_HOUR: u32 = 10;
/// Days after delivery an order counts as a conversion (the report's default window).
pub(super) const WINDOW_DAYS: f64 = 7.0;
/// Last order longer ago than this makes a customer lapsed.
const LAPSED_AFTER_DAYS: f64 = 60.0;
/// Share of treated customers the push did not persuade who open it anyway.
pub(super) const OPEN_RATE: f64 = 0.2;

/// A customer's segment at planning time and its true uplift.
pub(super) fn segment(orders_before: usize, days_since_last: f64) -> (&'static str, f64) {
    if days_since_last > LAPSED_AFTER_DAYS {
        ("lapsed", 0.20)
    } else if orders_before <= 1 {
        ("new", 0.12)
    } else if orders_before <= 5 {
        ("regular", 0.06)
    } else {
        ("loyal", 0.0)
    }
}

/// What happened to one customer of the simulated campaign.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CampaignTruth {
    pub(super) campaign: String,
    /// The id the plan knows them by (the stitched customer id).
    pub(super) customer_id: String,
    /// `treated` or `holdout`.
    pub(super) arm: &'static str,
    pub(super) segment: &'static str,
    /// The probability that the push makes them buy when they would not have.
    pub(super) uplift: f64,
    /// Whether they bought within the window on their own (pushed or not).
    pub(super) bought_anyway: bool,
    /// Whether the push added an order they would not have made: the customer's realised
    /// effect, so the sample's true lift is the mean of this over the treated.
    pub(super) converted_by_push: bool,
    pub(super) opened: bool,
}
