//! One module per subcommand; each turns parsed arguments into calls on the library crates.

mod audience;
mod campaign;
mod clv;
mod compact;
mod demo;
mod demo_campaign;
mod eval;
mod export;
mod generate;
mod ingest;
mod keys;
mod merchant;
mod produce;
mod report;
mod run;
mod serve;
mod stats;

pub(crate) use campaign::{CampaignCommand, CampaignReportArgs};
pub(crate) use keys::KeysCommand;

use crate::cli::{Cli, ClvCommand, Command, ExportCommand};

pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ingest(args) => ingest::ingest(&args),
        Command::Produce(args) => produce::produce(&args),
        Command::Stats(args) => stats::stats(&args),
        Command::Compact(args) => compact::compact(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Run(args) => run::run(&args),
        Command::Export(ExportCommand::Recommendations(args)) => export::recommendations(&args),
        Command::Export(ExportCommand::Similar(args)) => export::similar(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Generate(args) => generate::generate(&args),
        Command::Clv(ClvCommand::Fit(args)) => clv::fit(&args),
        Command::Clv(ClvCommand::Predict(args)) => clv::predict(&args),
        Command::Clv(ClvCommand::Check(args)) => clv::check(&args),
        Command::Report(command) => report::report(command),
        Command::Audience(command) => audience::audience(command),
        Command::Merchant(command) => merchant::merchant(command),
        Command::Campaign(command) => campaign::campaign(command),
        Command::Keys(command) => keys::keys(command),
        Command::Demo(args) => demo::demo(&args),
    }
}
