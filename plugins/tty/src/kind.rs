//! Which terminal a device number is, as CRIU's `get_tty_driver` sorts them, and the ids
//! CRIU derives from it.

use criu_proto::images::TtyType;

/// CRIU's fixed "indices" of terminals that are not ptys (`tty_gen_id` input).
const CONSOLE_INDEX: u32 = 1002;
const VT_INDEX: u32 = 1004;
const CTTY_INDEX: u32 = 1006;
/// CRIU refuses pty indices above this (`MAX_PTY_INDEX`): its tty ids must stay small.
pub(crate) const MAX_PTY_INDEX: u32 = 1000;

/// A terminal driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// `/dev/ptmx` (5:2) or a Unix98 pty master (128-135).
    PtyMaster,
    /// `/dev/pts/N` (136-143).
    PtySlave,
    /// `/dev/console` (5:1).
    Console,
    /// `/dev/tty` (5:0): whatever the opener's controlling terminal was.
    Ctty,
    /// A virtual console `/dev/ttyN` (4:1-63).
    Vt,
    /// USB and low-density serial ports (188, 204).
    Serial,
}

impl Driver {
    /// The driver of character device `rdev` (`st_rdev`), `None` for what is not a terminal
    /// this plugin knows (BSD ptys, 8250 serial ports 4:64+...).
    pub(crate) fn of(rdev: u64) -> Option<Driver> {
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        Some(match (major, minor) {
            (5, 0) => Driver::Ctty,
            (5, 1) => Driver::Console,
            (5, 2) | (128..=135, _) => Driver::PtyMaster,
            (4, 1..=63) => Driver::Vt,
            (136..=143, _) => Driver::PtySlave,
            (188 | 204, _) => Driver::Serial,
            _ => return None,
        })
    }

    /// The `tty_info_entry.type`.
    pub(crate) fn tty_type(self) -> TtyType {
        match self {
            Driver::PtyMaster | Driver::PtySlave => TtyType::Pty,
            Driver::Console => TtyType::Console,
            Driver::Ctty => TtyType::Ctty,
            Driver::Vt => TtyType::Vt,
            Driver::Serial => TtyType::Serial,
        }
    }

    /// Whether this is one of the two ends of a pty.
    pub(crate) fn is_pty(self) -> bool {
        matches!(self, Driver::PtyMaster | Driver::PtySlave)
    }

    /// The fixed index of a non-pty driver (CRIU's `driver->index`; serial ports have 0).
    pub(crate) fn fixed_index(self) -> u32 {
        match self {
            Driver::Console => CONSOLE_INDEX,
            Driver::Vt => VT_INDEX,
            Driver::Ctty => CTTY_INDEX,
            Driver::PtyMaster | Driver::PtySlave | Driver::Serial => 0,
        }
    }

    /// A short name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Driver::PtyMaster => "pty master",
            Driver::PtySlave => "pty slave",
            Driver::Console => "console",
            Driver::Ctty => "/dev/tty",
            Driver::Vt => "virtual terminal",
            Driver::Serial => "serial terminal",
        }
    }
}

/// CRIU's `tty_gen_id`: one id per terminal (both ends of a pty share the index, the master
/// gets the odd id). Every description of one terminal shares its `tty_info_entry`.
pub(crate) fn info_id(driver: Driver, index: u32) -> u32 {
    (index << 1) | u32::from(driver == Driver::PtyMaster)
}

/// The pty index of a slave device number: `/dev/pts/<index>`.
pub(crate) fn slave_index(rdev: u64) -> u32 {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    ((major.saturating_sub(136) << 8) + minor) as u32
}

/// The kernel's `new_encode_dev`: how `/proc/PID/stat` shows `tty_nr`.
pub(crate) fn proc_tty_nr(rdev: u64) -> u64 {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}
