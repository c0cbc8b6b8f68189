//! `recur clv fit|predict`: the repeat-purchase models from a summary or transactions CSV.

use std::io::{BufWriter, Write};

use anyhow::Context;
use recur_engine::clv::io::{
    SummaryColumns, TransactionColumns, read_summary_csv, summarize_transactions_csv,
};
use recur_engine::clv::predict::{Horizon, forecast};
use recur_engine::clv::summary::{SummaryOptions, TimeUnit};
use recur_engine::clv::{self, GroupedSpend, GroupedSummary, bgnbd, gamma_gamma};
use recur_engine::event::parse_date;
use serde_json::json;

use crate::cli::{ClvFitArgs, ClvInput, ClvPredictArgs, TimeUnitArg};

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
    let frame = summarize_transactions_csv(path, &columns, options)?;
    let mut summary = SummaryColumns::from_frame(&frame)?;
    if input.amount_col.is_none() {
        summary.monetary_value = None;
    }
    Ok(summary)
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
    println!("{out}");
    Ok(())
}

pub(crate) fn predict(args: &ClvPredictArgs) -> anyhow::Result<()> {
    let columns = load(&args.input)?;
    let grouped = GroupedSummary::from_columns(&columns.frequency, &columns.recency, &columns.age)?;
    let counts = bgnbd::fit(&grouped, args.input.penalizer)?.params;
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
            &counts,
            spend.as_ref(),
            horizon,
            columns.frequency[i],
            columns.recency[i],
            columns.age[i],
            monetary,
        );
        let line = json!({
            "customer_id": columns.customer_ids[i],
            "frequency": columns.frequency[i],
            "recency": columns.recency[i],
            "T": columns.age[i],
            "monetary_value": monetary,
            "probability_alive": f.probability_alive,
            "expected_purchases": f.expected_purchases,
            "expected_spend": f.expected_spend,
            "clv": f.clv,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
