//! `recur report`: customer analytics of one merchant, computed now from the stored events.

use crate::output::outln;
use std::io::Write;

use polars::prelude::*;
use recur_engine::analytics::MerchantAnalytics;
use recur_engine::analytics::activity::{Activity, PERIOD};
use recur_engine::analytics::cohort::{COHORT, RetentionSpec};
use recur_engine::analytics::period::{AsOf, Period};
use recur_engine::analytics::rfm;
use recur_engine::frame_json;
use recur_engine::jobs::reports::{COHORT_START, PERIOD_START, with_period_label};
use recur_engine::settings::MerchantSettings;
use recur_engine::store::{AnyStore, EventStore};
use serde_json::{Value, json};

use crate::cli::{Format, MerchantScope, ReportArgs, ReportCommand};
use crate::output::table;

/// Opens the store and prepares the merchant's analytics, or says what to do instead.
pub(crate) fn load(scope: &MerchantScope) -> anyhow::Result<(AnyStore, MerchantAnalytics)> {
    let dir = &scope.data.data_dir;
    let mut store = scope.data.open_store()?;
    let settings = MerchantSettings::load(dir, &scope.merchant)?;
    let analytics = MerchantAnalytics::load(&mut store, &scope.merchant, &settings, as_of(scope)?)?
        .ok_or_else(|| no_such_merchant(&mut store, &scope.merchant, dir))?;
    Ok((store, analytics))
}

pub(crate) fn no_such_merchant(
    store: &mut dyn EventStore,
    merchant: &str,
    dir: &std::path::Path,
) -> anyhow::Error {
    let known = store.merchants().unwrap_or_default();
    anyhow::anyhow!(
        "merchant {merchant:?} has no stored events in {}; merchants there: {}",
        dir.display(),
        if known.is_empty() {
            "none (ingest events first)".to_owned()
        } else {
            known.join(", ")
        }
    )
}

/// `--as-of`, parsed: the end of that local day in the merchant's zone, or an instant.
pub(crate) fn as_of(scope: &MerchantScope) -> anyhow::Result<Option<AsOf>> {
    scope
        .as_of
        .as_deref()
        .map(AsOf::parse)
        .transpose()
        .map_err(anyhow::Error::from)
}

fn period(args: &ReportArgs, default: Period) -> anyhow::Result<Period> {
    Ok(args
        .period
        .as_deref()
        .map(str::parse)
        .transpose()?
        .unwrap_or(default))
}

fn activity(text: &str) -> anyhow::Result<Activity> {
    Ok(text.parse()?)
}

pub(crate) fn report(command: ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Retention {
            report: args,
            mode,
            cohort_event,
            return_event,
        } => {
            let (_store, a) = load(&args.scope)?;
            let spec = RetentionSpec {
                period: period(&args, Period::Week)?,
                mode: mode.parse()?,
                cohort_activity: activity(&cohort_event)?,
                return_activity: activity(&return_event)?,
            };
            let frame = with_period_label(a.retention(&spec)?, spec.period, COHORT, COHORT_START)?;
            let meta = json!({
                "report": "retention", "period": spec.period.as_str(), "mode": spec.mode.as_str(),
                "cohort_event": spec.cohort_activity.as_str(), "return_event": spec.return_activity.as_str(),
            });
            if args.format == Format::Table {
                outln!(
                    "{}",
                    header(
                        &a,
                        &format!(
                            "{} retention by {} ({} cohorts, returning by {})",
                            spec.mode, spec.period, spec.cohort_activity, spec.return_activity
                        )
                    )
                );
                outln!("{}", retention_matrix(&frame)?);
                return Ok(());
            }
            emit(&a, &args, meta, frame)
        }
        ReportCommand::Lifecycle {
            report: args,
            event,
        } => {
            let (_store, a) = load(&args.scope)?;
            let period = period(&args, Period::Week)?;
            let activity = activity(&event)?;
            let frame =
                with_period_label(a.lifecycle(period, activity)?, period, PERIOD, PERIOD_START)?;
            let frame = frame.select([
                PERIOD_START,
                "new",
                "returning",
                "resurrecting",
                "dormant",
                "active",
            ])?;
            let meta = json!({"report": "lifecycle", "period": period.as_str(), "event": activity.as_str()});
            emit(&a, &args, meta, frame)
        }
        ReportCommand::Rfm {
            report: args,
            scheme,
            customers,
        } => {
            let (_store, a) = load(&args.scope)?;
            let scores = a.rfm()?;
            let by_value_class = scheme == "value-class";
            let meta = json!({"report": "rfm", "scheme": scheme, "customers": customers});
            if customers {
                return emit(&a, &args, meta, scores);
            }
            let summary = rfm::summary(scores.lazy(), by_value_class)?;
            let labels: Vec<(&str, &str)> = if by_value_class {
                rfm::VALUE_CLASSES
                    .iter()
                    .map(|c| (c.name, c.name_zh))
                    .collect()
            } else {
                rfm::SEGMENTS.iter().map(|s| (s.name, s.name_zh)).collect()
            };
            let mut summary = summary;
            summary.with_column(Column::new(
                "name".into(),
                labels.iter().map(|l| l.0).collect::<Vec<_>>(),
            ))?;
            summary.with_column(Column::new(
                "name_zh".into(),
                labels.iter().map(|l| l.1).collect::<Vec<_>>(),
            ))?;
            let summary = summary.select([
                "segment",
                "name",
                "name_zh",
                "customers",
                "share",
                "revenue",
                "mean_recency_days",
                "mean_orders",
            ])?;
            emit(&a, &args, meta, summary)
        }
        ReportCommand::Repeat { report: args } => {
            let (_store, a) = load(&args.scope)?;
            let period = period(&args, Period::Month)?;
            let frame = with_period_label(a.repeat_rates(period)?, period, COHORT, COHORT_START)?;
            let mut columns = vec![COHORT_START, "buyers", "repeat_buyers", "repeat_rate"];
            columns.extend([
                "matured_30",
                "repeat_rate_30",
                "matured_60",
                "repeat_rate_60",
                "matured_90",
                "repeat_rate_90",
            ]);
            let frame = frame
                .select(columns)?
                .lazy()
                .with_column(col(COHORT_START).fill_null(lit("all")))
                .collect()?;
            emit(
                &a,
                &args,
                json!({"report": "repeat", "period": period.as_str()}),
                frame,
            )
        }
        ReportCommand::Intervals { report: args } => {
            let (_store, a) = load(&args.scope)?;
            let frame = a.time_between_orders()?;
            emit(&a, &args, json!({"report": "intervals"}), frame)
        }
        ReportCommand::Clusters { report: args } => {
            let (_store, a) = load(&args.scope)?;
            let clustering = a.clusters(&a.rfm()?)?;
            let Some(c) = clustering else {
                anyhow::bail!(
                    "merchant {} has too few customers with orders to cluster",
                    a.merchant_id
                );
            };
            let silhouettes: Vec<Value> = c
                .silhouettes
                .iter()
                .map(|(k, s)| json!({"k": k, "silhouette": s}))
                .collect();
            let frame = df!(
                "cluster" => c.clusters.iter().map(|x| x.cluster).collect::<Vec<_>>(),
                "customers" => c.clusters.iter().map(|x| x.customers).collect::<Vec<_>>(),
                "description" => c.clusters.iter().map(|x| x.description.clone()).collect::<Vec<_>>(),
                "mean_orders" => c.clusters.iter().map(|x| x.mean_orders).collect::<Vec<_>>(),
                "mean_spend" => c.clusters.iter().map(|x| x.mean_spend).collect::<Vec<_>>(),
                "mean_recency_days" => c.clusters.iter().map(|x| x.mean_recency_days).collect::<Vec<_>>(),
            )?;
            if args.format == Format::Table {
                let tried: Vec<String> = c
                    .silhouettes
                    .iter()
                    .map(|(k, s)| format!("k={k}: {s:.3}"))
                    .collect();
                outln!(
                    "{}",
                    header(
                        &a,
                        &format!("{} clusters; silhouette {}", c.k, tried.join(", "))
                    )
                );
            }
            emit(
                &a,
                &args,
                json!({"report": "clusters", "k": c.k, "silhouettes": silhouettes}),
                frame,
            )
        }
        ReportCommand::Identities { report: args } => {
            let (_store, a) = load(&args.scope)?;
            emit(&a, &args, json!({"report": "identities"}), a.stitched()?)
        }
        ReportCommand::Campaign(args) => super::campaign::report(&args),
    }
}

fn header(a: &MerchantAnalytics, title: &str) -> String {
    let as_of = a.zone.local_date(a.as_of_ms);
    format!(
        "{} — merchant {}, as of {as_of} ({})\n",
        title, a.merchant_id, a.zone
    )
}

/// Prints `frame` in the requested format; JSON wraps the rows with `meta` and the scope.
fn emit(
    a: &MerchantAnalytics,
    args: &ReportArgs,
    meta: Value,
    mut frame: DataFrame,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            let mut doc = json!({
                "merchant_id": a.merchant_id,
                "as_of": a.zone.local_date(a.as_of_ms).to_string(),
                "time_zone": a.zone.as_str(),
            });
            if let (Some(doc), Value::Object(meta)) = (doc.as_object_mut(), meta) {
                doc.extend(meta);
                doc.insert("rows".to_owned(), Value::Array(frame_json::rows(&frame)));
            }
            serde_json::to_writer(&mut out, &doc)?;
            writeln!(out)?;
        }
        Format::Csv => {
            CsvWriter::new(&mut out).finish(&mut frame)?;
        }
        Format::Table => {
            let title = meta
                .get("report")
                .and_then(Value::as_str)
                .unwrap_or("report");
            if title != "clusters" {
                writeln!(out, "{}", header(a, title))?;
            }
            writeln!(out, "{}", frame_table(&frame))?;
        }
    }
    Ok(())
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "–".to_owned(),
        Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or_default()),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Any small frame as an aligned table.
pub(crate) fn frame_table(frame: &DataFrame) -> String {
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let rows = frame_json::rows(frame)
        .iter()
        .map(|row| names.iter().map(|n| cell(&row[n.as_str()])).collect())
        .collect();
    let header: Vec<&str> = names.iter().map(String::as_str).collect();
    table(&header, rows)
}

/// Retention as the classic triangle: one row per cohort, one column per offset, in percent.
fn retention_matrix(frame: &DataFrame) -> anyhow::Result<String> {
    let rows = frame_json::rows(frame);
    let max_offset = rows
        .iter()
        .filter_map(|r| r["offset"].as_i64())
        .max()
        .unwrap_or(0);
    let mut header = vec!["cohort".to_owned(), "size".to_owned()];
    header.extend((0..=max_offset).map(|o| o.to_string()));
    let mut lines: Vec<Vec<String>> = Vec::new();
    for row in &rows {
        let offset = row["offset"].as_i64().unwrap_or(0);
        if offset == 0 {
            lines.push(vec![cell(&row[COHORT_START]), cell(&row["cohort_size"])]);
        }
        if let Some(line) = lines.last_mut() {
            line.push(format!(
                "{:.1}%",
                100.0 * row["rate"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    for line in &mut lines {
        line.resize(header.len(), String::new());
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    Ok(table(&header, lines))
}
