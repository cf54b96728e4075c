//! The dump sequence: freeze the tree, dump each process (parents first), then the
//! tree-wide images (pstree, seccomp, timens, stats, inventory last).

use std::collections::HashSet;
use std::time::Instant;

use criu_plugin_api::Plugin;
use criu_proto::images::{
    CoreEntry, DumpStatsEntry, PstreeEntry, SeccompEntry, SeccompFilter, StatsEntry,
    TaskKobjIdsEntry, TimensEntry, Timespec, core_entry::March,
};
use nix::time::{ClockId, clock_gettime};

use crate::image::{ImageDir, ImageKind, ImageWriter};
use crate::proc::stat;

use super::ctx::CoreDumpContext;
use super::fdaccess::PidfdAccess;
use super::freeze::{Frozen, FrozenTree, Release, freeze_tree};
use super::pages::PageStats;
use super::remote_ops::{self, SysRemote};
use super::{DumpError, DumpOptions, DumpReport, files, ids, memory, pages, shmem, task, thread};

fn img(pid: i32, step: &'static str) -> impl Fn(crate::image::ImageError) -> DumpError {
    move |source| DumpError::Image { pid, step, source }
}

fn checkpoint(opts: &DumpOptions, step: &'static str) -> Result<(), DumpError> {
    if opts.fail_after == Some(step) {
        return Err(DumpError::Injected {
            pid: opts.pid,
            step,
        });
    }
    Ok(())
}

/// seccomp.img being built: filters shared between threads and processes are stored once
/// (a filter is identified by its code and the filter before it, as in the kernel's tree).
#[derive(Debug, Default)]
pub struct SeccompImage {
    pub entry: SeccompEntry,
    index: std::collections::HashMap<(Vec<u8>, Option<u32>), u32>,
}

impl SeccompImage {
    /// Add a thread's filter chain (newest first). Each entry's `prev` names the next older
    /// filter, as CRIU restores it (walk `prev` from the thread's `seccomp_filter`, install
    /// oldest first). Returns the position of the newest filter.
    pub fn add_chain(&mut self, chain: &[Vec<u8>]) -> Option<u32> {
        let mut prev: Option<u32> = None;
        for f in chain.iter().rev() {
            let key = (f.clone(), prev);
            let pos = match self.index.get(&key) {
                Some(&p) => p,
                None => {
                    let p = self.entry.seccomp_filters.len() as u32;
                    self.entry.seccomp_filters.push(SeccompFilter {
                        filter: f.clone(),
                        prev,
                        flags: None,
                    });
                    self.index.insert(key, p);
                    p
                }
            };
            prev = Some(pos);
        }
        prev
    }
}

fn us(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// State shared by the processes of one dump.
struct Shared<'a, 'd> {
    ctx: &'a mut CoreDumpContext<'d>,
    file_ids: files::FileIds,
    idgen: ids::IdGen,
    root_ids: TaskKobjIdsEntry,
    seen_fds: Vec<files::SeenFd>,
    fdinfo_done: HashSet<u32>,
    shmem_done: HashSet<u64>,
    seccomp: SeccompImage,
    pstree: Vec<PstreeEntry>,
    next_pages_id: u32,
    pages: PageStats,
    shpages: PageStats,
    threads: usize,
    memdump_us: u32,
    memwrite_us: u32,
}

/// Dump the tree rooted at `opts.pid` into `opts.images_dir`.
pub fn dump(opts: &DumpOptions) -> Result<DumpReport, DumpError> {
    let pid = opts.pid;
    let dir = ImageDir::open(&opts.images_dir).map_err(img(pid, "images"))?;
    // Built-in plugins and those loaded with --plugin-dir.
    let plugins = crate::plugins::all();
    let span = tracing::info_span!("dump", pid);
    let _e = span.enter();
    let t0 = Instant::now();
    let tree = freeze_tree(pid)?;
    let freezing_time = us(t0);
    let t_frozen = Instant::now();
    let mut ctx = CoreDumpContext::new(&dir, opts.ghost_limit);
    let res = dump_frozen(
        opts,
        &dir,
        &plugins,
        &tree,
        &mut ctx,
        freezing_time,
        t_frozen,
    );
    let plugin_files = std::mem::take(&mut ctx.plugin_files);
    drop(ctx);
    finish(opts, &dir, tree, res, t_frozen, plugin_files)
}

fn finish(
    opts: &DumpOptions,
    dir: &ImageDir,
    tree: FrozenTree,
    res: Result<DumpReport, DumpError>,
    t_frozen: Instant,
    plugin_files: Vec<std::path::PathBuf>,
) -> Result<DumpReport, DumpError> {
    let pid = opts.pid;
    match res {
        Ok(mut report) => {
            report.frozen_time_us = t_frozen.elapsed().as_micros() as u64;
            let how = if opts.leave_running {
                Release::Resume
            } else if opts.leave_stopped {
                Release::Stop
            } else {
                Release::Kill
            };
            tree.release(how);
            tracing::info!(pid, pages = report.pages_written, "dump done");
            Ok(report)
        }
        Err(e) => {
            // Tasks first (they should not wait on our file system work), then the images.
            tree.release(Release::Resume);
            if let Err(de) = dir.discard_written() {
                tracing::warn!(pid, error = %de, "could not remove every image");
            }
            for p in plugin_files {
                let _ = std::fs::remove_file(p);
            }
            tracing::error!(pid, error = %e, "dump failed");
            Err(e)
        }
    }
}

fn dump_frozen<'d>(
    opts: &DumpOptions,
    dir: &'d ImageDir,
    plugins: &[&'static dyn Plugin],
    tree: &FrozenTree,
    ctx: &mut CoreDumpContext<'d>,
    freezing_time: u32,
    t_frozen: Instant,
) -> Result<DumpReport, DumpError> {
    let pid = opts.pid;
    checkpoint(opts, "freeze")?;
    let mut idgen = ids::IdGen::default();
    let root_ids = ids::own_ids(&mut idgen)?;
    let mut sh = Shared {
        ctx,
        file_ids: files::FileIds::default(),
        idgen,
        root_ids,
        seen_fds: Vec::new(),
        fdinfo_done: HashSet::new(),
        shmem_done: HashSet::new(),
        seccomp: SeccompImage::default(),
        pstree: Vec::new(),
        next_pages_id: 1,
        pages: PageStats::default(),
        shpages: PageStats::default(),
        threads: 0,
        memdump_us: 0,
        memwrite_us: 0,
    };
    for m in &tree.procs {
        let span = tracing::debug_span!("process", pid = m.pid);
        let _e = span.enter();
        match &m.frozen {
            Some(f) => dump_process(opts, dir, plugins, f, m.ppid, &mut sh)?,
            None => dump_zombie(dir, m.pid, m.ppid, &mut sh)?,
        }
    }
    sh.ctx.finish(pid)?;
    checkpoint(opts, "files")?;

    dir.write_image(ImageKind::Pstree, 0, &sh.pstree)
        .map_err(img(pid, "images"))?;
    dir.write_single(ImageKind::Seccomp, 0, &sh.seccomp.entry)
        .map_err(img(pid, "images"))?;
    let now = |c| {
        clock_gettime(c)
            .map(|t| Timespec {
                tv_sec: t.tv_sec() as u64,
                tv_nsec: t.tv_nsec() as u64,
            })
            .map_err(|e| DumpError::sys(pid, "images", "clock_gettime", e))
    };
    let timens = TimensEntry {
        monotonic: now(ClockId::CLOCK_MONOTONIC)?,
        boottime: now(ClockId::CLOCK_BOOTTIME)?,
    };
    dir.write_single(ImageKind::Timens, 0, &timens)
        .map_err(img(pid, "images"))?;
    checkpoint(opts, "images")?;

    let report = DumpReport {
        pids: tree.pids().collect(),
        threads: sh.threads,
        pages_scanned: sh.pages.scanned,
        pages_written: sh.pages.written,
        files: sh.ctx.files_written() as usize,
        frozen_time_us: 0,
    };
    let dump_stats = DumpStatsEntry {
        freezing_time,
        frozen_time: us(t_frozen),
        memdump_time: sh.memdump_us,
        memwrite_time: sh.memwrite_us,
        pages_scanned: sh.pages.scanned,
        pages_skipped_parent: 0,
        pages_written: sh.pages.written,
        irmap_resolve: Some(0),
        pages_lazy: 0,
        page_pipes: Some(0),
        page_pipe_bufs: Some(0),
        shpages_scanned: Some(sh.shpages.scanned),
        shpages_skipped_parent: Some(0),
        shpages_written: Some(sh.shpages.written),
    };
    dir.write_single(
        ImageKind::Stats,
        criu_proto::kind::STATS_DUMP_ID,
        &StatsEntry {
            dump: Some(dump_stats),
            restore: None,
        },
    )
    .map_err(img(pid, "images"))?;
    // Last: a directory without inventory.img is visibly incomplete.
    dir.write_inventory(&ids::inventory(sh.root_ids))
        .map_err(img(pid, "images"))?;
    Ok(report)
}

/// CRIU's TASK_DEAD.
const TASK_DEAD: u32 = 2;

/// A zombie: its pstree entry and a core image holding only comm, state and exit code,
/// as CRIU writes them.
fn dump_zombie(
    dir: &ImageDir,
    pid: i32,
    ppid: i32,
    sh: &mut Shared<'_, '_>,
) -> Result<(), DumpError> {
    let st = stat::read_stat(pid).map_err(|e| DumpError::proc(pid, "task", e))?;
    let core = CoreEntry {
        mtype: March::X8664 as i32,
        tc: Some(criu_proto::images::TaskCoreEntry {
            task_state: TASK_DEAD,
            exit_code: st.exit_code as u32,
            comm: st.comm.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    dir.write_single(ImageKind::Core, pid as u64, &core)
        .map_err(img(pid, "images"))?;
    sh.pstree.push(PstreeEntry {
        pid: pid as u32,
        ppid: ppid as u32,
        pgid: st.pgrp as u32,
        sid: st.session as u32,
        threads: vec![pid as u32],
    });
    Ok(())
}

/// Everything of one frozen process: its core-*.img, mm, pagemap + pages, fdinfo, fs, ids,
/// its files in files.img, and its pstree entry.
fn dump_process(
    opts: &DumpOptions,
    dir: &ImageDir,
    plugins: &[&'static dyn Plugin],
    frozen: &Frozen,
    ppid: i32,
    sh: &mut Shared<'_, '_>,
) -> Result<(), DumpError> {
    let pid = frozen.pid;
    let st = stat::read_stat(pid).map_err(|e| DumpError::proc(pid, "task", e))?;

    // 1. Everything that needs remote syscalls, then the scratch page goes away before the
    //    VMA list is read.
    let mut remote = SysRemote::new(pid)?;
    let mut threads: Vec<thread::ThreadState> = Vec::new();
    for t in &frozen.threads {
        threads.push(thread::collect_thread(
            pid,
            t.tid,
            t.tid == pid,
            &mut remote,
        )?);
    }
    checkpoint(opts, "threads")?;
    let tc = task::collect_task_core(pid, frozen.stop_signo(), &mut remote)?;
    let brk = remote_ops::brk(&mut remote, pid)?;
    let dumpable = remote_ops::prctl_get(&mut remote, pid, libc::PR_GET_DUMPABLE)? as i32;
    let thp = remote_ops::prctl_get(&mut remote, pid, libc::PR_GET_THP_DISABLE)? != 0;
    remote.finish()?;
    checkpoint(opts, "task")?;

    // 2. Memory layout and the files backing it.
    let mut vmas = memory::collect_vmas(pid)?;
    let mut mm = memory::mm_entry(pid, brk, dumpable, thp)?;
    mm.exe_file_id = files::dump_mm_files(plugins, sh.ctx, &mut sh.file_ids, pid, &mut vmas)?;
    checkpoint(opts, "memory")?;

    // 3. Ids, fds (once per fd table), cwd and root.
    let task_ids = ids::task_ids(&mut sh.idgen, &sh.root_ids, pid)?;
    if task_ids.vm_id != 0 && sh.idgen.vm_shared(task_ids.vm_id) {
        return Err(DumpError::Unsupported {
            pid,
            step: "memory",
            what: "an address space shared with another process (CLONE_VM)".into(),
            hint: "vfork children and CLONE_VM processes are not dumped yet",
        });
    }
    if sh.fdinfo_done.insert(task_ids.files_id) {
        let mut access = PidfdAccess::new(pid)?;
        files::dump_fds(
            plugins,
            sh.ctx,
            dir,
            &mut access,
            &mut sh.seen_fds,
            pid,
            task_ids.files_id,
        )?;
    }
    files::dump_fs(plugins, sh.ctx, dir, &mut sh.file_ids, pid)?;

    // 4. Pages: this thread gathers, a writer thread writes (two buffers in flight).
    let t_mem = Instant::now();
    let pages_id = sh.next_pages_id;
    sh.next_pages_id += 1;
    let mut pm: ImageWriter = dir
        .pagemap_writer(pid as u64, pages_id)
        .map_err(img(pid, "memory"))?;
    let pw = dir
        .pages_writer(pages_id as u64)
        .map_err(img(pid, "memory"))?;
    let (stats, write_time) = std::thread::scope(|scope| {
        let (tx_full, rx_full) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let (tx_free, rx_free) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        for _ in 0..2 {
            let _ = tx_free.send(Vec::new());
        }
        let writer = scope.spawn(move || {
            let mut pw = pw;
            let mut spent = 0u32;
            for buf in rx_full {
                let t = Instant::now();
                pw.write_pages(&buf).map_err(img(pid, "memory"))?;
                spent = spent.saturating_add(us(t));
                // The gatherer may be gone (it failed): nothing to hand back then.
                let _ = tx_free.send(buf);
            }
            pw.finish().map_err(img(pid, "memory"))?;
            Ok::<u32, DumpError>(spent)
        });
        let gone = || DumpError::Unexpected {
            pid,
            step: "memory",
            what: "the pages writer stopped".into(),
        };
        let stats = pages::dump_pages(
            pid,
            &vmas,
            &mut |e| pm.write_entry(e).map_err(img(pid, "memory")),
            &mut |buf| {
                tx_full.send(buf).map_err(|_| gone())?;
                rx_free.recv().map_err(|_| gone())
            },
        );
        drop(tx_full);
        let written = writer.join().unwrap_or_else(|_| Err(gone()));
        // A writer error explains a gatherer error, so it goes first.
        let spent = written?;
        Ok::<_, DumpError>((stats?, spent))
    })?;
    pm.finish().map_err(img(pid, "memory"))?;
    let shstats = shmem::dump_shmem(pid, dir, &vmas, &mut sh.next_pages_id, &mut sh.shmem_done)?;
    sh.memdump_us = sh
        .memdump_us
        .saturating_add(us(t_mem).saturating_sub(write_time));
    sh.memwrite_us = sh.memwrite_us.saturating_add(write_time);
    sh.pages.scanned += stats.scanned;
    sh.pages.written += stats.written;
    sh.shpages.scanned += shstats.scanned;
    sh.shpages.written += shstats.written;
    mm.vmas = vmas.into_iter().map(|v| v.entry).collect();
    dir.write_single(ImageKind::Mm, pid as u64, &mm)
        .map_err(img(pid, "memory"))?;

    // 5. Per-thread core images, ids, the pstree entry.
    let mut tc = Some(tc);
    sh.threads += threads.len();
    for t in &mut threads {
        if let Some(pos) = sh.seccomp.add_chain(&t.seccomp_chain) {
            t.core.seccomp_filter = Some(pos);
        }
    }
    let tids: Vec<u32> = threads.iter().map(|t| t.tid as u32).collect();
    for t in threads {
        let core = CoreEntry {
            mtype: March::X8664 as i32,
            thread_info: Some(t.info),
            tc: if t.tid == pid { tc.take() } else { None },
            ids: None,
            thread_core: Some(t.core),
            ..Default::default()
        };
        dir.write_single(ImageKind::Core, t.tid as u64, &core)
            .map_err(img(pid, "images"))?;
    }
    dir.write_single(ImageKind::Ids, pid as u64, &task_ids)
        .map_err(img(pid, "images"))?;
    sh.pstree.push(PstreeEntry {
        pid: pid as u32,
        ppid: ppid as u32,
        pgid: st.pgrp as u32,
        sid: st.session as u32,
        threads: tids,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_chains_link_newest_to_oldest_and_share() {
        let mut img = SeccompImage::default();
        assert_eq!(img.add_chain(&[]), None);
        // Thread A: [new2, old1]; thread B: same chain; thread C: [new3, old1].
        let a = img.add_chain(&[vec![2; 8], vec![1; 8]]).unwrap();
        let b = img.add_chain(&[vec![2; 8], vec![1; 8]]).unwrap();
        let c = img.add_chain(&[vec![3; 8], vec![1; 8]]).unwrap();
        assert_eq!(a, b);
        assert_eq!(img.entry.seccomp_filters.len(), 3);
        let walk = |img: &SeccompImage, mut p: u32| {
            let f = &img.entry.seccomp_filters;
            let mut out = vec![f[p as usize].filter[0]];
            while let Some(q) = f[p as usize].prev {
                out.push(f[q as usize].filter[0]);
                p = q;
            }
            out
        };
        assert_eq!(walk(&img, a), vec![2, 1]);
        assert_eq!(walk(&img, c), vec![3, 1]);
        // The same code after a different predecessor is a different filter.
        let d = img.add_chain(&[vec![1; 8], vec![3; 8]]).unwrap();
        assert_eq!(walk(&img, d), vec![1, 3]);
        assert_eq!(img.entry.seccomp_filters.len(), 5);
    }
}
