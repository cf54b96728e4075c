//! One process of the tree: everything it has goes to its images (core per thread, mm,
//! pagemap + pages, fdinfo, fs, ids, its files in files.img) and its pstree entry.

use std::time::Instant;

use criu_plugin_api::Plugin;
use criu_proto::images::{CoreEntry, PstreeEntry, core_entry::March};

use crate::image::{ImageDir, ImageKind, ImageWriter};
use crate::proc::stat;

use super::fdaccess::PidfdAccess;
use super::freeze::Frozen;
use super::remote_ops::{self, SysRemote};
use super::run::{Shared, checkpoint, img, us};
use super::{DumpError, DumpOptions, files, ids, memory, pages, shmem, task, thread};

/// CRIU's TASK_DEAD.
const TASK_DEAD: u32 = 2;

fn pstree_entry(pid: i32, ppid: i32, st: &stat::ProcStat, threads: Vec<u32>) -> PstreeEntry {
    PstreeEntry {
        pid: pid as u32,
        ppid: ppid as u32,
        pgid: st.pgrp as u32,
        sid: st.session as u32,
        threads,
    }
}

/// A zombie: its pstree entry and a core image holding only comm, state and exit code,
/// as CRIU writes them.
pub(super) fn dump_zombie(
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
    sh.pstree
        .push(pstree_entry(pid, ppid, &st, vec![pid as u32]));
    Ok(())
}

/// Everything of one frozen process: its core-*.img, mm, pagemap + pages, fdinfo, fs, ids,
/// its files in files.img, and its pstree entry.
pub(super) fn dump_process(
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
    let rseq_of = |tid: i32| {
        sh.rseq
            .get(&tid)
            .copied()
            .ok_or_else(|| DumpError::Unexpected {
                pid,
                step: "threads",
                what: format!("thread {tid} has no rseq state read at the freeze"),
            })
    };
    for t in &frozen.threads {
        let mut th =
            thread::collect_thread(pid, t.tid, t.tid == pid, rseq_of(t.tid)?, &mut remote)?;
        // As the tree's user namespace names them (CRIU's form).
        if let (Some(maps), Some(c)) = (&sh.userns, th.core.creds.as_mut()) {
            maps.creds_to_ns(c);
        }
        threads.push(th);
    }
    checkpoint(opts, "threads")?;
    let tc = task::collect_task_core(pid, frozen.stop_signo(), &mut remote)?;
    let brk = remote_ops::brk(&mut remote, pid)?;
    let dumpable = remote_ops::prctl_get(&mut remote, pid, libc::PR_GET_DUMPABLE)? as i32;
    let thp = remote_ops::prctl_get(&mut remote, pid, libc::PR_GET_THP_DISABLE)? != 0;
    remote.finish()?;
    for t in &frozen.threads {
        thread::move_to_abort_handler(pid, t.tid, &rseq_of(t.tid)?)?;
    }
    checkpoint(opts, "task")?;

    // 2. Ids: what it shares with its parent (CLONE_VM, _FILES, _FS, _SIGHAND) and nobody
    //    else. The memory of an address space is dumped once, with its first process; a
    //    process sharing it gets copies of that mm and pagemap image (the same layout and
    //    pages, for tools such as crit; restore reads them once).
    let task_ids = ids::task_ids(&mut sh.idgen, &sh.root_ids, pid)?;
    if ppid == 0 {
        ids::check_root_sharing(pid, st.ppid)?;
    }
    let vm_owner = sh.idgen.check_sharing(pid, ppid)?;
    checkpoint(opts, "ids")?;
    match vm_owner {
        None => dump_memory(opts, dir, plugins, pid, (brk, dumpable, thp), sh)?,
        Some(owner) => {
            for kind in [ImageKind::Mm, ImageKind::Pagemap] {
                dir.copy_image(kind, owner as u64, pid as u64)
                    .map_err(img(pid, "memory"))?;
            }
        }
    }

    // 3. Fds (once per fd table), cwd and root.
    if sh.fdinfo_done.insert(task_ids.files_id) {
        let mut access = PidfdAccess::new(pid)?;
        files::dump_fds(plugins, sh.ctx, dir, &mut access, pid, task_ids.files_id)?;
    }
    files::dump_fs(plugins, sh.ctx, dir, &mut sh.file_ids, pid)?;

    // 4. Per-thread core images, ids, the pstree entry.
    let mut tc = Some(tc);
    sh.threads += threads.len();
    for t in &mut threads {
        if let Some(pos) = sh.seccomp.add_chain(&t.seccomp_chain) {
            t.core.seccomp_filter = Some(pos);
        }
        let set = sh.cgroups.thread_set(pid, t.tid);
        t.core.cg_set = Some(set.map_err(|source| DumpError::Cgroup { pid, source })?);
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
    sh.pstree.push(pstree_entry(pid, ppid, &st, tids));
    Ok(())
}

/// Memory of a process that does not share its parent's address space: mm-PID.img (VMAs
/// and the files behind them; VMAs a plugin claims are dumped by it), pagemap-PID.img and
/// the pages. `mm_bits` is (brk, dumpable, THP disabled).
fn dump_memory(
    opts: &DumpOptions,
    dir: &ImageDir,
    plugins: &[&'static dyn Plugin],
    pid: i32,
    mm_bits: (u64, i32, bool),
    sh: &mut Shared<'_, '_>,
) -> Result<(), DumpError> {
    let (brk, dumpable, thp) = mm_bits;
    let mut vmas = memory::collect_vmas(pid)?;
    let mut mm = memory::mm_entry(pid, brk, dumpable, thp)?;
    mm.aios = super::aio::ring_entries(pid, &vmas)?;
    mm.exe_file_id = files::dump_mm_files(plugins, sh.ctx, &mut sh.file_ids, pid, &mut vmas)?;
    // VMAs a plugin dumps itself: recorded in mm.img, none of their pages written by us.
    let claimed = sh.ctx.dump_claimed_vmas(plugins, pid, &mut vmas)?;
    memory::check_plugin_only(pid, &vmas, &claimed)?;
    let unclaimed: Vec<memory::Vma>;
    let page_vmas: &[memory::Vma] = if claimed.contains(&true) {
        unclaimed = vmas
            .iter()
            .zip(&claimed)
            .filter(|(_, c)| !**c)
            .map(|(v, _)| v.clone())
            .collect();
        &unclaimed
    } else {
        &vmas
    };
    checkpoint(opts, "memory")?;

    // Pages: this thread gathers, a writer thread writes (two buffers in flight).
    let t_mem = Instant::now();
    let pages_id = sh.ctx.shmem.pages_id();
    let mut pm: ImageWriter = dir
        .pagemap_writer(pid as u64, pages_id)
        .map_err(img(pid, "memory"))?;
    let mut pw = dir
        .pages_writer(pages_id as u64)
        .map_err(img(pid, "memory"))?;
    // The gatherer digests the pages (it has time to spare; the writer is the bottleneck).
    let mut hasher = pw.take_hasher().unwrap_or_default();
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
            Ok::<_, DumpError>((spent, pw))
        });
        let gone = || DumpError::Unexpected {
            pid,
            step: "memory",
            what: "the pages writer stopped".into(),
        };
        let stats = pages::dump_pages(
            pid,
            page_vmas,
            &mut |e| pm.write_entry(e).map_err(img(pid, "memory")),
            &mut |buf| {
                hasher.update(&buf);
                tx_full.send(buf).map_err(|_| gone())?;
                rx_free.recv().map_err(|_| gone())
            },
        );
        drop(tx_full);
        let written = writer.join().unwrap_or_else(|_| Err(gone()));
        // A writer error explains a gatherer error, so it goes first.
        let (spent, pw) = written?;
        let stats = stats?;
        pw.finish_with(std::mem::take(&mut hasher))
            .map_err(img(pid, "memory"))?;
        Ok::<_, DumpError>((stats, spent))
    })?;
    pm.finish().map_err(img(pid, "memory"))?;
    shmem::dump_shmem(pid, dir, page_vmas, &mut sh.ctx.shmem)?;
    sh.memdump_us = sh
        .memdump_us
        .saturating_add(us(t_mem).saturating_sub(write_time));
    sh.memwrite_us = sh.memwrite_us.saturating_add(write_time);
    sh.pages.scanned += stats.scanned;
    sh.pages.written += stats.written;
    mm.vmas = vmas.into_iter().map(|v| v.entry).collect();
    // Guard regions after the real VMAs, as CRIU 4.2 writes them.
    mm.vmas.extend(super::guards::collect(pid)?);
    dir.write_single(ImageKind::Mm, pid as u64, &mm)
        .map_err(img(pid, "memory"))?;
    Ok(())
}
