//! A campaign's plan: one line per audience member, each exactly once — `send`, `holdout`, or
//! `skip` with a stable reason — with the items, the send time and the address.
//!
//! The rules, in the order they are checked:
//! 1. `opted_out`: an `unsubscribe` (of all pushes, or of the campaign's template) not
//!    followed by a new `subscribe` (of that template; of any, for an all-pushes opt-out).
//! 2. `no_openid` (subscription messages go to an openid).
//! 3. `no_consent` / `consent_used`: a subscription message needs an unused `subscribe` event
//!    for its template — one consent, one message (pending, delivered and refused messages in
//!    the delivery log use one up). Webhooks need none.
//! 4. `no_items`: the goal's list is empty after the merchant's list rules.
//! 5. `cap_day` / `cap_week`: the customer's pending and delivered messages of every campaign
//!    on the send day, or in the seven local days ending on it, reach the merchant's caps.
//! 6. The holdout: of those left, the customers whose hash of (campaign, user) falls under the
//!    holdout share — stable across runs, independent of everything else.
//!
//! Send time: the customer's most frequent active hour (local), at or after the plan's "now",
//! moved out of quiet hours to their end. A customer already in the delivery log for this
//! campaign keeps the decision recorded there, so a plan made after a send shows what was
//! sent. The same inputs give the same plan, byte for byte.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Timelike};
use chrono_tz::Tz;
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::definition::{Campaign, Goal, PushChannel, Target};
use super::outbox::{Message, MessageItem, OutboxState, Status, message_key};
use crate::analytics::activity::ACTIVE_HOUR;
use crate::analytics::identity::stitch;
use crate::analytics::period::TimeZoneName;
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::jobs::purchases::{kept_orders, net_order_lines};
use crate::settings::{LocalTime, MerchantSettings, PushSettings};
use crate::snapshot::{ListFilter, ServingSnapshot, SnapshotTable, scan_table};
use crate::store::{EVENT_TYPE, OPENID, PROPERTIES, TS, USER_ID};

const DAY_MS: i64 = 86_400_000;
/// The occurrence of a one-off campaign.
pub const ONCE: &str = "once";
/// Items first seen within this many days count as new (the `new_items` goal).
pub const NEW_ITEM_DAYS: i64 = 30;

/// What the plan does with a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Send,
    Holdout,
    Skip,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Holdout => "holdout",
            Self::Skip => "skip",
        }
    }
}

/// Why a customer is skipped: stable codes scripts rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    NoConsent,
    ConsentUsed,
    OptedOut,
    CapDay,
    CapWeek,
    NoItems,
    NoOpenid,
    LowUplift,
}

impl SkipReason {
    pub const ALL: [Self; 8] = [
        Self::NoConsent,
        Self::ConsentUsed,
        Self::OptedOut,
        Self::CapDay,
        Self::CapWeek,
        Self::NoItems,
        Self::NoOpenid,
        Self::LowUplift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoConsent => "no_consent",
            Self::ConsentUsed => "consent_used",
            Self::OptedOut => "opted_out",
            Self::CapDay => "cap_day",
            Self::CapWeek => "cap_week",
            Self::NoItems => "no_items",
            Self::NoOpenid => "no_openid",
            Self::LowUplift => "low_uplift",
        }
    }
}

/// One line of a plan, as `recur campaign plan` writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanLine {
    pub user_id: String,
    pub decision: Decision,
    pub reason: Option<SkipReason>,
    pub items: Vec<MessageItem>,
    /// RFC 3339 with the merchant's offset; null when skipped.
    pub send_at: Option<String>,
    pub channel: PushChannel,
    pub template_id: Option<String>,
    pub openid: Option<String>,
    /// What fired a triggered campaign for this customer (absent for a one-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<String>,
    #[serde(skip)]
    pub send_at_ms: Option<i64>,
}

/// A customer's consent and opt-out events before the plan's "now".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushEvents {
    /// `(ts, template_id)` of each subscribe, oldest first.
    pub subscribes: Vec<(i64, String)>,
    /// `(ts, template_id)` of each unsubscribe (`None`: all pushes), oldest first.
    pub unsubscribes: Vec<(i64, Option<String>)>,
}

/// What the plan knows of one audience member.
#[derive(Debug, Clone, Default)]
pub struct Member {
    pub user_id: String,
    pub openid: Option<String>,
    /// The goal's list, best first, at most `k`.
    pub items: Vec<MessageItem>,
    /// Their most frequent local hour of activity.
    pub active_hour: Option<u32>,
    pub events: PushEvents,
    /// What fired a triggered campaign for them; `None` for a one-off campaign.
    pub occurrence: Option<String>,
}

/// Everything a plan is decided from besides the members.
pub struct PlanContext<'a> {
    pub merchant_id: &'a str,
    pub campaign: &'a Campaign,
    pub at_ms: i64,
    pub zone: Tz,
    pub push: &'a PushSettings,
    pub outbox: &'a OutboxState,
}

impl PlanContext<'_> {
    /// The decision for one member (members must come sorted, each once).
    pub fn decide(&self, member: &Member) -> PlanLine {
        let campaign = self.campaign;
        let occurrence = member.occurrence.as_deref().unwrap_or(ONCE);
        let key = message_key(
            self.merchant_id,
            &campaign.name,
            &member.user_id,
            occurrence,
        );
        if let Some(entry) = self.outbox.entries.get(&key) {
            return self.recorded_line(&entry.message, &entry.status);
        }
        let line = |decision, reason, send_at_ms: Option<i64>| PlanLine {
            user_id: member.user_id.clone(),
            decision,
            reason,
            items: member.items.clone(),
            send_at: send_at_ms.map(|ms| self.rfc3339(ms)),
            channel: campaign.channel,
            template_id: campaign.template_id.clone(),
            openid: member.openid.clone(),
            occurrence: member.occurrence.clone(),
            send_at_ms,
        };
        let skip = |reason| line(Decision::Skip, Some(reason), None);
        if self.opted_out(&member.events) {
            return skip(SkipReason::OptedOut);
        }
        if campaign.channel == PushChannel::SubscribeMessage {
            if member.openid.as_deref().is_none_or(str::is_empty) {
                return skip(SkipReason::NoOpenid);
            }
            if let Some(reason) = self.consent_problem(member) {
                return skip(reason);
            }
        }
        if member.items.is_empty() {
            return skip(SkipReason::NoItems);
        }
        let send_at_ms = send_time(
            self.at_ms,
            member.active_hour,
            self.zone,
            self.push.quiet_from,
            self.push.quiet_until,
        );
        if let Some(reason) = self.cap_problem(&member.user_id, send_at_ms) {
            return skip(reason);
        }
        let decision = if in_holdout(&campaign.name, &member.user_id, campaign.holdout) {
            Decision::Holdout
        } else {
            Decision::Send
        };
        line(decision, None, Some(send_at_ms))
    }

    fn recorded_line(&self, message: &Message, status: &Status) -> PlanLine {
        PlanLine {
            user_id: message.user_id.clone(),
            decision: if *status == Status::HeldOut {
                Decision::Holdout
            } else {
                Decision::Send
            },
            reason: None,
            items: message.items.clone(),
            send_at: Some(self.rfc3339(message.send_at_ms)),
            channel: message.channel,
            template_id: message.template_id.clone(),
            openid: message.openid.clone(),
            occurrence: (message.occurrence != ONCE).then(|| message.occurrence.clone()),
            send_at_ms: Some(message.send_at_ms),
        }
    }

    fn rfc3339(&self, ms: i64) -> String {
        self.zone
            .timestamp_millis_opt(ms)
            .single()
            .map_or_else(String::new, |t| {
                t.to_rfc3339_opts(SecondsFormat::Secs, false)
            })
    }

    fn applies(&self, template: Option<&str>) -> bool {
        template.is_none() || template == self.campaign.template_id.as_deref()
    }

    fn opted_out(&self, events: &PushEvents) -> bool {
        let Some(last_out) = events
            .unsubscribes
            .iter()
            .filter(|(_, template)| self.applies(template.as_deref()))
            .map(|(ts, _)| *ts)
            .max()
        else {
            return false;
        };
        // Opting in again after opting out lifts it: to the campaign's template, or to
        // anything when the campaign has none.
        let back_in = events
            .subscribes
            .iter()
            .filter(|(_, template)| {
                self.campaign.template_id.is_none()
                    || self.campaign.template_id.as_deref() == Some(template)
            })
            .any(|(ts, _)| *ts > last_out);
        !back_in
    }

    fn consent_problem(&self, member: &Member) -> Option<SkipReason> {
        let template = self.campaign.template_id.as_deref()?;
        let given = member
            .events
            .subscribes
            .iter()
            .filter(|(_, t)| t == template)
            .count();
        if given == 0 {
            return Some(SkipReason::NoConsent);
        }
        let used = self
            .outbox
            .of_user(&member.user_id)
            .filter(|e| {
                e.message.channel == PushChannel::SubscribeMessage
                    && e.message.template_id.as_deref() == Some(template)
                    && e.status.uses_consent()
            })
            .count();
        (used >= given).then_some(SkipReason::ConsentUsed)
    }

    fn cap_problem(&self, user_id: &str, send_at_ms: i64) -> Option<SkipReason> {
        let day = local_date(self.zone, send_at_ms);
        let week_from = day - Duration::days(6);
        let (mut on_day, mut in_week) = (0u32, 0u32);
        for entry in self.outbox.of_user(user_id) {
            if !entry.status.counts_for_caps() {
                continue;
            }
            let sent_day = local_date(self.zone, entry.message.send_at_ms);
            if sent_day == day {
                on_day += 1;
            }
            if sent_day >= week_from && sent_day <= day {
                in_week += 1;
            }
        }
        if on_day >= self.push.cap_per_day {
            Some(SkipReason::CapDay)
        } else if in_week >= self.push.cap_per_week {
            Some(SkipReason::CapWeek)
        } else {
            None
        }
    }

    /// The delivery-log message of a `send` or `holdout` line (with the body it will be sent
    /// with).
    pub fn message(&self, line: &PlanLine) -> Option<Message> {
        let send_at_ms = line.send_at_ms?;
        let occurrence = line.occurrence.as_deref().unwrap_or(ONCE);
        let key = message_key(
            self.merchant_id,
            &self.campaign.name,
            &line.user_id,
            occurrence,
        );
        let body = match line.decision {
            Decision::Send => self.body(&key, line),
            Decision::Holdout => String::new(),
            Decision::Skip => return None,
        };
        Some(Message {
            key,
            campaign: self.campaign.name.clone(),
            user_id: line.user_id.clone(),
            occurrence: occurrence.to_owned(),
            channel: self.campaign.channel,
            template_id: self.campaign.template_id.clone(),
            openid: line.openid.clone(),
            items: line.items.clone(),
            send_at_ms,
            planned_at_ms: self.at_ms,
            body,
        })
    }

    /// What is sent: for a webhook the whole JSON body; for a subscription message the
    /// request WeChat gets (its access token travels in the URL, never here).
    fn body(&self, key: &str, line: &PlanLine) -> String {
        let value = match self.campaign.channel {
            PushChannel::Webhook => json!({
                "idempotency_key": key,
                "merchant_id": self.merchant_id,
                "campaign": self.campaign.name,
                "goal": self.campaign.goal,
                "user_id": line.user_id,
                "openid": line.openid,
                "template_id": line.template_id,
                "send_at": line.send_at,
                "items": line.items,
            }),
            PushChannel::SubscribeMessage => {
                let names: Vec<&str> = line.items.iter().map(|i| i.item_id.as_str()).collect();
                json!({
                    "touser": line.openid,
                    "template_id": line.template_id,
                    "page": format!("pages/index/index?campaign={}", self.campaign.name),
                    "data": {
                        "thing1": {"value": truncate_chars(&names.join("、"), 20)},
                        "time2": {"value": line.send_at.as_deref().map_or("", |s| &s[..16.min(s.len())]).replace('T', " ")},
                    },
                })
            }
        };
        serde_json::to_string(&value).expect("bodies always serialize")
    }
}

/// WeChat's `thing` fields hold at most 20 characters.
fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Whether (campaign, user) falls in the holdout: a hash mapped to [0, 1), so the draw is
/// stable across runs and independent of the user's other attributes.
pub fn in_holdout(campaign: &str, user_id: &str, share: f64) -> bool {
    let mut text = String::with_capacity(campaign.len() + user_id.len() + 1);
    text.push_str(campaign);
    text.push('\u{0}');
    text.push_str(user_id);
    let hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
    ((hash >> 11) as f64 / (1u64 << 53) as f64) < share
}

fn local_date(zone: Tz, ms: i64) -> NaiveDate {
    zone.timestamp_millis_opt(ms)
        .single()
        .map_or_else(NaiveDate::default, |t| t.date_naive())
}

/// The instant of a local date and time; in a DST gap, the first instant after it.
fn at_local(zone: Tz, date: NaiveDate, minutes: u32) -> i64 {
    let mut time = date.and_time(
        NaiveTime::from_num_seconds_from_midnight_opt(minutes * 60, 0).unwrap_or_default(),
    );
    for _ in 0..3 {
        if let Some(t) = zone.from_local_datetime(&time).earliest() {
            return t.timestamp_millis();
        }
        time += Duration::hours(1);
    }
    date.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

/// When to send: the next start of the customer's active hour at or after `at_ms` (`at_ms`
/// itself while that hour runs, or when the hour is unknown), moved to the end of the quiet
/// hours when it falls in them.
pub fn send_time(
    at_ms: i64,
    active_hour: Option<u32>,
    zone: Tz,
    quiet_from: LocalTime,
    quiet_until: LocalTime,
) -> i64 {
    let Some(at) = zone.timestamp_millis_opt(at_ms).single() else {
        return at_ms;
    };
    let mut candidate = match active_hour {
        None => at_ms,
        Some(hour) if hour == at.hour() => at_ms,
        Some(hour) => {
            let today = at_local(zone, at.date_naive(), hour * 60);
            if today >= at_ms {
                today
            } else {
                at_local(zone, at.date_naive() + Duration::days(1), hour * 60)
            }
        }
    };
    if let Some(local) = zone.timestamp_millis_opt(candidate).single() {
        candidate = out_of_quiet_hours(local, quiet_from, quiet_until);
    }
    candidate
}

fn out_of_quiet_hours(local: DateTime<Tz>, from: LocalTime, until: LocalTime) -> i64 {
    let zone = local.timezone();
    let minutes = local.hour() * 60 + local.minute();
    let date = local.date_naive();
    let ms = local.timestamp_millis();
    if from == until {
        return ms;
    }
    if from.minutes < until.minutes {
        // Within one day (e.g. 12:00–14:00).
        return if minutes >= from.minutes && minutes < until.minutes {
            at_local(zone, date, until.minutes)
        } else {
            ms
        };
    }
    // Across midnight (e.g. 22:00–08:00).
    if minutes >= from.minutes {
        at_local(zone, date + Duration::days(1), until.minutes)
    } else if minutes < until.minutes {
        at_local(zone, date, until.minutes)
    } else {
        ms
    }
}

/// A plan and what it was made from.
pub struct Plan {
    pub lines: Vec<PlanLine>,
    /// The snapshot the lists and members came from.
    pub snapshot: String,
    pub at_ms: i64,
    /// The settings and delivery log the plan was decided against (a send records its new
    /// decisions against the same, without reading the log twice).
    pub settings: MerchantSettings,
    pub outbox: OutboxState,
    /// With uplift targeting: what the model was learned from and its Qini table.
    pub uplift: Option<super::uplift::UpliftTraining>,
}

impl Plan {
    /// The context the plan was decided in, to turn its lines into messages.
    pub fn context<'a>(&'a self, merchant_id: &'a str, campaign: &'a Campaign) -> PlanContext<'a> {
        PlanContext {
            merchant_id,
            campaign,
            at_ms: self.at_ms,
            zone: self.settings.time_zone.tz(),
            push: &self.settings.push,
            outbox: &self.outbox,
        }
    }

    /// Lines per decision and per skip reason, for summaries.
    pub fn counts(&self) -> (HashMap<Decision, usize>, HashMap<SkipReason, usize>) {
        let mut decisions = HashMap::new();
        let mut reasons = HashMap::new();
        for line in &self.lines {
            *decisions.entry(line.decision).or_default() += 1;
            if let Some(reason) = line.reason {
                *reasons.entry(reason).or_default() += 1;
            }
        }
        (decisions, reasons)
    }
}

/// Plans `campaign` of `merchant_id` at `at_ms` from the current snapshot (members, lists,
/// openids), the merchant's `events` before `at_ms` (consent, opt-outs, active hours) and its
/// delivery log.
pub fn plan_campaign(
    data_dir: &Path,
    snapshot: &ServingSnapshot,
    events: Option<LazyFrame>,
    merchant_id: &str,
    campaign: &Campaign,
    at_ms: i64,
) -> Result<Plan> {
    if !snapshot.has_merchant(merchant_id) {
        return Err(Error::NotFound(format!(
            "merchant {merchant_id} is not in the current snapshot; ingest its events and run `recur run`"
        )));
    }
    let settings = MerchantSettings::load(data_dir, merchant_id)?;
    let zone = settings.time_zone.tz();
    let outbox = super::outbox::read_outbox(data_dir, merchant_id)?;
    let name = snapshot.manifest.name.clone();
    let (members, profiled_hours) = members(data_dir, snapshot, &name, merchant_id, campaign)?;
    let stitched = scan_table(data_dir, &name, SnapshotTable::Identities)?
        .filter(col(crate::store::MERCHANT_ID).eq(lit(merchant_id)))
        .collect()
        .map_err(Error::polars("reading stitched identities"))?;
    let stitched_events = events.map(|events| {
        stitch(
            events.filter(col(TS).cast(DataType::Int64).lt_eq(lit(at_ms))),
            &stitched,
        )
    });
    let push_events = match stitched_events.clone() {
        Some(events) => push_events(events)?,
        None => HashMap::new(),
    };
    // Active hours come with the snapshot's profiles; a snapshot from before they did is
    // planned from the events.
    let hours = match (&stitched_events, profiled_hours) {
        (Some(events), false) => active_hours(events.clone(), &settings.time_zone)?,
        _ => HashMap::new(),
    };
    let filter = ListFilter {
        exclude_purchased: campaign.goal.explores(),
        first_seen_since_ms: (campaign.goal == Goal::NewItems)
            .then_some(at_ms - NEW_ITEM_DAYS * DAY_MS),
        ..ListFilter::default()
    };
    let context = PlanContext {
        merchant_id,
        campaign,
        at_ms,
        zone,
        push: &settings.push,
        outbox: &outbox,
    };
    // A triggered campaign plans only the customers it fires for, each with what fired it.
    let members: Vec<(Profiled, Option<String>)> = match &campaign.trigger {
        None => members.into_iter().map(|m| (m, None)).collect(),
        Some(trigger) => {
            let fired = super::trigger::firings(
                trigger,
                &super::trigger::TriggerInputs {
                    merchant_id,
                    events: stitched_events.clone(),
                    snapshot,
                    zone,
                    at_ms,
                    k: campaign.k as usize,
                },
            )?;
            let known: HashMap<String, Profiled> = members
                .into_iter()
                .map(|m| (m.user_id.clone(), m))
                .collect();
            fired
                .into_iter()
                .filter_map(|f| {
                    let member = known.get(&f.user_id)?;
                    let profiled = Profiled {
                        user_id: f.user_id,
                        openid: member.openid.clone(),
                        active_hour: member.active_hour,
                    };
                    Some((profiled, Some(f.occurrence)))
                })
                .collect()
        }
    };
    // Each member's line depends on the shared inputs only: decided in parallel, in order.
    let mut lines: Vec<PlanLine> = members
        .into_par_iter()
        .map(|(profiled, occurrence)| {
            let Profiled {
                user_id,
                openid,
                active_hour,
            } = profiled;
            let items = snapshot
                .recommend_filtered(
                    merchant_id,
                    &user_id,
                    campaign.k as usize,
                    &filter,
                    &settings.list_rules,
                )
                .map(|list| list.items)
                .unwrap_or_default()
                .into_iter()
                .map(|i| MessageItem {
                    item_id: i.item_id,
                    score: i.score,
                    reason: i.reason.to_owned(),
                })
                .collect();
            let member = Member {
                active_hour: active_hour.or_else(|| hours.get(&user_id).copied()),
                events: push_events.get(&user_id).cloned().unwrap_or_default(),
                user_id,
                openid,
                items,
                occurrence,
            };
            context.decide(&member)
        })
        .collect();
    let uplift = match campaign.target {
        None => None,
        Some(Target::Uplift { share }) => {
            let Some(events) = stitched_events else {
                return Err(Error::InvalidArgument(format!(
                    "uplift targeting needs merchant {merchant_id}'s orders and it has no events"
                )));
            };
            let orders = kept_orders(net_order_lines(events));
            let campaigns = super::definition::load_campaigns(data_dir, merchant_id)?;
            let past = super::uplift::past_campaign(&campaigns, &outbox, campaign, at_ms)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "uplift targeting learns from a past {} campaign of merchant {merchant_id}                          with a holdout whose {}-day window has ended, and there is none yet:                          run one with --holdout 0.1 or more first, or plan without --target",
                        campaign.goal.as_str(),
                        super::uplift::UPLIFT_WINDOW_DAYS
                    ))
                })?;
            let learned = super::uplift::learn(&outbox, &past, orders.clone(), at_ms)?;
            super::uplift::target(
                &mut lines,
                &learned.model,
                orders,
                merchant_id,
                campaign,
                &outbox,
                at_ms,
                share,
            )?;
            Some(learned.training)
        }
    };
    Ok(Plan {
        lines,
        snapshot: name,
        at_ms,
        settings,
        outbox,
        uplift,
    })
}

/// [`plan_campaign`] of the campaign named `name`, reading the merchant's events up to
/// `at_ms` from `store`.
pub fn plan_named(
    data_dir: &Path,
    snapshot: &ServingSnapshot,
    store: &mut dyn crate::store::EventStore,
    merchant_id: &str,
    name: &str,
    at_ms: i64,
) -> Result<Plan> {
    let campaign = super::definition::find_campaign(data_dir, merchant_id, name)?;
    let events = store.scan(
        merchant_id,
        crate::store::TimeRange {
            start_ms: None,
            end_ms: Some(at_ms.saturating_add(1)),
        },
    )?;
    plan_campaign(data_dir, snapshot, events, merchant_id, &campaign, at_ms)
}

/// One audience member as the snapshot's profiles know them.
struct Profiled {
    user_id: String,
    openid: Option<String>,
    /// `None` when the customer has no activity, or the snapshot predates active hours.
    active_hour: Option<u32>,
}

/// The campaign's audience (or every customer) with their openids and active hours, sorted
/// by user id; and whether the snapshot's profiles carry active hours at all.
fn members(
    data_dir: &Path,
    snapshot: &ServingSnapshot,
    name: &str,
    merchant_id: &str,
    campaign: &Campaign,
) -> Result<(Vec<Profiled>, bool)> {
    let profiles = snapshot
        .profiles_of(merchant_id)
        .cloned()
        .unwrap_or_default();
    let has_hours = profiles.column(ACTIVE_HOUR).is_ok();
    let hour = if has_hours {
        col(ACTIVE_HOUR).cast(DataType::UInt32)
    } else {
        lit(NULL).cast(DataType::UInt32).alias(ACTIVE_HOUR)
    };
    let profiles = profiles.lazy().select([col(USER_ID), col(OPENID), hour]);
    let chosen = match &campaign.audience {
        None => profiles,
        Some(audience) => {
            let members = scan_table(data_dir, name, SnapshotTable::Audiences)?
                .filter(
                    col(crate::store::MERCHANT_ID)
                        .eq(lit(merchant_id))
                        .and(col("audience").eq(lit(audience.as_str()))),
                )
                .select([col(USER_ID)]);
            let known = snapshot
                .manifest
                .merchants
                .iter()
                .find(|m| m.merchant_id == merchant_id)
                .is_some_and(|m| m.audiences.iter().any(|a| &a.name == audience));
            if !known {
                return Err(Error::NotFound(format!(
                    "audience {audience:?} of merchant {merchant_id} is not in the current snapshot: \
                     create it with `recur audience create` and run `recur run` first"
                )));
            }
            members.join(
                profiles,
                [col(USER_ID)],
                [col(USER_ID)],
                JoinArgs::new(JoinType::Left),
            )
        }
    };
    let frame = chosen
        .unique(None, UniqueKeepStrategy::First)
        .sort([USER_ID], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars("reading the campaign's audience"))?;
    let (users, openids, hours) = (|| -> PolarsResult<_> {
        Ok((
            frame.column(USER_ID)?.str()?.clone(),
            frame.column(OPENID)?.str()?.clone(),
            frame.column(ACTIVE_HOUR)?.u32()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading the campaign's audience"))?;
    let members = users
        .iter()
        .zip(openids.iter())
        .zip(hours.iter())
        .filter_map(|((u, o), h)| {
            Some(Profiled {
                user_id: u?.to_owned(),
                openid: o.map(str::to_owned),
                active_hour: h,
            })
        })
        .collect();
    Ok((members, has_hours))
}

/// Each customer's subscribe and unsubscribe events, oldest first.
fn push_events(events: LazyFrame) -> Result<HashMap<String, PushEvents>> {
    let kinds = Series::new(
        "kinds".into(),
        [
            EventType::Subscribe.as_str(),
            EventType::Unsubscribe.as_str(),
        ],
    );
    let frame = events
        .filter(col(EVENT_TYPE).is_in(lit(kinds).implode(false), false))
        .select([
            col(USER_ID),
            col(EVENT_TYPE),
            col(TS).cast(DataType::Int64).alias(TS),
            col(PROPERTIES),
        ])
        .sort([USER_ID, TS], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars("reading consent events"))?;
    let (users, types, times, templates) = (|| -> PolarsResult<_> {
        Ok((
            frame.column(USER_ID)?.str()?.clone(),
            frame.column(EVENT_TYPE)?.str()?.clone(),
            frame.column(TS)?.i64()?.clone(),
            frame.column(PROPERTIES)?.str()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading consent events"))?;
    let mut out: HashMap<String, PushEvents> = HashMap::new();
    for (((user, kind), ts), properties) in users
        .iter()
        .zip(types.iter())
        .zip(times.iter())
        .zip(templates.iter())
    {
        let (Some(user), Some(kind), Some(ts)) = (user, kind, ts) else {
            continue;
        };
        // Few events (consents and opt-outs): their properties are parsed here.
        let template = properties
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|p| p.get("template_id")?.as_str().map(str::to_owned));
        let template = template.as_deref();
        let entry = out.entry(user.to_owned()).or_default();
        if kind == EventType::Subscribe.as_str() {
            if let Some(template) = template {
                entry.subscribes.push((ts, template.to_owned()));
            }
        } else {
            entry.unsubscribes.push((ts, template.map(str::to_owned)));
        }
    }
    Ok(out)
}

/// Each customer's most frequent local hour of activity (ties: the earlier hour), from the
/// events (for snapshots whose profiles predate `active_hour`).
fn active_hours(events: LazyFrame, zone: &TimeZoneName) -> Result<HashMap<String, u32>> {
    let frame = crate::analytics::activity::active_hours(events, zone)
        .collect()
        .map_err(Error::polars("finding customers' active hours"))?;
    let (users, hours) = (|| -> PolarsResult<_> {
        Ok((
            frame.column(USER_ID)?.str()?.clone(),
            frame.column(ACTIVE_HOUR)?.u32()?.clone(),
        ))
    })()
    .map_err(Error::polars("finding customers' active hours"))?;
    Ok(users
        .iter()
        .zip(hours.iter())
        .filter_map(|(u, h)| Some((u?.to_owned(), h?)))
        .collect())
}

#[cfg(test)]
mod tests;
