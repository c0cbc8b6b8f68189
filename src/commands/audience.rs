//! `recur audience`: define, list, preview and export rule-based audiences.

use crate::output::outln;
use std::io::Write;

use anyhow::Context;
use polars::prelude::*;
use recur_engine::analytics::audience::{self, AudienceDefinition};
use recur_engine::frame_json;
use recur_engine::jobs::customers::{LINKED_USER_IDS, audience_inputs, customer_tables};
use recur_engine::snapshot;
use recur_engine::store::{OPENID, UNIONID, USER_ID};
use serde_json::json;

use super::report::{frame_table, load};
use crate::cli::{AudienceCommand, Format, MerchantScope};
use crate::output::{table, thousands};

/// `--rule` text, or the file named after `@`.
fn rule_text(rule: &str) -> anyhow::Result<String> {
    match rule.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the rule file {path}")),
        None => Ok(rule.to_owned()),
    }
}

/// Evaluates a rule now: the members joined to their profiles.
fn evaluate(scope: &MerchantScope, rule: &audience::Rule) -> anyhow::Result<DataFrame> {
    let (_store, analytics) = load(scope)?;
    let base = analytics.base_profiles()?;
    let profiles = customer_tables(&analytics, base, &mut |_| {})?.profiles;
    let inputs = audience_inputs(&analytics, &profiles);
    let members = audience::evaluate(rule, &inputs)
        .join(
            profiles.lazy(),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .sort([USER_ID], SortMultipleOptions::default())
        .collect()?;
    Ok(members)
}

fn stored(
    data_dir: &std::path::Path,
    merchant: &str,
    name: &str,
) -> anyhow::Result<AudienceDefinition> {
    let all = audience::load_definitions(data_dir, merchant)?;
    let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
    all.iter().find(|a| a.name == name).cloned().with_context(|| {
        format!(
            "merchant {merchant} has no audience named {name:?} (it has: {}); create it with `recur audience create`",
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        )
    })
}

pub(crate) fn audience(command: AudienceCommand) -> anyhow::Result<()> {
    match command {
        AudienceCommand::Create {
            data,
            merchant,
            name,
            rule,
            description,
            replace,
        } => {
            let rule = audience::parse(&rule_text(&rule)?)?;
            let definition = AudienceDefinition {
                name: name.clone(),
                description,
                rule,
                created_at_ms: chrono::Utc::now().timestamp_millis(),
            };
            audience::save_definition(&data.data_dir, &merchant, definition, replace)?;
            eprintln!(
                "audience {name} saved for merchant {merchant}; `recur audience preview` shows it now, `recur run` stores its members"
            );
            Ok(())
        }
        AudienceCommand::List {
            data,
            merchant,
            format,
        } => {
            let definitions = audience::load_definitions(&data.data_dir, &merchant)?;
            let sizes = snapshot::current_name(&data.data_dir)?
                .map(|name| snapshot::read_manifest(&data.data_dir, &name))
                .transpose()?
                .and_then(|m| m.merchants.into_iter().find(|s| s.merchant_id == merchant))
                .map(|s| s.audiences)
                .unwrap_or_default();
            let size = |name: &str| sizes.iter().find(|s| s.name == name).map(|s| s.customers);
            match format {
                Format::Json => {
                    let list: Vec<_> = definitions
                        .iter()
                        .map(|d| json!({"name": d.name, "description": d.description, "rule": d.rule, "created_at_ms": d.created_at_ms, "customers": size(&d.name)}))
                        .collect();
                    outln!(
                        "{}",
                        serde_json::to_string(
                            &json!({"merchant_id": merchant, "audiences": list})
                        )?
                    );
                }
                _ => {
                    let rows = definitions
                        .iter()
                        .map(|d| {
                            vec![
                                d.name.clone(),
                                size(&d.name).map_or("not run yet".to_owned(), thousands),
                                serde_json::to_string(&d.rule).unwrap_or_default(),
                            ]
                        })
                        .collect();
                    outln!(
                        "{}",
                        table(&["audience", "customers (last run)", "rule"], rows)
                    );
                }
            }
            Ok(())
        }
        AudienceCommand::Preview {
            scope,
            name,
            rule,
            limit,
            format,
        } => {
            let rule = match (&name, &rule) {
                (Some(name), _) => stored(&scope.data.data_dir, &scope.merchant, name)?.rule,
                (None, Some(text)) => audience::parse(&rule_text(text)?)?,
                (None, None) => anyhow::bail!("give --name or --rule"),
            };
            let members = evaluate(&scope, &rule)?;
            let sample = members
                .clone()
                .lazy()
                .select([
                    col(USER_ID),
                    col("rfm_segment"),
                    col("lifecycle_stage"),
                    col("cluster"),
                    col("orders"),
                    col("revenue"),
                    col("p_alive"),
                ])
                .limit(limit as u32)
                .collect()?;
            if format == Format::Json {
                outln!(
                    "{}",
                    serde_json::to_string(
                        &json!({"merchant_id": scope.merchant, "customers": members.height(), "sample": frame_json::rows(&sample)})
                    )?
                );
            } else {
                outln!("{} customers match\n", thousands(members.height() as u64));
                outln!("{}", frame_table(&sample));
            }
            Ok(())
        }
        AudienceCommand::Export {
            scope,
            name,
            format,
        } => {
            let definition = stored(&scope.data.data_dir, &scope.merchant, &name)?;
            let members = evaluate(&scope, &definition.rule)?;
            let mut rows = members.select([USER_ID, LINKED_USER_IDS, OPENID, UNIONID])?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if format == "jsonl" {
                for row in frame_json::rows(&rows) {
                    serde_json::to_writer(&mut out, &row)?;
                    writeln!(out)?;
                }
            } else {
                // CSV has no lists: linked ids are joined with `|`.
                let mut flat = rows
                    .lazy()
                    .with_column(col(LINKED_USER_IDS).list().join(lit("|"), true))
                    .collect()?;
                CsvWriter::new(&mut out).finish(&mut flat)?;
                rows = flat;
            }
            drop(rows);
            eprintln!(
                "{} customers exported from audience {name}",
                thousands(members.height() as u64)
            );
            Ok(())
        }
    }
}
