//! The columnar schema of stored events and the conversion of validated events into it.
//!
//! Column names and types are the contract for every job and for the ClickHouse backend to
//! come: change them only together with a migration.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::event::Event;

pub const EVENT_ID: &str = "event_id";
pub const MERCHANT_ID: &str = "merchant_id";
pub const USER_ID: &str = "user_id";
pub const EVENT_TYPE: &str = "type";
/// UTC instant, `Datetime(ms)` without a zone.
pub const TS: &str = "ts";
pub const CHANNEL: &str = "channel";
pub const ITEM_ID: &str = "item_id";
pub const CATEGORY: &str = "category";
pub const ORDER_ID: &str = "order_id";
pub const PRICE: &str = "price";
pub const QUANTITY: &str = "quantity";
pub const SCENE: &str = "scene";
pub const OPENID: &str = "openid";
pub const UNIONID: &str = "unionid";
pub const PROPERTIES: &str = "properties";

/// The `Datetime` type of `ts`.
pub fn ts_dtype() -> DataType {
    DataType::Datetime(TimeUnit::Milliseconds, None)
}

/// The schema of the events table.
pub fn event_schema() -> Schema {
    Schema::from_iter([
        Field::new(EVENT_ID.into(), DataType::String),
        Field::new(MERCHANT_ID.into(), DataType::String),
        Field::new(USER_ID.into(), DataType::String),
        Field::new(EVENT_TYPE.into(), DataType::String),
        Field::new(TS.into(), ts_dtype()),
        Field::new(CHANNEL.into(), DataType::String),
        Field::new(ITEM_ID.into(), DataType::String),
        Field::new(CATEGORY.into(), DataType::String),
        Field::new(ORDER_ID.into(), DataType::String),
        Field::new(PRICE.into(), DataType::Float64),
        Field::new(QUANTITY.into(), DataType::UInt32),
        Field::new(SCENE.into(), DataType::String),
        Field::new(OPENID.into(), DataType::String),
        Field::new(UNIONID.into(), DataType::String),
        Field::new(PROPERTIES.into(), DataType::String),
    ])
}

fn text(name: &str, events: &[&Event], get: impl Fn(&Event) -> &str) -> Column {
    let values: StringChunked = events.iter().map(|e| Some(get(e))).collect();
    values.with_name(name.into()).into_column()
}

fn optional_text(name: &str, events: &[&Event], get: impl Fn(&Event) -> Option<&str>) -> Column {
    let values: StringChunked = events.iter().map(|e| get(e)).collect();
    values.with_name(name.into()).into_column()
}

/// Builds the events table for a slice of events, in the order given.
pub fn events_to_frame(events: &[&Event]) -> Result<DataFrame> {
    let ts: Int64Chunked = events.iter().map(|e| Some(e.ts_ms)).collect();
    let ts = ts
        .with_name(TS.into())
        .into_series()
        .cast(&ts_dtype())
        .map_err(Error::polars("casting ts"))?;
    let price: Float64Chunked = events.iter().map(|e| e.price).collect();
    let quantity: UInt32Chunked = events.iter().map(|e| Some(e.quantity)).collect();
    let columns = vec![
        text(EVENT_ID, events, |e| &e.event_id),
        text(MERCHANT_ID, events, |e| &e.merchant_id),
        text(USER_ID, events, |e| &e.user_id),
        text(EVENT_TYPE, events, |e| e.event_type.as_str()),
        ts.into_column(),
        text(CHANNEL, events, |e| e.channel.as_str()),
        optional_text(ITEM_ID, events, |e| e.item_id.as_deref()),
        optional_text(CATEGORY, events, |e| e.category.as_deref()),
        optional_text(ORDER_ID, events, |e| e.order_id.as_deref()),
        price.with_name(PRICE.into()).into_column(),
        quantity.with_name(QUANTITY.into()).into_column(),
        optional_text(SCENE, events, |e| e.scene.as_deref()),
        optional_text(OPENID, events, |e| e.openid.as_deref()),
        optional_text(UNIONID, events, |e| e.unionid.as_deref()),
        optional_text(PROPERTIES, events, |e| e.properties.as_deref()),
    ];
    DataFrame::new(events.len(), columns).map_err(Error::polars("building the events table"))
}
