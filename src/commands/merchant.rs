//! `recur merchant`: per-merchant settings.

use crate::output::outln;
use recur_engine::analytics::period::TimeZoneName;
use recur_engine::settings::{
    ListRules, LocalTime, MerchantSettings, WebhookSettings, WechatSettings,
};

use crate::cli::{MerchantCommand, PushSettingArgs};

/// `--quiet-hours FROM-UNTIL`.
fn quiet_hours(text: &str) -> anyhow::Result<(LocalTime, LocalTime)> {
    let (from, until) = text.split_once('-').ok_or_else(|| {
        anyhow::anyhow!("--quiet-hours must be FROM-UNTIL, e.g. 22:00-08:00; got {text:?}")
    })?;
    Ok((LocalTime::parse(from)?, LocalTime::parse(until)?))
}

impl PushSettingArgs {
    fn is_empty(&self) -> bool {
        self.cap_per_day.is_none()
            && self.cap_per_week.is_none()
            && self.quiet_hours.is_none()
            && self.webhook_url.is_none()
            && self.wechat_appid.is_none()
    }
}

pub(crate) fn merchant(command: MerchantCommand) -> anyhow::Result<()> {
    match command {
        MerchantCommand::Set {
            data,
            merchant,
            time_zone,
            list_rules,
            push,
        } => {
            if time_zone.is_none() && list_rules.is_none() && push.is_empty() {
                anyhow::bail!(
                    "nothing to set: give --time-zone, --list-rules or a push setting (see `recur merchant set --help`)"
                );
            }
            let zone = time_zone.as_deref().map(TimeZoneName::new).transpose()?;
            let rules = list_rules
                .as_deref()
                .map(ListRules::from_json)
                .transpose()?;
            let quiet = push.quiet_hours.as_deref().map(quiet_hours).transpose()?;
            if push.cap_per_day == Some(0) || push.cap_per_week == Some(0) {
                anyhow::bail!(
                    "caps must be at least 1 push (a campaign with no room sends nothing)"
                );
            }
            MerchantSettings::update(&data.data_dir, &merchant, |settings| {
                if let Some(zone) = zone {
                    settings.time_zone = zone;
                }
                if let Some(rules) = rules {
                    settings.list_rules = rules;
                }
                let p = &mut settings.push;
                if let Some(cap) = push.cap_per_day {
                    p.cap_per_day = cap;
                }
                if let Some(cap) = push.cap_per_week {
                    p.cap_per_week = cap;
                }
                if let Some((from, until)) = quiet {
                    p.quiet_from = from;
                    p.quiet_until = until;
                }
                if let (Some(url), Some(secret)) = (&push.webhook_url, &push.webhook_secret) {
                    p.webhook = Some(WebhookSettings {
                        url: url.clone(),
                        secret: secret.clone(),
                    });
                }
                if let (Some(appid), Some(secret)) = (&push.wechat_appid, &push.wechat_secret) {
                    p.wechat = Some(WechatSettings {
                        appid: appid.clone(),
                        secret: secret.clone(),
                        api_base: push.wechat_api_base.clone(),
                    });
                }
            })?;
            if let Some(time_zone) = time_zone {
                eprintln!(
                    "merchant {merchant}: time zone {time_zone}; the next `recur run` uses it"
                );
            }
            if list_rules.is_some() {
                eprintln!(
                    "merchant {merchant}: list rules replaced; served and exported lists follow them now"
                );
            }
            if !push.is_empty() {
                eprintln!(
                    "merchant {merchant}: push settings saved (secrets are stored, never shown); `recur merchant show` prints them"
                );
            }
            Ok(())
        }
        MerchantCommand::Show { data, merchant } => {
            let settings = MerchantSettings::load(&data.data_dir, &merchant)?;
            outln!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
    }
}
