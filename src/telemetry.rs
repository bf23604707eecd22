//! Logging: `tracing` with an env filter (`RUST_LOG`), as text or JSON, written to stdout by a
//! background thread.
//!
//! Every answer writes an access-log line. Written in the request's own task, a slow stdout (a
//! full pipe, a stalled log collector) would stall the requests themselves; so lines go through
//! `tracing-appender`'s channel to a writer thread. The channel is not lossy: when the writer
//! falls behind, logging waits rather than dropping lines. At exit (`LogGuard` dropped after the
//! runtime has stopped) the writer gets one second to write what is queued (tracing-appender's
//! bound). Formatting still happens in the
//! request: with the access log at `info`, spans and events were about 13% of a cached
//! hand-out's CPU (perf, BENCHMARKS.md); `RUST_LOG=warn` removes it.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;

use crate::config::LogFormat;

/// Keeps the writer thread alive; dropping it flushes what is queued. Hold it until exit.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Installs the global subscriber; later calls are ignored (tests start many apps).
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,hyper=warn"));
    let (writer, guard) = NonBlockingBuilder::default().lossy(false).finish(std::io::stdout());
    // Colour codes only for a person at a terminal, never in a file or a log collector.
    let builder =
        fmt().with_env_filter(filter).with_target(false).with_ansi(std::io::stdout().is_terminal()).with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    LogGuard { _writer: guard }
}
