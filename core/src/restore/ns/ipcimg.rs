//! CRIU's images of an IPC namespace's SysV objects, as data: `ipcns-shm-N.img` (each
//! `ipc_shm_entry` followed by the segment's bytes padded to 4; CRIU 4.x may instead put them
//! in a shmem pagemap, `in_pagemaps`, which we refuse), `ipcns-msg-N.img` (each
//! `ipc_msg_entry` followed by `qnum` framed `ipc_msg` headers, each with its text padded to
//! 8) and `ipcns-sem-N.img` (each `ipc_sem_entry` followed by `nsems` u16 values padded to
//! 8). Pure code: the dump encodes with it, the restore decodes and checks with it.

use criu_proto::RawEntry;
use criu_proto::images::{IpcDescEntry, IpcMsg, IpcMsgEntry, IpcSemEntry, IpcShmEntry};
use prost::Message;

/// A shared memory segment and its contents (its size is `data.len()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmSeg {
    pub desc: IpcDescEntry,
    pub data: Vec<u8>,
}

/// A message queue and its messages (type, text) in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgQueue {
    pub desc: IpcDescEntry,
    pub qbytes: u32,
    pub msgs: Vec<(u64, Vec<u8>)>,
}

/// A semaphore set and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemSet {
    pub desc: IpcDescEntry,
    pub values: Vec<u16>,
}

/// What is wrong with one entry of an IPC image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpcImgError {
    #[error("{image}: entry {entry}: {what}")]
    Bad {
        image: String,
        entry: usize,
        what: String,
    },
}

fn bad(image: &str, entry: usize, what: impl Into<String>) -> IpcImgError {
    IpcImgError::Bad {
        image: image.to_string(),
        entry,
        what: what.into(),
    }
}

fn padded(mut v: Vec<u8>, to: usize) -> Vec<u8> {
    v.resize(v.len().div_ceil(to) * to, 0);
    v
}

fn decode<M: Message + Default>(image: &str, entry: usize, bytes: &[u8]) -> Result<M, IpcImgError> {
    M::decode(bytes).map_err(|e| bad(image, entry, format!("undecodable: {e}")))
}

/// The entry and extra bytes of a segment.
pub fn encode_shm(s: &ShmSeg) -> (IpcShmEntry, Vec<u8>) {
    let e = IpcShmEntry {
        desc: s.desc,
        size: s.data.len() as u64,
        in_pagemaps: None,
        hugetlb_flag: None,
    };
    (e, padded(s.data.clone(), 4))
}

/// A segment back from its entry.
pub fn decode_shm(image: &str, entry: usize, raw: &RawEntry) -> Result<ShmSeg, IpcImgError> {
    let e: IpcShmEntry = decode(image, entry, &raw.payload)?;
    if e.in_pagemaps.unwrap_or(false) {
        return Err(bad(
            image,
            entry,
            "segment contents in a shmem pagemap (in_pagemaps) are not supported yet",
        ));
    }
    if e.hugetlb_flag.is_some() {
        return Err(bad(image, entry, "hugetlb segments are not supported yet"));
    }
    let size = usize::try_from(e.size).map_err(|_| bad(image, entry, "size out of range"))?;
    if raw.extra.len() < size {
        return Err(bad(
            image,
            entry,
            format!(
                "segment {} of {size} bytes has only {} bytes of contents",
                e.desc.id,
                raw.extra.len()
            ),
        ));
    }
    Ok(ShmSeg {
        desc: e.desc,
        data: raw.extra[..size].to_vec(),
    })
}

/// The entry and extra bytes of a queue.
pub fn encode_msg(q: &MsgQueue) -> (IpcMsgEntry, Vec<u8>) {
    let e = IpcMsgEntry {
        desc: q.desc,
        qbytes: q.qbytes,
        qnum: q.msgs.len() as u32,
    };
    let mut extra = Vec::new();
    for (mtype, text) in &q.msgs {
        let head = IpcMsg {
            mtype: *mtype,
            msize: text.len() as u32,
        };
        extra.extend_from_slice(&(head.encoded_len() as u32).to_le_bytes());
        head.encode(&mut extra).expect("a Vec grows");
        extra.extend_from_slice(&padded(text.clone(), 8));
    }
    (e, extra)
}

/// A queue back from its entry.
pub fn decode_msg(image: &str, entry: usize, raw: &RawEntry) -> Result<MsgQueue, IpcImgError> {
    let e: IpcMsgEntry = decode(image, entry, &raw.payload)?;
    let mut rest = raw.extra.as_slice();
    let mut msgs = Vec::new();
    for i in 0..e.qnum {
        let short = || {
            bad(
                image,
                entry,
                format!("message {i} of {} is cut short", e.qnum),
            )
        };
        let len = rest.get(..4).ok_or_else(short)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let head = rest.get(4..4 + len).ok_or_else(short)?;
        let head: IpcMsg = decode(image, entry, head)?;
        let size = head.msize as usize;
        let text = rest.get(4 + len..4 + len + size).ok_or_else(short)?;
        msgs.push((head.mtype, text.to_vec()));
        let next = (4 + len + size.div_ceil(8) * 8).min(rest.len());
        rest = &rest[next..];
    }
    Ok(MsgQueue {
        desc: e.desc,
        qbytes: e.qbytes,
        msgs,
    })
}

/// The entry and extra bytes of a semaphore set.
pub fn encode_sem(s: &SemSet) -> (IpcSemEntry, Vec<u8>) {
    let e = IpcSemEntry {
        desc: s.desc,
        nsems: s.values.len() as u32,
    };
    let bytes = s.values.iter().flat_map(|v| v.to_le_bytes()).collect();
    (e, padded(bytes, 8))
}

/// A semaphore set back from its entry.
pub fn decode_sem(image: &str, entry: usize, raw: &RawEntry) -> Result<SemSet, IpcImgError> {
    let e: IpcSemEntry = decode(image, entry, &raw.payload)?;
    let n = e.nsems as usize;
    let bytes = raw
        .extra
        .get(..n * 2)
        .ok_or_else(|| bad(image, entry, format!("{n} semaphore values cut short")))?;
    let values = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(SemSet {
        desc: e.desc,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(payload: Vec<u8>, extra: Vec<u8>) -> RawEntry {
        RawEntry {
            offset: 0,
            payload,
            extra,
        }
    }

    fn desc(id: u32) -> IpcDescEntry {
        IpcDescEntry {
            key: 7,
            uid: 1,
            gid: 2,
            cuid: 3,
            cgid: 4,
            mode: 0o640,
            id,
        }
    }

    proptest! {
        #[test]
        fn objects_round_trip(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            msgs in proptest::collection::vec((1u64..9, proptest::collection::vec(any::<u8>(), 0..20)), 0..5),
            values in proptest::collection::vec(any::<u16>(), 1..7),
        ) {
            let s = ShmSeg { desc: desc(1), data };
            let (e, x) = encode_shm(&s);
            prop_assert_eq!(x.len() % 4, 0);
            prop_assert_eq!(decode_shm("shm", 0, &raw(e.encode_to_vec(), x)).unwrap(), s);
            let q = MsgQueue { desc: desc(2), qbytes: 16384, msgs };
            let (e, x) = encode_msg(&q);
            prop_assert_eq!(decode_msg("msg", 0, &raw(e.encode_to_vec(), x)).unwrap(), q);
            let m = SemSet { desc: desc(3), values };
            let (e, x) = encode_sem(&m);
            prop_assert_eq!(x.len() % 8, 0);
            prop_assert_eq!(decode_sem("sem", 0, &raw(e.encode_to_vec(), x)).unwrap(), m);
        }
    }

    #[test]
    fn short_contents_name_the_image_and_entry() {
        let (e, x) = encode_shm(&ShmSeg {
            desc: desc(5),
            data: vec![1; 10],
        });
        let err = decode_shm(
            "ipcns-shm-9.img",
            3,
            &raw(e.encode_to_vec(), x[..6].to_vec()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ipcns-shm-9.img: entry 3") && err.contains("segment 5"),
            "{err}"
        );
        let (e, x) = encode_msg(&MsgQueue {
            desc: desc(6),
            qbytes: 1,
            msgs: vec![(1, b"hello".to_vec())],
        });
        let err = decode_msg(
            "ipcns-msg-9.img",
            0,
            &raw(e.encode_to_vec(), x[..7].to_vec()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cut short"), "{err}");
    }
}
