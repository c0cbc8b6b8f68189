//! Per-merchant settings kept beside the store: today, the merchant's time zone.
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

impl MerchantSettings {
    pub fn load(data_dir: &Path, merchant_id: &str) -> Result<Self> {
        let path = merchant_config_dir(data_dir, merchant_id).join(SETTINGS_FILE);
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
