use std::process::ExitCode;

use anyhow::Result;

use crate::args::{Cli, Command};
use crate::settings::Settings;

mod ask;
mod eval;
mod ingest;
mod search;
mod serve;
mod status;
mod sweep;
mod tune;
mod watch;

pub fn run(cli: Cli) -> Result<ExitCode> {
    let settings = Settings::from_cli(&cli)?;
    match cli.command {
        Command::Ingest(args) => ingest::run(&settings, &args, false),
        Command::Sync(args) => ingest::run(&settings, &args, true),
        Command::Watch {
            paths,
            rows,
            debounce_ms,
        } => watch::run(&settings, &paths, &rows, std::time::Duration::from_millis(debounce_ms)),
        Command::Extract { paths, rows } => ingest::extract(&paths, &rows),
        Command::Search(args) => search::run(&settings, &args),
        Command::Ask(args) => ask::run(&settings, &args),
        Command::Status { json } => status::run(&settings, json),
        Command::Rebuild => status::rebuild(&settings),
        Command::Eval(cmd) => eval::run(&settings, cmd),
        Command::Serve(args) => serve::run(&settings, &args),
        Command::Keys(cmd) => serve::keys(&settings, cmd),
        Command::Tune(cmd) => tune::run(&settings, cmd),
    }
}
