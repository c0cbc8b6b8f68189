//! Member attributes from `identify` events: `birthday` (MM-DD), `member_level`, `points` and
//! `tags`, the latest value of each per customer. An event that leaves an attribute out does
//! not erase it (a points update keeps the birthday); a JSON null does.
//!
//! Properties are free-form JSON text in the store and Recur's Polars build has no JSON-path
//! feature, so the (few: about one per member and change) identify events are parsed here,
//! oldest first, and the result handed back as a frame.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::parse_birthday;
use crate::store::{PROPERTIES, TS, USER_ID};

pub const BIRTHDAY: &str = "birthday";
pub const MEMBER_LEVEL: &str = "member_level";
pub const POINTS: &str = "points";
pub const TAGS: &str = "tags";

#[derive(Default)]
struct Attributes {
    birthday: Option<String>,
    member_level: Option<String>,
    points: Option<f64>,
    tags: Option<Vec<String>>,
}

impl Attributes {
    /// Applies one event's properties over what is known.
    fn update(&mut self, properties: &serde_json::Map<String, Value>) {
        if let Some(value) = properties.get(BIRTHDAY) {
            // Ingest checked the format; a null clears it.
            self.birthday = value
                .as_str()
                .filter(|b| parse_birthday(b).is_some())
                .map(str::to_owned);
        }
        if let Some(value) = properties.get(MEMBER_LEVEL) {
            self.member_level = match value {
                Value::Null => None,
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            };
        }
        if let Some(value) = properties.get(POINTS) {
            self.points = value
                .as_f64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
        }
        if let Some(value) = properties.get(TAGS) {
            self.tags = match value {
                Value::Null => None,
                Value::String(tag) => Some(vec![tag.clone()]),
                Value::Array(tags) => Some(
                    tags.iter()
                        .filter_map(|t| match t {
                            Value::String(text) => Some(text.clone()),
                            Value::Null => None,
                            other => Some(other.to_string()),
                        })
                        .collect(),
                ),
                other => Some(vec![other.to_string()]),
            };
        }
    }
}

/// One row per customer with an `identify` event: `user_id`, `birthday`, `member_level`,
/// `points`, `tags`. `identify` holds the merchant's stitched identify events (`user_id`,
/// `ts`, `properties`).
pub fn member_attributes(identify: LazyFrame) -> Result<DataFrame> {
    let context = "reading member attributes";
    let frame = identify
        .select([
            col(USER_ID),
            col(TS).cast(DataType::Int64).alias(TS),
            col(PROPERTIES),
        ])
        .sort([TS, USER_ID], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars(context))?;
    let (users, properties) = (|| -> PolarsResult<_> {
        Ok((
            frame.column(USER_ID)?.str()?.clone(),
            frame.column(PROPERTIES)?.str()?.clone(),
        ))
    })()
    .map_err(Error::polars(context))?;
    let mut members: BTreeMap<&str, Attributes> = BTreeMap::new();
    for (user, text) in users.iter().zip(properties.iter()) {
        let (Some(user), Some(text)) = (user, text) else {
            continue;
        };
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
            members.entry(user).or_default().update(&map);
        }
    }
    let tags: Vec<Option<Series>> = members
        .values()
        .map(|m| {
            m.tags
                .as_ref()
                .map(|t| Series::new(PlSmallStr::EMPTY, t.as_slice()))
        })
        .collect();
    let mut tags = Series::new(TAGS.into(), tags);
    if tags.dtype() != &DataType::List(Box::new(DataType::String)) {
        // All null (or no members): give the column its list type anyway.
        tags = tags
            .cast(&DataType::List(Box::new(DataType::String)))
            .map_err(Error::polars(context))?;
    }
    DataFrame::new(
        members.len(),
        vec![
            Series::new(USER_ID.into(), members.keys().copied().collect::<Vec<_>>()).into(),
            Series::new(
                BIRTHDAY.into(),
                members
                    .values()
                    .map(|m| m.birthday.clone())
                    .collect::<Vec<_>>(),
            )
            .into(),
            Series::new(
                MEMBER_LEVEL.into(),
                members
                    .values()
                    .map(|m| m.member_level.clone())
                    .collect::<Vec<_>>(),
            )
            .into(),
            Series::new(
                POINTS.into(),
                members.values().map(|m| m.points).collect::<Vec<_>>(),
            )
            .into(),
            tags.into(),
        ],
    )
    .map_err(Error::polars(context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_value_of_each_attribute_wins() {
        let identify = df!(
            USER_ID => ["a", "a", "b", "a"],
            TS => [1i64, 2, 1, 3],
            PROPERTIES => [
                r#"{"birthday":"03-15","member_level":"silver","points":10,"tags":["vip"]}"#,
                r#"{"points":25,"member_level":"gold"}"#,
                r#"{"tags":"new","points":"7"}"#,
                r#"{"tags":null}"#,
            ],
        )
        .expect("frame")
        .lazy();
        let members = member_attributes(identify).expect("members");
        assert_eq!(members.height(), 2);
        let text = |name: &str, row: usize| -> Option<String> {
            members
                .column(name)
                .expect(name)
                .str()
                .expect("str")
                .get(row)
                .map(str::to_owned)
        };
        let points = members.column(POINTS).expect("points").f64().expect("f64");
        // a: the birthday of the first event stays, the level and points of the second,
        // the tags cleared by the third.
        assert_eq!(text(BIRTHDAY, 0).as_deref(), Some("03-15"));
        assert_eq!(text(MEMBER_LEVEL, 0).as_deref(), Some("gold"));
        assert_eq!(points.get(0), Some(25.0));
        let tags = members.column(TAGS).expect("tags").list().expect("list");
        assert!(tags.get_as_series(0).is_none());
        // b: a single tag is a list of one; points given as text are read.
        let b_tags = tags.get_as_series(1).expect("b's tags");
        assert_eq!(b_tags.str().expect("str").get(0), Some("new"));
        assert_eq!(points.get(1), Some(7.0));
        assert_eq!(text(BIRTHDAY, 1), None);
    }
}
