//! The root's new IPC namespace: its sysctls (`ipcns-var-N.img`) and its SysV objects
//! (`ipcns-shm/msg/sem-N.img`), created by a thread of criu inside the namespace with the
//! dumped ids (`kernel/*_next_id` set before each `*get`, as CRIU does), the segments'
//! contents, the messages in order and the semaphore values. `shm_rmid_forced` is set last,
//! from a second thread: with it on, the first thread's exit would destroy the unattached
//! segments it created.

use criu_proto::ImageKind;
use criu_proto::images::IpcVarEntry;
use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::image::ImageDir;
use crate::restore::error::{RestoreError, Result, bad};
use crate::restore::imgread::Images;
use crate::sys::nsenter::in_namespaces;
use crate::sys::sysvipc;

use super::ipcimg::{self, MsgQueue, SemSet, ShmSeg};

/// `SHM_DEST` in a segment's mode: removed, destroyed at its last detach.
const SHM_DEST: u32 = 0o1000;

/// Everything the namespace holds.
#[derive(Debug, Clone)]
pub struct IpcState {
    var: IpcVarEntry,
    shm: Vec<ShmSeg>,
    msg: Vec<MsgQueue>,
    sem: Vec<SemSet>,
}

/// Reads every entry of `kind`'s image `id` (absent: none) with `decode`.
fn objects<T>(
    images: &Images,
    kind: ImageKind,
    id: u32,
    decode: impl Fn(&str, usize, &criu_proto::RawEntry) -> std::result::Result<T, ipcimg::IpcImgError>,
) -> Result<Vec<T>> {
    let name = kind.file_name(u64::from(id));
    if !images.exists(&name) {
        return Ok(Vec::new());
    }
    let dir = ImageDir::open(images.dir()).map_err(|source| RestoreError::Image { source })?;
    let raw = dir
        .read_raw(kind, u64::from(id))
        .map_err(|source| RestoreError::Image { source })?;
    raw.entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            decode(&name, i, e).map_err(|ipcimg::IpcImgError::Bad { image, entry, what }| {
                bad(&image, Some(entry), what)
            })
        })
        .collect()
}

impl IpcState {
    /// Reads and checks the four images of namespace `id`.
    pub fn load(images: &Images, id: u32) -> Result<IpcState> {
        let kind = ImageKind::IpcVar;
        let name = kind.file_name(u64::from(id));
        if !images.exists(&name) {
            return Err(bad(&name, None, "missing (the root's IPC namespace)"));
        }
        let var: IpcVarEntry = images.single(&name, kind.magic())?;
        if var.sem_ctls.len() != 4 {
            return Err(bad(
                &name,
                Some(0),
                format!("{} sem_ctls, not 4", var.sem_ctls.len()),
            ));
        }
        let shm = objects(images, ImageKind::IpcnsShm, id, ipcimg::decode_shm)?;
        if let Some(s) = shm.iter().find(|s| s.desc.mode & SHM_DEST != 0) {
            return Err(bad(
                &ImageKind::IpcnsShm.file_name(u64::from(id)),
                None,
                format!(
                    "segment {} was removed (IPC_RMID) while attached: not supported yet",
                    s.desc.id
                ),
            ));
        }
        Ok(IpcState {
            var,
            shm,
            msg: objects(images, ImageKind::IpcnsMsg, id, ipcimg::decode_msg)?,
            sem: objects(images, ImageKind::IpcnsSem, id, ipcimg::decode_sem)?,
        })
    }

    /// Creates it all in the IPC namespace of `pid`.
    pub fn apply(&self, pid: i32) -> Result<()> {
        let step = "restoring the IPC namespace";
        let fail = |(what, source): (String, Errno)| RestoreError::Local {
            pid,
            step: format!("{step}: {what}"),
            source,
        };
        in_namespaces(pid, CloneFlags::CLONE_NEWIPC, || self.create())
            .map_err(|e| super::enter_err(pid, step, e))?
            .map_err(fail)?;
        let forced = self.var.shm_rmid_forced.to_string();
        in_namespaces(pid, CloneFlags::CLONE_NEWIPC, || {
            write("kernel/shm_rmid_forced", &forced)
        })
        .map_err(|e| super::enter_err(pid, step, e))?
        .map_err(fail)
    }

    /// Inside the namespace: sysctls, objects, then the next ids.
    fn create(&self) -> std::result::Result<(), (String, Errno)> {
        let v = &self.var;
        let sem = v
            .sem_ctls
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let mut sysctls = vec![
            ("kernel/sem", sem),
            ("kernel/msgmax", v.msg_ctlmax.to_string()),
            ("kernel/msgmnb", v.msg_ctlmnb.to_string()),
            ("kernel/auto_msgmni", v.auto_msgmni.to_string()),
            ("kernel/msgmni", v.msg_ctlmni.to_string()),
            ("kernel/shmmax", v.shm_ctlmax.to_string()),
            ("kernel/shmall", v.shm_ctlall.to_string()),
            ("kernel/shmmni", v.shm_ctlmni.to_string()),
            ("fs/mqueue/queues_max", v.mq_queues_max.to_string()),
            ("fs/mqueue/msg_max", v.mq_msg_max.to_string()),
            ("fs/mqueue/msgsize_max", v.mq_msgsize_max.to_string()),
        ];
        if let (Some(a), Some(b)) = (v.mq_msg_default, v.mq_msgsize_default) {
            sysctls.push(("fs/mqueue/msg_default", a.to_string()));
            sysctls.push(("fs/mqueue/msgsize_default", b.to_string()));
        }
        for (name, value) in &sysctls {
            // auto_msgmni is gone from newer kernels' semantics; writing it may be refused.
            match write(name, value) {
                Err((_, Errno::EINVAL)) if *name == "kernel/auto_msgmni" => {}
                r => r?,
            }
        }
        let at = |what: &str, id: u32| {
            let what = format!("{what} {id}");
            move |e| (what, e)
        };
        let same = |what: &str, want: u32, got: u32| {
            if want == got {
                Ok(())
            } else {
                Err((
                    format!("{what} {want} was created with id {got}"),
                    Errno::EEXIST,
                ))
            }
        };
        for s in &self.shm {
            let d = &s.desc;
            write("kernel/shm_next_id", &d.id.to_string())?;
            let id = sysvipc::shm_create(d.key, s.data.len() as u64, d.mode)
                .map_err(at("shmget of segment", d.id))?;
            same("segment", d.id, id)?;
            sysvipc::shm_write(id, &s.data).map_err(at("writing segment", id))?;
            sysvipc::shm_set(id, d.uid, d.gid, d.mode).map_err(at("IPC_SET of segment", id))?;
        }
        for q in &self.msg {
            let d = &q.desc;
            write("kernel/msg_next_id", &d.id.to_string())?;
            let id = sysvipc::msg_create(d.key, d.mode).map_err(at("msgget of queue", d.id))?;
            same("queue", d.id, id)?;
            sysvipc::msg_set(id, d.uid, d.gid, d.mode, u64::from(q.qbytes))
                .map_err(at("IPC_SET of queue", id))?;
            for (mtype, text) in &q.msgs {
                sysvipc::msg_send(id, *mtype, text).map_err(at("msgsnd to queue", id))?;
            }
        }
        for s in &self.sem {
            let d = &s.desc;
            write("kernel/sem_next_id", &d.id.to_string())?;
            let id = sysvipc::sem_create(d.key, s.values.len() as u32, d.mode)
                .map_err(at("semget of set", d.id))?;
            same("semaphore set", d.id, id)?;
            sysvipc::sem_restore(id, &s.values, d.uid, d.gid, d.mode)
                .map_err(at("SETALL/IPC_SET of set", id))?;
        }
        for (name, next) in [
            ("kernel/msg_next_id", v.msg_next_id),
            ("kernel/sem_next_id", v.sem_next_id),
            ("kernel/shm_next_id", v.shm_next_id),
        ] {
            if let Some(n) = next {
                write(name, &n.to_string())?;
            }
        }
        Ok(())
    }
}

/// Writes `/proc/sys/<name>` of the calling thread's namespaces.
fn write(name: &str, value: &str) -> std::result::Result<(), (String, Errno)> {
    std::fs::write(format!("/proc/sys/{name}"), value).map_err(|e| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        (format!("writing {value:?} to /proc/sys/{name}"), errno)
    })
}
