//! Shadow stacks through the real `criu` binary.
//!
//! A real dump of a running workload, then its images edited to say that a thread ran with
//! an x86 shadow stack (CRIU's own field, `user_x86_xsave_entry.cet`) or that a VMA is one
//! (`VMA_AREA_SHSTK`): the restore is refused before any task exists, naming the pid, the
//! tid or area and what this host lacks, leaving the images as they were and the pid free.
//! The unedited images then restore and the workload checks itself. On a host with user
//! shadow stacks the same edits are refused too (the pointer lies in no shadow-stack area),
//! also before any task exists. `criu check` reports shadow-stack support and the unix
//! socket options, each probed with real sockets.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use criu_proto::framing::{RawImage, parse};
use criu_proto::images::{CoreEntry, MmEntry, UserX86CetEntry};
use criu_tests::{PidGuard, ScratchDir, pid_exists, skip_unless_root, wait_pid_gone};
use prost::Message;
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;

const VMA_AREA_SHSTK: u32 = 1 << 15;

fn criu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
        .args(args)
        .env_remove("CRIU_CONFIG_FILE")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn edit_image(dir: &Path, name: &str, edit: impl FnOnce(&mut RawImage)) {
    let path = dir.join(name);
    let mut img = parse(&std::fs::read(&path).expect("read image")).expect("parse image");
    edit(&mut img);
    std::fs::write(&path, img.encode().expect("encode")).expect("write image");
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("images")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read"))
        })
        .collect();
    v.sort();
    v
}

fn copy_images(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Whether this host has user shadow stacks (then the edits are refused for their layout).
fn host_has_shstk() -> bool {
    let out = criu(&["check", "--feature", "shadow_stack"]);
    out.status.success()
}

/// `criu restore` of `images` must fail naming every one of `want`, with the images
/// unchanged and `pid` never created (nothing left behind).
fn refused(images: &Path, log: &Path, pid: i32, want: &[String]) {
    let before = snapshot(images);
    let out = criu(&[
        "restore",
        "-D",
        images.to_str().expect("utf-8"),
        "-d",
        "-v4",
        "-o",
        log.to_str().expect("utf-8"),
    ]);
    let _guard = PidGuard::new(pid);
    assert!(!out.status.success(), "restore succeeded: {}", text(&out));
    let all = text(&out);
    for w in want {
        assert!(all.contains(w.as_str()), "{w:?} missing in {all}");
    }
    eprintln!(
        "refused as expected: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(!pid_exists(pid), "pid {pid} exists after a refused restore");
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !log_text.contains("task created"),
        "a task was created before the refusal:\n{log_text}"
    );
    assert_eq!(
        snapshot(images),
        before,
        "images changed by a refused restore"
    );
}

#[test]
fn restore_refuses_shadow_stacks_this_host_cannot_give() {
    if skip_unless_root("restore_refuses_shadow_stacks_this_host_cannot_give") {
        return;
    }
    let scratch = ScratchDir::new("shstk-refusal");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let report = scratch.path().join("report.txt");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_counter"),
        &[report.to_str().expect("utf-8"), "2"],
    );
    let guard = PidGuard::new(pid);
    wait_lines(&report, 3, Duration::from_secs(20));
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let tid = *tids.iter().find(|&&t| t != pid).expect("a second thread");

    let out = criu(&[
        "dump",
        "-t",
        &pid.to_string(),
        "-D",
        images.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "dump: {}", text(&out));
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "{pid} still there"
    );
    drop(guard);
    let cet = |c: &CoreEntry| c.thread_info.as_ref()?.fpregs.xsave.as_ref()?.cet;
    let core_name = format!("core-{tid}.img");
    let core = parse(&std::fs::read(images.join(&core_name)).expect("core")).expect("parse");
    let core: CoreEntry = core.decode_entries().expect("decode").remove(0);
    assert_eq!(
        cet(&core),
        None,
        "this workload runs without a shadow stack"
    );

    // 1. A thread (not the leader) that ran with a shadow stack: CRIU's field.
    let ssp = 0x7ffe_0000_0ff8u64;
    let edited = scratch.path().join("thread");
    copy_images(&images, &edited);
    edit_image(&edited, &core_name, |img| {
        let mut c = CoreEntry::decode(img.entries[0].payload.as_slice()).expect("core");
        let x = c
            .thread_info
            .as_mut()
            .and_then(|t| t.fpregs.xsave.as_mut())
            .expect("xsave");
        x.cet = Some(UserX86CetEntry { cet: 1, ssp });
        img.entries[0].payload = c.encode_to_vec();
    });
    let want: Vec<String> = if host_has_shstk() {
        vec![format!("tid {tid}"), "in no shadow-stack area".into()]
    } else {
        vec![
            format!("pid {pid}, tid {tid}"),
            "x86 shadow stack".into(),
            format!("{ssp:#x}"),
            "user_shstk".into(),
        ]
    };
    refused(&edited, &scratch.path().join("thread.log"), pid, &want);

    // 2. A VMA marked as a shadow stack (the thread states untouched).
    let edited = scratch.path().join("area");
    copy_images(&images, &edited);
    let mm_name = format!("mm-{pid}.img");
    let mut area = (0, 0);
    edit_image(&edited, &mm_name, |img| {
        let mut mm = MmEntry::decode(img.entries[0].payload.as_slice()).expect("mm");
        let v = mm
            .vmas
            .iter_mut()
            .find(|v| v.status & (1 << 9) != 0 && v.start >= 1 << 32)
            .expect("a private anonymous vma above 4 GiB");
        v.status |= VMA_AREA_SHSTK;
        area = (v.start, v.end);
        img.entries[0].payload = mm.encode_to_vec();
    });
    if !host_has_shstk() {
        let want = vec![
            format!("pid {pid}: shadow-stack area {:#x}-{:#x}", area.0, area.1),
            mm_name.clone(),
            "user_shstk".into(),
        ];
        refused(&edited, &scratch.path().join("area.log"), pid, &want);
    }

    // 3. The images as dumped restore, and the workload goes on checking itself.
    let log = scratch.path().join("restore.log");
    let out = criu(&[
        "restore",
        "-D",
        images.to_str().expect("utf-8"),
        "-d",
        "-v4",
        "-o",
        log.to_str().expect("utf-8"),
    ]);
    let restored = PidGuard::new(pid);
    assert!(out.status.success(), "restore: {}", text(&out));
    // The log line the refusals must not have (so that their check means something).
    let log_text = std::fs::read_to_string(&log).expect("restore log");
    assert!(log_text.contains("task created"), "{log_text}");
    let n = lines(&report).len();
    wait_lines(&report, n + 3, Duration::from_secs(20));
    let last = lines(&report).pop().expect("a tick");
    assert!(last.contains("mem=ok") && last.contains("fp=ok"), "{last}");
    drop(restored);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
}

#[test]
fn check_reports_shadow_stacks_and_unix_socket_options() {
    let out = criu(&["check", "--all"]);
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |name: &str| {
        all.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in criu check --all:\n{all}"))
            .to_owned()
    };
    let shstk = line("shadow_stack");
    let cpu = std::fs::read_to_string("/proc/cpuinfo").expect("cpuinfo");
    let flag = cpu
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "user_shstk"));
    let feature = criu(&["check", "--feature", "shadow_stack"]);
    if flag {
        println!("this CPU has user_shstk: {shstk}");
        assert_eq!(
            feature.status.success(),
            shstk.contains(" ok"),
            "{}",
            text(&feature)
        );
    } else {
        assert!(
            shstk.contains("MISSING") && shstk.contains("user_shstk"),
            "{shstk}"
        );
        assert_eq!(feature.status.code(), Some(1), "{}", text(&feature));
        assert!(String::from_utf8_lossy(&feature.stdout).contains("MISSING"));
    }
    // Linux 6.16+ has all four; older kernels report which they lack.
    let (major, minor) = kernel_version();
    for (name, since) in [
        ("so_peek_off", (4, 3)),
        ("so_passpidfd", (6, 5)),
        ("scm_pidfd", (6, 5)),
        ("so_passrights", (6, 16)),
    ] {
        let l = line(name);
        if (major, minor) >= since {
            assert!(l.contains(" ok"), "{l}");
        } else {
            assert!(l.contains("MISSING"), "{l}");
        }
    }
}

fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|s| s.parse().ok()).expect("major");
    let minor = it.next().and_then(|s| s.parse().ok()).expect("minor");
    (major, minor)
}
