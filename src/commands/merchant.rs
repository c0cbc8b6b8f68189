//! `recur merchant`: per-merchant settings.

use crate::output::outln;
use recur_engine::analytics::period::TimeZoneName;
use recur_engine::settings::MerchantSettings;

use crate::cli::MerchantCommand;

pub(crate) fn merchant(command: MerchantCommand) -> anyhow::Result<()> {
    match command {
        MerchantCommand::Set {
            data,
            merchant,
            time_zone,
        } => {
            let zone = TimeZoneName::new(&time_zone)?;
            MerchantSettings::update(&data.data_dir, &merchant, |settings| {
                settings.time_zone = zone;
            })?;
            eprintln!("merchant {merchant}: time zone {time_zone}; the next `recur run` uses it");
            Ok(())
        }
        MerchantCommand::Show { data, merchant } => {
            let settings = MerchantSettings::load(&data.data_dir, &merchant)?;
            outln!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(())
        }
    }
}
