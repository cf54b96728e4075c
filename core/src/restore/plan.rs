//! The restore plan: everything read from the images and validated before any task is
//! created. Building it touches no process, so it is tested on CRIU's reference images.

use std::collections::{BTreeMap, BTreeSet};

use criu_proto::images::{
    CoreEntry, FdinfoEntry, FileEntry, FsEntry, InventoryEntry, MmEntry, PstreeEntry,
    TaskCoreEntry, TaskKobjIdsEntry, ThreadCoreEntry, UserX86FpregsEntry, UserX86RegsEntry,
    core_entry::March,
};

use super::error::{RestoreError, Result, bad};
use super::imgread::{self as img, Images};
use super::mem::{self, PageRun, VmaKind, VmaPlan};

/// Largest fd number we accept from an image (our hard RLIMIT_NOFILE is far below).
pub const MAX_FD: u32 = 1 << 20;
/// Most threads per process we accept from an image.
pub const MAX_THREADS: usize = 32768;

/// The whole restore, tasks in pstree order (every parent before its children).
#[derive(Debug)]
pub struct RestorePlan {
    pub tasks: Vec<TaskPlan>,
    /// `files.img` by id.
    pub files: BTreeMap<u32, FileEntry>,
    /// Ids of `files.img` entries with a `remap-fpath.img` entry (an unlinked file carried
    /// as a ghost): only their plugin can open them, not their path.
    pub remapped: BTreeSet<u32>,
    /// Plugins the dump recorded in `inventory.img` (restore refuses to run without them).
    pub plugins: Vec<String>,
    /// `seccomp.img`: every filter, chained by `prev`.
    pub seccomp: Vec<criu_proto::images::SeccompFilter>,
    /// Anonymous shared memory objects by shmid.
    pub shmem: BTreeMap<u64, super::shmem::ShmemPlan>,
    /// `inventory.img`'s `tcp_close`: dumped with `--tcp-close`, which the restore needs too.
    pub dumped_tcp_close: bool,
}

/// One process.
#[derive(Debug)]
pub struct TaskPlan {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// A session leader that forked children of its old session before its `setsid()`: it
    /// is forked into that session and calls `setsid()` later (see `sessions`).
    pub sid_before: Option<i32>,
    /// Leader first.
    pub threads: Vec<ThreadPlan>,
    pub tc: TaskCoreEntry,
    pub ids: Option<TaskKobjIdsEntry>,
    pub mm: MmEntry,
    pub vmas: Vec<VmaPlan>,
    pub pages: Vec<PageRun>,
    /// `pages-<id>.img`.
    pub pages_image: String,
    pub fds: Vec<FdinfoEntry>,
    pub fs: Option<FsEntry>,
    /// A helper standing in for a dead session or group leader (not in the images).
    pub helper: bool,
    /// Forked with CLONE_FILES / CLONE_FS: it shares its parent's fd table / fs_struct.
    pub share_files: bool,
    pub share_fs: bool,
    /// Forked with CLONE_VM: it shares the address space of `vm_owner` (through its parent)
    /// and rebuilds none (`mm`, `vmas` and `pages` are empty).
    pub share_vm: bool,
    /// Forked with CLONE_SIGHAND (needs `share_vm`): it shares its parent's signal handlers.
    pub share_sighand: bool,
    /// The first task of the tree with this task's address space (itself if none before).
    pub vm_owner: i32,
    /// Its shadow-stack areas (`VMA_AREA_SHSTK`; empty when `share_vm`).
    pub shstk_areas: Vec<criu_shstk::ShadowStackVma>,
    /// What restore does for shadow stacks in this task: its areas, then each thread's
    /// (`crate::shstk`); empty for a task that used none.
    pub shstk_steps: Vec<criu_shstk::RestoreStep>,
}

/// One thread.
#[derive(Debug, Clone)]
pub struct ThreadPlan {
    pub tid: i32,
    pub regs: UserX86RegsEntry,
    pub fpregs: UserX86FpregsEntry,
    pub clear_tid_addr: u64,
    pub tc: ThreadCoreEntry,
    /// `core-<tid>.img`, for error messages.
    pub image: String,
    /// Its shadow stack, if it ran with one (`user_x86_xsave_entry.cet`).
    pub shstk: Option<criu_shstk::ThreadShadowStack>,
}

/// CRIU's task states in `task_core.task_state`.
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;

impl TaskPlan {
    /// A zombie: recreated by forking it and having it exit with the dumped status.
    pub fn is_zombie(&self) -> bool {
        self.tc.task_state == TASK_DEAD
    }
}

impl RestorePlan {
    /// Reads and checks every image a restore of the tree needs.
    pub fn load(images: &Images) -> Result<RestorePlan> {
        let inv: InventoryEntry = images.single("inventory.img", img::INVENTORY_MAGIC)?;
        // CRTOOLS_IMAGES_V1_1: the only layout CRIU 3.x/4.x write.
        if inv.img_version != 2 {
            return Err(bad(
                "inventory.img",
                Some(0),
                format!("image version {} (expected 2)", inv.img_version),
            ));
        }
        if inv.criu_rs_anonymised == Some(true) {
            return Err(bad(
                "inventory.img",
                Some(0),
                "the images were anonymised by `crit anonymise` (memory, registers and names \
                 are gone): they can be read with crit, not restored; restore the original images",
            ));
        }
        let dumped_tcp_close = inv.tcp_close == Some(true);
        let plugins = inv.plugins_entry.map(|p| p.plugins).unwrap_or_default();
        let pstree: Vec<PstreeEntry> = images.entries("pstree.img", img::PSTREE_MAGIC)?;
        if pstree.is_empty() {
            return Err(bad("pstree.img", None, "no tasks"));
        }
        let files_vec: Vec<FileEntry> = if images.exists("files.img") {
            images.entries("files.img", img::FILES_MAGIC)?
        } else {
            Vec::new()
        };
        let mut files = BTreeMap::new();
        for (i, f) in files_vec.into_iter().enumerate() {
            if files.insert(f.id, f).is_some() {
                return Err(bad("files.img", Some(i), "duplicate file id"));
            }
        }
        let remapped = if images.exists("remap-fpath.img") {
            images
                .entries::<criu_proto::images::RemapFilePathEntry>(
                    "remap-fpath.img",
                    img::REMAP_FPATH_MAGIC,
                )?
                .into_iter()
                .map(|r| r.orig_id)
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut seen = BTreeSet::new();
        let mut vm_owners = BTreeMap::new();
        let mut tasks = Vec::with_capacity(pstree.len());
        for (i, p) in pstree.iter().enumerate() {
            let task = load_task(images, i, p, &files, &mut seen, &mut vm_owners)?;
            if i > 0 && !tasks.iter().any(|t: &TaskPlan| t.pid == task.ppid) {
                return Err(bad(
                    "pstree.img",
                    Some(i),
                    format!(
                        "parent {} of {} comes later or is missing",
                        task.ppid, task.pid
                    ),
                ));
            }
            if i > 0
                && tasks
                    .iter()
                    .any(|t: &TaskPlan| t.pid == task.ppid && t.is_zombie())
            {
                return Err(bad(
                    "pstree.img",
                    Some(i),
                    format!("parent {} of {} is a zombie", task.ppid, task.pid),
                ));
            }
            tasks.push(task);
        }
        super::kobj::plan_sharing(&mut tasks)?;
        crate::shstk::plan_tasks(&mut tasks)?;
        let seccomp = super::seccomp::load(images)?;
        let shmem = super::shmem::load_all(images, &tasks)?;
        for th in tasks.iter().flat_map(|t| &t.threads) {
            super::seccomp::chain(&seccomp, th)?;
        }
        Ok(RestorePlan {
            tasks,
            files,
            remapped,
            plugins,
            seccomp,
            shmem,
            dumped_tcp_close,
        })
    }

    /// Refuses, as CRIU's `check_img_inventory`, a restore without an option the dump
    /// recorded as needed at restore (`--tcp-close`: its connections were taken without
    /// repair and can only come back closed).
    pub fn check_options(&self, tcp_close: bool) -> Result<()> {
        if self.dumped_tcp_close && !tcp_close {
            return Err(RestoreError::OptionNeeded {
                option: "tcp-close",
            });
        }
        Ok(())
    }

    /// `--shell-job`, as CRIU does: when the root led neither its session nor its group, the
    /// tasks of the root's session (and of its group) go into the restorer's `sid` (and
    /// `pgid`). Without it, a session or group whose leader is in no image (or outside the
    /// dumped pid namespace, id 0) cannot be restored.
    pub fn place_sessions(&mut self, shell_job: bool, sid: i32, pgid: i32) -> Result<()> {
        let root = &self.tasks[0];
        let (root_pid, old_sid, old_pgid) = (root.pid, root.sid, root.pgid);
        if shell_job {
            for t in &mut self.tasks {
                if old_sid != root_pid && t.sid == old_sid {
                    t.sid = sid;
                }
                if old_pgid != root_pid && t.pgid == old_pgid {
                    t.pgid = pgid;
                }
            }
        }
        // Ours may be 0 too (we run in a pid namespace below our session's leader): tasks
        // placed in it simply inherit it.
        let outside = |v: i32, ours: i32| v == 0 && !(shell_job && ours == 0);
        if let Some(t) = self
            .tasks
            .iter()
            .find(|t| outside(t.sid, sid) || outside(t.pgid, pgid))
        {
            let what = if outside(t.sid, sid) {
                "session"
            } else {
                "process group"
            };
            return Err(RestoreError::Unsupported {
                pid: t.pid,
                what: format!("a {what} whose leader is outside the dumped pid namespace"),
                hint: "restore with --shell-job to place the tree in the current session",
            });
        }
        Ok(())
    }

    /// The path of a regular-file entry, for VMAs, exe, cwd and root.
    pub fn reg_path(&self, id: u32) -> Option<&str> {
        self.files
            .get(&id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.as_str())
    }
}

/// A zombie's plan: only its identity, comm and exit status (CRIU writes nothing else).
#[allow(clippy::too_many_arguments)]
fn zombie_task(
    pid: i32,
    ppid: i32,
    pgid: i32,
    sid: i32,
    p: &PstreeEntry,
    core: CoreEntry,
    seen: &mut BTreeSet<i32>,
    idx: usize,
) -> Result<TaskPlan> {
    if p.threads.len() != 1 || !seen.insert(pid) {
        return Err(bad(
            "pstree.img",
            Some(idx),
            format!("zombie {pid} with threads {:?}", p.threads),
        ));
    }
    if ppid == 0 {
        return Err(bad(
            "pstree.img",
            Some(idx),
            format!("the root {pid} is a zombie; nothing to restore"),
        ));
    }
    Ok(TaskPlan::bare(
        pid,
        ppid,
        pgid,
        sid,
        core.tc.unwrap_or_default(),
    ))
}

impl TaskPlan {
    /// A task with nothing but its identity and `tc` (zombies, helpers).
    pub(crate) fn bare(pid: i32, ppid: i32, pgid: i32, sid: i32, tc: TaskCoreEntry) -> TaskPlan {
        TaskPlan {
            pid,
            ppid,
            pgid,
            sid,
            sid_before: None,
            threads: vec![ThreadPlan {
                tid: pid,
                regs: Default::default(),
                fpregs: Default::default(),
                clear_tid_addr: 0,
                tc: ThreadCoreEntry::default(),
                image: format!("core-{pid}.img"),
                shstk: None,
            }],
            tc,
            ids: None,
            mm: MmEntry::default(),
            vmas: Vec::new(),
            pages: Vec::new(),
            pages_image: String::new(),
            fds: Vec::new(),
            fs: None,
            helper: false,
            share_files: false,
            share_fs: false,
            share_vm: false,
            share_sighand: false,
            vm_owner: pid,
            shstk_areas: Vec::new(),
            shstk_steps: Vec::new(),
        }
    }

    /// A helper standing in for the dead leader `pgid` of a process group of session `sid`:
    /// forked by `ppid`, it leads the group while members join, then exits and is reaped
    /// (CRIU's TASK_HELPER).
    pub fn group_helper(pgid: i32, ppid: i32, sid: i32) -> TaskPlan {
        let tc = TaskCoreEntry {
            task_state: TASK_DEAD,
            comm: "criu-helper".into(),
            ..Default::default()
        };
        let mut h = TaskPlan::bare(pgid, ppid, pgid, sid, tc);
        h.helper = true;
        h
    }

    /// A helper standing in for the dead leader `sid` of a session: forked by `ppid` (a child
    /// subreaper), it calls `setsid()`, forks the session's members that are `ppid`'s
    /// children, then exits so they are re-parented to `ppid` (CRIU's session TASK_HELPER).
    pub fn session_helper(sid: i32, ppid: i32) -> TaskPlan {
        TaskPlan::group_helper(sid, ppid, sid)
    }
}

fn pid_of(image: &str, entry: usize, v: u32) -> Result<i32> {
    i32::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad(image, Some(entry), format!("bad pid {v}")))
}

/// A session or group id: 0 means its leader lives outside the dumped pid namespace (the
/// kernel shows it so), which only a `--shell-job` restore can place.
fn outer_id_of(image: &str, entry: usize, v: u32) -> Result<i32> {
    if v == 0 {
        Ok(0)
    } else {
        pid_of(image, entry, v)
    }
}

fn load_task(
    images: &Images,
    idx: usize,
    p: &PstreeEntry,
    files: &BTreeMap<u32, FileEntry>,
    seen: &mut BTreeSet<i32>,
    vm_owners: &mut BTreeMap<u32, i32>,
) -> Result<TaskPlan> {
    let pid = pid_of("pstree.img", idx, p.pid)?;
    let ppid = if p.ppid == 0 {
        0
    } else {
        pid_of("pstree.img", idx, p.ppid)?
    };
    let pgid = outer_id_of("pstree.img", idx, p.pgid)?;
    let sid = outer_id_of("pstree.img", idx, p.sid)?;
    if p.threads.is_empty() || p.threads.len() > MAX_THREADS {
        return Err(bad(
            "pstree.img",
            Some(idx),
            format!("{} threads", p.threads.len()),
        ));
    }
    if p.threads[0] != p.pid {
        return Err(bad(
            "pstree.img",
            Some(idx),
            "first thread is not the leader",
        ));
    }
    let core_name = format!("core-{pid}.img");
    let probe: CoreEntry = images.single(&core_name, img::CORE_MAGIC)?;
    if probe
        .tc
        .as_ref()
        .is_some_and(|tc| tc.task_state == TASK_DEAD)
    {
        return zombie_task(pid, ppid, pgid, sid, p, probe, seen, idx);
    }
    let mut threads = Vec::with_capacity(p.threads.len());
    let mut leader_core = None;
    for &t in &p.threads {
        let tid = pid_of("pstree.img", idx, t)?;
        if !seen.insert(tid) {
            return Err(bad(
                "pstree.img",
                Some(idx),
                format!("tid {tid} appears twice"),
            ));
        }
        let name = format!("core-{tid}.img");
        let core: CoreEntry = images.single(&name, img::CORE_MAGIC)?;
        if core.mtype != March::X8664 as i32 {
            return Err(bad(
                &name,
                Some(0),
                format!("architecture {} is not x86_64", core.mtype),
            ));
        }
        let ti = core
            .thread_info
            .clone()
            .ok_or_else(|| bad(&name, Some(0), "no thread_info"))?;
        if ti.gpregs.mode.unwrap_or(1) != 1 {
            return Err(bad(
                &name,
                Some(0),
                "32-bit (compat) tasks are not supported",
            ));
        }
        if let Some(tls) = ti
            .tls
            .iter()
            .find(|d| !d.seg_not_present || d.base_addr != 0)
        {
            return Err(bad(
                &name,
                Some(0),
                format!(
                    "GDT TLS entry {} in use (32-bit TLS) is not supported",
                    tls.entry_number
                ),
            ));
        }
        let tc = core.thread_core.clone().unwrap_or_default();
        // A thread that ran with a shadow stack: refused here, before any task exists, when
        // this host cannot give it one.
        let shstk = crate::shstk::refuse_unsupported(
            crate::shstk::host_support(),
            pid,
            tid,
            &name,
            &ti.fpregs,
        )?;
        if tid == pid {
            leader_core = Some(core);
        }
        threads.push(ThreadPlan {
            tid,
            regs: ti.gpregs,
            fpregs: ti.fpregs,
            clear_tid_addr: ti.clear_tid_addr,
            tc,
            image: name,
            shstk,
        });
    }
    let leader_core =
        leader_core.ok_or_else(|| bad("pstree.img", Some(idx), "leader core missing"))?;
    let tc = leader_core
        .tc
        .ok_or_else(|| bad(&core_name, Some(0), "leader has no task_core"))?;
    // task_state 1 = alive, 3 = stopped; zombies (2) were handled above.
    match tc.task_state {
        1 | 3 => {}
        s => {
            return Err(bad(
                &core_name,
                Some(0),
                format!("task state {s} not supported"),
            ));
        }
    }
    if tc.sigactions.is_empty() && images.exists(&format!("sigacts-{pid}.img")) {
        return Err(bad(
            &format!("sigacts-{pid}.img"),
            None,
            "pre-3.x sigaction images are not supported",
        ));
    }
    // CRIU writes the kernel object ids to ids-<pid>.img (older images: into the core).
    // A damaged ids image is reported as such, a missing one named.
    let ids_name = format!("ids-{pid}.img");
    let ids = if images.exists(&ids_name) {
        images.single::<TaskKobjIdsEntry>(&ids_name, img::IDS_MAGIC)?
    } else {
        leader_core.ids.ok_or_else(|| {
            bad(
                &ids_name,
                None,
                format!("missing, and {core_name} has no ids either"),
            )
        })?
    };
    let ids = Some(ids);

    // A process sharing an earlier one's address space (CLONE_VM) finds it rebuilt: its mm
    // and pagemap images are copies of the first one's, not read (`kobj` checks it is
    // forked by a sharer).
    let vm_owner = match ids.as_ref() {
        Some(ids) => *vm_owners.entry(ids.vm_id).or_insert(pid),
        None => pid,
    };
    let (mm, vmas, pages, pages_image) = if vm_owner == pid {
        load_memory(images, pid, files)?
    } else {
        (MmEntry::default(), Vec::new(), Vec::new(), String::new())
    };

    let shstk_areas = crate::shstk::areas_of(pid, &format!("mm-{pid}.img"), &mm)?;
    let fds = load_fds(images, pid, ids.as_ref(), files)?;
    let fs = Some(load_fs(images, pid, files)?);
    Ok(TaskPlan {
        pid,
        ppid,
        pgid,
        sid,
        sid_before: None,
        threads,
        tc,
        ids,
        mm,
        vmas,
        pages,
        pages_image,
        fds,
        fs,
        helper: false,
        share_files: false,
        share_fs: false,
        share_vm: false,
        share_sighand: false,
        vm_owner,
        shstk_areas,
        shstk_steps: Vec::new(),
    })
}

/// `mm-<pid>.img` and `pagemap-<pid>.img`, checked against `files`.
fn load_memory(
    images: &Images,
    pid: i32,
    files: &BTreeMap<u32, FileEntry>,
) -> Result<(MmEntry, Vec<VmaPlan>, Vec<PageRun>, String)> {
    let mm_name = format!("mm-{pid}.img");
    let mm: MmEntry = images.single(&mm_name, img::MM_MAGIC)?;
    let vmas = mem::plan_vmas(&mm_name, &mm.vmas)?;
    super::aio::check(&mm_name, &mm.aios, &vmas)?;
    super::guards::check(&mm_name, &mm.vmas, &vmas)?;
    for v in &vmas {
        // A regular file is reopened by path; any other entry (a memfd) by its plugin.
        if let VmaKind::FilePrivate { file_id } | VmaKind::FileShared { file_id } = v.kind
            && !files.contains_key(&file_id)
        {
            return Err(bad(
                &mm_name,
                Some(0),
                format!(
                    "vma {:#x} maps file id {file_id}, not in files.img",
                    v.start
                ),
            ));
        }
    }
    if mm.exe_file_id != 0
        && files
            .get(&mm.exe_file_id)
            .and_then(|f| f.reg.as_ref())
            .is_none()
    {
        return Err(bad(
            &mm_name,
            Some(0),
            format!("exe file id {} not in files.img", mm.exe_file_id),
        ));
    }
    if !mm.mm_saved_auxv.len().is_multiple_of(2) || mm.mm_saved_auxv.len() > 1024 {
        return Err(bad(
            &mm_name,
            Some(0),
            format!("auxv of {} words", mm.mm_saved_auxv.len()),
        ));
    }

    let pm_name = format!("pagemap-{pid}.img");
    let (pages, pages_image) = load_pages(images, &pm_name, &vmas)?;
    Ok((mm, vmas, pages, pages_image))
}

fn load_pages(images: &Images, pm_name: &str, vmas: &[VmaPlan]) -> Result<(Vec<PageRun>, String)> {
    let (head, entries) = images.pagemap(pm_name)?;
    let pages_image = crate::image::compress_read::pages_file_name(&head)
        .map_err(|w| bad(pm_name, Some(0), w))?;
    let pages_size = crate::image::compress_read::pages_len(&images.path(&pages_image))
        .map_err(|source| RestoreError::Image { source })?;
    let runs = mem::plan_pages(pm_name, &entries, vmas, pages_size)?;
    Ok((runs, pages_image))
}

/// `fs-<pid>.img`, whose cwd and root must be in `files`.
fn load_fs(images: &Images, pid: i32, files: &BTreeMap<u32, FileEntry>) -> Result<FsEntry> {
    let name = format!("fs-{pid}.img");
    if !images.exists(&name) {
        return Err(bad(
            &name,
            None,
            "missing (every process has one: its cwd, root and umask)",
        ));
    }
    let fs: FsEntry = images.single(&name, img::FS_MAGIC)?;
    for id in [fs.cwd_id, fs.root_id] {
        if files.get(&id).and_then(|f| f.reg.as_ref()).is_none() {
            return Err(bad(
                &name,
                Some(0),
                format!("cwd/root file id {id} not in files.img"),
            ));
        }
    }
    Ok(fs)
}

fn load_fds(
    images: &Images,
    pid: i32,
    ids: Option<&TaskKobjIdsEntry>,
    files: &BTreeMap<u32, FileEntry>,
) -> Result<Vec<FdinfoEntry>> {
    let name = match ids {
        Some(ids) => format!("fdinfo-{}.img", ids.files_id),
        None => {
            return Err(bad(
                &format!("core-{pid}.img"),
                Some(0),
                "no ids (files_id)",
            ));
        }
    };
    if !images.exists(&name) {
        return Err(bad(
            &name,
            None,
            format!("missing (named by files_id of ids-{pid}.img)"),
        ));
    }
    let fds: Vec<FdinfoEntry> = images.entries(&name, img::FDINFO_MAGIC)?;
    let mut nums = BTreeSet::new();
    for (i, f) in fds.iter().enumerate() {
        if f.fd >= MAX_FD || !nums.insert(f.fd) {
            return Err(bad(&name, Some(i), format!("bad or duplicate fd {}", f.fd)));
        }
        if !files.contains_key(&f.id) {
            return Err(bad(
                &name,
                Some(i),
                format!("fd {} names file id {} missing from files.img", f.fd, f.id),
            ));
        }
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tree(ids: &[(i32, i32, i32, i32)]) -> RestorePlan {
        RestorePlan {
            tasks: ids
                .iter()
                .map(|&(pid, ppid, pgid, sid)| {
                    TaskPlan::bare(pid, ppid, pgid, sid, TaskCoreEntry::default())
                })
                .collect(),
            files: BTreeMap::new(),
            remapped: BTreeSet::new(),
            plugins: Vec::new(),
            seccomp: Vec::new(),
            shmem: BTreeMap::new(),
            dumped_tcp_close: false,
        }
    }

    fn ids(p: &RestorePlan) -> Vec<(i32, i32)> {
        p.tasks.iter().map(|t| (t.pgid, t.sid)).collect()
    }

    #[test]
    fn a_tcp_close_dump_needs_tcp_close_at_restore() {
        let mut p = tree(&[(1, 0, 1, 1)]);
        assert!(p.check_options(false).is_ok());
        p.dumped_tcp_close = true;
        assert!(p.check_options(true).is_ok());
        let e = p.check_options(false).expect_err("refused");
        assert!(e.to_string().contains("--tcp-close"), "{e}");
        assert!(e.to_string().contains("inventory.img"), "{e}");
    }

    #[test]
    fn shell_job_moves_the_outside_session_and_group_into_ours() {
        // Root in the shell's group and session (both led from outside the namespace: 0), a
        // child leading its own group.
        let mut p = tree(&[(10, 1, 0, 0), (11, 10, 11, 0), (12, 10, 0, 0)]);
        p.place_sessions(true, 500, 600).expect("shell job");
        assert_eq!(ids(&p), vec![(600, 500), (11, 500), (600, 500)]);
        // The restorer may itself sit below an outside leader.
        let mut p = tree(&[(10, 1, 0, 0)]);
        p.place_sessions(true, 0, 0)
            .expect("inherits our outside session");
        assert_eq!(ids(&p), vec![(0, 0)]);
        // A root leading its group keeps it; its session still moves.
        let mut p = tree(&[(10, 1, 10, 7), (11, 10, 10, 7)]);
        p.place_sessions(true, 500, 600).expect("group leader");
        assert_eq!(ids(&p), vec![(10, 500), (10, 500)]);
        // A session leader root keeps everything.
        let mut p = tree(&[(10, 1, 10, 10), (11, 10, 11, 10)]);
        p.place_sessions(true, 500, 600).expect("session leader");
        assert_eq!(ids(&p), vec![(10, 10), (11, 10)]);
    }

    #[test]
    fn an_outside_session_needs_shell_job() {
        let mut p = tree(&[(10, 1, 0, 0)]);
        let e = p.place_sessions(false, 0, 0).expect_err("no shell job");
        let msg = e.to_string();
        assert!(msg.contains("10") && msg.contains("--shell-job"), "{msg}");
        let mut p = tree(&[(10, 1, 10, 10)]);
        p.place_sessions(false, 0, 0).expect("own session");
        assert_eq!(ids(&p), vec![(10, 10)]);
    }

    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/criu-4.2-sample"
    );

    #[test]
    fn criu_reference_images_make_a_plan() {
        if !Path::new(SAMPLE).exists() {
            eprintln!("skip: {SAMPLE} missing");
            return;
        }
        let plan = RestorePlan::load(&Images::open(Path::new(SAMPLE)).expect("dir")).expect("plan");
        assert_eq!(plan.tasks.len(), 1);
        let t = &plan.tasks[0];
        assert_eq!(t.pid, 32679);
        assert_eq!(
            t.threads.iter().map(|t| t.tid).collect::<Vec<_>>(),
            vec![32679, 32681]
        );
        assert_eq!(t.tc.sigactions.len(), 62);
        assert_eq!(t.vmas.len(), 26);
        assert_eq!(t.vmas.iter().filter(|v| v.kind == VmaKind::Vdso).count(), 1);
        assert_eq!(t.pages_image, "pages-1.img");
        let bytes: u64 = t.pages.iter().map(|r| r.len).sum();
        // Everything but the two vDSO pages CRIU also saved.
        assert_eq!(
            bytes + 0x2000,
            std::fs::metadata(format!("{SAMPLE}/pages-1.img"))
                .unwrap()
                .len()
        );
        assert_eq!(t.fds.len(), 8);
        assert_eq!(
            plan.reg_path(t.mm.exe_file_id),
            Some("/opt/criu-sample/sample")
        );
        // The pause()d thread was rewound by CRIU at dump: ax == orig_ax.
        assert_eq!(t.threads[1].regs.ax, 34);
        // The [vvar]+[vvar_vclock] area is one 6-page VMA, the vDSO right after it.
        let vvar = t
            .vmas
            .iter()
            .find(|v| v.kind == VmaKind::Vvar)
            .expect("vvar");
        let vdso = t
            .vmas
            .iter()
            .find(|v| v.kind == VmaKind::Vdso)
            .expect("vdso");
        assert_eq!((vvar.len(), vdso.start - vvar.start), (0x6000, 0x6000));
        // libc is mapped privately from files.img id 2, the stack grows down.
        assert!(
            t.vmas
                .iter()
                .any(|v| v.kind == VmaKind::FilePrivate { file_id: 2 })
        );
        assert!(
            t.vmas
                .iter()
                .any(|v| v.flags & libc::MAP_GROWSDOWN as u32 != 0)
        );
        // SIGUSR1 (10) has a handler: entry 8, since SIGKILL has none.
        let usr1 = crate::restore::state::sigaction_signals()
            .position(|s| s == 10)
            .expect("SIGUSR1");
        assert_eq!(t.tc.sigactions[usr1].sigaction, 0x5634_61c4_4390);
        // The 1 s interval ITIMER_REAL.
        let real = t.tc.timers.as_ref().expect("timers").real;
        assert_eq!(real.isec, 1);
        // fd 251 is the pipe write end, fd 5 the data file at offset 5.
        assert!(
            t.fds
                .iter()
                .any(|f| f.fd == 251 && plan.files[&f.id].pipe.is_some())
        );
        let data = t.fds.iter().find(|f| f.fd == 5).expect("fd 5");
        let reg = plan.files[&data.id].reg.as_ref().expect("reg");
        assert_eq!(
            (reg.name.as_str(), reg.pos),
            ("/opt/criu-sample/data.txt", 5)
        );
        assert!(plan.plugins.is_empty());
        assert!(plan.shmem.is_empty());
    }
}
