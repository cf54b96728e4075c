//! A plugin that panics inside a hook: the panic is caught at the plugin boundary, the dump
//! fails with an error naming the plugin and the panic, and the task keeps running.

use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::plugins;
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod plugin_abi_support;
mod restore_common;

use plugin_abi_support::{build_example, chain};
use restore_common::{lines, spawn_bg, wait_lines};

fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn panicking_plugin_fails_the_dump_and_leaves_the_task_running() {
    if skip_unless_root("panicking_plugin_fails_the_dump_and_leaves_the_task_running") {
        return;
    }
    let Some((plugin_dir, holder)) = build_example("abi-panic", &["panic-in-dump"]) else {
        return;
    };
    let (new, refused) = plugins::load_dirs(&[plugin_dir.path().to_path_buf()], true);
    assert!(refused.is_empty() && new.len() == 1, "{refused:?}");

    let work = ScratchDir::new("abi-panic-work");
    let report = work.path().join("report");
    let pid = spawn_bg(holder.to_str().unwrap(), &[report.to_str().unwrap()]);
    let _guard = PidGuard::new(pid);
    wait_lines(&report, 2, Duration::from_secs(10));

    let imgs = ScratchDir::new("abi-panic-imgs");
    let err = dump(&DumpOptions::new(pid, imgs.path())).expect_err("dump with a panicking plugin");
    let msg = chain(&err);
    assert!(
        msg.contains("plugin example-eventfd panicked")
            && msg.contains("eventfd plugin test panic"),
        "{msg}"
    );

    // The task was thawed and goes on.
    let n = lines(&report).len();
    wait_lines(&report, n + 2, Duration::from_secs(10));
    assert!(
        matches!(state(pid), Some('S' | 'R')),
        "state {:?}",
        state(pid)
    );

    // The plugin is not called again in this run; the next dump fails without calling it.
    let err = dump(&DumpOptions::new(pid, imgs.path())).expect_err("second dump");
    assert!(chain(&err).contains("eventfd"), "{}", chain(&err));
}
