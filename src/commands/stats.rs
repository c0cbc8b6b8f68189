//! `recur stats`: what the store holds.

use crate::output::outln;
use recur_engine::store::EventStore;

use crate::cli::StatsArgs;
use crate::output::{table, thousands};

pub(crate) fn stats(args: &StatsArgs) -> anyhow::Result<()> {
    let mut store = args.data.open_store()?;
    let stats = store.stats()?;
    if args.json {
        outln!("{}", serde_json::to_string(&stats)?);
        return Ok(());
    }
    outln!(
        "{} events in {} files ({} commits)\n",
        thousands(stats.total),
        thousands(stats.files),
        thousands(stats.commits)
    );
    let rows = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter()
            .map(|(k, v)| vec![k.clone(), thousands(*v)])
            .collect::<Vec<_>>()
    };
    outln!(
        "{}\n",
        table(&["merchant", "events"], rows(&stats.per_merchant))
    );
    outln!("{}", table(&["type", "events"], rows(&stats.per_type)));
    Ok(())
}
