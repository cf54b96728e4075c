//! Restoring terminal descriptions.
//!
//! With `--shell-job` the terminal the tree shared with its shell becomes criu's own: a new
//! description of the terminal on criu's stdin (CRIU dups its stdin), whose settings stay as
//! the restorer's terminal has them. `/dev/tty` is reopened, which names the controlling
//! terminal of the session the tree joined. A console, VT or serial line is reopened by path
//! with its settings put back.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{FileRestorer, PluginError, RestoreContext, read_messages};
use criu_proto::images::{FileEntry, TtyFileEntry, TtyInfoEntry};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::termios::{SetArg, Termios, tcsetattr};

use crate::TTY_INFO;
use crate::entries::{termios_of, winsize_of};
use crate::ioctl;
use crate::kind::Driver;

const INFO_IMG: &str = "tty-info.img";

/// What the restorer tells a user whose criu has no terminal to lend.
pub const NO_TERMINAL_HINT: &str = "restore --shell-job: the dumped tree used a terminal; run criu restore with a terminal on stdin";

/// One restore's terminals: `tty-info.img` by id, the paths of the REG entries TTY entries
/// point at, and which pty masters the images hold.
#[derive(Debug)]
pub(crate) struct TtyRestorer {
    infos: HashMap<u32, TtyInfoEntry>,
    paths: HashMap<u32, String>,
    tty_ids: Vec<u32>,
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
        Ok(TtyRestorer {
            infos,
            paths,
            tty_ids,
        })
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
            Driver::PtyMaster => Err(PluginError::Unsupported {
                resource: what,
                pid,
                hint: "pty masters are not supported yet".into(),
            }),
            Driver::PtySlave if self.tty_ids.contains(&(info.id | 1)) => {
                Err(PluginError::Unsupported {
                    resource: what,
                    pid,
                    hint: "pty pairs inside the dumped tree are not supported yet".into(),
                })
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
