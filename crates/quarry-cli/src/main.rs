//! The `quarry` binary: parses arguments, then calls the library crates.

// The binary is where output belongs.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::Parser;

mod args;
mod commands;
mod progress;
mod settings;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
