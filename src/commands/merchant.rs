//! `recur merchant`: per-merchant settings.

use crate::output::outln;
use recur_engine::analytics::period::TimeZoneName;
use recur_engine::settings::{ListRules, MerchantSettings};

use crate::cli::MerchantCommand;

pub(crate) fn merchant(command: MerchantCommand) -> anyhow::Result<()> {
    match command {
        MerchantCommand::Set {
            data,
            merchant,
            time_zone,
            list_rules,
        } => {
            if time_zone.is_none() && list_rules.is_none() {
                anyhow::bail!(
                    "nothing to set: give --time-zone and/or --list-rules (see `recur merchant set --help`)"
                );
            }
            let zone = time_zone.as_deref().map(TimeZoneName::new).transpose()?;
            let rules = list_rules
                .as_deref()
                .map(ListRules::from_json)
                .transpose()?;
            MerchantSettings::update(&data.data_dir, &merchant, |settings| {
                if let Some(zone) = zone {
                    settings.time_zone = zone;
                }
                if let Some(rules) = rules {
                    settings.list_rules = rules;
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
            Ok(())
        }
        MerchantCommand::Show { data, merchant } => {
            let settings = MerchantSettings::load(&data.data_dir, &merchant)?;
            outln!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
    }
}
