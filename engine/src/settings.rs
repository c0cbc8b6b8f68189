//! Per-merchant settings kept beside the store: the merchant's time zone and the business
//! rules its recommendation lists follow.
//!
//! Stored as `merchants/merchant=<id>/settings.json` under the data directory (the id
//! percent-encoded as in the event partitions), written atomically. A merchant without the
//! file gets the defaults, so nothing needs configuring before the first report.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analytics::period::TimeZoneName;
use crate::error::{Error, Result};
use crate::store::{fsutil, merchant_dir};

pub const MERCHANTS_DIR: &str = "merchants";
const SETTINGS_FILE: &str = "settings.json";
/// Serializes read-modify-write of a merchant's settings and audiences between processes.
const LOCK_FILE: &str = ".lock";

/// What a merchant configures.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantSettings {
    /// IANA time zone that days, weeks and months are counted in.
    #[serde(default)]
    pub time_zone: TimeZoneName,
    /// Rules every served and exported list follows.
    #[serde(default)]
    pub list_rules: ListRules,
}

/// A merchant's business rules for recommendation lists, applied when a list is served or
/// exported (not when it is computed), so a change (an item out of stock) holds at once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRules {
    /// Items of these categories are never listed.
    #[serde(default)]
    pub excluded_categories: Vec<String>,
    /// These items are never listed.
    #[serde(default)]
    pub excluded_items: Vec<String>,
    /// These items are not listed while out of stock.
    #[serde(default)]
    pub out_of_stock: Vec<String>,
    /// These items head every list, in this order (reason `pinned`), unless excluded, out of
    /// stock or outside the request's filters.
    #[serde(default)]
    pub pinned: Vec<String>,
    /// At most this many items of one category in a list (pinned items count).
    #[serde(default)]
    pub max_per_category: Option<u32>,
}

impl ListRules {
    /// Parses rules from JSON, saying where a mistake is.
    pub fn from_json(text: &str) -> Result<Self> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let rules: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            Error::InvalidArgument(format!(
                "bad list rules at {}: {}; the keys are excluded_categories, excluded_items, \
                 out_of_stock, pinned (lists of ids) and max_per_category (a number)",
                e.path(),
                e.inner()
            ))
        })?;
        if rules.max_per_category == Some(0) {
            return Err(Error::InvalidArgument(
                "bad list rules: max_per_category must be at least 1 (leave it out for no cap)"
                    .to_owned(),
            ));
        }
        Ok(rules)
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether an item may be listed at all (not excluded by id or category, in stock).
    pub fn allows(&self, item_id: &str, category: Option<&str>) -> bool {
        let named = |list: &[String]| list.iter().any(|i| i == item_id);
        !named(&self.excluded_items)
            && !named(&self.out_of_stock)
            && category.is_none_or(|c| !self.excluded_categories.iter().any(|e| e == c))
    }
}

/// The directory holding one merchant's settings and audience definitions.
pub fn merchant_config_dir(data_dir: &Path, merchant_id: &str) -> PathBuf {
    data_dir.join(MERCHANTS_DIR).join(merchant_dir(merchant_id))
}

/// Holds the merchant's configuration lock while it lives: whoever changes settings,
/// audiences or campaigns reads, modifies and writes under it, so no change is lost.
pub fn lock_merchant_config(data_dir: &Path, merchant_id: &str) -> Result<std::fs::File> {
    fsutil::lock_exclusive(&merchant_config_dir(data_dir, merchant_id).join(LOCK_FILE))
}

/// The file holding one merchant's settings.
pub fn settings_path(data_dir: &Path, merchant_id: &str) -> PathBuf {
    merchant_config_dir(data_dir, merchant_id).join(SETTINGS_FILE)
}

impl MerchantSettings {
    pub fn load(data_dir: &Path, merchant_id: &str) -> Result<Self> {
        let path = settings_path(data_dir, merchant_id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::CorruptStore {
                path,
                reason: format!("merchant settings are not valid: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io("read", &path)(e)),
        }
    }

    /// Loads, changes and saves the settings under the merchant's lock; returns the result.
    pub fn update(
        data_dir: &Path,
        merchant_id: &str,
        change: impl FnOnce(&mut Self),
    ) -> Result<Self> {
        let _lock = lock_merchant_config(data_dir, merchant_id)?;
        let mut settings = Self::load(data_dir, merchant_id)?;
        change(&mut settings);
        settings.save_locked(data_dir, merchant_id)?;
        Ok(settings)
    }

    /// Writes the settings; the caller holds [`lock_merchant_config`].
    fn save_locked(&self, data_dir: &Path, merchant_id: &str) -> Result<()> {
        let dir = merchant_config_dir(data_dir, merchant_id);
        fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let json = serde_json::to_vec_pretty(self).expect("settings always serialize");
        fsutil::write_bytes_atomic(&dir.join(SETTINGS_FILE), &json)
    }
}
