//! A root in a mount namespace of its own (the C workload `workloads/mntns.c` unshares it,
//! everything private, and mounts a tmpfs it fills, a bind of a directory the test made, a
//! read-only bind of it and a proc) is dumped into CRIU's `mountpoints-N.img` and
//! `tmpfs-dev-N.tar.gz.img`, killed and restored into a new mount namespace; the test
//! compares `/proc/PID/mountinfo` (mountpoint, fs type, options, propagation) before and
//! after, and the workload checks its files, its fd's offset, its cwd, the binds and proc.
//! crit 3.17 decodes the image. A mount of an unsupported file system is refused at dump
//! naming it, the tree running on; bad images (a parent that does not exist, a cycle, a
//! path with `..`) fail the restore naming `mountpoints-N.img` and the entry, leaving no
//! mount in criu's namespace.

mod crit317;
mod restore_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::ImageKind;
use criu_proto::images::{MntEntry, TaskKobjIdsEntry};
use criu_tests::{ScratchDir, TreeGuard, pid_exists, skip_unless_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prost::Message;

use criu_plugin_files as _;

use restore_common::{spawn_bg, wait_lines};

struct Started {
    pid: i32,
    dir: PathBuf,
    report: PathBuf,
    trigger: PathBuf,
    images: PathBuf,
    _scratch: ScratchDir,
}

fn gcc_present(test: &str) -> bool {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: gcc missing in CI"
        );
        eprintln!("skipping {test}: gcc is not installed");
    }
    ok
}

/// Builds and starts the workload (with `odd`: also a mount of that fs type), waits for it.
fn start(name: &str, odd: Option<&str>) -> Started {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().expect("scratch");
    let exe = dir.join("mntns_wl");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/mntns.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-Wall", "-Wno-format-truncation", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(ok.success(), "gcc failed on mntns.c");
    std::fs::create_dir(dir.join("host")).expect("host dir");
    std::fs::write(dir.join("host/hostfile"), b"host data").expect("host file");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let (report, trigger) = (dir.join("report"), dir.join("trigger"));
    let mut args = vec![
        report.to_str().expect("path"),
        trigger.to_str().expect("path"),
        dir.to_str().expect("path"),
    ];
    args.extend(odd);
    let pid = spawn_bg(exe.to_str().expect("path"), &args);
    let first = wait_lines(&report, 1, Duration::from_secs(10));
    assert_eq!(first[0], "ready", "{first:?}");
    Started {
        pid,
        dir,
        report,
        trigger,
        images,
        _scratch: scratch,
    }
}

/// What the test compares of each mount: mountpoint, fs type, source, per-mount and
/// superblock options, propagation (mount ids and devices differ after a restore), sorted.
fn mount_view(pid: i32) -> Vec<String> {
    let mut v = mount_lines(pid);
    v.sort();
    v
}

fn mount_lines(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").expect("separator");
            let optional = f[6..sep].join(" ");
            format!(
                "{} {} {} {} {} [{optional}] root {}",
                f[4],
                f[sep + 1],
                f[sep + 2],
                f[5],
                f[sep + 3],
                f[3]
            )
        })
        .collect()
}

fn ns_inode(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The root's mount namespace id from its ids image.
fn mnt_id(images: &Path, pid: i32) -> u32 {
    let bytes = std::fs::read(images.join(format!("ids-{pid}.img"))).expect("ids image");
    let raw = criu_proto::framing::parse(&bytes).expect("ids framing");
    let ids = TaskKobjIdsEntry::decode(raw.entries[0].payload.as_slice()).expect("ids");
    ids.mnt_ns_id.expect("mnt")
}

fn dump_and_kill(w: &Started, guard: TreeGuard) {
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.leave_stopped = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e}\n{e:?}"));
    let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
    assert!(guard.kill_and_wait(Duration::from_secs(10)).is_empty());
    assert!(wait_pid_gone(w.pid, Duration::from_secs(10)));
}

fn restore_opts(images: &Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

/// Criu's own mounts (this process is the restorer).
fn my_mounts() -> Vec<String> {
    mount_view(std::process::id() as i32)
}

#[test]
fn mount_namespace_root_survives_dump_kill_restore() {
    let name = "mount_namespace_root_survives_dump_kill_restore";
    if skip_unless_root(name) || !gcc_present(name) {
        return;
    }
    let w = start("mntns-main", None);
    let guard = TreeGuard::new([w.pid]);
    assert_ne!(ns_inode(&w.pid.to_string()), ns_inode("self"));
    let before = mount_view(w.pid);
    let t = format!("{}/t", w.dir.display());
    assert!(
        before
            .iter()
            .any(|m| m.starts_with(&format!("{t} tmpfs wltmp rw,nosuid"))),
        "{before:#?}"
    );
    dump_and_kill(&w, guard);

    let id = mnt_id(&w.images, w.pid);
    let img = w.images.join(ImageKind::Mnts.file_name(u64::from(id)));
    crit317::decodes_as_we_do(&img, ImageKind::Mnts, |ours| {
        let tmpfs = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["mountpoint"] == t.as_str())
            .unwrap_or_else(|| panic!("no tmpfs entry: {ours}"));
        assert_eq!(tmpfs["fstype"], 5, "{tmpfs}");
        assert_eq!(tmpfs["options"], "size=1024k,mode=751", "{tmpfs}");
    });
    let tars: Vec<_> = std::fs::read_dir(&w.images)
        .expect("images")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("tmpfs-dev-") && n.ends_with(".tar.gz.img"))
        .collect();
    assert_eq!(tars.len(), 1, "{tars:?}");

    let mine = my_mounts();
    let outcome = restore(&restore_opts(&w.images));
    let guard = TreeGuard::new([w.pid]);
    outcome.unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    assert_eq!(my_mounts(), mine, "criu's own mounts changed");
    assert_ne!(ns_inode(&w.pid.to_string()), ns_inode("self"));
    assert_eq!(mount_view(w.pid), before, "the restored mounts differ");
    std::fs::write(&w.trigger, b"1").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "{lines:?}");
    assert!(guard.kill_and_wait(Duration::from_secs(10)).is_empty());
}

#[test]
fn unsupported_fs_is_refused_and_the_tree_runs_on() {
    let name = "unsupported_fs_is_refused_and_the_tree_runs_on";
    if skip_unless_root(name) || !gcc_present(name) {
        return;
    }
    // bpffs: a new superblock per mount, a file system no restore here makes.
    let w = start("mntns-odd", Some("bpf"));
    let guard = TreeGuard::new([w.pid]);
    let err = dump(&DumpOptions::new(w.pid, &w.images)).expect_err("dump of a bpf mount");
    let msg = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    let x = format!("{}/x", w.dir.display());
    assert!(
        msg.contains(&format!("(bpf) at {x}")) && msg.contains(&format!("--external mnt[{x}]:KEY")),
        "{msg}"
    );
    assert!(pid_exists(w.pid));
    std::fs::write(&w.trigger, b"1").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "{lines:?}");
    drop(guard);
}

/// Rewrites the mount image of `images` (a copy into `to`) with `change`.
fn damaged(images: &Path, to: &Path, id: u32, change: impl FnOnce(&mut Vec<MntEntry>)) {
    std::fs::create_dir_all(to).expect("copy dir");
    for e in std::fs::read_dir(images).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
    let name = ImageKind::Mnts.file_name(u64::from(id));
    let raw = criu_proto::framing::parse(&std::fs::read(images.join(&name)).expect("img"))
        .expect("framing");
    let mut v: Vec<MntEntry> = raw
        .entries
        .iter()
        .map(|e| MntEntry::decode(e.payload.as_slice()).expect("mnt_entry"))
        .collect();
    change(&mut v);
    let bytes = criu_proto::framing::encode_messages(ImageKind::Mnts, &v).expect("encode");
    std::fs::write(to.join(&name), bytes).expect("write");
}

/// A change that damages a mount image.
type Damage<'a> = Box<dyn FnOnce(&mut Vec<MntEntry>) + 'a>;

#[test]
fn bad_mount_images_fail_naming_the_entry_and_leave_no_mount() {
    let name = "bad_mount_images_fail_naming_the_entry_and_leave_no_mount";
    if skip_unless_root(name) || !gcc_present(name) {
        return;
    }
    let w = start("mntns-bad", None);
    let guard = TreeGuard::new([w.pid]);
    dump_and_kill(&w, guard);
    let id = mnt_id(&w.images, w.pid);
    let image = ImageKind::Mnts.file_name(u64::from(id));
    let t = format!("{}/t", w.dir.display());
    let index = |v: &[MntEntry]| {
        v.iter()
            .position(|e| e.mountpoint == t)
            .expect("tmpfs entry")
    };
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "parent",
            Box::new(|v| {
                let i = index(v);
                v[i].parent_mnt_id = 999_999;
            }),
            "parent id 999999 does not exist",
        ),
        (
            "cycle",
            Box::new(|v| {
                let i = index(v);
                let own = v[i].mnt_id;
                let j = (0..v.len())
                    .find(|&j| j != i && v[j].parent_mnt_id == v[i].parent_mnt_id)
                    .expect("sibling");
                v[j].parent_mnt_id = own;
                v[i].parent_mnt_id = v[j].mnt_id;
            }),
            "cycle",
        ),
        (
            "dotdot",
            Box::new(|v| {
                let i = index(v);
                v[i].mountpoint = format!("{t}/../../etc");
            }),
            "'..'",
        ),
    ];
    let mine = my_mounts();
    for (case, change, want) in cases {
        let to = w.dir.join(format!("bad-{case}"));
        damaged(&w.images, &to, id, change);
        let err = restore(&restore_opts(&to)).expect_err(case).to_string();
        assert!(
            err.contains(&format!("{image}, entry ")) && err.contains(want),
            "{case}: {err}"
        );
        assert!(!pid_exists(w.pid), "{case}: a task is left");
        assert_eq!(my_mounts(), mine, "{case}: criu's mounts changed");
    }
}
