//! `crit`: CRIU's image tool (decode, encode, show, info, x), as a binary of its own.

use std::process::ExitCode;

use clap::Parser;
use criu_cli::crit;

/// Inspect and convert CRIU images.
#[derive(Debug, Parser)]
#[command(name = "crit", version, about = "Inspect and convert CRIU images")]
struct Cli {
    #[command(subcommand)]
    command: crit::CritCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match crit::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(1)
        }
    }
}
