"""Fds in flight in unix socket queues (SCM_RIGHTS), for the unix_scm test.

Queues on a datagram socketpair (a -> b), each message carrying fds that no task holds
any more once sent: a pipe with data (both ends closed here), a regular file at offset 4,
a stream socket whose peer (held here) queued two messages on it, a socketpair travelling
whole (one end with data queued from the other), b itself, a listening socket with a
connection not accepted yet (its client held here) and one end x of a socketpair; on a
stream socketpair (s -> t) a message carrying a seqpacket socket whose peer was closed
after queueing a record, and x's peer y (the pair travels in two queues); a file queued
on an unbound datagram socket whose sender closed. Then b refuses
fds (SO_PASSRIGHTS 0, where the kernel has it). Writes "ready" to
REPORT, waits for the file GO (the test dumps, kills and restores meanwhile), then
receives every message and checks each fd, and writes "ok" (or "FAIL ...").
Usage: unix_scm.py REPORT GO DIR
"""

import array
import os
import socket
import sys
import time

report, go, work = sys.argv[1:4]
SO_PASSRIGHTS = 83


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


def send_fds(sock, data, fds):
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def recv_fds(sock, size=100):
    msg, anc, flags, _ = sock.recvmsg(size, socket.CMSG_SPACE(4 * 16))
    if flags & socket.MSG_CTRUNC:
        raise RuntimeError(f"control data truncated on {msg!r}")
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data)
    return msg, list(fds)


def expect(what, got, want):
    if got != want:
        raise RuntimeError(f"{what}: got {got!r}, want {want!r}")


a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
s, t = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.send(b"before")

r, w = os.pipe()
os.write(w, b"through the pipe")
send_fds(a, b"pipe", [r])
os.close(r)
os.close(w)

path = os.path.join(work, "data.txt")
with open(path, "w") as f:
    f.write("0123456789")
fd = os.open(path, os.O_RDONLY)
os.lseek(fd, 4, os.SEEK_SET)
send_fds(a, b"file", [fd])
os.close(fd)

held, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
held.send(b"inner-1")
held.send(b"inner-2")
send_fds(a, b"socket", [inner.fileno()])
inner.close()

e, g = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
g.send(b"pair-data")
send_fds(a, b"pair", [e.fileno(), g.fileno()])
e.close()
g.close()

send_fds(a, b"itself", [b.fileno()])

srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind("\0criu-rs-scm-%d" % os.getpid())
srv.listen(4)
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.connect(srv.getsockname())
send_fds(a, b"listener", [srv.fileno()])
srv.close()

x, y = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
y.send(b"split-pair")
send_fds(a, b"x", [x.fileno()])
x.close()

q, lone = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
q.send(b"last words")
q.close()
s.send(b"plain")
send_fds(s, b"seqpacket", [lone.fileno()])
lone.close()
send_fds(s, b"y", [y.fileno()])
y.close()

# An unbound datagram socket whose only sender closed, a message with an fd queued.
orphan, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
fd = os.open(path, os.O_RDONLY)
send_fds(sender, b"orphan", [fd])
os.close(fd)
sender.close()

try:
    b.setsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS, 0)
    refuses = True
except OSError:
    refuses = False
say("ready")
while not os.path.exists(go):
    time.sleep(0.01)

try:
    b.setblocking(False)
    t.setblocking(False)
    expect("first datagram", recv_fds(b), (b"before", []))

    msg, fds = recv_fds(b)
    expect("pipe message", (msg, len(fds)), (b"pipe", 1))
    expect("pipe data", os.read(fds[0], 100), b"through the pipe")
    expect("pipe end", os.read(fds[0], 100), b"")

    msg, fds = recv_fds(b)
    expect("file message", (msg, len(fds)), (b"file", 1))
    expect("file offset", os.lseek(fds[0], 0, os.SEEK_CUR), 4)
    expect("file data", os.read(fds[0], 100), b"456789")

    msg, fds = recv_fds(b)
    expect("socket message", (msg, len(fds)), (b"socket", 1))
    sk = socket.socket(fileno=fds[0])
    sk.setblocking(False)
    expect("inner queue", sk.recv(100), b"inner-1inner-2")
    sk.send(b"back")
    expect("inner peer", held.recv(100), b"back")

    msg, fds = recv_fds(b)
    expect("pair message", (msg, len(fds)), (b"pair", 2))
    e, g = socket.socket(fileno=fds[0]), socket.socket(fileno=fds[1])
    e.setblocking(False)
    expect("pair queue", e.recv(100), b"pair-data")
    g.send(b"again")
    expect("pair connected", e.recv(100), b"again")

    msg, fds = recv_fds(b)
    expect("itself message", (msg, len(fds)), (b"itself", 1))
    expect("itself", os.fstat(fds[0]).st_ino, os.fstat(b.fileno()).st_ino)

    msg, fds = recv_fds(b)
    expect("listener message", (msg, len(fds)), (b"listener", 1))
    srv = socket.socket(fileno=fds[0])
    srv.settimeout(5)
    conn, _ = srv.accept()
    client.send(b"hello")
    expect("pending connection", conn.recv(100), b"hello")

    msg, fds = recv_fds(b)
    expect("x message", (msg, len(fds)), (b"x", 1))
    x = socket.socket(fileno=fds[0])
    x.setblocking(False)

    # A read takes the writes before the one with fds along with it.
    msg, fds = recv_fds(t)
    expect("stream message", (msg, len(fds)), (b"plainseqpacket", 1))
    lone = socket.socket(fileno=fds[0])
    lone.setblocking(False)
    expect("lone record", lone.recv(100), b"last words")
    expect("lone end", lone.recv(100), b"")

    msg, fds = recv_fds(t)
    expect("y message", (msg, len(fds)), (b"y", 1))
    y = socket.socket(fileno=fds[0])
    expect("split pair queue", x.recv(100), b"split-pair")
    y.send(b"reply")
    expect("split pair connected", x.recv(100), b"reply")

    orphan.setblocking(False)
    msg, fds = recv_fds(orphan)
    expect("orphan message", (msg, len(fds)), (b"orphan", 1))
    expect("orphan's file", os.read(fds[0], 4), b"0123")

    try:
        extra = b.recv(100)
        raise RuntimeError(f"more queued than sent: {extra!r}")
    except BlockingIOError:
        pass
    if refuses:
        expect("SO_PASSRIGHTS", b.getsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS), 0)
        try:
            send_fds(a, b"refused", [a.fileno()])
            raise RuntimeError("b accepted fds after the restore")
        except PermissionError:
            pass
    say("ok")
except Exception as ex:  # noqa: BLE001 - the verdict goes to the report
    say(f"FAIL {ex}")
