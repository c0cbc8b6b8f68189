//! Calendar periods (day, week, month) in a merchant's time zone, as integer indexes.
//!
//! Every period-based report (lifecycle, cohorts, repeat rates) buckets instants through
//! [`period_index`], so an order at 23:30 in Shanghai lands in the Shanghai day, not the UTC
//! one. Indexes are consecutive integers (day number, Monday-based week number, month
//! number), so "the previous period" is always `index - 1`, across month and year ends.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The time zone merchants get unless they set their own.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";
pub const DAY_MS: i64 = 86_400_000;

/// A calendar period length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub const ALL: [Self; 3] = [Self::Day, Self::Week, Self::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The first day of period `index`.
    pub fn start_date(self, index: i32) -> NaiveDate {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        match self {
            Self::Day => epoch + chrono::Duration::days(i64::from(index)),
            // Week 0 starts on Monday 1969-12-29.
            Self::Week => epoch + chrono::Duration::days(i64::from(index) * 7 - 3),
            Self::Month => {
                NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
                    .expect("valid month")
            }
        }
    }

    /// A label for period `index`: `2026-03-09` for days and weeks (the Monday), `2026-03`
    /// for months.
    pub fn label(self, index: i32) -> String {
        match self {
            Self::Day | Self::Week => self.start_date(index).format("%Y-%m-%d").to_string(),
            Self::Month => self.start_date(index).format("%Y-%m").to_string(),
        }
    }

    /// The index of the period containing `date`.
    pub fn index_of_date(self, date: NaiveDate) -> i32 {
        let day =
            (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32;
        match self {
            Self::Day => day,
            Self::Week => (day + 3).div_euclid(7),
            Self::Month => date.year() * 12 + date.month0() as i32,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("unknown period {text:?}: use day, week or month"))
            })
    }
}

/// A validated IANA time zone name such as `Asia/Shanghai`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn new(name: &str) -> Result<Self> {
        name.parse::<chrono_tz::Tz>().map_err(|_| {
            Error::InvalidArgument(format!(
                "unknown time zone {name:?}: use an IANA name such as Asia/Shanghai or Europe/Paris"
            ))
        })?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The zone itself.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.0.parse().expect("validated on construction")
    }

    /// The local calendar date of a UTC instant in this zone.
    pub fn local_date(&self, ts_ms: i64) -> NaiveDate {
        let tz: chrono_tz::Tz = self.0.parse().expect("validated on construction");
        chrono::DateTime::from_timestamp_millis(ts_ms)
            .unwrap_or_default()
            .with_timezone(&tz)
            .date_naive()
    }
}

impl Default for TimeZoneName {
    fn default() -> Self {
        Self(DEFAULT_TIME_ZONE.to_owned())
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = Error;

    fn try_from(name: String) -> Result<Self> {
        Self::new(&name)
    }
}

impl From<TimeZoneName> for String {
    fn from(name: TimeZoneName) -> Self {
        name.0
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `--as-of`: the moment every output is measured at, the same for `recur run`, `recur report`
/// and `recur eval`. Nothing stamped after it is read: the store scan itself ends there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The end of this calendar day in the merchant's time zone.
    EndOfLocalDay(NaiveDate),
    /// An exact instant, epoch milliseconds.
    Instant(i64),
}

/// An RFC 3339 instant with offset (`2026-11-01T10:00:00+08:00`) as epoch milliseconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl AsOf {
    /// Parses `YYYY-MM-DD` (the end of that local day) or an RFC 3339 instant with offset.
    pub fn parse(text: &str) -> Result<Self> {
        if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Self::EndOfLocalDay(date));
        }
        parse_instant(text)
            .map(Self::Instant)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "--as-of {text:?} is neither a date like 2026-03-01 (the end of that day in the merchant's time zone) nor an RFC 3339 instant like 2026-03-01T18:00:00+08:00"
                ))
            })
    }

    /// The last included instant, epoch milliseconds: events with `ts <= ` it are read.
    pub fn cutoff_ms(self, zone: &TimeZoneName) -> Result<i64> {
        match self {
            Self::Instant(ms) => Ok(ms),
            Self::EndOfLocalDay(date) => {
                let tz: chrono_tz::Tz = zone.as_str().parse().expect("validated on construction");
                let next = date.succ_opt().ok_or_else(|| {
                    Error::InvalidArgument(format!("--as-of {date} is out of range"))
                })?;
                // The next local midnight (or, where a time zone change skips it, the first
                // instant of that day), minus one millisecond.
                let start = next
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_local_timezone(tz)
                    .earliest()
                    .or_else(|| {
                        next.and_hms_opt(1, 0, 0)
                            .expect("1 am exists")
                            .and_local_timezone(tz)
                            .earliest()
                    })
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "--as-of {date}: no such local time in {zone}"
                        ))
                    })?;
                Ok(start.timestamp_millis() - 1)
            }
        }
    }
}

/// The local calendar date (a `Date` column) of `instant_ms`, an expression of epoch
/// milliseconds in UTC.
pub fn local_date(instant_ms: Expr, zone: &TimeZoneName) -> Expr {
    local_datetime(instant_ms, zone).dt().date()
}

/// `instant_ms` (epoch milliseconds, UTC) as a datetime in `zone`.
fn local_datetime(instant_ms: Expr, zone: &TimeZoneName) -> Expr {
    let zone = TimeZone::opt_try_new(Some(zone.as_str()))
        .ok()
        .flatten()
        .unwrap_or(TimeZone::UTC);
    instant_ms
        .cast(DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(TimeZone::UTC),
        ))
        .dt()
        .convert_time_zone(zone)
}

/// The local hour (0–23, UInt32) of `instant_ms`, an expression of epoch milliseconds in UTC.
pub fn local_hour(instant_ms: Expr, zone: &TimeZoneName) -> Expr {
    local_datetime(instant_ms, zone)
        .dt()
        .hour()
        .cast(DataType::UInt32)
}

/// The local day number (Int32 days since 1970-01-01) of `instant_ms` in `zone`.
pub fn local_day(instant_ms: Expr, zone: &TimeZoneName) -> Expr {
    local_date(instant_ms, zone).cast(DataType::Int32)
}

/// The period index (Int32) of a local day number: the time zone work is done once per
/// instant by [`local_day`], periods are arithmetic on its result.
pub fn period_of_day(day: Expr, period: Period) -> Expr {
    match period {
        Period::Day => day,
        Period::Week => (day + lit(3i32)).floor_div(lit(7i32)),
        Period::Month => {
            let date = day.cast(DataType::Date);
            date.clone().dt().year() * lit(12i32) + date.dt().month().cast(DataType::Int32)
                - lit(1i32)
        }
    }
}

/// The period index (Int32) of `instant_ms`, epoch milliseconds in UTC, in `zone`.
pub fn period_index(instant_ms: Expr, period: Period, zone: &TimeZoneName) -> Expr {
    period_of_day(local_day(instant_ms, zone), period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_a_date_is_the_end_of_that_day_in_the_merchants_zone() {
        let shanghai = TimeZoneName::new("Asia/Shanghai").expect("zone");
        let utc = TimeZoneName::new("UTC").expect("zone");
        let date = AsOf::parse("2026-05-31").expect("date");
        // 2026-06-01T00:00+08:00 is 2026-05-31T16:00Z.
        assert_eq!(
            date.cutoff_ms(&shanghai).expect("cutoff"),
            1_780_243_200_000 - 1
        );
        assert_eq!(date.cutoff_ms(&utc).expect("cutoff"), 1_780_272_000_000 - 1);
        let instant = AsOf::parse("2026-05-31T18:00:00+08:00").expect("instant");
        assert_eq!(instant.cutoff_ms(&utc).expect("cutoff"), 1_780_221_600_000);
        let reason = AsOf::parse("yesterday").expect_err("must fail").to_string();
        assert!(reason.contains("neither a date"), "{reason}");
    }

    #[test]
    fn week_indexes_start_on_monday_and_labels_name_the_monday() {
        let monday = NaiveDate::from_ymd_opt(2026, 3, 9).expect("date");
        let sunday = NaiveDate::from_ymd_opt(2026, 3, 15).expect("date");
        let week = Period::Week.index_of_date(monday);
        assert_eq!(Period::Week.index_of_date(sunday), week);
        assert_eq!(
            Period::Week.index_of_date(monday.pred_opt().expect("d")),
            week - 1
        );
        assert_eq!(Period::Week.label(week), "2026-03-09");
        assert_eq!(
            Period::Month.label(Period::Month.index_of_date(sunday)),
            "2026-03"
        );
        assert_eq!(
            Period::Month.index_of_date(NaiveDate::from_ymd_opt(2027, 1, 1).expect("d")),
            Period::Month.index_of_date(NaiveDate::from_ymd_opt(2026, 12, 31).expect("d")) + 1
        );
    }

    #[test]
    fn the_expression_buckets_in_the_merchant_time_zone_not_utc() {
        // 2026-03-31T16:30Z is 2026-04-01 00:30 in Shanghai: April there, March in UTC.
        let ts = chrono::DateTime::parse_from_rfc3339("2026-03-31T16:30:00Z")
            .expect("ts")
            .timestamp_millis();
        let frame = df!("ts" => [ts]).expect("frame");
        let index = |zone: &str, period: Period| -> i32 {
            let zone = TimeZoneName::new(zone).expect("zone");
            let out = frame
                .clone()
                .lazy()
                .select([period_index(col("ts"), period, &zone).alias("p")])
                .collect()
                .expect("collect");
            out.column("p")
                .expect("p")
                .i32()
                .expect("i32")
                .get(0)
                .expect("value")
        };
        assert_eq!(
            Period::Month.label(index("Asia/Shanghai", Period::Month)),
            "2026-04"
        );
        assert_eq!(Period::Month.label(index("UTC", Period::Month)), "2026-03");
        assert_eq!(
            Period::Day.label(index("Asia/Shanghai", Period::Day)),
            "2026-04-01"
        );
        assert_eq!(
            Period::Week.label(index("Asia/Shanghai", Period::Week)),
            "2026-03-30"
        );
        assert!(TimeZoneName::new("Mars/Olympus").is_err());
    }
}
