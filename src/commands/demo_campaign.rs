//! The past push campaign `recur demo` replays, so the dashboard's campaigns page and the
//! campaign-lift notebook have a measured campaign to show.
//!
//! The generator simulated the campaign's effect on the customers (`recur generate
//! --campaign`: planned at 10:00 +08:00 the day before its day, delivered at 10:00 on it).
//! The demo then does what a merchant would have done at those moments: a snapshot as of the
//! plan, the campaign created, and `campaign send` at the plan and at the delivery — to a
//! stand-in receiver in this process, so nothing leaves the machine. Rerunning the demo changes
//! nothing: the campaign exists and its decisions are already in the delivery log.

use anyhow::Context;
use recur_engine::analytics::period::{AsOf, TimeZoneName};
use recur_engine::campaign::outbox::Message;
use recur_engine::campaign::report::{CampaignReport, measure};
use recur_engine::campaign::{Campaign, Goal, PushChannel, create_campaign, find_campaign};
use recur_engine::jobs::RunOptions;
use recur_engine::settings::{MerchantSettings, settings_path};
use recur_engine::synth::SynthCampaign;
use recur_push::{Outcome, SendOptions, Sender};

use super::campaign::inputs_for;
use super::run;
use crate::cli::DataDir;

/// The name of the demo's campaign unless `--campaign` names another.
pub(crate) const DEMO_CAMPAIGN: &str = "autumn-repeat";
/// The shortest history (days) the demo simulates a campaign in: a day to plan it, a week to
/// measure it, and orders before it.
pub(crate) const MIN_DAYS: u32 = 30;
/// Items per message, as a merchant's repurchase push would carry.
const ITEMS_PER_MESSAGE: u32 = 3;
/// The window `recur report campaign` measures by default.
const WINDOW_DAYS: u32 = 7;
/// The demo's merchants are WeChat merchants in China.
const TIME_ZONE: &str = "Asia/Shanghai";

/// The merchant's webhook, stood in for: every message is delivered at once.
struct StandInReceiver;

impl Sender for StandInReceiver {
    fn deliver(&self, _message: &Message) -> Outcome {
        Outcome::Delivered
    }
}

/// Gives each of `merchants` the demo's time zone, unless the merchant has settings already
/// (a rerun, or settings the user made).
pub(crate) fn set_time_zones(dir: &std::path::Path, merchants: &[String]) -> anyhow::Result<()> {
    for merchant in merchants {
        if settings_path(dir, merchant).exists() {
            continue;
        }
        let zone = TimeZoneName::new(TIME_ZONE)?;
        MerchantSettings::update(dir, merchant, |settings| settings.time_zone = zone)?;
    }
    Ok(())
}

/// Plans and delivers `simulated` for every merchant of the store as of its planning time,
/// then measures it; returns each merchant's report.
pub(crate) fn replay(
    data: &DataDir,
    simulated: &SynthCampaign,
) -> anyhow::Result<Vec<CampaignReport>> {
    let (Some(planned), Some(delivered)) = (simulated.planned_at(), simulated.delivered_at())
    else {
        anyhow::bail!("campaign {} has no valid local 10:00", simulated.name);
    };
    let dir = &data.data_dir;
    let manifest = run::run_jobs(
        data,
        RunOptions {
            as_of: Some(AsOf::Instant(planned.timestamp_millis())),
            ..RunOptions::default()
        },
    )
    .context("the snapshot the demo's campaign was planned from")?;
    let mut reports = Vec::new();
    for merchant in manifest.merchants.iter().map(|m| m.merchant_id.as_str()) {
        if find_campaign(dir, merchant, &simulated.name).is_err() {
            create_campaign(
                dir,
                merchant,
                Campaign {
                    name: simulated.name.clone(),
                    audience: None,
                    goal: Goal::Repurchase,
                    k: ITEMS_PER_MESSAGE,
                    channel: PushChannel::Webhook,
                    template_id: None,
                    holdout: simulated.holdout,
                    trigger: None,
                    target: None,
                    created_at_ms: planned.timestamp_millis(),
                },
            )?;
        }
        for at in [planned, delivered] {
            let at_ms = at.timestamp_millis();
            inputs_for(data, merchant, &simulated.name, None, at_ms)?
                .send(
                    dir,
                    merchant,
                    at_ms,
                    &StandInReceiver,
                    SendOptions::default(),
                    &|_, _| {},
                )
                .with_context(|| format!("sending the demo's campaign of {merchant}"))?;
        }
        let mut store = data.open_store()?;
        reports.push(measure(
            dir,
            &mut store,
            merchant,
            &simulated.name,
            WINDOW_DAYS,
        )?);
    }
    Ok(reports)
}
