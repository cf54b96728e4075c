//! Dumping a terminal description: a `files.img` TTY entry per description, one
//! `tty-info.img` entry per terminal (shared by all its descriptions), and a REG entry
//! holding the terminal's path.

use std::collections::HashSet;
use std::os::fd::BorrowedFd;

use criu_plugin_api::{DumpContext, FdDesc, ImageRef, PluginError, write_message};
use criu_proto::images::{
    FdTypes, FileEntry, RegFileEntry, TtyFileEntry, TtyInfoEntry, TtyPtyEntry,
};
use nix::errno::Errno;

use crate::TTY_INFO;
use crate::entries::{termios_entry, winsize_entry};
use crate::ioctl::{self, Flag};
use crate::kind::{Driver, MAX_PTY_INDEX, info_id, proc_tty_nr, slave_index};
use crate::pairs::{self, EndsByIndex};
use crate::session::{self, TaskTty};

/// What one dump remembers across fds and tasks.
#[derive(Debug, Default)]
pub(crate) struct DumpState {
    /// The `tty-info.img` ids written (several fds share one terminal).
    infos: HashSet<u32>,
    /// With `--shell-job`: the one terminal outside the tree that becomes criu's own on
    /// restore (its tty info id), once met.
    shell_tty: Option<u32>,
    /// The indices of the pty masters the tree holds, once asked.
    pub(crate) masters: Option<HashSet<u32>>,
    /// Each pty's ends as criu holds them, for the queued data.
    pub(crate) ends: EndsByIndex,
}

fn unsupported(fd: &FdDesc, hint: impl Into<String>) -> PluginError {
    PluginError::Unsupported {
        // The error adds "of pid P" itself.
        resource: format!("fd {} ({})", fd.fd, fd.link),
        pid: fd.pid,
        hint: hint.into(),
    }
}

fn fd_err(fd: &FdDesc, op: &'static str, e: Errno) -> PluginError {
    PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source: e.into(),
    }
}

/// The TTY entry for `fd` under `id`.
pub(crate) fn dump_file(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let rdev = fd.stat.rdev;
    let driver = Driver::of(rdev).ok_or_else(|| unsupported(fd, "not a known terminal"))?;
    let index = match driver {
        Driver::PtyMaster => {
            ioctl::pty_index(fd.file()).map_err(|e| fd_err(fd, "ioctl(TIOCGPTN)", e))?
        }
        Driver::PtySlave => slave_index(rdev),
        other => other.fixed_index(),
    };
    if driver.is_pty() && index > MAX_PTY_INDEX {
        return Err(unsupported(
            fd,
            format!("pty index {index} is above {MAX_PTY_INDEX}, the largest CRIU images carry"),
        ));
    }
    let task = session::task_tty(fd.pid)?;
    check_policy(ctx, fd, driver, index, &task)?;
    if driver.is_pty() {
        remember_end(ctx, fd, driver, index)?;
    }

    let info = info_id(driver, index);
    if !ctx.state::<DumpState>()?.infos.contains(&info) {
        let entry = info_entry(fd, driver, index, info, &task)?;
        write_message(ctx, TTY_INFO, &entry, &[])?;
        ctx.state::<DumpState>()?.infos.insert(info);
    }

    let flags = fd.fdinfo.file_flags();
    let regf_id = ctx.new_file_id();
    let reg = FileEntry {
        r#type: FdTypes::Reg as i32,
        id: regf_id,
        reg: Some(RegFileEntry {
            id: regf_id,
            flags,
            pos: 0,
            fown: fd.owner.to_entry(),
            name: fd.link.clone(),
            mode: Some(fd.stat.mode),
            ..Default::default()
        }),
        ..Default::default()
    };
    write_message(ctx, ImageRef::FILES, &reg, &[])?;
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        tty_info_id = info,
        regf_id,
        driver = driver.name(),
        "dumping terminal"
    );
    Ok(FileEntry {
        r#type: FdTypes::Tty as i32,
        id,
        tty: Some(TtyFileEntry {
            id,
            tty_info_id: info,
            flags,
            fown: fd.owner.to_entry(),
            regf_id: Some(regf_id),
        }),
        ..Default::default()
    })
}

/// Keeps a duplicate of the first description of each end of pty `index` (its queued data
/// is read at the end of the dump).
fn remember_end(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    driver: Driver,
    index: u32,
) -> Result<(), PluginError> {
    let id = info_id(driver, index);
    let state = ctx.state::<DumpState>()?;
    let ends = state.ends.entry(index).or_default();
    let slot = if driver == Driver::PtyMaster {
        &mut ends.master
    } else {
        &mut ends.slave
    };
    if slot.is_none() {
        let file: BorrowedFd<'_> = fd.file();
        let dup = file.try_clone_to_owned().map_err(|e| PluginError::Fd {
            pid: fd.pid,
            fd: fd.fd,
            link: fd.link.clone(),
            op: "dup",
            source: e,
        })?;
        *slot = Some((id, dup));
    }
    Ok(())
}

/// Whether the controlling terminal of `task` is a pty slave whose master is in the tree.
fn ctty_is_tree_pair(ctx: &mut dyn DumpContext, task: &TaskTty) -> Result<bool, PluginError> {
    // `tty_nr` is the kernel's new_encode_dev: minor bits 0-7 and 20-31, major 8-19.
    let nr = task.tty_nr;
    let (major, minor) = ((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
    let rdev = nix::sys::stat::makedev(major, minor);
    if nr == 0 || Driver::of(rdev) != Some(Driver::PtySlave) {
        return Ok(false);
    }
    pairs::master_in_tree(ctx, slave_index(rdev))
}

/// The session `fd`'s terminal controls, as CRIU's parasite sees it from the task: the
/// task's session and foreground group when it is the task's controlling terminal, else 0.
fn session_of(rdev: u64, task: &TaskTty) -> (u32, u32) {
    if task.tty_nr != 0 && task.tty_nr == proc_tty_nr(rdev) {
        (task.sid.max(0) as u32, task.tpgid.max(0) as u32)
    } else {
        (0, 0)
    }
}

/// CRIU's rules: both ends of a pty whose master is in the tree are dumped as a pair; a
/// terminal of a session led outside the dumped tree is the shell's and needs
/// `--shell-job`; a pty slave whose master is not dumped can only come back as criu's own
/// terminal, which also needs `--shell-job`, and only one such terminal can.
fn check_policy(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    driver: Driver,
    index: u32,
    task: &TaskTty,
) -> Result<(), PluginError> {
    // A pair inside the tree comes back as a pair: neither end is the shell's terminal.
    if driver == Driver::PtyMaster
        || (driver == Driver::PtySlave && pairs::master_in_tree(ctx, index)?)
    {
        return Ok(());
    }
    // A slave hung up because its master was closed (nobody holds it any more): restored
    // hung up, behind a master criu opens and closes again.
    if driver == Driver::PtySlave
        && nix::sys::termios::tcgetattr(fd.file()).err() == Some(Errno::EIO)
    {
        return Ok(());
    }
    let shell_job = ctx.options().shell_job;
    // /dev/tty stands for the task's controlling terminal, so its session is the task's.
    let sid = match driver {
        Driver::Ctty => task.sid.max(0) as u32,
        _ => session_of(fd.stat.rdev, task).0,
    };
    let outside = sid != 0 && !session::in_dumped_tree(sid as i32);
    if !shell_job {
        if outside {
            return Err(unsupported(
                fd,
                format!(
                    "{} {} is the terminal of session {sid}, whose leader is not in the dumped tree (the shell's terminal); use --shell-job",
                    driver.name(),
                    fd.link
                ),
            ));
        }
        match driver {
            Driver::PtySlave => {
                return Err(unsupported(
                    fd,
                    format!(
                        "pty slave {} has no master in the dumped tree (its master is held outside it); use --shell-job to restore it as criu's own terminal",
                        fd.link
                    ),
                ));
            }
            // /dev/tty of a session whose terminal is a pair of the tree: restored with it.
            Driver::Ctty if ctty_is_tree_pair(ctx, task)? => {}
            Driver::Ctty => {
                return Err(unsupported(
                    fd,
                    "/dev/tty of a session led inside the dumped tree whose terminal is not a pty pair of the tree (its master is held outside it): use --shell-job",
                ));
            }
            _ => {}
        }
        return Ok(());
    }
    // With --shell-job a slave without its master, a VT or a serial line becomes criu's
    // terminal on restore: one terminal only (CRIU's "one external slave peer").
    if matches!(driver, Driver::PtySlave | Driver::Vt | Driver::Serial) {
        let this = info_id(driver, index);
        let state = ctx.state::<DumpState>()?;
        match state.shell_tty {
            None => state.shell_tty = Some(this),
            Some(v) if v == this => {}
            Some(v) => {
                return Err(unsupported(
                    fd,
                    format!(
                        "{} is a second terminal outside the dumped tree (tty id {:#x} came first); only one terminal can become criu's own on restore",
                        fd.link, v
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The `tty_info_entry` of the terminal behind `fd`.
fn info_entry(
    fd: &FdDesc,
    driver: Driver,
    index: u32,
    id: u32,
    task: &TaskTty,
) -> Result<TtyInfoEntry, PluginError> {
    let file = fd.file();
    let (sid, pgrp) = if driver == Driver::PtyMaster {
        let (s, p) =
            ioctl::slave_session(file).map_err(|e| fd_err(fd, "ioctl(TIOCGSID) (master)", e))?;
        (s.max(0) as u32, p.max(0) as u32)
    } else {
        session_of(fd.stat.rdev, task)
    };
    // The owner of the slave's node (`grantpt` gives it to the opener; programs chown it).
    let owner = match driver {
        Driver::PtySlave => Some((fd.stat.uid, fd.stat.gid)),
        Driver::PtyMaster => {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/dev/pts/{index}"))
                .ok()
                .map(|m| (m.uid(), m.gid()))
        }
        _ => None,
    };
    // A hung-up terminal answers every request with EIO: it has no modes left to keep.
    let hung_up = nix::sys::termios::tcgetattr(file).err() == Some(Errno::EIO);
    let flag = |which, op| {
        if hung_up {
            return Ok(false);
        }
        ioctl::flag(file, which).map_err(|e| fd_err(fd, op, e))
    };
    let packet_mode = driver.is_pty() && flag(Flag::Packet, "ioctl(TIOCGPKT)")?;
    let locked = driver.is_pty() && flag(Flag::Locked, "ioctl(TIOCGPTLCK)")?;
    let mut entry = TtyInfoEntry {
        id,
        r#type: driver.tty_type() as i32,
        locked,
        exclusive: flag(Flag::Exclusive, "ioctl(TIOCGEXCL)")?,
        packet_mode,
        sid,
        pgrp,
        rdev: fd.stat.rdev as u32,
        dev: Some(fd.stat.dev as u32),
        pty: driver.is_pty().then_some(TtyPtyEntry { index }),
        uid: owner.map(|o| o.0),
        gid: owner.map(|o| o.1),
        ..Default::default()
    };
    // A hung-up terminal answers EIO: CRIU stores what it has and no settings.
    let termios = match nix::sys::termios::tcgetattr(file) {
        Ok(t) => libc::termios::from(t),
        Err(Errno::EIO) => {
            tracing::debug!(pid = fd.pid, fd = fd.fd, "terminal hung up");
            return Ok(entry);
        }
        Err(e) => return Err(fd_err(fd, "tcgetattr", e)),
    };
    let locked_termios =
        ioctl::locked_termios(file).map_err(|e| fd_err(fd, "ioctl(TIOCGLCKTRMIOS)", e))?;
    let winsize = ioctl::window_size(file).map_err(|e| fd_err(fd, "ioctl(TIOCGWINSZ)", e))?;
    entry.termios = Some(termios_entry(&termios));
    entry.termios_locked = Some(termios_entry(&locked_termios));
    entry.winsize = Some(winsize_entry(&winsize));
    Ok(entry)
}
