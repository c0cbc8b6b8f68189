//! Reading model inputs from CSV: per-customer summaries, or raw transactions to summarize.
//! Errors name the file and the column that is missing or malformed.

use std::path::Path;

use polars::prelude::*;

use super::summary::{
    AGE, DURATION_HOLDOUT, FREQUENCY, FREQUENCY_HOLDOUT, MONETARY, RECENCY, SummaryOptions,
    summarize,
};
use crate::error::{Error, Result};

fn scan_csv(path: &Path) -> Result<LazyFrame> {
    LazyCsvReader::new(PlRefPath::new(path.to_string_lossy().as_ref()))
        .with_has_header(true)
        .with_infer_schema_length(Some(10_000))
        .finish()
        .map_err(Error::polars(format!("opening {}", path.display())))
}

fn require_columns(path: &Path, frame: &mut LazyFrame, columns: &[&str]) -> Result<()> {
    let schema = frame.collect_schema().map_err(Error::polars(format!(
        "reading the header of {}",
        path.display()
    )))?;
    for column in columns {
        if schema.get(column).is_none() {
            let found: Vec<&str> = schema.iter_names().map(PlSmallStr::as_str).collect();
            return Err(Error::InvalidArgument(format!(
                "{} has no column {column:?} (it has {})",
                path.display(),
                found.join(", ")
            )));
        }
    }
    Ok(())
}

/// Per-customer columns as the fitters take them.
#[derive(Debug, Clone, Default)]
pub struct SummaryColumns {
    pub frequency: Vec<f64>,
    pub recency: Vec<f64>,
    pub age: Vec<f64>,
    /// Present when the input had spend.
    pub monetary_value: Option<Vec<f64>>,
    /// Customer ids when the input names them (`customer_id` or `ID`), else row numbers.
    pub customer_ids: Vec<String>,
    /// Repeat purchases in the holdout and its length, when the summary has a holdout.
    pub holdout: Option<(Vec<f64>, Vec<f64>)>,
}

/// A column as `f64`s; a null is an error naming its row.
pub(crate) fn floats(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let column = frame
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(Error::polars(format!("reading column {name}")))?;
    let values = column
        .f64()
        .map_err(Error::polars(format!("reading column {name}")))?;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| Error::InvalidArgument(format!("row {}: {name} is empty", i + 1)))
        })
        .collect()
}

impl SummaryColumns {
    pub fn from_frame(frame: &DataFrame) -> Result<Self> {
        let has_monetary = frame.column(MONETARY).is_ok();
        let id_column = ["customer_id", "ID", "id"]
            .into_iter()
            .find(|c| frame.column(c).is_ok());
        let customer_ids = match id_column {
            Some(name) => {
                let ids = frame
                    .column(name)
                    .and_then(|c| c.cast(&DataType::String))
                    .map_err(Error::polars(format!("reading column {name}")))?;
                let ids = ids
                    .str()
                    .map_err(Error::polars(format!("reading column {name}")))?;
                ids.iter()
                    .map(|v| v.unwrap_or_default().to_owned())
                    .collect()
            }
            None => (1..=frame.height()).map(|i| i.to_string()).collect(),
        };
        Ok(Self {
            customer_ids,
            frequency: floats(frame, FREQUENCY)?,
            recency: floats(frame, RECENCY)?,
            age: floats(frame, AGE)?,
            monetary_value: if has_monetary {
                Some(floats(frame, MONETARY)?)
            } else {
                None
            },
            holdout: match (
                frame.column(FREQUENCY_HOLDOUT).is_ok(),
                frame.column(DURATION_HOLDOUT).is_ok(),
            ) {
                (true, true) => Some((
                    floats(frame, FREQUENCY_HOLDOUT)?,
                    floats(frame, DURATION_HOLDOUT)?,
                )),
                _ => None,
            },
        })
    }
}

/// Reads a summary CSV with columns frequency, recency, T and optionally monetary_value.
pub fn read_summary_csv(path: &Path) -> Result<SummaryColumns> {
    let mut frame = scan_csv(path)?;
    require_columns(path, &mut frame, &[FREQUENCY, RECENCY, AGE])?;
    let frame = frame
        .collect()
        .map_err(Error::polars(format!("reading {}", path.display())))?;
    SummaryColumns::from_frame(&frame)
}

/// Where the transaction columns are.
#[derive(Debug, Clone)]
pub struct TransactionColumns {
    pub customer: String,
    pub date: String,
    /// strftime format of the date column, e.g. `%Y%m%d`; default `%Y-%m-%d`.
    pub date_format: Option<String>,
    pub amount: Option<String>,
}

/// Reads transactions from CSV as a lazy frame of the customer column (as named), `day`
/// (Int64 days since 1970-01-01) and, when an amount column is named, `amount`.
pub fn read_transactions_csv(path: &Path, columns: &TransactionColumns) -> Result<LazyFrame> {
    let mut frame = scan_csv(path)?;
    let mut needed = vec![columns.customer.as_str(), columns.date.as_str()];
    needed.extend(columns.amount.as_deref());
    require_columns(path, &mut frame, &needed)?;
    let format = columns
        .date_format
        .clone()
        .unwrap_or_else(|| "%Y-%m-%d".to_owned());
    let mut selected = vec![col(&columns.customer)];
    if let Some(amount) = &columns.amount {
        selected.push(col(amount).cast(DataType::Float64).alias("amount"));
    }
    let date_is_integer = frame
        .collect_schema()
        .ok()
        .and_then(|schema| schema.get(&columns.date).map(DataType::is_integer))
        .unwrap_or(false);
    if format == "%Y%m%d" && date_is_integer {
        return integer_dates(path, frame, &columns.date, selected);
    }
    let day = col(&columns.date)
        .cast(DataType::String)
        .str()
        .to_date(StrptimeOptions {
            format: Some(format.into()),
            strict: true,
            exact: true,
            cache: true,
        })
        .cast(DataType::Int32)
        .cast(DataType::Int64)
        .alias("day");
    selected.insert(1, day);
    Ok(frame.select(selected))
}

/// Dates stored as integers like 19970101 (CDNOW's form): the day number by arithmetic
/// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms", days_from_civil), much
/// cheaper than formatting and parsing text. Impossible dates are refused with their row.
fn integer_dates(
    path: &Path,
    frame: LazyFrame,
    date: &str,
    mut selected: Vec<Expr>,
) -> Result<LazyFrame> {
    let n = col(date).cast(DataType::Int64);
    let year = n.clone().floor_div(lit(10_000i64));
    let month = n.clone().floor_div(lit(100i64)) % lit(100i64);
    let day = n % lit(100i64);
    let leap = (year.clone() % lit(4i64)).eq(lit(0i64)).and(
        (year.clone() % lit(100i64))
            .neq(lit(0i64))
            .or((year.clone() % lit(400i64)).eq(lit(0i64))),
    );
    let month_length = when(month.clone().eq(lit(2i64)))
        .then(when(leap).then(lit(29i64)).otherwise(lit(28i64)))
        .when(month.clone().is_in(
            lit(Series::new("m".into(), [4i64, 6, 9, 11])).implode(false),
            false,
        ))
        .then(lit(30i64))
        .otherwise(lit(31i64));
    let valid = month
        .clone()
        .gt_eq(lit(1i64))
        .and(month.clone().lt_eq(lit(12i64)))
        .and(day.clone().gt_eq(lit(1i64)))
        .and(day.clone().lt_eq(month_length));
    let shifted_year = year - month.clone().lt_eq(lit(2i64)).cast(DataType::Int64);
    let era = shifted_year.clone().floor_div(lit(400i64));
    let year_of_era = shifted_year - era.clone() * lit(400i64);
    let day_of_year =
        (lit(153i64) * ((month + lit(9i64)) % lit(12i64)) + lit(2i64)).floor_div(lit(5i64)) + day
            - lit(1i64);
    let day_of_era = year_of_era.clone() * lit(365i64) + year_of_era.clone().floor_div(lit(4i64))
        - year_of_era.floor_div(lit(100i64))
        + day_of_year;
    let days = era * lit(146_097i64) + day_of_era - lit(719_468i64);
    selected.insert(
        1,
        when(valid)
            .then(days)
            .otherwise(lit(NULL).cast(DataType::Int64))
            .alias("day"),
    );
    let table = frame
        .select(selected)
        .collect()
        .map_err(Error::polars(format!("reading {}", path.display())))?;
    let days = table
        .column("day")
        .and_then(|c| c.i64().cloned())
        .map_err(Error::polars("checking dates"))?;
    if days.null_count() > 0
        && let Some(row) = days.iter().position(|d| d.is_none())
    {
        return Err(Error::InvalidArgument(format!(
            "{} row {}: {date} is not a date in %Y%m%d",
            path.display(),
            row + 2
        )));
    }
    Ok(table.lazy())
}

/// Reads transactions from CSV and summarizes them (lazily, in one Polars plan).
pub fn summarize_transactions_csv(
    path: &Path,
    columns: &TransactionColumns,
    options: SummaryOptions,
) -> Result<DataFrame> {
    let transactions = read_transactions_csv(path, columns)?;
    let plan = summarize(
        transactions,
        &columns.customer,
        columns.amount.is_some(),
        options,
    )?;
    plan.collect().map_err(|e| {
        Error::InvalidArgument(format!(
            "cannot summarize {}: {e} (is --date-format right for column {:?}?)",
            path.display(),
            columns.date
        ))
    })
}
