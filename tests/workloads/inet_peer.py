"""Inet sockets with a peer outside the tree, or a connection not accepted yet (plugin
`inet`). usage: inet_peer.py MODE REPORT GO [PORT]

outside: connects to PORT (a listener of the test, outside the dumped tree), leaves the
  bytes the test sent unread until GO appears, then echoes every line it reads, upper-cased,
  until "bye".
inflight: holds a listener and a client connected to it but not accepted; after GO, a new
  connection to the (restored) listener is accepted and must be that new one.
Writes "ready" when set up, then "ok" or "FAIL reason" to REPORT.
"""
import os
import socket
import sys
import time

mode, report, go = sys.argv[1:4]


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


def wait_go():
    while not os.path.exists(go):
        time.sleep(0.01)


try:
    if mode == "outside":
        s = socket.create_connection(("127.0.0.1", int(sys.argv[4])))
        say("ready")
        wait_go()
        f = s.makefile("rwb", buffering=0)
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("EOF from the test")
            if line == b"bye\n":
                break
            s.sendall(line.upper())
        say("ok")
    elif mode == "inflight":
        lsk = socket.socket()
        lsk.bind(("127.0.0.1", 0))
        lsk.listen(4)
        pending = socket.create_connection(lsk.getsockname())
        say("ready")
        wait_go()
        fresh = socket.create_connection(lsk.getsockname(), timeout=5)
        lsk.settimeout(5)
        a, peer = lsk.accept()
        if peer != fresh.getsockname():
            raise RuntimeError(f"accepted {peer}, want the new {fresh.getsockname()}")
        fresh.sendall(b"hello")
        if a.recv(5) != b"hello":
            raise RuntimeError("no hello on the accepted connection")
        say("ok")
    else:
        raise RuntimeError(f"mode {mode}")
except Exception as e:  # the verdict goes to the report
    say(f"FAIL {e!r}")
    sys.exit(1)
