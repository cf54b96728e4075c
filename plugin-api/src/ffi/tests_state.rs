//! API 0.5 across the boundary, both sides in one process: a plugin's own state for a dump
//! and a restore (created by the plugin, lent back to each of its calls, dropped by its own
//! code), and the restorer's last step before resume with the fds it installed.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use criu_proto::images::{FdTypes, FileEntry, PipeEntry};

use super::guest::{ExportedPlugin, module};
use super::host::from_module;
use crate::testing::{MemoryImages, own_fd_desc};
use crate::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestore, FileRestorer, InstalledFd,
    Plugin, PluginError, PluginInfo, PluginState, PluginStates, RestoreContext, RestoreStage,
    RunKind, StageHooks, TaskFd, run_dump_stage, run_restore_stage,
};

/// States alive right now (created minus dropped).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// What the restorer's finish saw.
static FINISHED: Mutex<Vec<InstalledFd>> = Mutex::new(Vec::new());

struct Stateful;

/// The dump state: how many descriptions were dumped, and what the hook saw.
struct DumpState {
    dumped: u32,
    _live: Live,
}

/// The restore state: the ids opened, shared by the restorer and the stage hook.
struct RestoreState {
    opened: Vec<u32>,
    _live: Live,
}

struct Live;
impl Live {
    fn new() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Live
    }
}
impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

fn fail(message: String) -> PluginError {
    PluginError::Plugin {
        plugin: "stateful".into(),
        message,
    }
}

impl Plugin for Stateful {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "stateful",
            version: "1",
            priority: 1,
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
            RunKind::Dump => Box::new(DumpState {
                dumped: 0,
                _live: Live::new(),
            }),
            RunKind::Restore => Box::new(RestoreState {
                opened: Vec::new(),
                _live: Live::new(),
            }),
        }))
    }
}

impl StageHooks for Stateful {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump]
    }
    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::BeforeResume]
    }
    fn dump_stage(&self, _: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        let n = ctx.state::<DumpState>()?.dumped;
        ctx.write_plugin_file("stateful.txt", n.to_string().as_bytes())
    }
    fn restore_stage(
        &self,
        _: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        let opened = ctx.state::<RestoreState>()?.opened.clone();
        if opened != [7, 8] {
            return Err(fail(format!("hook sees opened {opened:?}")));
        }
        Ok(())
    }
}

impl FdHandler for Stateful {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Pipe]
    }
    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link.starts_with("pipe:")
    }
    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        _: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        let s = ctx.state::<DumpState>()?;
        s.dumped += 1;
        Ok(FileEntry {
            r#type: FdTypes::Pipe as i32,
            id,
            pipe: Some(PipeEntry {
                id,
                pipe_id: s.dumped,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        _: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        // The state exists before the restorer.
        ctx.state::<RestoreState>()?;
        Ok(Box::new(StatefulRestorer))
    }
}

struct StatefulRestorer;

impl FileRestorer for StatefulRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        ctx.state::<RestoreState>()?.opened.push(entry.id);
        let f = std::fs::File::open("/dev/null").map_err(|e| fail(e.to_string()))?;
        Ok(f.into())
    }
    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        if ctx.state::<RestoreState>()?.opened.is_empty() {
            return Err(fail("finish without opens".into()));
        }
        FINISHED.lock().unwrap().extend_from_slice(installed);
        Ok(())
    }
}

struct StatefulExport;
impl ExportedPlugin for StatefulExport {
    fn plugin() -> &'static dyn Plugin {
        static P: Stateful = Stateful;
        &P
    }
}

fn entry(id: u32) -> FileEntry {
    FileEntry {
        r#type: FdTypes::Pipe as i32,
        id,
        pipe: Some(PipeEntry {
            id,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn state_and_finish_cross_the_boundary() {
    let loaded = from_module(module::<StatefulExport>(), Path::new("libstateful.so")).unwrap();
    let plugins: [&dyn Plugin; 1] = [loaded];
    let (r, _w) = nix::unistd::pipe().unwrap();
    let desc = own_fd_desc(r.as_fd()).unwrap();
    let before = LIVE.load(Ordering::SeqCst);

    // Dump: one state for the whole dump, seen by every fd call and the hook.
    let mut imgs = MemoryImages::new(0);
    let mut states = PluginStates::start(&plugins, RunKind::Dump).unwrap();
    assert!(states.has("stateful"));
    assert_eq!(LIVE.load(Ordering::SeqCst), before + 1);
    let h = loaded.fd_handler().unwrap();
    for id in 1..=3 {
        let e = states
            .dump_scope("stateful", &mut imgs, |ctx| h.dump_file(ctx, &desc, id))
            .unwrap();
        assert_eq!(e.pipe.unwrap().pipe_id, id, "the count lives in the state");
    }
    run_dump_stage(&plugins, DumpStage::AfterDump, &mut imgs, &mut states).unwrap();
    assert_eq!(imgs.plugin_files["stateful.txt"], b"3");
    // Without its state (a host that lends none) the plugin gets a clear error.
    let err = h.dump_file(&mut imgs, &desc, 4).unwrap_err();
    assert!(err.to_string().contains("no state"), "{err}");
    drop(states);
    assert_eq!(LIVE.load(Ordering::SeqCst), before, "dropped by the plugin");

    // Restore: the restorer, the hook and finish share one state.
    FINISHED.lock().unwrap().clear();
    let entries = [entry(7), entry(8), entry(9)];
    let mut restore = FileRestore::start(&plugins, &mut imgs, &entries).unwrap();
    assert_eq!(LIVE.load(Ordering::SeqCst), before + 1);
    for e in &entries[..2] {
        let (_fd, name) = restore.open(&mut imgs, e).unwrap();
        assert_eq!(name, "stateful");
    }
    run_restore_stage(
        &plugins,
        RestoreStage::BeforeResume,
        &mut imgs,
        restore.states(),
    )
    .unwrap();
    let fd = |fd, id| TaskFd {
        fd,
        id,
        fd_type: FdTypes::Pipe as i32,
        cloexec: false,
    };
    // Id 9 was never opened by it, id 3 belongs to nobody: neither is listed.
    let task_fds = BTreeMap::from([
        (20, vec![fd(0, 7), fd(5, 9)]),
        (10, vec![fd(3, 8), fd(4, 7), fd(6, 3)]),
    ]);
    restore.finish(&mut imgs, &task_fds).unwrap();
    let ifd = |pid, fd, id| InstalledFd { pid, fd, id };
    assert_eq!(
        *FINISHED.lock().unwrap(),
        [ifd(10, 3, 8), ifd(10, 4, 7), ifd(20, 0, 7)]
    );
    drop(restore);
    assert_eq!(LIVE.load(Ordering::SeqCst), before);
}
