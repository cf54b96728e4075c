//! Unix sockets whose peer is outside the dumped tree (`unix` plugin, CRIU's `--ext-unix-sk`
//! and `--external unix[INO]`): a C workload holds a datagram socket connected to a socket
//! of this test process and a stream connection to a listener of this test process. The
//! dump is refused without the options (stream half: even with `--ext-unix-sk`, as CRIU),
//! done with them; the restore is refused without `--ext-unix-sk`, then done with it: the
//! datagram socket reaches the test's socket again, the stream one comes back with its
//! queue and its peer closed. The workload checks itself.

use std::os::unix::net::{UnixDatagram, UnixListener};
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;
use unix_common::{build_c, crit_decodes, restore_refused};

/// The whole error chain, as the CLI prints it.
fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        msg += &format!(": {e}");
        src = e.source();
    }
    msg
}

#[test]
fn unix_peers_outside_the_tree_with_ext_unix_sk() {
    if skip_unless_root("unix_peers_outside_the_tree_with_ext_unix_sk") {
        return;
    }
    let dir = ScratchDir::new("unix-ext");
    let Some(exe) = build_c("unix_external", dir.path()) else {
        return;
    };
    let (report, go) = (dir.path().join("report"), dir.path().join("go"));
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let (dpath, spath) = (dir.path().join("ext-dgram"), dir.path().join("ext-stream"));
    let outside = UnixDatagram::bind(&dpath).expect("bind the outside datagram socket");
    outside
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let listener = UnixListener::bind(&spath).expect("bind the outside listener");
    let args = [
        exe.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
        dpath.to_str().expect("utf-8"),
        spath.to_str().expect("utf-8"),
    ];
    let root = spawn_bg("setsid", &args);
    let guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    let ino = ready[0]
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("workload setup: {ready:?}"))
        .to_string();
    let (mut accepted, _) = listener.accept().expect("accept the workload");
    std::io::Write::write_all(&mut accepted, b"q").expect("queue for the workload");
    let mut buf = [0u8; 16];
    let n = outside.recv(&mut buf).expect("datagram before the dump");
    assert_eq!(&buf[..n], b"before");

    // Without options, then with --ext-unix-sk only (a stream half): refused.
    let mut opts = DumpOptions::new(root, &images);
    let err = chain(&dump(&opts).expect_err("no option: refused"));
    assert!(err.contains("outside the dumped tree"), "{err}");
    opts.ext_unix_sk = true;
    let err = chain(&dump(&opts).expect_err("stream half: refused"));
    assert!(
        err.contains("stream connection") && err.contains(&ino),
        "{err}"
    );
    // With the stream socket named: dumped.
    opts.external = vec![format!("unix[{ino}]")];
    opts.leave_stopped = true;
    dump(&opts).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
    // CRIU's external entry (`USK_EXTERN`) and the detached peer: Debian's crit decodes them.
    if let Some(files) = crit_decodes(&images.join("files.img")) {
        assert!(files.contains("UNIXSK"), "{files}");
    }

    restore_refused(&images, root, &["outside the tree", "--ext-unix-sk"]);
    std::fs::write(&report, "").expect("truncate report");
    let ropts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ext_unix_sk: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&ropts);
    let _guard = TreeGuard::new([root]);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(outcome, RestoreOutcome::Detached { root });
    std::fs::write(&go, "").expect("go");
    let n = outside.recv(&mut buf).expect("datagram after the restore");
    assert_eq!(&buf[..n], b"after");
    wait_lines(&report, 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let all = lines(&report);
    assert_eq!(
        all.last().map(String::as_str),
        Some("ok"),
        "workload verdict: {all:#?}"
    );
}
