//! The jobs' first-phase aggregations in ClickHouse's SQL: `GROUP BY` per user, per order line
//! and buyer, and per item, over one merchant's deduplicated (`FINAL`) events in a time range.
//!
//! Each query computes what the Polars function named on [`StoreAggregates`]' method computes,
//! with the same arithmetic (cents are `round(price × quantity × 100)`, which ClickHouse rounds
//! half to even for floats, as Polars does here). Aliases never reuse a column's name:
//! ClickHouse substitutes aliases everywhere in a query, `WHERE` included.

use polars::prelude::*;

use super::ClickHouseStore;
use super::read::{Filter, read_frame};
use super::schema::ColumnType;
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::jobs::purchases::{NET_CENTS, NET_QUANTITY, ORDER_CHANNEL, ORDERED_AT, REFUNDED_CENTS};
use crate::store::{
    CATEGORY, EVENT_COUNT, EVENT_TYPE, FIRST_EVENT_MS, FIRST_UNIONID_MS, ITEM_ID, LAST_EVENT_MS,
    LATEST_OPENID, LATEST_OPENID_MS, LATEST_UNIONID, LATEST_UNIONID_MS, OPENID, ORDER_ID,
    StoreAggregates, TimeRange, UNIONID, USER_ID,
};

impl StoreAggregates for ClickHouseStore {
    fn user_summaries(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame> {
        let filter = Filter::new(merchant_id, range);
        // `xIf` aggregates answer a default (0, '') for a user without any such event: null.
        let latest = |column: &str, value: &str, at: &str| {
            let has = format!("isNotNull({column})");
            format!(
                "if(countIf({has}) = 0, NULL, argMaxIf(assumeNotNull({column}), ts, {has})) AS {value}, \
                 if(countIf({has}) = 0, NULL, maxIf(ts, {has})) AS {at}"
            )
        };
        let sql = format!(
            "SELECT user_id, min(ts) AS {FIRST_EVENT_MS}, max(ts) AS {LAST_EVENT_MS}, \
             toInt64(count()) AS {EVENT_COUNT}, \
             if(countIf(isNotNull(unionid)) = 0, NULL, minIf(ts, isNotNull(unionid))) AS {FIRST_UNIONID_MS}, \
             {}, {} FROM events FINAL WHERE {} GROUP BY user_id",
            latest(UNIONID, LATEST_UNIONID, LATEST_UNIONID_MS),
            latest(OPENID, LATEST_OPENID, LATEST_OPENID_MS),
            filter.sql()
        );
        self.read(
            &sql,
            &filter,
            &[
                (USER_ID, ColumnType::Text),
                (FIRST_EVENT_MS, ColumnType::Int64),
                (LAST_EVENT_MS, ColumnType::Int64),
                (EVENT_COUNT, ColumnType::Int64),
                (FIRST_UNIONID_MS, ColumnType::OptionalInt64),
                (LATEST_UNIONID, ColumnType::OptionalText),
                (LATEST_UNIONID_MS, ColumnType::OptionalInt64),
                (LATEST_OPENID, ColumnType::OptionalText),
                (LATEST_OPENID_MS, ColumnType::OptionalInt64),
            ],
            "summarizing users",
        )
    }

    fn order_line_sums(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame> {
        let mut filter = Filter::new(merchant_id, range);
        filter.types = vec![EventType::Purchase.as_str(), EventType::Refund.as_str()];
        let purchase = format!("`{EVENT_TYPE}` = '{}'", EventType::Purchase.as_str());
        // The line's value in cents, as `order_line_values` computes it.
        let cents = "toInt64(round(price * toFloat64(quantity) * 100))";
        let sql = format!(
            "SELECT if({purchase}, user_id, NULL) AS buyer, order_id, item_id, \
             sum(if({purchase}, 1, -1) * toInt64(quantity)) AS {NET_QUANTITY}, \
             sum(if({purchase}, 1, -1) * {cents}) AS {NET_CENTS}, \
             sum(if({purchase}, 0, 1) * {cents}) AS {REFUNDED_CENTS}, \
             min(if({purchase}, ts, NULL)) AS {ORDERED_AT}, \
             min(if({purchase}, channel, NULL)) AS {ORDER_CHANNEL} \
             FROM events FINAL WHERE {} GROUP BY order_id, item_id, buyer",
            filter.sql()
        );
        let frame = self.read(
            &sql,
            &filter,
            &[
                ("buyer", ColumnType::OptionalText),
                (ORDER_ID, ColumnType::OptionalText),
                (ITEM_ID, ColumnType::OptionalText),
                (NET_QUANTITY, ColumnType::Int64),
                (NET_CENTS, ColumnType::OptionalInt64),
                (REFUNDED_CENTS, ColumnType::OptionalInt64),
                (ORDERED_AT, ColumnType::OptionalInt64),
                (ORDER_CHANNEL, ColumnType::OptionalText),
            ],
            "summing order lines",
        )?;
        renamed(frame, &[("buyer", USER_ID)])
    }

    fn item_categories(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame> {
        let filter = Filter::new(merchant_id, range);
        let sql = format!(
            "SELECT item_id, argMax(assumeNotNull(category), ts) AS latest_category \
             FROM events FINAL WHERE {} AND item_id IS NOT NULL AND category IS NOT NULL \
             GROUP BY item_id",
            filter.sql()
        );
        let frame = self.read(
            &sql,
            &filter,
            &[
                (ITEM_ID, ColumnType::OptionalText),
                ("latest_category", ColumnType::Text),
            ],
            "finding item categories",
        )?;
        renamed(frame, &[("latest_category", CATEGORY)])
    }

    fn scan_types(
        &self,
        merchant_id: &str,
        range: TimeRange,
        types: &[EventType],
    ) -> Result<LazyFrame> {
        self.connection.ready()?;
        super::read::scan_types(&self.connection, merchant_id, range, types)
    }
}

impl ClickHouseStore {
    fn read(
        &self,
        sql: &str,
        filter: &Filter,
        wanted: &[(&str, ColumnType)],
        doing: &str,
    ) -> Result<DataFrame> {
        self.connection.ready()?;
        read_frame(&self.connection, sql, filter, wanted, doing)
    }
}

fn renamed(mut frame: DataFrame, names: &[(&str, &str)]) -> Result<DataFrame> {
    for (from, to) in names {
        frame
            .rename(from, (*to).into())
            .map_err(Error::polars(format!("naming the aggregate's {to}")))?;
    }
    Ok(frame)
}
