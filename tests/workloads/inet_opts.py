"""Inet socket options across a dump (plugin `inet`). usage: inet_opts.py REPORT GO

filter: a UDP socket with a classic BPF filter (SO_ATTACH_FILTER) that drops every
  datagram, and a second one whose filter passes them; after the restore both filters
  read back (SO_GET_FILTER) as attached, a datagram to the first is dropped, one to the
  second arrives.
freebind: two IPv6 UDP sockets bound to an address of no interface (2001:db8::42), which
  IP_FREEBIND allowed; the first switched IP_FREEBIND off again after bind (CRIU's
  sk-freebind-false), the second kept it. After the restore both have their name and
  their IP_FREEBIND as before.
reuseport: two TCP listeners of one port, bound with SO_REUSEPORT, the first of which
  switched it off afterwards (CRIU's socket-tcp-reuseport); after the restore both listen
  on that port with SO_REUSEPORT as before, and a new connection is accepted by one.
Writes "ready", then after GO appears "ok" or "FAIL reason" to REPORT.
"""
import ctypes
import os
import socket
import struct
import sys
import time

report, go = sys.argv[1], sys.argv[2]
SO_ATTACH_FILTER = SO_GET_FILTER = 26
IP_FREEBIND = 15
libc = ctypes.CDLL(None, use_errno=True)
DROP = [(0x06, 0, 0, 0)]  # ret #0
# ld len; jgt #1000 -> drop; ret #0xffff
PASS = [(0x80, 0, 0, 0), (0x25, 1, 0, 1000), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


def attach(s, prog):
    code = b"".join(struct.pack("=HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(buf))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def get_filter(s):
    """SO_GET_FILTER counts in instructions, which Python's getsockopt cannot tell."""
    n = ctypes.c_uint(0)
    if libc.getsockopt(s.fileno(), socket.SOL_SOCKET, SO_GET_FILTER, None, ctypes.byref(n)):
        raise OSError(ctypes.get_errno(), "SO_GET_FILTER (length)")
    buf = ctypes.create_string_buffer(8 * n.value)
    if n.value and libc.getsockopt(s.fileno(), socket.SOL_SOCKET, SO_GET_FILTER, buf, ctypes.byref(n)):
        raise OSError(ctypes.get_errno(), "SO_GET_FILTER")
    return [struct.unpack_from("=HBBI", buf.raw, 8 * i) for i in range(n.value)]


def udp6_freebind(port, keep):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    s.bind(("2001:db8::42", port))
    if not keep:
        s.setsockopt(socket.SOL_IP, IP_FREEBIND, 0)
    return s


try:
    drop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drop.bind(("127.0.0.1", 0))
    attach(drop, DROP)
    passing = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    passing.bind(("127.0.0.1", 0))
    attach(passing, PASS)
    fb_off = udp6_freebind(0, False)
    fb_on = udp6_freebind(0, True)
    ls = []
    for _ in range(2):
        l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        l.bind(("127.0.0.1", ls[0].getsockname()[1] if ls else 0))
        l.listen(4)
        ls.append(l)
    ls[0].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
    names = [s.getsockname() for s in (drop, passing, fb_off, fb_on, ls[0], ls[1])]
    say("ready")
    while not os.path.exists(go):
        time.sleep(0.01)
    if [s.getsockname() for s in (drop, passing, fb_off, fb_on, ls[0], ls[1])] != names:
        raise RuntimeError(f"names changed: {names}")
    if get_filter(drop) != DROP or get_filter(passing) != PASS:
        raise RuntimeError(f"filters: {get_filter(drop)} {get_filter(passing)}")
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.sendto(b"dropped", drop.getsockname())
    tx.sendto(b"passed", passing.getsockname())
    passing.settimeout(5)
    if passing.recv(100) != b"passed":
        raise RuntimeError("the passing filter's socket got something else")
    drop.setblocking(False)
    time.sleep(0.2)
    try:
        raise RuntimeError(f"the dropping filter let {drop.recv(100)!r} through")
    except BlockingIOError:
        pass
    got = (fb_off.getsockopt(socket.SOL_IP, IP_FREEBIND), fb_on.getsockopt(socket.SOL_IP, IP_FREEBIND))
    if got != (0, 1):
        raise RuntimeError(f"IP_FREEBIND {got}, not (0, 1)")
    got = [l.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for l in ls]
    if got != [0, 1]:
        raise RuntimeError(f"SO_REUSEPORT {got}, not [0, 1]")
    c = socket.create_connection(ls[0].getsockname(), timeout=5)
    for l in ls:
        l.setblocking(False)
    accepted = None
    for _ in range(100):
        for l in ls:
            try:
                accepted = l.accept()[0]
            except BlockingIOError:
                pass
        if accepted:
            break
        time.sleep(0.02)
    if accepted is None:
        raise RuntimeError("no listener accepted the new connection")
    accepted.sendall(b"hi")
    if c.recv(2) != b"hi":
        raise RuntimeError("the accepted connection does not carry data")
    say("ok")
except Exception as e:  # noqa: BLE001 - every failure is the verdict
    say(f"FAIL {type(e).__name__}: {e}")
    sys.exit(1)
