//! Kernel-side task state survives dump + restore: signal masks, pending signals (shared and
//! per-thread), handlers, POSIX timers, thread names, umask, cwd, rlimits, memory layout, auxv, cmdline,
//! environment and exe are compared through /proc before and after; the workload checks its
//! sigaltstack and itimer itself.

use std::time::Duration;

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use restore_common::{dump_and_kill, lines, spawn_bg, tids_of, wait_lines};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

const STATUS_KEYS: &[&str] = &[
    "Name",
    "Umask",
    "SigPnd",
    "ShdPnd",
    "SigBlk",
    "SigIgn",
    "SigCgt",
    "NoNewPrivs",
    "Seccomp",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "Uid",
    "Gid",
    "Groups",
];

fn snapshot(pid: i32) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let read = |p: String| std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    for tid in tids_of(pid) {
        let status =
            String::from_utf8(read(format!("/proc/{pid}/task/{tid}/status"))).expect("utf-8");
        for l in status.lines() {
            if let Some((k, val)) = l.split_once(':')
                && STATUS_KEYS.contains(&k)
            {
                v.push((format!("{tid} {k}"), val.trim().to_string()));
            }
        }
    }
    let maps = String::from_utf8_lossy(&read(format!("/proc/{pid}/maps"))).into_owned();
    v.push(("maps".to_string(), normalize_maps(&maps)));
    for f in [
        "limits",
        "cmdline",
        "environ",
        "auxv",
        "personality",
        "timers",
    ] {
        v.push((
            f.to_string(),
            String::from_utf8_lossy(&read(format!("/proc/{pid}/{f}"))).into_owned(),
        ));
    }
    for l in ["cwd", "exe"] {
        let target = std::fs::read_link(format!("/proc/{pid}/{l}")).expect("link");
        v.push((l.to_string(), target.display().to_string()));
    }
    v
}

/// `/proc/PID/maps` as ranges, with two differences a faithful restore may show removed:
/// adjacent mappings of one file at contiguous offsets with equal permissions merge when they
/// are mapped afresh (the original kept them apart only because one had been written, e.g.
/// RELRO), and the `[stack]` start is dropped: the dumper's own ptrace work can grow the
/// stack by a page before it records it.
fn normalize_maps(maps: &str) -> String {
    let mut out: Vec<(u64, u64, String, u64, String)> = Vec::new();
    for l in maps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(range), Some(perms), Some(off)) = (f.first(), f.get(1), f.get(2)) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap_or(0),
            u64::from_str_radix(b, 16).unwrap_or(0),
        );
        let off = u64::from_str_radix(off, 16).unwrap_or(0);
        let path = f.get(5).copied().unwrap_or("").to_string();
        if let Some(last) = out.last_mut()
            && last.1 == a
            && last.2 == *perms
            && last.4 == path
            && path.starts_with('/')
            && last.3 + (last.1 - last.0) == off
        {
            last.1 = b;
            continue;
        }
        out.push((a, b, perms.to_string(), off, path));
    }
    out.iter()
        .map(|(a, b, p, o, path)| {
            if path == "[stack]" {
                format!("...-{b:x} {p} {path}\n")
            } else {
                format!("{a:x}-{b:x} {p} {o:x} {path}\n")
            }
        })
        .collect()
}

/// What wl_state appends on SIGUSR1 when its altstack and itimer survived.
const PLAIN: &str = "usr1 onstack=1 itimer=1";

/// Runs wl_state (through `prefix`, e.g. setpriv) and checks its state survives.
fn run_state(name: &str, prefix: &[&str], extra: &[&str], usr1_line: &str) {
    let scratch = ScratchDir::new(name);
    // The workload may run as another user: let it write its report and cwd.
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod scratch");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.push(env!("CARGO_BIN_EXE_wl_state"));
    argv.push(report.to_str().expect("utf-8 path"));
    argv.push(scratch.path().to_str().expect("utf-8 path"));
    argv.extend_from_slice(extra);
    let pid = spawn_bg(argv[0], &argv[1..]);
    let guard = PidGuard::new(pid);
    wait_lines(&report, 1, Duration::from_secs(20));
    // Let both threads settle into their sleeps.
    std::thread::sleep(Duration::from_millis(200));
    let before = snapshot(pid);
    dump_and_kill(pid, &images);
    drop(guard);

    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    let _restored = PidGuard::new(pid);
    assert_eq!(outcome, RestoreOutcome::Detached { root: pid });
    std::thread::sleep(Duration::from_millis(200));
    let after = snapshot(pid);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "{} differs after restore", b.0);
    }
    assert_eq!(before.len(), after.len());

    let n = lines(&report).len();
    kill(Pid::from_raw(pid), Signal::SIGUSR1).expect("SIGUSR1");
    let l = wait_lines(&report, n + 1, Duration::from_secs(10));
    assert_eq!(l[n], usr1_line);
}

#[test]
fn e2e_restore_keeps_task_state() {
    if skip_unless_root("e2e_restore_keeps_task_state") {
        return;
    }
    run_state("e2e-state", &[], &[], PLAIN);
}

/// An unprivileged task (uid/gid 65534, no groups, no capabilities) keeps its credentials.
#[test]
fn e2e_restore_keeps_user_credentials() {
    if skip_unless_root("e2e_restore_keeps_user_credentials") {
        return;
    }
    run_state(
        "e2e-creds-user",
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &[],
        PLAIN,
    );
}

/// A root task with a reduced bounding set and extra groups keeps them.
#[test]
fn e2e_restore_keeps_reduced_capabilities() {
    if skip_unless_root("e2e_restore_keeps_reduced_capabilities") {
        return;
    }
    run_state(
        "e2e-creds-caps",
        &[
            "setpriv",
            "--bounding-set=-net_raw,-sys_ptrace",
            "--groups=4,27",
        ],
        &[],
        PLAIN,
    );
}

/// seccomp filters come back in both threads and still act (getpgid fails with 42).
#[test]
fn e2e_restore_keeps_seccomp_filters() {
    if skip_unless_root("e2e_restore_keeps_seccomp_filters") {
        return;
    }
    run_state(
        "e2e-seccomp",
        &[],
        &["seccomp"],
        "usr1 onstack=1 itimer=1 getpgid=42",
    );
}
