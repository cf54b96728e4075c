//! A hook to push criu's buffered log lines out before a fork and before a process ends
//! without unwinding.
//!
//! The command line buffers its log file (one `write` per batch of lines, not per line), so
//! a forked child would otherwise inherit unwritten lines and write them a second time when
//! it flushes its own, and a child that leaves with `process::exit` would lose its own. The
//! buffer lives in the CLI; the engine only knows this hook, which the CLI sets once.

use std::sync::OnceLock;

static HOOK: OnceLock<fn()> = OnceLock::new();

/// Installs `f` as the flush function (the first call wins; later ones are ignored).
pub fn set_hook(f: fn()) {
    let _ = HOOK.set(f);
}

/// Writes out every buffered log line now (nothing when no hook is set: unbuffered logs).
/// Call it before `clone3`/`fork` in the parent, and in a child before it reports its
/// result to a parent that may kill it, and before `process::exit`.
pub fn flush() {
    if let Some(f) = HOOK.get() {
        f();
    }
}
