//! `criu`: a CRIU-compatible command line over `criu-core` (the work is in the library).

use std::process::ExitCode;

// The built-in plugins register themselves with `inventory`; naming the crates links them in.
use criu_plugin_epoll as _;
use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_memfd as _;
use criu_plugin_pipes as _;
use criu_plugin_tty as _;

fn main() -> ExitCode {
    criu_cli::main()
}
