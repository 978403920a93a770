//! Execution of commands: the `cmd` variants of a task ([`CmdArg`]) and how each runs. Processes are
//! started with their output read line by line as it comes (and handed to the caller, which logs
//! it), the last part of each stream kept for the record, and the consuming timeout enforced by
//! killing the whole process tree. HTTP requests are sent directly. Either way the caller gets a
//! [`RunReport`] that says how the run ended.

mod cmd;
mod http;
mod output;
mod run;
mod tree;

pub use cmd::{CmdArg, ProcessSpec, Settings, CONTAINER_ENGINE_VAR, SSH_CONFIG_VAR};
pub use output::{Tail, MAX_LINE, TAIL_BYTES};
pub use run::{run, OutputStream, RunEnd, RunReport};

use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// Runs `cmd` on this machine to its end, until `timeout`, or until `cancel` fires, calling
/// `on_line` for each line of output. Never fails: a command that cannot start is reported as such.
pub async fn execute(
    cmd: &CmdArg,
    settings: &Settings,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    if let CmdArg::Http { .. } = cmd {
        return http::send(cmd, timeout, cancel, on_line).await;
    }
    match cmd.to_process(settings) {
        Ok(spec) => run(&spec, timeout, cancel, on_line).await,
        Err(e) => RunReport::not_started(e.to_string()),
    }
}
