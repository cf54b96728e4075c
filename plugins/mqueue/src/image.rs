//! The plugin's image, `criu-rs-mqueue.bin`: CRIU has no format for message queues, so the
//! queues (name, attributes, owner, mode, every message with its priority, the `mq_notify`
//! registration) and the descriptions opened on them live in a file of ours. Not named
//! `*.img`, so crit and CRIU skip it; `files.img` holds an EXT entry per description
//! (`ext_file_entry.criu_rs_plugin = "mqueue"`), which crit decodes.
//!
//! Format: the 8 bytes [`MAGIC`], then one protobuf [`MqueueImage`] (field numbers below are
//! the stable on-disk form).

use criu_plugin_api::PluginError;
use prost::Message as _;

/// The file's name in the images directory.
pub const FILE: &str = "criu-rs-mqueue.bin";

/// The first 8 bytes of [`FILE`]; the last digit is the format version.
pub const MAGIC: &[u8; 8] = b"CRRSMQ01";

/// Largest priority `mq_send` accepts (`MQ_PRIO_MAX` - 1 on Linux).
pub const PRIO_MAX: u32 = 32767;

/// Everything the plugin dumped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MqueueImage {
    /// Every queue a description of the tree is open on, once.
    #[prost(message, repeated, tag = "1")]
    pub queues: Vec<QueueEntry>,
    /// Every open file description on a queue (one per `files.img` EXT entry of ours).
    #[prost(message, repeated, tag = "2")]
    pub files: Vec<FileEntry>,
}

/// One queue (one mqueue inode).
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueueEntry {
    /// Index of the queue in this image, named by [`FileEntry::queue`].
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// Its name with the leading `/` (`/jobs`), as `/proc/PID/fd/N` shows it.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Unlinked (`mq_unlink`) while held open: recreated under a temporary name, unlinked.
    #[prost(bool, tag = "3")]
    pub unlinked: bool,
    /// Permission bits.
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    /// Owner uid.
    #[prost(uint32, tag = "5")]
    pub uid: u32,
    /// Owner gid.
    #[prost(uint32, tag = "6")]
    pub gid: u32,
    /// `mq_maxmsg`.
    #[prost(uint64, tag = "7")]
    pub maxmsg: u64,
    /// `mq_msgsize`.
    #[prost(uint64, tag = "8")]
    pub msgsize: u64,
    /// The messages in the order they are received (priority, then arrival).
    #[prost(message, repeated, tag = "9")]
    pub messages: Vec<QueuedMessage>,
    /// The `mq_notify` registration, if any.
    #[prost(message, optional, tag = "10")]
    pub notify: Option<NotifyEntry>,
}

/// One message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueuedMessage {
    /// Its priority.
    #[prost(uint32, tag = "1")]
    pub prio: u32,
    /// Its bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// A queue's `mq_notify` registration.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NotifyEntry {
    /// The registering process (as dumped).
    #[prost(int32, tag = "1")]
    pub pid: i32,
    /// `sigev_notify`: `SIGEV_SIGNAL` (0) or `SIGEV_NONE` (1).
    #[prost(int32, tag = "2")]
    pub sigev_notify: i32,
    /// `sigev_signo` (`SIGEV_SIGNAL`).
    #[prost(int32, tag = "3")]
    pub signo: i32,
    /// `sigev_value` (`SIGEV_SIGNAL`), as the 64-bit union.
    #[prost(uint64, tag = "4")]
    pub value: u64,
}

/// One open file description on a queue.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileEntry {
    /// Its `files.img` id.
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// The [`QueueEntry::id`] it is open on.
    #[prost(uint32, tag = "2")]
    pub queue: u32,
    /// Its file flags (`O_RDONLY`/`O_WRONLY`/`O_RDWR`, `O_NONBLOCK`).
    #[prost(uint32, tag = "3")]
    pub flags: u32,
}

fn bad(reason: String) -> PluginError {
    PluginError::bad_image(FILE, reason)
}

impl MqueueImage {
    /// The file's bytes.
    pub fn encode_file(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(self.encode_to_vec());
        out
    }

    /// Parses and checks the file: a wrong magic, a protobuf error or an inconsistent
    /// entry is a [`PluginError::BadImage`] naming the file and the entry.
    pub fn decode_file(bytes: &[u8]) -> Result<Self, PluginError> {
        let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
            bad(format!(
                "does not start with {:?}",
                String::from_utf8_lossy(MAGIC)
            ))
        })?;
        let image = MqueueImage::decode(body).map_err(|e| bad(format!("not decodable: {e}")))?;
        image.check()?;
        Ok(image)
    }

    /// Checks what the kernel would refuse or misread at restore, naming the entry.
    pub fn check(&self) -> Result<(), PluginError> {
        for (i, q) in self.queues.iter().enumerate() {
            let what = format!("queue entry {i} ({})", q.name);
            if q.id as usize != i {
                return Err(bad(format!("{what}: id {} where {i} was expected", q.id)));
            }
            let valid_name = q.name.len() > 1
                && q.name.starts_with('/')
                && !q.name[1..].contains('/')
                && !q.name.contains('\0');
            if !valid_name {
                return Err(bad(format!("{what}: not a queue name")));
            }
            if q.maxmsg == 0 || q.msgsize == 0 {
                return Err(bad(format!(
                    "{what}: maxmsg {} msgsize {} (both must be positive)",
                    q.maxmsg, q.msgsize
                )));
            }
            if q.messages.len() as u64 > q.maxmsg {
                return Err(bad(format!(
                    "{what}: {} messages, more than its maxmsg {}",
                    q.messages.len(),
                    q.maxmsg
                )));
            }
            for (j, m) in q.messages.iter().enumerate() {
                if m.data.len() as u64 > q.msgsize {
                    return Err(bad(format!(
                        "{what}: message {j} holds {} bytes, more than its msgsize {}",
                        m.data.len(),
                        q.msgsize
                    )));
                }
                if m.prio > PRIO_MAX {
                    return Err(bad(format!("{what}: message {j} has priority {}", m.prio)));
                }
            }
            if let Some(n) = &q.notify {
                let known = (n.sigev_notify == libc::SIGEV_SIGNAL
                    && (1..=libc::SIGRTMAX()).contains(&n.signo))
                    || n.sigev_notify == libc::SIGEV_NONE;
                if !known || n.pid <= 0 {
                    return Err(bad(format!(
                        "{what}: notification {n:?} is neither SIGEV_SIGNAL with a signal nor SIGEV_NONE"
                    )));
                }
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            if f.queue as usize >= self.queues.len() {
                return Err(bad(format!(
                    "file entry {i} (id {}): queue {} does not exist",
                    f.id, f.queue
                )));
            }
        }
        Ok(())
    }

    /// The description with `files.img` id `id` and its queue.
    pub fn file(&self, id: u32) -> Option<(&FileEntry, &QueueEntry)> {
        let f = self.files.iter().find(|f| f.id == id)?;
        Some((f, self.queues.get(f.queue as usize)?))
    }
}
