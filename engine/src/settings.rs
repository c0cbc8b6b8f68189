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
    /// How pushes to this merchant's customers are paced and delivered.
    #[serde(default)]
    pub push: PushSettings,
}

/// Frequency caps, quiet hours and the merchant's delivery endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSettings {
    /// Pushes per customer per local day, over all the merchant's campaigns.
    #[serde(default = "default_cap_per_day")]
    pub cap_per_day: u32,
    /// Pushes per customer in any seven local days.
    #[serde(default = "default_cap_per_week")]
    pub cap_per_week: u32,
    /// No push is sent from this local time…
    #[serde(default = "default_quiet_from")]
    pub quiet_from: LocalTime,
    /// …until this one (the next morning when it is earlier).
    #[serde(default = "default_quiet_until")]
    pub quiet_until: LocalTime,
    /// Where `webhook` campaigns POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSettings>,
    /// The mini program's credentials for subscription messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wechat: Option<WechatSettings>,
}

fn default_cap_per_day() -> u32 {
    1
}
fn default_cap_per_week() -> u32 {
    3
}
fn default_quiet_from() -> LocalTime {
    LocalTime::new(22, 0)
}
fn default_quiet_until() -> LocalTime {
    LocalTime::new(8, 0)
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            cap_per_day: default_cap_per_day(),
            cap_per_week: default_cap_per_week(),
            quiet_from: default_quiet_from(),
            quiet_until: default_quiet_until(),
            webhook: None,
            wechat: None,
        }
    }
}

/// The merchant's webhook: the URL and the HMAC key that signs each body.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
}

/// A mini program's app id and secret, and the API base (WeChat's, or a stand-in in tests).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatSettings {
    pub appid: String,
    pub secret: String,
    #[serde(default = "default_wechat_api")]
    pub api_base: String,
}

/// WeChat's API host.
pub const WECHAT_API: &str = "https://api.weixin.qq.com";

fn default_wechat_api() -> String {
    WECHAT_API.to_owned()
}

/// Shown in place of a secret.
const REDACTED: &str = "(set, not shown)";

// Debug by hand: secrets must not reach logs through `{:?}`.
impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for WechatSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatSettings")
            .field("appid", &self.appid)
            .field("secret", &REDACTED)
            .field("api_base", &self.api_base)
            .finish()
    }
}

impl MerchantSettings {
    /// The settings with every secret replaced, for printing.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        if let Some(webhook) = &mut shown.push.webhook {
            REDACTED.clone_into(&mut webhook.secret);
        }
        if let Some(wechat) = &mut shown.push.wechat {
            REDACTED.clone_into(&mut wechat.secret);
        }
        shown
    }
}

/// A local wall-clock time of day, `HH:MM` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime {
    /// Minutes after midnight.
    pub minutes: u32,
}

impl LocalTime {
    pub const fn new(hour: u32, minute: u32) -> Self {
        Self {
            minutes: hour * 60 + minute,
        }
    }

    /// Parses `HH:MM` (24-hour).
    pub fn parse(text: &str) -> Result<Self> {
        let parsed = text.split_once(':').and_then(|(h, m)| {
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && text.len() == 5).then(|| Self::new(h, m))
        });
        parsed.ok_or_else(|| {
            Error::InvalidArgument(format!("bad time of day {text:?}: use HH:MM, e.g. 22:00"))
        })
    }
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
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

    /// Whether no item is kept out of lists (none excluded by id or category, none out of
    /// stock): then [`Self::allows`] is true of every item and need not be asked.
    pub fn admits_every_item(&self) -> bool {
        self.excluded_items.is_empty()
            && self.out_of_stock.is_empty()
            && self.excluded_categories.is_empty()
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

/// Reads one of a merchant's JSON configuration files (`what` names it in errors); `None`
/// when it does not exist yet.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(
    data_dir: &Path,
    merchant_id: &str,
    file: &str,
    what: &str,
) -> Result<Option<T>> {
    let path = merchant_config_dir(data_dir, merchant_id).join(file);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::CorruptStore {
                path,
                reason: format!("{what} are not valid: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &path)(e)),
    }
}

/// Replaces one of a merchant's JSON configuration files atomically; the caller holds
/// [`lock_merchant_config`].
pub(crate) fn write_config<T: Serialize>(
    data_dir: &Path,
    merchant_id: &str,
    file: &str,
    value: &T,
) -> Result<()> {
    let dir = merchant_config_dir(data_dir, merchant_id);
    fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    let json = serde_json::to_vec_pretty(value).expect("configuration always serializes");
    let path = dir.join(file);
    // Settings may hold webhook and WeChat secrets: readable by the owner only, from the
    // moment the file exists.
    fsutil::write_atomic(&path, |f| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(Error::io("set permissions of", &path))?;
        }
        std::io::Write::write_all(f, &json).map_err(Error::io("write", &path))
    })
}

impl MerchantSettings {
    pub fn load(data_dir: &Path, merchant_id: &str) -> Result<Self> {
        Ok(
            read_config(data_dir, merchant_id, SETTINGS_FILE, "merchant settings")?
                .unwrap_or_default(),
        )
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
        write_config(data_dir, merchant_id, SETTINGS_FILE, &settings)?;
        Ok(settings)
    }
}
