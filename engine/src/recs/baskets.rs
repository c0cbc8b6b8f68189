//! Baskets: each customer's kept orders as sets of items, in time order, and the two ways
//! `recur eval` holds some of them out.
//!
//! Promise of a split: a model sees only the training baskets, and a customer's "now" is
//! before every basket held out for them, so nothing after the cut reaches any input.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::jobs::purchases::{NET_QUANTITY, ORDERED_AT};
use crate::store::{ITEM_ID, ORDER_ID, USER_ID};

const DAY_MS: i64 = 86_400_000;

/// One kept order: when, and its items (sorted, each once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basket {
    pub at_ms: i64,
    pub items: Vec<u32>,
}

/// A merchant's baskets per customer, chronological, over one item index.
#[derive(Debug, Clone, Default)]
pub struct BasketHistory {
    /// Item index → item id.
    pub items: Vec<String>,
    /// Customer index → customer id.
    pub users: Vec<String>,
    /// Per customer, their baskets oldest first.
    pub baskets: Vec<Vec<Basket>>,
    /// Browsing and item facts, read as of each customer's "now" ([`super::signals`]).
    pub signals: std::sync::Arc<super::signals::Signals>,
}

impl BasketHistory {
    /// The baskets of net order `lines` (`user_id`, `order_id`, `item_id`, `net_quantity`,
    /// `ordered_at`): lines kept (net quantity > 0), grouped by order.
    pub fn from_lines(lines: LazyFrame) -> Result<Self> {
        let kept = lines.filter(col(NET_QUANTITY).gt(lit(0i64)));
        // Items in id order, numbered: an order's items are then gathered and sorted as
        // numbers, not as id strings, and numbered in the history through an array rather
        // than a map of strings (at a million customers, both were seconds of this step).
        let item_ids = kept
            .clone()
            .select([col(ITEM_ID)])
            .unique(None, UniqueKeepStrategy::Any)
            .sort([ITEM_ID], SortMultipleOptions::default())
            .with_row_index(index_column(ITEM_ID), None)
            .collect()
            .map_err(Error::polars("numbering basket items"))?;
        let orders = kept
            .join(
                item_ids.clone().lazy(),
                [col(ITEM_ID)],
                [col(ITEM_ID)],
                JoinArgs::new(JoinType::Inner),
            )
            .group_by([col(USER_ID), col(ORDER_ID)])
            .agg([
                col(ORDERED_AT).min(),
                col(index_column(ITEM_ID)).alias("items"),
            ]);
        // Customers in id order, numbered: the orders are then sorted by that number, not by
        // the id (at a million customers, comparing ids as strings through every step of the
        // orders' sort was most of building the baskets).
        let customers = orders
            .clone()
            .select([col(USER_ID)])
            .unique(None, UniqueKeepStrategy::Any)
            .sort([USER_ID], SortMultipleOptions::default())
            .with_row_index(index_column(USER_ID), None);
        let orders = orders
            .join(
                customers,
                [col(USER_ID)],
                [col(USER_ID)],
                JoinArgs::new(JoinType::Inner),
            )
            .sort(
                [index_column(USER_ID).as_str(), ORDERED_AT, ORDER_ID],
                SortMultipleOptions::default(),
            )
            .collect()
            .map_err(Error::polars("grouping orders into baskets"))?;
        let users = orders
            .column(USER_ID)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("reading basket users"))?;
        let at = orders
            .column(ORDERED_AT)
            .and_then(|c| c.i64().cloned())
            .map_err(Error::polars("reading basket times"))?;
        let items = orders
            .column("items")
            .and_then(|c| c.list().cloned())
            .map_err(Error::polars("reading basket items"))?;
        let ids = item_ids
            .column(ITEM_ID)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("reading basket items"))?;
        let mut history = Self::default();
        // Item number (place in id order) → index in the history, given in order of first
        // purchase (ties within an order by id), as the items' ids were before they were
        // numbered; `UNSEEN` until then.
        const UNSEEN: u32 = u32::MAX;
        let mut item_index = vec![UNSEEN; ids.len()];
        let mut numbers = Vec::new();
        for ((user, at), basket) in users.iter().zip(at.iter()).zip(items.amortized_iter()) {
            let (Some(user), Some(at), Some(basket)) = (user, at, basket) else {
                continue;
            };
            if history.users.last().is_none_or(|u| u != user) {
                history.users.push(user.to_owned());
                history.baskets.push(Vec::new());
            }
            let basket = basket
                .as_ref()
                .u32()
                .map_err(Error::polars("reading basket items"))?;
            numbers.clear();
            numbers.extend(basket.iter().flatten());
            numbers.sort_unstable();
            numbers.dedup();
            let mut indices: Vec<u32> = numbers
                .iter()
                .map(|&number| {
                    let index = &mut item_index[number as usize];
                    if *index == UNSEEN {
                        *index = u32::try_from(history.items.len()).expect("fewer than 4G items");
                        // A name is copied once per item, not once per order line.
                        history
                            .items
                            .push(ids.get(number as usize).unwrap_or_default().to_owned());
                    }
                    *index
                })
                .collect();
            // Distinct already: distinct numbers get distinct indices.
            indices.sort_unstable();
            if let Some(user_baskets) = history.baskets.last_mut() {
                user_baskets.push(Basket {
                    at_ms: at,
                    items: indices,
                });
            }
        }
        Ok(history)
    }

    /// The newest basket time, if any.
    pub fn newest_ms(&self) -> Option<i64> {
        self.baskets
            .iter()
            .filter_map(|b| b.last().map(|b| b.at_ms))
            .max()
    }
}

/// The name of the column holding the index of `column`'s values ([`index_table`]).
pub(crate) fn index_column(column: &str) -> PlSmallStr {
    format!("{column}_index").into()
}

/// A table from each of `ids` (column `column`) to its position (column
/// [`index_column`]`(column)`, `u32`): joined with events, it numbers their customers or items
/// as a [`BasketHistory`] does.
pub(crate) fn index_table(column: &str, ids: &[String]) -> DataFrame {
    let names = StringChunked::from_iter_values(column.into(), ids.iter().map(String::as_str));
    let positions = UInt32Chunked::from_iter_values(
        index_column(column),
        (0..ids.len()).map(|i| u32::try_from(i).expect("fewer than 4G ids")),
    );
    DataFrame::new(
        ids.len(),
        vec![names.into_column(), positions.into_column()],
    )
    .expect("two columns of one length")
}

/// Which orders `recur eval` holds out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdout {
    /// Each customer's last order (customers with at least two); their "now" is just before it.
    LastOrder,
    /// Everything in the last N days before the newest order; "now" is the cut for everyone.
    Days(u32),
}

impl Holdout {
    /// `last-order` or `days:N`.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "last-order" {
            return Ok(Self::LastOrder);
        }
        text.strip_prefix("days:")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .map(Self::Days)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "--holdout must be last-order or days:N (N ≥ 1 days), got {text:?}"
                ))
            })
    }
}

/// A customer whose held-out basket a model is asked to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    pub user: u32,
    /// The model's "now": before every held-out basket of this customer.
    pub now_ms: i64,
    /// Items of the held-out basket(s), sorted.
    pub target: Vec<u32>,
    /// Held-out items the customer never bought in training, sorted.
    pub new_items: Vec<u32>,
}

/// Training baskets and the cases to predict.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: BasketHistory,
    pub cases: Vec<TestCase>,
}

/// Splits `history` by `holdout`.
pub fn split(history: &BasketHistory, holdout: Holdout) -> Split {
    let mut train = BasketHistory {
        items: history.items.clone(),
        users: history.users.clone(),
        baskets: Vec::with_capacity(history.baskets.len()),
        // Shared, not cut: every signal is read as of the customer's "now".
        signals: std::sync::Arc::clone(&history.signals),
    };
    let mut cases = Vec::new();
    let cut = match holdout {
        Holdout::LastOrder => None,
        Holdout::Days(days) => history
            .newest_ms()
            .map(|newest| newest - i64::from(days) * DAY_MS),
    };
    for (user, baskets) in history.baskets.iter().enumerate() {
        let user_index = u32::try_from(user).expect("fewer than 4G customers");
        let (kept, held): (Vec<Basket>, Vec<Basket>) = match (holdout, cut) {
            (Holdout::LastOrder, _) if baskets.len() >= 2 => {
                let (kept, held) = baskets.split_at(baskets.len() - 1);
                (kept.to_vec(), held.to_vec())
            }
            (Holdout::LastOrder, _) | (Holdout::Days(_), None) => (baskets.clone(), Vec::new()),
            (Holdout::Days(_), Some(cut)) => baskets.iter().cloned().partition(|b| b.at_ms < cut),
        };
        if !kept.is_empty() && !held.is_empty() {
            let mut target: Vec<u32> = held.iter().flat_map(|b| b.items.iter().copied()).collect();
            target.sort_unstable();
            target.dedup();
            let bought: std::collections::HashSet<u32> =
                kept.iter().flat_map(|b| b.items.iter().copied()).collect();
            let new_items = target
                .iter()
                .copied()
                .filter(|i| !bought.contains(i))
                .collect();
            let now_ms = cut.unwrap_or(held[0].at_ms) - 1;
            cases.push(TestCase {
                user: user_index,
                now_ms,
                target,
                new_items,
            });
        }
        train.baskets.push(kept);
    }
    Split { train, cases }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> BasketHistory {
        let b = |day: i64, items: &[u32]| Basket {
            at_ms: day * DAY_MS,
            items: items.to_vec(),
        };
        BasketHistory {
            signals: Default::default(),
            items: (0..5).map(|i| format!("i{i}")).collect(),
            users: vec!["a".into(), "b".into(), "c".into()],
            baskets: vec![
                vec![b(1, &[0, 1]), b(5, &[0]), b(9, &[0, 2])],
                vec![b(2, &[3])],
                vec![b(3, &[1]), b(10, &[4])],
            ],
        }
    }

    #[test]
    fn last_order_holds_out_each_repeat_customers_last_basket() {
        let split = split(&history(), Holdout::LastOrder);
        assert_eq!(split.cases.len(), 2);
        assert_eq!(split.cases[0].user, 0);
        assert_eq!(split.cases[0].target, vec![0, 2]);
        assert_eq!(split.cases[0].new_items, vec![2]);
        assert_eq!(split.cases[0].now_ms, 9 * DAY_MS - 1);
        assert_eq!(split.train.baskets[0].len(), 2);
        assert_eq!(
            split.train.baskets[1].len(),
            1,
            "one-order customers stay in training"
        );
        assert_eq!(split.cases[1].target, vec![4]);
    }

    #[test]
    fn days_cut_everyone_at_the_same_moment() {
        // Newest basket: day 10; days:3 cuts at day 7.
        let split = split(&history(), Holdout::Days(3));
        let users: Vec<u32> = split.cases.iter().map(|c| c.user).collect();
        assert_eq!(users, vec![0, 2]);
        assert!(split.cases.iter().all(|c| c.now_ms == 7 * DAY_MS - 1));
        assert!(
            split
                .train
                .baskets
                .iter()
                .flatten()
                .all(|b| b.at_ms < 7 * DAY_MS),
            "nothing after the cut is in training"
        );
        assert!(Holdout::parse("days:0").is_err());
        assert_eq!(Holdout::parse("days:30").expect("parse"), Holdout::Days(30));
    }
}
