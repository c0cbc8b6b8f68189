//! Evaluates an audience rule against one merchant's customers.
//!
//! Attribute conditions (segment, stage, cluster, P(alive), CLV) are expressions over the
//! customer table; event conditions become a set of matching customers joined on as a
//! boolean column. The whole rule is then one filter, so evaluation is a single lazy plan.
//! A customer without a model value (no P(alive) when no model was fitted) matches no bound.

use polars::prelude::*;

use super::rule::{Bounds, Rule};
use crate::analytics::activity::{AT_MS, Activity, ActivitySources};
use crate::analytics::cluster::CLUSTER;
use crate::analytics::lifecycle::LIFECYCLE_STAGE;
use crate::analytics::period::DAY_MS;
use crate::analytics::rfm::{RFM_SEGMENT, VALUE_CLASS};
use crate::clv::merchant::{CLV_12M, P_ALIVE};
use crate::jobs::purchases::{NET_QUANTITY, ORDERED_AT};
use crate::store::{CATEGORY, CHANNEL, ITEM_ID, PROPERTIES, TS, USER_ID};

/// What rules are evaluated against.
pub struct AudienceInputs {
    pub sources: ActivitySources,
    /// Net order lines and the item → category table.
    pub lines: LazyFrame,
    pub categories: LazyFrame,
    /// Subscribe events: `user_id`, `ts`, `properties`.
    pub subscriptions: LazyFrame,
    /// Every customer (the universe), with `rfm_segment`, `value_class`, `lifecycle_stage`,
    /// `cluster`, `p_alive`, `clv_12m` (nullable).
    pub customers: LazyFrame,
    pub as_of_ms: i64,
}

struct Compiler<'a> {
    inputs: &'a AudienceInputs,
    sets: Vec<LazyFrame>,
}

impl Compiler<'_> {
    fn since(&self, days: u32) -> i64 {
        self.inputs.as_of_ms - i64::from(days) * DAY_MS
    }

    /// Registers a set of matching `user_id`s and returns the column that marks them.
    fn set(&mut self, members: LazyFrame) -> Expr {
        let name = format!("__rule_{}", self.sets.len());
        self.sets.push(
            members
                .select([col(USER_ID)])
                .unique(None, UniqueKeepStrategy::Any)
                .with_column(lit(true).alias(name.as_str())),
        );
        col(name.as_str()).fill_null(lit(false))
    }

    fn occurrences(&self, activity: Activity, since: i64) -> LazyFrame {
        self.inputs.sources.occurrences(activity).filter(
            col(AT_MS)
                .gt(lit(since))
                .and(col(AT_MS).lt_eq(lit(self.inputs.as_of_ms))),
        )
    }

    fn events_since(&self, days: Option<u32>) -> LazyFrame {
        let events = self.inputs.sources.events.clone();
        match days {
            Some(d) => events.filter(col(TS).cast(DataType::Int64).gt(lit(self.since(d)))),
            None => events,
        }
    }

    fn compile(&mut self, rule: &Rule) -> Expr {
        match rule {
            Rule::And(rules) => {
                let parts: Vec<Expr> = rules.iter().map(|r| self.compile(r)).collect();
                parts
                    .into_iter()
                    .reduce(Expr::and)
                    .unwrap_or_else(|| lit(true))
            }
            Rule::Or(rules) => {
                let parts: Vec<Expr> = rules.iter().map(|r| self.compile(r)).collect();
                parts
                    .into_iter()
                    .reduce(Expr::or)
                    .unwrap_or_else(|| lit(false))
            }
            Rule::Not(inner) => self.compile(inner).not(),
            Rule::Performed(p) => {
                let members = self
                    .occurrences(p.event, self.since(p.in_last_days))
                    .group_by([col(USER_ID)])
                    .agg([len().alias("times")])
                    .filter(col("times").gt_eq(lit(p.at_least)));
                self.set(members)
            }
            Rule::NotPerformedSince(n) => {
                let members = self.occurrences(n.event, self.since(n.days));
                self.set(members).not()
            }
            Rule::RfmSegment(keys) => any_of(RFM_SEGMENT, keys.0.iter().map(|k| lit(k.0.as_str()))),
            Rule::ValueClass(keys) => any_of(VALUE_CLASS, keys.0.iter().map(|k| lit(k.0.as_str()))),
            Rule::Lifecycle(keys) => {
                any_of(LIFECYCLE_STAGE, keys.0.iter().map(|k| lit(k.0.as_str())))
            }
            Rule::Cluster(ids) => any_of(CLUSTER, ids.0.iter().map(|id| lit(*id))),
            Rule::BoughtCategory(b) => {
                let since = b.in_last_days.map_or(i64::MIN, |d| self.since(d));
                let members = self
                    .inputs
                    .lines
                    .clone()
                    .filter(
                        col(NET_QUANTITY)
                            .gt(lit(0i64))
                            .and(col(ORDERED_AT).gt(lit(since))),
                    )
                    .join(
                        self.inputs.categories.clone(),
                        [col(ITEM_ID)],
                        [col(ITEM_ID)],
                        JoinArgs::new(JoinType::Inner),
                    )
                    .filter(col(CATEGORY).eq(lit(b.category.as_str())));
                self.set(members)
            }
            Rule::UsedChannel(u) => {
                let members = self
                    .events_since(u.in_last_days)
                    .filter(col(CHANNEL).eq(lit(u.channel.0.as_str())));
                self.set(members)
            }
            Rule::Subscribed(s) => {
                // Properties are stored as compact JSON (see event.rs), so the key and its
                // JSON-encoded value appear verbatim.
                let needle = format!(
                    "\"template_id\":{}",
                    serde_json::to_string(&s.template_id).expect("a string serializes")
                );
                let since = s.in_last_days.map_or(i64::MIN, |d| self.since(d));
                let members = self.inputs.subscriptions.clone().filter(
                    col(TS)
                        .cast(DataType::Int64)
                        .gt(lit(since))
                        .and(col(PROPERTIES).str().contains_literal(lit(needle))),
                );
                self.set(members)
            }
            Rule::PAlive(bounds) => within(P_ALIVE, *bounds),
            Rule::Clv(bounds) => within(CLV_12M, *bounds),
        }
    }
}

fn any_of(column: &str, values: impl Iterator<Item = Expr>) -> Expr {
    values
        .map(|v| col(column).eq(v))
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false))
        .fill_null(lit(false))
}

fn within(column: &str, bounds: Bounds) -> Expr {
    let mut expr = col(column).is_not_null();
    if let Some(above) = bounds.above {
        expr = expr.and(col(column).gt(lit(above)));
    }
    if let Some(below) = bounds.below {
        expr = expr.and(col(column).lt(lit(below)));
    }
    expr.fill_null(lit(false))
}

/// The members of `rule`: a lazy frame of `user_id`, sorted.
pub fn evaluate(rule: &Rule, inputs: &AudienceInputs) -> LazyFrame {
    let mut compiler = Compiler {
        inputs,
        sets: Vec::new(),
    };
    let predicate = compiler.compile(rule);
    let mut universe = inputs.customers.clone();
    for set in compiler.sets {
        universe = universe.join(
            set,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        );
    }
    universe
        .filter(predicate)
        .select([col(USER_ID)])
        .sort([USER_ID], SortMultipleOptions::default())
}
