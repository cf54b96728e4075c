//! SysV IPC objects of the calling thread's IPC namespace: listing them (`*_STAT` by index,
//! as `ipcs` does), reading their state (shm contents, queued messages with `MSG_COPY`,
//! semaphore values) and creating them again. Used by criu from a thread that joined the
//! dumped or restored namespace ([`super::nsenter`]).

use libc::c_int;
use nix::errno::Errno;

/// `shmctl` commands glibc has but the libc crate does not list for Linux.
const SHM_STAT: c_int = 13;
const SHM_INFO: c_int = 14;

/// An object's `ipc_perm`, as CRIU's `ipc_desc_entry` keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perm {
    pub key: u32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits and the kernel's flags (`SHM_DEST`, `SHM_LOCKED`...).
    pub mode: u32,
    pub id: u32,
}

fn perm(id: c_int, p: &libc::ipc_perm) -> Perm {
    Perm {
        key: p.__key as u32,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode as u32,
        id: id as u32,
    }
}

/// A shared memory segment: its perm and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shm {
    pub perm: Perm,
    pub size: u64,
    pub nattch: u64,
}

/// A message queue: its perm, byte limit and number of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msq {
    pub perm: Perm,
    pub qbytes: u64,
    pub qnum: u64,
}

/// A semaphore set: its perm and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sem {
    pub perm: Perm,
    pub nsems: u64,
}

/// Every index from 0 to the highest in use (`*_INFO`), asked with `stat`; EINVAL is a
/// free slot.
fn each<T>(
    info: impl FnOnce() -> c_int,
    mut stat: impl FnMut(c_int) -> Option<T>,
) -> Result<Vec<T>, Errno> {
    let max = info();
    if max < 0 {
        return Err(Errno::last());
    }
    let mut out = Vec::new();
    for i in 0..=max {
        if let Some(t) = stat(i) {
            out.push(t);
        } else if Errno::last() != Errno::EINVAL {
            return Err(Errno::last());
        }
    }
    Ok(out)
}

/// The shared memory segments of the namespace.
pub fn shm_list() -> Result<Vec<Shm>, Errno> {
    // SAFETY: plain-data kernel structs: all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    let p = &mut ds as *mut libc::shmid_ds;
    each(
        // SAFETY: SHM_INFO writes a struct shm_info, smaller than the shmid_ds at `p`.
        || unsafe { libc::shmctl(0, SHM_INFO, p) },
        |i| {
            // SAFETY: SHM_STAT fills the shmid_ds at `p`, which outlives the call.
            let id = unsafe { libc::shmctl(i, SHM_STAT, p) };
            // SAFETY: `p` points to `ds`, just filled.
            let ds = unsafe { &*p };
            (id >= 0).then(|| Shm {
                perm: perm(id, &ds.shm_perm),
                size: ds.shm_segsz as u64,
                nattch: ds.shm_nattch,
            })
        },
    )
}

/// Maps segment `id` (read-only or not), runs `f` on its bytes, unmaps it.
fn with_shm<T>(
    id: u32,
    size: u64,
    write: bool,
    f: impl FnOnce(&mut [u8]) -> T,
) -> Result<T, Errno> {
    let flags = if write { 0 } else { libc::SHM_RDONLY };
    // SAFETY: the kernel picks a free address; nothing else uses the mapping.
    let addr = unsafe { libc::shmat(id as c_int, std::ptr::null(), flags) };
    if addr as isize == -1 {
        return Err(Errno::last());
    }
    // SAFETY: the segment is mapped at `addr` for at least `size` bytes until shmdt below;
    // a read-only mapping is only read (`write` false callers do not write).
    let bytes = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), size as usize) };
    let out = f(bytes);
    // SAFETY: `addr` came from shmat above; `bytes` is not used any more.
    unsafe { libc::shmdt(addr) };
    Ok(out)
}

/// A copy of the `size` bytes of segment `id`.
pub fn shm_read(id: u32, size: u64) -> Result<Vec<u8>, Errno> {
    with_shm(id, size, false, |b| b.to_vec())
}

/// Creates a segment (`shmget(key, size, mode | IPC_CREAT | IPC_EXCL)`), returns its id.
pub fn shm_create(key: u32, size: u64, mode: u32) -> Result<u32, Errno> {
    let flags = (mode & 0o777) as c_int | libc::IPC_CREAT | libc::IPC_EXCL;
    // SAFETY: plain syscall on integers.
    let id = unsafe { libc::shmget(key as libc::key_t, size as usize, flags) };
    Errno::result(id).map(|id| id as u32)
}

/// Copies `data` to the start of segment `id`.
pub fn shm_write(id: u32, data: &[u8]) -> Result<(), Errno> {
    with_shm(id, data.len() as u64, true, |b| b.copy_from_slice(data))
}

/// Sets a segment's owner and mode (`IPC_STAT` then `IPC_SET`).
pub fn shm_set(id: u32, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    // SAFETY: plain-data kernel struct: all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills `ds`, IPC_SET reads it; both live across the calls.
    Errno::result(unsafe { libc::shmctl(id as c_int, libc::IPC_STAT, &mut ds) })?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as u16;
    // SAFETY: as above.
    Errno::result(unsafe { libc::shmctl(id as c_int, libc::IPC_SET, &mut ds) }).map(drop)
}

/// The message queues of the namespace.
pub fn msg_list() -> Result<Vec<Msq>, Errno> {
    // SAFETY: plain-data kernel struct: all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    let p = &mut ds as *mut libc::msqid_ds;
    each(
        // SAFETY: MSG_INFO writes a struct msginfo, smaller than the msqid_ds at `p`.
        || unsafe { libc::msgctl(0, libc::MSG_INFO, p) },
        |i| {
            // SAFETY: MSG_STAT fills the msqid_ds at `p`.
            let id = unsafe { libc::msgctl(i, libc::MSG_STAT, p) };
            // SAFETY: `p` points to `ds`, just filled.
            let ds = unsafe { &*p };
            (id >= 0).then(|| Msq {
                perm: perm(id, &ds.msg_perm),
                qbytes: ds.msg_qbytes,
                qnum: ds.msg_qnum,
            })
        },
    )
}

/// A copy of message number `index` of queue `id` (`MSG_COPY`, nothing consumed): its type
/// and text. `max` is the largest text (`kernel/msgmax`).
pub fn msg_copy(id: u32, index: u64, max: usize) -> Result<(u64, Vec<u8>), Errno> {
    let mut buf = vec![0u8; 8 + max];
    let flags = libc::IPC_NOWAIT | 0o40000; // MSG_COPY
    // SAFETY: `buf` holds a long then `max` bytes, as msgrcv writes at most.
    let n = unsafe {
        libc::msgrcv(
            id as c_int,
            buf.as_mut_ptr().cast(),
            max,
            index as libc::c_long,
            flags,
        )
    };
    let n = Errno::result(n)? as usize;
    let mtype = u64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
    Ok((mtype, buf[8..8 + n].to_vec()))
}

/// Creates a queue (`msgget(key, mode | IPC_CREAT | IPC_EXCL)`), returns its id.
pub fn msg_create(key: u32, mode: u32) -> Result<u32, Errno> {
    let flags = (mode & 0o777) as c_int | libc::IPC_CREAT | libc::IPC_EXCL;
    // SAFETY: plain syscall on integers.
    Errno::result(unsafe { libc::msgget(key as libc::key_t, flags) }).map(|id| id as u32)
}

/// Sets a queue's owner, mode and byte limit.
pub fn msg_set(id: u32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<(), Errno> {
    // SAFETY: plain-data kernel struct: all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills `ds`, IPC_SET reads it.
    Errno::result(unsafe { libc::msgctl(id as c_int, libc::IPC_STAT, &mut ds) })?;
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as u16;
    ds.msg_qbytes = qbytes;
    // SAFETY: as above.
    Errno::result(unsafe { libc::msgctl(id as c_int, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Queues one message (never blocks: a full queue is EAGAIN).
pub fn msg_send(id: u32, mtype: u64, text: &[u8]) -> Result<(), Errno> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: `buf` is a long then `text.len()` bytes, as msgsnd reads.
    let r = unsafe {
        libc::msgsnd(
            id as c_int,
            buf.as_ptr().cast(),
            text.len(),
            libc::IPC_NOWAIT,
        )
    };
    Errno::result(r).map(drop)
}

/// The semaphore sets of the namespace.
pub fn sem_list() -> Result<Vec<Sem>, Errno> {
    // SAFETY: plain-data kernel struct: all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    let p = &mut ds as *mut libc::semid_ds;
    each(
        // SAFETY: SEM_INFO writes a struct seminfo (40 bytes) to the semid_ds at `p`.
        || unsafe { libc::semctl(0, 0, libc::SEM_INFO, p) },
        |i| {
            // SAFETY: SEM_STAT fills the semid_ds at `p` (semun's buf).
            let id = unsafe { libc::semctl(i, 0, libc::SEM_STAT, p) };
            // SAFETY: `p` points to `ds`, just filled.
            let ds = unsafe { &*p };
            (id >= 0).then(|| Sem {
                perm: perm(id, &ds.sem_perm),
                nsems: ds.sem_nsems,
            })
        },
    )
}

/// Every value of set `id` of `nsems` semaphores (`GETALL`).
pub fn sem_values(id: u32, nsems: usize) -> Result<Vec<u16>, Errno> {
    let mut v = vec![0u16; nsems];
    // SAFETY: GETALL writes `nsems` u16s to semun's array, `v` holds that many.
    let r = unsafe { libc::semctl(id as c_int, 0, libc::GETALL, v.as_mut_ptr()) };
    Errno::result(r).map(|_| v)
}

/// Creates a set (`semget(key, nsems, mode | IPC_CREAT | IPC_EXCL)`), returns its id.
pub fn sem_create(key: u32, nsems: u32, mode: u32) -> Result<u32, Errno> {
    let flags = (mode & 0o777) as c_int | libc::IPC_CREAT | libc::IPC_EXCL;
    // SAFETY: plain syscall on integers.
    Errno::result(unsafe { libc::semget(key as libc::key_t, nsems as c_int, flags) })
        .map(|id| id as u32)
}

/// Sets every value of set `id` (`SETALL`), then its owner and mode.
pub fn sem_restore(id: u32, values: &[u16], uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    // SAFETY: SETALL reads one u16 per semaphore of the set from semun's array; the set was
    // created with `values.len()` semaphores.
    Errno::result(unsafe { libc::semctl(id as c_int, 0, libc::SETALL, values.as_ptr()) })?;
    // SAFETY: plain-data kernel struct: all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the semid_ds passed as semun's buf.
    Errno::result(unsafe { libc::semctl(id as c_int, 0, libc::IPC_STAT, &mut ds as *mut _) })?;
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as u16;
    // SAFETY: IPC_SET reads the semid_ds passed as semun's buf.
    Errno::result(unsafe { libc::semctl(id as c_int, 0, libc::IPC_SET, &mut ds as *mut _) })
        .map(drop)
}
