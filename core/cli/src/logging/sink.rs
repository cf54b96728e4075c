//! The buffered log file behind `-o`/`--log-file`.
//!
//! One `write` per line (a `Mutex<File>`) was what criu did before; this buffer batches whole
//! lines instead. The rules that keep every line exactly once in the file:
//! - a line is appended whole under the lock (tracing formats an event into one buffer and
//!   writes it with one `write_all`), so lines from several threads never interleave;
//! - the buffer goes out when it holds [`CAPACITY`] bytes, at a warning or an error, and at
//!   the first line after the oldest buffered one is [`MAX_AGE`] old;
//! - before every `fork` (a `pthread_atfork` handler that keeps the lock across the fork, so
//!   the child starts with an empty, unlocked buffer) and before the engine's raw `clone3`
//!   (through [`criu_core::log_flush`]); a child that logs therefore writes only its own lines;
//! - at exit ([`flush`] from `main`), before `exec` and `process::exit`, and in a panic hook.
//!
//! Lines still buffered when criu is killed by a signal are lost (at most [`MAX_AGE`] worth,
//! or the lines since the last warning); a SIGKILL loses nothing else.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes buffered before they are written.
pub const CAPACITY: usize = 64 * 1024;

/// How long a buffered line may wait for more lines (checked when the next one comes).
pub const MAX_AGE: Duration = Duration::from_millis(50);

/// Whole lines not yet written, and where they go.
#[derive(Debug)]
pub struct Buffer<W: Write> {
    out: W,
    buf: Vec<u8>,
    /// When the oldest line now in `buf` came.
    since: Option<Instant>,
}

impl<W: Write> Buffer<W> {
    /// An empty buffer in front of `out`.
    pub fn new(out: W) -> Self {
        Buffer {
            out,
            buf: Vec::with_capacity(CAPACITY),
            since: None,
        }
    }

    /// Appends `line` (one or more whole lines); writes the buffer out when `urgent`, when
    /// it is full or when its oldest line is too old.
    pub fn push(&mut self, line: &[u8], urgent: bool, now: Instant) {
        self.buf.extend_from_slice(line);
        let since = *self.since.get_or_insert(now);
        if urgent || self.buf.len() >= CAPACITY || now.duration_since(since) >= MAX_AGE {
            self.flush();
        }
    }

    /// Writes every buffered byte. A failed write (a full disk) drops the batch, as the
    /// unbuffered writer dropped its line: logging never fails the dump.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.out.write_all(&self.buf);
            self.buf.clear();
        }
        self.since = None;
    }

    /// Bytes waiting.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The output, for tests.
    #[cfg(test)]
    pub fn out(&self) -> &W {
        &self.out
    }
}

static SINK: Mutex<Option<Buffer<File>>> = parking_lot::const_mutex(None);

/// This process's pid for the line prefix; a forked child sets its own (atfork handler).
static PID: AtomicU32 = AtomicU32::new(0);

/// The pid to print in a line's prefix.
pub fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => std::process::id(),
        p => p,
    }
}

/// Writes every buffered line now.
pub fn flush() {
    if let Some(b) = SINK.lock().as_mut() {
        b.flush();
    }
}

/// Makes `file` the log's destination and installs the fork, engine and panic hooks.
pub fn install(file: File) {
    PID.store(std::process::id(), Ordering::Relaxed);
    *SINK.lock() = Some(Buffer::new(file));
    static HOOKS: Once = Once::new();
    HOOKS.call_once(|| {
        criu_core::log_flush::set_hook(flush);
        // SAFETY: the three handlers are plain functions valid for the process's life; they
        // only lock, write and unlock SINK (see `before_fork`).
        let rc =
            unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(in_child)) };
        if rc != 0 {
            // Then forks go on without the handler: the engine's explicit flushes remain.
            eprintln!("criu: pthread_atfork failed ({rc}): log lines may repeat in children");
        }
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            prev(info);
        }));
    });
}

/// Before `fork`: writes the buffer out and keeps the lock through the fork, so no thread
/// adds a line the child would inherit and the child does not inherit a held lock.
extern "C" fn before_fork() {
    let mut guard = SINK.lock();
    if let Some(b) = guard.as_mut() {
        b.flush();
    }
    std::mem::forget(guard);
}

/// After `fork`, in the parent: releases the lock `before_fork` kept.
extern "C" fn after_fork() {
    // SAFETY: `before_fork` locked SINK on this thread and forgot its guard; nothing else
    // can unlock it, and the fork it guarded is over.
    unsafe { SINK.force_unlock() }
}

/// After `fork`, in the child: its own pid for the prefix, then the lock released.
extern "C" fn in_child() {
    PID.store(std::process::id(), Ordering::Relaxed);
    // SAFETY: as in `after_fork`: the lock is the copy `before_fork` held for this thread.
    unsafe { SINK.force_unlock() }
}

/// The `MakeWriter` the fmt layer gets: every event's line goes into [`SINK`].
#[derive(Debug, Clone, Copy)]
pub struct SinkWriter;

/// One event's writer: `urgent` for warnings and errors, written out at once.
#[derive(Debug)]
pub struct LineWriter {
    urgent: bool,
}

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(b) = SINK.lock().as_mut() {
            b.push(buf, self.urgent, Instant::now());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn lines_wait_until_full_urgent_or_old() {
        let t = Instant::now();
        let mut b = Buffer::new(Vec::new());
        b.push(b"one\n", false, t);
        b.push(b"two\n", false, at(t, 10));
        assert!(b.out().is_empty(), "two fresh debug lines wait");
        b.push(b"warn\n", true, at(t, 11));
        assert_eq!(b.out().as_slice(), b"one\ntwo\nwarn\n");
        assert_eq!(b.pending(), 0);
        b.push(b"three\n", false, at(t, 100));
        b.push(b"four\n", false, at(t, 100) + MAX_AGE);
        assert_eq!(b.out().as_slice(), b"one\ntwo\nwarn\nthree\nfour\n");
        let big = vec![b'x'; CAPACITY];
        b.push(&big, false, at(t, 200));
        assert_eq!(b.pending(), 0, "a full buffer is written");
    }

    /// The global sink: lines from threads stay whole, and the lines of a forked child and
    /// of its parent are each in the file exactly once (one test: the sink is global).
    #[test]
    fn threads_and_fork_keep_every_line_exactly_once() {
        let path = std::env::temp_dir().join(format!("criu-log-sink-{}", std::process::id()));
        let file = File::create(&path).expect("log file");
        install(file);
        let line = |who: &str, i: usize| format!("{who} line {i} {}\n", "x".repeat(i % 97));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let l = line(&format!("thread{t}"), i);
                        LineWriter { urgent: false }
                            .write_all(l.as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut w = LineWriter { urgent: false };
        w.write_all(line("parent", 0).as_bytes()).unwrap();
        // SAFETY: the child only formats, logs through the sink and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let mut w = LineWriter { urgent: false };
            for i in 0..10 {
                let _ = w.write_all(line("child", i).as_bytes());
            }
            flush();
            // SAFETY: ends the forked child without running the test harness's code.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        w.write_all(line("parent", 1).as_bytes()).unwrap();
        flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut want: Vec<String> = (0..4)
            .flat_map(|t| (0..2000).map(move |i| line(&format!("thread{t}"), i)))
            .chain((0..10).map(|i| line("child", i)))
            .chain((0..2).map(|i| line("parent", i)))
            .collect();
        let mut got: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "line count");
        assert!(got == want, "lines differ from those written");
    }

    #[test]
    fn flush_writes_once_and_empties() {
        let mut b = Buffer::new(Vec::new());
        b.push(b"a\n", false, Instant::now());
        b.flush();
        b.flush();
        assert_eq!(b.out().as_slice(), b"a\n");
    }
}
