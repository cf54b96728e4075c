//! Built-in plugin for packet sockets (`AF_PACKET`: `SOCK_RAW`, `SOCK_DGRAM` and the old
//! `SOCK_PACKET`), CRIU 4.x format: a `files.img` PACKETSK entry (`file_entry.psk`) per
//! open file description, with the bound interface (by index; by name for `SOCK_PACKET`),
//! protocol, `PACKET_VERSION`, `PACKET_RESERVE`, `PACKET_TIMESTAMP`, `PACKET_COPY_THRESH`,
//! `PACKET_AUXDATA`/`ORIGDEV`/`VNET_HDR`/`LOSS`, memberships (`PACKET_ADD_MEMBERSHIP`),
//! fanout, the rx and tx rings and the generic socket options.
//!
//! Dump reads them with `sock_diag` ([`diag`]) in the socket's network namespace
//! ([`dump`]); the task mappings of a ring go through the VMA capability ([`maps`]).
//! Restore makes each socket in the restorer ([`restore`]) and maps the new rings in the
//! tasks at the dumped addresses. Frames queued or in a ring at dump time are dropped,
//! as CRIU drops them.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod diag;
pub mod dump;
pub mod maps;
pub mod restore;
mod sys;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, Plugin, PluginError,
    PluginInfo, PluginRegistration, PluginState, RestoreContext, RunKind, StageHooks, VmaDesc,
    VmaHandler,
};
use criu_proto::images::{FdTypes, FileEntry, PacketRing};

/// The plugin's name.
pub const NAME: &str = "packet";

/// One dump's state.
#[derive(Debug, Default)]
pub struct DumpState {
    /// The packet sockets of each network namespace (by its inode), by socket inode.
    pub sockets: HashMap<u64, HashMap<u32, diag::Desc>>,
    /// Dumped sockets: inode to (file id, pid it was found in).
    pub files: HashMap<u32, (u32, i32)>,
    /// Ring mappings and the socket inode each maps.
    pub maps: Vec<(VmaDesc, u32)>,
}

/// One restore's state.
#[derive(Debug, Default)]
pub struct RestoreState {
    /// The mappings of [`maps::FILE`], once read.
    pub maps: Option<Vec<maps::MapRec>>,
}

/// The `packet_ring` of a ring `sock_diag` shows.
pub(crate) fn dump_ring(r: &diag::Ring) -> PacketRing {
    PacketRing {
        block_size: r.block_size,
        block_nr: r.block_nr,
        frame_size: r.frame_size,
        frame_nr: r.frame_nr,
        retire_tmo: r.retire_tmo,
        sizeof_priv: r.sizeof_priv,
        features: r.features,
    }
}

/// Packet sockets and their ring mappings.
#[derive(Debug, Default)]
pub struct PacketPlugin;

/// The registered instance.
pub static PLUGIN: PacketPlugin = PacketPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for PacketPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 125,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn vma_handler(&self) -> Option<&dyn VmaHandler> {
        Some(self)
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(Some(match run {
            RunKind::Dump => Box::new(DumpState::default()) as PluginState,
            RunKind::Restore => Box::new(RestoreState::default()) as PluginState,
        }))
    }
}

impl FdHandler for PacketPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Packetsk]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.stat.file_type() == libc::S_IFSOCK
            && fd.link.starts_with("socket:")
            && criu_sk_common::sys::get_int(fd.file(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                .is_ok_and(|d| d == libc::AF_PACKET)
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump(ctx, fd, id)
    }

    fn start_restore(
        &self,
        _ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::PacketRestorer::start(entries)?))
    }
}

impl VmaHandler for PacketPlugin {
    fn vma_kinds(&self) -> &[&str] {
        &["packet socket ring mappings"]
    }

    fn claims_vma(&self, vma: &VmaDesc) -> bool {
        maps::socket_ino(&vma.name).is_some()
    }

    fn dump_vma(&self, ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
        maps::dump_vma(ctx, vma)
    }

    fn restore_vma(&self, ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
        maps::restore_vma(ctx, vma)
    }
}

impl StageHooks for PacketPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::AfterDump => maps::write_maps(ctx),
            _ => Ok(()),
        }
    }
}
