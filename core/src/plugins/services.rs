//! The task services the core offers plugins (dump and restore contexts alike): remote
//! syscalls in a thread stopped under us, fds fetched with `pidfd_getfd`, errors in the
//! plugin contract's terms.

use std::os::fd::OwnedFd;

use criu_plugin_api::{PluginError, VmaDesc};
use criu_proto::images::VmaEntry;
use nix::unistd::Pid;

/// The side file in which builds before plugin API 0.5 listed which plugin dumped which VMA
/// (one line per VMA: `pid start end prot flags pgoff plugin name`, numbers in hex). Read
/// for images of those builds; the claims now live in `vma_entry` itself
/// (`criu_rs_plugin`, `criu_rs_name`: fields of ours, README "What we add to CRIU's formats").
pub const VMA_CLAIMS_FILE: &str = "criu-rs-vma-plugins.txt";

/// A VMA whose contents a plugin dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmaClaim {
    /// The plugin that claimed it.
    pub plugin: String,
    /// The VMA.
    pub vma: VmaDesc,
}

impl VmaClaim {
    /// Marks `entry` as dumped by `plugin`; `name` is the mapping's name in
    /// `/proc/PID/maps` (`[anon:x]`, a path), which the plugin's restore may need.
    pub fn record(entry: &mut VmaEntry, plugin: &str, name: &str) {
        entry.criu_rs_plugin = Some(plugin.to_string());
        entry.criu_rs_name = (!name.is_empty()).then(|| name.to_string());
    }

    /// The claims recorded in the VMAs of `pid`'s `mm` image.
    pub fn from_mm(pid: i32, vmas: &[VmaEntry]) -> Vec<VmaClaim> {
        vmas.iter()
            .filter_map(|e| {
                let plugin = e.criu_rs_plugin.clone()?;
                Some(VmaClaim {
                    plugin,
                    vma: VmaDesc {
                        pid,
                        start: e.start,
                        end: e.end,
                        prot: e.prot,
                        flags: e.flags,
                        pgoff: e.pgoff,
                        name: e.criu_rs_name.clone().unwrap_or_default(),
                    },
                })
            })
            .collect()
    }

    /// Parses a [`VMA_CLAIMS_FILE`] text; a bad line is a [`PluginError::BadImage`].
    pub fn parse_all(text: &str) -> Result<Vec<VmaClaim>, PluginError> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let bad =
                || PluginError::bad_image(VMA_CLAIMS_FILE, format!("line {}: {line:?}", i + 1));
            let mut f = line.splitn(8, ' ');
            let mut next = || f.next().ok_or_else(bad);
            let pid = next()?.parse().map_err(|_| bad())?;
            let hex = |w: &str| u64::from_str_radix(w, 16).map_err(|_| bad());
            let (start, end) = (hex(next()?)?, hex(next()?)?);
            let prot = u32::try_from(hex(next()?)?).map_err(|_| bad())?;
            let flags = u32::try_from(hex(next()?)?).map_err(|_| bad())?;
            let pgoff = hex(next()?)?;
            let plugin = next()?.to_string();
            let name = next().unwrap_or_default().to_string();
            if end <= start {
                return Err(bad());
            }
            out.push(VmaClaim {
                plugin,
                vma: VmaDesc {
                    pid,
                    start,
                    end,
                    prot,
                    flags,
                    pgoff,
                    name,
                },
            });
        }
        Ok(out)
    }
}

pub(crate) fn task_err(
    pid: i32,
    op: String,
    e: impl std::error::Error + Send + Sync + 'static,
) -> PluginError {
    PluginError::Task {
        pid,
        op,
        source: Box::new(e),
    }
}

/// One syscall in thread `tid` (of `pid`), which must be in a ptrace-stop under us:
/// registers and signal mask are put back afterwards.
pub(crate) fn remote_syscall(
    pid: i32,
    tid: i32,
    nr: i64,
    args: [u64; 6],
) -> Result<i64, PluginError> {
    let op = || format!("remote syscall {nr} in thread {tid}");
    let mut r = crate::sys::remote::RemoteTask::new(Pid::from_raw(pid), Pid::from_raw(tid))
        .map_err(|e| task_err(pid, op(), e))?;
    let ret = r.syscall(nr, args).map_err(|e| task_err(pid, op(), e))?;
    tracing::debug!(pid, tid, nr, ret, "plugin remote syscall");
    Ok(ret)
}

/// `pidfd_getfd` of fd `fd` of `pid`.
pub(crate) fn dup_task_fd(pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
    use crate::sys::pidfd;
    let pidfd = pidfd::pidfd_open(Pid::from_raw(pid), 0)
        .map_err(|e| task_err(pid, "pidfd_open".into(), e))?;
    pidfd::pidfd_getfd(std::os::fd::AsFd::as_fd(&pidfd), fd)
        .map_err(|e| task_err(pid, format!("pidfd_getfd of fd {fd}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vma_claims_round_trip_through_vma_entries_and_old_side_files_parse() {
        let claims = vec![
            VmaClaim {
                plugin: "secretmem".into(),
                vma: VmaDesc {
                    pid: 42,
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_0000_2000,
                    prot: 3,
                    flags: 0x22,
                    pgoff: 0,
                    name: "[anon:a name with spaces]".into(),
                },
            },
            VmaClaim {
                plugin: "x".into(),
                vma: VmaDesc {
                    pid: 1,
                    start: 0x1000,
                    end: 0x2000,
                    ..Default::default()
                },
            },
        ];
        // In the vma_entry fields of ours, and back.
        for c in &claims {
            let mut e = VmaEntry {
                start: c.vma.start,
                end: c.vma.end,
                prot: c.vma.prot,
                flags: c.vma.flags,
                pgoff: c.vma.pgoff,
                ..Default::default()
            };
            VmaClaim::record(&mut e, &c.plugin, &c.vma.name);
            let other = VmaEntry {
                start: c.vma.end,
                end: c.vma.end + 0x1000,
                ..Default::default()
            };
            assert_eq!(VmaClaim::from_mm(c.vma.pid, &[e, other]), vec![c.clone()]);
        }
        // The side file of earlier builds.
        let text = "42 7f0000000000 7f0000002000 3 22 0 secretmem [anon:a name with spaces]\n\
                    1 1000 2000 0 0 0 x\n";
        assert_eq!(VmaClaim::parse_all(text).unwrap(), claims);
        for bad in [
            "1 zz 2000 0 0 0 p",
            "1 2000 1000 0 0 0 p",
            "1 1000 2000 0 0",
            "x 1 2 0 0 0 p",
        ] {
            assert!(VmaClaim::parse_all(bad).is_err(), "{bad}");
        }
    }
}
