//! The `criu` command line over `criu-core`: CRIU's commands and options, config files,
//! logging. The `criu` binary (and the tests' copy of it) only calls [`main`].
//!
//! Every failure is printed with its error chain on stderr and exits with status 1, as
//! CRIU does.

mod args;
mod commands;
mod config;
pub mod crit;
mod getopt;
mod help;
mod logging;
mod optable;
mod plugins;
pub mod rpc;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

/// Runs `criu` with this process's arguments.
pub fn main() -> ExitCode {
    let code = match run(std::env::args().collect()) {
        Ok(code) => code,
        Err(err) => {
            if logging::to_file() {
                tracing::error!("{err:#}");
            }
            eprintln!("Error: {err:#}");
            ExitCode::from(1)
        }
    };
    // The log file is buffered: what is still in memory goes out before the process ends.
    logging::flush();
    code
}

/// `criu crit ...` takes crit's own command line.
#[derive(Debug, Parser)]
#[command(name = "criu crit", about = "Inspect and convert CRIU images (crit)")]
struct CritCli {
    #[command(subcommand)]
    command: crit::CritCommand,
}

fn run(user_argv: Vec<String>) -> Result<ExitCode> {
    if user_argv.get(1).map(String::as_str) == Some("crit") {
        let cli = CritCli::parse_from(user_argv.iter().skip(1));
        crit::run(cli.command)?;
        return Ok(ExitCode::SUCCESS);
    }
    let argv = config::merged_argv(user_argv)?;
    let cli = match args::parse(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("Error: {err:#}");
            eprintln!("Try 'criu --help'.");
            return Ok(ExitCode::from(1));
        }
    };
    if cli.help {
        print!("{}", help::text());
        return Ok(ExitCode::SUCCESS);
    }
    if cli.version {
        println!("Version: {}", commands::VERSION_STRING);
        return Ok(ExitCode::SUCCESS);
    }
    for fd in &cli.opts.close {
        commands::close_fd(*fd)?;
    }
    let Some(command) = cli.command.clone() else {
        anyhow::bail!("no command given; try 'criu --help'");
    };
    // `criu swrk` logs where each request says (rpc::ops); the service's workers log
    // where the service does.
    if command != "swrk" {
        let log_file = commands::log_path(&cli.opts);
        logging::init(cli.opts.verbosity, log_file.as_deref())?;
        rpc::logging_set_up();
    }
    commands::dispatch(&command, &cli.command_args, &cli.opts)
}
