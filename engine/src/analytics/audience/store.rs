//! Audience definitions on disk: one JSON file per merchant, replaced atomically under the
//! merchant's configuration lock, so concurrent creates from the CLI and the API all land.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::rule::Rule;
use crate::error::{Error, Result};
use crate::settings::{lock_merchant_config, read_config, write_config};

const AUDIENCES_FILE: &str = "audiences.json";

/// A named audience of one merchant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub rule: Rule,
    pub created_at_ms: i64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AudienceFile {
    audiences: Vec<AudienceDefinition>,
}

/// Audience names: 1–64 of `a-z`, `0-9`, `_` and `-`, so they are safe in paths and URLs.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "bad audience name {name:?}: use 1 to 64 characters of a-z, 0-9, _ and -"
        )))
    }
}

/// The merchant's audiences, oldest first.
pub fn load_definitions(data_dir: &Path, merchant_id: &str) -> Result<Vec<AudienceDefinition>> {
    let file: Option<AudienceFile> = read_config(
        data_dir,
        merchant_id,
        AUDIENCES_FILE,
        "audience definitions",
    )?;
    Ok(file.map(|f| f.audiences).unwrap_or_default())
}

/// Replaces the file; the caller holds the merchant's configuration lock.
fn write(data_dir: &Path, merchant_id: &str, audiences: Vec<AudienceDefinition>) -> Result<()> {
    write_config(
        data_dir,
        merchant_id,
        AUDIENCES_FILE,
        &AudienceFile { audiences },
    )
}

/// Adds an audience, or replaces the one of the same name when `replace`.
pub fn save_definition(
    data_dir: &Path,
    merchant_id: &str,
    definition: AudienceDefinition,
    replace: bool,
) -> Result<()> {
    check_name(&definition.name)?;
    let _lock = lock_merchant_config(data_dir, merchant_id)?;
    let mut audiences = load_definitions(data_dir, merchant_id)?;
    match audiences.iter().position(|a| a.name == definition.name) {
        Some(_) if !replace => {
            return Err(Error::InvalidArgument(format!(
                "merchant {merchant_id} already has an audience named {:?}; pick another name or pass --replace",
                definition.name
            )));
        }
        Some(i) => audiences[i] = definition,
        None => audiences.push(definition),
    }
    write(data_dir, merchant_id, audiences)
}

/// Removes an audience; false if there was none of that name.
pub fn remove_definition(data_dir: &Path, merchant_id: &str, name: &str) -> Result<bool> {
    let _lock = lock_merchant_config(data_dir, merchant_id)?;
    let mut audiences = load_definitions(data_dir, merchant_id)?;
    let before = audiences.len();
    audiences.retain(|a| a.name != name);
    if audiences.len() == before {
        return Ok(false);
    }
    write(data_dir, merchant_id, audiences)?;
    Ok(true)
}
