#!/usr/bin/env python3
"""netlock_stream.py ADDR PORT REPORT TOTAL: the server of the netlock end-to-end test.

Accepts one connection, then sends TOTAL bytes of a counter stream (64-bit big-endian
integers 0, 1, 2, ...) while reading and checking the peer's identical stream. It reads
slowly, so that data is queued both ways whenever it is dumped. Any loss, duplication,
reordering, reset or early end of the peer's stream fails it. Writes 'ready' once
listening, then 'ok' or 'FAIL: why' to REPORT.
"""
import select
import socket
import struct
import sys
import time


def stream(pos, n):
    """Bytes [pos, pos + n) of the counter stream."""
    first, last = pos // 8, (pos + n + 7) // 8
    block = struct.pack(f">{last - first}Q", *range(first, last))
    off = pos - first * 8
    return block[off:off + n]


def say(report, line):
    with open(report, "a") as f:
        f.write(line + "\n")


def main():
    addr, port, report, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(1)
    say(report, "ready")
    conn, _ = listener.accept()
    listener.close()
    conn.setblocking(False)
    sent = got = 0
    try:
        while sent < total or got < total:
            r, w, _ = select.select([conn] if got < total else [],
                                    [conn] if sent < total else [], [], 1.0)
            if w:
                try:
                    sent += conn.send(stream(sent, min(65536, total - sent)))
                except BlockingIOError:
                    pass
            if r:
                data = conn.recv(16384)
                if not data:
                    raise RuntimeError(f"end of stream after {got} of {total} bytes")
                if data != stream(got, len(data)):
                    raise RuntimeError(f"bytes {got}..{got + len(data)} are not the stream's")
                got += len(data)
                # A slow reader: the peer's bytes queue up in this socket.
                time.sleep(0.005)
        say(report, "ok")
    except Exception as e:  # reported, the test fails on it
        say(report, f"FAIL: {e!r}")


main()
