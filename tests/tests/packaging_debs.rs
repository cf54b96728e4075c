//! Packaging as a distribution does (plugins/PACKAGING.md): cargo-deb builds `criu-rs` from
//! the core-only `criu` and one `criu-rs-plugin-<name>` per in-tree plugin; their contents
//! match PACKAGING.md's tables; unpacked into a scratch root, the core-only `criu` dumps,
//! kills and restores self-checking workloads (report file, pipes, eventfd, epoll, memfds)
//! with the unpacked plugin directory, and without it refuses naming pid, file and the way out.
//!
//! Needs cargo-deb (`.ci/run` installs it): missing in CI is a failure, elsewhere a skip.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use criu_tests::{PidGuard, ScratchDir, Workload, skip_unless_root, wait_pid_gone};

mod packaging_support;
mod restore_common;

use packaging_support::{contents, criu, field, layout_table, packages, subpackage_table};
use restore_common::{lines, spawn_bg, wait_lines};

#[test]
fn debs_hold_what_packaging_md_says() {
    let Some(p) = packages() else { return };
    let table = subpackage_table();
    let names: Vec<&str> = p.debs.iter().map(|(n, _)| n.as_str()).collect();
    let mut want: Vec<&str> = table.iter().map(|(_, pkg, _)| pkg.as_str()).collect();
    want.push("criu-rs");
    want.sort();
    assert_eq!(names, want);
    let layout = layout_table();
    assert!(layout.len() >= 3, "install layout table: {layout:?}");
    for (pkg, deb) in &p.debs {
        let files: Vec<_> = contents(deb)
            .into_iter()
            .filter(|(_, _, path)| !path.ends_with('/') && !path.starts_with("/usr/share/doc/"))
            .collect();
        // What the layout table puts in this package, <name> filled in.
        let plugin = pkg.strip_prefix("criu-rs-plugin-");
        let mut expected: Vec<(String, u32)> = layout
            .iter()
            .filter_map(|(path, mode, package)| match plugin {
                Some(n) if package == "criu-rs-plugin-<name>" => {
                    // The library's `<name>` has `_` where the package's has `-` (io_uring).
                    let lib = if path.contains("libcriu_") {
                        n.replace('-', "_")
                    } else {
                        n.to_string()
                    };
                    Some((path.replace("<name>", &lib), *mode))
                }
                None if package == "criu-rs" => Some((path.clone(), *mode)),
                _ => None,
            })
            .collect();
        expected.sort();
        let mut got: Vec<(String, u32)> = files.iter().map(|(m, _, p)| (p.clone(), *m)).collect();
        got.sort();
        assert_eq!(got, expected, "{pkg}: {files:?}");
        for (_, owner, path) in &files {
            assert_eq!(owner, "0/0", "{pkg}: {path} not root:root");
        }
        if let Some(n) = plugin {
            let so = &table
                .iter()
                .find(|(_, pkg2, _)| pkg2 == pkg)
                .expect("row")
                .2;
            assert!(got[0].0.ends_with(&format!("/{so}")), "{pkg}: {got:?}");
            // A library name has `_` where a Debian package name has `-` (io_uring).
            assert_eq!(so, &format!("libcriu_{}.so", n.replace('-', "_")));
            let dep = field(deb, "Depends");
            assert!(
                dep.contains("criu-rs (>= ") && !dep.contains('$'),
                "{pkg}: {dep}"
            );
        } else {
            assert!(
                files.iter().all(|(_, _, p)| !p.contains("/lib/criu")),
                "criu-rs must not ship plugins: {files:?}"
            );
            let rec = field(deb, "Recommends");
            for (_, plugin_pkg, _) in &table {
                assert!(rec.contains(plugin_pkg.as_str()), "Recommends: {rec}");
            }
        }
    }
    // criu-rs's criu has no plugin built in: with an empty plugin dir it lists none.
    let empty = ScratchDir::new("pkg-empty");
    let out = criu(
        p,
        &["check", "--plugins", "-L", empty.path().to_str().unwrap()],
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("built-in"), "{listing}");
    let out = criu(
        p,
        &["check", "--plugins", "-L", p.plugin_dir().to_str().unwrap()],
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    for (_, _, so) in &table {
        assert!(
            listing.contains(&format!("[{so}]")),
            "{so} not loaded:\n{listing}"
        );
    }
    assert!(!listing.contains("built-in"), "{listing}");
}

fn assert_ok(out: &Output, what: &str, log: &Path) {
    assert!(
        out.status.success(),
        "{what}: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits for `n` more report lines than `after`, the last one "ok"; no FAIL line.
fn wait_ok(report: &Path, after: usize, n: usize) {
    let l = wait_lines(report, after + n, Duration::from_secs(20));
    assert!(!l.iter().any(|l| l.contains("FAIL")), "{l:?}");
    assert!(l.last().is_some_and(|l| l.ends_with(" ok")), "{l:?}");
}

#[test]
fn core_only_criu_round_trips_with_packaged_plugins_and_refuses_without() {
    if skip_unless_root("core_only_criu_round_trips_with_packaged_plugins_and_refuses_without") {
        return;
    }
    let Some(p) = packages() else { return };
    let plugins = p.plugin_dir();
    let plugins = plugins.to_str().unwrap();
    let empty = ScratchDir::new("pkg-noplug");
    let empty = empty.path().to_str().unwrap();

    // Files (the report), pipes, eventfd and epoll.
    let work = ScratchDir::new("pkg-epoll");
    let report = work.path().join("report");
    let wl = env!("CARGO_BIN_EXE_wl_epoll");
    let pid = spawn_bg("setsid", &[wl, report.to_str().unwrap()]);
    let guard = PidGuard::new(pid);
    wait_ok(&report, 0, 3);
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let img = images.to_str().unwrap();
    let pid_s = pid.to_string();

    // Without the plugin dir: refused, naming pid, file and the way out; the task runs on.
    let out = criu(p, &["dump", "-t", &pid_s, "-D", img, "-L", empty]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no plugin handles")
            && err.contains(&format!("pid {pid}: no plugin handles"))
            && err.contains("--plugin-dir")
            && err.contains("wl_epoll"),
        "{err}"
    );
    let n = lines(&report).len();
    wait_ok(&report, n, 2);

    let out = criu(
        p,
        &[
            "dump", "-t", &pid_s, "-D", img, "-L", plugins, "-v4", "-o", "dump.log",
        ],
    );
    assert_ok(
        &out,
        "dump with the packaged plugins",
        &images.join("dump.log"),
    );
    assert!(wait_pid_gone(pid, Duration::from_secs(10)), "dump kills");
    // A restore without the plugins is refused before any task exists, naming the plugins the
    // inventory records (those the dump loaded from the plugin dir) and the dirs searched.
    let out = criu(p, &["restore", "-D", img, "-d", "-L", empty]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the images need plugin(s) epoll, eventfd, files, pipes")
            && err.contains("recorded in inventory.img")
            && err.contains(empty)
            && err.contains("--plugin-dir"),
        "{err}"
    );
    assert!(!criu_tests::pid_exists(pid));
    let n = lines(&report).len();
    let out = criu(
        p,
        &[
            "restore",
            "-D",
            img,
            "-d",
            "-L",
            plugins,
            "-v4",
            "-o",
            "restore.log",
        ],
    );
    assert_ok(
        &out,
        "restore with the packaged plugins",
        &images.join("restore.log"),
    );
    wait_ok(&report, n, 3);
    assert!(
        lines(&report)
            .last()
            .is_some_and(|l| l.contains(&format!("pid={pid}"))),
        "restored at the same pid"
    );
    drop(guard);

    // memfds: fds, shared and private mappings, seals.
    let work = ScratchDir::new("pkg-memfd");
    let verdict = work.path().join("verdict");
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_memfd")),
        &[verdict.to_str().unwrap()],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    usr1(pid);
    w.wait_line("ok", Duration::from_secs(20));
    std::fs::remove_file(&verdict).unwrap();
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let img = images.to_str().unwrap();
    // It is our child, in our session: --shell-job, as a shell job would be.
    let out = criu(
        p,
        &[
            "dump",
            "--shell-job",
            "-t",
            &pid.to_string(),
            "-D",
            img,
            "-L",
            plugins,
            "-v4",
            "-o",
            "dump.log",
        ],
    );
    assert_ok(&out, "memfd dump", &images.join("dump.log"));
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    drop(w);
    let out = criu(
        p,
        &[
            "restore",
            "--shell-job",
            "-D",
            img,
            "-d",
            "-L",
            plugins,
            "-v4",
            "-o",
            "restore.log",
        ],
    );
    assert_ok(&out, "memfd restore", &images.join("restore.log"));
    let _restored = PidGuard::new(pid);
    usr1(pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        if let Ok(t) = std::fs::read_to_string(&verdict)
            && t.ends_with('\n')
        {
            break t.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no verdict from the restored memfd workload"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(v, "ok");
}

fn usr1(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("SIGUSR1");
}
