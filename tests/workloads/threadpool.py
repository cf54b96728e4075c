# A dynamically linked, multi-threaded workload: a thread pool hashing a buffer. Each tick
# appends "tick N ok|bad threads=T pid=P" to the report file given as the first argument.
import concurrent.futures
import hashlib
import os
import sys
import threading
import time

report = sys.argv[1]
data = bytes(range(256)) * 4096
expect = hashlib.sha256(data).hexdigest()


def work(_):
    return hashlib.sha256(data).hexdigest() == expect


n = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    while True:
        ok = all(pool.map(work, range(8)))
        n += 1
        with open(report, "a") as f:
            f.write(f"tick {n} {'ok' if ok else 'bad'} threads={threading.active_count()} pid={os.getpid()}\n")
        time.sleep(0.05)
