//! Log output: CRIU's verbosity levels mapped onto tracing.
//!
//! Every line carries the time since start, the pid of the criu process and the component
//! (the tracing target, i.e. the module). Level filtering happens at the call site, so a
//! disabled level costs no formatting on hot paths.
//!
//! A log file is written through a buffer ([`sink`]): whole lines are appended under a lock
//! (lines from threads stay whole) and go out in one `write` when the buffer fills, at a
//! warning or an error, when the oldest buffered line is older than [`sink::MAX_AGE`], before
//! every fork (a `pthread_atfork` handler, and [`criu_core::log_flush`] before the engine's
//! raw `clone3`), at exit and on panic. stderr stays unbuffered.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub(crate) mod sink;

pub(crate) use sink::flush;

/// Maps CRIU's -v0..-v4 onto a tracing level; `None` means no output at all.
pub fn level_for(verbosity: u8) -> Option<Level> {
    match verbosity {
        0 => None,
        1 => Some(Level::ERROR),
        2 => Some(Level::WARN),
        3 => Some(Level::INFO),
        4 => Some(Level::DEBUG),
        _ => Some(Level::TRACE),
    }
}

/// Formats `(elapsed) pid component: LEVEL message fields`, like CRIU's `(00.000123)` prefix;
/// the pid is the writing process's (a forked child's own).
struct CriuFormat {
    start: Instant,
}

impl<S, N> FormatEvent<S, N> for CriuFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let elapsed = self.start.elapsed();
        let meta = event.metadata();
        write!(
            writer,
            "({:02}.{:06}) {} {}: {}: ",
            elapsed.as_secs(),
            elapsed.subsec_micros(),
            sink::pid(),
            meta.target(),
            meta.level()
        )?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{}", span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                write!(writer, ": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

static TO_FILE: AtomicBool = AtomicBool::new(false);

/// Whether log lines go to a file (then the final error is logged there too, beside stderr).
pub fn to_file() -> bool {
    TO_FILE.load(Ordering::Relaxed)
}

/// Installs the global subscriber: to `log_file` when given (created 0600, truncated as
/// CRIU does),
/// else to stderr.
pub fn init(verbosity: u8, log_file: Option<&Path>) -> Result<()> {
    let Some(level) = level_for(verbosity) else {
        return Ok(());
    };
    let format = CriuFormat {
        start: Instant::now(),
    };
    let builder = tracing_subscriber::fmt().with_max_level(level);
    match log_file {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            sink::install(file);
            builder
                .with_ansi(false)
                .event_format(format)
                .with_writer(sink::SinkWriter)
                .init();
            TO_FILE.store(true, Ordering::Relaxed);
        }
        None => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .event_format(format)
                .with_writer(std::io::stderr)
                .init();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_criu() {
        assert_eq!(level_for(0), None);
        assert_eq!(level_for(1), Some(Level::ERROR));
        assert_eq!(level_for(2), Some(Level::WARN));
        assert_eq!(level_for(4), Some(Level::DEBUG));
    }
}
