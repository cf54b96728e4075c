//! Per-thread credentials: groups, uids/gids, capability sets, bounding set, ambient set,
//! securebits and no_new_privs, set by remote syscalls in each thread as its last privileged
//! step (clone3 with set_tid and the rest need the restorer's privileges first).
//!
//! Order (each step needs what the previous ones still leave): setgroups, drop from the
//! bounding set, securebits with KEEP_CAPS, setresgid/setfsgid, setresuid/setfsuid (KEEP_CAPS
//! keeps the permitted set), capset with the full permitted set effective, final securebits,
//! capset to the dumped sets, ambient raises, no_new_privs.

use criu_proto::images::CredsEntry;

use super::error::{RestoreError, Result};
use super::ns::user::UserState;
use super::rexec::{RemoteThread, write_mem};

const SECBIT_KEEP_CAPS: u64 = 1 << 4;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;

/// A thread's credentials as /proc shows them, to compare with the image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveCreds {
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub inh: u64,
    pub prm: u64,
    pub eff: u64,
    pub bnd: u64,
    pub amb: u64,
    pub nnp: u32,
}

/// Parses `/proc/PID/task/TID/status`.
pub fn parse_status(status: &str) -> LiveCreds {
    let mut c = LiveCreds::default();
    for l in status.lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let nums = |v: &str| -> Vec<u32> {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        };
        let hex = |v: &str| u64::from_str_radix(v, 16).unwrap_or(0);
        match k {
            "Uid" => c.uids.iter_mut().zip(nums(v)).for_each(|(d, s)| *d = s),
            "Gid" => c.gids.iter_mut().zip(nums(v)).for_each(|(d, s)| *d = s),
            "Groups" => c.groups = nums(v),
            "CapInh" => c.inh = hex(v),
            "CapPrm" => c.prm = hex(v),
            "CapEff" => c.eff = hex(v),
            "CapBnd" => c.bnd = hex(v),
            "CapAmb" => c.amb = hex(v),
            "NoNewPrivs" => c.nnp = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    c
}

fn caps(words: &[u32]) -> u64 {
    u64::from(words.first().copied().unwrap_or(0))
        | (u64::from(words.get(1).copied().unwrap_or(0)) << 32)
}

/// The image's creds in the same shape as [`LiveCreds`].
pub fn wanted(c: &CredsEntry) -> LiveCreds {
    let mut groups = c.groups.clone();
    groups.sort_unstable();
    LiveCreds {
        uids: [c.uid, c.euid, c.suid, c.fsuid],
        gids: [c.gid, c.egid, c.sgid, c.fsgid],
        groups,
        inh: caps(&c.cap_inh),
        prm: caps(&c.cap_prm),
        eff: caps(&c.cap_eff),
        bnd: caps(&c.cap_bnd),
        amb: caps(&c.cap_amb),
        nnp: c.no_new_privs.unwrap_or(0),
    }
}

/// The thread's credentials from /proc; with `view`, as its user namespace names them.
fn live(rt: &RemoteThread, view: Option<&UserState>) -> Result<LiveCreds> {
    let path = format!("/proc/{}/task/{}/status", rt.tid, rt.tid);
    let s = std::fs::read_to_string(&path).map_err(|e| RestoreError::Task {
        pid: rt.pid,
        tid: rt.tid.as_raw(),
        step: "reading credentials".into(),
        reason: format!("{path}: {e}"),
    })?;
    let mut c = parse_status(&s);
    if let Some(v) = view {
        v.host_to_ns(&mut c.uids, &mut c.gids, &mut c.groups);
    }
    c.groups.sort_unstable();
    Ok(c)
}

fn capset(rt: &mut RemoteThread, data: u64, eff: u64, prm: u64, inh: u64) -> Result<()> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_le_bytes());
    b.extend_from_slice(&0i32.to_le_bytes());
    for shift in [0u32, 32] {
        for set in [eff, prm, inh] {
            b.extend_from_slice(&((set >> shift) as u32).to_le_bytes());
        }
    }
    write_mem(rt, data, &b)?;
    rt.call("capset", libc::SYS_capset, [data, data + 8, 0, 0, 0, 0])?;
    Ok(())
}

/// Gives the thread `c`; nothing to do when it already has them. `view`: the maps of the
/// tree's own user namespace, whose ids `c` holds (the calls run inside it).
pub fn restore_creds(
    rt: &mut RemoteThread,
    c: &CredsEntry,
    data: u64,
    view: Option<&UserState>,
) -> Result<()> {
    let want = wanted(c);
    let have = live(rt, view)?;
    if want == have && c.secbits == 0 {
        return Ok(());
    }
    rt.step = "restoring credentials".into();
    if want.groups != have.groups {
        let g: Vec<u8> = c.groups.iter().flat_map(|x| x.to_le_bytes()).collect();
        if g.len() > 4096 {
            return Err(RestoreError::Task {
                pid: rt.pid,
                tid: rt.tid.as_raw(),
                step: rt.step.clone(),
                reason: format!("{} supplementary groups", c.groups.len()),
            });
        }
        write_mem(rt, data, &g)?;
        rt.call(
            "setgroups",
            libc::SYS_setgroups,
            [c.groups.len() as u64, data, 0, 0, 0, 0],
        )?;
    }
    for cap in 0..64u64 {
        if have.bnd & (1 << cap) != 0 && want.bnd & (1 << cap) == 0 {
            rt.call(
                "prctl(PR_CAPBSET_DROP)",
                libc::SYS_prctl,
                [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0],
            )?;
        }
    }
    let secbits = u64::from(c.secbits);
    rt.call(
        "prctl(PR_SET_SECUREBITS)",
        libc::SYS_prctl,
        [
            libc::PR_SET_SECUREBITS as u64,
            secbits | SECBIT_KEEP_CAPS,
            0,
            0,
            0,
            0,
        ],
    )?;
    rt.call(
        "setresgid",
        libc::SYS_setresgid,
        [c.gid.into(), c.egid.into(), c.sgid.into(), 0, 0, 0],
    )?;
    rt.call(
        "setfsgid",
        libc::SYS_setfsgid,
        [c.fsgid.into(), 0, 0, 0, 0, 0],
    )?;
    rt.call(
        "setresuid",
        libc::SYS_setresuid,
        [c.uid.into(), c.euid.into(), c.suid.into(), 0, 0, 0],
    )?;
    rt.call(
        "setfsuid",
        libc::SYS_setfsuid,
        [c.fsuid.into(), 0, 0, 0, 0, 0],
    )?;
    // Everything still permitted becomes effective for the last privileged steps.
    let now = live(rt, view)?;
    capset(rt, data, now.prm, now.prm, want.inh)?;
    rt.call(
        "prctl(PR_SET_SECUREBITS)",
        libc::SYS_prctl,
        [libc::PR_SET_SECUREBITS as u64, secbits, 0, 0, 0, 0],
    )?;
    capset(rt, data, want.eff, want.prm, want.inh)?;
    rt.call(
        "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
        libc::SYS_prctl,
        [PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0],
    )?;
    for cap in 0..64u64 {
        if want.amb & (1 << cap) != 0 {
            rt.call(
                "prctl(PR_CAP_AMBIENT_RAISE)",
                libc::SYS_prctl,
                [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0, 0],
            )?;
        }
    }
    if want.nnp != 0 {
        rt.call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )?;
    }
    let got = live(rt, view)?;
    if got != want {
        return Err(RestoreError::Task {
            pid: rt.pid,
            tid: rt.tid.as_raw(),
            step: rt.step.clone(),
            reason: format!("credentials are {got:?}, the image has {want:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses() {
        let s = "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t10 9 \nNoNewPrivs:\t1\n\
                 CapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t0000000000000001\n\
                 CapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n";
        let c = parse_status(s);
        assert_eq!(c.uids, [1, 2, 3, 4]);
        assert_eq!(c.gids, [5, 6, 7, 8]);
        assert_eq!(c.groups, vec![10, 9]);
        assert_eq!(c.prm, 0x1fffeffffff);
        assert_eq!(c.eff, 1);
        assert_eq!(c.nnp, 1);
        let e = CredsEntry {
            uid: 1,
            euid: 2,
            suid: 3,
            fsuid: 4,
            cap_prm: vec![0xfeff_ffff, 0x1ff],
            ..Default::default()
        };
        assert_eq!(wanted(&e).prm, 0x1fffeffffff);
    }
}
