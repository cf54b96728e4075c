#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and end-to-end tests.
# Needs root (ptrace, clone3 with set_tid); see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
# The core-only criu of the distribution packages (plugins/PACKAGING.md) lints too.
cargo clippy -p criu-cli --no-default-features --release -- -D warnings
cargo test --workspace --release
