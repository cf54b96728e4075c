//! `packet_sock_entry`s back into sockets, in CRIU's order (`open_packet_sk`): bind to the
//! interface, version, reserve, timestamp, copy threshold, the flags, memberships, rings,
//! fanout, file flags and generic options. A `SOCK_PACKET` socket binds by interface name
//! (`open_packet_sk_spkt`). Every entry is checked before any socket is made: a ring whose
//! block size is no multiple of the page size, or an interface index that does not exist
//! here, fails naming the entry.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{FileRestorer, PluginError, RestoreContext};
use criu_proto::images::{FdTypes, FileEntry, PacketRing, PacketSockEntry};
use criu_sk_common::sys::{set_bytes, set_int};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::diag::MAX_ADDR_LEN;
use crate::sys;

/// `SOL_PACKET` options (linux/if_packet.h).
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_RX_RING: i32 = 5;
const PACKET_COPY_THRESH: i32 = 7;
const PACKET_AUXDATA: i32 = 8;
const PACKET_ORIGDEV: i32 = 9;
const PACKET_VERSION: i32 = 10;
const PACKET_RESERVE: i32 = 12;
const PACKET_TX_RING: i32 = 13;
const PACKET_LOSS: i32 = 14;
const PACKET_VNET_HDR: i32 = 15;
const PACKET_TIMESTAMP: i32 = 17;
const PACKET_FANOUT: i32 = 18;
/// The page size rings are made of.
pub const PAGE_SIZE: u32 = 4096;

fn bad(id: u32, reason: String) -> PluginError {
    PluginError::bad_image(
        "files.img",
        format!("PACKETSK entry of file id {id}: {reason}"),
    )
}

/// The interfaces of criu's network namespace, by index.
fn interfaces() -> Result<HashMap<u32, String>, PluginError> {
    let list = nix::net::if_::if_nameindex().map_err(|e| PluginError::Path {
        path: "if_nameindex".into(),
        op: "list network interfaces",
        source: e.into(),
    })?;
    Ok(list
        .iter()
        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
        .collect())
}

/// A ring's size in bytes, if its parameters make one (block size a positive multiple of
/// the page size, frames fitting the blocks).
pub fn ring_bytes(r: &PacketRing) -> Result<u64, String> {
    if r.block_size == 0 || !r.block_size.is_multiple_of(PAGE_SIZE) {
        return Err(format!(
            "ring block size {} is not a multiple of the page size ({PAGE_SIZE})",
            r.block_size
        ));
    }
    if r.frame_size == 0 || r.block_nr == 0 {
        return Err(format!(
            "ring of {} blocks of frames of {} bytes",
            r.block_nr, r.frame_size
        ));
    }
    let per_block = r.block_size / r.frame_size;
    if u64::from(per_block) * u64::from(r.block_nr) != u64::from(r.frame_nr) {
        return Err(format!(
            "ring of {} frames in {} blocks of {} frames",
            r.frame_nr, r.block_nr, per_block
        ));
    }
    Ok(u64::from(r.block_size) * u64::from(r.block_nr))
}

/// Checks one PACKETSK entry against the interfaces `ifs`.
pub fn validate<'e>(
    entry: &'e FileEntry,
    ifs: &HashMap<u32, String>,
) -> Result<&'e PacketSockEntry, PluginError> {
    let p = entry
        .psk
        .as_ref()
        .ok_or_else(|| bad(entry.id, "no psk (packet_sock_entry) in it".into()))?;
    if p.id != entry.id {
        return Err(bad(entry.id, format!("its psk says id {}", p.id)));
    }
    if !matches!(
        p.r#type as i32,
        libc::SOCK_RAW | libc::SOCK_DGRAM | sys::SOCK_PACKET
    ) {
        return Err(bad(entry.id, format!("socket type {}", p.r#type)));
    }
    if p.protocol > 0xffff {
        return Err(bad(entry.id, format!("protocol {:#x}", p.protocol)));
    }
    if p.ifindex != 0 && !ifs.contains_key(&p.ifindex) {
        return Err(bad(
            entry.id,
            format!("interface index {} does not exist here", p.ifindex),
        ));
    }
    for m in &p.mclist {
        if m.addr.len() > MAX_ADDR_LEN {
            return Err(bad(
                entry.id,
                format!("membership address of {} bytes", m.addr.len()),
            ));
        }
        if !ifs.contains_key(&m.index) {
            return Err(bad(
                entry.id,
                format!(
                    "membership of interface index {}, which does not exist here",
                    m.index
                ),
            ));
        }
    }
    for (name, r) in [("rx", &p.rx_ring), ("tx", &p.tx_ring)] {
        if let Some(r) = r {
            ring_bytes(r).map_err(|e| bad(entry.id, format!("{name} {e}")))?;
        }
    }
    Ok(p)
}

/// The packet sockets of one restore, checked before any is opened.
#[derive(Debug)]
pub struct PacketRestorer {
    entries: HashMap<u32, PacketSockEntry>,
    ifs: HashMap<u32, String>,
}

impl PacketRestorer {
    /// Checks every PACKETSK entry of `entries`.
    pub fn start(entries: &[FileEntry]) -> Result<Self, PluginError> {
        let ifs = interfaces()?;
        let mut map = HashMap::new();
        for e in entries
            .iter()
            .filter(|e| e.r#type == FdTypes::Packetsk as i32)
        {
            map.insert(e.id, validate(e, &ifs)?.clone());
        }
        Ok(PacketRestorer { entries: map, ifs })
    }
}

fn tpacket_req3(r: &PacketRing) -> Vec<u8> {
    [
        r.block_size,
        r.block_nr,
        r.frame_size,
        r.frame_nr,
        r.retire_tmo,
        r.sizeof_priv,
        r.features,
    ]
    .iter()
    .flat_map(|w| w.to_ne_bytes())
    .collect()
}

/// `struct packet_mreq_max`: ifindex, type, alen, address.
fn mreq(index: u32, kind: u32, addr: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + MAX_ADDR_LEN);
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    b.extend_from_slice(&(kind as u16).to_ne_bytes());
    b.extend_from_slice(&(addr.len() as u16).to_ne_bytes());
    b.extend_from_slice(addr);
    b.resize(8 + MAX_ADDR_LEN, 0);
    b
}

type Step = Result<(), (Errno, &'static str)>;

fn packet_opts(f: BorrowedFd<'_>, p: &PacketSockEntry) -> Step {
    let set =
        |opt, v: u32, name| set_int(f, libc::SOL_PACKET, opt, v as i32).map_err(|e| (e, name));
    sys::bind_ll(f, p.ifindex as i32).map_err(|e| (e, "bind"))?;
    set(PACKET_VERSION, p.version, "setsockopt(PACKET_VERSION)")?;
    set(PACKET_RESERVE, p.reserve, "setsockopt(PACKET_RESERVE)")?;
    set(
        PACKET_TIMESTAMP,
        p.timestamp,
        "setsockopt(PACKET_TIMESTAMP)",
    )?;
    set(
        PACKET_COPY_THRESH,
        p.copy_thresh,
        "setsockopt(PACKET_COPY_THRESH)",
    )?;
    for (on, opt, name) in [
        (p.aux_data, PACKET_AUXDATA, "setsockopt(PACKET_AUXDATA)"),
        (p.orig_dev, PACKET_ORIGDEV, "setsockopt(PACKET_ORIGDEV)"),
        (p.vnet_hdr, PACKET_VNET_HDR, "setsockopt(PACKET_VNET_HDR)"),
        (p.loss, PACKET_LOSS, "setsockopt(PACKET_LOSS)"),
    ] {
        if on {
            set(opt, 1, name)?;
        }
    }
    for m in &p.mclist {
        set_bytes(
            f,
            libc::SOL_PACKET,
            PACKET_ADD_MEMBERSHIP,
            &mreq(m.index, m.r#type, &m.addr),
        )
        .map_err(|e| (e, "setsockopt(PACKET_ADD_MEMBERSHIP)"))?;
    }
    if let Some(r) = &p.rx_ring {
        set_bytes(f, libc::SOL_PACKET, PACKET_RX_RING, &tpacket_req3(r))
            .map_err(|e| (e, "setsockopt(PACKET_RX_RING)"))?;
    }
    if let Some(r) = &p.tx_ring {
        set_bytes(f, libc::SOL_PACKET, PACKET_TX_RING, &tpacket_req3(r))
            .map_err(|e| (e, "setsockopt(PACKET_TX_RING)"))?;
    }
    if let Some(fan) = p.fanout.filter(|&v| v != u32::MAX) {
        set(PACKET_FANOUT, fan, "setsockopt(PACKET_FANOUT)")?;
    }
    Ok(())
}

impl PacketRestorer {
    fn open(&self, p: &PacketSockEntry) -> Result<OwnedFd, (Errno, &'static str)> {
        let s =
            sys::packet_socket(p.r#type as i32, p.protocol as i32).map_err(|e| (e, "socket"))?;
        let f = s.as_fd();
        if p.r#type as i32 == sys::SOCK_PACKET {
            if let Some(name) = self.ifs.get(&p.ifindex).filter(|_| p.ifindex != 0) {
                sys::bind_spkt(f, name).map_err(|e| (e, "bind"))?;
            }
        } else {
            packet_opts(f, p)?;
        }
        let fl = OFlag::from_bits_truncate(p.flags as i32);
        fcntl(f, FcntlArg::F_SETFL(fl)).map_err(|e| (e, "fcntl(F_SETFL)"))?;
        criu_sk_common::restore_bound_dev(f, &p.opts).map_err(|e| (e.source, e.opt))?;
        criu_sk_common::restore(f, &p.opts).map_err(|e| (e.source, e.opt))?;
        criu_sk_common::filter::attach_filter(f, &p.opts.so_filter)
            .map_err(|e| (e.source, e.opt))?;
        Ok(s)
    }
}

/// How errors name a packet socket.
pub fn describe(p: &PacketSockEntry) -> String {
    let kind = match p.r#type as i32 {
        libc::SOCK_RAW => "raw",
        libc::SOCK_DGRAM => "dgram",
        sys::SOCK_PACKET => "SOCK_PACKET",
        _ => "?",
    };
    format!(
        "packet socket ({kind}, protocol {:#06x}, ifindex {})",
        u16::from_be(p.protocol as u16),
        p.ifindex
    )
}

impl FileRestorer for PacketRestorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let p = match self.entries.get(&entry.id) {
            Some(p) => p.clone(),
            None => validate(entry, &self.ifs)?.clone(),
        };
        self.open(&p).map_err(|(e, op)| PluginError::Restore {
            id: p.id,
            what: describe(&p),
            op,
            source: e.into(),
        })
    }
}
