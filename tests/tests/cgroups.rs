//! Cgroups (`cgroup.img`, `--manage-cgroups`): a two-process workload (`wl_cgroup`) is put
//! into fresh cgroups made here, the root in `X` and its child in `X/sub`, in the v1 `pids`
//! hierarchy (with `pids.max` set) and in cgroup v2 (`cgroup.max.descendants` set). After
//! the restore each process checks its `/proc/self/cgroup` against the one it recorded
//! before the dump, and the test checks the properties per mode: soft (created directories
//! get them, existing ones keep theirs), full (always written), ignore (nothing moved),
//! strict (fails on a differing value, naming the file, and removes what it created) and
//! `--cgroup-root` (moved under another root). Every cgroup directory made is removed at
//! the end, even on failure. Debian's crit 3.17 decodes the cgroup.img as we do.

mod crit317;
mod restore_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criu_core::cgroup::{CgroupOptions, Mode};
use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_proto::ImageKind;
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};

use restore_common::{lines, spawn_bg, wait_lines};

use criu_plugin_files as _;

const V1: &str = "/sys/fs/cgroup/pids";
const V2: &str = "/sys/fs/cgroup/unified";

/// Removes every directory at and below its roots when dropped (deepest first; a cgroup
/// stays busy for a moment after its last task is reaped).
struct CgDirs {
    roots: Vec<PathBuf>,
}

fn all_below(p: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                all_below(&e.path(), out);
            }
        }
    }
    out.push(p.to_path_buf());
}

impl CgDirs {
    fn remove(&self) {
        for r in &self.roots {
            let mut dirs = Vec::new();
            all_below(r, &mut dirs);
            for d in dirs.iter().filter(|d| d.exists()) {
                let t0 = Instant::now();
                while std::fs::remove_dir(d).is_err() && t0.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for CgDirs {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The cgroup layout these tests need is a property of the machine (this one is hybrid:
/// v1 controllers beside cgroup2 at `unified`); elsewhere the tests say so and skip.
fn skip_without_hierarchies(test: &str) -> bool {
    let missing: Vec<&str> = [V1, V2]
        .into_iter()
        .filter(|h| !Path::new(h).join("cgroup.procs").exists())
        .collect();
    if missing.is_empty() {
        return false;
    }
    eprintln!(
        "SKIP {test}: no mounted cgroup hierarchy at {missing:?} on this machine (the test needs the v1 pids controller at {V1} and cgroup2 at {V2})"
    );
    true
}

/// One scenario's cgroups: `X` and `X/sub` in both hierarchies.
struct Layout {
    name: String,
    dirs: CgDirs,
}

impl Layout {
    fn new(tag: &str) -> Layout {
        for h in [V1, V2] {
            assert!(
                Path::new(h).join("cgroup.procs").exists(),
                "{h} is not a mounted cgroup hierarchy (this test needs the v1 pids controller at {V1} and cgroup2 at {V2})"
            );
        }
        let name = format!("criu-rs-cgtest-{tag}-{}", std::process::id());
        let dirs = CgDirs {
            roots: [V1, V2]
                .iter()
                .flat_map(|h| [format!("{h}/{name}"), format!("{h}/{name}-new")])
                .map(PathBuf::from)
                .collect(),
        };
        let l = Layout { name, dirs };
        l.make();
        l
    }

    fn make(&self) {
        for h in [V1, V2] {
            std::fs::create_dir_all(format!("{h}/{}/sub", self.name)).expect("mkdir cgroup");
        }
        self.write(V1, "", "pids.max", "1000");
        self.write(V1, "sub", "pids.max", "77");
        self.write(V2, "", "cgroup.max.descendants", "50");
    }

    fn file(&self, h: &str, sub: &str, f: &str) -> PathBuf {
        Path::new(h).join(&self.name).join(sub).join(f)
    }

    fn write(&self, h: &str, sub: &str, f: &str, v: &str) {
        std::fs::write(self.file(h, sub, f), v).unwrap_or_else(|e| panic!("{h} {sub} {f}: {e}"));
    }

    fn read(&self, h: &str, sub: &str, f: &str) -> String {
        std::fs::read_to_string(self.file(h, sub, f))
            .unwrap_or_else(|e| panic!("{h} {sub} {f}: {e}"))
            .trim()
            .to_string()
    }

    fn enter(&self, pid: i32, sub: &str) {
        for h in [V1, V2] {
            self.write(h, sub, "cgroup.procs", &pid.to_string());
        }
    }
}

/// Starts the workload in the layout, dumps it (default options: soft) and kills it.
/// Returns the images, the report, the check file, and the two pids.
fn dumped(l: &Layout, work: &ScratchDir) -> (PathBuf, PathBuf, PathBuf, [i32; 2]) {
    let report = work.path().join("report");
    let go = work.path().join("go");
    let check = work.path().join("check");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_cgroup"),
        &[
            report.to_str().unwrap(),
            go.to_str().unwrap(),
            check.to_str().unwrap(),
        ],
    );
    let mut guard = TreeGuard::new([root]);
    let first = wait_lines(&report, 1, Duration::from_secs(10));
    let child: i32 = first[0]
        .strip_prefix("child ")
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{first:?}"));
    guard.extend([child]);
    l.enter(root, "");
    l.enter(child, "sub");
    std::fs::write(&go, "").expect("go");
    wait_lines(&report, 3, Duration::from_secs(10));
    let images = work.path().join("images");
    std::fs::create_dir(&images).expect("images dir");
    let mut d = DumpOptions::new(root, &images);
    d.leave_stopped = true;
    d.shell_job = true; // the workload stays in the test's session
    dump(&d).unwrap_or_else(|e| panic!("dump: {e}\n{e:?}"));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
    std::fs::write(&report, "").expect("truncate report");
    (images, report, check, [root, child])
}

fn restore_with(
    images: &Path,
    cgroups: CgroupOptions,
) -> criu_core::restore::Result<RestoreOutcome> {
    restore(&RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        shell_job: true,
        cgroups,
        ..RestoreOptions::default()
    })
}

/// Restores, then has both processes check their cgroups; their two lines.
fn restored_checks(
    images: &Path,
    report: &Path,
    check: &Path,
    pids: [i32; 2],
    cg: CgroupOptions,
) -> Vec<String> {
    let outcome = restore_with(images, cg);
    let _guard = TreeGuard::new(pids);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    assert_eq!(outcome, RestoreOutcome::Detached { root: pids[0] });
    std::fs::write(check, "").expect("check file");
    let mut l = wait_lines(report, 2, Duration::from_secs(10));
    l.sort();
    l
}

fn mode(m: Mode) -> CgroupOptions {
    CgroupOptions {
        mode: m,
        ..CgroupOptions::default()
    }
}

fn all_ok(lines: &[String], pids: [i32; 2]) {
    let mut want: Vec<String> = pids.iter().map(|p| format!("check {p} ok")).collect();
    want.sort();
    assert_eq!(lines, want);
}

#[test]
fn soft_restore_recreates_cgroups_with_their_properties() {
    if skip_unless_root("soft_restore_recreates_cgroups_with_their_properties")
        || skip_without_hierarchies("soft_restore_recreates_cgroups_with_their_properties")
    {
        return;
    }
    let l = Layout::new("soft");
    let work = ScratchDir::new("cg-soft");
    let (images, report, check, pids) = dumped(&l, &work);
    let img = images.join("cgroup.img");
    crit317::decodes_as_we_do(&img, ImageKind::Cgroup, |doc| {
        let text = doc.to_string();
        assert!(text.contains(&format!("/{}/sub", l.name)), "{text}");
        assert!(text.contains("\"pids.max\""), "{text}");
    });
    // Gone before the restore: it must create them, with the dumped properties.
    l.dirs.remove();
    all_ok(
        &restored_checks(&images, &report, &check, pids, mode(Mode::Soft)),
        pids,
    );
    assert_eq!(l.read(V1, "sub", "pids.max"), "77");
    assert_eq!(l.read(V1, "", "pids.max"), "1000");
    assert_eq!(l.read(V2, "", "cgroup.max.descendants"), "50");
}

#[test]
fn soft_keeps_existing_values_full_writes_them() {
    if skip_unless_root("soft_keeps_existing_values_full_writes_them")
        || skip_without_hierarchies("soft_keeps_existing_values_full_writes_them")
    {
        return;
    }
    let l = Layout::new("full");
    let work = ScratchDir::new("cg-full");
    let (images, report, check, pids) = dumped(&l, &work);
    l.write(V1, "sub", "pids.max", "55");
    all_ok(
        &restored_checks(&images, &report, &check, pids, mode(Mode::Soft)),
        pids,
    );
    assert_eq!(
        l.read(V1, "sub", "pids.max"),
        "55",
        "soft wrote into an existing cgroup"
    );
    // Again with full: the dumped value comes back.
    std::fs::write(&report, "").expect("truncate");
    std::fs::remove_file(&check).expect("check file");
    all_ok(
        &restored_checks(&images, &report, &check, pids, mode(Mode::Full)),
        pids,
    );
    assert_eq!(l.read(V1, "sub", "pids.max"), "77");
}

#[test]
fn ignore_leaves_tasks_in_criu_s_cgroups() {
    if skip_unless_root("ignore_leaves_tasks_in_criu_s_cgroups")
        || skip_without_hierarchies("ignore_leaves_tasks_in_criu_s_cgroups")
    {
        return;
    }
    let l = Layout::new("ignore");
    let work = ScratchDir::new("cg-ignore");
    let (images, report, check, pids) = dumped(&l, &work);
    let got = restored_checks(&images, &report, &check, pids, mode(Mode::Ignore));
    for line in &got {
        assert!(line.contains(" bad "), "moved although ignored: {got:?}");
    }
}

#[test]
fn strict_fails_on_a_differing_value_and_removes_what_it_made() {
    if skip_unless_root("strict_fails_on_a_differing_value_and_removes_what_it_made")
        || skip_without_hierarchies("strict_fails_on_a_differing_value_and_removes_what_it_made")
    {
        return;
    }
    let l = Layout::new("strict");
    let work = ScratchDir::new("cg-strict");
    let (images, _report, _check, pids) = dumped(&l, &work);
    l.write(V1, "sub", "pids.max", "55");
    // The v2 ones are made by the restore, which fails on the v1 value afterwards.
    for d in ["sub", ""] {
        std::fs::remove_dir(Path::new(V2).join(&l.name).join(d)).expect("rmdir v2");
    }
    let res = restore_with(&images, mode(Mode::Strict));
    let _guard = TreeGuard::new(pids);
    let err = res
        .expect_err("strict restore over a differing pids.max")
        .to_string();
    assert!(err.contains(&format!("{}/sub/pids.max", l.name)), "{err}");
    assert!(err.contains("\"55\"") && err.contains("\"77\""), "{err}");
    assert!(
        !Path::new(V2).join(&l.name).exists(),
        "the failed restore left its cgroup"
    );
    for p in pids {
        assert!(
            criu_tests::wait_pid_gone(p, Duration::from_secs(5)),
            "pid {p} left"
        );
    }
}

#[test]
fn cgroup_root_moves_the_tree_under_a_new_root() {
    if skip_unless_root("cgroup_root_moves_the_tree_under_a_new_root")
        || skip_without_hierarchies("cgroup_root_moves_the_tree_under_a_new_root")
    {
        return;
    }
    let l = Layout::new("root");
    let work = ScratchDir::new("cg-root");
    let (images, report, check, pids) = dumped(&l, &work);
    let mut cg = mode(Mode::Soft);
    let newroot = format!("/{}-new", l.name);
    cg.add_root(&format!("pids:{newroot}"))
        .expect("--cgroup-root");
    let got = restored_checks(&images, &report, &check, pids, cg);
    let want = [
        format!("check {} bad 8:pids:{newroot}", pids[0]),
        format!("check {} bad 8:pids:{newroot}/sub", pids[1]),
    ];
    let hier = lines(Path::new("/proc/self/cgroup"))
        .into_iter()
        .find(|x| x.contains(":pids:"))
        .and_then(|x| x.split(':').next().map(str::to_string))
        .expect("pids hierarchy id");
    let mut want: Vec<String> = want
        .iter()
        .map(|w| w.replace(" 8:", &format!(" {hier}:")))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let sub = Path::new(V1)
        .join(format!("{}-new", l.name))
        .join("sub/pids.max");
    assert_eq!(std::fs::read_to_string(sub).expect("pids.max").trim(), "77");
}
