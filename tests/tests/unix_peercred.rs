//! `SO_PEERCRED` and `SO_PEERPIDFD` of unix sockets answer after a restore as before
//! (`unix` plugin, `rejoin`): a C workload (compiled with gcc at test time) holds a
//! socketpair made by the root and shared with a child of another uid, a socketpair made
//! by that child (uid 1001, gid 2001) and shared with its own child, and a connection
//! from the child to the root's listener accepted before the dump plus one still waiting
//! in the listener's queue. Every task checks the pid, uid and gid the kernel names as
//! each socket's peer (and the pid of the `SO_PEERPIDFD` pidfd) before the dump and after
//! the restore; the root accepts the waiting connection after the restore and checks it. Debian's crit
//! 3.17 decodes the images with our fields.

use std::time::Duration;

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{
    descendants, dump_stopped_and_kill, lines, restore_detached, spawn_bg, wait_lines,
};

mod crit317;
mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;
use criu_proto::ImageKind;
use unix_common::build_c;

#[test]
fn unix_peer_credentials_survive_restore() {
    if skip_unless_root("unix_peer_credentials_survive_restore") {
        return;
    }
    let dir = ScratchDir::new("unix-peercred");
    let Some(exe) = build_c("unix_peercred", dir.path()) else {
        return;
    };
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let args = [
        exe.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
    ];
    let root = spawn_bg("setsid", &args);
    let mut guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");
    let pids = descendants(root);
    assert_eq!(pids.len(), 3, "root, child and grandchild: {pids:?}");
    guard.extend(pids.iter().copied());

    dump_stopped_and_kill(root, &images, guard);
    // Debian's crit 3.17 decodes files.img as we do, our peer fields left out.
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let usk: Vec<_> = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["type"] == "UNIXSK")
            .collect();
        assert_eq!(usk.len(), 8, "{ours}");
        let uid_1001 = usk
            .iter()
            .filter(|e| e["usk"]["criu_rs_peer_uid"] == 1001)
            .count();
        assert_eq!(
            uid_1001, 3,
            "both ends of A's pair, P's accepted end: {ours}"
        );
        assert!(
            usk.iter().any(|e| e["usk"]["criu_rs_conn_uid"] == 1001),
            "the pending connection's connector: {ours}"
        );
    });

    let _g = restore_detached(&images, root, pids.iter().copied());
    std::fs::write(&go, "").expect("go");
    let _ = wait_lines(&report, 5, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(100));
    let all = lines(&report);
    let fails: Vec<_> = all.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.is_empty(), "workload verdict: {all:#?}");
    for want in ["ok A", "ok B", "ok P", "end"] {
        assert!(all.iter().any(|l| l == want), "no {want:?}: {all:#?}");
    }
}
