#!/usr/bin/env bash
# The main job, end to end with the release binary: check the kernel, start a workload
# holding 64 MiB of patterned memory, checkpoint it (which kills it), restore it, and let the
# workload verify its own memory. Then the same with two multi-threaded, dynamically linked
# programs that check themselves as they run: python3 with a thread pool and a Rust tokio
# runtime. Run as root from the repository root after `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p criu-cli -p criu-tests --bins
bin=${CARGO_TARGET_DIR:-target}/release
criu=$bin/criu

$criu check

work=$(mktemp -d /tmp/criu-quickstart.XXXXXX)
# Every workload pid ever started or restored: killed by pid on exit, whatever happened.
pid=
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
# Kills workload $1 and waits (up to 5 s) until its pid is free.
end() {
    kill -9 "$1" 2>/dev/null || true
    for _ in $(seq 500); do [ -e "/proc/$1" ] || return 0; sleep 0.01; done
    echo "pid $1 still there"; exit 1
}
# Waits (up to 10 s) until FILE has more than N lines.
wait_lines() {
    for _ in $(seq 200); do
        [ "$(wc -l 2>/dev/null <"$1" || echo 0)" -gt "$2" ] && return 0
        sleep 0.05
    done
    echo "no progress in $1"; exit 1
}
# Dumps $pid (which kills it), restores it detached at the same pid, and checks that its
# REPORT keeps growing with "ok" lines and no "FAIL".
round_trip() {
    local name=$1 report=$2 images="$work/images-$1"
    wait_lines "$report" 20
    mkdir "$images"
    $criu dump -t "$pid" -D "$images" -o dump.log
    for _ in $(seq 500); do [ -e "/proc/$pid" ] || break; sleep 0.01; done
    local before
    before=$(wc -l <"$report")
    $criu restore -D "$images" -d -o restore.log --pidfile restored.pid
    [ "$(cat "$images/restored.pid")" = "$pid" ] || { echo "$name restored at another pid"; exit 1; }
    wait_lines "$report" $((before + 20))
    ! grep -q FAIL "$report" || { grep FAIL "$report"; exit 1; }
    echo "$name: $(tail -n 1 "$report")"
    end "$pid"
    pid=
}
trap cleanup EXIT

setsid "$bin/wl_bigmem" 64 "$work/report" </dev/null >"$work/out" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do grep -q ready "$work/out" 2>/dev/null && break; sleep 0.1; done
echo "workload $pid ready"

mkdir "$work/images"
$criu dump -t "$pid" -D "$work/images" -v4 -o dump.log
echo "dumped into $work/images: $(ls "$work/images" | wc -l) files"
for _ in $(seq 500); do [ -e "/proc/$pid" ] || break; sleep 0.01; done

$criu restore -D "$work/images" -d -v4 -o restore.log --pidfile restored.pid
[ "$(cat "$work/images/restored.pid")" = "$pid" ] || { echo "restored at another pid"; exit 1; }
kill -USR1 "$pid"
for _ in $(seq 100); do [ -s "$work/report" ] && break; sleep 0.1; done
echo "restored workload says: $(cat "$work/report")"
grep -q '^ok ' "$work/report"
echo "checkpoint/restore OK"
end "$pid"

# python3: four threads of a pool, each appending its own counter, checked for gaps.
cat >"$work/pool.py" <<'PY'
import sys, threading, time
from concurrent.futures import ThreadPoolExecutor
report, lock, seen = sys.argv[1], threading.Lock(), {}
def work(k):
    n = 0
    while True:
        n += 1
        time.sleep(0.05)
        with lock:
            if seen.get(k, 0) != n - 1:
                line = f"FAIL thread {k}: {seen.get(k)} then {n}"
            else:
                line = f"thread {k} n={n} ok"
            seen[k] = n
            with open(report, "a") as f:
                print(line, file=f)
with ThreadPoolExecutor(4) as pool:
    for k in range(4):
        pool.submit(work, k)
PY
setsid python3 "$work/pool.py" "$work/py-report" </dev/null >/dev/null 2>&1 &
pid=$!
pids+=("$pid")
disown
round_trip python3 "$work/py-report"

# A Rust program on a multi-threaded tokio runtime (epoll, eventfd waker, timers, pipes).
setsid "$bin/wl_tokio" "$work/tokio-report" </dev/null >/dev/null 2>&1 &
pid=$!
pids+=("$pid")
disown
round_trip tokio "$work/tokio-report"
echo "python3 and tokio checkpoint/restore OK"
