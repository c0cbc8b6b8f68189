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

fn floats(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
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
    let mut selected = vec![col(&columns.customer), day];
    if let Some(amount) = &columns.amount {
        selected.push(col(amount).cast(DataType::Float64).alias("amount"));
    }
    Ok(frame.select(selected))
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
