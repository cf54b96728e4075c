//! Pty pairs inside the dumped tree, dump side: which pty indices have their master in the
//! tree (a slave of such a pty is restored with its master, not as the shell's terminal),
//! and the data queued between the two ends (see `queued`), taken once every fd is dumped.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{DumpContext, PluginError, write_message};
use criu_proto::images::TtyDataEntry;

use crate::TTY_DATA;
use crate::dump::DumpState;
use crate::ioctl::{self, Flag};
use crate::kind::Driver;
use crate::queued::{Toward, read_pending, write_through};

/// The two ends of one pty as criu holds them (a duplicate of one description of each),
/// with their `tty-info.img` ids.
#[derive(Debug, Default)]
pub(crate) struct Ends {
    pub master: Option<(u32, OwnedFd)>,
    pub slave: Option<(u32, OwnedFd)>,
}

/// Every pty end met in the dump, by pty index.
pub(crate) type EndsByIndex = BTreeMap<u32, Ends>;

/// The `tty-index:` of a pty master's fdinfo text.
pub(crate) fn parse_tty_index(fdinfo: &str) -> Option<u32> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("tty-index:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The indices of the pty masters the tree's tasks hold as fds (their fdinfo names the
/// index).
pub(crate) fn masters_in_tree(ctx: &dyn DumpContext) -> HashSet<u32> {
    let mut out = HashSet::new();
    for t in ctx.tasks() {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", t.pid)) else {
            continue;
        };
        for e in dir.flatten() {
            let Ok(meta) = std::fs::metadata(e.path()) else {
                continue;
            };
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            if !meta.file_type().is_char_device()
                || Driver::of(meta.rdev()) != Some(Driver::PtyMaster)
            {
                continue;
            }
            let info = format!("/proc/{}/fdinfo/{}", t.pid, e.file_name().to_string_lossy());
            if let Some(i) = std::fs::read_to_string(info)
                .ok()
                .as_deref()
                .and_then(parse_tty_index)
            {
                out.insert(i);
            }
        }
    }
    out
}

/// Whether the master of pty `index` is in the dumped tree (listed once per dump).
pub(crate) fn master_in_tree(ctx: &mut dyn DumpContext, index: u32) -> Result<bool, PluginError> {
    if ctx.state::<DumpState>()?.masters.is_none() {
        let found = masters_in_tree(ctx);
        ctx.state::<DumpState>()?.masters = Some(found);
    }
    Ok(ctx
        .state::<DumpState>()?
        .masters
        .as_ref()
        .is_some_and(|m| m.contains(&index)))
}

fn pty_err(index: u32, op: &'static str, e: nix::errno::Errno) -> PluginError {
    PluginError::Path {
        path: format!("/dev/pts/{index}").into(),
        op,
        source: e.into(),
    }
}

/// `tty-data.img`: the queued data of every pair with both ends dumped, read and written
/// back at once.
pub(crate) fn dump_queued(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let ends = std::mem::take(&mut ctx.state::<DumpState>()?.ends);
    for (index, e) in ends {
        let (Some((m_id, master)), Some((s_id, slave))) = (e.master, e.slave) else {
            continue;
        };
        let (m, s) = (master.as_fd(), slave.as_fd());
        // What the slave wrote (the master's input), then what the master wrote. Packet mode
        // would put a status byte before each read's data: off while criu reads (turning it
        // back on drops pending status bits, as a reader of them would have).
        let packet =
            ioctl::flag(m, Flag::Packet).map_err(|e| pty_err(index, "ioctl(TIOCGPKT)", e))?;
        if packet {
            ioctl::set_packet(m, false).map_err(|e| pty_err(index, "ioctl(TIOCPKT)", e))?;
        }
        let read = read_pending(m).map_err(|e| pty_err(index, "read (master)", e));
        if packet {
            ioctl::set_packet(m, true).map_err(|e| pty_err(index, "ioctl(TIOCPKT)", e))?;
        }
        let for_master = read?;
        let for_slave = read_pending(s).map_err(|e| pty_err(index, "read (slave)", e))?;
        write_through(m, s, Toward::Master, &for_master)
            .map_err(|e| pty_err(index, "write back (to the master's input)", e))?;
        write_through(m, m, Toward::Slave, &for_slave)
            .map_err(|e| pty_err(index, "write back (to the slave's input)", e))?;
        tracing::debug!(
            index,
            master_bytes = for_master.len(),
            slave_bytes = for_slave.len(),
            "pty queued data"
        );
        for (tty_id, data) in [(m_id, for_master), (s_id, for_slave)] {
            if !data.is_empty() {
                write_message(ctx, TTY_DATA, &TtyDataEntry { tty_id, data }, &[])?;
            }
        }
    }
    Ok(())
}
