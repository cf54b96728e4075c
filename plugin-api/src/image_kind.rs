//! The image kinds a plugin reads or writes, by CRIU's kind name.
//!
//! A plain enum of this contract (not `criu_proto`'s) so that the later stable ABI can carry it
//! as is; the core maps a kind to `criu_proto`'s table with [`PluginImageKind::to_proto`].
//! Per-task images (core, mm, pagemap, ...) belong to the core and are not listed.

use criu_proto::ImageKind;

/// An image kind a plugin may use. `#[non_exhaustive]`: kinds are added as plugins need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginImageKind {
    /// `files.img` (FILES).
    Files,
    /// `reg-files.img` (REG_FILES).
    RegFiles,
    /// `ext-files.img` (EXT_FILES).
    ExtFiles,
    /// `ns-files.img` (NS_FILES).
    NsFiles,
    /// `remap-fpath.img` (REMAP_FPATH).
    RemapFpath,
    /// `ghost-file-%x.img` (GHOST_FILE).
    GhostFile,
    /// `pipes.img` (PIPES).
    Pipes,
    /// `pipes-data.img` (PIPES_DATA).
    PipesData,
    /// `fifo.img` (FIFO).
    Fifo,
    /// `fifo-data.img` (FIFO_DATA).
    FifoData,
    /// `eventfd.img` (EVENTFD_FILE).
    EventfdFile,
    /// `eventpoll.img` (EVENTPOLL_FILE).
    EventpollFile,
    /// `eventpoll-tfd.img` (EVENTPOLL_TFD).
    EventpollTfd,
    /// `signalfd.img` (SIGNALFD).
    Signalfd,
    /// `inotify.img` (INOTIFY_FILE).
    InotifyFile,
    /// `inotify-wd.img` (INOTIFY_WD).
    InotifyWd,
    /// `fanotify.img` (FANOTIFY_FILE).
    FanotifyFile,
    /// `fanotify-mark.img` (FANOTIFY_MARK).
    FanotifyMark,
    /// `timerfd.img` (TIMERFD).
    Timerfd,
    /// `memfd.img` (MEMFD_INODE).
    MemfdInode,
    /// `pidfd.img` (PIDFD).
    Pidfd,
    /// `bpfmap-file.img` (BPFMAP_FILE).
    BpfmapFile,
    /// `bpfmap-data.img` (BPFMAP_DATA).
    BpfmapData,
    /// `tunfile.img` (TUNFILE).
    Tunfile,
    /// `unixsk.img` (UNIXSK).
    Unixsk,
    /// `inetsk.img` (INETSK).
    Inetsk,
    /// `packetsk.img` (PACKETSK).
    Packetsk,
    /// `netlinksk.img` (NETLINK_SK).
    NetlinkSk,
    /// `sk-queues.img` (SK_QUEUES).
    SkQueues,
    /// `tcp-stream-%x.img` (TCP_STREAM).
    TcpStream,
    /// `tty.img` (TTY_FILES).
    TtyFiles,
    /// `tty-info.img` (TTY_INFO).
    TtyInfo,
    /// `tty-data.img` (TTY_DATA).
    TtyData,
    /// `filelocks.img` (FILE_LOCKS).
    FileLocks,
}

impl PluginImageKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [PluginImageKind] = &[
        PluginImageKind::Files,
        PluginImageKind::RegFiles,
        PluginImageKind::ExtFiles,
        PluginImageKind::NsFiles,
        PluginImageKind::RemapFpath,
        PluginImageKind::GhostFile,
        PluginImageKind::Pipes,
        PluginImageKind::PipesData,
        PluginImageKind::Fifo,
        PluginImageKind::FifoData,
        PluginImageKind::EventfdFile,
        PluginImageKind::EventpollFile,
        PluginImageKind::EventpollTfd,
        PluginImageKind::Signalfd,
        PluginImageKind::InotifyFile,
        PluginImageKind::InotifyWd,
        PluginImageKind::FanotifyFile,
        PluginImageKind::FanotifyMark,
        PluginImageKind::Timerfd,
        PluginImageKind::MemfdInode,
        PluginImageKind::Pidfd,
        PluginImageKind::BpfmapFile,
        PluginImageKind::BpfmapData,
        PluginImageKind::Tunfile,
        PluginImageKind::Unixsk,
        PluginImageKind::Inetsk,
        PluginImageKind::Packetsk,
        PluginImageKind::NetlinkSk,
        PluginImageKind::SkQueues,
        PluginImageKind::TcpStream,
        PluginImageKind::TtyFiles,
        PluginImageKind::TtyInfo,
        PluginImageKind::TtyData,
        PluginImageKind::FileLocks,
    ];

    /// CRIU's name of the kind (`"FILES"`, `"GHOST_FILE"`): the name in CRIU's image table and
    /// in crit's JSON `magic` field.
    pub const fn criu_name(self) -> &'static str {
        match self {
            PluginImageKind::Files => "FILES",
            PluginImageKind::RegFiles => "REG_FILES",
            PluginImageKind::ExtFiles => "EXT_FILES",
            PluginImageKind::NsFiles => "NS_FILES",
            PluginImageKind::RemapFpath => "REMAP_FPATH",
            PluginImageKind::GhostFile => "GHOST_FILE",
            PluginImageKind::Pipes => "PIPES",
            PluginImageKind::PipesData => "PIPES_DATA",
            PluginImageKind::Fifo => "FIFO",
            PluginImageKind::FifoData => "FIFO_DATA",
            PluginImageKind::EventfdFile => "EVENTFD_FILE",
            PluginImageKind::EventpollFile => "EVENTPOLL_FILE",
            PluginImageKind::EventpollTfd => "EVENTPOLL_TFD",
            PluginImageKind::Signalfd => "SIGNALFD",
            PluginImageKind::InotifyFile => "INOTIFY_FILE",
            PluginImageKind::InotifyWd => "INOTIFY_WD",
            PluginImageKind::FanotifyFile => "FANOTIFY_FILE",
            PluginImageKind::FanotifyMark => "FANOTIFY_MARK",
            PluginImageKind::Timerfd => "TIMERFD",
            PluginImageKind::MemfdInode => "MEMFD_INODE",
            PluginImageKind::Pidfd => "PIDFD",
            PluginImageKind::BpfmapFile => "BPFMAP_FILE",
            PluginImageKind::BpfmapData => "BPFMAP_DATA",
            PluginImageKind::Tunfile => "TUNFILE",
            PluginImageKind::Unixsk => "UNIXSK",
            PluginImageKind::Inetsk => "INETSK",
            PluginImageKind::Packetsk => "PACKETSK",
            PluginImageKind::NetlinkSk => "NETLINK_SK",
            PluginImageKind::SkQueues => "SK_QUEUES",
            PluginImageKind::TcpStream => "TCP_STREAM",
            PluginImageKind::TtyFiles => "TTY_FILES",
            PluginImageKind::TtyInfo => "TTY_INFO",
            PluginImageKind::TtyData => "TTY_DATA",
            PluginImageKind::FileLocks => "FILE_LOCKS",
        }
    }

    /// CRIU's file name pattern (printf style; `%x` is the id in hex).
    pub const fn file_pattern(self) -> &'static str {
        match self {
            PluginImageKind::Files => "files.img",
            PluginImageKind::RegFiles => "reg-files.img",
            PluginImageKind::ExtFiles => "ext-files.img",
            PluginImageKind::NsFiles => "ns-files.img",
            PluginImageKind::RemapFpath => "remap-fpath.img",
            PluginImageKind::GhostFile => "ghost-file-%x.img",
            PluginImageKind::Pipes => "pipes.img",
            PluginImageKind::PipesData => "pipes-data.img",
            PluginImageKind::Fifo => "fifo.img",
            PluginImageKind::FifoData => "fifo-data.img",
            PluginImageKind::EventfdFile => "eventfd.img",
            PluginImageKind::EventpollFile => "eventpoll.img",
            PluginImageKind::EventpollTfd => "eventpoll-tfd.img",
            PluginImageKind::Signalfd => "signalfd.img",
            PluginImageKind::InotifyFile => "inotify.img",
            PluginImageKind::InotifyWd => "inotify-wd.img",
            PluginImageKind::FanotifyFile => "fanotify.img",
            PluginImageKind::FanotifyMark => "fanotify-mark.img",
            PluginImageKind::Timerfd => "timerfd.img",
            PluginImageKind::MemfdInode => "memfd.img",
            PluginImageKind::Pidfd => "pidfd.img",
            PluginImageKind::BpfmapFile => "bpfmap-file.img",
            PluginImageKind::BpfmapData => "bpfmap-data.img",
            PluginImageKind::Tunfile => "tunfile.img",
            PluginImageKind::Unixsk => "unixsk.img",
            PluginImageKind::Inetsk => "inetsk.img",
            PluginImageKind::Packetsk => "packetsk.img",
            PluginImageKind::NetlinkSk => "netlinksk.img",
            PluginImageKind::SkQueues => "sk-queues.img",
            PluginImageKind::TcpStream => "tcp-stream-%x.img",
            PluginImageKind::TtyFiles => "tty.img",
            PluginImageKind::TtyInfo => "tty-info.img",
            PluginImageKind::TtyData => "tty-data.img",
            PluginImageKind::FileLocks => "filelocks.img",
        }
    }

    /// The same kind in `criu_proto`'s image table (magic, framing, file name).
    pub const fn to_proto(self) -> ImageKind {
        match self {
            PluginImageKind::Files => ImageKind::Files,
            PluginImageKind::RegFiles => ImageKind::RegFiles,
            PluginImageKind::ExtFiles => ImageKind::ExtFiles,
            PluginImageKind::NsFiles => ImageKind::NsFiles,
            PluginImageKind::RemapFpath => ImageKind::RemapFpath,
            PluginImageKind::GhostFile => ImageKind::GhostFile,
            PluginImageKind::Pipes => ImageKind::Pipes,
            PluginImageKind::PipesData => ImageKind::PipesData,
            PluginImageKind::Fifo => ImageKind::Fifo,
            PluginImageKind::FifoData => ImageKind::FifoData,
            PluginImageKind::EventfdFile => ImageKind::EventfdFile,
            PluginImageKind::EventpollFile => ImageKind::EventpollFile,
            PluginImageKind::EventpollTfd => ImageKind::EventpollTfd,
            PluginImageKind::Signalfd => ImageKind::Signalfd,
            PluginImageKind::InotifyFile => ImageKind::InotifyFile,
            PluginImageKind::InotifyWd => ImageKind::InotifyWd,
            PluginImageKind::FanotifyFile => ImageKind::FanotifyFile,
            PluginImageKind::FanotifyMark => ImageKind::FanotifyMark,
            PluginImageKind::Timerfd => ImageKind::Timerfd,
            PluginImageKind::MemfdInode => ImageKind::MemfdInode,
            PluginImageKind::Pidfd => ImageKind::Pidfd,
            PluginImageKind::BpfmapFile => ImageKind::BpfmapFile,
            PluginImageKind::BpfmapData => ImageKind::BpfmapData,
            PluginImageKind::Tunfile => ImageKind::Tunfile,
            PluginImageKind::Unixsk => ImageKind::Unixsk,
            PluginImageKind::Inetsk => ImageKind::Inetsk,
            PluginImageKind::Packetsk => ImageKind::Packetsk,
            PluginImageKind::NetlinkSk => ImageKind::NetlinkSk,
            PluginImageKind::SkQueues => ImageKind::SkQueues,
            PluginImageKind::TcpStream => ImageKind::TcpStream,
            PluginImageKind::TtyFiles => ImageKind::TtyFiles,
            PluginImageKind::TtyInfo => ImageKind::TtyInfo,
            PluginImageKind::TtyData => ImageKind::TtyData,
            PluginImageKind::FileLocks => ImageKind::FileLocks,
        }
    }

    /// Whether file names of this kind carry an id (`ghost-file-%x.img`).
    pub fn takes_id(self) -> bool {
        self.file_pattern().contains('%')
    }

    /// The file name for `id` (ignored by kinds without one; `None` when the kind needs an
    /// id and none was given).
    pub fn file_name(self, id: Option<u64>) -> Option<String> {
        let pattern = self.file_pattern();
        match (pattern.split_once("%x"), id) {
            (Some((head, tail)), Some(id)) => Some(format!("{head}{id:x}{tail}")),
            (Some(_), None) => None,
            (None, _) => Some(pattern.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        assert_eq!(
            PluginImageKind::GhostFile.file_name(Some(0x1a)).as_deref(),
            Some("ghost-file-1a.img")
        );
        assert_eq!(PluginImageKind::GhostFile.file_name(None), None);
        assert_eq!(
            PluginImageKind::PipesData.file_name(Some(3)).as_deref(),
            Some("pipes-data.img")
        );
        assert_eq!(PluginImageKind::NetlinkSk.criu_name(), "NETLINK_SK");
        for k in PluginImageKind::ALL {
            // every pattern is either plain or has exactly one %x
            assert!(k.file_pattern().matches('%').count() <= 1, "{k:?}");
            assert_eq!(k.takes_id(), k.file_pattern().contains("%x"), "{k:?}");
            // same name and file name pattern as criu_proto's table
            assert_eq!(k.to_proto().name(), k.criu_name());
            assert_eq!(k.to_proto().pattern(), k.file_pattern());
        }
    }
}
