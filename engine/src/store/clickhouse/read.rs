//! Reads one merchant's events from ClickHouse into Polars: a lazy scan whose query is sent
//! when the plan is collected, with only the columns the plan uses (projection pushdown) and
//! the merchant and time range in its `WHERE` clause, deduplicated by `FINAL`.

use std::sync::Arc;

use polars::prelude::*;

use super::connection::Connection;
use super::schema::{ColumnType, EVENT_COLUMNS};
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::store::{TimeRange, columns};

pub(super) fn scan(
    connection: &Arc<Connection>,
    merchant_id: &str,
    range: TimeRange,
) -> Result<Option<LazyFrame>> {
    let filter = Filter::new(merchant_id, range);
    // Whether there is anything, without FINAL: one stored row is enough to know.
    let sql = format!("SELECT count() FROM events WHERE {}", filter.sql());
    connection.log_event_query(&sql);
    let any = connection.run(
        "looking for a merchant's events",
        filter
            .bind(connection.client().query(&sql))
            .fetch_one::<u64>(),
    )?;
    if any == 0 {
        return Ok(None);
    }
    lazy_scan(connection, filter).map(Some)
}

/// A lazy scan of one merchant's events of `types`: no query is sent until it is collected,
/// and an empty answer is an empty frame.
pub(super) fn scan_types(
    connection: &Arc<Connection>,
    merchant_id: &str,
    range: TimeRange,
    types: &[EventType],
) -> Result<LazyFrame> {
    let mut filter = Filter::new(merchant_id, range);
    filter.types = types.iter().map(|t| t.as_str()).collect();
    lazy_scan(connection, filter)
}

fn lazy_scan(connection: &Arc<Connection>, filter: Filter) -> Result<LazyFrame> {
    let source = EventSource {
        connection: Arc::clone(connection),
        filter,
    };
    let args = ScanArgsAnonymous {
        schema: Some(Arc::new(columns::event_schema())),
        name: "clickhouse events",
        ..ScanArgsAnonymous::default()
    };
    LazyFrame::anonymous_scan(Arc::new(source), args)
        .map_err(Error::polars("planning the ClickHouse event scan"))
}

/// The rows a read covers: one merchant, a time range, and optionally some event types.
#[derive(Clone)]
pub(super) struct Filter {
    merchant_id: String,
    range: TimeRange,
    /// Event types to read; empty: all of them.
    pub(super) types: Vec<&'static str>,
}

impl Filter {
    pub(super) fn new(merchant_id: &str, range: TimeRange) -> Self {
        Self {
            merchant_id: merchant_id.to_owned(),
            range,
            types: Vec::new(),
        }
    }

    /// The `WHERE` condition with `?` for each bound value, in [`Filter::bind`]'s order. It
    /// always starts with the merchant: tests check every read of events names one.
    pub(super) fn sql(&self) -> String {
        let mut sql = String::from("merchant_id = ?");
        if self.range.start_ms.is_some() {
            sql.push_str(" AND ts >= ?");
        }
        if self.range.end_ms.is_some() {
            sql.push_str(" AND ts < ?");
        }
        if !self.types.is_empty() {
            let marks = vec!["?"; self.types.len()].join(", ");
            sql.push_str(&format!(" AND `{}` IN ({marks})", columns::EVENT_TYPE));
        }
        sql
    }

    pub(super) fn bind(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        query = query.bind(&self.merchant_id);
        if let Some(start) = self.range.start_ms {
            query = query.bind(start);
        }
        if let Some(end) = self.range.end_ms {
            query = query.bind(end);
        }
        for event_type in &self.types {
            query = query.bind(*event_type);
        }
        query
    }
}

struct EventSource {
    connection: Arc<Connection>,
    filter: Filter,
}

impl AnonymousScan for EventSource {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn allows_projection_pushdown(&self) -> bool {
        true
    }

    fn scan(&self, args: AnonymousScanArgs) -> PolarsResult<DataFrame> {
        let wanted: Vec<(&str, ColumnType)> = match &args.with_columns {
            Some(names) => names
                .iter()
                .map(|name| {
                    EVENT_COLUMNS
                        .iter()
                        .find(|(column, _)| *column == name.as_str())
                        .copied()
                        .ok_or_else(|| polars_err!(ColumnNotFound: "{name}"))
                })
                .collect::<PolarsResult<_>>()?,
            None => EVENT_COLUMNS.to_vec(),
        };
        self.read(&wanted)
            .map_err(|e| polars_err!(ComputeError: "{e}"))
    }
}

impl EventSource {
    fn read(&self, wanted: &[(&str, ColumnType)]) -> Result<DataFrame> {
        let names: Vec<String> = if wanted.is_empty() {
            // A plan that only counts rows still needs one column to count.
            vec![format!("`{}`", columns::EVENT_ID)]
        } else {
            wanted.iter().map(|(name, _)| format!("`{name}`")).collect()
        };
        // Ordered so that a job sees the same rows in the same order on every run.
        let sql = format!(
            "SELECT {} FROM events FINAL WHERE {} ORDER BY user_id, ts, event_id",
            names.join(", "),
            self.filter.sql()
        );
        read_frame(
            &self.connection,
            &sql,
            &self.filter,
            wanted,
            "reading events",
        )
    }
}

/// Sends `sql` (whose `?` are `filter`'s values) and collects its answer, in ClickHouse's
/// Native format, as a frame with `wanted`'s columns (none: only the row count).
pub(super) fn read_frame(
    connection: &Connection,
    sql: &str,
    filter: &Filter,
    wanted: &[(&str, ColumnType)],
    doing: &str,
) -> Result<DataFrame> {
    connection.log_event_query(sql);
    let query = filter.bind(connection.client().query(sql));
    let mut builders: Vec<ColumnBuilder> = wanted
        .iter()
        .map(|(name, kind)| ColumnBuilder::new(name, *kind))
        .collect();
    let mut height = 0usize;
    connection.run(doing, async {
        let mut cursor = query.fetch_native()?;
        while let Some(block) = cursor.next().await? {
            height += block.num_rows();
            for ((name, _), builder) in wanted.iter().zip(&mut builders) {
                let column = block.column_by_name(name).ok_or_else(|| {
                    clickhouse::error::Error::Other(
                        format!("no column {name} in the answer").into(),
                    )
                })?;
                builder.extend(column)?;
            }
        }
        Ok(())
    })?;
    if wanted.is_empty() {
        return Ok(DataFrame::empty_with_height(height));
    }
    let columns = wanted
        .iter()
        .zip(builders)
        .map(|((name, _), builder)| builder.finish(name))
        .collect::<Result<Vec<_>>>()?;
    DataFrame::new(height, columns).map_err(Error::polars(format!("{doing} from ClickHouse")))
}

/// One column's values as they arrive, block by block.
enum ColumnBuilder {
    Text(StringChunkedBuilder),
    OptionalText(StringChunkedBuilder),
    Millis(Vec<i64>),
    OptionalFloat(Vec<Option<f64>>),
    Count(Vec<u32>),
    Int64(Vec<i64>),
    OptionalInt64(Vec<Option<i64>>),
}

impl ColumnBuilder {
    fn new(name: &str, kind: ColumnType) -> Self {
        let text = || StringChunkedBuilder::new(name.into(), 0);
        match kind {
            ColumnType::Text => Self::Text(text()),
            ColumnType::OptionalText => Self::OptionalText(text()),
            ColumnType::Millis => Self::Millis(Vec::new()),
            ColumnType::OptionalFloat => Self::OptionalFloat(Vec::new()),
            ColumnType::Count => Self::Count(Vec::new()),
            ColumnType::Int64 => Self::Int64(Vec::new()),
            ColumnType::OptionalInt64 => Self::OptionalInt64(Vec::new()),
        }
    }

    fn extend(&mut self, column: &clickhouse::native::Column) -> clickhouse::error::Result<()> {
        match self {
            Self::Text(builder) => {
                for value in column.iter::<&str>()? {
                    builder.append_value(value?);
                }
            }
            Self::OptionalText(builder) => {
                for value in column.iter::<Option<&str>>()? {
                    builder.append_option(value?);
                }
            }
            Self::Millis(values) => {
                for value in column.iter::<i64>()? {
                    values.push(value?);
                }
            }
            Self::OptionalFloat(values) => {
                for value in column.iter::<Option<f64>>()? {
                    values.push(value?);
                }
            }
            Self::Count(values) => {
                for value in column.iter::<u32>()? {
                    values.push(value?);
                }
            }
            Self::Int64(values) => {
                for value in column.iter::<i64>()? {
                    values.push(value?);
                }
            }
            Self::OptionalInt64(values) => {
                for value in column.iter::<Option<i64>>()? {
                    values.push(value?);
                }
            }
        }
        Ok(())
    }

    fn finish(self, name: &str) -> Result<Column> {
        let name = PlSmallStr::from(name);
        let column = match self {
            Self::Text(builder) | Self::OptionalText(builder) => builder.finish().into_column(),
            Self::Millis(values) => Int64Chunked::from_vec(name, values)
                .into_series()
                .cast(&columns::ts_dtype())
                .map_err(Error::polars("casting ts"))?
                .into_column(),
            Self::OptionalFloat(values) => {
                Float64Chunked::from_iter_options(name, values.into_iter()).into_column()
            }
            Self::Count(values) => UInt32Chunked::from_vec(name, values).into_column(),
            Self::Int64(values) => Int64Chunked::from_vec(name, values).into_column(),
            Self::OptionalInt64(values) => {
                Int64Chunked::from_iter_options(name, values.into_iter()).into_column()
            }
        };
        Ok(column)
    }
}
