//! Campaign definitions on disk: one JSON file per merchant (`campaigns.json` beside its
//! settings and audiences), replaced atomically under the merchant's configuration lock, so
//! concurrent creates from the CLI and the API all land.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::analytics::audience::check_name;
use crate::error::{Error, Result};
use crate::settings::{lock_merchant_config, read_config, write_config};

const CAMPAIGNS_FILE: &str = "campaigns.json";
/// Items per message, at most.
pub const MAX_K: u32 = 20;
/// The holdout share, at most (a campaign that holds out more than it sends proves little).
pub const MAX_HOLDOUT: f64 = 0.5;

/// What a campaign is for; it picks the list its items come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Bring customers back for what they buy: the main (repeat-aware) list.
    Repurchase,
    /// Win back customers drifting away: the main list.
    Winback,
    /// Sell what they never bought: the explore list (`exclude_purchased`).
    CrossSell,
    /// Show new items: the explore list, new items only.
    NewItems,
}

impl Goal {
    pub const ALL: [Self; 4] = [
        Self::Repurchase,
        Self::Winback,
        Self::CrossSell,
        Self::NewItems,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repurchase => "repurchase",
            Self::Winback => "winback",
            Self::CrossSell => "cross_sell",
            Self::NewItems => "new_items",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == text)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown goal {text:?}: use repurchase, winback, cross_sell or new_items"
                ))
            })
    }

    /// Whether the items come from the explore list (never-bought items).
    pub fn explores(self) -> bool {
        matches!(self, Self::CrossSell | Self::NewItems)
    }
}

/// How messages reach customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushChannel {
    /// WeChat's one-time subscription message: one consent (`subscribe` event), one message.
    SubscribeMessage,
    /// A POST to the merchant's own webhook, which delivers as it likes; needs no consent.
    Webhook,
}

impl PushChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscribeMessage => "subscribe_message",
            Self::Webhook => "webhook",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "subscribe_message" => Ok(Self::SubscribeMessage),
            "webhook" => Ok(Self::Webhook),
            _ => Err(Error::InvalidArgument(format!(
                "unknown channel {text:?}: use subscribe_message or webhook"
            ))),
        }
    }
}

/// What makes a triggered campaign fire for one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// `days` after each kept order (of `category`, when given).
    AfterPurchase {
        days: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<String>,
    },
    /// When the repeat-timing model says one of the customer's items is due.
    Due {},
    /// When the customer's probability of still being a customer drops below this.
    PAliveBelow(f64),
    /// On the customer's birthday (from `identify` events).
    Birthday {},
}

impl Trigger {
    /// Parses `--trigger` JSON, saying where a mistake is.
    pub fn from_json(text: &str) -> Result<Self> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let trigger: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            Error::InvalidArgument(format!(
                "bad trigger at {}: {}; use one of {{\"after_purchase\":{{\"days\":3}}}}, \
                 {{\"due\":{{}}}}, {{\"p_alive_below\":0.3}}, {{\"birthday\":{{}}}}",
                e.path(),
                e.inner()
            ))
        })?;
        match &trigger {
            Trigger::PAliveBelow(p) if !(*p > 0.0 && *p < 1.0) => Err(Error::InvalidArgument(
                format!("bad trigger: p_alive_below must be between 0 and 1, got {p}"),
            )),
            Trigger::AfterPurchase { days: 0, .. } => Err(Error::InvalidArgument(
                "bad trigger: after_purchase.days must be at least 1".to_owned(),
            )),
            _ => Ok(trigger),
        }
    }
}

/// Which of the customers who could be sent a campaign picks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Only the `share` with the highest estimated uplift, learned from a past campaign of
    /// the same goal with a holdout; the rest are skipped as `low_uplift`.
    Uplift { share: f64 },
}

impl Target {
    /// `--target uplift --uplift-share S`.
    pub fn from_flags(target: Option<&str>, share: Option<f64>) -> Result<Option<Self>> {
        match (target, share) {
            (None, None) => Ok(None),
            (Some("uplift"), share) => {
                let target = Self::Uplift {
                    share: share.unwrap_or(0.5),
                };
                target.validate()?;
                Ok(Some(target))
            }
            (None, Some(_)) => Err(Error::InvalidArgument(
                "--uplift-share goes with --target uplift".to_owned(),
            )),
            (Some(other), _) => Err(Error::InvalidArgument(format!(
                "unknown target {other:?}: the only one is uplift (--target uplift --uplift-share 0.5)"
            ))),
        }
    }

    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Uplift { share } if share > 0.0 && share <= 1.0 => Ok(()),
            Self::Uplift { share } => Err(Error::InvalidArgument(format!(
                "the uplift share must be above 0 and at most 1 (e.g. 0.5 for the top half), got {share}"
            ))),
        }
    }
}

/// A merchant's campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub name: String,
    /// An audience of the merchant, or all its customers when absent.
    #[serde(default)]
    pub audience: Option<String>,
    pub goal: Goal,
    /// Items per message.
    pub k: u32,
    pub channel: PushChannel,
    /// The subscription message template (required for `subscribe_message`).
    #[serde(default)]
    pub template_id: Option<String>,
    /// Share of the customers who would be sent that are held out to measure the lift.
    pub holdout: f64,
    /// Fires per customer on this; a one-off send when absent.
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// Sends to part of the customers only (by estimated uplift); all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    pub created_at_ms: i64,
}

impl Campaign {
    /// Checks what a create must refuse, with the fix in the message.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name).map_err(|_| {
            Error::InvalidArgument(format!(
                "bad campaign name {:?}: use 1 to 64 characters of a-z, 0-9, _ and -",
                self.name
            ))
        })?;
        if !(1..=MAX_K).contains(&self.k) {
            return Err(Error::InvalidArgument(format!(
                "k must be from 1 to {MAX_K} items per message, got {}",
                self.k
            )));
        }
        if !(0.0..=MAX_HOLDOUT).contains(&self.holdout) {
            return Err(Error::InvalidArgument(format!(
                "holdout must be a share from 0 to {MAX_HOLDOUT} (e.g. 0.1), got {}",
                self.holdout
            )));
        }
        if let Some(target) = &self.target {
            target.validate()?;
        }
        match (self.channel, self.template_id.as_deref()) {
            (PushChannel::SubscribeMessage, None | Some("")) => Err(Error::InvalidArgument(
                "a subscribe_message campaign needs a template_id (--template-id): the \
                 subscription message template customers consented to"
                    .to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CampaignFile {
    campaigns: Vec<Campaign>,
}

/// The merchant's campaigns, oldest first.
pub fn load_campaigns(data_dir: &Path, merchant_id: &str) -> Result<Vec<Campaign>> {
    let file: Option<CampaignFile> = read_config(
        data_dir,
        merchant_id,
        CAMPAIGNS_FILE,
        "campaign definitions",
    )?;
    Ok(file.map(|f| f.campaigns).unwrap_or_default())
}

/// The merchant's campaign of that name.
pub fn find_campaign(data_dir: &Path, merchant_id: &str, name: &str) -> Result<Campaign> {
    load_campaigns(data_dir, merchant_id)?
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "merchant {merchant_id} has no campaign named {name:?}; `recur campaign list` shows its campaigns"
            ))
        })
}

/// Adds a campaign; a name already taken is refused (a campaign's plans and deliveries are
/// keyed by its name, so it is never redefined under them).
pub fn create_campaign(data_dir: &Path, merchant_id: &str, campaign: Campaign) -> Result<()> {
    campaign.validate()?;
    let _lock = lock_merchant_config(data_dir, merchant_id)?;
    let mut campaigns = load_campaigns(data_dir, merchant_id)?;
    if campaigns.iter().any(|c| c.name == campaign.name) {
        return Err(Error::Conflict(format!(
            "merchant {merchant_id} already has a campaign named {:?}; pick another name",
            campaign.name
        )));
    }
    campaigns.push(campaign);
    write_config(
        data_dir,
        merchant_id,
        CAMPAIGNS_FILE,
        &CampaignFile { campaigns },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(name: &str) -> Campaign {
        Campaign {
            name: name.to_owned(),
            audience: None,
            goal: Goal::Repurchase,
            k: 3,
            channel: PushChannel::SubscribeMessage,
            template_id: Some("tmpl".to_owned()),
            holdout: 0.1,
            trigger: None,
            target: None,
            created_at_ms: 0,
        }
    }

    #[test]
    fn campaigns_are_stored_once_each_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        create_campaign(dir.path(), "m1", campaign("spring")).expect("create");
        let again = create_campaign(dir.path(), "m1", campaign("spring")).expect_err("taken");
        assert!(matches!(again, Error::Conflict(_)), "{again}");
        create_campaign(dir.path(), "m2", campaign("spring")).expect("another merchant");
        assert_eq!(load_campaigns(dir.path(), "m1").expect("load").len(), 1);

        let no_template = Campaign {
            template_id: None,
            ..campaign("x")
        };
        assert!(no_template.validate().is_err());
        let webhook = Campaign {
            channel: PushChannel::Webhook,
            ..no_template
        };
        webhook.validate().expect("a webhook needs no template");
        assert!(
            Campaign {
                k: 0,
                ..campaign("x")
            }
            .validate()
            .is_err()
        );
        assert!(
            Campaign {
                holdout: 0.9,
                ..campaign("x")
            }
            .validate()
            .is_err()
        );
        assert!(find_campaign(dir.path(), "m1", "autumn").is_err());
    }

    #[test]
    fn triggers_parse_and_say_where_they_are_wrong() {
        assert_eq!(
            Trigger::from_json(r#"{"after_purchase":{"days":3,"category":"bread"}}"#)
                .expect("parse"),
            Trigger::AfterPurchase {
                days: 3,
                category: Some("bread".to_owned())
            }
        );
        assert_eq!(
            Trigger::from_json(r#"{"p_alive_below":0.3}"#).expect("parse"),
            Trigger::PAliveBelow(0.3)
        );
        assert_eq!(
            Trigger::from_json(r#"{"due":{}}"#).expect("parse"),
            Trigger::Due {}
        );
        let err = Trigger::from_json(r#"{"after_purchase":{"dayz":3}}"#).expect_err("typo");
        assert!(err.to_string().contains("after_purchase"), "{err}");
        assert!(Trigger::from_json(r#"{"p_alive_below":1.5}"#).is_err());
    }
}
