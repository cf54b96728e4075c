//! The file restorers' last step before resume (plugin API 0.5) and per-run plugin state,
//! end to end: a test plugin linked into this binary takes eventfds over (priority 50,
//! below the built-in eventfd plugin, which is not linked here) for `wl_epoll fork`, a parent
//! and its child sharing an epoll whose targets include the eventfd. Its dump state numbers
//! the eventfds it dumps; its restore state is shared by its restorer and its stage hooks.
//! Its `finish` records the (pid, fd, id) it got and checks that every task of the tree
//! exists and is still stopped under the restorer; the test checks that list against the
//! tasks' fds before the dump and `files.img`, and the order of the calls; then the
//! workload checks its epoll and eventfd itself.

use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::proto::images::{EventfdFileEntry, FdTypes, FileEntry};
use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, InstalledFd, Plugin, PluginError,
    PluginInfo, PluginRegistration, PluginState, RestoreContext, RestoreStage, RunKind, StageHooks,
};
use criu_tests::{PidGuard, ScratchDir, TreeGuard, skip_unless_root};
use nix::sys::eventfd::{EfdFlags, EventFd};

use criu_plugin_epoll as _;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod plugin_support;
mod restore_common;

use restore_common::{lines, spawn_bg, wait_lines};

const WL: &str = env!("CARGO_BIN_EXE_wl_epoll");
const LINK: &str = "anon_inode:[eventfd]";

/// The calls the plugin saw, in order (`finish` with what it was given).
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALLED: Mutex<Vec<InstalledFd>> = Mutex::new(Vec::new());

fn seen(what: impl Into<String>) {
    SEEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(what.into());
}

fn err(message: String) -> PluginError {
    PluginError::Plugin {
        plugin: "finishtest".into(),
        message,
    }
}

struct FinishTest;

/// Dump: eventfds dumped so far. Restore: file ids opened, shared with the hooks.
#[derive(Default)]
struct Count(u32);
#[derive(Default)]
struct Opened(Vec<u32>);

impl Plugin for FinishTest {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "finishtest",
            version: "0",
            priority: 50,
            api_version: API_VERSION,
        }
    }
    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }
    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(Some(match run {
            RunKind::Dump => Box::new(Count::default()),
            RunKind::Restore => Box::new(Opened::default()),
        }))
    }
}

impl StageHooks for FinishTest {
    fn restore_stages(&self) -> &[RestoreStage] {
        &RestoreStage::ALL
    }
    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        let opened = ctx.state::<Opened>()?.0.len();
        seen(format!("{} opened={opened}", stage.name()));
        Ok(())
    }
}

impl FdHandler for FinishTest {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Eventfd]
    }
    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link == LINK
    }
    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        let counter = fd.fdinfo.hex::<u64>("eventfd-count")?;
        let n = ctx.state::<Count>()?;
        n.0 += 1;
        seen(format!("dump #{}", n.0));
        Ok(FileEntry {
            r#type: FdTypes::Eventfd as i32,
            id,
            efd: Some(EventfdFileEntry {
                id,
                flags: fd.fdinfo.file_flags(),
                fown: fd.owner.to_entry(),
                counter,
                criu_rs_semaphore: None,
            }),
            ..Default::default()
        })
    }
    fn start_restore(
        &self,
        _: &mut dyn RestoreContext,
        _: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(Restorer))
    }
}

struct Restorer;

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let efd = entry
            .efd
            .as_ref()
            .ok_or_else(|| err(format!("entry {} without efd", entry.id)))?;
        let mut flags = EfdFlags::EFD_CLOEXEC;
        if efd.flags & libc::O_NONBLOCK as u32 != 0 {
            flags |= EfdFlags::EFD_NONBLOCK;
        }
        let fd = EventFd::from_value_and_flags(0, flags).map_err(|e| err(e.to_string()))?;
        if efd.counter != 0 {
            fd.write(efd.counter).map_err(|e| err(e.to_string()))?;
        }
        ctx.state::<Opened>()?.0.push(entry.id);
        seen("open");
        Ok(fd.into())
    }

    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        let opened = ctx.state::<Opened>()?.0.clone();
        // Every task exists and is still stopped under the restorer: in a ptrace stop, and
        // a remote syscall (only possible in a stopped tracee) answers.
        for t in ctx.tasks() {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", t.pid))
                .map_err(|e| err(format!("task {}: {e}", t.pid)))?;
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            if state != Some('t') {
                return Err(err(format!(
                    "task {} in state {state:?}, not stopped",
                    t.pid
                )));
            }
            let pid = ctx.remote_syscall(t.pid, libc::SYS_getpid, [0; 6])?;
            if pid != i64::from(t.pid) {
                return Err(err(format!("remote getpid in {} gave {pid}", t.pid)));
            }
        }
        for i in installed {
            if !opened.contains(&i.id) {
                return Err(err(format!("finish lists id {} never opened", i.id)));
            }
        }
        seen(format!("finish tasks={}", ctx.tasks().len()));
        INSTALLED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(installed);
        Ok(())
    }
}

static PLUGIN: FinishTest = FinishTest;
inventory::submit! { PluginRegistration::new(&PLUGIN) }

/// Fd numbers of `pid`'s eventfds.
fn eventfds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == LINK))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn finish_gets_the_installed_fds_with_every_task_stopped() {
    if skip_unless_root("finish_gets_the_installed_fds_with_every_task_stopped") {
        return;
    }
    let work = ScratchDir::new("plugin-finish");
    let report = work.path().join("report");
    let pid = spawn_bg("setsid", &[WL, report.to_str().unwrap(), "fork"]);
    let mut guard = TreeGuard::new([pid]);
    let l = wait_lines(&report, 3, Duration::from_secs(15));
    let child: i32 = l
        .iter()
        .find_map(|l| l.split("child=").nth(1))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("no child line in {l:?}"));
    guard.extend([child]);
    let (efd_parent, efd_child) = (eventfds(pid), eventfds(child));
    assert_eq!(efd_parent.len(), 1, "{efd_parent:?}");
    assert_eq!(efd_parent, efd_child, "the child shares the fd");

    let imgs = ScratchDir::new("plugin-finish-imgs");
    SEEN.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let tree = restore_common::tree_ids(pid);
    restore_common::dump_tree_and_kill(pid, imgs.path(), &tree, guard, &report);
    // One description shared by both tasks: dumped once, numbered by the dump state.
    assert_eq!(*SEEN.lock().unwrap_or_else(|p| p.into_inner()), ["dump #1"]);
    let mut ctx = plugin_support::DirContext::new(imgs.path());
    let entries: Vec<FileEntry> =
        criu_plugin_api::read_messages(&mut ctx, criu_plugin_api::ImageRef::FILES)
            .expect("files.img");
    let id = entries
        .iter()
        .find(|e| e.r#type == FdTypes::Eventfd as i32)
        .map(|e| e.id)
        .expect("an EVENTFD entry");

    SEEN.lock().unwrap_or_else(|p| p.into_inner()).clear();
    INSTALLED.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let before = lines(&report).len();
    let _guards = (PidGuard::new(child), PidGuard::new(pid));
    restore(&RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("restore: {e:?}"));
    let fd = efd_parent[0];
    let mut want = vec![
        InstalledFd { pid, fd, id },
        InstalledFd { pid: child, fd, id },
    ];
    want.sort();
    assert_eq!(*INSTALLED.lock().unwrap_or_else(|p| p.into_inner()), want);
    assert_eq!(
        *SEEN.lock().unwrap_or_else(|p| p.into_inner()),
        [
            "before-restore opened=0",
            "open",
            "after-tasks-exist opened=1",
            "before-resume opened=1",
            "finish tasks=2",
            "after-resume opened=1",
        ]
    );
    // The workload checks its epoll (the eventfd among its targets) round after round.
    let l = wait_lines(&report, before + 3, Duration::from_secs(15));
    assert!(
        !l.iter().any(|l| l.contains("FAIL")),
        "workload failed: {:?}",
        l.iter().rev().take(5).collect::<Vec<_>>()
    );
    assert!(l.last().is_some_and(|l| l.ends_with(" ok")), "{l:?}");
}
