//! `recur run`: the batch jobs, then a new snapshot.

use crate::output::outln;
use std::time::Instant;

use recur_engine::analytics::period::AsOf;
use recur_engine::jobs::{self, RunOptions};
use recur_engine::snapshot::SnapshotManifest;

use crate::cli::DataDir;
use crate::cli::RunArgs;
use crate::output::{progress_bar, table, thousands};

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<()> {
    let as_of = args.as_of.as_deref().map(AsOf::parse).transpose()?;
    let started = Instant::now();
    let manifest = run_jobs(&args.data, RunOptions { k: args.k, as_of })?;
    if args.json {
        outln!("{}", serde_json::to_string(&manifest)?);
    } else {
        outln!(
            "snapshot {} published in {:.1} s\n",
            manifest.name,
            started.elapsed().as_secs_f64()
        );
        outln!("{}", merchant_table(&manifest));
    }
    Ok(())
}

pub(crate) fn run_jobs(data: &DataDir, options: RunOptions) -> anyhow::Result<SnapshotManifest> {
    let data_dir = &data.data_dir;
    let mut store = data.open_store()?;
    let bar = progress_bar(None, "jobs");
    let manifest = jobs::run_all(&mut store, data_dir, options, &mut |i, n, merchant| {
        bar.set_message(format!("merchant {}/{n} {merchant}", i + 1));
        bar.set_position(i as u64);
    })?;
    bar.finish_and_clear();
    Ok(manifest)
}

/// Headline numbers per merchant.
pub(crate) fn merchant_table(manifest: &SnapshotManifest) -> String {
    let rows = manifest
        .merchants
        .iter()
        .map(|m| {
            vec![
                m.merchant_id.clone(),
                thousands(m.users),
                thousands(m.customers),
                thousands(m.repeat_customers),
                format!("{:.1}%", 100.0 * m.repeat_purchase_rate()),
                thousands(m.orders),
                format!("{:.2}", m.revenue),
            ]
        })
        .collect();
    table(
        &[
            "merchant",
            "users",
            "customers",
            "repeat customers",
            "repeat rate",
            "orders",
            "revenue",
        ],
        rows,
    )
}
