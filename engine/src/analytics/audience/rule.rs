//! The audience rule language: a small JSON tree of and / or / not over customer conditions.
//!
//! ```json
//! {"and": [
//!   {"performed": {"event": "purchase", "at_least": 2, "in_last_days": 90}},
//!   {"not": {"rfm_segment": ["lost", "hibernating"]}},
//!   {"used_channel": {"channel": "micro_store"}}
//! ]}
//! ```
//!
//! Parsing checks every name (event types, segments, stages, channels) and every number, and
//! an error names the path of the bad part, e.g. `and[0].performed.event: unknown event type
//! "purchse": use one of view, search, ...`. The full grammar is in README ("Audiences").

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::analytics::activity::Activity;
use crate::analytics::lifecycle::STAGES;
use crate::analytics::rfm::{SEGMENTS, VALUE_CLASSES};
use crate::error::{Error, Result};
use crate::event::Channel;

/// A parsed, validated rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    /// Performed `event` at least `at_least` times in the last `in_last_days` days.
    Performed(Performed),
    /// Did not perform `event` in the last `days` days.
    NotPerformedSince(NotPerformedSince),
    RfmSegment(OneOrMany<SegmentKey>),
    ValueClass(OneOrMany<ValueClassKey>),
    Lifecycle(OneOrMany<StageKey>),
    Cluster(OneOrMany<u32>),
    BoughtCategory(BoughtCategory),
    UsedChannel(UsedChannel),
    Subscribed(Subscribed),
    PAlive(Bounds),
    Clv(Bounds),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performed {
    pub event: Activity,
    #[serde(default = "one")]
    pub at_least: u32,
    pub in_last_days: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotPerformedSince {
    pub event: Activity,
    pub days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoughtCategory {
    pub category: String,
    #[serde(default)]
    pub in_last_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedChannel {
    pub channel: ChannelKey,
    #[serde(default)]
    pub in_last_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribed {
    pub template_id: String,
    #[serde(default)]
    pub in_last_days: Option<u32>,
}

/// `above` and/or `below` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
}

/// One value or a list of them; a list matches any of its values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element()? {
                    values.push(v);
                }
                if values.is_empty() {
                    return Err(de::Error::custom(
                        "the list is empty; give at least one value",
                    ));
                }
                Ok(OneOrMany(values))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

macro_rules! checked_key {
    ($name:ident, $what:literal, $allowed:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> std::result::Result<Self, String> {
                let allowed: Vec<&str> = $allowed;
                if allowed.contains(&value.as_str()) {
                    Ok(Self(value))
                } else {
                    Err(format!(
                        "unknown {} {value:?}: use one of {}",
                        $what,
                        allowed.join(", ")
                    ))
                }
            }
        }

        impl From<$name> for String {
            fn from(key: $name) -> String {
                key.0
            }
        }
    };
}

checked_key!(
    SegmentKey,
    "RFM segment",
    SEGMENTS.iter().map(|s| s.key).collect()
);
checked_key!(
    ValueClassKey,
    "value class",
    VALUE_CLASSES.iter().map(|c| c.key).collect()
);
checked_key!(StageKey, "lifecycle stage", STAGES.to_vec());
checked_key!(
    ChannelKey,
    "channel",
    Channel::ALL.iter().map(|c| c.as_str()).collect()
);

/// Parses and validates a rule; the error names the path of the bad part.
pub fn parse(json: &str) -> Result<Rule> {
    let deserializer = &mut serde_json::Deserializer::from_str(json);
    let rule: Rule = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." {
            String::new()
        } else {
            format!("at {path}: ")
        };
        Error::InvalidArgument(format!("bad audience rule: {at}{inner}"))
    })?;
    check(&rule, "")?;
    Ok(rule)
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn bad(path: &str, problem: &str) -> Error {
    Error::InvalidArgument(format!("bad audience rule: at {path}: {problem}"))
}

fn positive_days(path: &str, days: Option<u32>) -> Result<()> {
    match days {
        Some(0) => Err(bad(path, "days must be at least 1")),
        _ => Ok(()),
    }
}

/// The checks serde cannot express: non-empty lists, positive counts, consistent bounds.
fn check(rule: &Rule, path: &str) -> Result<()> {
    match rule {
        Rule::And(rules) | Rule::Or(rules) => {
            let name = if matches!(rule, Rule::And(_)) {
                "and"
            } else {
                "or"
            };
            let here = child(path, name);
            if rules.is_empty() {
                return Err(bad(&here, "the list is empty; give at least one rule"));
            }
            for (i, r) in rules.iter().enumerate() {
                check(r, &format!("{here}[{i}]"))?;
            }
            Ok(())
        }
        Rule::Not(inner) => check(inner, &child(path, "not")),
        Rule::Performed(p) => {
            let here = child(path, "performed");
            if p.at_least == 0 {
                return Err(bad(
                    &child(&here, "at_least"),
                    "must be at least 1 (use not_performed_since for never)",
                ));
            }
            positive_days(&child(&here, "in_last_days"), Some(p.in_last_days))
        }
        Rule::NotPerformedSince(n) => positive_days(
            &child(&child(path, "not_performed_since"), "days"),
            Some(n.days),
        ),
        Rule::BoughtCategory(b) => {
            let here = child(path, "bought_category");
            if b.category.is_empty() {
                return Err(bad(&child(&here, "category"), "the category is empty"));
            }
            positive_days(&child(&here, "in_last_days"), b.in_last_days)
        }
        Rule::UsedChannel(u) => positive_days(
            &child(&child(path, "used_channel"), "in_last_days"),
            u.in_last_days,
        ),
        Rule::Subscribed(s) => {
            let here = child(path, "subscribed");
            if s.template_id.is_empty() {
                return Err(bad(
                    &child(&here, "template_id"),
                    "the template id is empty",
                ));
            }
            positive_days(&child(&here, "in_last_days"), s.in_last_days)
        }
        Rule::PAlive(b) | Rule::Clv(b) => {
            let here = child(
                path,
                if matches!(rule, Rule::PAlive(_)) {
                    "p_alive"
                } else {
                    "clv"
                },
            );
            match (b.above, b.below) {
                (None, None) => Err(bad(&here, "give above, below or both")),
                (Some(a), Some(b)) if a >= b => Err(bad(&here, "above must be smaller than below")),
                _ => Ok(()),
            }
        }
        Rule::RfmSegment(_) | Rule::ValueClass(_) | Rule::Lifecycle(_) | Rule::Cluster(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        parse(json).expect_err("invalid").to_string()
    }

    #[test]
    fn a_nested_rule_parses_with_single_values_and_lists() {
        let rule = parse(
            r#"{"and":[{"performed":{"event":"purchase","in_last_days":30}},
                       {"not":{"rfm_segment":["lost","hibernating"]}},
                       {"lifecycle":"dormant"},{"cluster":2},
                       {"p_alive":{"above":0.5}}]}"#,
        )
        .expect("valid");
        let Rule::And(parts) = rule else {
            panic!("and")
        };
        assert_eq!(parts.len(), 5);
        assert_eq!(
            parts[0],
            Rule::Performed(Performed {
                event: Activity::Purchase,
                at_least: 1,
                in_last_days: 30
            })
        );
        assert_eq!(parts[3], Rule::Cluster(OneOrMany(vec![2])));
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        assert_eq!(
            error(
                r#"{"and":[{"lifecycle":"new"},{"performed":{"event":"purchse","in_last_days":3}}]}"#
            ),
            "invalid argument: bad audience rule: at and[1].performed.event: unknown event type \"purchse\": use one of view, search, add_to_cart, favorite, purchase, refund, share, push_open, subscribe, not_interested, unsubscribe, identify at line 1 column 59"
        );
        assert!(error(r#"{"or":[{"rfm_segment":["champions","vips"]}]}"#)
            .starts_with("invalid argument: bad audience rule: at or[0].rfm_segment[1]: unknown RFM segment \"vips\""));
        assert!(error(r#"{"and":[]}"#).contains("at and: the list is empty"));
        assert!(
            error(r#"{"not":{"performed":{"event":"view","at_least":0,"in_last_days":3}}}"#)
                .contains("at not.performed.at_least: must be at least 1")
        );
        assert!(error(r#"{"clv":{}}"#).contains("at clv: give above, below or both"));
        assert!(error(r#"{"bought":"bread"}"#).contains("unknown variant `bought`"));
        assert!(
            error(r#"{"used_channel":{"channel":"tv"}}"#)
                .contains("at used_channel.channel: unknown channel \"tv\"")
        );
    }
}
