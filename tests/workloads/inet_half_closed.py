"""Half-closed TCP connections to a peer outside the tree (plugin `inet`, TCP repair).
usage: inet_half_closed.py REPORT GO PORT

Opens five connections to 127.0.0.1:PORT (the test's listener, the peer), each starting
with its name and a newline, and brings them, with the peer's help, to:
  fw1  FIN_WAIT1  our FIN queued behind data the peer does not read yet
  fw2  FIN_WAIT2  our FIN acknowledged, the peer's side still open
  cw   CLOSE_WAIT the peer's FIN received, its line "before" not read yet
  la   LAST_ACK   the peer's FIN received, ours queued behind unread data
  cl   CLOSING    both FINs crossed, ours queued behind unread data
Writes "fill NAME N" for the N bytes (byte i is i % 251) written before our FIN, "shut cl"
when the peer may shut its side of cl, "ready" once every state is reached (checked with
TCP_INFO), then after GO appears checks the states again ("states ok": the peer may go
on) and what each connection does, and writes "ok" or "FAIL reason" to REPORT.
"""
import errno
import os
import socket
import struct
import sys
import time

report, go, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
STATES = {"fw1": 4, "fw2": 5, "cw": 8, "la": 9, "cl": 11}


def say(line):
    with open(report, "a") as f:
        f.write(line + "\n")


def state(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def wait_state(s, want, what):
    end = time.time() + 10
    while state(s) != want:
        if time.time() > end:
            raise RuntimeError(f"{what}: state {state(s)}, not {want}")
        time.sleep(0.01)


def fill(s, name):
    """Writes the pattern until the send buffer is full; the count is reported."""
    s.setblocking(False)
    total = 0
    chunk = bytes(i % 251 for i in range(251 * 64))
    while True:
        try:
            # Each write starts where the pattern stands (total % 251).
            off = total % 251
            n = s.send(chunk[off:off + 251 * 60])
        except BlockingIOError:
            break
        total += n
    s.setblocking(True)
    say(f"fill {name} {total}")


def read_all(s):
    s.settimeout(30)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            return out
        out += b


try:
    socks = {}
    for name in STATES:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(name.encode() + b"\n")
        socks[name] = s
    # FIN_WAIT2: the peer reads our line and the FIN, and acknowledges both.
    socks["fw2"].shutdown(socket.SHUT_WR)
    wait_state(socks["fw2"], 5, "fw2")
    # CLOSE_WAIT: the peer sends "before" and its FIN.
    wait_state(socks["cw"], 8, "cw")
    # FIN_WAIT1: our FIN behind data the peer does not read.
    fill(socks["fw1"], "fw1")
    socks["fw1"].shutdown(socket.SHUT_WR)
    # LAST_ACK: the peer's FIN first, then ours behind data it does not read.
    wait_state(socks["la"], 8, "la")
    fill(socks["la"], "la")
    socks["la"].shutdown(socket.SHUT_WR)
    # CLOSING: ours behind unread data, then the peer's.
    fill(socks["cl"], "cl")
    socks["cl"].shutdown(socket.SHUT_WR)
    say("shut cl")
    for name, want in STATES.items():
        wait_state(socks[name], want, name)
    say("ready")
    while not os.path.exists(go):
        time.sleep(0.01)
    for name, want in STATES.items():
        if state(socks[name]) != want:
            raise RuntimeError(f"{name}: state {state(socks[name])} after restore, not {want}")
    say("states ok")
    # Our side is shut: a write fails.
    try:
        socks["fw2"].send(b"x", socket.MSG_NOSIGNAL)
        raise RuntimeError("fw2: a write after shutdown went through")
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
    got = read_all(socks["fw2"])
    if got != b"after\n":
        raise RuntimeError(f"fw2: read {got!r} after restore, not b'after\\n'")
    got = read_all(socks["cw"])
    if got != b"before\n":
        raise RuntimeError(f"cw: read {got!r}, not b'before\\n' then the end")
    socks["cw"].sendall(b"reply\n")
    socks["cw"].close()
    for name in ("fw1", "la", "cl"):
        got = read_all(socks[name])
        if got:
            raise RuntimeError(f"{name}: read {len(got)} bytes, not the end")
    say("ok")
except Exception as e:  # noqa: BLE001 - every failure is the verdict
    say(f"FAIL {type(e).__name__}: {e}")
    sys.exit(1)
