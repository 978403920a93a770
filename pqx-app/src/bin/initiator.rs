//! The `initiator` binary: see `pqx_app::initiator`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::initiator::InitiatorCli;

// One thread: each binary does one thing at a time, and a subscriber should be small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = pqx_app::cli::completions::<InitiatorCli>(&args) {
        return code;
    }
    let cli = InitiatorCli::parse_from(pqx_app::initiator::args_of(args));
    pqx_util::init_logging("initiator");
    pqx_app::cli::finish("initiator", pqx_app::initiator::run(cli).await)
}
