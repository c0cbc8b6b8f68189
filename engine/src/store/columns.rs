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

/// Builds the events table for a slice of events, in the order given.
///
/// One pass over the events fills every column's builder: an event and the strings it owns
/// were allocated together, so each is read from memory once, where a pass per column read
/// every event's strings fifteen times (the copies were most of this function's time).
pub fn events_to_frame(events: &[&Event]) -> Result<DataFrame> {
    let n = events.len();
    let text = |name: &str| StringChunkedBuilder::new(name.into(), n);
    let (mut event_id, mut merchant_id, mut user_id) =
        (text(EVENT_ID), text(MERCHANT_ID), text(USER_ID));
    let (mut event_type, mut channel) = (text(EVENT_TYPE), text(CHANNEL));
    let (mut item_id, mut category, mut order_id) = (text(ITEM_ID), text(CATEGORY), text(ORDER_ID));
    let (mut scene, mut openid, mut unionid, mut properties) =
        (text(SCENE), text(OPENID), text(UNIONID), text(PROPERTIES));
    let mut ts = Vec::with_capacity(n);
    let mut price = Vec::with_capacity(n);
    let mut quantity = Vec::with_capacity(n);
    for e in events {
        event_id.append_value(&e.event_id);
        merchant_id.append_value(&e.merchant_id);
        user_id.append_value(&e.user_id);
        event_type.append_value(e.event_type.as_str());
        channel.append_value(e.channel.as_str());
        item_id.append_option(e.item_id.as_deref());
        category.append_option(e.category.as_deref());
        order_id.append_option(e.order_id.as_deref());
        scene.append_option(e.scene.as_deref());
        openid.append_option(e.openid.as_deref());
        unionid.append_option(e.unionid.as_deref());
        properties.append_option(e.properties.as_deref());
        ts.push(e.ts_ms);
        price.push(e.price);
        quantity.push(e.quantity);
    }
    let ts = Int64Chunked::from_vec(TS.into(), ts)
        .into_series()
        .cast(&ts_dtype())
        .map_err(Error::polars("casting ts"))?;
    let price: Float64Chunked = price.into_iter().collect();
    let columns = vec![
        event_id.finish().into_column(),
        merchant_id.finish().into_column(),
        user_id.finish().into_column(),
        event_type.finish().into_column(),
        ts.into_column(),
        channel.finish().into_column(),
        item_id.finish().into_column(),
        category.finish().into_column(),
        order_id.finish().into_column(),
        price.with_name(PRICE.into()).into_column(),
        UInt32Chunked::from_vec(QUANTITY.into(), quantity).into_column(),
        scene.finish().into_column(),
        openid.finish().into_column(),
        unionid.finish().into_column(),
        properties.finish().into_column(),
    ];
    DataFrame::new(n, columns).map_err(Error::polars("building the events table"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventValidator;

    #[test]
    fn every_field_lands_in_its_own_column_with_the_schemas_type() {
        let validator = EventValidator::new(1_800_000_000_000);
        let full = validator
            .validate(
                br#"{"event_id":"e1","merchant_id":"m1","user_id":"u1","type":"purchase","ts":1777600800000,"channel":"micro_store","item_id":"i1","category":"c1","order_id":"o1","price":2.5,"quantity":3,"scene":1001,"openid":"op1","unionid":"un1","properties":{"a":1}}"#,
            )
            .expect("valid");
        let bare = validator
            .validate(br#"{"event_id":"e2","merchant_id":"m1","user_id":"u2","type":"identify","ts":1777600900000}"#)
            .expect("valid");
        let frame = events_to_frame(&[&full, &bare]).expect("frame");
        let schema = event_schema();
        assert_eq!(frame.width(), schema.len());
        for (column, (name, dtype)) in frame.columns().iter().zip(schema.iter()) {
            assert_eq!(column.name().as_str(), name.as_str());
            assert_eq!(column.dtype(), dtype, "{name}");
        }
        let text = |name: &str| -> Vec<Option<String>> {
            frame
                .column(name)
                .expect("column")
                .str()
                .expect("text")
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect()
        };
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(text(EVENT_ID), [some("e1"), some("e2")]);
        assert_eq!(text(USER_ID), [some("u1"), some("u2")]);
        assert_eq!(text(EVENT_TYPE), [some("purchase"), some("identify")]);
        assert_eq!(text(CHANNEL)[0], some("micro_store"));
        for (name, value) in [
            (ITEM_ID, "i1"),
            (CATEGORY, "c1"),
            (ORDER_ID, "o1"),
            (SCENE, "1001"),
            (OPENID, "op1"),
            (UNIONID, "un1"),
            (PROPERTIES, r#"{"a":1}"#),
        ] {
            assert_eq!(text(name), [some(value), None], "{name}");
        }
        let price: Vec<Option<f64>> = frame
            .column(PRICE)
            .expect("price")
            .f64()
            .expect("f64")
            .iter()
            .collect();
        assert_eq!(price, [Some(2.5), None]);
        let quantity: Vec<Option<u32>> = frame
            .column(QUANTITY)
            .expect("quantity")
            .u32()
            .expect("u32")
            .iter()
            .collect();
        assert_eq!(quantity, [Some(3), Some(1)]);
    }
}
