"""Packet sockets across a dump (plugin `packet`). usage: packet_sockets.py REPORT GO

ring: an AF_PACKET SOCK_RAW socket (ETH_P_ALL) bound to lo, TPACKET_V2, PACKET_AUXDATA,
  a promiscuous membership of lo, an rx ring of 4 blocks and a tx ring of 1, both mapped
  (one mmap); after the restore the options read back, the mapping is at the same address
  and maps the socket, and a UDP datagram sent over lo shows up in a frame of the rx ring.
dgram: an AF_PACKET SOCK_DGRAM socket (ETH_P_IP) bound to lo with PACKET_RESERVE 16,
  PACKET_ORIGDEV, fanout group 13 (hash) and a unicast membership of lo; after the restore
  the options and fanout read back, the membership can be dropped (it was there) and a
  UDP datagram sent over lo is received.
spkt: two SOCK_PACKET sockets, one bound to "lo", one not; their names read back.
Writes "ready", then after GO appears "ok" or "FAIL reason" to REPORT.
"""
import ctypes
import mmap
import os
import socket
import struct
import sys
import time

report, go = sys.argv[1], sys.argv[2]
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_DROP_MEMBERSHIP, PACKET_RX_RING = 1, 2, 5
PACKET_AUXDATA, PACKET_ORIGDEV, PACKET_VERSION, PACKET_RESERVE = 8, 9, 10, 12
PACKET_TX_RING, PACKET_FANOUT = 13, 18
PACKET_MR_PROMISC, PACKET_MR_UNICAST = 1, 3
TPACKET_V2 = 1
SOCK_PACKET = 10
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
RX = (4096, 4, 2048, 8)
TX = (4096, 1, 2048, 2)
libc = ctypes.CDLL(None, use_errno=True)


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


def mreq(kind, addr=b""):
    return struct.pack("iHH8s", socket.if_nametoindex("lo"), kind, len(addr), addr)


def spkt_name(s):
    buf = ctypes.create_string_buffer(32)
    n = ctypes.c_uint(32)
    if libc.getsockname(s.fileno(), buf, ctypes.byref(n)):
        raise OSError(ctypes.get_errno(), "getsockname")
    return buf.raw[2:16].rstrip(b"\0")


def map_start(mm):
    return ctypes.addressof(ctypes.c_char.from_buffer(mm))


def mapped_socket(addr):
    with open("/proc/self/maps") as f:
        for line in f:
            w = line.split()
            if int(w[0].split("-")[0], 16) == addr:
                return w[-1]
    return None


def ring_sees(mm, payload):
    """Scans the rx ring (TPACKET_V2 frames) for payload, handing other frames back."""
    for i in range(RX[3]):
        off = i * RX[2]
        status, length, snap, mac = struct.unpack_from("IIIH", mm, off)
        if status & 1:  # TP_STATUS_USER
            data = mm[off + mac : off + mac + snap]
            struct.pack_into("I", mm, off, 0)
            if payload in data:
                return True
    return False


try:
    lo = socket.if_nametoindex("lo")
    ring = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    ring.bind(("lo", ETH_P_ALL))
    ring.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
    ring.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    ring.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq(PACKET_MR_PROMISC))
    ring.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack("4I", *RX))
    ring.setsockopt(SOL_PACKET, PACKET_TX_RING, struct.pack("4I", *TX))
    size = RX[0] * RX[1] + TX[0] * TX[1]
    mm = mmap.mmap(ring.fileno(), size)
    addr = map_start(mm)
    dgram = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    dgram.bind(("lo", ETH_P_IP))
    dgram.setsockopt(SOL_PACKET, PACKET_RESERVE, 16)
    dgram.setsockopt(SOL_PACKET, PACKET_ORIGDEV, 1)
    dgram.setsockopt(SOL_PACKET, PACKET_FANOUT, 13)
    dgram.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq(PACKET_MR_UNICAST, b"\x02\0\0\0\0\x07"))
    spkt_lo = socket.socket(socket.AF_PACKET, SOCK_PACKET, socket.htons(ETH_P_ALL))
    # struct sockaddr with the device name (Python's bind makes a sockaddr_ll).
    sa = struct.pack("H14s", socket.AF_PACKET, b"lo")
    if libc.bind(spkt_lo.fileno(), sa, len(sa)):
        raise OSError(ctypes.get_errno(), "bind(SOCK_PACKET)")
    spkt_any = socket.socket(socket.AF_PACKET, SOCK_PACKET, socket.htons(ETH_P_ALL))
    names = (ring.getsockname(), dgram.getsockname(), spkt_name(spkt_lo), spkt_name(spkt_any))
    fanout = dgram.getsockopt(SOL_PACKET, PACKET_FANOUT)
    say("ready")
    while not os.path.exists(go):
        time.sleep(0.01)
    now = (ring.getsockname(), dgram.getsockname(), spkt_name(spkt_lo), spkt_name(spkt_any))
    if now != names:
        raise RuntimeError(f"names {now}, not {names}")
    checks = [
        (ring.getsockopt(SOL_PACKET, PACKET_VERSION), TPACKET_V2, "PACKET_VERSION"),
        (ring.getsockopt(SOL_PACKET, PACKET_AUXDATA), 1, "PACKET_AUXDATA"),
        (dgram.getsockopt(SOL_PACKET, PACKET_RESERVE), 16, "PACKET_RESERVE"),
        (dgram.getsockopt(SOL_PACKET, PACKET_ORIGDEV), 1, "PACKET_ORIGDEV"),
        (dgram.getsockopt(SOL_PACKET, PACKET_FANOUT), fanout, "PACKET_FANOUT"),
        (spkt_name(spkt_lo), b"lo", "SOCK_PACKET binding"),
    ]
    for got, want, what in checks:
        if got != want:
            raise RuntimeError(f"{what}: {got!r}, not {want!r}")
    where = mapped_socket(addr)
    if where != f"socket:[{os.fstat(ring.fileno()).st_ino}]":
        raise RuntimeError(f"the ring mapping at {addr:#x} is {where!r}")
    # Dropping a membership fails unless it is there.
    ring.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, mreq(PACKET_MR_PROMISC))
    dgram.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, mreq(PACKET_MR_UNICAST, b"\x02\0\0\0\0\x07"))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dgram.settimeout(0.1)
    seen_ring = seen_dgram = False
    deadline = time.time() + 10
    while not (seen_ring and seen_dgram) and time.time() < deadline:
        payload = b"criu-rs packet %d" % time.monotonic_ns()
        tx.sendto(payload, rx.getsockname())
        time.sleep(0.05)
        seen_ring = seen_ring or ring_sees(mm, payload)
        try:
            while not seen_dgram:
                seen_dgram = payload in dgram.recv(4096)
        except TimeoutError:
            pass
    if not (seen_ring and seen_dgram):
        raise RuntimeError(f"frames seen: ring {seen_ring}, dgram socket {seen_dgram}")
    say("ok")
except Exception as e:  # noqa: BLE001 - every failure is the verdict
    say(f"FAIL {type(e).__name__}: {e}")
    sys.exit(1)
