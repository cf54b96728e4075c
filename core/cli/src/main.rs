//! `criu`: a CRIU-compatible command line over `criu-core`.
//!
//! This binary only parses arguments, sets up logging and calls the library; every failure
//! is printed with its error chain on stderr and exits with status 1, as CRIU does.

mod args;
mod commands;
mod config;
mod crit;
mod logging;
mod plugins;

use std::process::ExitCode;

// The built-in plugins register themselves with `inventory`; naming the crates links them in.
// Without the `builtin-plugins` feature (distribution builds) every plugin comes from the
// plugin dir.
#[cfg(feature = "builtin-plugins")]
use criu_plugin_epoll as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_eventfd as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_files as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_memfd as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_pipes as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_tty as _;

use anyhow::Result;
use clap::Parser;

use args::Cli;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            if logging::to_file() {
                tracing::error!("{err:#}");
            }
            eprintln!("Error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// `criu crit ...` takes crit's own command line.
#[derive(Debug, Parser)]
#[command(name = "criu crit", about = "Inspect and convert CRIU images (crit)")]
struct CritCli {
    #[command(subcommand)]
    command: crit::CritCommand,
}

fn run() -> Result<ExitCode> {
    let user_argv: Vec<String> = std::env::args().collect();
    if user_argv.get(1).map(String::as_str) == Some("crit") {
        let cli = CritCli::parse_from(user_argv.iter().skip(1));
        crit::run(cli.command)?;
        return Ok(ExitCode::SUCCESS);
    }
    let argv = config::merged_argv(user_argv)?;
    let (argv, verbosity) = args::extract_verbosity(argv).map_err(anyhow::Error::msg)?;
    let mut cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() => {
            // clap exits with 2 on usage errors; CRIU says 1.
            let _ = err.print();
            return Ok(ExitCode::from(1));
        }
        Err(err) => {
            let _ = err.print();
            return Ok(ExitCode::SUCCESS);
        }
    };
    cli.opts.verbosity = verbosity;
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
    if command != "crit" {
        let log_file = commands::log_path(&cli.opts);
        logging::init(cli.opts.verbosity, log_file.as_deref())?;
    }
    commands::dispatch(&command, &cli.command_args, &cli.opts)
}
