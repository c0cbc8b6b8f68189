//! RFM: recency, frequency and monetary quintile scores per customer, the eleven named
//! segments, and the eight-class high/low scheme of Chinese store platforms.
//!
//! Inputs are kept orders (refunds netted, fully refunded orders dropped). Scores are
//! quintiles of the customer's rank among the merchant's customers: score =
//! floor(5 × (rank − 1) / n) + 1 with rank = 1 for the worst value and ties sharing the
//! lower rank, so the many one-order customers all get F = 1. The named segment comes from R
//! and FM = ⌊(F + M) / 2⌉ (half up) through [`SEGMENT_GRID`]; the eight classes compare R, F
//! and M with the merchant's mean.

use polars::prelude::*;
use serde::Serialize;

use super::period::DAY_MS;
use crate::jobs::purchases::{NET_CENTS, ORDERED_AT, money, money_sum};
use crate::store::USER_ID;

pub const RECENCY_DAYS: &str = "recency_days";
pub const FREQUENCY: &str = "frequency";
pub const MONETARY: &str = "monetary";
pub const R_SCORE: &str = "r_score";
pub const F_SCORE: &str = "f_score";
pub const M_SCORE: &str = "m_score";
pub const RFM_SEGMENT: &str = "rfm_segment";
pub const VALUE_CLASS: &str = "value_class";

/// A named RFM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub key: &'static str,
    pub name: &'static str,
    pub name_zh: &'static str,
    /// The rule, in words, as the docs give it.
    pub rule: &'static str,
}

/// The eleven segments, best first.
pub const SEGMENTS: [Segment; 11] = [
    Segment {
        key: "champions",
        name: "Champions",
        name_zh: "冠军客户",
        rule: "R 5 and FM 4–5, or R 4 and FM 5",
    },
    Segment {
        key: "loyal",
        name: "Loyal",
        name_zh: "忠诚客户",
        rule: "R 4 and FM 3–4, or R 3 and FM 4–5",
    },
    Segment {
        key: "potential_loyalists",
        name: "Potential loyalists",
        name_zh: "潜力客户",
        rule: "R 4–5 and FM 2, or R 5 and FM 3",
    },
    Segment {
        key: "new",
        name: "New",
        name_zh: "新客户",
        rule: "R 5 and FM 1",
    },
    Segment {
        key: "promising",
        name: "Promising",
        name_zh: "有潜力的新客",
        rule: "R 4 and FM 1",
    },
    Segment {
        key: "need_attention",
        name: "Need attention",
        name_zh: "需要关注客户",
        rule: "R 3 and FM 3",
    },
    Segment {
        key: "about_to_sleep",
        name: "About to sleep",
        name_zh: "即将沉睡客户",
        rule: "R 3 and FM 1–2",
    },
    Segment {
        key: "at_risk",
        name: "At risk",
        name_zh: "流失风险客户",
        rule: "R 2 and FM 3–4, or R 1 and FM 3",
    },
    Segment {
        key: "cant_lose_them",
        name: "Can't lose them",
        name_zh: "不能失去的客户",
        rule: "R 2 and FM 5, or R 1 and FM 4–5",
    },
    Segment {
        key: "hibernating",
        name: "Hibernating",
        name_zh: "休眠客户",
        rule: "R 2 and FM 1–2",
    },
    Segment {
        key: "lost",
        name: "Lost",
        name_zh: "已流失客户",
        rule: "R 1 and FM 1–2",
    },
];

/// Segment key by R (row, 5 first) and FM (column, 1 first).
pub const SEGMENT_GRID: [[&str; 5]; 5] = [
    [
        "new",
        "potential_loyalists",
        "potential_loyalists",
        "champions",
        "champions",
    ],
    [
        "promising",
        "potential_loyalists",
        "loyal",
        "loyal",
        "champions",
    ],
    [
        "about_to_sleep",
        "about_to_sleep",
        "need_attention",
        "loyal",
        "loyal",
    ],
    [
        "hibernating",
        "hibernating",
        "at_risk",
        "at_risk",
        "cant_lose_them",
    ],
    [
        "lost",
        "lost",
        "at_risk",
        "cant_lose_them",
        "cant_lose_them",
    ],
];

/// One of the eight high/low value classes (R, F, M each above or below the mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ValueClass {
    pub key: &'static str,
    pub name: &'static str,
    pub name_zh: &'static str,
    pub recent: bool,
    pub frequent: bool,
    pub high_spend: bool,
}

/// The eight classes. "High" R means more recent than the mean customer; F and M are high
/// when above the mean. Spend decides important/general; R and F decide value (both high),
/// development (recent, infrequent), keep (frequent, not recent) and retention (neither).
pub const VALUE_CLASSES: [ValueClass; 8] = [
    ValueClass {
        key: "important_value",
        name: "Important value",
        name_zh: "重要价值客户",
        recent: true,
        frequent: true,
        high_spend: true,
    },
    ValueClass {
        key: "important_development",
        name: "Important development",
        name_zh: "重要发展客户",
        recent: true,
        frequent: false,
        high_spend: true,
    },
    ValueClass {
        key: "important_keep",
        name: "Important keep",
        name_zh: "重要保持客户",
        recent: false,
        frequent: true,
        high_spend: true,
    },
    ValueClass {
        key: "important_retention",
        name: "Important retention",
        name_zh: "重要挽留客户",
        recent: false,
        frequent: false,
        high_spend: true,
    },
    ValueClass {
        key: "general_value",
        name: "General value",
        name_zh: "一般价值客户",
        recent: true,
        frequent: true,
        high_spend: false,
    },
    ValueClass {
        key: "general_development",
        name: "General development",
        name_zh: "一般发展客户",
        recent: true,
        frequent: false,
        high_spend: false,
    },
    ValueClass {
        key: "general_keep",
        name: "General keep",
        name_zh: "一般保持客户",
        recent: false,
        frequent: true,
        high_spend: false,
    },
    ValueClass {
        key: "general_retention",
        name: "General retention",
        name_zh: "一般挽留客户",
        recent: false,
        frequent: false,
        high_spend: false,
    },
];

pub fn segment(key: &str) -> Option<&'static Segment> {
    SEGMENTS.iter().find(|s| s.key == key)
}

pub fn value_class(key: &str) -> Option<&'static ValueClass> {
    VALUE_CLASSES.iter().find(|c| c.key == key)
}

/// The quintile score of `value` where a larger `value` is better.
fn quintile(value: Expr) -> Expr {
    let rank = value.rank(
        RankOptions {
            method: RankMethod::Min,
            descending: false,
        },
        None,
    );
    ((rank.cast(DataType::Int64) - lit(1i64)) * lit(5i64))
        .floor_div(len().cast(DataType::Int64))
        .cast(DataType::Int32)
        + lit(1i32)
}

fn lookup_segment(r: Expr, fm: Expr) -> Expr {
    let mut expr = lit(NULL).cast(DataType::String);
    for (row, r_value) in (1..=5).rev().enumerate() {
        for (column, key) in SEGMENT_GRID[row].iter().enumerate() {
            let fm_value = column as i32 + 1;
            expr = when(r.clone().eq(lit(r_value)).and(fm.clone().eq(lit(fm_value))))
                .then(lit(*key))
                .otherwise(expr);
        }
    }
    expr
}

fn lookup_value_class(recent: Expr, frequent: Expr, high_spend: Expr) -> Expr {
    let mut expr = lit(NULL).cast(DataType::String);
    for class in VALUE_CLASSES {
        expr = when(
            recent
                .clone()
                .eq(lit(class.recent))
                .and(frequent.clone().eq(lit(class.frequent)))
                .and(high_spend.clone().eq(lit(class.high_spend))),
        )
        .then(lit(class.key))
        .otherwise(expr);
    }
    expr
}

/// One row per customer with a kept order: recency in whole days before `as_of_ms`,
/// frequency (orders), monetary (net spend), the three scores, the segment and the value
/// class. `orders` are [`crate::jobs::purchases::kept_orders`].
pub fn rfm(orders: LazyFrame, as_of_ms: i64) -> LazyFrame {
    let recency = (lit(as_of_ms) - col(ORDERED_AT).max())
        .floor_div(lit(DAY_MS))
        .clip_min(lit(0i64));
    let fm = (col(F_SCORE) + col(M_SCORE) + lit(1i32)).floor_div(lit(2i32));
    orders
        .group_by([col(USER_ID)])
        .agg([
            recency.alias(RECENCY_DAYS),
            len().cast(DataType::UInt32).alias(FREQUENCY),
            // Cents until the scores and classes are set: integer sums and means are exact.
            col(NET_CENTS).sum().alias(MONETARY),
        ])
        .with_columns([
            quintile(-col(RECENCY_DAYS)).alias(R_SCORE),
            quintile(col(FREQUENCY)).alias(F_SCORE),
            quintile(col(MONETARY)).alias(M_SCORE),
        ])
        .with_columns([
            lookup_segment(col(R_SCORE), fm).alias(RFM_SEGMENT),
            lookup_value_class(
                col(RECENCY_DAYS)
                    .cast(DataType::Float64)
                    .lt(col(RECENCY_DAYS).cast(DataType::Float64).mean()),
                col(FREQUENCY)
                    .cast(DataType::Float64)
                    .gt(col(FREQUENCY).cast(DataType::Float64).mean()),
                col(MONETARY).gt(col(MONETARY).mean()),
            )
            .alias(VALUE_CLASS),
        ])
        .with_column(money(col(MONETARY)).alias(MONETARY))
        .sort([USER_ID], SortMultipleOptions::default())
}

/// Customers, spend and share per segment, in [`SEGMENTS`] order (empty segments included),
/// or per value class when `by_value_class`.
pub fn summary(rfm: LazyFrame, by_value_class: bool) -> PolarsResult<DataFrame> {
    let (column, keys): (&str, Vec<&str>) = if by_value_class {
        (VALUE_CLASS, VALUE_CLASSES.iter().map(|c| c.key).collect())
    } else {
        (RFM_SEGMENT, SEGMENTS.iter().map(|s| s.key).collect())
    };
    let order: Vec<u32> = (0..keys.len() as u32).collect();
    let all = df!("segment" => keys, "order" => order)?;
    let counts = rfm.group_by([col(column).alias("segment")]).agg([
        len().cast(DataType::UInt64).alias("customers"),
        money_sum(col(MONETARY)).alias("revenue"),
        col(RECENCY_DAYS)
            .cast(DataType::Float64)
            .mean()
            .alias("mean_recency_days"),
        col(FREQUENCY)
            .cast(DataType::Float64)
            .mean()
            .alias("mean_orders"),
    ]);
    all.lazy()
        .join(
            counts,
            [col("segment")],
            [col("segment")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("customers").fill_null(lit(0u64)),
            col("revenue").fill_null(lit(0.0)),
        ])
        .with_column(
            (col("customers").cast(DataType::Float64)
                / col("customers").sum().cast(DataType::Float64))
            .fill_nan(lit(0.0))
            .alias("share"),
        )
        .sort(["order"], SortMultipleOptions::default())
        .drop(by_name(["order"], true, false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ORDER_ID;

    fn orders(rows: &[(&str, i64, f64)]) -> LazyFrame {
        let users: Vec<&str> = rows.iter().map(|r| r.0).collect();
        let ids: Vec<String> = (0..rows.len()).map(|i| format!("o{i}")).collect();
        let at: Vec<i64> = rows.iter().map(|r| r.1 * DAY_MS).collect();
        let cents: Vec<i64> = rows.iter().map(|r| (r.2 * 100.0).round() as i64).collect();
        df!(USER_ID => users, ORDER_ID => ids, ORDERED_AT => at, NET_CENTS => cents)
            .expect("frame")
            .lazy()
    }

    fn column<T: Clone>(frame: &DataFrame, name: &str, get: impl Fn(&Column) -> Vec<T>) -> Vec<T> {
        get(frame.column(name).expect(name))
    }

    #[test]
    fn the_grid_names_every_segment_and_every_cell() {
        for s in SEGMENTS {
            assert!(
                SEGMENT_GRID.iter().flatten().any(|k| *k == s.key),
                "{}",
                s.key
            );
        }
        for key in SEGMENT_GRID.iter().flatten() {
            assert!(segment(key).is_some(), "{key}");
        }
    }

    #[test]
    fn five_customers_get_the_hand_computed_scores_segments_and_classes() {
        // as_of = day 100. Per customer: (last order day, orders, spend)
        // a: 99, 3, 300   b: 90, 2, 80   c: 60, 1, 500   d: 30, 1, 20   e: 10, 4, 400
        let frame = orders(&[
            ("a", 50, 100.0),
            ("a", 80, 100.0),
            ("a", 99, 100.0),
            ("b", 85, 40.0),
            ("b", 90, 40.0),
            ("c", 60, 500.0),
            ("d", 30, 20.0),
            ("e", 1, 100.0),
            ("e", 2, 100.0),
            ("e", 5, 100.0),
            ("e", 10, 100.0),
        ]);
        let out = rfm(frame, 100 * DAY_MS).collect().expect("rfm");
        let i32s = |c: &Column| {
            c.i32()
                .expect("i32")
                .into_no_null_iter()
                .collect::<Vec<_>>()
        };
        let strs = |c: &Column| {
            c.str()
                .expect("str")
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            column(&out, RECENCY_DAYS, |c| c
                .i64()
                .expect("i64")
                .into_no_null_iter()
                .collect::<Vec<_>>()),
            vec![1, 10, 40, 70, 90]
        );
        // n = 5, so score = rank. Recency ranks (most recent best): a5 b4 c3 d2 e1.
        assert_eq!(column(&out, R_SCORE, i32s), vec![5, 4, 3, 2, 1]);
        // Frequency 3,2,1,1,4: c and d tie at rank 1.
        assert_eq!(column(&out, F_SCORE, i32s), vec![4, 3, 1, 1, 5]);
        // Spend 300, 80, 500, 20, 400.
        assert_eq!(column(&out, M_SCORE, i32s), vec![3, 2, 5, 1, 4]);
        // FM = round half up of (F+M)/2: a 3.5→4, b 2.5→3, c 3, d 1, e 4.5→5.
        // Grid: a (5,4) champions; b (4,3) loyal; c (3,3) need_attention; d (2,1)
        // hibernating; e (1,5) cant_lose_them.
        assert_eq!(
            column(&out, RFM_SEGMENT, strs),
            vec![
                "champions",
                "loyal",
                "need_attention",
                "hibernating",
                "cant_lose_them"
            ]
        );
        // Means: recency 42.2, orders 2.2, spend 260.
        // a: recent, frequent, high → important_value; b: recent, infrequent, low →
        // general_development; c: recent (40 < 42), infrequent, high → important_development;
        // d: not recent, infrequent, low → general_retention; e: not recent, frequent, high →
        // important_keep.
        assert_eq!(
            column(&out, VALUE_CLASS, strs),
            vec![
                "important_value",
                "general_development",
                "important_development",
                "general_retention",
                "important_keep"
            ]
        );
        let summary = summary(out.lazy(), false).expect("summary");
        assert_eq!(summary.height(), SEGMENTS.len());
        let counts: Vec<u64> = summary
            .column("customers")
            .expect("c")
            .u64()
            .expect("u64")
            .into_no_null_iter()
            .collect();
        assert_eq!(counts, vec![1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0]);
    }
}
