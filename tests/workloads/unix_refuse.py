"""Unix sockets a dump must refuse, and the queues it must leave as they were.

Mode "plain": only the socketpair (a dump that succeeds). Mode "pending-data": plus a
connection with data, not accepted yet by its (in-tree) listener. Mode "external": a socketpair with two queued messages, then a connection to the abstract
stream listener NAME held by the test (outside the dumped tree). Mode "flight-external":
that connection travels in a queued message (SCM_RIGHTS), held by no fd. Writes "ready" to
REPORT, waits for the file GO (the test's dump fails meanwhile), then checks that every
queued message is still there, whole, and writes "ok" (or "FAIL ...").
Usage: unix_refuse.py MODE REPORT GO [NAME]
"""

import array
import os
import socket
import sys
import time

mode, report, go = sys.argv[1:4]


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
a.send(b"first")
a.send(b"second")
held = []
if mode == "plain":
    pass
elif mode == "pending-data":
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0criu-rs-refuse-pending-%d" % os.getpid())
    srv.listen(4)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(srv.getsockname())
    c.send(b"early")
    held += [srv, c]
elif mode == "external":
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("\0" + sys.argv[4])
    held.append(c)
elif mode == "flight-external":
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("\0" + sys.argv[4])
    a.sendmsg([b"carrier"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [c.fileno()]))])
    c.close()
else:
    raise SystemExit(f"unknown mode {mode}")
say("ready")
while not os.path.exists(go):
    time.sleep(0.01)
b.setblocking(False)
try:
    got = [b.recv(100), b.recv(100)]
    if got != [b"first", b"second"]:
        raise RuntimeError(f"queue changed: {got}")
    if mode == "flight-external":
        msg, anc, _, _ = b.recvmsg(100, socket.CMSG_SPACE(4))
        if msg != b"carrier" or len(anc) != 1:
            raise RuntimeError(f"the message carrying a socket changed: {msg} {anc}")
        socket.socket(fileno=int.from_bytes(anc[0][2], "little")).close()
    if mode == "pending-data":
        conn, _ = held[0].accept()
        if conn.recv(100) != b"early":
            raise RuntimeError("the pending connection lost its data")
    try:
        extra = b.recv(100)
        raise RuntimeError(f"more queued than sent: {extra}")
    except BlockingIOError:
        pass
    say("ok")
except Exception as e:  # noqa: BLE001 - the verdict goes to the report
    say(f"FAIL {e}")
