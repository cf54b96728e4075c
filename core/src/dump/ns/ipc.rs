//! The root's IPC namespace, read by a thread of criu that joined it: `ipcns-var-N.img`
//! (the namespace's sysctls, as CRIU lists them), `ipcns-shm-N.img` (segments with their
//! contents), `ipcns-msg-N.img` (queues with their messages, copied with `MSG_COPY`: nothing
//! is taken out) and `ipcns-sem-N.img` (semaphore sets with their values). The tree is
//! frozen meanwhile, so the objects do not change under the dump.

use criu_proto::images::{IpcDescEntry, IpcVarEntry};
use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::image::{ImageDir, ImageKind};
use crate::restore::ns::ipcimg::{self, MsgQueue, SemSet, ShmSeg};
use crate::sys::nsenter::in_namespaces;
use crate::sys::sysvipc::{self, Perm};

use super::super::DumpError;
use super::super::run::img;

/// A failed step inside the namespace: what, and the error.
type Step = (String, Errno);

/// The namespace's objects, read inside it.
struct IpcNs {
    var: IpcVarEntry,
    shm: Vec<ShmSeg>,
    msg: Vec<MsgQueue>,
    sem: Vec<SemSet>,
}

fn sysctl(name: &str) -> Result<String, Step> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
            (format!("reading /proc/sys/{name}"), errno)
        })
}

fn num<T: std::str::FromStr>(name: &str) -> Result<T, Step> {
    let s = sysctl(name)?;
    s.parse().map_err(|_| {
        (
            format!("/proc/sys/{name}: not a number: {s:?}"),
            Errno::EINVAL,
        )
    })
}

/// A `*_next_id` sysctl: -1 (the default) is "not set", absent from the image as in CRIU.
fn next_id(name: &str) -> Result<Option<u32>, Step> {
    let v: i64 = num(name)?;
    Ok((v >= 0).then_some(v as u32))
}

/// The sysctls of CRIU's `ipc_var_entry` (the mqueue ones exist on every kernel we run on).
pub(crate) fn read_var() -> Result<IpcVarEntry, Step> {
    let sem = sysctl("kernel/sem")?;
    let sem_ctls = sem
        .split_whitespace()
        .map(|w| w.parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| (format!("/proc/sys/kernel/sem: {sem:?}"), Errno::EINVAL))?;
    Ok(IpcVarEntry {
        sem_ctls,
        msg_ctlmax: num("kernel/msgmax")?,
        msg_ctlmnb: num("kernel/msgmnb")?,
        msg_ctlmni: num("kernel/msgmni")?,
        auto_msgmni: num("kernel/auto_msgmni")?,
        shm_ctlmax: num("kernel/shmmax")?,
        shm_ctlall: num("kernel/shmall")?,
        shm_ctlmni: num("kernel/shmmni")?,
        shm_rmid_forced: num("kernel/shm_rmid_forced")?,
        mq_queues_max: num("fs/mqueue/queues_max")?,
        mq_msg_max: num("fs/mqueue/msg_max")?,
        mq_msgsize_max: num("fs/mqueue/msgsize_max")?,
        mq_msg_default: Some(num("fs/mqueue/msg_default")?),
        mq_msgsize_default: Some(num("fs/mqueue/msgsize_default")?),
        msg_next_id: next_id("kernel/msg_next_id")?,
        sem_next_id: next_id("kernel/sem_next_id")?,
        shm_next_id: next_id("kernel/shm_next_id")?,
    })
}

fn desc(p: &Perm) -> IpcDescEntry {
    IpcDescEntry {
        key: p.key,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
        id: p.id,
    }
}

fn read_ns() -> Result<IpcNs, Step> {
    let var = read_var()?;
    let e = |what: &str| {
        let what = what.to_string();
        move |errno| (what, errno)
    };
    let mut shm = Vec::new();
    for s in sysvipc::shm_list().map_err(e("shmctl(SHM_STAT)"))? {
        let data = sysvipc::shm_read(s.perm.id, s.size)
            .map_err(e(&format!("attaching segment {}", s.perm.id)))?;
        shm.push(ShmSeg {
            desc: desc(&s.perm),
            data,
        });
    }
    let mut msg = Vec::new();
    for q in sysvipc::msg_list().map_err(e("msgctl(MSG_STAT)"))? {
        let mut msgs = Vec::new();
        for i in 0..q.qnum {
            msgs.push(
                sysvipc::msg_copy(q.perm.id, i, var.msg_ctlmax as usize).map_err(e(&format!(
                    "msgrcv(MSG_COPY) of message {i} of queue {}",
                    q.perm.id
                )))?,
            );
        }
        msg.push(MsgQueue {
            desc: desc(&q.perm),
            qbytes: q.qbytes as u32,
            msgs,
        });
    }
    let mut sem = Vec::new();
    for s in sysvipc::sem_list().map_err(e("semctl(SEM_STAT)"))? {
        let values = sysvipc::sem_values(s.perm.id, s.nsems as usize)
            .map_err(e(&format!("semctl(GETALL) of set {}", s.perm.id)))?;
        sem.push(SemSet {
            desc: desc(&s.perm),
            values,
        });
    }
    Ok(IpcNs { var, shm, msg, sem })
}

/// Writes the four images of the IPC namespace of `pid`, numbered `id`.
pub fn dump(dir: &ImageDir, pid: i32, id: u32) -> Result<(), DumpError> {
    let ns = in_namespaces(pid, CloneFlags::CLONE_NEWIPC, read_ns)
        .map_err(|e| super::enter_err(pid, e))?
        .map_err(|(what, errno)| DumpError::sys(pid, "ipcns", what, errno))?;
    tracing::info!(
        pid,
        id,
        shm = ns.shm.len(),
        msg = ns.msg.len(),
        sem = ns.sem.len(),
        "IPC namespace"
    );
    let id = u64::from(id);
    let err = img(pid, "ipcns");
    dir.write_single(ImageKind::IpcVar, id, &ns.var)
        .map_err(&err)?;
    let mut w = dir.writer(ImageKind::IpcnsShm, id).map_err(&err)?;
    for s in &ns.shm {
        let (e, extra) = ipcimg::encode_shm(s);
        w.write_entry_with_extra(&e, &extra).map_err(&err)?;
    }
    w.finish().map_err(&err)?;
    let mut w = dir.writer(ImageKind::IpcnsMsg, id).map_err(&err)?;
    for q in &ns.msg {
        let (e, extra) = ipcimg::encode_msg(q);
        w.write_entry_with_extra(&e, &extra).map_err(&err)?;
    }
    w.finish().map_err(&err)?;
    let mut w = dir.writer(ImageKind::IpcnsSem, id).map_err(&err)?;
    for s in &ns.sem {
        let (e, extra) = ipcimg::encode_sem(s);
        w.write_entry_with_extra(&e, &extra).map_err(&err)?;
    }
    w.finish().map_err(&err)?;
    Ok(())
}
