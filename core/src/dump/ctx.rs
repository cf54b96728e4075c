//! The core's [`DumpContext`] for plugins, on top of [`ImageDir`], with the task services
//! (memory, remote syscalls, fds) on the frozen tree.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use std::os::fd::OwnedFd;

use criu_plugin_api::{
    DumpContext, DumpOptions as PluginDumpOptions, DumpStage, HookFailure, ImageRef, Plugin,
    PluginError, PluginStates, TaskIds, VmaDesc, catch_hook_panic, find_vma_handler,
    run_dump_stage,
};
use nix::unistd::Pid;

use crate::plugins::services::{VmaClaim, dup_task_fd, remote_syscall, task_err};

use super::memory::Vma;
use criu_proto::images::FileEntry;

use crate::image::{ImageDir, ImageKind, ImageWriter};

use super::DumpError;
use super::files::SeenFd;
use super::inflight::InFlight;
use super::shmem::ShmemState;

pub struct CoreDumpContext<'d> {
    dir: &'d ImageDir,
    writers: HashMap<(ImageKind, u64), ImageWriter>,
    next_file_id: u32,
    memo: HashMap<String, u64>,
    options: PluginDumpOptions,
    plugins_used: BTreeSet<&'static str>,
    /// Images, plugin files and shmem objects plugins wrote so far: a hook that changed it
    /// dumped something (its plugin goes to the inventory).
    plugin_writes: u64,
    /// Plugin-owned files we created (removed with the images on failure).
    pub plugin_files: Vec<std::path::PathBuf>,
    /// The frozen tree (live tasks, zombies left out); empty until frozen and once released.
    tree: Vec<TaskIds>,
    /// The file id of every fd reached so far, by (pid, fd).
    fd_ids: HashMap<(i32, i32), u32>,
    /// Shmem objects written (anonymous shared memory, plugins' `dump_shmem`) and the
    /// pages-file counter every pages file takes its id from.
    pub shmem: ShmemState,
    /// Every plugin's own state for this dump, lent to each of its calls
    /// ([`CoreDumpContext::as_plugin`]) and dropped with the context.
    states: PluginStates,
    /// The plugins of this dump (for files in flight, dispatched from inside a plugin call).
    pub(super) plugins: Vec<&'static dyn Plugin>,
    /// Every open file description given an id so far, for sharing ids by `kcmp`.
    pub(super) seen_fds: Vec<SeenFd>,
    /// Files in flight held by criu and those waiting to be dumped.
    pub(super) in_flight: InFlight,
    /// With `--file-locks`: the first lock the tree holds, refused at the end of the dump if
    /// no plugin wrote `filelocks.img` (none loaded: the lock would be lost).
    pub(super) first_lock: Option<DumpError>,
}

impl std::fmt::Debug for CoreDumpContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreDumpContext")
            .field("dir", &self.dir.path())
            .field("next_file_id", &self.next_file_id)
            .finish()
    }
}

fn plugin_err(image: impl std::fmt::Display, e: impl std::fmt::Display) -> PluginError {
    PluginError::bad_image(image.to_string(), e.to_string())
}

impl<'d> CoreDumpContext<'d> {
    pub fn new(dir: &'d ImageDir, ghost_limit: u64, shell_job: bool) -> Self {
        let mut options = PluginDumpOptions::default();
        options.ghost_limit = ghost_limit;
        options.shell_job = shell_job;
        Self::with_options(dir, options)
    }

    /// [`CoreDumpContext::new`] with every option plugins see.
    pub fn with_options(dir: &'d ImageDir, options: PluginDumpOptions) -> Self {
        CoreDumpContext {
            dir,
            writers: HashMap::new(),
            next_file_id: 1,
            memo: HashMap::new(),
            options,
            plugins_used: BTreeSet::new(),
            plugin_writes: 0,
            plugin_files: Vec::new(),
            tree: Vec::new(),
            fd_ids: HashMap::new(),
            shmem: ShmemState::default(),
            states: PluginStates::default(),
            plugins: Vec::new(),
            seen_fds: Vec::new(),
            in_flight: InFlight::default(),
            first_lock: None,
        }
    }

    /// Creates every plugin's state for this dump ([`Plugin::new_state`]); the first failure
    /// names the plugin.
    pub fn start_plugin_states(
        &mut self,
        plugins: &[&'static dyn Plugin],
        pid: i32,
    ) -> Result<(), DumpError> {
        self.plugins = plugins.to_vec();
        self.states = PluginStates::start(plugins, criu_plugin_api::RunKind::Dump).map_err(
            |(plugin, source)| DumpError::Hook {
                pid,
                plugin,
                stage: "new_state",
                source,
            },
        )?;
        Ok(())
    }

    /// Runs `f` with this context as `plugin` sees it: its own state lent for the call.
    pub fn as_plugin<R>(&mut self, plugin: &str, f: impl FnOnce(&mut dyn DumpContext) -> R) -> R {
        // The states are taken out for the call: the scope borrows them beside the context.
        let mut states = std::mem::take(&mut self.states);
        let r = states.dump_scope(plugin, self, f);
        self.states = states;
        r
    }

    /// Every plugin's hook at `stage`, each with its own state.
    pub fn run_stage(
        &mut self,
        plugins: &[&'static dyn Plugin],
        stage: DumpStage,
    ) -> Result<(), HookFailure> {
        let mut states = std::mem::take(&mut self.states);
        let r = run_dump_stage(plugins, stage, self, &mut states);
        self.states = states;
        r
    }

    /// Offers every VMA of frozen task `pid` to the plugins' VMA handlers and has the
    /// claiming plugin dump it. Returns which VMAs were claimed (the core dumps none of their
    /// pages; each claimed one's `vma_entry` names its plugin, for the restore); empty, with
    /// no work done, when no plugin has a VMA handler.
    pub fn dump_claimed_vmas(
        &mut self,
        plugins: &[&'static dyn Plugin],
        pid: i32,
        vmas: &mut [Vma],
    ) -> Result<Vec<bool>, DumpError> {
        if !plugins.iter().any(|p| p.vma_handler().is_some()) {
            return Ok(Vec::new());
        }
        // The names (`[anon:x]`, paths) from maps; a growsdown VMA may start a guard page
        // lower in our list, so match by end.
        let names: HashMap<u64, String> = crate::proc::maps::read_maps(pid)
            .map_err(|e| DumpError::proc(pid, "memory", e))?
            .into_iter()
            .map(|m| (m.end, m.path))
            .collect();
        let mut claimed = Vec::with_capacity(vmas.len());
        for v in vmas {
            let e = &v.entry;
            let desc = VmaDesc {
                pid,
                start: e.start,
                end: e.end,
                prot: e.prot,
                flags: e.flags,
                pgoff: e.pgoff,
                name: names.get(&e.end).cloned().unwrap_or_default(),
            };
            let Some((plugin, handler)) = find_vma_handler(plugins, &desc) else {
                claimed.push(false);
                continue;
            };
            let name = plugin.info().name;
            tracing::debug!(
                plugin = name,
                pid,
                start = desc.start,
                "VMA dumped by a plugin"
            );
            self.as_plugin(name, |ctx| {
                catch_hook_panic(name, || handler.dump_vma(ctx, &desc))
            })
            .map_err(|source| DumpError::Hook {
                pid,
                plugin: name,
                stage: "dump_vma",
                source,
            })?;
            self.note_plugin(name);
            self.dump_pending_in_flight()?;
            VmaClaim::record(&mut v.entry, name, &desc.name);
            claimed.push(true);
        }
        Ok(claimed)
    }

    /// Every task handler's [`dump_task`](criu_plugin_api::TaskHandler::dump_task) for
    /// frozen `task`.
    pub fn dump_task_state(
        &mut self,
        plugins: &[&'static dyn Plugin],
        task: &TaskIds,
    ) -> Result<(), DumpError> {
        for p in plugins {
            let Some(h) = p.task_handler() else { continue };
            let name = p.info().name;
            let writes = self.plugin_writes;
            self.as_plugin(name, |ctx| {
                catch_hook_panic(name, || h.dump_task(ctx, task))
            })
            .map_err(|source| DumpError::Hook {
                pid: task.pid,
                plugin: name,
                stage: "dump_task",
                source,
            })?;
            if self.plugin_writes != writes {
                self.note_plugin(name);
            }
            self.dump_pending_in_flight()?;
        }
        Ok(())
    }

    /// The tasks the task services may touch: the frozen tree, or nothing.
    pub fn set_tree(&mut self, tree: Vec<TaskIds>) {
        self.tree = tree;
    }

    /// The pid of the frozen task holding `tid`, or why the service cannot touch it.
    pub(super) fn frozen_pid(&self, tid: i32, service: &'static str) -> Result<i32, PluginError> {
        if self.tree.is_empty() {
            return Err(PluginError::Unavailable {
                service,
                why: "the tree is not frozen (before-freeze, or released)".into(),
            });
        }
        self.tree
            .iter()
            .find(|t| t.tids.contains(&tid))
            .map(|t| t.pid)
            .ok_or_else(|| PluginError::Unavailable {
                service,
                why: format!("{tid} is not a live task of the dumped tree"),
            })
    }

    fn writer(
        &mut self,
        kind: ImageKind,
        id: u64,
    ) -> Result<&mut ImageWriter, crate::image::ImageError> {
        match self.writers.entry((kind, id)) {
            std::collections::hash_map::Entry::Occupied(o) => Ok(o.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                Ok(v.insert(self.dir.writer(kind, id)?))
            }
        }
    }

    pub fn append_file_entry(&mut self, pid: i32, e: &FileEntry) -> Result<(), DumpError> {
        self.writer(ImageKind::Files, 0)
            .and_then(|w| w.write_entry(e))
            .map_err(|source| DumpError::Image {
                pid,
                step: "files",
                source,
            })
    }

    /// Records that fd `fd` of `pid` is file `id` ([`DumpContext::file_id_of`]).
    pub fn set_fd_id(&mut self, pid: i32, fd: i32, id: u32) {
        self.fd_ids.insert((pid, fd), id);
    }

    pub fn note_plugin(&mut self, name: &'static str) {
        self.plugins_used.insert(name);
    }

    pub fn plugins_used(&self) -> Vec<String> {
        self.plugins_used.iter().map(|s| s.to_string()).collect()
    }

    /// How many images, plugin files and shmem objects plugins have written so far.
    pub fn plugin_writes(&self) -> u64 {
        self.plugin_writes
    }

    pub fn files_written(&self) -> u32 {
        self.next_file_id - 1
    }

    /// Flush and close every image the context opened. `files.img` is complete then: no
    /// more files in flight.
    pub fn finish(&mut self, pid: i32) -> Result<(), DumpError> {
        self.in_flight.close();
        for (_, w) in self.writers.drain() {
            w.finish().map_err(|source| DumpError::Image {
                pid,
                step: "files",
                source,
            })?;
        }
        Ok(())
    }
}

impl DumpContext for CoreDumpContext<'_> {
    fn write_entry(
        &mut self,
        image: ImageRef,
        entry: &[u8],
        extra: &[u8],
    ) -> Result<(), PluginError> {
        let kind = image.kind.to_proto();
        let id = image.id.unwrap_or(0);
        self.plugin_writes += 1;
        self.writer(kind, id)
            .and_then(|w| w.write_raw_entry(entry, extra))
            .map_err(|e| plugin_err(image, e))
    }

    fn write_plugin_file(&mut self, name: &str, data: &[u8]) -> Result<(), PluginError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(plugin_err(name, "plugin file names are plain names"));
        }
        let path = self.dir.path().join(name);
        self.plugin_writes += 1;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| plugin_err(name, e))?;
        // `mode` applies only to a new file: one left by an earlier dump keeps its own, and
        // plugin files may hold secrets (memfd_secret contents).
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| plugin_err(name, e))?;
        if !self.plugin_files.contains(&path) {
            self.plugin_files.push(path);
        }
        f.write_all(data).map_err(|e| plugin_err(name, e))
    }

    fn new_file_id(&mut self) -> u32 {
        let id = self.next_file_id;
        self.next_file_id += 1;
        id
    }

    fn memo(&self, key: &str) -> Option<u64> {
        self.memo.get(key).copied()
    }

    fn set_memo(&mut self, key: &str, value: u64) {
        self.memo.insert(key.to_string(), value);
    }

    fn options(&self) -> &PluginDumpOptions {
        &self.options
    }

    fn tasks(&self) -> Vec<TaskIds> {
        self.tree.clone()
    }

    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        self.frozen_pid(pid, "read_task_memory")?;
        crate::sys::vm::read_exact(Pid::from_raw(pid), addr, buf)
            .map_err(|e| task_err(pid, format!("reading {} bytes at {addr:#x}", buf.len()), e))
    }

    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.frozen_pid(pid, "write_task_memory")?;
        crate::sys::vm::write_all(Pid::from_raw(pid), addr, data)
            .map_err(|e| task_err(pid, format!("writing {} bytes at {addr:#x}", data.len()), e))
    }

    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        let pid = self.frozen_pid(tid, "remote_syscall")?;
        remote_syscall(pid, tid, nr, args)
    }

    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        self.frozen_pid(pid, "dup_task_fd")?;
        dup_task_fd(pid, fd)
    }

    fn file_id_of(&self, pid: i32, fd: i32) -> Option<u32> {
        self.fd_ids.get(&(pid, fd)).copied()
    }

    fn epoll_target_is(
        &mut self,
        pid: i32,
        epfd: i32,
        tfd: i32,
        toff: u32,
        fd: i32,
    ) -> Result<bool, PluginError> {
        self.frozen_pid(pid, "epoll_target_is")?;
        let p = Pid::from_raw(pid);
        match crate::sys::kcmp::epoll_target(p, fd, p, epfd, tfd, toff) {
            Ok(order) => Ok(order.is_equal()),
            // No fd `fd` in the task: certainly not the target.
            Err(e) if e.errno == nix::errno::Errno::EBADF => Ok(false),
            Err(e) => Err(task_err(
                pid,
                format!("kcmp(KCMP_EPOLL_TFD) of fd {fd} against target {tfd} of epoll fd {epfd}"),
                e,
            )),
        }
    }

    fn dump_shmem(
        &mut self,
        shmid: u64,
        file: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), PluginError> {
        let image = format!("pagemap-shmem-{shmid}.img");
        let f = std::fs::File::from(
            file.try_clone_to_owned()
                .map_err(|e| plugin_err(&image, e))?,
        );
        let what = format!("shmem object {shmid}");
        self.plugin_writes += 1;
        self.shmem
            .dump_object(0, self.dir, shmid, &f, &what)
            .map_err(|e| PluginError::Image {
                image,
                source: Box::new(e),
            })
    }

    fn dump_file_in_flight(
        &mut self,
        owner_pid: i32,
        file: std::os::fd::BorrowedFd<'_>,
    ) -> Result<u32, PluginError> {
        self.take_in_flight(owner_pid, file)
    }
}

#[cfg(test)]
mod tests {
    use criu_plugin_api::DumpContext;

    use super::*;

    #[test]
    fn plugin_files_are_0600_even_over_an_older_file() {
        let dir = std::env::temp_dir().join(format!("criu-ctx-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let images = ImageDir::create(&dir).unwrap();
        let old = dir.join("old.bin");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut ctx = CoreDumpContext::new(&images, 0, false);
        ctx.write_plugin_file("new.bin", b"secret").unwrap();
        ctx.write_plugin_file("old.bin", b"secret").unwrap();
        for f in ["new.bin", "old.bin"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
