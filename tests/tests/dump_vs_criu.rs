//! Our images against CRIU 4.2's reference set (shared/fixtures/criu-4.2-sample): the same
//! fields are present, message by message, for a workload of the same shape (threads, a
//! pipe, a file, a SIGUSR1 handler, an itimer). Uses CRIU's crit to decode; skips without it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_tests::{ScratchDir, Workload, skip_unless_root};
use serde_json::Value;

use criu_plugin_files as _;
use criu_plugin_pipes as _;

fn fixture_dir() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        here.join("../../shared/fixtures/criu-4.2-sample"),
        here.join("../shared/fixtures/criu-4.2-sample"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("pstree.img").exists())
}

fn crit(path: &Path) -> Value {
    let out = std::process::Command::new("/usr/bin/crit")
        .args(["decode", "-i", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crit decode {}: {out:?}",
        path.display()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fixture_json(dir: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
        .unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Field names of `ours` and `theirs` agree, recursively through objects (arrays: first
/// element), except under the paths in `skip`.
fn same_shape(path: &str, ours: &Value, theirs: &Value, skip: &[&str], diffs: &mut Vec<String>) {
    if skip.contains(&path) {
        return;
    }
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb) = (keys(ours), keys(theirs));
            for k in ka.symmetric_difference(&kb) {
                let p = format!("{path}.{k}");
                if !skip.contains(&p.as_str()) {
                    let side = if ka.contains(k) {
                        "only ours"
                    } else {
                        "only CRIU's"
                    };
                    diffs.push(format!("{p}: {side}"));
                }
            }
            for k in ka.intersection(&kb) {
                same_shape(&format!("{path}.{k}"), &a[k], &b[k], skip, diffs);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                same_shape(&format!("{path}[]"), x, y, skip, diffs);
            }
        }
        _ => {}
    }
}

#[test]
fn images_have_criu_shape() {
    if skip_unless_root("images_have_criu_shape") {
        return;
    }
    let Some(fix) = fixture_dir() else {
        eprintln!("skipping images_have_criu_shape: no CRIU 4.2 fixture set");
        return;
    };
    if !Path::new("/usr/bin/crit").exists() {
        eprintln!("skipping images_have_criu_shape: crit not installed");
        return;
    }
    let work = ScratchDir::new("shape-work");
    let file = work.path().join("data.txt");
    let w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_memory")),
        &["4", file.to_str().unwrap()],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let d = ScratchDir::new("shape");
    let mut o = DumpOptions::new(pid, d.path());
    o.leave_running = true;
    dump(&o).expect("dump");
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .filter(|&t| t != pid)
        .collect();

    let mut diffs = Vec::new();
    let pairs = [
        ("inventory.img".to_string(), "inventory.img".to_string()),
        ("pstree.img".into(), "pstree.img".into()),
        (format!("core-{pid}.img"), "core-32679.img".into()),
        (format!("core-{}.img", tids[0]), "core-32681.img".into()),
        (format!("mm-{pid}.img"), "mm-32679.img".into()),
        (format!("fs-{pid}.img"), "fs-32679.img".into()),
        (format!("ids-{pid}.img"), "ids-32679.img".into()),
        (format!("pagemap-{pid}.img"), "pagemap-32679.img".into()),
        ("stats-dump".into(), "stats-dump".into()),
        ("timens-0.img".into(), "timens-0.img".into()),
        ("seccomp.img".into(), "seccomp.img".into()),
    ];
    // Known differences: wl_memory has POSIX timers and pending signals that sample.c has
    // not; the XSAVE components present follow the CPU and kernel (the fixture's CPU had
    // no MPX/PKRU enabled, this one may).
    let skip = [
        "core.entries[].tc.timers.posix",
        "core.entries[].tc.signals_s.signals",
        "core.entries[].thread_core.signals_p.signals",
        "core.entries[].thread_info.fpregs.xsave.bndreg_state",
        "core.entries[].thread_info.fpregs.xsave.bndcsr_state",
        "core.entries[].thread_info.fpregs.xsave.pkru",
    ];
    for (ours, theirs) in &pairs {
        let a = crit(&d.path().join(ours));
        let b = fixture_json(&fix, theirs);
        let kind = ours.split(['-', '.']).next().unwrap();
        let (ea, eb) = (&a["entries"], &b["entries"]);
        assert_eq!(a["magic"], b["magic"], "{ours}");
        // pagemap: compare the head and the first run separately.
        if kind == "pagemap" {
            same_shape("pagemap.head", &ea[0], &eb[0], &skip, &mut diffs);
            same_shape("pagemap.entry", &ea[1], &eb[1], &skip, &mut diffs);
            continue;
        }
        same_shape(
            &format!("{kind}.entries[]"),
            &ea[0],
            &eb[0],
            &skip,
            &mut diffs,
        );
    }
    // fdinfo (ours) and files.img entries by type (written by the plugins; build_id is
    // not filled by ours yet).
    let ids = crit(&d.path().join(format!("ids-{pid}.img")));
    let files_id = ids["entries"][0]["files_id"].as_u64().unwrap();
    let fdi = crit(&d.path().join(format!("fdinfo-{files_id}.img")));
    let ffdi = fixture_json(&fix, "fdinfo-2.img");
    same_shape(
        "fdinfo[]",
        &fdi["entries"][0],
        &ffdi["entries"][0],
        &skip,
        &mut diffs,
    );
    let files = crit(&d.path().join("files.img"));
    let ffiles = fixture_json(&fix, "files.img");
    for ty in ["REG", "PIPE"] {
        let pick = |v: &Value| {
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == ty)
                .cloned()
        };
        if let (Some(a), Some(b)) = (pick(&files), pick(&ffiles)) {
            same_shape(
                &format!("files[{ty}]"),
                &a,
                &b,
                &["files[REG].reg.build_id"],
                &mut diffs,
            );
        }
    }
    // Every VMA kind CRIU wrote (file, anon, heap, vvar, vdso, vsyscall, stack) has the
    // same fields in ours.
    let mm = crit(&d.path().join(format!("mm-{pid}.img")));
    let fm = fixture_json(&fix, "mm-32679.img");
    for theirs in fm["entries"][0]["vmas"].as_array().unwrap() {
        let status = &theirs["status"];
        let Some(ours) = mm["entries"][0]["vmas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| {
                v["status"] == *status && (v.get("madv").is_some() == theirs.get("madv").is_some())
            })
        else {
            // e.g. no PROT_NONE+nohugepage area in ours: only compare what both have.
            continue;
        };
        same_shape(&format!("vma[{status}]"), ours, theirs, &skip, &mut diffs);
    }
    assert!(
        diffs.is_empty(),
        "field differences with CRIU 4.2:\n{}",
        diffs.join("\n")
    );
}
