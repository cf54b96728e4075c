//! `criu swrk` driven by our RPC client (tests/src/rpc_client.rs) the way runc drives it:
//! VERSION, FEATURE_CHECK and CHECK; a real workload dumped through images_dir_fd with every
//! notification seen in CRIU's order and acked, then restored from those images (the
//! workload checks its own memory and FPU state); a refused ack, a field we do not support,
//! garbage bytes and an unknown request type, each answered with an error.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use criu_proto::rpc::{CriuFeatures, CriuOpts, CriuReq, CriuReqType, CriuResp};
use criu_tests::rpc_client::SwrkClient;
use criu_tests::{PidGuard, ScratchDir, pid_exists, skip_unless_root, wait_pid_gone};
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;

const CRIU: &str = env!("CARGO_BIN_EXE_criu_under_test");
const TIMEOUT: Duration = Duration::from_secs(60);

fn start(dir: &Path, name: &str) -> SwrkClient {
    SwrkClient::start(
        Path::new(CRIU),
        &dir.join(format!("{name}.stderr")),
        TIMEOUT,
    )
}

/// The answer, or a failure quoting what criu printed (it exited without one).
fn answer(r: Option<CriuResp>, dir: &Path, name: &str) -> CriuResp {
    r.unwrap_or_else(|| {
        let err = std::fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap_or_default();
        panic!("criu swrk ({name}) closed without an answer; its stderr:\n{err}")
    })
}

fn req(t: CriuReqType, opts: Option<CriuOpts>) -> CriuReq {
    CriuReq {
        r#type: t as i32,
        opts,
        ..CriuReq::default()
    }
}

fn errmsg(r: &CriuResp) -> &str {
    r.cr_errmsg.as_deref().unwrap_or("")
}

#[test]
fn version_feature_check_and_bad_requests_on_one_connection() {
    let scratch = ScratchDir::new("rpc-version");
    let c = start(scratch.path(), "swrk");
    let keep = |t| CriuReq {
        keep_open: Some(true),
        ..req(t, None)
    };
    let (r, _) = c.call(&keep(CriuReqType::Version), |_| true);
    let r = r.expect("a VERSION answer");
    assert!(r.success);
    let v = r.version.expect("criu_version");
    assert_eq!((v.major_number, v.minor_number), (4, 2));
    assert!(v.gitid.unwrap_or_default().starts_with("criu-rs-"));
    let (r, _) = c.call(
        &CriuReq {
            features: Some(CriuFeatures {
                mem_track: Some(true),
                lazy_pages: Some(true),
                pidfd_store: None,
            }),
            ..keep(CriuReqType::FeatureCheck)
        },
        |_| true,
    );
    let r = r.expect("a FEATURE_CHECK answer");
    assert!(r.success && r.r#type == CriuReqType::FeatureCheck as i32);
    let f = r.features.expect("features");
    // Pre-dump (memory tracking) and lazy pages are not built: false, whatever the kernel.
    assert_eq!((f.mem_track, f.lazy_pages), (Some(false), Some(false)));

    // Garbage, then an unknown type: each an error answer, and the service goes on.
    c.send_raw(b"\xff\xfe\xfd\x00garbage");
    let (r, _) = c.recv().expect("an answer to garbage");
    assert!(!r.success);
    assert_eq!(r.r#type, CriuReqType::Empty as i32);
    assert!(errmsg(&r).contains("not a criu_req"), "{r:?}");
    c.send(&CriuReq {
        r#type: 77,
        ..CriuReq::default()
    });
    let (r, _) = c.recv().expect("an answer to type 77");
    assert!(
        !r.success && errmsg(&r).contains("unknown request type 77"),
        "{r:?}"
    );
    assert_eq!(r.cr_errno, Some(libc::EBADRQC));
    // A request CRIU does not serve more of refuses keep_open, by name, and ends it.
    let (r, _) = c.call(&keep(CriuReqType::Dump), |_| true);
    let r = r.expect("an answer");
    assert!(!r.success && errmsg(&r).contains("keep_open"), "{r:?}");
    assert!(!c.finish(TIMEOUT).success());

    // Pre-dump is not built: a clear error, and the worker exits.
    let c = start(scratch.path(), "swrk2");
    let (r, _) = c.call(&req(CriuReqType::PreDump, None), |_| true);
    let r = r.expect("a PRE_DUMP answer");
    assert!(!r.success && errmsg(&r).contains("pre-dump"), "{r:?}");
    assert_eq!(r.cr_errno, Some(libc::ENOTSUP));
    assert!(!c.finish(TIMEOUT).success());
}

#[test]
fn check_answers_like_criu_check() {
    if skip_unless_root("check_answers_like_criu_check") {
        return;
    }
    let scratch = ScratchDir::new("rpc-check");
    let c = start(scratch.path(), "swrk");
    let (r, _) = c.call(&req(CriuReqType::Check, None), |_| true);
    let r = r.expect("a CHECK answer");
    let cli = std::process::Command::new(CRIU)
        .arg("check")
        .output()
        .expect("criu check");
    assert_eq!(r.success, cli.status.success(), "{r:?}");
    assert_eq!(r.r#type, CriuReqType::Check as i32);
    assert!(c.finish(TIMEOUT).success() == r.success);
}

/// The workload's `tick` lines after `from`: (number, mem, fp).
fn ticks(report: &Path, from: usize) -> Vec<(u64, String, String)> {
    lines(report)[from..]
        .iter()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == "tick").then_some(())?;
            let n = it.next()?.parse().ok()?;
            let _pid = it.next()?;
            let mem = it.next()?.strip_prefix("mem=")?.to_string();
            let fp = it.next()?.strip_prefix("fp=")?.to_string();
            Some((n, mem, fp))
        })
        .collect()
}

fn dump_opts(images: &std::fs::File, pid: i32) -> CriuOpts {
    CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(pid),
        log_level: Some(4),
        log_file: Some("dump.log".into()),
        notify_scripts: Some(true),
        // What runc sends at its default values: not requests.
        shell_job: Some(false),
        lazy_pages: Some(false),
        auto_dedup: Some(false),
        empty_ns: Some(0),
        ..CriuOpts::default()
    }
}

fn scripts(seen: &[criu_proto::rpc::CriuNotify]) -> Vec<&str> {
    seen.iter()
        .map(|n| n.script.as_deref().unwrap_or("?"))
        .collect()
}

#[test]
fn dump_and_restore_through_swrk_with_every_notification() {
    if skip_unless_root("dump_and_restore_through_swrk_with_every_notification") {
        return;
    }
    let scratch = ScratchDir::new("rpc-dump-restore");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_counter"),
        &[report.to_str().unwrap(), "2"],
    );
    let guard = PidGuard::new(pid);
    wait_lines(&report, 4, Duration::from_secs(20));
    let dir = std::fs::File::open(&images).unwrap();

    let c = start(scratch.path(), "dump");
    let (r, seen) = c.call(&req(CriuReqType::Dump, Some(dump_opts(&dir, pid))), |_| {
        true
    });
    let r = answer(r, scratch.path(), "dump");
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert!(r.success, "{r:?}\n{log}");
    assert_eq!(r.dump.and_then(|d| d.restored), Some(false));
    assert_eq!(scripts(&seen), ["pre-dump", "network-lock", "post-dump"]);
    assert!(c.finish(TIMEOUT).success());
    // Not left running: the dump killed it.
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "pid {pid} still there"
    );
    drop(guard);
    assert!(
        images
            .join("core-".to_string() + &pid.to_string() + ".img")
            .exists()
    );
    let at_dump = lines(&report).len();

    let c = start(scratch.path(), "restore");
    let opts = CriuOpts {
        log_file: Some("restore.log".into()),
        pid: None,
        ..dump_opts(&dir, 0)
    };
    let (r, seen) = c.call(&req(CriuReqType::Restore, Some(opts)), |_| true);
    let _restored = PidGuard::new(pid);
    let r = answer(r, scratch.path(), "restore");
    let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
    assert!(r.success, "{r:?}\n{log}");
    assert_eq!(r.restore.map(|x| x.pid), Some(pid));
    assert_eq!(
        scripts(&seen),
        [
            "pre-restore",
            "setup-namespaces",
            "post-setup-namespaces",
            "post-restore",
            "network-unlock",
            "pre-resume",
            "post-resume"
        ]
    );
    for n in &seen {
        let with_pid = matches!(
            n.script.as_deref(),
            Some("setup-namespaces" | "post-restore")
        );
        assert_eq!(n.pid, with_pid.then_some(pid), "{n:?}");
    }
    assert!(c.finish(TIMEOUT).success());
    // The workload judges itself: memory and FPU state intact, ticks carry on.
    wait_lines(&report, at_dump + 5, Duration::from_secs(20));
    let after = ticks(&report, at_dump);
    assert!(after.len() >= 5, "{after:?}");
    assert!(
        after.iter().all(|(_, m, f)| m == "ok" && f == "ok"),
        "{after:?}"
    );
    assert!(pid_exists(pid));
}

#[test]
fn a_refused_ack_or_an_unsupported_field_fails_the_dump_and_the_tree_runs_on() {
    if skip_unless_root("a_refused_ack_or_an_unsupported_field_fails_the_dump_and_the_tree_runs_on")
    {
        return;
    }
    let scratch = ScratchDir::new("rpc-refusals");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_counter"),
        &[report.to_str().unwrap(), "1"],
    );
    let _guard = PidGuard::new(pid);
    wait_lines(&report, 3, Duration::from_secs(20));
    let dir = std::fs::File::open(&images).unwrap();

    // The client fails post-dump: the dump fails, the lock is reported lifted, the tree runs.
    let c = start(scratch.path(), "ack");
    let (r, seen) = c.call(&req(CriuReqType::Dump, Some(dump_opts(&dir, pid))), |n| {
        n.script.as_deref() != Some("post-dump")
    });
    let r = answer(r, scratch.path(), "ack");
    assert!(!r.success, "{r:?}");
    assert!(errmsg(&r).contains("post-dump"), "{r:?}");
    assert_eq!(
        scripts(&seen),
        ["pre-dump", "network-lock", "post-dump", "network-unlock"]
    );
    assert!(!c.finish(TIMEOUT).success());
    let n = lines(&report).len();
    wait_lines(&report, n + 2, Duration::from_secs(20));

    // A field we do not support: refused by its name before anything is frozen.
    let c = start(scratch.path(), "field");
    let opts = CriuOpts {
        skip_mnt: vec!["/proc".into()],
        ..dump_opts(&dir, pid)
    };
    let (r, seen) = c.call(&req(CriuReqType::Dump, Some(opts)), |_| true);
    let r = answer(r, scratch.path(), "field");
    assert!(!r.success);
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(r.cr_errno, Some(libc::EBADRQC));
    assert!(errmsg(&r).contains("criu_opts.skip_mnt"), "{r:?}");
    assert!(!c.finish(TIMEOUT).success());
    let n = lines(&report).len();
    wait_lines(&report, n + 2, Duration::from_secs(20));
    assert!(
        ticks(&report, 0)
            .iter()
            .all(|(_, m, f)| m == "ok" && f == "ok")
    );
}
