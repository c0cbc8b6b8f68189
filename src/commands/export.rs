//! `recur export recommendations` and `recur export similar`: JSONL on stdout.

use std::io::{BufWriter, Write};

use recur_engine::snapshot::ListFilter;

use crate::cli::{ExportRecommendationsArgs, ExportSimilarArgs};

pub(crate) fn recommendations(args: &ExportRecommendationsArgs) -> anyhow::Result<()> {
    if args.k == 0 {
        anyhow::bail!("--k must be at least 1");
    }
    if let (Some(min), Some(max)) = (args.min_price, args.max_price)
        && min > max
    {
        anyhow::bail!("--min-price {min} is above --max-price {max}");
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let lines = recur_engine::snapshot::export_recommendations(
        &args.data.data_dir,
        args.k,
        args.merchant.as_deref(),
        &ListFilter {
            exclude_purchased: args.exclude_purchased,
            category: args.category.clone(),
            offset: 0,
            min_price: args.min_price,
            max_price: args.max_price,
            ..ListFilter::default()
        },
        &mut out,
    )?;
    out.flush()?;
    if lines == 0
        && let Some(m) = &args.merchant
    {
        anyhow::bail!(
            "the current snapshot has no users of merchant {m:?}; `recur stats` lists the merchants"
        );
    }
    Ok(())
}

pub(crate) fn similar(args: &ExportSimilarArgs) -> anyhow::Result<()> {
    if args.k == 0 {
        anyhow::bail!("--k must be at least 1");
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let lines = recur_engine::snapshot::export_similar(
        &args.data.data_dir,
        args.k,
        args.merchant.as_deref(),
        &mut out,
    )?;
    out.flush()?;
    if lines == 0
        && let Some(m) = &args.merchant
    {
        anyhow::bail!(
            "the current snapshot has no items of merchant {m:?} bought with others; `recur stats` lists the merchants"
        );
    }
    Ok(())
}
