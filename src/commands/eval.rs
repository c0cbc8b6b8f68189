//! `recur eval`: the recommenders scored side by side on held-out orders.

use recur_engine::recs::baskets::Holdout;
use recur_engine::recs::eval::{EvalOptions, MerchantEval, evaluate_merchant};
use recur_engine::settings::MerchantSettings;
use recur_engine::store::EventStore;

use crate::cli::EvalArgs;
use crate::output::{outln, progress_bar, table, thousands};

pub(crate) fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    if args.k == 0 || args.k > 100 {
        anyhow::bail!("--k must be between 1 and 100, got {}", args.k);
    }
    let options = EvalOptions {
        k: args.k,
        holdout: Holdout::parse(&args.holdout)?,
        models: args.models.clone(),
        matrix_dir: args.write_matrix.clone(),
    };
    options.validate()?;
    let dir = &args.data.data_dir;
    let mut store = args.data.open_store()?;
    let merchants = match &args.merchant {
        Some(m) => vec![m.clone()],
        None => store.merchants()?,
    };
    let bar = progress_bar(None, "evaluating");
    let mut results = Vec::new();
    for (i, merchant) in merchants.iter().enumerate() {
        bar.set_message(format!("merchant {}/{} {merchant}", i + 1, merchants.len()));
        let settings = MerchantSettings::load(dir, merchant)?;
        match evaluate_merchant(&mut store, merchant, &settings, &options)? {
            Some(result) => results.push(result),
            None if args.merchant.is_some() => {
                anyhow::bail!(
                    "merchant {merchant:?} has no kept orders in {}; `recur stats` lists the merchants",
                    dir.display()
                )
            }
            None => {}
        }
    }
    bar.finish_and_clear();
    if args.json {
        outln!("{}", serde_json::json!({ "merchants": results }));
        return Ok(());
    }
    for result in &results {
        print_table(result)?;
    }
    Ok(())
}

fn print_table(result: &MerchantEval) -> anyhow::Result<()> {
    let k = result.k;
    outln!(
        "{} — {} customers' held-out orders ({}), catalogue of {} items\n",
        result.merchant_id,
        thousands(result.customers as u64),
        result.holdout,
        thousands(result.catalogue as u64)
    );
    let percent = |x: f64| format!("{:.1}%", 100.0 * x);
    let rows = result
        .models
        .iter()
        .map(|m| {
            vec![
                m.model.to_owned(),
                percent(m.metrics.recall),
                percent(m.metrics.precision),
                format!("{:.4}", m.metrics.ndcg),
                percent(m.metrics.hit_rate),
                percent(m.metrics.coverage),
                percent(m.metrics.recall_new),
                format!("{:.1}", m.seconds),
            ]
        })
        .collect();
    let headers = [
        "model".to_owned(),
        format!("recall@{k}"),
        format!("precision@{k}"),
        format!("NDCG@{k}"),
        "hit rate".to_owned(),
        "coverage".to_owned(),
        format!("recall@{k} new"),
        "seconds".to_owned(),
    ];
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    outln!("{}\n", table(&headers, rows));
    Ok(())
}
