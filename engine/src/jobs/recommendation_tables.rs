//! A merchant's recommendation tables in one pass: the learned blend on the caller's thread,
//! and beside it, on a thread of their own, the tables the blend does not read (the tiers of
//! customers who never kept a purchase, recent orders, popular items per scene and channel).
//!
//! Guarantee: the same tables as computing them one after the other. A customer's tiers
//! depend on their own events and the merchant's popular items only, so the tiers of the
//! customers who never kept a purchase, ranked early, and those of the rare customer who kept
//! one and still has no blended list, ranked after the blend, are the tiers of both sets.
//!
//! Why a thread: the blend leaves a core idle at times (single-threaded stretches of the
//! baskets, the regressions), and so does Polars in the tiers; one after the other, their
//! ~25 s at a million customers ran after the blend's ~125 s.

use polars::prelude::*;
use tracing::debug;

use super::recommend::{self, RecommendParams, TierCustomers};
use super::{Lap, RunOptions, profiles, with_merchant};
use crate::analytics::MerchantAnalytics;
use crate::error::{Error, Result};

/// What [`recommendation_tables`] computes, each a snapshot table.
pub struct RecommendationTables {
    /// Every customer's main and explore lists (the blend's, or the tiers').
    pub recommendations: DataFrame,
    /// Each item's most frequent companions.
    pub similar: DataFrame,
    /// The merchant's popular items (without the merchant column).
    pub popular: DataFrame,
    pub recent_orders: DataFrame,
    /// The item catalogue.
    pub items: DataFrame,
    pub popular_in_context: DataFrame,
}

/// The tables the blend does not read, computed beside it.
struct Beside {
    /// The customers who kept a purchase (`user_id`).
    kept: DataFrame,
    /// The tiers of everyone else.
    browsers: DataFrame,
    recent_orders: DataFrame,
    popular_in_context: DataFrame,
}

/// What the blend and the thread beside it share: the merchant's frames and the inputs both
/// read.
struct Shared<'a> {
    analytics: &'a MerchantAnalytics,
    merchant_id: &'a str,
    events: LazyFrame,
    lines: LazyFrame,
    popular: DataFrame,
    /// Pushes delivered by the as-of and left unopened (`recs::feedback`).
    ignored: DataFrame,
    params: RecommendParams,
}

impl Shared<'_> {
    fn context(&self, step: &str) -> String {
        format!("{step} for merchant {}", self.merchant_id)
    }

    /// The tiers' lists of `customers`.
    fn tiers(&self, customers: TierCustomers) -> Result<LazyFrame> {
        recommend::tiers(
            self.merchant_id,
            self.events.clone(),
            self.lines.clone(),
            self.popular.clone().lazy(),
            customers,
            Some(&self.ignored),
            self.params,
        )
        .map_err(Error::polars(self.context("recommending")))
    }

    /// The tables computed beside the blend.
    fn beside(&self) -> Result<Beside> {
        let mut lap = Lap::start();
        let recent_orders = profiles::recent_orders(self.merchant_id, self.lines.clone())
            .and_then(LazyFrame::collect)
            .map_err(Error::polars(self.context("listing recent orders")))?;
        let recent_orders_ms = lap.ms();
        let popular_in_context = recommend::popular_in_context(
            self.analytics.purchases_in_context(),
            self.params.as_of_ms,
            self.params.k,
        )
        .and_then(LazyFrame::collect)
        .and_then(|frame| with_merchant(self.merchant_id, frame))
        .map_err(Error::polars(
            self.context("ranking popular items per scene and channel"),
        ))?;
        let popular_in_context_ms = lap.ms();
        let kept = recommend::kept_customers(self.lines.clone())
            .collect()
            .map_err(Error::polars(
                self.context("finding the customers who kept a purchase"),
            ))?;
        let browsers = self
            .tiers(TierCustomers::Except(kept.clone().lazy()))?
            .collect()
            .map_err(Error::polars(self.context("recommending")))?;
        debug!(
            merchant = self.merchant_id,
            recent_orders_ms,
            popular_in_context_ms,
            tiers_ms = lap.ms(),
            "tables beside the blend built"
        );
        Ok(Beside {
            kept,
            browsers,
            recent_orders,
            popular_in_context,
        })
    }
}

/// The recommendation tables of `analytics`' merchant; `done` hears of the `blended lists`
/// and `recommendations` steps.
pub fn recommendation_tables(
    analytics: &MerchantAnalytics,
    data_dir: &std::path::Path,
    merchant_id: &str,
    options: RunOptions,
    done: &mut dyn FnMut(&str),
) -> Result<RecommendationTables> {
    let context = |step: &str| format!("{step} for merchant {merchant_id}");
    let as_of_ms = analytics.as_of_ms;
    let events = analytics.events.clone().lazy();
    let lines = analytics.lines.clone().lazy();
    // What the blend reads, each timed into one debug line.
    let mut lap = Lap::start();
    let items = recommend::item_catalogue(events.clone(), lines.clone())
        .collect()
        .and_then(|items| with_merchant(merchant_id, items))
        .map_err(Error::polars(context("describing items")))?;
    let item_catalogue_ms = lap.ms();
    let popular =
        recommend::popular_items(lines.clone(), analytics.categories.clone().lazy(), as_of_ms)
            .collect()
            .map_err(Error::polars(context("ranking popular items")))?;
    let popular_items_ms = lap.ms();
    let outbox = crate::campaign::outbox::read_outbox(data_dir, merchant_id)?;
    let ignored = crate::recs::feedback::deliveries(&outbox, as_of_ms)
        .and_then(|deliveries| {
            crate::recs::feedback::ignored_pushes(
                deliveries,
                events.clone(),
                lines.clone(),
                as_of_ms,
            )
            .collect()
        })
        .map_err(Error::polars(context("finding ignored pushes")))?;
    drop(outbox);
    debug!(
        merchant = merchant_id,
        item_catalogue_ms,
        popular_items_ms,
        ignored_pushes_ms = lap.ms(),
        "recommendation inputs built"
    );
    let shared = Shared {
        analytics,
        merchant_id,
        events,
        lines,
        popular,
        ignored,
        params: RecommendParams {
            k: options.k,
            as_of_ms,
        },
    };
    let (blend, beside) = std::thread::scope(|scope| {
        let beside = scope.spawn(|| shared.beside());
        // CPU-bound generator code; `recur run` is not async, and rayon spreads it over
        // cores.
        let blend = crate::recs::lists::merchant_recs(
            shared.events.clone(),
            shared.lines.clone(),
            items.clone().lazy(),
            &shared.ignored,
            as_of_ms,
            options.k,
        );
        let beside = beside
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (blend, beside)
    });
    let crate::recs::lists::MerchantRecs {
        lists: blended,
        similar,
    } = blend?;
    let beside = beside?;
    let similar = with_merchant(merchant_id, similar)
        .map_err(Error::polars(context("labelling similar items")))?;
    done("blended lists");
    // Customers who kept a purchase and have no blended list: all of them when the blend
    // could not be fitted, and (rarely) one whose every candidate is suppressed.
    let unlisted = match &blended {
        Some(blended) => recommend::without_list(beside.kept.lazy(), blended)
            .collect()
            .map_err(Error::polars(context("finding customers without a list")))?,
        None => beside.kept,
    };
    let mut parts = vec![beside.browsers.lazy()];
    if unlisted.height() > 0 {
        parts.push(shared.tiers(TierCustomers::Only(unlisted.lazy()))?);
    }
    if let Some(blended) = blended {
        parts.push(recommend::blended_rows(merchant_id, blended));
    }
    let recommendations = concat(parts, UnionArgs::default())
        .and_then(LazyFrame::collect)
        .map_err(Error::polars(context("recommending")))?;
    done("recommendations");
    Ok(RecommendationTables {
        recommendations,
        similar,
        popular: shared.popular,
        recent_orders: beside.recent_orders,
        items,
        popular_in_context: beside.popular_in_context,
    })
}
