"""Shutdown states and --tcp-close across a dump (plugin `inet`).
usage: inet_close.py tcp|udp REPORT GO

tcp (CRIU's socket-tcp-close0, socket-tcp-close2, socket-dump-tcp-close; dumped and
  restored with --tcp-close): a listener, an established connection (both ends in this
  process) and a connection both ends shut for writing (CLOSE after the FINs). After the
  restore every end of both connections is closed: TCP_INFO says CLOSE, a read gives EOF,
  poll says POLLHUP, a write fails with EPIPE; the listener still accepts a new connection.
udp (CRIU's socket_udp_shutdown): two connected UDP sockets, the first shut for writing,
  the second for reading, and an unbound one shut both ways. After the restore the second
  still sends to the first, the first cannot send (EPIPE), poll shows the read shutdowns.
Writes "ready", then after GO appears "ok" or "FAIL reason" to REPORT.
"""
import errno
import os
import select
import socket
import sys
import time

mode, report, go = sys.argv[1], sys.argv[2], sys.argv[3]
TCP_CLOSE = 7


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


def state(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def check_closed(name, s):
    st = state(s)
    if st != TCP_CLOSE:
        raise AssertionError(f"{name}: TCP state {st}, not CLOSE")
    data = s.recv(8, socket.MSG_DONTWAIT)
    if data != b"":
        raise AssertionError(f"{name}: read {data!r}, not EOF")
    p = select.poll()
    p.register(s.fileno(), select.POLLHUP)
    ev = p.poll(0)
    if not ev or not ev[0][1] & select.POLLHUP:
        raise AssertionError(f"{name}: poll {ev}, no POLLHUP")
    try:
        s.send(b"x", socket.MSG_DONTWAIT)
        raise AssertionError(f"{name}: a write went through")
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise AssertionError(f"{name}: write failed with {e}, not EPIPE")


def tcp():
    lst = socket.socket()
    # As zdtm's servers: a dump with --tcp-close kills the connections for real, and the
    # end that closes first holds the port in TIME_WAIT, which only SO_REUSEADDR binds over.
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    addr = lst.getsockname()
    cli = socket.create_connection(addr)
    srv, _ = lst.accept()
    cli2 = socket.create_connection(addr)
    srv2, _ = lst.accept()
    cli2.shutdown(socket.SHUT_WR)
    srv2.shutdown(socket.SHUT_WR)
    deadline = time.time() + 10
    while state(cli2) != TCP_CLOSE or state(srv2) != TCP_CLOSE:
        if time.time() > deadline:
            raise AssertionError(f"shut connection: states {state(cli2)} {state(srv2)}")
        time.sleep(0.01)
    say("ready")
    wait_go()
    for name, s in [("client", cli), ("server", srv), ("shut client", cli2), ("shut server", srv2)]:
        check_closed(name, s)
    new = socket.create_connection(addr, timeout=5)
    acc, _ = lst.accept()
    new.sendall(b"ping")
    if acc.recv(4) != b"ping":
        raise AssertionError("new connection: no data")


def udp():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    a.shutdown(socket.SHUT_WR)
    b.shutdown(socket.SHUT_RD)
    lone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        lone.shutdown(socket.SHUT_RDWR)
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise
    b.send(b"before")
    if a.recv(16) != b"before":
        raise AssertionError("before the dump: no datagram")
    say("ready")
    wait_go()
    b.send(b"after")
    a.settimeout(5)
    if a.recv(16) != b"after":
        raise AssertionError("after the restore: no datagram")
    try:
        a.send(b"x")
        raise AssertionError("the socket shut for writing sent")
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise AssertionError(f"the socket shut for writing: {e}, not EPIPE")
    for name, s, want in [("the unbound socket shut both ways", lone, select.POLLRDHUP | select.POLLHUP),
                          ("the socket shut for reading", b, select.POLLRDHUP)]:
        p = select.poll()
        p.register(s.fileno(), select.POLLRDHUP | select.POLLHUP)
        ev = p.poll(0)
        got = ev[0][1] if ev else 0
        if got & (select.POLLRDHUP | select.POLLHUP) != want:
            raise AssertionError(f"{name}: poll events {got:#x}, want {want:#x}")


def wait_go():
    while not os.path.exists(go):
        time.sleep(0.02)


try:
    tcp() if mode == "tcp" else udp()
    say("ok")
except Exception as e:  # the verdict goes to the report
    say(f"FAIL {e!r}")
