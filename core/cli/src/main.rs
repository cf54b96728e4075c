//! `criu`: a CRIU-compatible command line over `criu-core` (the work is in the library).

use std::process::ExitCode;

// The built-in plugins register themselves with `inventory`; naming the crates links them in.
// Without the `builtin-plugins` feature (distribution builds) every plugin comes from the
// plugin dir.
#[cfg(feature = "builtin-plugins")]
use criu_plugin_epoll as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_eventfd as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_filelocks as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_files as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_fsnotify as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_inet as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_io_uring as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_memfd as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_mqueue as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_netlink as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_netlock as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_packet as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_pidfd as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_pipes as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_secretmem as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_signalfd as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_timerfd as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_tty as _;
#[cfg(feature = "builtin-plugins")]
use criu_plugin_unix as _;

fn main() -> ExitCode {
    criu_cli::main()
}
