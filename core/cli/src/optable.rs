//! CRIU 4.2's option table (criu/config.c, Documentation/criu.txt): every long and short
//! name CRIU accepts, whether it takes an argument, whether it has CRIU's `--no-NAME` form,
//! and what this implementation does with it:
//! - [`Class::Honoured`]: it has its effect here;
//! - [`Class::Internal`]: it tunes how CRIU works inside (page transfer, caches, which
//!   checks to make); accepted, with no effect here, since the result is the same;
//! - [`Class::Permission`]: it allows CRIU to dump a resource this implementation refuses
//!   anyway (sockets...); accepted, and the dump still names such a resource;
//! - [`Class::Unsupported`]: it asks for something not built yet (namespaces, cgroups,
//!   page server, inherited fds...); the commands it would change fail with "not supported
//!   yet: --NAME" rather than silently doing something else.

/// Whether an option takes an argument (getopt's `no_argument`, `required_argument`,
/// `optional_argument`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    No,
    Required,
    Optional,
}

/// Commands an unsupported option would change.
pub type Cmds = u8;
pub const DUMP: Cmds = 1;
pub const RESTORE: Cmds = 2;
pub const BOTH: Cmds = DUMP | RESTORE;

/// What this implementation does with an option (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Honoured,
    Internal(&'static str),
    Permission,
    Unsupported { cmds: Cmds, why: &'static str },
}

/// One option of CRIU's table.
#[derive(Debug, PartialEq, Eq)]
pub struct OptSpec {
    pub long: &'static str,
    pub short: Option<char>,
    pub arg: HasArg,
    /// CRIU's BOOL_OPT: `--no-NAME` turns it off again.
    pub negatable: bool,
    /// Each occurrence adds a value (else the last one wins).
    pub list: bool,
    pub class: Class,
    pub metavar: &'static str,
    pub help: &'static str,
}

use Class::{Honoured, Internal, Permission};
use HasArg::{No, Optional, Required};

const fn o(
    long: &'static str,
    short: Option<char>,
    arg: HasArg,
    class: Class,
    metavar: &'static str,
    help: &'static str,
) -> OptSpec {
    OptSpec {
        long,
        short,
        arg,
        negatable: false,
        list: false,
        class,
        metavar,
        help,
    }
}

/// CRIU's BOOL_OPT: a flag with a `no-` form.
const fn b(long: &'static str, class: Class, help: &'static str) -> OptSpec {
    OptSpec {
        negatable: true,
        ..o(long, None, No, class, "", help)
    }
}

/// A repeatable option whose values append.
const fn l(
    long: &'static str,
    short: Option<char>,
    class: Class,
    mv: &'static str,
    help: &'static str,
) -> OptSpec {
    OptSpec {
        list: true,
        ..o(long, short, Required, class, mv, help)
    }
}

const fn un(cmds: Cmds, why: &'static str) -> Class {
    Class::Unsupported { cmds, why }
}

const NS: &str = "namespaces are not checkpointed yet";
const CGP: &str = "only CRIU's built-in cgroup property lists are dumped";
const MNT: &str = "mounts are not checkpointed yet";
const NET: &str = "network devices and sockets are not checkpointed yet";
const PS: &str = "only the page-server command uses it, and that command is not built yet";
const LSM: &str = "LSM profiles are not restored yet";

/// Every option CRIU 4.2 accepts, plus our `--plugin-dir`, `--plugins`, `--verify-pages`,
/// `--secret-key` and `--compress`.
#[rustfmt::skip]
pub static OPTIONS: &[OptSpec] = &[
    // Common.
    o("tree", Some('t'), Required, Honoured, "PID", "dump the tree rooted at PID"),
    o("images-dir", Some('D'), Required, Honoured, "DIR", "directory of the image files (default: .)"),
    o("work-dir", Some('W'), Required, Honoured, "DIR", "directory for logs and pidfiles (default: the images dir)"),
    o("log-file", Some('o'), Required, Honoured, "FILE", "log to FILE (relative to the work dir; truncated)"),
    o("verbosity", Some('v'), Optional, Honoured, "N", "-v raises the level by one (-vvv: three), -vN/--verbosity=N sets it (0-4)"),
    o("pidfile", None, Required, Honoured, "FILE", "write the restored root's pid to FILE before it resumes"),
    o("config", None, Required, Honoured, "FILE", "read options from FILE after the default config files"),
    o("no-default-config", None, No, Honoured, "", "do not read /etc/criu/default.conf and ~/.criu/default.conf"),
    o("close", None, Required, Honoured, "FD", "close FD before anything else (repeatable)"),
    o("libdir", Some('L'), Required, Honoured, "DIR", "plugin directory (repeatable; else $CRIU_LIBS_DIR, else /usr/lib/criu)"),
    o("plugin-dir", None, Required, Honoured, "DIR", "same as --libdir"),
    b("display-stats", Honoured, "print dump/restore statistics at the end"),
    o("help", Some('h'), No, Honoured, "", "print this help and exit"),
    o("version", Some('V'), No, Honoured, "", "print the version and exit"),
    b("log-pid", Internal("there is one criu process writing one log"), "one log file per restored task"),
    b("unprivileged", Internal("run as root; a missing capability fails with the syscall that needed it"), "non-root mode"),
    b("deprecated", Internal("no deprecated feature is implemented"), "allow deprecated features"),
    o("ms", None, No, un(BOTH, "deprecated in CRIU; refused at once with its message"), "", "the old memory-tracking check"),
    // Dump.
    o("leave-stopped", Some('s'), No, Honoured, "", "leave the tasks stopped after dump or restore"),
    o("leave-running", Some('R'), No, Honoured, "", "leave the tasks running after dump"),
    OptSpec { short: Some('j'), ..b("shell-job", Honoured, "allow a tree that shares criu's terminal (a shell job)") },
    o("timeout", None, Required, Honoured, "SECONDS", "give up freezing the tree after SECONDS"),
    o("ghost-limit", None, Required, Honoured, "SIZE", "largest deleted file carried in the images (K, M, G)"),
    o("pre-dump-mode", None, Required, Internal("pages are always copied with process_vm_readv"), "splice|read", "how pre-dump copies pages"),
    b("track-mem", Internal("every dump is a full dump; the images stand alone"), "keep memory change tracking for the next dump"),
    o("prev-images-dir", None, Required, Internal("every dump is a full dump; the images stand alone"), "DIR", "images of the previous (pre-)dump"),
    b("auto-dedup", Internal("every dump is a full dump: there are no parent images to punch"), "deduplicate parent images"),
    b("ghost-fiemap", Internal("holes of deleted files are always skipped, found with SEEK_DATA/SEEK_HOLE"), "copy sparse deleted files with fiemap"),
    b("force-irmap", Internal("watched files are found through their file handles"), "resolve inotify paths always"),
    l("irmap-scan-path", None, Internal("watched files are found through their file handles"), "PATH", "where to look for inotify paths"),
    o("freeze-cgroup", None, Required, Internal("tasks are frozen with ptrace, not with the cgroup freezer"), "PATH", "freeze with this freezer cgroup"),
    o("network-lock", None, Required, Honoured, "ebpf|iptables|nftables|skip", "how to lock the tree's TCP connections between dump and restore (default ebpf: no external tool)"),
    o("cpu-cap", None, Optional, Internal("restore checks each thread's xsave layout against this CPU"), "CAPS", "which CPU capabilities to check"),
    o("file-validation", None, Required, Internal("mapped and open files are checked by size"), "filesize|buildid", "how to check files at restore"),
    b("tcp-established", Honoured, "dump and restore established TCP connections (TCP repair)"),
    b("tcp-close", Honoured, "restore established TCP connections closed; at dump, dump connected TCP sockets without their connection (no repair, not locked), to be restored closed"),
    b("skip-in-flight", Honoured, "leave out connections a listening socket has not accepted yet"),
    o("ext-unix-sk", Some('x'), Optional, Honoured, "INODE", "dump a datagram unix socket connected to a named socket outside the tree, connected to its name again at restore (give it at restore too); INODE,...: those sockets whatever their type, as --external unix[INODE]"),
    b("evasive-devices", Permission, "allow devices to be opened by another path"),
    b("link-remap", Honoured, "an open file whose name was removed while it has other names gets a temporary hard link (link_remap.N, removed at restore) instead of being refused"),
    OptSpec { short: Some('l'), ..b("file-locks", Honoured, "dump and restore file locks and leases (POSIX, OFD, flock, leases; filelocks plugin); without it a tree holding one is refused at dump") },
    b("weak-sysctls", Permission, "skip missing sysctls at restore (no sysctl is restored)"),
    b("skip-file-rwx-check", Permission, "skip the check of file permissions at restore"),
    b("allow-uprobes", Permission, "allow tasks with uprobes"),
    b("page-server", un(DUMP, "pages are only written to the images dir"), "send pages to a page server"),
    o("address", None, Required, Honoured, "ADDR", "the socket 'criu service' listens on (default ./criu_service.socket); page server address (not built)"),
    o("port", None, Required, Internal(PS), "PORT", "page server port"),
    o("ps-socket", None, Required, Internal(PS), "FD", "page server socket"),
    o("status-fd", None, Required, Honoured, "FD", "service: write a byte there once listening (page-server and lazy-pages are not built)"),
    b("tls", Internal(PS), "encrypt the page server connection"),
    o("tls-cacert", None, Required, Internal(PS), "FILE", "TLS CA certificate"),
    o("tls-cacrl", None, Required, Internal(PS), "FILE", "TLS CA revocation list"),
    o("tls-cert", None, Required, Internal(PS), "FILE", "TLS certificate"),
    o("tls-key", None, Required, Internal(PS), "FILE", "TLS private key"),
    o("tls-no-cn-verify", None, No, Internal(PS), "", "do not check the peer's common name"),
    o("lazy-pages", None, No, un(BOTH, "post-copy restore is not built yet"), "", "restore memory lazily"),
    b("stream", un(BOTH, "the image streamer is not supported; images go to the images dir"), "stream images through criu-image-streamer"),
    l("external", None, un(BOTH, "external resources other than unix[INO], veth[IN]:OUT and mnt[..]:.. (devices, files, namespaces) are not supported yet"), "RES", "mark a resource external (unix[INO]: that unix socket's peer may be outside the tree; veth[IN]:OUT: restore veth IN's outer end as OUT; mnt[PATH]:KEY at dump: the mount at PATH of the tree's mount namespace is external, kept as KEY; mnt[KEY]:HOSTPATH at restore: bind HOSTPATH for it)"),
    l("action-script", None, un(BOTH, "action scripts are not run yet"), "SCRIPT", "run SCRIPT at each stage"),
    o("manage-cgroups", None, Optional, Honoured, "MODE", "dump the tasks' cgroups (cgroup.img) and restore them: MODE none|props|soft|full|strict|ignore (default soft; strict fails on an existing cgroup whose property differs, naming the file)"),
    l("cgroup-root", None, Honoured, "[CTL:]PATH", "restore: move the dumped cgroups of CTL (all not named, without CTL) under PATH; dump: walk CTL's cgroups from PATH"),
    o("cgroup-props", None, Required, un(BOTH, CGP), "SPEC", "cgroup properties to dump"),
    o("cgroup-props-file", None, Required, un(BOTH, CGP), "FILE", "cgroup properties to dump, from a file"),
    l("cgroup-dump-controller", None, Honoured, "NAME", "dump only these cgroup hierarchies (NAME as in /proc/PID/cgroup, e.g. cpu,cpuacct or name=systemd)"),
    o("cgroup-yard", None, Required, Honoured, "PATH", "a directory holding the cgroup hierarchies mounted, one per directory (cpu, systemd, unified...) instead of criu's own detached mounts"),
    l("ext-mount-map", Some('M'), Honoured, "KEY:VAL", "as --external mnt[KEY]:VAL (dump: mountpoint to key; restore: key to host path); auto is not supported"),
    l("skip-mnt", None, un(DUMP, MNT), "PATH", "do not dump this mount"),
    l("enable-fs", None, un(DUMP, MNT), "FS", "dump mounts of these filesystems"),
    o("enable-external-sharing", None, No, un(DUMP, MNT), "", "allow external shared mounts"),
    o("enable-external-masters", None, No, un(DUMP, MNT), "", "allow external slave mounts"),
    b("mntns-compat-mode", Internal("no mount namespace is restored"), "the older mount engine"),
    // Restore.
    OptSpec { short: Some('d'), ..b("restore-detached", Honoured, "return once the tree runs") },
    b("daemon", Honoured, "same as --restore-detached"),
    OptSpec { short: Some('S'), ..b("restore-sibling", un(RESTORE, "the restored root is always criu's child"), "restore the root as criu's sibling") },
    o("exec-cmd", None, No, Honoured, "", "restore detached, then exec the words after the command"),
    o("root", Some('r'), Required, Honoured, "PATH", "restore: the root mount of the tree's own mount namespace is a bind of PATH"),
    l("inherit-fd", None, un(RESTORE, "fds inherited from criu are not supported yet"), "fd[N]:RES", "use criu's fd N for RES"),
    l("join-ns", Some('J'), un(RESTORE, NS), "NS:PID|FILE", "restore into an existing namespace"),
    l("veth-pair", None, Honoured, "IN=OUT", "restore veth IN of the tree's network namespace with its outer end named OUT in criu's (as --external veth[IN]:OUT)"),
    o("empty-ns", None, Required, un(RESTORE, NET), "net", "restore in an empty network namespace"),
    o("lsm-profile", None, Required, un(RESTORE, LSM), "TYPE:NAME", "restore with this LSM profile"),
    o("lsm-mount-context", None, Required, un(RESTORE, LSM), "CTX", "mount context of restored mounts"),
    // Check.
    l("feature", None, Honoured, "NAME", "check only this feature (exit 1 when missing or not supported by criu-rs)"),
    o("all", None, No, Honoured, "", "check every feature, the optional ones too"),
    b("extra", Honoured, "check the optional features too (as --all)"),
    b("experimental", Honoured, "check the experimental features too (as --all)"),
    o("plugins", None, No, Honoured, "", "list the plugins, built-in or loaded"),
    o("verify-pages", None, No, Honoured, "", "restore: check the pages against criu-rs-pages-digest.bin before the tree resumes"),
    o("secret-key", None, Required, Honoured, "FILE", "dump/restore: encrypt/decrypt the images holding secrets (memfd_secret) with this key (32 bytes, or 64 hex digits)"),
    o("compress", None, Required, Honoured, "ALGO", "dump: compress the pages files: lz4, zstd or zstd:LEVEL (-7..22, default 1); restore reads them either way"),
];

/// Finds an option by its long name.
#[cfg(test)]
pub fn find(long: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|s| s.long == long)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every long option of CRIU 4.2's getopt table (criu/config.c), by hand.
    const CRIU_LONG: &[&str] = &[
        "tree",
        "leave-stopped",
        "leave-running",
        "restore-detached",
        "restore-sibling",
        "daemon",
        "images-dir",
        "work-dir",
        "log-file",
        "join-ns",
        "root",
        "ext-unix-sk",
        "help",
        "tcp-established",
        "close",
        "log-pid",
        "version",
        "evasive-devices",
        "pidfile",
        "veth-pair",
        "action-script",
        "link-remap",
        "shell-job",
        "file-locks",
        "page-server",
        "address",
        "port",
        "prev-images-dir",
        "ms",
        "track-mem",
        "auto-dedup",
        "libdir",
        "cpu-cap",
        "force-irmap",
        "ext-mount-map",
        "exec-cmd",
        "manage-cgroups",
        "cgroup-root",
        "inherit-fd",
        "feature",
        "skip-mnt",
        "enable-fs",
        "enable-external-sharing",
        "enable-external-masters",
        "freeze-cgroup",
        "ghost-limit",
        "irmap-scan-path",
        "lsm-profile",
        "timeout",
        "external",
        "empty-ns",
        "lazy-pages",
        "extra",
        "experimental",
        "all",
        "cgroup-props",
        "cgroup-props-file",
        "cgroup-dump-controller",
        "skip-in-flight",
        "deprecated",
        "display-stats",
        "weak-sysctls",
        "status-fd",
        "tcp-close",
        "verbosity",
        "ps-socket",
        "stream",
        "config",
        "no-default-config",
        "tls-cacert",
        "tls-cacrl",
        "tls-cert",
        "tls-key",
        "tls",
        "tls-no-cn-verify",
        "cgroup-yard",
        "pre-dump-mode",
        "file-validation",
        "skip-file-rwx-check",
        "lsm-mount-context",
        "network-lock",
        "mntns-compat-mode",
        "unprivileged",
        "ghost-fiemap",
        "allow-uprobes",
    ];

    /// CRIU's BOOL_OPT options (those with a `no-` form).
    const CRIU_BOOL: &[&str] = &[
        "restore-detached",
        "restore-sibling",
        "daemon",
        "tcp-established",
        "log-pid",
        "evasive-devices",
        "link-remap",
        "shell-job",
        "file-locks",
        "page-server",
        "track-mem",
        "auto-dedup",
        "force-irmap",
        "extra",
        "experimental",
        "skip-in-flight",
        "deprecated",
        "display-stats",
        "weak-sysctls",
        "tcp-close",
        "stream",
        "tls",
        "skip-file-rwx-check",
        "mntns-compat-mode",
        "unprivileged",
        "ghost-fiemap",
        "allow-uprobes",
    ];

    #[test]
    fn the_table_is_criu_s() {
        for name in CRIU_LONG {
            assert!(find(name).is_some(), "--{name} is missing");
        }
        for s in OPTIONS {
            let ours = [
                "plugin-dir",
                "plugins",
                "verify-pages",
                "secret-key",
                "compress",
            ]
            .contains(&s.long);
            assert!(
                ours || CRIU_LONG.contains(&s.long),
                "--{} is not CRIU's",
                s.long
            );
            assert_eq!(s.negatable, CRIU_BOOL.contains(&s.long), "--{}", s.long);
            assert!(!s.help.is_empty());
        }
        // "dSsRt:hD:o:v::x::Vr:jJ:lW:L:M:", with -d/-S/-j/-l mapped onto their long names.
        let shorts: String = OPTIONS.iter().filter_map(|s| s.short).collect();
        let mut got: Vec<char> = shorts.chars().collect();
        got.sort_unstable();
        let mut want: Vec<char> = "dSsRthDovxVrjJlWLM".chars().collect();
        want.sort_unstable();
        assert_eq!(got, want);
        let mut names: Vec<_> = OPTIONS.iter().map(|s| s.long).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPTIONS.len(), "a name appears twice");
    }
}
