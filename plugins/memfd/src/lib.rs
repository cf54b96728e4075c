//! Built-in plugin for memfd files (`memfd_create`), in CRIU's image format.
//!
//! A memfd is one inode with any number of open file descriptions (fds, each with its own
//! flags and offset) and mappings. Dump: one `files.img` MEMFD entry per description
//! (`memfd_file_entry`: flags, pos, owner, the inode's id), one `memfd.img` entry per inode
//! (`memfd_inode_entry`: name, uid, gid, size, mode, seals, hugetlb flag, `shmid`), and the
//! contents stored once per inode as shared memory (`pagemap-shmem-<shmid>.img`, `shmid` the
//! inode number) through the core's [`DumpContext::dump_shmem`]. A memfd that is only mapped
//! (its fd closed after `mmap`) reaches this plugin through the core too: the core asks the
//! fd plugins for the file behind each mapping (`/proc/PID/map_files`) and marks VMAs whose
//! file is a MEMFD entry `VMA_AREA_MEMFD`, `shmid` the entry's id, as CRIU does.
//!
//! Anonymous shared memory reached as a file (an fd opened on its `/proc/PID/map_files`
//! link, or a `MAP_PRIVATE` mapping of such an fd: `/dev/zero (deleted)`) is dumped the same
//! way, as CRIU does (name `/dev/zero`), with `memfd_inode_entry.criu_rs_anon_shmem` set:
//! the restore takes the core's object of that `shmid`
//! ([`RestoreContext::anon_shmem`]) instead of making a memfd, so the tree's shared
//! mappings of it, its fds and its private mappings stay one object. (Upstream CRIU
//! ignores the field and restores a memfd, as it dumps one.)
//!
//! Restore: each inode is created once (`memfd_create` with its name, `MFD_ALLOW_SEALING`
//! when it had seals, its hugetlb flags), sized, filled ([`RestoreContext::restore_shmem`]),
//! given its mode and owner; every description is a reopen of `/proc/self/fd/N` of that
//! inode with its own flags and offset, so descriptions stay apart while the inode (and
//! every `MAP_SHARED` mapping the core makes of it) is shared. Seals are added last, once
//! every task's memory is mapped ([`RestoreStage::AfterTasksExist`]): `F_SEAL_FUTURE_WRITE`
//! would forbid the writable shared mappings the tasks had.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dump;
mod name;
mod restore;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, ImageRef, Plugin, PluginError,
    PluginImageKind, PluginInfo, PluginRegistration, PluginState, RestoreContext, RestoreStage,
    RunKind, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

pub use name::{is_anon_shmem_link, is_memfd_link, memfd_name};

/// The plugin's name, also the prefix of its memo and kept-fd keys.
pub const NAME: &str = "memfd";

/// `memfd.img` (MEMFD_INODE).
pub const MEMFD_INODES: ImageRef = ImageRef::single(PluginImageKind::MemfdInode);

/// memfd files (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct MemfdPlugin;

/// The registered instance.
pub static PLUGIN: MemfdPlugin = MemfdPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for MemfdPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // Before `files` (200), which leaves `/memfd:` links alone anyway.
            priority: 140,
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
        // Only the dump has state of its own (the restore's is in the restorer).
        Ok((run == RunKind::Dump).then(|| Box::new(dump::DumpState::default()) as PluginState))
    }
}

impl FdHandler for MemfdPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Memfd]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.stat.is_reg()
            && ((is_memfd_link(&fd.link) && dump::on_memfd_fs(fd))
                || (is_anon_shmem_link(&fd.link) && dump::on_shmem_fs(fd)))
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump_file(ctx, fd, id)
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::MemfdRestorer::start(ctx, entries)?))
    }
}

impl StageHooks for MemfdPlugin {
    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::AfterTasksExist]
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        if stage == RestoreStage::AfterTasksExist {
            restore::apply_seals(ctx)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
