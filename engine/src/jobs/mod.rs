//! The batch jobs `recur run` executes, one merchant at a time, and the snapshot they publish.
//!
//! Each merchant's events are read once (only its own files, only up to the as-of), stitched by
//! unionid, and every job is a lazy Polars plan over that frame. Tenancy is structural: a
//! merchant's outputs are computed from a scan that cannot contain another merchant's rows.
//!
//! To add a job: write a `fn(LazyFrame, ...) -> LazyFrame` module here or in
//! [`crate::analytics`], call it in [`run_merchant`] and add its table to [`SnapshotTable`];
//! the snapshot writes every table it is given.

pub mod customers;
pub mod profiles;
pub mod purchases;
pub mod recommend;
pub mod recommendation_tables;
pub mod reports;

use std::path::Path;
use std::time::Instant;

use polars::prelude::*;
use tracing::{debug, info};

use crate::analytics::MerchantAnalytics;
use crate::analytics::period::AsOf;
use crate::error::{Error, Result};
use crate::settings::MerchantSettings;
use crate::snapshot::{MerchantOutput, MerchantSummary, SnapshotTable};
use crate::store::EventStore;

/// Options of `recur run`.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Recommendations kept per user.
    pub k: usize,
    /// The moment outputs are measured at (events after it are not read); defaults to each
    /// merchant's newest event.
    pub as_of: Option<AsOf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { k: 20, as_of: None }
    }
}

/// Runs every job for every merchant and publishes the result as the new current snapshot
/// under `data_dir`. `on_merchant` hears of each merchant before its jobs start.
pub fn run_all(
    store: &mut dyn EventStore,
    data_dir: &Path,
    options: RunOptions,
    on_merchant: &mut dyn FnMut(usize, usize, &str),
) -> Result<crate::snapshot::SnapshotManifest> {
    if options.k == 0 {
        return Err(Error::InvalidArgument("k must be at least 1".to_owned()));
    }
    let version = store.version()?;
    let merchants = store.merchants()?;
    let mut outputs = Vec::with_capacity(merchants.len());
    for (i, merchant_id) in merchants.iter().enumerate() {
        on_merchant(i, merchants.len(), merchant_id);
        outputs.extend(run_merchant(store, data_dir, merchant_id, options)?);
    }
    crate::snapshot::publish(data_dir, outputs, version, options.k)
}

/// Labels each step's time in the debug log, so a slow merchant shows where it spends.
struct Steps<'a> {
    merchant_id: &'a str,
    last: Instant,
}

impl Steps<'_> {
    fn done(&mut self, step: &str) {
        debug!(
            merchant = self.merchant_id,
            step,
            ms = self.last.elapsed().as_millis() as u64,
            "step done"
        );
        self.last = Instant::now();
    }
}

/// Milliseconds between calls, for the debug lines that split a step.
pub(crate) struct Lap(Instant);

impl Lap {
    pub(crate) fn start() -> Self {
        Self(Instant::now())
    }

    /// Milliseconds since the last call (or the start).
    pub(crate) fn ms(&mut self) -> u64 {
        let ms = self.0.elapsed().as_millis() as u64;
        self.0 = Instant::now();
        ms
    }
}

/// Runs every job for one merchant; `None` if it has no events (by the as-of).
pub fn run_merchant(
    store: &mut dyn EventStore,
    data_dir: &Path,
    merchant_id: &str,
    options: RunOptions,
) -> Result<Option<MerchantOutput>> {
    let settings = MerchantSettings::load(data_dir, merchant_id)?;
    let mut steps = Steps {
        merchant_id,
        last: Instant::now(),
    };
    let Some(analytics) = MerchantAnalytics::load(store, merchant_id, &settings, options.as_of)?
    else {
        return Ok(None);
    };
    steps.done("load");
    let context = |step: &str| format!("{step} for merchant {merchant_id}");
    let as_of_ms = analytics.as_of_ms;

    let base_profiles = analytics.base_profiles()?;
    steps.done("profiles");
    let customer_tables =
        customers::customer_tables(&analytics, base_profiles, &mut |s| steps.done(s))?;
    let recommendation_tables::RecommendationTables {
        recommendations,
        similar,
        popular,
        recent_orders,
        items,
        popular_in_context,
    } = recommendation_tables::recommendation_tables(
        &analytics,
        data_dir,
        merchant_id,
        options,
        &mut |s| steps.done(s),
    )?;
    let popular = with_merchant(merchant_id, popular)
        .map_err(Error::polars(context("labelling popular items")))?;
    let audiences = customers::evaluate_audiences(data_dir, &analytics, &customer_tables.profiles)?;
    steps.done("audiences");
    let identities = with_merchant(merchant_id, analytics.stitched()?)
        .map_err(Error::polars(context("labelling identities")))?;
    let mut summary = summarize(merchant_id, as_of_ms, &customer_tables.profiles)
        .map_err(Error::polars(context("summarizing")))?;
    summary.time_zone = Some(analytics.zone.to_string());
    summary.stitched_user_ids = identities.height() as u64;
    summary.models = Some(customer_tables.models);
    summary.clusters = customer_tables.cluster_summaries;
    summary.audiences = audiences.sizes;
    info!(
        merchant = merchant_id,
        users = summary.users,
        customers = summary.customers,
        recommendations = recommendations.height(),
        "merchant jobs done"
    );
    let mut tables = reports::report_tables(&analytics)?;
    steps.done("reports");
    tables.extend([
        (SnapshotTable::Profiles, customer_tables.profiles),
        (SnapshotTable::Recommendations, recommendations),
        (SnapshotTable::Popular, popular),
        (SnapshotTable::RecentOrders, recent_orders),
        (SnapshotTable::Clusters, customer_tables.clusters),
        (SnapshotTable::Identities, identities),
        (SnapshotTable::Audiences, audiences.members),
        (SnapshotTable::SimilarItems, similar),
        (SnapshotTable::Items, items),
        (SnapshotTable::PopularInContext, popular_in_context),
    ]);
    Ok(Some(MerchantOutput { tables, summary }))
}

/// Prepends a `merchant_id` column.
pub(crate) fn with_merchant(merchant_id: &str, frame: DataFrame) -> PolarsResult<DataFrame> {
    reports::tagged(frame, &[], merchant_id)
}

fn summarize(
    merchant_id: &str,
    as_of_ms: i64,
    profiles: &DataFrame,
) -> PolarsResult<MerchantSummary> {
    let totals = profiles
        .clone()
        .lazy()
        .select([
            len().cast(DataType::UInt64).alias("users"),
            col("orders")
                .gt(lit(0u32))
                .sum()
                .cast(DataType::UInt64)
                .alias("customers"),
            col("orders")
                .gt(lit(1u32))
                .sum()
                .cast(DataType::UInt64)
                .alias("repeat_customers"),
            col("orders").cast(DataType::UInt64).sum().alias("orders"),
            purchases::money_sum(col("revenue")).alias("revenue"),
        ])
        .collect()?;
    let get_u64 = |name: &str| -> PolarsResult<u64> {
        Ok(totals.column(name)?.u64()?.get(0).unwrap_or_default())
    };
    Ok(MerchantSummary {
        merchant_id: merchant_id.to_owned(),
        as_of_ms,
        time_zone: None,
        stitched_user_ids: 0,
        models: None,
        clusters: Vec::new(),
        audiences: Vec::new(),
        users: get_u64("users")?,
        customers: get_u64("customers")?,
        repeat_customers: get_u64("repeat_customers")?,
        orders: get_u64("orders")?,
        revenue: totals.column("revenue")?.f64()?.get(0).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::recommend::{RecommendParams, popular_items, recommendations};
    use super::*;
    use crate::event::{Event, EventValidator};
    use crate::store::events_to_frame;

    const T0: i64 = 1_777_600_800_000;
    const DAY: i64 = 86_400_000;

    fn ev(
        id: &str,
        user: &str,
        kind: &str,
        day: i64,
        item: &str,
        category: &str,
        order: Option<&str>,
    ) -> Event {
        let money = order.map_or(String::new(), |o| {
            format!(r#","order_id":"{o}","price":10.0"#)
        });
        let line = format!(
            r#"{{"event_id":"{id}","merchant_id":"m1","user_id":"{user}","type":"{kind}","ts":{},"item_id":"{item}","category":"{category}"{money}}}"#,
            T0 + day * DAY
        );
        EventValidator::new(i64::MAX / 4)
            .validate(line.as_bytes())
            .expect("valid test event")
    }

    fn known_events() -> LazyFrame {
        let events = vec![
            ev("1", "u1", "purchase", 0, "A", "bread", Some("o1")),
            ev("2", "u1", "purchase", 20, "A", "bread", Some("o2")),
            ev("3", "u1", "purchase", 25, "B", "bread", Some("o3")),
            ev("4", "u1", "refund", 26, "B", "bread", Some("o3")),
            ev("5", "u1", "view", 27, "C", "cake", None),
            ev("6", "u2", "purchase", 10, "C", "cake", Some("o4")),
            ev("7", "u2", "purchase", 28, "A", "bread", Some("o5")),
            ev("8", "u3", "purchase", 29, "D", "bread", Some("o6")),
            ev("9", "u4", "view", 29, "C", "cake", None),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        events_to_frame(&refs).expect("frame").lazy()
    }

    /// Net order lines and item categories, as `run_merchant` derives them.
    fn base_tables(events: &LazyFrame) -> (LazyFrame, LazyFrame) {
        let lines = purchases::net_order_lines(events.clone())
            .collect()
            .expect("lines");
        let categories = purchases::item_categories(events.clone())
            .collect()
            .expect("categories");
        (lines.lazy(), categories.lazy())
    }

    /// The tiers' lists (k = 3, 30 days after `T0`, no blend) of `events`, with `ignored`
    /// pushes.
    fn tier_lists(events: LazyFrame, ignored: Option<&DataFrame>) -> DataFrame {
        let as_of_ms = T0 + 30 * DAY;
        let (lines, categories) = base_tables(&events);
        let popular = popular_items(lines.clone(), categories, as_of_ms)
            .collect()
            .expect("popular");
        recommendations(
            "m1",
            events,
            lines,
            popular.lazy(),
            None,
            ignored,
            RecommendParams { k: 3, as_of_ms },
        )
        .and_then(LazyFrame::collect)
        .expect("recommendations")
    }

    fn lists(frame: &DataFrame) -> Vec<(String, String, String, f64)> {
        let users = frame
            .column("user_id")
            .expect("user")
            .str()
            .expect("str")
            .clone();
        let items = frame
            .column("item_id")
            .expect("item")
            .str()
            .expect("str")
            .clone();
        let reasons = frame
            .column("reason")
            .expect("reason")
            .str()
            .expect("str")
            .clone();
        let scores = frame
            .column("score")
            .expect("score")
            .f64()
            .expect("f64")
            .clone();
        users
            .iter()
            .zip(items.iter())
            .zip(reasons.iter())
            .zip(scores.iter())
            .map(|(((u, i), r), s)| {
                (
                    u.unwrap_or_default().to_owned(),
                    i.unwrap_or_default().to_owned(),
                    r.unwrap_or_default().to_owned(),
                    s.unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn refunded_and_dismissed_items_are_suppressed_until_bought_again() {
        let mut events = known_events();
        let dismissals = [
            ev("n1", "u4", "not_interested", 29, "A", "bread", None),
            // Dismissed, then bought: the purchase lifts it.
            ev("n2", "u2", "not_interested", 5, "C", "cake", None),
            // Bought, then dismissed: suppressed.
            ev("n3", "u3", "not_interested", 30, "D", "bread", None),
        ];
        let refs: Vec<&Event> = dismissals.iter().collect();
        events = concat(
            [events, events_to_frame(&refs).expect("frame").lazy()],
            UnionArgs::default(),
        )
        .expect("concat");
        let (lines, _) = base_tables(&events);
        let mut pairs: Vec<(String, String)> = {
            let frame = recommend::suppressed_pairs(events.clone(), lines.clone())
                .and_then(LazyFrame::collect)
                .expect("pairs");
            let users = frame
                .column("user_id")
                .expect("u")
                .str()
                .expect("s")
                .clone();
            let items = frame
                .column("item_id")
                .expect("i")
                .str()
                .expect("s")
                .clone();
            users
                .iter()
                .zip(items.iter())
                .map(|(u, i)| (u.expect("u").to_owned(), i.expect("i").to_owned()))
                .collect()
        };
        pairs.sort();
        let pair = |u: &str, i: &str| (u.to_owned(), i.to_owned());
        assert_eq!(
            pairs,
            vec![pair("u1", "B"), pair("u3", "D"), pair("u4", "A")]
        );

        let recs = tier_lists(events, None);
        let listed: Vec<(String, String)> = lists(&recs)
            .into_iter()
            .map(|(u, i, _, _)| (u, i))
            .collect();
        for gone in [pair("u1", "B"), pair("u3", "D"), pair("u4", "A")] {
            assert!(!listed.contains(&gone), "{gone:?} listed: {listed:?}");
        }
        assert!(listed.contains(&pair("u2", "C")), "bought after dismissing");
    }

    #[test]
    fn recommender_orders_repeat_then_category_then_popular_and_never_repeats_refunds() {
        let recs = tier_lists(known_events(), None);
        let explore_mask = recs
            .column("explore")
            .expect("explore")
            .bool()
            .expect("bool");
        let explore = recs.filter(explore_mask).expect("filter");
        let recs = recs.filter(&!explore_mask).expect("filter");

        let f = 2.0 * 0.5f64.powf(10.0 / 30.0);
        let expected = vec![
            ("u1", "A", "bought_before", 2.0 + f / (1.0 + f)),
            ("u1", "D", "popular_in_category", 1.0 + 0.9 * 0.5 * 0.999),
            ("u1", "C", "popular_in_category", 1.0 + 0.1 * 0.5 * 0.999),
            (
                "u2",
                "A",
                "bought_before",
                2.0 + (0.5f64.powf(2.0 / 30.0)) / (1.0 + 0.5f64.powf(2.0 / 30.0)),
            ),
            (
                "u2",
                "C",
                "bought_before",
                2.0 + (0.5f64.powf(20.0 / 30.0)) / (1.0 + 0.5f64.powf(20.0 / 30.0)),
            ),
            ("u2", "D", "popular_in_category", 1.0 + 0.5 * 0.5 * 0.999),
            (
                "u3",
                "D",
                "bought_before",
                2.0 + (0.5f64.powf(1.0 / 30.0)) / (1.0 + 0.5f64.powf(1.0 / 30.0)),
            ),
            ("u3", "A", "popular_in_category", 1.0 + 0.999),
            ("u3", "C", "popular", 0.5 * 0.999),
            ("u4", "C", "popular_in_category", 1.0 + 0.5 * 0.999),
            ("u4", "A", "popular", 0.999),
            ("u4", "D", "popular", 0.5 * 0.999),
        ];
        let actual = lists(&recs);
        assert_eq!(actual.len(), expected.len(), "{actual:?}");
        for (got, want) in actual.iter().zip(&expected) {
            assert_eq!(
                (got.0.as_str(), got.1.as_str(), got.2.as_str()),
                (want.0, want.1, want.2),
                "{actual:?}"
            );
            assert!((got.3 - want.3).abs() < 1e-9, "{got:?} vs {want:?}");
        }
        // B was bought and fully refunded by u1: never recommended back to u1.
        assert!(!actual.iter().any(|(u, i, _, _)| u == "u1" && i == "B"));
        let ranks: Vec<u32> = recs
            .column("rank")
            .expect("rank")
            .u32()
            .expect("u32")
            .iter()
            .flatten()
            .collect();
        assert_eq!(ranks, vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);

        // The explore lists: the same tiers without what each user bought and kept.
        let explored: Vec<(String, String)> = lists(&explore)
            .into_iter()
            .map(|(u, i, _, _)| (u, i))
            .collect();
        let pair = |u: &str, i: &str| (u.to_owned(), i.to_owned());
        for bought in [
            pair("u1", "A"),
            pair("u2", "A"),
            pair("u2", "C"),
            pair("u3", "D"),
        ] {
            assert!(!explored.contains(&bought), "{bought:?} in {explored:?}");
        }
        assert!(explored.contains(&pair("u1", "D")) && explored.contains(&pair("u3", "A")));
        // u4 kept nothing: their explore list is their main list, in the same order.
        let of_u4 = |frame: &DataFrame| -> Vec<(String, String, f64)> {
            lists(frame)
                .into_iter()
                .filter(|(u, ..)| u == "u4")
                .map(|(_, i, r, s)| (i, r, s))
                .collect()
        };
        assert_eq!(of_u4(&explore), of_u4(&recs));
        assert_eq!(of_u4(&recs).len(), 3);
    }

    #[test]
    fn the_tiers_of_two_sets_of_customers_are_those_of_their_union() {
        // `recommendation_tables` ranks the customers who never kept a purchase beside the
        // blend and the others after it: together, the rows of one ranking of everyone.
        let events = known_events();
        let as_of_ms = T0 + 30 * DAY;
        let (lines, categories) = base_tables(&events);
        let popular = popular_items(lines.clone(), categories, as_of_ms)
            .collect()
            .expect("popular");
        let ignored = df!(
            "user_id" => ["u4", "u1"],
            "item_id" => ["A", "D"],
            crate::recs::feedback::IGNORED => [2u32, 1],
        )
        .expect("ignored");
        let params = RecommendParams { k: 3, as_of_ms };
        let kept = recommend::kept_customers(lines.clone())
            .sort([crate::store::USER_ID], SortMultipleOptions::default())
            .collect()
            .expect("kept");
        let kept_ids: Vec<Option<&str>> = kept
            .column(crate::store::USER_ID)
            .and_then(|c| c.str())
            .expect("ids")
            .iter()
            .collect();
        assert_eq!(kept_ids, [Some("u1"), Some("u2"), Some("u3")]);
        let tiers_of = |customers| {
            recommend::tiers(
                "m1",
                events.clone(),
                lines.clone(),
                popular.clone().lazy(),
                customers,
                Some(&ignored),
                params,
            )
            .and_then(LazyFrame::collect)
            .expect("tiers")
        };
        let sorted = |frame: DataFrame| {
            frame
                .sort(
                    ["user_id", "explore", "rank"],
                    SortMultipleOptions::default(),
                )
                .expect("sorted")
        };
        let everyone = sorted(tiers_of(recommend::TierCustomers::All));
        let never_kept = tiers_of(recommend::TierCustomers::Except(kept.clone().lazy()));
        let kept_lists = tiers_of(recommend::TierCustomers::Only(kept.lazy()));
        assert!(never_kept.height() > 0 && kept_lists.height() > 0);
        let both = sorted(never_kept.vstack(&kept_lists).expect("stacked"));
        assert!(
            both.equals_missing(&everyone),
            "split:\n{both}\neveryone:\n{everyone}"
        );
    }

    #[test]
    fn popular_items_fill_a_list_whose_category_items_are_suppressed() {
        // u4 kept nothing and browsed cakes, whose list is C alone: with k = 1 their list is
        // C, and no popular item is ranked for them. Once they dismiss C, the popular items
        // fill their list again.
        let as_of_ms = T0 + 30 * DAY;
        let first_of_u4 = |events: LazyFrame| {
            let (lines, categories) = base_tables(&events);
            let popular = popular_items(lines.clone(), categories, as_of_ms)
                .collect()
                .expect("popular");
            let recs = recommendations(
                "m1",
                events,
                lines,
                popular.lazy(),
                None,
                None,
                RecommendParams { k: 1, as_of_ms },
            )
            .and_then(LazyFrame::collect)
            .expect("recommendations");
            lists(&recs)
                .into_iter()
                .filter(|(u, ..)| u == "u4")
                .map(|(_, item, reason, _)| (item, reason))
                .collect::<Vec<_>>()
        };
        let c = ("C".to_owned(), "popular_in_category".to_owned());
        assert_eq!(first_of_u4(known_events()), [c.clone(), c]);
        let dismissal = [ev("n1", "u4", "not_interested", 29, "C", "cake", None)];
        let refs: Vec<&Event> = dismissal.iter().collect();
        let events = concat(
            [
                known_events(),
                events_to_frame(&refs).expect("frame").lazy(),
            ],
            UnionArgs::default(),
        )
        .expect("concat");
        let a = ("A".to_owned(), "popular".to_owned());
        assert_eq!(first_of_u4(events), [a.clone(), a]);
    }

    #[test]
    fn an_item_pushed_and_ignored_sinks_within_its_tier() {
        // u4's list without feedback: C (in category), A (popular 0.999), D (popular 0.4995).
        // A pushed twice and left unopened: its fraction of the tier quarters, below D. The
        // pair naming an item no tier lists changes nothing.
        let ignored = df!(
            "user_id" => ["u4", "u4"],
            "item_id" => ["A", "nowhere"],
            crate::recs::feedback::IGNORED => [2u32, 5],
        )
        .expect("ignored");
        let recs = tier_lists(known_events(), Some(&ignored));
        // The main list comes first; u4 kept nothing, so their explore list repeats it.
        let of_u4: Vec<(String, String, f64)> = lists(&recs)
            .into_iter()
            .filter(|(u, ..)| u == "u4")
            .map(|(_, i, r, s)| (i, r, s))
            .take(3)
            .collect();
        let items: Vec<(&str, &str)> = of_u4
            .iter()
            .map(|(i, r, _)| (i.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            items,
            [
                ("C", "popular_in_category"),
                ("D", "popular"),
                ("A", "popular")
            ]
        );
        assert!((of_u4[2].2 - 0.999 * 0.25).abs() < 1e-9, "{of_u4:?}");
    }

    #[test]
    fn a_fully_refunded_order_is_not_a_purchase_in_profiles() {
        let events = known_events();
        let (lines, categories) = base_tables(&events);
        let openids = events
            .clone()
            .group_by([col("user_id")])
            .agg([col("openid").drop_nulls().last()]);
        let members = crate::analytics::members::member_attributes(
            events
                .clone()
                .filter(col("type").eq(lit("identify")))
                .select([col("user_id"), col("ts"), col("properties")]),
        )
        .expect("members")
        .lazy()
        .join(
            crate::analytics::activity::active_hours(
                events.clone(),
                &crate::analytics::period::TimeZoneName::default(),
            ),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .collect()
        .expect("active hours");
        let activity = profiles::customer_activity(events);
        let profiles =
            profiles::profiles("m1", activity, lines, categories, openids, members.lazy())
                .collect()
                .expect("profiles");
        let orders: Vec<u32> = profiles
            .column("orders")
            .expect("orders")
            .u32()
            .expect("u32")
            .iter()
            .flatten()
            .collect();
        let revenue: Vec<f64> = profiles
            .column("revenue")
            .expect("revenue")
            .f64()
            .expect("f64")
            .iter()
            .flatten()
            .collect();
        // u1: o1, o2 kept, o3 refunded; u2: two orders; u3: one; u4: none.
        assert_eq!(orders, vec![2, 2, 1, 0]);
        assert_eq!(revenue, vec![20.0, 20.0, 10.0, 0.0]);
    }
}
