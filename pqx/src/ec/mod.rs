//! Execution of commands: the `cmd` variants of a task ([`CmdArg`]) and the process runner that
//! starts one, streams its output line by line, enforces the consuming timeout by killing the whole
//! process group, and reports how it ended.

mod cmd;
mod run;

pub use cmd::{CmdArg, ProcessSpec};
pub use run::{run, OutputStream, RunEnd, RunReport};
