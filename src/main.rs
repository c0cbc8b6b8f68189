//! `recur`: the command line of Recur — ingest events, run the jobs, export and serve
//! recommendations, generate demo data.

mod allocator;
mod cli;
mod commands;
mod config;
mod output;

use std::process::ExitCode;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let config = match config::Config::locate(&args)
        .map(|path| config::Config::load(&path))
        .transpose()
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut command = cli::Cli::command();
    if let Some(config) = &config {
        command = config.apply(command);
    }
    let matches = command.get_matches_from(args);
    let mut cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    config::resolve(&mut cli, &matches);
    init_logging(&cli);
    // Until it serves (`commands::serve`), a command keeps what it frees.
    allocator::keep_freed_memory();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `recur export ... | head` closing the pipe early is not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(cli: &cli::Cli) {
    use tracing_subscriber::EnvFilter;
    // Quiet by default on the terminal; the server logs its requests and reloads.
    let default = if cli.is_server() { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("RECUR_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        cli::LogFormat::Json => builder.json().with_current_span(false).init(),
        cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
