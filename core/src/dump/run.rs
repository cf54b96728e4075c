//! The dump sequence: freeze the tree, dump each process (parents first), then the
//! tree-wide images (pstree, seccomp, timens, stats, inventory last).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use criu_plugin_api::{DumpStage, Plugin, TaskIds, has_dump_hook};
use criu_proto::images::{
    DumpStatsEntry, InventoryEntry, PluginsEntry, PstreeEntry, StatsEntry, TaskKobjIdsEntry,
};

use crate::image::{ImageDir, ImageKind};

use super::ctx::CoreDumpContext;
use super::freeze::{self, FrozenTree, Release, freeze_tree_within};
use super::ns::pid::DumpEnv;
use super::pages::PageStats;
use super::process::{dump_process, dump_zombie};
use super::seccomp::SeccompImage;
use super::{DumpError, DumpOptions, DumpReport, files, ids};

pub(super) fn img(pid: i32, step: &'static str) -> impl Fn(crate::image::ImageError) -> DumpError {
    move |source| DumpError::Image { pid, step, source }
}

pub(super) fn checkpoint(opts: &DumpOptions, step: &'static str) -> Result<(), DumpError> {
    if opts.fail_after == Some(step) {
        return Err(DumpError::Injected {
            pid: opts.pid,
            step,
        });
    }
    Ok(())
}

pub(super) fn us(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// State shared by the processes of one dump.
pub(super) struct Shared<'a, 'd> {
    pub(super) ctx: &'a mut CoreDumpContext<'d>,
    pub(super) file_ids: files::FileIds,
    pub(super) idgen: ids::IdGen,
    pub(super) root_ids: TaskKobjIdsEntry,
    pub(super) fdinfo_done: HashSet<u32>,
    pub(super) seccomp: SeccompImage,
    pub(super) pstree: Vec<PstreeEntry>,
    pub(super) pages: PageStats,
    pub(super) threads: usize,
    pub(super) memdump_us: u32,
    pub(super) memwrite_us: u32,
    pub(super) cgroups: crate::cgroup::dump::Collector,
    /// Every frozen thread's rseq state, read before anything ran in it ([`rseq_states`]).
    pub(super) rseq: &'a HashMap<i32, super::thread::RseqState>,
    /// The maps of the root's own user namespace ([`super::ns::user`]).
    pub(super) userns: Option<super::ns::user::IdMaps>,
}

/// The rseq state of every frozen thread of `tree`, read right after the freeze: criu's
/// remote syscalls (and plugins') return to user space outside a thread's critical section,
/// where the kernel clears `rseq_cs`, so a later read would miss a thread frozen inside one.
fn rseq_states(tree: &FrozenTree) -> Result<HashMap<i32, super::thread::RseqState>, DumpError> {
    let mut out = HashMap::new();
    for f in tree.procs.iter().filter_map(|m| m.frozen.as_ref()) {
        for tid in f.tids() {
            out.insert(tid, super::thread::rseq_state(f.pid, tid)?);
        }
    }
    Ok(out)
}

/// Dump the tree rooted at `opts.pid` into `opts.images_dir`. A root that is the init of
/// its own pid namespace is dumped by a process of criu inside that namespace
/// ([`super::ns::pid`]), so that the images hold the pids its tasks see.
pub fn dump(opts: &DumpOptions) -> Result<DumpReport, DumpError> {
    if let Some(target) = super::ns::pid::root_pid_ns(opts.pid)? {
        return super::ns::pid::dump_inside(opts, &target, dump_in);
    }
    dump_in(opts, &mut DumpEnv::default())
}

/// The dump proper, in criu's pid namespace or, with `env`, inside the tree's.
fn dump_in(opts: &DumpOptions, env: &mut DumpEnv) -> Result<DumpReport, DumpError> {
    let pid = opts.pid;
    let mut dir = ImageDir::open(&opts.images_dir).map_err(img(pid, "images"))?;
    dir.set_compression(opts.compress);
    // Built-in plugins and those loaded with --plugin-dir.
    let plugins = crate::plugins::all();
    let span = tracing::info_span!("dump", pid);
    let _e = span.enter();
    let mut ctx = CoreDumpContext::with_options(&dir, opts.plugin_options());
    let t0 = Instant::now();
    // Each plugin's state lives as long as `ctx`: until the dump is over.
    let tree = ctx
        .start_plugin_states(&plugins, pid)
        .and_then(|()| stage(&plugins, DumpStage::BeforeFreeze, pid, &mut ctx))
        .and_then(|()| freeze_tree_within(pid, opts.freeze_timeout.map(freeze::Deadline::after)));
    let tree = match tree {
        Ok(t) => t,
        Err(e) => {
            // Nothing frozen: the failure hooks (network unlock) and our files only.
            stage_failed(&plugins, &mut ctx);
            for p in std::mem::take(&mut ctx.plugin_files) {
                let _ = std::fs::remove_file(p);
            }
            let _ = dir.discard_written();
            return Err(e);
        }
    };
    let freezing_time = us(t0);
    let t_frozen = Instant::now();
    ctx.set_tree(
        tree.procs
            .iter()
            .filter_map(|m| m.frozen.as_ref())
            .map(|f| TaskIds {
                pid: f.pid,
                tids: f.tids().collect(),
            })
            .collect(),
    );
    let rseq = rseq_states(&tree);
    let mut res = rseq.and_then(|rseq| {
        stage(&plugins, DumpStage::AfterFreeze, pid, &mut ctx)?;
        dump_frozen(
            opts,
            &dir,
            &plugins,
            (&tree, &rseq),
            &mut ctx,
            (freezing_time, t_frozen),
            env.own_ns,
        )
    });
    if res.is_ok() && has_dump_hook(&plugins, DumpStage::AfterDump) {
        // Images the hook writes are flushed here (dump_frozen closed the others).
        if let Err(e) = stage(&plugins, DumpStage::AfterDump, pid, &mut ctx)
            .and_then(|()| ctx.finish(pid))
            .and_then(|()| rerecord_plugins(&dir, &ctx, pid))
        {
            res = Err(e);
        }
    }
    if res.is_ok()
        && let Some(first) = ctx.first_lock.take()
        && !dir.exists(ImageKind::FileLocks, 0)
    {
        res = Err(DumpError::FileLocksNotDumped {
            first: Box::new(first),
        });
    }
    if res.is_err() {
        stage_failed(&plugins, &mut ctx);
    }
    ctx.set_tree(Vec::new());
    let plugin_files = std::mem::take(&mut ctx.plugin_files);
    drop(ctx);
    finish(opts, &dir, tree, res, t_frozen, plugin_files, env)
}

/// Runs the plugins' hooks at `stage`; the first failure fails the dump. A plugin whose hook
/// wrote something is recorded as used (for the inventory).
fn stage(
    plugins: &[&'static dyn Plugin],
    stage: DumpStage,
    pid: i32,
    ctx: &mut CoreDumpContext<'_>,
) -> Result<(), DumpError> {
    for p in plugins {
        let writes = ctx.plugin_writes();
        ctx.run_stage(std::slice::from_ref(p), stage)
            .map_err(|(plugin, source)| DumpError::Hook {
                pid,
                plugin,
                stage: stage.name(),
                source,
            })?;
        if ctx.plugin_writes() != writes {
            ctx.note_plugin(p.info().name);
        }
        // Files in flight the hook found (after the freeze, before files.img is complete).
        ctx.dump_pending_in_flight()?;
    }
    Ok(())
}

/// `inventory.img`'s `plugins_entry`: the `.so` plugins that dumped something, always present
/// (empty when none), as CRIU writes it.
fn plugins_entry(ctx: &CoreDumpContext<'_>) -> PluginsEntry {
    let used = ctx.plugins_used();
    PluginsEntry {
        plugins: crate::plugins::inventory_plugins(used.iter().map(String::as_str)),
    }
}

/// Rewrites the inventory when after-dump hooks made more plugins used than it records.
fn rerecord_plugins(dir: &ImageDir, ctx: &CoreDumpContext<'_>, pid: i32) -> Result<(), DumpError> {
    let entry = plugins_entry(ctx);
    let mut inv: InventoryEntry = dir
        .read_single(ImageKind::Inventory, 0)
        .map_err(img(pid, "inventory"))?;
    if inv.plugins_entry.as_ref() != Some(&entry) {
        inv.plugins_entry = Some(entry);
        dir.write_inventory(&inv).map_err(img(pid, "inventory"))?;
    }
    Ok(())
}

/// The failure hooks (their errors are only logged).
fn stage_failed(plugins: &[&'static dyn Plugin], ctx: &mut CoreDumpContext<'_>) {
    let _ = ctx.run_stage(plugins, DumpStage::Failed);
}

fn finish(
    opts: &DumpOptions,
    dir: &ImageDir,
    tree: FrozenTree,
    res: Result<DumpReport, DumpError>,
    t_frozen: Instant,
    plugin_files: Vec<std::path::PathBuf>,
    env: &mut DumpEnv,
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
            if let Some(hook) = env.before_release.as_mut() {
                hook(&report, how);
            }
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
    (tree, rseq): (&FrozenTree, &HashMap<i32, super::thread::RseqState>),
    ctx: &mut CoreDumpContext<'d>,
    (freezing_time, t_frozen): (u32, Instant),
    own_ns: Option<[u64; 8]>,
) -> Result<DumpReport, DumpError> {
    let pid = opts.pid;
    checkpoint(opts, "freeze")?;
    let mut idgen = ids::IdGen::default();
    let root_ids = ids::own_ids(&mut idgen, own_ns)?;
    // In the tree's network namespace while its files are dumped (sock_diag lists theirs);
    // after criu's own ids are read.
    let _net = super::ns::net::enter_tree(pid)?;
    let mut sh = Shared {
        ctx,
        file_ids: files::FileIds::default(),
        idgen,
        root_ids,
        fdinfo_done: HashSet::new(),
        seccomp: SeccompImage::default(),
        pstree: Vec::new(),
        pages: PageStats::default(),
        threads: 0,
        memdump_us: 0,
        memwrite_us: 0,
        cgroups: crate::cgroup::dump::Collector::new(opts.cgroups.clone())
            .map_err(|source| DumpError::Cgroup { pid, source })?,
        rseq,
        userns: super::ns::user::maps_if_own(pid)?,
    };
    for m in &tree.procs {
        let span = tracing::debug_span!("process", pid = m.pid);
        let _e = span.enter();
        match &m.frozen {
            Some(f) => {
                dump_process(opts, dir, plugins, f, m.ppid, &mut sh)?;
                let task = TaskIds {
                    pid: f.pid,
                    tids: f.tids().collect(),
                };
                sh.ctx.dump_task_state(plugins, &task)?;
            }
            None => dump_zombie(dir, m.pid, m.ppid, &mut sh)?,
        }
    }
    sh.ctx.finish(pid)?;
    checkpoint(opts, "files")?;
    if let Some(cg) = sh
        .cgroups
        .entry()
        .map_err(|source| DumpError::Cgroup { pid, source })?
    {
        dir.write_single(ImageKind::Cgroup, 0, &cg)
            .map_err(img(pid, "images"))?;
    }

    dir.write_image(ImageKind::Pstree, 0, &sh.pstree)
        .map_err(img(pid, "images"))?;
    dir.write_single(ImageKind::Seccomp, 0, &sh.seccomp.entry)
        .map_err(img(pid, "images"))?;
    match sh.idgen.tree_root {
        Some(root) => super::ns::dump_namespaces(
            dir,
            pid,
            &sh.root_ids,
            &root,
            &opts.external,
            sh.userns.as_ref(),
        )?,
        None => super::ns::time::dump(dir, None, 0)?,
    }
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
        shpages_scanned: Some(sh.ctx.shmem.stats.scanned),
        shpages_skipped_parent: Some(0),
        shpages_written: Some(sh.ctx.shmem.stats.written),
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
    let mut inventory = ids::inventory(sh.root_ids);
    // As CRIU: the restore of these images must be given --tcp-close too.
    inventory.tcp_close = opts.tcp_close.then_some(true);
    inventory.plugins_entry = Some(plugins_entry(sh.ctx));
    dir.write_inventory(&inventory)
        .map_err(img(pid, "images"))?;
    Ok(report)
}
