//! Small result tables as JSON rows, for the CLI's `--format json` and the API.
//!
//! Reports are at most a few thousand rows, so converting them value by value is cheap; the
//! data work stays in Polars. Column order is kept, so the JSON is stable for scripts.

use polars::prelude::*;
use serde_json::{Map, Number, Value};

/// Whether `s` goes into a JSON string as it is: no quote, backslash or control character
/// (what JSON escapes; everything else, unicode included, is written as is).
pub fn is_plain_json_text(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

fn to_json(value: AnyValue<'_>) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::String(s) => Value::String(s.to_owned()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::UInt8(v) => Value::from(v),
        AnyValue::UInt16(v) => Value::from(v),
        AnyValue::UInt32(v) => Value::from(v),
        AnyValue::UInt64(v) => Value::from(v),
        AnyValue::Int8(v) => Value::from(v),
        AnyValue::Int16(v) => Value::from(v),
        AnyValue::Int32(v) => Value::from(v),
        AnyValue::Int64(v) => Value::from(v),
        AnyValue::Float32(v) => Number::from_f64(f64::from(v)).map_or(Value::Null, Value::Number),
        AnyValue::Float64(v) => Number::from_f64(v).map_or(Value::Null, Value::Number),
        AnyValue::List(series) => Value::Array(series.iter().map(to_json).collect()),
        other => Value::String(other.to_string()),
    }
}

/// One JSON object per row, keys in column order.
pub fn rows(frame: &DataFrame) -> Vec<Value> {
    let columns = frame.columns();
    (0..frame.height())
        .map(|i| {
            let mut row = Map::with_capacity(columns.len());
            for column in columns {
                let value = column.get(i).map_or(Value::Null, to_json);
                row.insert(column.name().to_string(), value);
            }
            Value::Object(row)
        })
        .collect()
}
