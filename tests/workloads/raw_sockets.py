"""Raw inet sockets across a dump (plugin `inet`). usage: raw_sockets.py REPORT GO

icmp4: a raw ICMP socket bound to 127.0.0.7 whose ICMP_FILTER blocks echo requests; after
  the restore the filter reads back and an echo request it sends to 127.0.0.7 is answered
  (the reply arrives, the request itself is filtered out).
icmp6: a raw ICMPv6 socket whose ICMPV6_FILTER passes only echo replies, IPV6_RECVPKTINFO
  on; after the restore both read back and an echo request to ::1 is answered.
hdrincl: a raw UDP socket with IP_HDRINCL, TTL and TOS set; after the restore a UDP
  datagram it builds header and all reaches a UDP socket of the workload.
others: an IPPROTO_RAW socket with IP_NODEFRAG, a raw socket of protocol 253 connected to
  127.0.0.9, a raw IPv6 UDP socket with IPV6_HDRINCL and IPV6_FREEBIND: their options and
  names read back as set.
Writes "ready", then after GO appears "ok" or "FAIL reason" to REPORT.
"""
import os
import socket
import struct
import sys
import time

report, go = sys.argv[1], sys.argv[2]
SOL_RAW, ICMP_FILTER, ICMPV6_FILTER = 255, 1, 1
IP_NODEFRAG, IPV6_HDRINCL, IPV6_FREEBIND = 22, 36, 78
ICMP4_FILTER = struct.pack("=I", 1 << 8)  # block type 8 (echo request)
# icmp6_filter: a set bit blocks; all blocked but type 129 (echo reply).
words = [0xFFFFFFFF] * 8
words[129 >> 5] &= ~(1 << (129 & 31)) & 0xFFFFFFFF
ICMP6_FILTER = struct.pack("=8I", *words)


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo4(s, ident):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"criu-rs"
    pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    s.sendto(pkt, ("127.0.0.7", 0))
    s.settimeout(5)
    data = s.recv(200)
    ihl = (data[0] & 15) * 4
    if data[ihl] != 0 or struct.unpack("!H", data[ihl + 4 : ihl + 6])[0] != ident:
        raise RuntimeError(f"icmp4: not our echo reply: {data.hex()}")


def echo6(s, ident):
    s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"criu-rs", ("::1", 0))
    s.settimeout(5)
    data = s.recv(200)
    if data[0] != 129 or struct.unpack("!H", data[4:6])[0] != ident:
        raise RuntimeError(f"icmp6: not our echo reply: {data.hex()}")


def udp_by_hand(raw, dst):
    payload = b"built by hand"
    udp = struct.pack("!HHHH", 4242, dst[1], 8 + len(payload), 0) + payload
    # version/ihl, tos, total length, id, frag, ttl, proto, checksum (the kernel's), src, dst
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton("127.0.0.1"), socket.inet_aton(dst[0]))
    raw.sendto(ip + udp, (dst[0], 0))
    return payload


try:
    icmp4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp4.bind(("127.0.0.7", 0))
    icmp4.setsockopt(SOL_RAW, ICMP_FILTER, ICMP4_FILTER)
    icmp6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    icmp6.setsockopt(socket.IPPROTO_ICMPV6, ICMPV6_FILTER, ICMP6_FILTER)
    icmp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    hdr = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    hdr.setsockopt(socket.SOL_IP, socket.IP_HDRINCL, 1)
    hdr.setsockopt(socket.SOL_IP, socket.IP_TTL, 33)
    hdr.setsockopt(socket.SOL_IP, socket.IP_TOS, 0x10)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    ipraw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    ipraw.setsockopt(socket.SOL_IP, IP_NODEFRAG, 1)
    conn = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
    conn.connect(("127.0.0.9", 7))  # port 0 would hide the peer from getpeername
    v6udp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
    v6udp.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
    v6udp.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    socks = (icmp4, icmp6, hdr, rx, ipraw, conn, v6udp)
    names = [s.getsockname() for s in socks]
    say("ready")
    while not os.path.exists(go):
        time.sleep(0.01)
    if [s.getsockname() for s in socks] != names:
        raise RuntimeError(f"names changed: {names} -> {[s.getsockname() for s in socks]}")
    if conn.getpeername() != ("127.0.0.9", 7):
        raise RuntimeError(f"peer {conn.getpeername()}")
    checks = [
        (icmp4.getsockopt(SOL_RAW, ICMP_FILTER, 4), ICMP4_FILTER, "ICMP_FILTER"),
        (icmp6.getsockopt(socket.IPPROTO_ICMPV6, ICMPV6_FILTER, 32), ICMP6_FILTER, "ICMPV6_FILTER"),
        (icmp6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO), 1, "IPV6_RECVPKTINFO"),
        (hdr.getsockopt(socket.SOL_IP, socket.IP_HDRINCL), 1, "IP_HDRINCL"),
        (hdr.getsockopt(socket.SOL_IP, socket.IP_TTL), 33, "IP_TTL"),
        (hdr.getsockopt(socket.SOL_IP, socket.IP_TOS), 0x10, "IP_TOS"),
        (ipraw.getsockopt(socket.SOL_IP, IP_NODEFRAG), 1, "IP_NODEFRAG"),
        (ipraw.getsockopt(socket.SOL_IP, socket.IP_HDRINCL), 1, "IP_HDRINCL of IPPROTO_RAW"),
        (v6udp.getsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL), 1, "IPV6_HDRINCL"),
        (v6udp.getsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND), 1, "IPV6_FREEBIND"),
        (conn.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL), 253, "SO_PROTOCOL"),
    ]
    for got, want, what in checks:
        if got != want:
            raise RuntimeError(f"{what}: {got!r}, not {want!r}")
    echo4(icmp4, 0x4242)
    echo6(icmp6, 0x4343)
    sent = udp_by_hand(hdr, rx.getsockname())
    rx.settimeout(5)
    if rx.recv(100) != sent:
        raise RuntimeError("the hand-built datagram did not arrive")
    say("ok")
except Exception as e:  # noqa: BLE001 - every failure is the verdict
    say(f"FAIL {type(e).__name__}: {e}")
    sys.exit(1)
