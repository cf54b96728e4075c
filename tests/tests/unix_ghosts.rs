//! Ghost unix sockets sharing their path (`unix` plugin): a C workload (built with gcc at
//! test time) holds a listener whose file was replaced by a live listener's, a datagram
//! socket whose path now holds a FIFO it has open, and one whose directory was removed
//! (CRIU's zdtm del_standalone_un, fifo_upon_unix_socket00, sk-unix01 shapes). Dumped,
//! killed, restored; the workload checks each connection, name and file itself.

use std::time::Duration;

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg, wait_lines};

mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;
use unix_common::{build_c, crit_decodes};

#[test]
fn unix_ghosts_sharing_a_path_round_trip() {
    if skip_unless_root("unix_ghosts_sharing_a_path_round_trip") {
        return;
    }
    let dir = ScratchDir::new("unix-ghosts");
    let Some(exe) = build_c("unix_ghosts", dir.path()) else {
        return;
    };
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    let work = dir.path().join("w");
    std::fs::create_dir(&images).expect("mkdir");
    std::fs::create_dir(&work).expect("mkdir");
    let args = [
        exe.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
        work.to_str().expect("utf-8"),
    ];
    let root = spawn_bg("setsid", &args);
    let guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");

    dump_stopped_and_kill(root, &images, guard);
    // Ghost entries (`deleted`, relative names with `name_dir`): Debian's crit decodes them.
    if let Some(files) = crit_decodes(&images.join("files.img")) {
        assert!(files.contains("\"deleted\": true"), "{files}");
    }
    // The restore must leave the paths as the dump found them.
    assert!(!work.join("sub").exists(), "removed directory came back");

    let _g = restore_detached(&images, root, [root]);
    assert!(
        !work.join("sub").exists(),
        "directory made for the bind stays"
    );
    std::fs::write(&go, "").expect("go");
    wait_lines(&report, 2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let all = lines(&report);
    assert_eq!(
        all.last().map(String::as_str),
        Some("ok"),
        "workload verdict: {all:#?}"
    );
}
