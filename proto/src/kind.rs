//! Image kinds: magic numbers, file names and entry messages of every CRIU image file.

use std::fmt;

/// First magic of every framed image except `inventory.img`.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// First magic of service images (`stats-*`, `irmap-cache.img`).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// Image format version stored in `inventory_entry.img_version` (CRTOOLS_IMAGES_V1_1).
pub const CRTOOLS_IMAGES_V1_1: u32 = 2;
/// `stats-dump`: statistics written at the end of a dump.
pub const STATS_DUMP_ID: u64 = 0;
/// `stats-restore`: statistics written at the end of a restore.
pub const STATS_RESTORE_ID: u64 = 1;

/// How the bytes of an image file are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// `INVENTORY_MAGIC` alone, then entries.
    Inventory,
    /// `IMG_COMMON_MAGIC`, the kind's magic, then entries.
    Common,
    /// `IMG_SERVICE_MAGIC`, the kind's magic, then entries.
    Service,
    /// No header and no framing (pages, tarballs, netlink dumps).
    Raw,
    /// A pre-1.0 layout CRIU itself no longer writes; recognised by name only.
    Legacy,
}

/// Raw bytes that follow some entries, sized from the entry itself (crit's "extra").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtraPayload {
    /// No extra bytes.
    None,
    /// `pipe_data_entry.bytes` bytes (pipes-data, fifo-data).
    PipeData,
    /// `sk_packet_entry.length` bytes.
    SkQueue,
    /// `tcp_stream_entry.inq_len` then `outq_len` bytes.
    TcpStream,
    /// `bpfmap_data_entry.keys_bytes + values_bytes` bytes.
    BpfMapData,
    /// `ipc_shm_entry.size` bytes padded to 4 (absent when `in_pagemaps`).
    IpcShm,
    /// `ipc_sem_entry.nsems` u16 values padded to 8 bytes.
    IpcSem,
    /// `ipc_msg_entry.qnum` framed `ipc_msg` entries, each followed by `msize` bytes padded to 8.
    IpcMsg,
    /// Ghost file contents: the first entry is a `ghost_file_entry`; with `chunks`, each
    /// following `ghost_chunk_entry` carries `len` bytes, otherwise the rest of the file is data.
    GhostFile,
}

macro_rules! kinds {
    ($( $variant:ident, $name:literal, $magic:literal, $framing:ident, $pattern:literal, $msg:literal, $single:literal, $extra:ident; )*) => {
        /// One kind of image file (CRIU's `CR_FD_*`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ImageKind { $( #[doc = $pattern] $variant, )* }

        impl ImageKind {
            /// Every kind, in CRIU's table order.
            pub const ALL: &'static [ImageKind] = &[ $( ImageKind::$variant, )* ];

            /// crit's name of the kind (the `magic` key of its JSON).
            pub fn name(self) -> &'static str {
                match self { $( ImageKind::$variant => $name, )* }
            }

            /// The kind's own magic (0 for raw kinds).
            pub fn magic(self) -> u32 {
                match self { $( ImageKind::$variant => $magic, )* }
            }

            /// How files of this kind are framed.
            pub fn framing(self) -> Framing {
                match self { $( ImageKind::$variant => Framing::$framing, )* }
            }

            /// printf-like file name pattern from CRIU's image table.
            pub fn pattern(self) -> &'static str {
                match self { $( ImageKind::$variant => $pattern, )* }
            }

            /// Protobuf message of the entries ("" for raw kinds). Pagemap and ghost-file
            /// images start with a different message: see [`ImageKind::entry_message_name`].
            pub fn message_name(self) -> &'static str {
                match self { $( ImageKind::$variant => $msg, )* }
            }

            /// True when the image holds exactly one entry.
            pub fn single_entry(self) -> bool {
                match self { $( ImageKind::$variant => $single, )* }
            }

            /// The raw payload carried after entries, if any.
            pub fn extra_payload(self) -> ExtraPayload {
                match self { $( ImageKind::$variant => ExtraPayload::$extra, )* }
            }
        }
    };
}

kinds! {
    Inventory, "INVENTORY", 0x5831_3116, Inventory, "inventory.img", "inventory_entry", true, None;
    Fdinfo, "FDINFO", 0x5621_3732, Common, "fdinfo-%u.img", "fdinfo_entry", false, None;
    Pagemap, "PAGEMAP", 0x5608_4025, Common, "pagemap-%lu.img", "pagemap_entry", false, None;
    ShmemPagemap, "SHMEM_PAGEMAP", 0x5608_4025, Common, "pagemap-shmem-%lu.img", "pagemap_entry", false, None;
    RegFiles, "REG_FILES", 0x5036_3636, Common, "reg-files.img", "reg_file_entry", false, None;
    ExtFiles, "EXT_FILES", 0x5925_5641, Common, "ext-files.img", "ext_file_entry", false, None;
    NsFiles, "NS_FILES", 0x6139_4011, Common, "ns-files.img", "ns_file_entry", false, None;
    EventfdFile, "EVENTFD_FILE", 0x4452_3722, Common, "eventfd.img", "eventfd_file_entry", false, None;
    EventpollFile, "EVENTPOLL_FILE", 0x4502_3858, Common, "eventpoll.img", "eventpoll_file_entry", false, None;
    EventpollTfd, "EVENTPOLL_TFD", 0x4443_3746, Common, "eventpoll-tfd.img", "eventpoll_tfd_entry", false, None;
    Signalfd, "SIGNALFD", 0x5732_3820, Common, "signalfd.img", "signalfd_entry", false, None;
    InotifyFile, "INOTIFY_FILE", 0x4842_4431, Common, "inotify.img", "inotify_file_entry", false, None;
    InotifyWd, "INOTIFY_WD", 0x5456_2009, Common, "inotify-wd.img", "inotify_wd_entry", false, None;
    FanotifyFile, "FANOTIFY_FILE", 0x5509_6122, Common, "fanotify.img", "fanotify_file_entry", false, None;
    FanotifyMark, "FANOTIFY_MARK", 0x5650_6035, Common, "fanotify-mark.img", "fanotify_mark_entry", false, None;
    Core, "CORE", 0x5505_3847, Common, "core-%u.img", "core_entry", true, None;
    Ids, "IDS", 0x5443_2030, Common, "ids-%u.img", "task_kobj_ids_entry", true, None;
    Mm, "MM", 0x5749_2820, Common, "mm-%u.img", "mm_entry", true, None;
    Vmas, "VMAS", 0x5412_3737, Common, "vmas-%u.img", "vma_entry", false, None;
    Pipes, "PIPES", 0x5651_3555, Common, "pipes.img", "pipe_entry", false, None;
    PipesData, "PIPES_DATA", 0x5645_3709, Common, "pipes-data.img", "pipe_data_entry", false, PipeData;
    Fifo, "FIFO", 0x5836_4939, Common, "fifo.img", "fifo_entry", false, None;
    FifoData, "FIFO_DATA", 0x5933_3054, Common, "fifo-data.img", "pipe_data_entry", false, PipeData;
    Pstree, "PSTREE", 0x5027_3030, Common, "pstree.img", "pstree_entry", false, None;
    Sigact, "SIGACT", 0x5534_4201, Common, "sigacts-%u.img", "sa_entry", false, None;
    Unixsk, "UNIXSK", 0x5437_3943, Common, "unixsk.img", "unix_sk_entry", false, None;
    Inetsk, "INETSK", 0x5644_3851, Common, "inetsk.img", "inet_sk_entry", false, None;
    Packetsk, "PACKETSK", 0x6045_4618, Common, "packetsk.img", "packet_sock_entry", false, None;
    NetlinkSk, "NETLINK_SK", 0x5800_5614, Common, "netlinksk.img", "netlink_sk_entry", false, None;
    SkQueues, "SK_QUEUES", 0x5626_4026, Common, "sk-queues.img", "sk_packet_entry", false, SkQueue;
    Itimers, "ITIMERS", 0x5746_4056, Common, "itimers-%u.img", "itimer_entry", false, None;
    PosixTimers, "POSIX_TIMERS", 0x5260_3957, Common, "posix-timers-%u.img", "posix_timer_entry", false, None;
    Creds, "CREDS", 0x5402_3547, Common, "creds-%u.img", "creds_entry", true, None;
    Utsns, "UTSNS", 0x5447_3203, Common, "utsns-%u.img", "utsns_entry", true, None;
    IpcVar, "IPC_VAR", 0x5311_5007, Common, "ipcns-var-%u.img", "ipc_var_entry", true, None;
    IpcnsShm, "IPCNS_SHM", 0x4628_3044, Common, "ipcns-shm-%u.img", "ipc_shm_entry", false, IpcShm;
    IpcnsMsg, "IPCNS_MSG", 0x5545_3737, Common, "ipcns-msg-%u.img", "ipc_msg_entry", false, IpcMsg;
    IpcnsSem, "IPCNS_SEM", 0x5957_3019, Common, "ipcns-sem-%u.img", "ipc_sem_entry", false, IpcSem;
    Fs, "FS", 0x5140_3912, Common, "fs-%u.img", "fs_entry", true, None;
    RemapFpath, "REMAP_FPATH", 0x5913_3954, Common, "remap-fpath.img", "remap_file_path_entry", false, None;
    GhostFile, "GHOST_FILE", 0x5258_3605, Common, "ghost-file-%x.img", "ghost_file_entry", false, GhostFile;
    MemfdInode, "MEMFD_INODE", 0x4845_3499, Common, "memfd.img", "memfd_inode_entry", false, None;
    TcpStream, "TCP_STREAM", 0x5146_5506, Common, "tcp-stream-%x.img", "tcp_stream_entry", true, TcpStream;
    Mnts, "MNTS", 0x5556_3928, Common, "mountpoints-%u.img", "mnt_entry", false, None;
    Netdev, "NETDEV", 0x5737_3951, Common, "netdev-%u.img", "net_device_entry", false, None;
    Netns, "NETNS", 0x5593_3752, Common, "netns-%u.img", "netns_entry", true, None;
    Ifaddr, "IFADDR", 0x0, Raw, "ifaddr-%u.img", "", false, None;
    Route, "ROUTE", 0x0, Raw, "route-%u.img", "", false, None;
    Route6, "ROUTE6", 0x0, Raw, "route6-%u.img", "", false, None;
    Rule, "RULE", 0x0, Raw, "rule-%u.img", "", false, None;
    Iptables, "IPTABLES", 0x0, Raw, "iptables-%u.img", "", false, None;
    Ip6tables, "IP6TABLES", 0x0, Raw, "ip6tables-%u.img", "", false, None;
    Nftables, "NFTABLES", 0x0, Raw, "nftables-%u.img", "", false, None;
    TmpfsImg, "TMPFS_IMG", 0x0, Raw, "tmpfs-%u.tar.gz.img", "", false, None;
    TmpfsDev, "TMPFS_DEV", 0x0, Raw, "tmpfs-dev-%u.tar.gz.img", "", false, None;
    Autofs, "AUTOFS", 0x4935_3943, Common, "autofs-%u.img", "autofs_entry", false, None;
    BinfmtMiscOld, "BINFMT_MISC_OLD", 0x6734_3323, Common, "binfmt-misc-%u.img", "binfmt_misc_entry", false, None;
    BinfmtMisc, "BINFMT_MISC", 0x6734_3323, Common, "binfmt-misc.img", "binfmt_misc_entry", false, None;
    TtyFiles, "TTY_FILES", 0x5943_3025, Common, "tty.img", "tty_file_entry", false, None;
    TtyInfo, "TTY_INFO", 0x5945_3036, Common, "tty-info.img", "tty_info_entry", false, None;
    TtyData, "TTY_DATA", 0x5941_3026, Common, "tty-data.img", "tty_data_entry", false, None;
    FileLocks, "FILE_LOCKS", 0x5432_3616, Common, "filelocks.img", "file_lock_entry", false, None;
    Rlimit, "RLIMIT", 0x5711_3925, Common, "rlimit-%u.img", "rlimit_entry", false, None;
    Pages, "PAGES", 0x0, Raw, "pages-%u.img", "", false, None;
    PagesOld, "PAGES_OLD", 0x5608_4025, Legacy, "pages-%d.img", "", false, None;
    ShmPagesOld, "SHM_PAGES_OLD", 0x5608_4025, Legacy, "pages-shmem-%ld.img", "", false, None;
    Signal, "SIGNAL", 0x5925_5647, Common, "signal-s-%u.img", "siginfo_entry", false, None;
    Psignal, "PSIGNAL", 0x5925_5647, Common, "signal-p-%u.img", "siginfo_entry", false, None;
    Tunfile, "TUNFILE", 0x5714_3751, Common, "tunfile.img", "tunfile_entry", false, None;
    Cgroup, "CGROUP", 0x5938_3330, Common, "cgroup.img", "cgroup_entry", true, None;
    Timerfd, "TIMERFD", 0x5049_3712, Common, "timerfd.img", "timerfd_entry", false, None;
    Cpuinfo, "CPUINFO", 0x6140_4013, Common, "cpuinfo.img", "cpuinfo_entry", true, None;
    Seccomp, "SECCOMP", 0x6441_3049, Common, "seccomp.img", "seccomp_entry", true, None;
    Userns, "USERNS", 0x5547_4906, Common, "userns-%u.img", "userns_entry", true, None;
    NetnfCt, "NETNF_CT", 0x0, Raw, "netns-ct-%u.img", "", false, None;
    NetnfExp, "NETNF_EXP", 0x0, Raw, "netns-exp-%u.img", "", false, None;
    Files, "FILES", 0x5630_3138, Common, "files.img", "file_entry", false, None;
    Timens, "TIMENS", 0x4311_4433, Common, "timens-%u.img", "timens_entry", true, None;
    Pidns, "PIDNS", 0x6115_7326, Common, "pidns-%u.img", "pidns_entry", true, None;
    BpfmapFile, "BPFMAP_FILE", 0x5750_6142, Common, "bpfmap-file.img", "bpfmap_file_entry", false, None;
    BpfmapData, "BPFMAP_DATA", 0x6432_4033, Common, "bpfmap-data.img", "bpfmap_data_entry", false, BpfMapData;
    Apparmor, "APPARMOR", 0x5942_3047, Common, "apparmor.img", "apparmor_entry", true, None;
    Pidfd, "PIDFD", 0x5443_5556, Common, "pidfd.img", "pidfd_entry", false, None;
    Stats, "STATS", 0x5709_3306, Service, "stats-%s", "stats_entry", true, None;
    IrmapCache, "IRMAP_CACHE", 0x5700_4059, Service, "irmap-cache.img", "irmap_cache_entry", false, None;
}

impl ImageKind {
    /// True for service images (`stats-*`, `irmap-cache.img`).
    pub fn is_service(self) -> bool {
        self.framing() == Framing::Service
    }

    /// True for kinds without header or framing.
    pub fn is_raw(self) -> bool {
        self.framing() == Framing::Raw
    }

    /// True when the file name carries an id (`core-%u.img`, `ghost-file-%x.img`, ...).
    pub fn has_id(self) -> bool {
        self.pattern().contains('%')
    }

    /// Message of entry number `index`: pagemap images start with a `pagemap_head`,
    /// ghost-file images continue with `ghost_chunk_entry` after the first entry.
    pub fn entry_message_name(self, index: usize) -> &'static str {
        match (self, index) {
            (ImageKind::Pagemap | ImageKind::ShmemPagemap, 0) => "pagemap_head",
            (ImageKind::GhostFile, 1..) => "ghost_chunk_entry",
            _ => self.message_name(),
        }
    }

    /// The file name for `id` (ignored by kinds without an id). `ghost-file` and
    /// `tcp-stream` print the id in hex like CRIU. For [`ImageKind::Stats`], id
    /// [`STATS_DUMP_ID`] gives `stats-dump` and anything else `stats-restore`.
    pub fn file_name(self, id: u64) -> String {
        let pat = self.pattern();
        if self == ImageKind::Stats {
            let which = if id == STATS_DUMP_ID {
                "dump"
            } else {
                "restore"
            };
            return format!("stats-{which}");
        }
        let Some(pos) = pat.find('%') else {
            return pat.to_string();
        };
        let rest = &pat[pos + 1..];
        let (spec_len, hex) = spec(rest);
        let num = if hex {
            format!("{id:x}")
        } else {
            id.to_string()
        };
        format!("{}{}{}", &pat[..pos], num, &rest[spec_len..])
    }

    /// Recognises a kind and its id from a file name (`core-42.img` gives `(Core, Some(42))`).
    /// Where two kinds share a pattern shape the more specific one wins
    /// (`pagemap-shmem-1.img` is [`ImageKind::ShmemPagemap`], `netns-ct-1.img` is not netns).
    pub fn from_file_name(name: &str) -> Option<(ImageKind, Option<u64>)> {
        let mut best: Option<(usize, ImageKind, Option<u64>)> = None;
        for &kind in ImageKind::ALL {
            if let Some(id) = match_pattern(kind, name) {
                // Longest literal prefix wins.
                let lit = kind.pattern().find('%').unwrap_or(kind.pattern().len());
                if best.is_none_or(|(l, _, _)| lit > l) {
                    best = Some((lit, kind, id));
                }
            }
        }
        best.map(|(_, k, id)| (k, id))
    }

    /// Recognises a framed kind from its magic. Magics shared by several kinds resolve to
    /// the one crit names (PAGEMAP, SIGNAL, BINFMT_MISC). Raw kinds have no magic.
    pub fn from_magic(magic: u32) -> Option<ImageKind> {
        if magic == 0 {
            return None;
        }
        ImageKind::ALL
            .iter()
            .copied()
            .find(|k| {
                k.magic() == magic
                    && matches!(
                        k.framing(),
                        Framing::Common | Framing::Service | Framing::Inventory
                    )
            })
            .map(|k| match k {
                ImageKind::BinfmtMiscOld => ImageKind::BinfmtMisc,
                other => other,
            })
    }

    /// Looks a kind up by crit's name (`"CORE"`).
    pub fn from_name(name: &str) -> Option<ImageKind> {
        ImageKind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

fn match_pattern(kind: ImageKind, name: &str) -> Option<Option<u64>> {
    let pat = kind.pattern();
    if kind == ImageKind::Stats {
        return (name == "stats-dump" || name == "stats-restore").then_some(None);
    }
    let Some(pos) = pat.find('%') else {
        return (pat == name).then_some(None);
    };
    let rest = &pat[pos + 1..];
    let (spec_len, hex) = spec(rest);
    let (prefix, suffix) = (&pat[..pos], &rest[spec_len..]);
    let mid = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if mid.is_empty() {
        return None;
    }
    let id = if hex {
        u64::from_str_radix(mid, 16).ok()?
    } else {
        if !mid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        mid.parse().ok()?
    };
    Some(Some(id))
}

/// Length of the printf conversion after '%' and whether it prints hex.
fn spec(rest: &str) -> (usize, bool) {
    if rest.starts_with("lu") || rest.starts_with("ld") {
        (2, false)
    } else {
        (1, rest.starts_with('x'))
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(ImageKind::Core.file_name(42), "core-42.img");
        assert_eq!(ImageKind::Pages.file_name(1), "pages-1.img");
        assert_eq!(ImageKind::GhostFile.file_name(255), "ghost-file-ff.img");
        assert_eq!(ImageKind::Stats.file_name(STATS_DUMP_ID), "stats-dump");
        assert_eq!(ImageKind::Inventory.file_name(7), "inventory.img");
        assert_eq!(ImageKind::ShmemPagemap.file_name(3), "pagemap-shmem-3.img");
    }

    #[test]
    fn recognise_names() {
        assert_eq!(
            ImageKind::from_file_name("core-32679.img"),
            Some((ImageKind::Core, Some(32679)))
        );
        assert_eq!(
            ImageKind::from_file_name("pagemap-shmem-3.img"),
            Some((ImageKind::ShmemPagemap, Some(3)))
        );
        assert_eq!(
            ImageKind::from_file_name("pagemap-3.img"),
            Some((ImageKind::Pagemap, Some(3)))
        );
        assert_eq!(
            ImageKind::from_file_name("netns-ct-3.img"),
            Some((ImageKind::NetnfCt, Some(3)))
        );
        assert_eq!(
            ImageKind::from_file_name("stats-dump"),
            Some((ImageKind::Stats, None))
        );
        assert_eq!(
            ImageKind::from_file_name("tmpfs-dev-5.tar.gz.img"),
            Some((ImageKind::TmpfsDev, Some(5)))
        );
        assert_eq!(ImageKind::from_file_name("core-x.img"), None);
        assert_eq!(ImageKind::from_file_name("random.txt"), None);
        // Round trip for every kind with a numeric id.
        for &k in ImageKind::ALL {
            if k.framing() == Framing::Legacy {
                continue;
            }
            let name = k.file_name(17);
            let (got, _) = ImageKind::from_file_name(&name).expect(&name);
            assert_eq!(got, k, "{name}");
        }
    }

    #[test]
    fn magics() {
        assert_eq!(ImageKind::from_magic(0x5505_3847), Some(ImageKind::Core));
        assert_eq!(ImageKind::from_magic(0x5608_4025), Some(ImageKind::Pagemap));
        assert_eq!(ImageKind::from_magic(0x5925_5647), Some(ImageKind::Signal));
        assert_eq!(
            ImageKind::from_magic(0x6734_3323),
            Some(ImageKind::BinfmtMisc)
        );
        assert_eq!(ImageKind::from_magic(0), None);
        assert!(ImageKind::Stats.is_service());
        assert!(ImageKind::Pages.is_raw());
        assert_eq!(
            ImageKind::from_file_name("pages-1.img"),
            Some((ImageKind::Pages, Some(1)))
        );
        assert_eq!(
            ImageKind::from_file_name("pages-shmem-1.img"),
            Some((ImageKind::ShmPagesOld, Some(1)))
        );
    }

    #[test]
    fn every_message_exists_in_the_schema() {
        let pool = crate::descriptor_pool();
        for &k in ImageKind::ALL {
            for i in 0..2 {
                let m = k.entry_message_name(i);
                if !m.is_empty() {
                    assert!(pool.get_message_by_name(m).is_some(), "{k}: {m}");
                }
            }
        }
    }
}
