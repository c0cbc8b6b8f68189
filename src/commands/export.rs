//! `recur export recommendations` and `recur export similar`: JSONL on stdout.

use std::io::{BufWriter, Write};

use recur_engine::snapshot::ListFilter;

use crate::cli::{ExportRecommendationsArgs, ExportSimilarArgs};

pub(crate) fn recommendations(args: &ExportRecommendationsArgs) -> anyhow::Result<()> {
    if let (Some(min), Some(max)) = (args.min_price, args.max_price)
        && min > max
    {
        anyhow::bail!("--min-price {min} is above --max-price {max}");
    }
    let filter = ListFilter {
        exclude_purchased: args.exclude_purchased,
        category: args.category.clone(),
        min_price: args.min_price,
        max_price: args.max_price,
        ..ListFilter::default()
    };
    let missing = |m: &str| format!("the current snapshot has no users of merchant {m:?}");
    jsonl_to_stdout(args.k, args.merchant.as_deref(), missing, |out| {
        recur_engine::snapshot::export_recommendations(
            &args.data.data_dir,
            args.k,
            args.merchant.as_deref(),
            &filter,
            out,
        )
    })
}

pub(crate) fn similar(args: &ExportSimilarArgs) -> anyhow::Result<()> {
    let missing =
        |m: &str| format!("the current snapshot has no items of merchant {m:?} bought with others");
    jsonl_to_stdout(args.k, args.merchant.as_deref(), missing, |out| {
        recur_engine::snapshot::export_similar(
            &args.data.data_dir,
            args.k,
            args.merchant.as_deref(),
            out,
        )
    })
}

/// Checks `k`, runs `write` on buffered stdout and flushes; a named merchant with no line
/// written is an error (`missing` says what the snapshot lacks).
fn jsonl_to_stdout(
    k: usize,
    merchant: Option<&str>,
    missing: impl FnOnce(&str) -> String,
    write: impl FnOnce(&mut dyn Write) -> recur_engine::Result<u64>,
) -> anyhow::Result<()> {
    if k == 0 {
        anyhow::bail!("--k must be at least 1");
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let lines = write(&mut out)?;
    out.flush()?;
    if lines == 0
        && let Some(m) = merchant
    {
        anyhow::bail!("{}; `recur stats` lists the merchants", missing(m));
    }
    Ok(())
}
