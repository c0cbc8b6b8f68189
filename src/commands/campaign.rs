//! `recur campaign`: define push campaigns, plan them, send them, and measure them.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use polars::prelude::*;
use recur_engine::campaign::outbox::read_outbox;
use recur_engine::campaign::plan::{Decision, Plan, SkipReason, plan_campaign};
use recur_engine::campaign::report::{CampaignReport, measure};
use recur_engine::campaign::uplift::UpliftTraining;
use recur_engine::campaign::{
    Campaign, Goal, PushChannel, Target, Trigger, create_campaign, find_campaign, load_campaigns,
};
use recur_engine::settings::MerchantSettings;
use recur_engine::snapshot::ServingSnapshot;
use recur_engine::snapshot::serving::LoadScope;
use recur_engine::store::{AnyStore, EventStore, TimeRange};
use recur_push::{RetryPolicy, SendOptions, SendReport, Sender, send_campaign, sender_for};

use crate::cli::DataDir;
use crate::output::{outln, progress_bar, table, text_table, thousands};

#[derive(Subcommand)]
pub(crate) enum CampaignCommand {
    /// Define a campaign: who (an audience, or everyone), what (the goal's list), how (a
    /// subscription message or the merchant's webhook), and the holdout that measures it.
    #[command(after_help = "Examples:\n  \
        recur campaign create --data-dir data --merchant m_bakery --name weekend-repeat \\\n    \
          --goal repurchase --channel subscribe_message --template-id tmpl_fresh_bake_alert\n  \
        recur campaign create --data-dir data --merchant m_bakery --name try-new --goal new_items \\\n    \
          --channel webhook --audience lapsed-regulars --k 5 --holdout 0.2\n  \
        recur campaign create --data-dir data --merchant m_bakery --name autumn-repeat --goal repurchase \\\n    \
          --channel webhook --target uplift --uplift-share 0.5")]
    Create {
        #[command(flatten)]
        data: DataDir,
        #[arg(long, value_name = "ID")]
        merchant: String,
        /// 1–64 characters of a-z, 0-9, _ and -; a name is never reused.
        #[arg(long)]
        name: String,
        /// repurchase and winback push the repeat-aware list; cross_sell and new_items the
        /// list of items the customer never bought (new_items: first seen in the last 30 days).
        #[arg(long, value_parser = ["repurchase", "winback", "cross_sell", "new_items"])]
        goal: String,
        /// subscribe_message (needs --template-id and the customer's consent) or webhook.
        #[arg(long, value_parser = ["subscribe_message", "webhook"])]
        channel: String,
        #[arg(long, value_name = "ID")]
        template_id: Option<String>,
        /// An audience of the merchant (`recur audience list`); everyone when absent.
        #[arg(long, value_name = "NAME")]
        audience: Option<String>,
        /// Items per message (1–20).
        #[arg(long, default_value_t = 3)]
        k: u32,
        /// Share of would-be recipients held out to measure the lift (0–0.5).
        #[arg(long, default_value_t = 0.1, value_name = "SHARE")]
        holdout: f64,
        /// Fire per customer on an event of theirs, e.g. '{"after_purchase":{"days":3}}'.
        #[arg(long, value_name = "JSON")]
        trigger: Option<String>,
        #[command(flatten)]
        targeting: TargetArgs,
    },
    /// The merchant's campaigns.
    #[command(after_help = "Example:\n  recur campaign list --data-dir data --merchant m_bakery")]
    List {
        #[command(flatten)]
        data: DataDir,
        #[arg(long, value_name = "ID")]
        merchant: String,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// One campaign's definition and where its messages stand, as JSON.
    #[command(
        after_help = "Example:\n  recur campaign show --data-dir data --merchant m_bakery --name weekend-repeat"
    )]
    Show(CampaignArgs),
    /// One line per audience member: send, holdout, or skip with a reason; with the items,
    /// the send time and the openid. Changes nothing.
    #[command(after_help = "Examples:\n  \
        recur campaign plan --data-dir data --merchant m_bakery --name weekend-repeat --at 2026-11-01T10:00:00+08:00\n  \
        recur campaign plan --data-dir data --merchant m_bakery --name weekend-repeat --format table | less\n\
        Skip reasons: no_consent, consent_used, opted_out, cap_day, cap_week, no_items, no_openid, low_uplift.")]
    Plan {
        #[command(flatten)]
        campaign: CampaignArgs,
        #[command(flatten)]
        targeting: TargetArgs,
        /// The plan's "now" (RFC 3339); default: the current time. The same --at and data
        /// give the same plan, byte for byte.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Jsonl)]
        format: PlanFormat,
    },
    /// Record the plan's decisions in the delivery log and deliver every message whose send
    /// time has come; run it again (or after a crash) to deliver the rest.
    #[command(
        after_help = "Example:\n  recur campaign send --data-dir data --merchant m_bakery --name weekend-repeat\n\
        Configure delivery first: recur merchant set --merchant m_bakery --webhook-url URL --webhook-secret S\n\
        (or --wechat-appid ID --wechat-secret S for subscription messages)."
    )]
    Send {
        #[command(flatten)]
        campaign: CampaignArgs,
        #[command(flatten)]
        targeting: TargetArgs,
        /// The send's "now" (RFC 3339); default: the current time.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Messages in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Plan and send every triggered campaign (of one merchant, or of all): a trigger fires
    /// at most once per customer and occurrence, however often this runs (run it every hour).
    #[command(after_help = "Example:\n  recur campaign run --data-dir data\n  \
        recur campaign run --data-dir data --merchant m_bakery --at 2026-11-01T10:00:00+08:00\n\
        Triggers: {\"after_purchase\":{\"days\":3,\"category\":\"bread\"}}, {\"due\":{}}, {\"p_alive_below\":0.3}, {\"birthday\":{}}.")]
    Run {
        #[command(flatten)]
        data: DataDir,
        /// Only this merchant's campaigns.
        #[arg(long, value_name = "ID")]
        merchant: Option<String>,
        /// The run's "now" (RFC 3339); default: the current time.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Messages in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Print one JSON object per campaign.
        #[arg(long)]
        json: bool,
    },
    /// Treated against holdout: conversion, revenue, opens, and the lift with its interval
    /// (the same as `recur report campaign`).
    #[command(
        after_help = "Example:\n  recur campaign report --data-dir data --merchant m_bakery --name weekend-repeat --window-days 7"
    )]
    Report(CampaignReportArgs),
}

#[derive(Args, Clone)]
pub(crate) struct CampaignArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[arg(long, value_name = "ID")]
    pub merchant: String,
    /// The campaign's name.
    #[arg(long)]
    pub name: String,
}

/// `--target uplift --uplift-share S`.
#[derive(Args, Clone, Default)]
pub(crate) struct TargetArgs {
    /// Send to part of the customers only: `uplift` keeps the --uplift-share with the highest
    /// estimated uplift, learned from a past campaign of the same goal with a holdout; the
    /// rest are skipped as low_uplift. On plan and send it overrides the campaign's own.
    #[arg(long, value_parser = ["uplift"])]
    pub target: Option<String>,
    /// The share --target uplift keeps (above 0, at most 1; default 0.5).
    #[arg(long, value_name = "SHARE")]
    pub uplift_share: Option<f64>,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Option<Target>> {
        Ok(Target::from_flags(
            self.target.as_deref(),
            self.uplift_share,
        )?)
    }
}

#[derive(Args, Clone)]
pub(crate) struct CampaignReportArgs {
    #[command(flatten)]
    pub campaign: CampaignArgs,
    /// Days after each send (or planned send, for the holdout) an order counts.
    #[arg(long, default_value_t = 7)]
    pub window_days: u32,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PlanFormat {
    Jsonl,
    Table,
    Csv,
}

pub(crate) fn campaign(command: CampaignCommand) -> anyhow::Result<()> {
    match command {
        CampaignCommand::Create {
            data,
            merchant,
            name,
            goal,
            channel,
            template_id,
            audience,
            k,
            holdout,
            trigger,
            targeting,
        } => {
            let campaign = Campaign {
                name: name.clone(),
                audience,
                goal: Goal::parse(&goal)?,
                k,
                channel: PushChannel::parse(&channel)?,
                template_id,
                holdout,
                trigger: trigger.as_deref().map(Trigger::from_json).transpose()?,
                target: targeting.target()?,
                created_at_ms: chrono::Utc::now().timestamp_millis(),
            };
            create_campaign(&data.data_dir, &merchant, campaign)?;
            eprintln!(
                "campaign {name} created for merchant {merchant}; `recur campaign plan --merchant {merchant} --name {name}` shows who gets what"
            );
            Ok(())
        }
        CampaignCommand::List {
            data,
            merchant,
            format,
        } => {
            let campaigns = load_campaigns(&data.data_dir, &merchant)?;
            match format {
                ListFormat::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"merchant_id": merchant, "campaigns": campaigns})
                    )?
                ),
                ListFormat::Table => {
                    if campaigns.is_empty() {
                        eprintln!(
                            "merchant {merchant} has no campaigns yet; create one with `recur campaign create`"
                        );
                        return Ok(());
                    }
                    let rows = campaigns
                        .iter()
                        .map(|c| {
                            vec![
                                c.name.clone(),
                                c.goal.as_str().to_owned(),
                                c.channel.as_str().to_owned(),
                                c.audience.clone().unwrap_or_else(|| "(everyone)".into()),
                                c.k.to_string(),
                                format!("{:.0}%", c.holdout * 100.0),
                                if c.trigger.is_some() {
                                    "trigger"
                                } else {
                                    "one-off"
                                }
                                .into(),
                                match c.target {
                                    Some(Target::Uplift { share }) => {
                                        format!("uplift top {:.0}%", share * 100.0)
                                    }
                                    None => "everyone".into(),
                                },
                            ]
                        })
                        .collect();
                    outln!(
                        "{}",
                        table(
                            &[
                                "name", "goal", "channel", "audience", "k", "holdout", "kind",
                                "target"
                            ],
                            rows
                        )
                    );
                }
            }
            Ok(())
        }
        CampaignCommand::Show(args) => {
            let campaign = find_campaign(&args.data.data_dir, &args.merchant, &args.name)?;
            let outbox = read_outbox(&args.data.data_dir, &args.merchant)?;
            let mut states: std::collections::BTreeMap<&str, u64> = Default::default();
            for entry in outbox.of_campaign(&campaign.name) {
                *states.entry(entry.status.as_str()).or_default() += 1;
            }
            outln!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"campaign": campaign, "messages": states})
                )?
            );
            Ok(())
        }
        CampaignCommand::Plan {
            campaign: args,
            targeting,
            at,
            format,
        } => {
            let at_ms = at_ms(at.as_deref())?;
            let plan = make_plan(&args, &targeting, at_ms)?;
            write_plan(&plan, format)?;
            eprintln!("{}", plan_summary(&plan));
            if let Some(training) = &plan.uplift {
                eprintln!("{}", uplift_text(training));
            }
            Ok(())
        }
        CampaignCommand::Send {
            campaign: args,
            targeting,
            at,
            concurrency,
            json,
        } => send(&args, &targeting, at.as_deref(), concurrency, json),
        CampaignCommand::Report(args) => report(&args),
        CampaignCommand::Run {
            data,
            merchant,
            at,
            concurrency,
            json,
        } => run_triggered(&data, merchant.as_deref(), at.as_deref(), concurrency, json),
    }
}

/// `recur campaign run`: every triggered campaign, each merchant's events read once.
fn run_triggered(
    data: &DataDir,
    merchant: Option<&str>,
    at: Option<&str>,
    concurrency: usize,
    json: bool,
) -> anyhow::Result<()> {
    let dir = &data.data_dir;
    let at_ms = at_ms(at)?;
    // Lists, items and profiles of every merchant (triggers may look for due items).
    let scope = LoadScope {
        merchant: merchant.map(str::to_owned),
        explore: None,
        lists_only: true,
    };
    let snapshot = ServingSnapshot::load_current_scoped(dir, &scope)?;
    let mut store = data.open_store()?;
    let merchants: Vec<String> = match merchant {
        Some(m) => vec![m.to_owned()],
        None => snapshot
            .merchant_ids()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for merchant in &merchants {
        let triggered: Vec<Campaign> = load_campaigns(dir, merchant)?
            .into_iter()
            .filter(|c| c.trigger.is_some())
            .collect();
        if triggered.is_empty() {
            continue;
        }
        let settings = MerchantSettings::load(dir, merchant)?;
        for campaign in &triggered {
            let sender = match sender_for(merchant, campaign, &settings, RetryPolicy::default()) {
                Ok(sender) => sender,
                Err(e) => {
                    problems.push(format!("{merchant}/{}: {e}", campaign.name));
                    continue;
                }
            };
            let events = store.scan(
                merchant,
                TimeRange {
                    start_ms: None,
                    end_ms: Some(at_ms.saturating_add(1)),
                },
            )?;
            let report = send_campaign(
                dir,
                &snapshot,
                events,
                merchant,
                campaign,
                at_ms,
                sender.as_ref(),
                SendOptions {
                    concurrency,
                    ..SendOptions::default()
                },
                &|_, _| {},
            )?;
            if report.unavailable > 0 {
                problems.push(format!(
                    "{merchant}/{}: {} messages stay pending ({})",
                    campaign.name,
                    report.unavailable,
                    report.last_problem.clone().unwrap_or_default()
                ));
            }
            if json {
                let mut value = serde_json::to_value(&report)?;
                value["merchant_id"] = merchant.clone().into();
                value["campaign"] = campaign.name.clone().into();
                outln!("{}", serde_json::to_string(&value)?);
            }
            rows.push((merchant.clone(), campaign.name.clone(), report));
        }
    }
    if !json {
        if rows.is_empty() {
            eprintln!(
                "no triggered campaigns; create one with `recur campaign create --trigger JSON`"
            );
        } else {
            let table_rows = rows
                .iter()
                .map(|(m, c, r)| {
                    vec![
                        m.clone(),
                        c.clone(),
                        thousands(r.planned as u64),
                        thousands(r.held_out as u64),
                        thousands(r.delivered as u64),
                        thousands(r.failed as u64),
                        thousands(r.refused as u64),
                        thousands(r.unavailable as u64),
                        thousands(r.not_due as u64),
                    ]
                })
                .collect();
            outln!(
                "{}",
                table(
                    &[
                        "merchant",
                        "campaign",
                        "fired",
                        "held out",
                        "delivered",
                        "failed",
                        "refused",
                        "pending",
                        "not due"
                    ],
                    table_rows
                )
            );
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// `--at`, or now.
fn at_ms(at: Option<&str>) -> anyhow::Result<i64> {
    match at {
        None => Ok(chrono::Utc::now().timestamp_millis()),
        Some(text) => recur_engine::analytics::period::parse_instant(text).with_context(|| {
            format!(
                "--at must be RFC 3339 with an offset, e.g. 2026-11-01T10:00:00+08:00; got {text:?}"
            )
        }),
    }
}

/// What planning and sending read: the campaign, the current snapshot, and the merchant's
/// events up to `at_ms` (with the store that holds them open).
pub(crate) struct Inputs {
    campaign: Campaign,
    snapshot: ServingSnapshot,
    events: Option<LazyFrame>,
    _store: AnyStore,
}

impl Inputs {
    /// Records the plan's new decisions at `at_ms` and delivers the due messages through
    /// `sender`.
    pub(crate) fn send(
        self,
        dir: &std::path::Path,
        merchant: &str,
        at_ms: i64,
        sender: &dyn Sender,
        options: SendOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> anyhow::Result<SendReport> {
        Ok(send_campaign(
            dir,
            &self.snapshot,
            self.events,
            merchant,
            &self.campaign,
            at_ms,
            sender,
            options,
            progress,
        )?)
    }
}

fn inputs(args: &CampaignArgs, targeting: &TargetArgs, at_ms: i64) -> anyhow::Result<Inputs> {
    inputs_for(
        &args.data,
        &args.merchant,
        &args.name,
        targeting.target()?,
        at_ms,
    )
}

/// [`Inputs`] of campaign `name` of `merchant`, its targeting overridden by `target` if given.
pub(crate) fn inputs_for(
    data: &DataDir,
    merchant: &str,
    name: &str,
    target: Option<Target>,
    at_ms: i64,
) -> anyhow::Result<Inputs> {
    let dir = &data.data_dir;
    let mut campaign = find_campaign(dir, merchant, name)?;
    if let Some(target) = target {
        campaign.target = Some(target);
    }
    let snapshot = campaign_snapshot(dir, merchant, &campaign)?;
    let mut store = data.open_store()?;
    let events = store.scan(
        merchant,
        TimeRange {
            start_ms: None,
            end_ms: Some(at_ms.saturating_add(1)),
        },
    )?;
    Ok(Inputs {
        campaign,
        snapshot,
        events,
        _store: store,
    })
}

/// The part of the current snapshot a campaign's plan reads: the merchant's lists (the main
/// ones only, unless the goal explores or a trigger looks for due items), items and profiles.
fn campaign_snapshot(
    dir: &std::path::Path,
    merchant: &str,
    campaign: &Campaign,
) -> anyhow::Result<ServingSnapshot> {
    let scope = LoadScope {
        merchant: Some(merchant.to_owned()),
        explore: (!campaign.goal.explores() && campaign.trigger.is_none()).then_some(false),
        lists_only: true,
    };
    Ok(ServingSnapshot::load_current_scoped(dir, &scope)?)
}

fn make_plan(args: &CampaignArgs, targeting: &TargetArgs, at_ms: i64) -> anyhow::Result<Plan> {
    let Inputs {
        campaign,
        snapshot,
        events,
        _store,
    } = inputs(args, targeting, at_ms)?;
    Ok(plan_campaign(
        &args.data.data_dir,
        &snapshot,
        events,
        &args.merchant,
        &campaign,
        at_ms,
    )?)
}

/// What an uplift model learned from, and its Qini table, for people.
fn uplift_text(training: &UpliftTraining) -> String {
    let mut text = format!(
        "targeted by estimated uplift, learned from campaign {} ({} treated, {} held out, {}-day window)",
        training.trained_on,
        thousands(training.treated),
        thousands(training.holdout),
        training.window_days
    );
    if training.qini.is_empty() {
        text.push_str("; too little data for a cross-fitted Qini table");
        return text;
    }
    let number = |x: Option<f64>| x.map_or("–".to_owned(), |x| format!("{x:.1}"));
    let rows = training
        .qini
        .iter()
        .map(|r| {
            vec![
                format!("{:.0}%", r.top_share * 100.0),
                format!(
                    "{}/{}",
                    thousands(r.treated_converters),
                    thousands(r.treated)
                ),
                format!(
                    "{}/{}",
                    thousands(r.holdout_converters),
                    thousands(r.holdout)
                ),
                r.uplift
                    .map_or("–".to_owned(), |u| format!("{:+.1} pts", u * 100.0)),
                number(r.incremental_converters),
                number(r.random),
            ]
        })
        .collect();
    text.push_str(&format!(
        "\nQini table of {} (cross-fitted; coefficient {}):\n{}",
        training.trained_on,
        training
            .qini_coefficient
            .map_or("–".to_owned(), |q| format!("{q:+.4}")),
        table(
            &[
                "top",
                "treated bought",
                "holdout bought",
                "uplift",
                "incremental",
                "random"
            ],
            rows
        )
    ));
    text
}

fn write_plan(plan: &Plan, format: PlanFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        PlanFormat::Jsonl => {
            for line in &plan.lines {
                serde_json::to_writer(&mut out, line)?;
                out.write_all(b"\n")?;
            }
        }
        PlanFormat::Csv => {
            let items = |line: &recur_engine::campaign::plan::PlanLine| {
                line.items
                    .iter()
                    .map(|i| i.item_id.as_str())
                    .collect::<Vec<_>>()
                    .join(";")
            };
            let mut frame = df!(
                "user_id" => plan.lines.iter().map(|l| l.user_id.as_str()).collect::<Vec<_>>(),
                "decision" => plan.lines.iter().map(|l| l.decision.as_str()).collect::<Vec<_>>(),
                "reason" => plan.lines.iter().map(|l| l.reason.map(SkipReason::as_str)).collect::<Vec<_>>(),
                "items" => plan.lines.iter().map(items).collect::<Vec<_>>(),
                "send_at" => plan.lines.iter().map(|l| l.send_at.as_deref()).collect::<Vec<_>>(),
                "channel" => plan.lines.iter().map(|l| l.channel.as_str()).collect::<Vec<_>>(),
                "template_id" => plan.lines.iter().map(|l| l.template_id.as_deref()).collect::<Vec<_>>(),
                "openid" => plan.lines.iter().map(|l| l.openid.as_deref()).collect::<Vec<_>>(),
            )?;
            // Into memory first: a closed pipe then surfaces as the I/O error it is.
            let mut bytes = Vec::new();
            CsvWriter::new(&mut bytes).finish(&mut frame)?;
            out.write_all(&bytes)?;
        }
        PlanFormat::Table => {
            let rows = plan
                .lines
                .iter()
                .map(|l| {
                    vec![
                        l.user_id.clone(),
                        l.decision.as_str().to_owned(),
                        l.reason.map_or("", SkipReason::as_str).to_owned(),
                        l.send_at.clone().unwrap_or_default(),
                        l.items
                            .iter()
                            .map(|i| i.item_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]
                })
                .collect();
            writeln!(
                out,
                "{}",
                text_table(&["user", "decision", "reason", "send at", "items"], rows)
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

fn plan_summary(plan: &Plan) -> String {
    let (decisions, reasons) = plan.counts();
    let count = |d: Decision| thousands(decisions.get(&d).copied().unwrap_or(0) as u64);
    let mut skipped: Vec<String> = SkipReason::ALL
        .iter()
        .filter_map(|r| {
            reasons
                .get(r)
                .map(|n| format!("{} {}", r.as_str(), thousands(*n as u64)))
        })
        .collect();
    if skipped.is_empty() {
        skipped.push("none".into());
    }
    format!(
        "{} members (snapshot {}): send {}, holdout {}, skip {} ({})",
        thousands(plan.lines.len() as u64),
        plan.snapshot,
        count(Decision::Send),
        count(Decision::Holdout),
        count(Decision::Skip),
        skipped.join(", ")
    )
}

fn send(
    args: &CampaignArgs,
    targeting: &TargetArgs,
    at: Option<&str>,
    concurrency: usize,
    json: bool,
) -> anyhow::Result<()> {
    let dir = &args.data.data_dir;
    let at_ms = at_ms(at)?;
    let inputs = inputs(args, targeting, at_ms)?;
    let campaign = inputs.campaign.clone();
    let settings = MerchantSettings::load(dir, &args.merchant)?;
    let sender = sender_for(&args.merchant, &campaign, &settings, RetryPolicy::default())?;
    let bar = progress_bar(None, "sent");
    let report = inputs.send(
        dir,
        &args.merchant,
        at_ms,
        sender.as_ref(),
        SendOptions {
            concurrency,
            ..SendOptions::default()
        },
        &|done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    if json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        outln!(
            "{}",
            table(
                &[
                    "campaign",
                    "recorded",
                    "held out",
                    "delivered",
                    "failed",
                    "refused",
                    "pending",
                    "not due"
                ],
                vec![vec![
                    campaign.name.clone(),
                    thousands(report.planned as u64),
                    thousands(report.held_out as u64),
                    thousands(report.delivered as u64),
                    thousands(report.failed as u64),
                    thousands(report.refused as u64),
                    thousands(report.unavailable as u64),
                    thousands(report.not_due as u64),
                ]]
            )
        );
    }
    if let Some(problem) = &report.last_problem {
        eprintln!("last problem: {problem}");
    }
    if report.unavailable > 0 {
        anyhow::bail!(
            "{} messages could not be delivered yet and stay pending; run `recur campaign send` again once the receiver is back",
            report.unavailable
        );
    }
    Ok(())
}

pub(crate) fn report(args: &CampaignReportArgs) -> anyhow::Result<()> {
    let scope = &args.campaign;
    let dir = &scope.data.data_dir;
    let campaign = find_campaign(dir, &scope.merchant, &scope.name)?;
    let mut store = scope.data.open_store()?;
    let report = measure(
        dir,
        &mut store,
        &scope.merchant,
        &campaign.name,
        args.window_days,
    )?;
    match args.format {
        ListFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        ListFormat::Table => print_report(&report)?,
    }
    Ok(())
}

fn print_report(report: &CampaignReport) -> anyhow::Result<()> {
    let percent = |x: Option<f64>| x.map_or("–".to_owned(), |x| format!("{:.1}%", x * 100.0));
    let money = |x: Option<f64>| x.map_or("–".to_owned(), |x| format!("{x:.2}"));
    let arm = |name: &str, a: &recur_engine::campaign::report::Arm| {
        vec![
            name.to_owned(),
            thousands(a.customers),
            thousands(a.converters),
            percent(a.conversion_rate),
            money(a.revenue_per_customer),
            percent(a.push_open_rate),
        ]
    };
    outln!(
        "{} — {} (window {} days)\n",
        report.merchant_id,
        report.campaign,
        report.window_days
    );
    outln!(
        "{}",
        table(
            &[
                "arm",
                "customers",
                "converters",
                "conversion",
                "revenue/customer",
                "opened"
            ],
            vec![
                arm("treated", &report.treated),
                arm("holdout", &report.holdout)
            ]
        )
    );
    let lift = &report.lift;
    if let (Some(absolute), Some([lo, hi])) = (lift.absolute, lift.absolute_ci) {
        outln!(
            "\nlift {:+.1} points (95% interval {:+.1} to {:+.1}){}",
            absolute * 100.0,
            lo * 100.0,
            hi * 100.0,
            match (lift.relative, lift.relative_ci) {
                (Some(r), Some([rl, rh])) => format!(
                    ", relative {:+.0}% ({:+.0}% to {:+.0}%)",
                    r * 100.0,
                    rl * 100.0,
                    rh * 100.0
                ),
                _ => String::new(),
            }
        );
    }
    outln!("{}", report.summary);
    if let Some(training) = &report.uplift {
        outln!("\n{}", uplift_text(training));
    }
    Ok(())
}
