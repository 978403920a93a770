//! Logging: human-readable lines on stderr and the same in daily files under `./logs` (or
//! `PQX_LOG_DIR`), as the original PQX did. `RUST_LOG` sets the filter (default `info`). A log
//! directory pqx makes is readable by its owner only (0700).

use std::io::IsTerminal;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Our info lines, and only warnings from the migration runner, which narrates every step, and
/// from PostgreSQL's notices ("relation ... already exists, skipping": what an idempotent
/// migration expects, not news). Nothing from lapin's channels: lapin logs every channel the
/// broker closes as an error, including the passive declares pqx makes to learn whether an
/// exchange exists; pqx reports each failure itself, with what it was doing.
const DEFAULT_FILTER: &str =
    "info,sea_orm_migration=warn,sqlx::postgres::notice=warn,lapin::channel=off";

/// Whether stderr gets colours: a terminal, unless `NO_COLOR` is set to anything but empty
/// (no-color.org).
pub fn colors_on_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

/// Sets up logging for binary `app`; log files are `<dir>/<app>.<date>.log`.
///
/// A log directory that cannot be created is reported on stderr and logging goes on to stderr only:
/// a read-only working directory must not stop a subscriber.
///
/// Each line is formatted once for both places unless stderr shows colours, and written as it is
/// logged, by the thread that logs it: writing to stderr already blocks it, and handing each line
/// to a writer thread cost a subscriber more (a wake-up of that thread per line) than the write.
pub fn init_logging(app: &str) {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let dir = std::env::var_os("PQX_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("logs"));
    let colors = colors_on_stderr();
    let stderr = || {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colors)
            .with_target(false)
            .with_filter(filter())
    };
    // The logs hold what commands print: a directory made here is its owner's only.
    if !dir.exists() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir);
    }
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(app)
        .filename_suffix("log")
        .build(&dir);
    let registry = tracing_subscriber::registry();
    let _ = match appender {
        Ok(file) if colors => {
            let file = fmt::layer()
                .with_writer(file)
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter());
            registry.with(stderr()).with(file).try_init()
        }
        Ok(file) => {
            let both = fmt::layer()
                .with_writer(std::io::stderr.and(file))
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter());
            registry.with(both).try_init()
        }
        Err(e) => {
            let init = registry.with(stderr()).try_init();
            tracing::warn!(dir = %dir.display(), error = %e, "log files disabled: cannot write the log directory");
            init
        }
    };
}
