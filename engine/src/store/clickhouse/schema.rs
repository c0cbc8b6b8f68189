//! The ClickHouse tables and the versioned, idempotent migrations that create them.
//!
//! Guarantees: every statement is `CREATE … IF NOT EXISTS` in the MergeTree family with no
//! experimental feature, so it runs on Debian's 18.16 server and on current ClickHouse
//! (24.x and later); applying the migrations again, or from two processes at once, changes
//! nothing. A migration is recorded in `recur_migrations` only after its statements ran.

use crate::store::columns;

/// An event column: its name in the events table (the embedded store's column name) and its
/// ClickHouse type. `ts` is milliseconds since the epoch as `Int64`: `DateTime64` does not
/// exist on 18.16, and milliseconds are what the embedded store keeps.
pub(super) const EVENT_COLUMNS: [(&str, ColumnType); 15] = [
    (columns::EVENT_ID, ColumnType::Text),
    (columns::MERCHANT_ID, ColumnType::Text),
    (columns::USER_ID, ColumnType::Text),
    (columns::EVENT_TYPE, ColumnType::Text),
    (columns::TS, ColumnType::Millis),
    (columns::CHANNEL, ColumnType::Text),
    (columns::ITEM_ID, ColumnType::OptionalText),
    (columns::CATEGORY, ColumnType::OptionalText),
    (columns::ORDER_ID, ColumnType::OptionalText),
    (columns::PRICE, ColumnType::OptionalFloat),
    (columns::QUANTITY, ColumnType::Count),
    (columns::SCENE, ColumnType::OptionalText),
    (columns::OPENID, ColumnType::OptionalText),
    (columns::UNIONID, ColumnType::OptionalText),
    (columns::PROPERTIES, ColumnType::OptionalText),
];

/// How an event column is stored in ClickHouse (and what type an aggregate answers in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColumnType {
    Text,
    OptionalText,
    /// Epoch milliseconds, read as the event schema's `ts` type.
    Millis,
    OptionalFloat,
    Count,
    /// Sums and minimums of aggregates, read as plain Int64.
    Int64,
    OptionalInt64,
}

impl ColumnType {
    fn sql(self) -> &'static str {
        match self {
            Self::Text => "String",
            Self::OptionalText => "Nullable(String)",
            Self::Millis => "Int64",
            Self::OptionalFloat => "Nullable(Float64)",
            Self::Count => "UInt32",
            Self::Int64 => "Int64",
            Self::OptionalInt64 => "Nullable(Int64)",
        }
    }
}

/// One migration: its version, a name for people, and its statements (`{db}` is the database).
struct Migration {
    version: u32,
    name: &'static str,
    statements: Vec<String>,
}

fn migrations() -> Vec<Migration> {
    let event_columns: Vec<String> = EVENT_COLUMNS
        .iter()
        .map(|(name, kind)| format!("`{name}` {}", kind.sql()))
        .collect();
    vec![Migration {
        version: 1,
        name: "events, event keys, rejected lines, appends",
        statements: vec![
            // Partitioned by month, ordered by (merchant, user, ts); the key ends in event_id
            // so that ReplacingMergeTree folds an event stored twice (a retried insert after a
            // crash) into one row, and FINAL reads see it once before any merge ran.
            format!(
                "CREATE TABLE IF NOT EXISTS {{db}}.events ({}) \
                 ENGINE = ReplacingMergeTree() \
                 PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC')) \
                 ORDER BY (merchant_id, user_id, ts, event_id)",
                event_columns.join(", ")
            ),
            // The (merchant_id, event_id) fingerprints of stored events (128-bit XXH3, as in
            // the embedded store), ordered for lookups: what an append checks a batch against,
            // with the fingerprint of the batch that stored each.
            "CREATE TABLE IF NOT EXISTS {db}.event_keys \
             (merchant_id String, key_hi UInt64, key_lo UInt64, batch UInt64) \
             ENGINE = ReplacingMergeTree() ORDER BY (merchant_id, key_hi, key_lo)"
                .to_owned(),
            "CREATE TABLE IF NOT EXISTS {db}.rejected \
             (key_hi UInt64, key_lo UInt64, source String, line UInt64, reason String, raw String, \
              recorded_at DateTime) \
             ENGINE = ReplacingMergeTree() ORDER BY (key_hi, key_lo)"
                .to_owned(),
            // One row per append that stored something, written last: the store's version is
            // their count, and a batch without its row was interrupted.
            "CREATE TABLE IF NOT EXISTS {db}.appends \
             (at DateTime, batch UInt64, accepted UInt64, duplicates UInt64, rejected UInt64) \
             ENGINE = MergeTree() ORDER BY (batch, at)"
                .to_owned(),
        ],
    }]
}

/// The statements that bring `database` to the newest version, given the versions applied.
pub(super) fn pending(database: &str, applied: &[u32]) -> Vec<(u32, &'static str, Vec<String>)> {
    migrations()
        .into_iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| {
            let statements = m
                .statements
                .iter()
                .map(|s| s.replace("{db}", &quote_identifier(database)))
                .collect();
            (m.version, m.name, statements)
        })
        .collect()
}

/// The table that records applied migrations.
pub(super) fn migrations_table(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.recur_migrations \
         (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version",
        quote_identifier(database)
    )
}

/// A database name as an SQL identifier. Names are checked by [`check_database_name`] first;
/// the backquotes keep a name that is also a keyword working.
pub(super) fn quote_identifier(name: &str) -> String {
    format!("`{name}`")
}

/// Database names are put into SQL text, so only plain identifiers are accepted.
pub(super) fn check_database_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if plain {
        Ok(())
    } else {
        Err(format!(
            "the ClickHouse database name {name:?} is not a plain identifier: use letters, digits \
             and '_', starting with a letter or '_', at most 64 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_must_be_plain_identifiers() {
        for good in ["recur", "recur_test_1", "_x"] {
            assert!(check_database_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1recur", "re-cur", "a`b", "db; DROP TABLE x", "名"] {
            assert!(check_database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pending_skips_applied_versions_and_names_the_database() {
        assert!(pending("recur", &[1]).is_empty());
        let all = pending("recur", &[]);
        assert_eq!(all.len(), 1);
        assert!(all[0].2.iter().all(|s| s.contains("`recur`.")));
        assert!(
            all[0]
                .2
                .iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS"))
        );
    }
}
