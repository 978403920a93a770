//! Execution of commands: the `cmd` variants of a task ([`Cmd`]) and how each runs. Processes are
//! started with their output read line by line as it comes (and handed to the caller, which logs
//! it), the last part of each stream kept for the record, and the consuming timeout enforced by
//! killing the whole process tree. HTTP requests are sent directly. Either way the caller gets a
//! [`RunReport`] that says how the run ended.

mod cmd;
mod guard;
mod http;
mod output;
mod process;
mod report;
mod run;
mod tree;

pub use cmd::Cmd;
pub use guard::{serve as serve_guard, Guard, GUARD_ARG};
pub use output::{Tail, MAX_LINE, TAIL_BYTES};
pub use process::{
    CannotStart, ProcessSpec, Settings, CONTAINER_ENGINE_VAR, DEFAULT_PING_COUNT, SSH_CONFIG_VAR,
};
pub use report::{OutputStream, RunEnd, RunReport};
pub use run::{run, run_guarded};

use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// Runs `cmd` on this machine to its end, until `timeout`, or until `cancel` fires, calling
/// `on_line` for each line of output. Never fails: a command that cannot start is reported as such.
pub async fn execute(
    cmd: &Cmd,
    settings: &Settings,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    if let Cmd::Http {
        method,
        url,
        headers,
        body,
    } = cmd
    {
        let request = http::Request {
            method,
            url,
            headers,
            body: body.as_deref(),
        };
        return http::send(request, timeout, cancel, on_line).await;
    }
    match cmd.to_process(settings) {
        Ok(spec) => run_guarded(&spec, settings.guard.as_ref(), timeout, cancel, on_line).await,
        Err(why) => RunReport::not_started(why.0),
    }
}
