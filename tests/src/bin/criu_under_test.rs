//! The `criu` binary of this tree, built inside the test package so that the `cli_*` tests
//! run the current command line as a separate process (`CARGO_BIN_EXE_criu_under_test`),
//! with the built-in plugins linked as in `target/release/criu`.

use std::process::ExitCode;

use criu_plugin_epoll as _;
use criu_plugin_eventfd as _;
use criu_plugin_filelocks as _;
use criu_plugin_files as _;
use criu_plugin_fsnotify as _;
use criu_plugin_inet as _;
use criu_plugin_io_uring as _;
use criu_plugin_memfd as _;
use criu_plugin_mqueue as _;
use criu_plugin_netlink as _;
use criu_plugin_netlock as _;
use criu_plugin_pidfd as _;
use criu_plugin_pipes as _;
use criu_plugin_secretmem as _;
use criu_plugin_signalfd as _;
use criu_plugin_timerfd as _;
use criu_plugin_tty as _;
use criu_plugin_unix as _;

fn main() -> ExitCode {
    criu_cli::main()
}
