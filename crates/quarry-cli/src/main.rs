//! The `quarry` binary: parses arguments, then calls the library crates.

// The binary is where output belongs.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed memory for reuse: training frees and reallocates tensors of tens of megabytes per
/// operation, and with the system allocator each one was a fresh mapping the kernel had to zero (40% of a
/// training step's time).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod commands;
mod generation;
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
