//! `recur clv fit|predict`: the repeat-purchase models from a summary or transactions CSV.

use crate::output::outln;
use std::io::{BufWriter, Write};

use anyhow::Context;
use recur_engine::clv::io::{
    SummaryColumns, TransactionColumns, read_summary_csv, read_transactions_csv,
    summarize_transactions_csv,
};
use recur_engine::clv::predict::CountModel;
use recur_engine::clv::predict::{Horizon, forecast};
use recur_engine::clv::summary::{SummaryOptions, TimeUnit};
use recur_engine::clv::{self, GroupedSpend, GroupedSummary, bgnbd, gamma_gamma};
use recur_engine::clv::{pareto, tracking};
use recur_engine::event::parse_date;
use serde_json::json;

use crate::cli::{ClvCheckArgs, ClvFitArgs, ClvInput, ClvPredictArgs, Format, TimeUnitArg};
use crate::output::table;

fn unit(input: &ClvInput) -> TimeUnit {
    match input.time_unit {
        TimeUnitArg::Day => TimeUnit::Day,
        TimeUnitArg::Week => TimeUnit::Week,
    }
}

fn load(input: &ClvInput) -> anyhow::Result<SummaryColumns> {
    if let Some(path) = &input.summary {
        return Ok(read_summary_csv(path)?);
    }
    let path = input
        .transactions
        .as_ref()
        .context("--summary or --transactions is required")?;
    let (options, columns) = transaction_options(input)?;
    let frame = summarize_transactions_csv(path, &columns, options)?;
    let mut summary = SummaryColumns::from_frame(&frame)?;
    if input.amount_col.is_none() {
        summary.monetary_value = None;
    }
    if input.observation_end.is_none() {
        summary.holdout = None;
    }
    Ok(summary)
}

fn transaction_options(input: &ClvInput) -> anyhow::Result<(SummaryOptions, TransactionColumns)> {
    let date = |flag: &str, value: &Option<String>| -> anyhow::Result<Option<chrono::NaiveDate>> {
        value
            .as_deref()
            .map(|v| {
                parse_date(v)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| flag.to_owned())
            })
            .transpose()
    };
    let options = SummaryOptions {
        calibration_end: date("--calibration-end", &input.calibration_end)?
            .context("--calibration-end is required")?,
        observation_end: date("--observation-end", &input.observation_end)?,
        unit: unit(input),
    };
    let columns = TransactionColumns {
        customer: input
            .customer_col
            .clone()
            .context("--customer-col is required")?,
        date: input.date_col.clone().context("--date-col is required")?,
        date_format: Some(input.date_format.clone()),
        amount: input.amount_col.clone(),
    };
    Ok((options, columns))
}

pub(crate) fn fit(args: &ClvFitArgs) -> anyhow::Result<()> {
    let columns = load(&args.input)?;
    let report = clv::fit_all(&columns, args.input.penalizer, !args.no_pareto)?;
    let mut out = json!({
        "customers": report.customers,
        "bgnbd": {
            "r": report.bgnbd.params.r,
            "alpha": report.bgnbd.params.alpha,
            "a": report.bgnbd.params.a,
            "b": report.bgnbd.params.b,
            "log_likelihood": report.bgnbd.log_likelihood,
            "std_errors": report.bgnbd.std_errors,
        },
    });
    if let Some(p) = &report.pareto_nbd {
        out["pareto_nbd"] = json!({
            "r": p.params.r, "alpha": p.params.alpha, "s": p.params.s, "beta": p.params.beta,
            "log_likelihood": p.log_likelihood, "std_errors": p.std_errors,
        });
    }
    if let Some(g) = &report.gamma_gamma {
        out["gamma_gamma"] = json!({
            "p": g.params.p, "q": g.params.q, "v": g.params.v, "customers": g.customers,
            "excluded_zero_spend": g.excluded_zero_spend,
            "log_likelihood": g.log_likelihood, "std_errors": g.std_errors,
        });
    }
    outln!("{out}");
    Ok(())
}

pub(crate) fn predict(args: &ClvPredictArgs) -> anyhow::Result<()> {
    let columns = load(&args.input)?;
    let grouped = GroupedSummary::from_columns(&columns.frequency, &columns.recency, &columns.age)?;
    let counts: Box<dyn CountModel> = if args.model == "pareto" {
        Box::new(pareto::fit(&grouped, args.input.penalizer)?.params)
    } else {
        Box::new(bgnbd::fit(&grouped, args.input.penalizer)?.params)
    };
    let spend = match &columns.monetary_value {
        Some(m) => Some(
            gamma_gamma::fit(
                &GroupedSpend::from_columns(&columns.frequency, m)?,
                args.input.penalizer,
            )?
            .params,
        ),
        None => None,
    };
    let horizon = Horizon {
        periods: args.horizon,
        clv_months: args.clv_months,
        periods_per_month: match unit(&args.input) {
            TimeUnit::Day => 30.0,
            TimeUnit::Week => 30.0 / 7.0,
        },
        monthly_discount: args.discount,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for i in 0..columns.frequency.len() {
        let monetary = columns.monetary_value.as_ref().map_or(0.0, |m| m[i]);
        let f = forecast(
            counts.as_ref(),
            spend.as_ref(),
            horizon,
            columns.frequency[i],
            columns.recency[i],
            columns.age[i],
            monetary,
        );
        let mut line = json!({
            "customer_id": columns.customer_ids[i],
            "model": args.model,
            "frequency": columns.frequency[i],
            "recency": columns.recency[i],
            "T": columns.age[i],
            "monetary_value": monetary,
            "probability_alive": f.probability_alive,
            "expected_purchases": f.expected_purchases,
            "expected_spend": f.expected_spend,
            "clv": f.clv,
        });
        // With --observation-end: what the model expected in the holdout, next to what happened.
        if let Some((actual, duration)) = &columns.holdout {
            line["holdout_periods"] = json!(duration[i]);
            line["holdout_purchases"] = json!(actual[i]);
            line["expected_holdout_purchases"] = json!(counts.conditional_expected_purchases(
                duration[i],
                columns.frequency[i],
                columns.recency[i],
                columns.age[i]
            ));
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn check(args: &ClvCheckArgs) -> anyhow::Result<()> {
    let input = &args.input;
    let path = input
        .transactions
        .as_ref()
        .context("clv check needs --transactions (the holdout is cut from them)")?;
    let (options, columns) = transaction_options(input)?;
    if options.observation_end.is_none() {
        anyhow::bail!(
            "clv check needs --observation-end: the holdout runs from --calibration-end to it"
        );
    }
    let summary = summarize_transactions_csv(path, &columns, options)?;
    let calibration = SummaryColumns::from_frame(&summary)?;
    let grouped = GroupedSummary::from_columns(
        &calibration.frequency,
        &calibration.recency,
        &calibration.age,
    )?;
    let bg = bgnbd::fit(&grouped, input.penalizer)?.params;
    let pa = if args.no_pareto {
        None
    } else {
        Some(pareto::fit(&grouped, input.penalizer)?.params)
    };
    let buckets = tracking::frequency_buckets(&summary, &bg, pa.as_ref(), args.max_frequency)?;
    let transactions = read_transactions_csv(path, &columns)?;
    let track = tracking::tracking(transactions, &columns.customer, options, &bg, pa.as_ref())?;
    let label = |period: i64| -> String {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
        let day = match options.unit {
            TimeUnit::Day => period,
            TimeUnit::Week => period * 7 - 3,
        };
        (epoch + chrono::Duration::days(day)).to_string()
    };
    match args.format {
        Format::Json => {
            let rows: Vec<_> = track
                .iter()
                .map(|r| json!({"period_start": label(r.period), "holdout": r.holdout, "actual_cumulative": r.actual_cumulative, "bgnbd_cumulative": r.bgnbd_cumulative, "pareto_nbd_cumulative": r.pareto_nbd_cumulative}))
                .collect();
            let doc = json!({"customers": calibration.frequency.len(), "bgnbd": bg, "pareto_nbd": pa, "frequency_buckets": buckets, "tracking": rows});
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &doc)?;
            writeln!(out)?;
        }
        _ => {
            outln!("Holdout repeat purchases per customer, by calibration frequency\n");
            let rows = buckets
                .iter()
                .map(|b| {
                    vec![
                        b.frequency.clone(),
                        b.customers.to_string(),
                        format!("{:.3}", b.actual),
                        format!("{:.3}", b.bgnbd),
                        b.pareto_nbd.map_or("–".to_owned(), |p| format!("{p:.3}")),
                    ]
                })
                .collect();
            outln!(
                "{}\n",
                table(
                    &["frequency", "customers", "actual", "BG/NBD", "Pareto/NBD"],
                    rows
                )
            );
            outln!("Cumulative repeat purchases of the calibration cohort (* = holdout)\n");
            let rows = track
                .iter()
                .map(|r| {
                    vec![
                        format!("{}{}", label(r.period), if r.holdout { " *" } else { "" }),
                        format!("{:.0}", r.actual_cumulative),
                        format!("{:.1}", r.bgnbd_cumulative.max(0.0)),
                        r.pareto_nbd_cumulative
                            .map_or("–".to_owned(), |p| format!("{p:.1}")),
                    ]
                })
                .collect();
            outln!(
                "{}",
                table(&["period", "actual", "BG/NBD", "Pareto/NBD"], rows)
            );
        }
    }
    Ok(())
}
