//! Plugin stage hooks and task services end to end: a test plugin linked into this binary
//! (registered with inventory) reads a workload's memory and runs a remote `getpid()` in it
//! after the freeze, saves both in its own image file, and at restore writes a new value
//! into the restored task before it resumes; the workload reports the new value. Its VMA
//! handler claims the workload's two-page area (the core writes none of its pages)
//! and carries the contents in its own file; its task handler sees the task at both ends.
//! Also: the order of the calls each side saw, and a failing hook failing the dump (task left
//! running) or the restore (task killed).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use criu_core::dump::{DumpError, DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_core::restore::{RestoreError, RestoreOptions, RestoreOutcome, restore};
use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, Plugin, PluginError, PluginInfo, PluginRegistration,
    RestoreContext, RestoreStage, StageHooks, TaskHandler, TaskIds, VmaDesc, VmaHandler,
};
use criu_proto::images::MmEntry;
use criu_tests::{PidGuard, ScratchDir, pid_exists, skip_unless_root, wait_pid_gone};
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;
use criu_plugin_files as _;

const MAGIC: u64 = 0x0c0f_fee0_dead_beef;
const NEW_VALUE: u64 = 0x1234_5678_9abc_def0;
const FILE: &str = "hooktest.txt";

/// What the test plugin does; it does nothing while unarmed (other tests of this binary).
#[derive(Debug, Clone, Copy, Default)]
struct Arm {
    pid: i32,
    addr: u64,
    vma: u64,
    /// The workload's fd of its report file, and that file's inode.
    report_fd: i32,
    report_ino: u64,
    fail_at: Option<&'static str>,
}

/// Where the plugin installs /dev/null in the restored task.
const INSTALLED_FD: i32 = 42;

static ARM: Mutex<Option<Arm>> = Mutex::new(None);
/// Stages the plugin saw, in order.
static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
/// Tests share the plugin's state: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct HookTest;

impl Plugin for HookTest {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "hooktest",
            version: "0",
            priority: 900,
            api_version: API_VERSION,
        }
    }
    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }
    fn vma_handler(&self) -> Option<&dyn VmaHandler> {
        Some(self)
    }
    fn task_handler(&self) -> Option<&dyn TaskHandler> {
        Some(self)
    }
}

fn vma_file(start: u64) -> String {
    format!("hooktest-vma-{start:x}.bin")
}

impl VmaHandler for HookTest {
    fn vma_kinds(&self) -> &[&str] {
        &["the workload's area"]
    }
    fn claims_vma(&self, vma: &VmaDesc) -> bool {
        let arm = *ARM.lock().unwrap_or_else(|p| p.into_inner());
        arm.is_some_and(|a| a.pid == vma.pid && vma.start == a.vma)
    }
    fn dump_vma(&self, ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
        let Some(arm) = self.enter("dump-vma")? else {
            return Ok(());
        };
        if vma.start != arm.vma || vma.len() != 2 * 4096 {
            return Err(err(format!(
                "claimed {vma:?}, the area is at {:x}",
                arm.vma
            )));
        }
        let mut data = vec![0u8; vma.len() as usize];
        ctx.read_task_memory(vma.pid, vma.start, &mut data)?;
        ctx.write_plugin_file(&vma_file(vma.start), &data)
    }
    fn restore_vma(&self, ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
        if self.enter("restore-vma")?.is_none() {
            return Ok(());
        }
        // The core mapped it empty: only the plugin has the contents.
        let mut now = vec![0u8; vma.len() as usize];
        ctx.read_task_memory(vma.pid, vma.start, &mut now)?;
        if now.iter().any(|&b| b != 0) {
            return Err(err("the core restored pages of a claimed VMA".into()));
        }
        let data = ctx
            .read_plugin_file(&vma_file(vma.start))?
            .ok_or_else(|| err("VMA file missing".into()))?;
        ctx.write_task_memory(vma.pid, vma.start, &data)
    }
}

impl TaskHandler for HookTest {
    fn task_state(&self) -> &[&str] {
        &["test state"]
    }
    fn dump_task(&self, _: &mut dyn DumpContext, task: &TaskIds) -> Result<(), PluginError> {
        match self.enter("dump-task")? {
            Some(arm) if task.pid != arm.pid => Err(err(format!("dump_task for {task:?}"))),
            _ => Ok(()),
        }
    }
    fn restore_task(
        &self,
        ctx: &mut dyn RestoreContext,
        task: &TaskIds,
    ) -> Result<(), PluginError> {
        if self.enter("restore-task")?.is_none() {
            return Ok(());
        }
        let pid = ctx.remote_syscall(task.tids[0], libc::SYS_getpid, [0; 6])?;
        if pid != i64::from(task.pid) {
            return Err(err(format!("remote getpid in {task:?} gave {pid}")));
        }
        Ok(())
    }
}

fn err(what: String) -> PluginError {
    PluginError::Plugin {
        plugin: "hooktest".into(),
        message: what,
    }
}

impl HookTest {
    /// Records the stage; `Some(arm)` when armed and not told to fail here.
    fn enter(&self, stage: &'static str) -> Result<Option<Arm>, PluginError> {
        let Some(arm) = *ARM.lock().unwrap_or_else(|p| p.into_inner()) else {
            return Ok(None);
        };
        SEEN.lock().unwrap_or_else(|p| p.into_inner()).push(stage);
        if arm.fail_at == Some(stage) {
            return Err(err(format!("told to fail at {stage}")));
        }
        Ok(Some(arm))
    }
}

impl StageHooks for HookTest {
    fn dump_stages(&self) -> &[DumpStage] {
        &DumpStage::ALL
    }
    fn restore_stages(&self) -> &[RestoreStage] {
        &RestoreStage::ALL
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        let Some(arm) = self.enter(stage.name())? else {
            return Ok(());
        };
        match stage {
            DumpStage::BeforeFreeze => {
                // Nothing frozen yet: no tree, no task services.
                assert!(ctx.tasks().is_empty());
                let mut b = [0u8; 8];
                match ctx.read_task_memory(arm.pid, arm.addr, &mut b) {
                    Err(PluginError::Unavailable { .. }) => Ok(()),
                    other => Err(err(format!("memory before the freeze: {other:?}"))),
                }
            }
            DumpStage::AfterFreeze => {
                let tasks = ctx.tasks();
                if !tasks
                    .iter()
                    .any(|t| t.pid == arm.pid && t.tids == [arm.pid])
                {
                    return Err(err(format!("tree {tasks:?} lacks {}", arm.pid)));
                }
                let mut b = [0u8; 8];
                ctx.read_task_memory(arm.pid, arm.addr, &mut b)?;
                let pid = ctx.remote_syscall(arm.pid, libc::SYS_getpid, [0; 6])?;
                // The same open file as the task's report fd.
                let report = ctx.dup_task_fd(arm.pid, arm.report_fd)?;
                let st = nix::sys::stat::fstat(&report)
                    .map_err(|e| err(format!("fstat of the task's fd: {e}")))?;
                if st.st_ino != arm.report_ino {
                    return Err(err(format!("dup_task_fd gave inode {}", st.st_ino)));
                }
                let text = format!("{:x} {pid}", u64::from_le_bytes(b));
                ctx.write_plugin_file(FILE, text.as_bytes())
            }
            DumpStage::AfterDump | DumpStage::Failed => Ok(()),
        }
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        let Some(arm) = self.enter(stage.name())? else {
            return Ok(());
        };
        match stage {
            RestoreStage::AfterTasksExist => {
                // The dumped memory is back.
                let mut b = [0u8; 8];
                ctx.read_task_memory(arm.pid, arm.addr, &mut b)?;
                if u64::from_le_bytes(b) != MAGIC {
                    return Err(err(format!("restored value {:x}", u64::from_le_bytes(b))));
                }
                let null = std::fs::File::open("/dev/null")
                    .map_err(|e| err(format!("open /dev/null: {e}")))?;
                ctx.install_fd(arm.pid, std::os::fd::AsFd::as_fd(&null), INSTALLED_FD, true)
            }
            RestoreStage::BeforeResume => {
                let saved = ctx
                    .read_plugin_file(FILE)?
                    .ok_or_else(|| err("own file missing".into()))?;
                let text = String::from_utf8_lossy(&saved).into_owned();
                if text != format!("{MAGIC:x} {}", arm.pid) {
                    return Err(err(format!("own file says {text:?}")));
                }
                let pid = ctx.remote_syscall(arm.pid, libc::SYS_getpid, [0; 6])?;
                if pid != i64::from(arm.pid) {
                    return Err(err(format!("remote getpid gave {pid}")));
                }
                ctx.write_task_memory(arm.pid, arm.addr, &NEW_VALUE.to_le_bytes())
            }
            RestoreStage::AfterResume => {
                // The tasks run: no more task services.
                let mut b = [0u8; 8];
                match ctx.read_task_memory(arm.pid, arm.addr, &mut b) {
                    Err(PluginError::Unavailable { .. }) => Ok(()),
                    other => Err(err(format!("memory after resume: {other:?}"))),
                }
            }
            RestoreStage::BeforeRestore | RestoreStage::Failed => Ok(()),
        }
    }
}

static PLUGIN: HookTest = HookTest;
inventory::submit! { PluginRegistration::new(&PLUGIN) }

/// Disarms the plugin even when the test fails.
struct Armed;

impl Armed {
    fn new(arm: Arm) -> Self {
        *ARM.lock().unwrap_or_else(|p| p.into_inner()) = Some(arm);
        SEEN.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Armed
    }
    fn set_fail(&self, at: Option<&'static str>) {
        if let Some(a) = ARM.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            a.fail_at = at;
        }
    }
    fn take_seen(&self) -> Vec<&'static str> {
        std::mem::take(&mut *SEEN.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        *ARM.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Starts wl_magic; its pid, guard, the addresses of its value and of its named area.
fn start(scratch: &ScratchDir) -> (i32, PidGuard, u64, u64, std::path::PathBuf) {
    let report = scratch.path().join("report.txt");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_magic"),
        &[report.to_str().expect("utf-8 path")],
    );
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 2, Duration::from_secs(20));
    let field = |name: &str| {
        first[0]
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .unwrap_or_else(|| panic!("no {name} in {:?}", first[0]))
    };
    let (addr, vma) = (field("addr="), field("vma="));
    assert!(first[0].ends_with(&format!("value={MAGIC:x}")), "{first:?}");
    (pid, guard, addr, vma, report)
}

/// The workload's fd of `report` and the file's inode.
fn report_fd(pid: i32, report: &Path) -> (i32, u64) {
    use std::os::unix::fs::MetadataExt;
    let fd = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| e.ok())
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == report))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .expect("report fd");
    (fd, std::fs::metadata(report).expect("report").ino())
}

fn wait_value(report: &Path, value: u64, timeout: Duration) -> bool {
    let want = format!("vma=ok value={value:x}");
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if lines(report)
            .iter()
            .any(|l| l.starts_with("tick") && l.ends_with(&want))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn restore_opts(images: &Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

#[test]
fn hooks_read_memory_at_dump_and_write_it_at_restore() {
    if skip_unless_root("hooks_read_memory_at_dump_and_write_it_at_restore") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = ScratchDir::new("plugin-hooks");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let (pid, guard, addr, vma, report) = start(&scratch);
    let (report_fd, report_ino) = report_fd(pid, &report);
    let armed = Armed::new(Arm {
        pid,
        addr,
        vma,
        report_fd,
        report_ino,
        fail_at: None,
    });

    let mut d = DumpOptions::new(pid, &images);
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    assert_eq!(
        armed.take_seen(),
        [
            "before-freeze",
            "after-freeze",
            "dump-vma",
            "dump-task",
            "after-dump"
        ]
    );
    let own = std::fs::read_to_string(images.join(FILE)).expect("plugin file");
    assert_eq!(own, format!("{MAGIC:x} {pid}"), "magic and remote getpid()");
    // The claimed area is in mm.img but none of its pages in the pagemap.
    let dir = ImageDir::open(&images).expect("images");
    let (_, entries) = dir.read_pagemap(pid as u64).expect("pagemap");
    assert!(!entries.is_empty());
    for e in &entries {
        let end = e.vaddr + e.nr_pages.unwrap_or(0) * 4096;
        assert!(
            end <= vma || e.vaddr >= vma + 2 * 4096,
            "pages of the claimed VMA: {e:?}"
        );
    }
    assert!(images.join(format!("hooktest-vma-{vma:x}.bin")).exists());
    drop(guard);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "{pid} still taken"
    );

    let _restored = PidGuard::new(pid);
    let out = restore(&restore_opts(&images)).unwrap_or_else(|e| panic!("restore: {e:?}"));
    assert_eq!(out, RestoreOutcome::Detached { root: pid });
    assert_eq!(
        armed.take_seen(),
        [
            "before-restore",
            "restore-vma",
            "after-tasks-exist",
            "restore-task",
            "before-resume",
            "after-resume"
        ]
    );
    assert!(
        wait_value(&report, NEW_VALUE, Duration::from_secs(10)),
        "the restored task never reported {NEW_VALUE:x}: {:?}",
        lines(&report).last()
    );
    // The fd the plugin installed, close-on-exec.
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{INSTALLED_FD}")).expect("installed fd");
    assert_eq!(link, Path::new("/dev/null"));
    let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{INSTALLED_FD}")).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .expect("flags");
    assert_ne!(flags & libc::O_CLOEXEC as u32, 0, "{fdinfo}");
}

#[test]
fn a_failing_hook_fails_the_dump_and_leaves_the_task_running() {
    if skip_unless_root("a_failing_hook_fails_the_dump_and_leaves_the_task_running") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = ScratchDir::new("plugin-hooks-fail");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let (pid, _guard, addr, vma, report) = start(&scratch);
    let (report_fd, report_ino) = report_fd(pid, &report);
    let armed = Armed::new(Arm {
        pid,
        addr,
        vma,
        report_fd,
        report_ino,
        fail_at: Some("after-freeze"),
    });

    let err = dump(&DumpOptions::new(pid, &images)).expect_err("the hook fails");
    assert!(
        matches!(
            &err,
            DumpError::Hook {
                plugin: "hooktest",
                stage: "after-freeze",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("hooktest"), "{err}");
    assert_eq!(
        armed.take_seen(),
        ["before-freeze", "after-freeze", "dump-failed"]
    );
    // Resumed: it keeps ticking, and no image (not even the plugin's) is left.
    let n = lines(&report).len();
    wait_lines(&report, n + 2, Duration::from_secs(10));
    assert!(pid_exists(pid));
    let left: Vec<_> = std::fs::read_dir(&images).expect("images").collect();
    assert!(left.is_empty(), "{left:?}");

    // The same at the restore: a failing before-resume hook kills the restored task.
    armed.set_fail(None);
    let mut d = DumpOptions::new(pid, &images);
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    drop(_guard);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "{pid} still taken"
    );
    // The claim is in the VMA's own entry of mm.img (fields of ours), not in a side file.
    assert!(!images.join("criu-rs-vma-plugins.txt").exists());
    let dir = ImageDir::open(&images).expect("images");
    let mm_path = images.join(format!("mm-{pid}.img"));
    let original = std::fs::read(&mm_path).expect("mm image");
    let mut mm: MmEntry = dir.read_single(ImageKind::Mm, pid as u64).expect("mm");
    let mut claimed: Vec<_> = mm
        .vmas
        .iter_mut()
        .filter(|e| e.criu_rs_plugin.is_some())
        .collect();
    assert_eq!(claimed.len(), 1, "one claimed VMA");
    assert_eq!(claimed[0].start, vma);
    assert_eq!(claimed[0].criu_rs_plugin.as_deref(), Some("hooktest"));
    // A claimed VMA whose plugin is not loaded: refused before any task is created.
    claimed[0].criu_rs_plugin = Some("nosuch".into());
    std::fs::remove_file(&mm_path).expect("remove mm");
    dir.write_single(ImageKind::Mm, pid as u64, &mm)
        .expect("write mm");
    let err = restore(&restore_opts(&images)).expect_err("plugin missing");
    let msg = err.to_string();
    assert!(
        msg.contains("nosuch")
            && msg.contains("--plugin-dir")
            && msg.contains(&format!("{vma:#x}")),
        "{msg}"
    );
    assert!(!pid_exists(pid));
    std::fs::write(&mm_path, original).expect("write mm");

    armed.set_fail(Some("before-resume"));
    armed.take_seen();
    let _restored = PidGuard::new(pid);
    let err = restore(&restore_opts(&images)).expect_err("the hook fails");
    assert!(
        matches!(
            &err,
            RestoreError::Hook {
                plugin: "hooktest",
                stage: "before-resume",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        armed.take_seen(),
        [
            "before-restore",
            "restore-vma",
            "after-tasks-exist",
            "restore-task",
            "before-resume",
            "restore-failed"
        ]
    );
    assert!(
        wait_pid_gone(pid, Duration::from_secs(5)),
        "the half-restored task {pid} is still there"
    );
}
