//! Opening files through the resource plugins (`criu-plugin-api`): the core's
//! [`RestoreContext`] for them (with the task services while the tasks are stopped under
//! us), and a [`FileOpener`] that asks the first plugin restoring each `files.img` entry and
//! runs the plugins' stage hooks.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use criu_plugin_api::{
    FileRestore, HookFailure, ImageRef, Plugin, PluginError, PluginStates, RestoreContext,
    RestoreStage, TaskFd, TaskIds, catch_hook_panic, run_restore_stage,
};
use criu_proto::images::FileEntry;
use nix::unistd::Pid;

use super::files::FileOpener;
use crate::plugins::services::{VMA_CLAIMS_FILE, VmaClaim, dup_task_fd, remote_syscall, task_err};

/// What the plugins see of this restore.
#[derive(Debug)]
pub struct Ctx {
    dir: PathBuf,
    pid: i32,
    /// Pids of the restored tree (identity: clone3 set_tid gives every task its old pid).
    pids: Vec<i32>,
    /// The tree's tasks and threads (zombies left out).
    tasks: Vec<TaskIds>,
    /// Every task's fds as the images list them.
    fds: BTreeMap<i32, Vec<TaskFd>>,
    /// The tasks exist and are stopped under us: the task services work.
    live: bool,
    kept: BTreeMap<String, OwnedFd>,
    options: criu_plugin_api::RestoreOptions,
    /// Image pid -> pid in criu's namespace of every task and thread (differ in a new pid
    /// namespace), once they exist; empty before.
    hosts: BTreeMap<i32, i32>,
    /// Where tasks in a new pid namespace fetch fds from (see `ns::relay`).
    relay: Option<std::sync::Arc<super::ns::relay::Relay>>,
    /// Fd lenders by (uid, gid), for tasks that may not ptrace us; only while live.
    lenders: BTreeMap<(u32, u32), super::fd_lender::FdLender>,
    /// The anonymous shared memory objects, once the tree's restore starts.
    shmem: Option<super::shmem::SharedObjects>,
}

impl RestoreContext for Ctx {
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        let kind = image.kind.to_proto();
        let name = kind.file_name(image.id.unwrap_or(0));
        let path = self.dir.join(&name);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PluginError::bad_image(name, format!("read: {e}")));
            }
        };
        let off = criu_proto::framing::check_header(kind, &data)
            .map_err(|e| PluginError::bad_image(name.clone(), e.to_string()))?;
        Ok(Some(data[off..].to_vec()))
    }

    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        if name.contains('/') {
            return Err(PluginError::bad_image(
                name,
                "plugin file names have no '/'",
            ));
        }
        match std::fs::read(self.dir.join(name)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PluginError::bad_image(name, format!("read: {e}"))),
        }
    }

    fn current_pid(&self) -> i32 {
        self.pid
    }

    fn restored_pid(&self, old: i32) -> Option<i32> {
        self.pids.contains(&old).then_some(old)
    }

    fn host_pid(&self, image_pid: i32) -> Option<i32> {
        // Filled (for every created task and thread) just before AfterTasksExist.
        self.hosts.get(&image_pid).copied()
    }

    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError> {
        // Kept fds stay in the restorer: a restored task only gets the fds installed for it.
        self.kept.insert(key.to_string(), fd);
        Ok(())
    }

    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>> {
        self.kept.get(key).map(|f| f.as_fd())
    }

    fn options(&self) -> &criu_plugin_api::RestoreOptions {
        &self.options
    }

    fn tasks(&self) -> Vec<TaskIds> {
        self.tasks.clone()
    }

    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        self.live_pid(pid, "read_task_memory")?;
        crate::sys::vm::read_exact(Pid::from_raw(self.host(pid)), addr, buf)
            .map_err(|e| task_err(pid, format!("reading {} bytes at {addr:#x}", buf.len()), e))
    }

    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.live_pid(pid, "write_task_memory")?;
        crate::sys::vm::write_all(Pid::from_raw(self.host(pid)), addr, data)
            .map_err(|e| task_err(pid, format!("writing {} bytes at {addr:#x}", data.len()), e))
    }

    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        let pid = self.live_pid(tid, "remote_syscall")?;
        remote_syscall(self.host(pid), self.host(tid), nr, args)
    }

    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        self.live_pid(pid, "dup_task_fd")?;
        dup_task_fd(self.host(pid), fd)
    }

    fn install_fd(
        &mut self,
        pid: i32,
        fd: BorrowedFd<'_>,
        target: i32,
        cloexec: bool,
    ) -> Result<(), PluginError> {
        use std::os::fd::AsRawFd;
        self.live_pid(pid, "install_fd")?;
        let host = self.host(pid);
        // The task fetches the fd from us, or from the relay inside a new pid namespace
        // (see fd_install). Needs the task to be allowed to ptrace its source (before its
        // credentials drop privileges).
        let (source, src_fd) = match &self.relay {
            None => (u64::from(std::process::id()), fd.as_raw_fd()),
            Some(r) => {
                let n = r.put(fd.as_raw_fd()).map_err(|e| {
                    task_err(
                        pid,
                        format!("handing fd {target} to the relay"),
                        std::io::Error::other(e.to_string()),
                    )
                })?;
                (r.inner_pid() as u64, n)
            }
        };
        // Once its credentials are restored the task may not be allowed to ptrace criu
        // (another uid, no CAP_SYS_PTRACE): then it fetches the fd from a lender of its own
        // uid (outside a new pid namespace, where the relay is the only source it sees).
        let refused = std::cell::Cell::new(false);
        let mut call = |nr: i64, args: [u64; 6], what: &str| -> Result<u64, PluginError> {
            let r = remote_syscall(host, host, nr, args)?;
            if (-4095..0).contains(&r) {
                refused.set(nr == libc::SYS_pidfd_getfd && r == -i64::from(libc::EPERM));
                return Err(task_err(
                    pid,
                    format!("remote {what} installing fd {target}"),
                    std::io::Error::from_raw_os_error(-r as i32),
                ));
            }
            Ok(r as u64)
        };
        let direct =
            super::fd_install::install_via_pidfd(&mut call, source, src_fd, target, cloexec);
        if direct.is_ok() || !refused.get() || self.relay.is_some() {
            return direct;
        }
        let lender_err = |e: std::io::Error| task_err(pid, format!("fd lender for fd {target}"), e);
        let ids = super::fd_lender::real_ids(host).map_err(lender_err)?;
        let lender = match self.lenders.entry(ids) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let lender = super::fd_lender::FdLender::spawn(ids).map_err(lender_err)?;
                tracing::debug!(
                    pid,
                    uid = ids.0,
                    gid = ids.1,
                    lender = lender.pid(),
                    "fd lender"
                );
                v.insert(lender)
            }
        };
        let n = lender.lend(fd.as_raw_fd()).map_err(lender_err)?;
        let r = super::fd_install::install_via_pidfd(
            &mut call,
            u64::from(lender.pid()),
            n,
            target,
            cloexec,
        );
        let released = lender.release(n).map_err(lender_err);
        r.and(released)
    }

    fn task_fds(&self, pid: i32) -> Result<Vec<TaskFd>, PluginError> {
        self.fds
            .get(&pid)
            .cloned()
            .ok_or_else(|| PluginError::Unavailable {
                service: "task_fds",
                why: format!("{pid} is not a task of the restored tree"),
            })
    }

    fn anon_shmem(&mut self, shmid: u64, size: u64) -> Result<OwnedFd, PluginError> {
        match &self.shmem {
            Some(objects) => objects.for_plugin(shmid, size),
            None => Err(PluginError::Unavailable {
                service: "anon_shmem",
                why: "the tree's restore has not started".into(),
            }),
        }
    }

    fn restore_shmem(
        &mut self,
        shmid: u64,
        size: u64,
        file: BorrowedFd<'_>,
    ) -> Result<(), PluginError> {
        let image = format!("pagemap-shmem-{shmid}.img");
        let images = super::imgread::Images::open(&self.dir).map_err(|e| PluginError::Image {
            image: image.clone(),
            source: Box::new(e),
        })?;
        let f = std::fs::File::from(
            file.try_clone_to_owned()
                .map_err(|e| PluginError::bad_image(&image, format!("dup of the object: {e}")))?,
        );
        super::shmem::fill_object(&images, shmid, size, &f).map_err(|e| PluginError::Image {
            image,
            source: Box::new(e),
        })
    }
}

impl Ctx {
    /// The pid in criu's namespace of image pid `inner`.
    fn host(&self, inner: i32) -> i32 {
        self.hosts.get(&inner).copied().unwrap_or(inner)
    }

    /// The pid of the live task holding `tid`, or why the service cannot touch it.
    fn live_pid(&self, tid: i32, service: &'static str) -> Result<i32, PluginError> {
        if !self.live {
            return Err(PluginError::Unavailable {
                service,
                why: "the restored tasks are not stopped under the restorer at this stage \
                      (use after-tasks-exist or before-resume)"
                    .into(),
            });
        }
        self.tasks
            .iter()
            .find(|t| t.tids.contains(&tid))
            .map(|t| t.pid)
            .ok_or_else(|| PluginError::Unavailable {
                service,
                why: format!("{tid} is not a live task of the restored tree"),
            })
    }
}

/// Why the plugins' side of the restore is gone.
fn over() -> PluginError {
    PluginError::Unavailable {
        service: "plugin restore",
        why: "the restore is over (its restorers and plugin states were dropped)".into(),
    }
}

/// Opens files with the plugins' restorers.
pub struct PluginOpener<'p> {
    ctx: Ctx,
    /// The restorers and the plugins' states: kept until the restore is over
    /// ([`FileOpener::end`]), so that their last step runs just before the tree resumes.
    files: Option<FileRestore<'p>>,
    plugins: Vec<&'p dyn Plugin>,
    /// VMAs a plugin dumped (restored by it once the tasks exist), its plugin resolved.
    vma_claims: Vec<(&'p dyn Plugin, VmaClaim)>,
}

impl std::fmt::Debug for PluginOpener<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginOpener")
            .field("ctx", &self.ctx)
            .field("files", &self.files)
            .finish()
    }
}

impl<'p> PluginOpener<'p> {
    /// Starts every plugin's restore with all of `files.img`. `tasks`: every task of the
    /// tree (zombies too, with no threads), parents first; `fds`: each one's fds;
    /// `vma_claims_in_mm`: the VMAs the mm images say a plugin dumped; `opts`: `--shell-job`
    /// and `--secret-key`.
    pub fn start(
        plugins: &[&'p dyn Plugin],
        dir: PathBuf,
        tasks: Vec<TaskIds>,
        fds: BTreeMap<i32, Vec<TaskFd>>,
        entries: &[FileEntry],
        vma_claims_in_mm: Vec<VmaClaim>,
        options: criu_plugin_api::RestoreOptions,
    ) -> Result<Self, String> {
        let pids: Vec<i32> = tasks.iter().map(|t| t.pid).collect();
        let tasks = tasks.into_iter().filter(|t| !t.tids.is_empty()).collect();
        let mut ctx = Ctx {
            dir,
            pid: pids.first().copied().unwrap_or(0),
            pids,
            tasks,
            fds,
            live: false,
            kept: BTreeMap::new(),
            options,
            hosts: BTreeMap::new(),
            relay: None,
            lenders: BTreeMap::new(),
            shmem: None,
        };
        // Refuse before any task exists when a VMA's plugin is missing. Images of builds
        // before plugin API 0.5 list the claims in a side file instead of the mm images.
        let mut claims = vma_claims_in_mm;
        match ctx.read_plugin_file(VMA_CLAIMS_FILE) {
            Ok(Some(text)) => {
                claims.extend(
                    VmaClaim::parse_all(&String::from_utf8_lossy(&text))
                        .map_err(|e| e.to_string())?,
                );
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut vma_claims = Vec::with_capacity(claims.len());
        for c in claims {
            let Some(p) = plugins
                .iter()
                .find(|p| p.info().name == c.plugin && p.vma_handler().is_some())
            else {
                return Err(format!(
                    "VMA {:#x}-{:#x} ({}) of pid {} was dumped by plugin {}, which is not loaded \
                     (or has no VMA handler); load it with --plugin-dir",
                    c.vma.start, c.vma.end, c.vma.name, c.vma.pid, c.plugin
                ));
            };
            vma_claims.push((*p, c));
        }
        let files = FileRestore::start(plugins, &mut ctx, entries)
            .map_err(|(name, e)| format!("plugin {name}: {e}"))?;
        Ok(PluginOpener {
            ctx,
            files: Some(files),
            plugins: plugins.to_vec(),
            vma_claims,
        })
    }

    /// Once every task exists: the claimed VMAs' contents ([`Self::restore_tasks`] runs
    /// after the stage's hooks).
    fn restore_vmas(&mut self) -> Result<(), HookFailure> {
        let Some(files) = self.files.as_mut() else {
            return Err(("criu", over()));
        };
        let states = files.states();
        for (p, c) in &self.vma_claims {
            let Some(h) = p.vma_handler() else { continue };
            let name = p.info().name;
            self.ctx.pid = c.vma.pid;
            tracing::debug!(
                plugin = name,
                pid = c.vma.pid,
                start = c.vma.start,
                "VMA restored by a plugin"
            );
            states
                .restore_scope(name, &mut self.ctx, |ctx| {
                    catch_hook_panic(name, || h.restore_vma(ctx, &c.vma))
                })
                .map_err(|e| (name, e))?;
        }
        Ok(())
    }

    /// Per-task state, once the AfterTasksExist hooks ran: what a task handler finds at a
    /// task's fd numbers is final (the unix plugin replaces sockets there in its hook).
    fn restore_tasks(&mut self) -> Result<(), HookFailure> {
        let Some(files) = self.files.as_mut() else {
            return Err(("criu", over()));
        };
        let states = files.states();
        if !self.plugins.iter().any(|p| p.task_handler().is_some()) {
            return Ok(());
        }
        for task in self.ctx.tasks.clone() {
            self.ctx.pid = task.pid;
            for p in &self.plugins {
                let Some(h) = p.task_handler() else { continue };
                let name = p.info().name;
                states
                    .restore_scope(name, &mut self.ctx, |ctx| {
                        catch_hook_panic(name, || h.restore_task(ctx, &task))
                    })
                    .map_err(|e| (name, e))?;
            }
        }
        Ok(())
    }
}

impl FileOpener for PluginOpener<'_> {
    fn set_shmem(&mut self, objects: super::shmem::SharedObjects) {
        self.ctx.shmem = Some(objects);
    }

    fn set_task_pids(
        &mut self,
        pids: &[(i32, i32)],
        relay: Option<std::sync::Arc<super::ns::relay::Relay>>,
    ) {
        self.ctx.hosts = pids.iter().copied().collect();
        self.ctx.relay = relay;
    }

    fn begin_task(&mut self, pid: i32) {
        self.ctx.pid = pid;
    }

    fn open(&mut self, entry: &FileEntry) -> Result<OwnedFd, String> {
        let files = self.files.as_mut().ok_or_else(|| over().to_string())?;
        files
            .open(&mut self.ctx, entry)
            .map(|(fd, plugin)| {
                tracing::debug!(id = entry.id, plugin, "file opened");
                fd
            })
            .map_err(|e| e.to_string())
    }

    fn stage(&mut self, stage: RestoreStage, live: bool) -> Result<(), HookFailure> {
        self.ctx.live = live;
        let mut r = Ok(());
        if stage == RestoreStage::AfterTasksExist {
            r = self.restore_vmas();
        }
        // Hooks see the root as the current task.
        self.ctx.pid = self.ctx.pids.first().copied().unwrap_or(0);
        let r = r.and_then(|()| match self.files.as_mut() {
            Some(files) => run_restore_stage(&self.plugins, stage, &mut self.ctx, files.states()),
            // Over (a failure stage after the end): the hooks run without their states.
            None => run_restore_stage(
                &self.plugins,
                stage,
                &mut self.ctx,
                &mut PluginStates::default(),
            ),
        });
        let r = r.and_then(|()| {
            if stage == RestoreStage::AfterTasksExist {
                self.restore_tasks()
            } else {
                Ok(())
            }
        });
        self.ctx.live = false;
        self.ctx.lenders.clear();
        r
    }

    fn finish(&mut self) -> Result<(), HookFailure> {
        self.ctx.live = true;
        self.ctx.pid = self.ctx.pids.first().copied().unwrap_or(0);
        let fds = self.ctx.fds.clone();
        let r = match self.files.as_mut() {
            Some(files) => files.finish(&mut self.ctx, &fds),
            None => Err(("criu", over())),
        };
        self.ctx.live = false;
        self.ctx.lenders.clear();
        r
    }

    fn end(&mut self) {
        // Restorers and plugin states first (they may hold duplicates of kept fds), then
        // the kept fds: nothing of the restore stays open in the restorer.
        self.files = None;
        self.ctx.kept.clear();
        self.ctx.relay = None;
    }
}
