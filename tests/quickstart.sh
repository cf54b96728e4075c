#!/usr/bin/env bash
# The main job, end to end with the release binary: check the kernel, start a workload
# holding 64 MiB of patterned memory, checkpoint it (which kills it), restore it, and let the
# workload verify its own memory. Run as root from the repository root after
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p criu-cli -p criu-tests --bins
bin=${CARGO_TARGET_DIR:-target}/release
criu=$bin/criu

$criu check

work=$(mktemp -d /tmp/criu-quickstart.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

setsid "$bin/wl_bigmem" 64 "$work/report" </dev/null >"$work/out" 2>&1 &
pid=$!
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
