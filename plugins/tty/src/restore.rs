//! Restoring terminal descriptions.
//!
//! With `--shell-job` the terminal the tree shared with its shell becomes criu's own: a new
//! description of the terminal on criu's stdin (CRIU dups its stdin), whose settings stay as
//! the restorer's terminal has them. `/dev/tty` is reopened, which names the controlling
//! terminal of the session the tree joined. A console, VT or serial line is reopened by path
//! with its settings put back.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{FileRestorer, InstalledFd, PluginError, RestoreContext, read_messages};
use criu_proto::images::{FileEntry, TtyDataEntry, TtyFileEntry, TtyInfoEntry};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::termios::{SetArg, Termios, tcsetattr};

use crate::entries::{termios_of, winsize_of};
use crate::ioctl;
use crate::kind::Driver;
use crate::{TTY_DATA, TTY_INFO, ctty, pty};

mod finish;

const INFO_IMG: &str = "tty-info.img";

/// What the restorer tells a user whose criu has no terminal to lend.
pub const NO_TERMINAL_HINT: &str = "restore --shell-job: the dumped tree used a terminal; run criu restore with a terminal on stdin";

/// One restore's terminals: `tty-info.img` by id, the paths of the REG entries TTY entries
/// point at, which pty masters the images hold, and the pty masters opened so far.
#[derive(Debug)]
pub(crate) struct TtyRestorer {
    infos: HashMap<u32, TtyInfoEntry>,
    paths: HashMap<u32, String>,
    tty_ids: Vec<u32>,
    /// The TTY entries: file id to (tty info id, flags, path).
    files: HashMap<u32, TtyFileEntry>,
    /// Pty masters opened (criu's own copy), by pty index.
    masters: HashMap<u32, OwnedFd>,
    /// `tty-data.img`.
    data: Vec<TtyDataEntry>,
    /// `/dev/tty` descriptions given a stand-in (file id, flags), see `ctty`.
    pending_ctty: Vec<(u32, u32)>,
}

impl TtyRestorer {
    pub(crate) fn start(
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Self, PluginError> {
        let mut infos = HashMap::new();
        for e in read_messages::<TtyInfoEntry>(ctx, TTY_INFO)? {
            if infos.insert(e.id, e).is_some() {
                return Err(PluginError::bad_image(INFO_IMG, "duplicate tty id"));
            }
        }
        let paths = entries
            .iter()
            .filter_map(|e| Some((e.id, e.reg.as_ref()?.name.clone())))
            .collect();
        let tty_ids = entries
            .iter()
            .filter_map(|e| Some(e.tty.as_ref()?.tty_info_id))
            .collect();
        let files = entries
            .iter()
            .filter_map(|e| Some((e.id, e.tty?)))
            .collect();
        let data = read_messages::<TtyDataEntry>(ctx, TTY_DATA)?;
        for d in &data {
            if !infos.contains_key(&d.tty_id) {
                return Err(PluginError::bad_image(
                    "tty-data.img",
                    format!("data for tty id {:#x}, which tty-info.img lacks", d.tty_id),
                ));
            }
        }
        Ok(TtyRestorer {
            infos,
            paths,
            tty_ids,
            files,
            masters: HashMap::new(),
            data,
            pending_ctty: Vec::new(),
        })
    }

    /// Whether a pty pair of the images was a session's controlling terminal.
    fn has_session_pty(&self) -> bool {
        self.infos
            .values()
            .any(|i| i.sid != 0 && i.pty.is_some() && self.tty_ids.contains(&(i.id | 1)))
    }

    /// The pty index of `info` (a corrupt image without one is an error).
    fn index_of(info: &TtyInfoEntry) -> Result<u32, PluginError> {
        info.pty.as_ref().map(|p| p.index).ok_or_else(|| {
            PluginError::bad_image(INFO_IMG, format!("pty {:#x} without an index", info.id))
        })
    }

    /// The master of pty `index` (slave info id `slave_id`), opened at that index on first
    /// use: unlocked (the slaves are opened next; the lock comes back in `finish`), packet
    /// mode, termios and window size (the kernel applies them to the slave) put back.
    fn master(
        &mut self,
        index: u32,
        slave_id: u32,
        pid: i32,
    ) -> Result<BorrowedFd<'_>, PluginError> {
        if !self.masters.contains_key(&index) {
            let master_id = slave_id | 1;
            let tfe = self.files.values().find(|f| f.tty_info_id == master_id);
            let flags = tfe.map_or(libc::O_RDWR as u32, |f| f.flags);
            // A hung-up pty (its master closed) has no master entry: the slave's stands in.
            let info = self
                .infos
                .get(&master_id)
                .or_else(|| self.infos.get(&slave_id))
                .ok_or_else(|| {
                    PluginError::bad_image(INFO_IMG, format!("no pty master {master_id:#x}"))
                })?;
            let ptmx = tfe
                .and_then(|f| self.path_of(f, info))
                .unwrap_or_else(|| "/dev/ptmx".into());
            let fd = pty::open_index(&ptmx, index, reopen_flags(flags), pid)?;
            let path = format!("/dev/pts/{index}");
            ioctl::set_locked(fd.as_fd(), false)
                .map_err(|e| PluginError::path(&path, "ioctl(TIOCSPTLCK)", e))?;
            let slave_info = self.infos.get(&slave_id);
            let owner = slave_info
                .and_then(|i| i.uid.zip(i.gid))
                .or_else(|| info.uid.zip(info.gid));
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(
                    path.as_str(),
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                )
                .map_err(|e| PluginError::path(&path, "chown", e))?;
            }
            let settings = slave_info.filter(|i| i.termios.is_some());
            apply_settings(&fd, settings.unwrap_or(info), &path)?;
            if info.packet_mode {
                ioctl::set_packet(fd.as_fd(), true)
                    .map_err(|e| PluginError::path(&path, "ioctl(TIOCPKT)", e))?;
            }
            self.masters.insert(index, fd);
        }
        Ok(self.masters[&index].as_fd())
    }

    /// A pty end of a pair inside the tree: the master's description (opened once per
    /// index), or a new description of the slave.
    fn open_pair_end(
        &mut self,
        driver: Driver,
        info_id: u32,
        flags: u32,
        pid: i32,
    ) -> Result<OwnedFd, PluginError> {
        let info = &self.infos[&info_id];
        let index = Self::index_of(info)?;
        let master = self.master(index, info_id & !1, pid)?;
        let path = format!("/dev/pts/{index}");
        match driver {
            Driver::PtyMaster => master.try_clone_to_owned().map_err(|e| PluginError::Path {
                path: path.into(),
                op: "dup",
                source: e,
            }),
            _ => open(path.as_str(), reopen_flags(flags), Mode::empty())
                .map_err(|e| PluginError::path(&path, "open", e)),
        }
    }

    /// The path of a TTY entry: its REG entry (`regf_id`; CRIU itself writes the REG entry
    /// under the TTY entry's own id, which a pty's index also gives).
    fn path_of(&self, tfe: &TtyFileEntry, info: &TtyInfoEntry) -> Option<String> {
        if let Some(p) = tfe.regf_id.and_then(|r| self.paths.get(&r)) {
            return Some(p.clone());
        }
        if let Some(p) = self.paths.get(&tfe.id) {
            return Some(p.clone());
        }
        let index = info.pty.as_ref()?.index;
        Some(if tfe.tty_info_id & 1 == 1 {
            "/dev/ptmx".to_string()
        } else {
            format!("/dev/pts/{index}")
        })
    }
}

impl FileRestorer for TtyRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let pid = ctx.current_pid();
        let tfe = entry.tty.as_ref().ok_or_else(|| {
            PluginError::bad_image("files.img", format!("TTY entry {} without tty", entry.id))
        })?;
        let info = self.infos.get(&tfe.tty_info_id).ok_or_else(|| {
            PluginError::bad_image(
                INFO_IMG,
                format!("no tty id {:#x} (file id {})", tfe.tty_info_id, entry.id),
            )
        })?;
        let driver = Driver::of(u64::from(info.rdev)).ok_or_else(|| {
            PluginError::bad_image(
                INFO_IMG,
                format!("tty {:#x}: device {:#x} is no terminal", info.id, info.rdev),
            )
        })?;
        let path = self.path_of(tfe, info).ok_or_else(|| {
            PluginError::bad_image("files.img", format!("TTY entry {} has no path", entry.id))
        })?;
        let shell_job = ctx.options().shell_job;
        let what = format!("{} {path} (file id {})", driver.name(), entry.id);
        tracing::debug!(
            id = entry.id,
            tty_info_id = info.id,
            path,
            shell_job,
            "opening terminal"
        );
        match driver {
            Driver::PtyMaster => self.open_pair_end(driver, info.id, tfe.flags, pid),
            // A pair, or a slave hung up at dump (no termios): its master was closed.
            Driver::PtySlave if self.tty_ids.contains(&(info.id | 1)) || info.termios.is_none() => {
                self.open_pair_end(driver, info.id, tfe.flags, pid)
            }
            Driver::PtySlave | Driver::Vt | Driver::Serial if shell_job => {
                open_own_terminal(&what, pid, tfe.flags)
            }
            Driver::PtySlave => Err(PluginError::Unsupported {
                resource: what,
                pid,
                hint: "the dumped tree used a terminal outside it (its shell's); restore with --shell-job to give it criu's terminal".into(),
            }),
            Driver::Ctty if shell_job => open_ctty(&what, pid, tfe.flags),
            // The session's terminal is a pair of the tree: opened in the session in `finish`.
            Driver::Ctty if self.has_session_pty() => {
                self.pending_ctty.push((entry.id, tfe.flags));
                ctty::stand_in(reopen_flags(tfe.flags))
            }
            Driver::Ctty => Err(PluginError::Unsupported {
                resource: what,
                pid,
                hint: "restoring controlling terminals is not supported yet; restore with --shell-job".into(),
            }),
            Driver::Console | Driver::Vt | Driver::Serial => {
                let fd = open(path.as_str(), reopen_flags(tfe.flags), Mode::empty())
                    .map_err(|e| PluginError::path(&path, "open", e))?;
                apply_settings(&fd, info, &path)?;
                Ok(fd)
            }
        }
    }

    /// Pty pairs: queued data, exclusive mode, the slave lock and controlling terminals, once
    /// every description is open and every task exists.
    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        self.write_queued()?;
        self.controlling(ctx, installed)?;
        ctty::replace_stand_ins(ctx, &self.pending_ctty, installed)?;
        self.modes()?;
        // The master of a hung-up pty only served to open its slaves: closing it hangs them
        // up again.
        let tty_ids = &self.tty_ids;
        self.masters
            .retain(|index, _| tty_ids.contains(&(index << 1 | 1)));
        Ok(())
    }
}

/// The flags to reopen a terminal with: the dumped ones without creation flags, never
/// making it a controlling terminal as a side effect, close-on-exec until the core installs
/// it.
fn reopen_flags(saved: u32) -> OFlag {
    let creation = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32;
    OFlag::from_bits_retain((saved & !creation) as i32) | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

/// A new description of the terminal on criu's stdin, with the dumped flags; a duplicate of
/// stdin if it cannot be reopened (a terminal criu got from another mount namespace).
fn open_own_terminal(what: &str, pid: i32, flags: u32) -> Result<OwnedFd, PluginError> {
    let stdin = std::io::stdin();
    if !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
        return Err(PluginError::Unsupported {
            resource: what.to_string(),
            pid,
            hint: NO_TERMINAL_HINT.into(),
        });
    }
    match open("/proc/self/fd/0", reopen_flags(flags), Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            tracing::debug!(error = %e, "reopening stdin failed, duplicating it");
            stdin
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| PluginError::Path {
                    path: "stdin".into(),
                    op: "dup",
                    source: e,
                })
        }
    }
}

/// `/dev/tty` reopened: the controlling terminal of criu's session, which the tree joined.
fn open_ctty(what: &str, pid: i32, flags: u32) -> Result<OwnedFd, PluginError> {
    match open("/dev/tty", reopen_flags(flags), Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENXIO) => Err(PluginError::Unsupported {
            resource: what.to_string(),
            pid,
            hint: "restore --shell-job: the dumped tree used /dev/tty but criu has no controlling terminal; run criu restore from a terminal".into(),
        }),
        Err(e) => Err(PluginError::path("/dev/tty", "open", e)),
    }
}

/// Puts termios and window size back on a terminal reopened by path.
fn apply_settings(fd: &OwnedFd, info: &TtyInfoEntry, path: &str) -> Result<(), PluginError> {
    if let Some(t) = &info.termios {
        let t = Termios::from(termios_of(t, INFO_IMG, info.id)?);
        tcsetattr(fd.as_fd(), SetArg::TCSANOW, &t)
            .map_err(|e| PluginError::path(path, "tcsetattr", e))?;
    }
    if let Some(w) = &info.winsize {
        let w = winsize_of(w, INFO_IMG, info.id)?;
        ioctl::set_window_size(fd.as_fd(), &w)
            .map_err(|e| PluginError::path(path, "ioctl(TIOCSWINSZ)", e))?;
    }
    Ok(())
}
