//! The VMA capability: memory areas whose contents a plugin dumps and restores itself
//! (memfd_secret pages, io_uring rings, shadow stacks), and the per-task state capability
//! (per-thread registers or kernel state a plugin owns).

use crate::{DumpContext, Plugin, PluginError, RestoreContext, TaskIds};

/// One memory area of a task, as the core shows it to VMA handlers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmaDesc {
    /// The task.
    pub pid: i32,
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `MAP_*` bits as the core records them in `vma_entry.flags`.
    pub flags: u32,
    /// Offset in the mapped file, in bytes.
    pub pgoff: u64,
    /// The `/proc/PID/maps` name: a path, `[anon:NAME]`, `[heap]`...; empty for unnamed
    /// anonymous memory.
    pub name: String,
}

impl VmaDesc {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it covers no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Dumps and restores the contents of memory areas the core must not copy itself.
///
/// Dump: for each VMA of a frozen task, the core asks the handlers in priority order whether
/// they [`claims_vma`](VmaHandler::claims_vma) it (before its own page dump). The core still
/// records the area in `mm.img` as CRIU would, but writes none of its pages; the claiming
/// plugin gets [`dump_vma`](VmaHandler::dump_vma) (task frozen: read its memory, or use
/// remote syscalls for pages only the task can read) and stores what it needs in its own
/// files. The core records which plugin claimed which area.
///
/// Restore: the core maps the area as recorded (anonymous memory comes back zero-filled)
/// and, once every task exists, calls the claiming plugin's
/// [`restore_vma`](VmaHandler::restore_vma) with the task still stopped under it (memory
/// writes and remote syscalls work). A restore whose images name a plugin that is not
/// loaded fails before any task is created.
pub trait VmaHandler: Sync {
    /// What kinds of areas it handles, for `criu check --plugins` (`"secretmem"`).
    fn vma_kinds(&self) -> &[&str];

    /// Whether this handler takes care of `vma`'s contents. Cheap and side-effect free.
    fn claims_vma(&self, vma: &VmaDesc) -> bool;

    /// Dumps the contents of a claimed area (the task is frozen).
    fn dump_vma(&self, ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError>;

    /// Restores the contents of an area it claimed at dump (the area exists, mapped as
    /// recorded; the task is stopped under the restorer).
    fn restore_vma(&self, ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError>;
}

/// Dumps and restores per-task (and per-thread) state a plugin owns: called once per task
/// of the tree with its thread ids.
///
/// Dump: after the core dumped the task, still frozen. Restore: once every task exists
/// (after the [`crate::RestoreStage::AfterTasksExist`] hooks, so that the fds it finds in a
/// task are final), each task stopped under the restorer, its memory and threads restored,
/// credentials not yet applied.
pub trait TaskHandler: Sync {
    /// What state it handles, for `criu check --plugins` (`"x86 shadow stack"`).
    fn task_state(&self) -> &[&str];

    /// Dumps the state of `task`.
    fn dump_task(&self, ctx: &mut dyn DumpContext, task: &TaskIds) -> Result<(), PluginError>;

    /// Restores the state of `task`.
    fn restore_task(&self, ctx: &mut dyn RestoreContext, task: &TaskIds)
    -> Result<(), PluginError>;
}

/// The first plugin (in `plugins` order) whose VMA handler claims `vma`.
pub fn find_vma_handler<'p>(
    plugins: &[&'p dyn Plugin],
    vma: &VmaDesc,
) -> Option<(&'p dyn Plugin, &'p dyn VmaHandler)> {
    plugins.iter().find_map(|&p| {
        let h = p.vma_handler()?;
        h.claims_vma(vma).then_some((p, h))
    })
}
