//! The `initiator` binary: see `pqx_app::initiator`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::initiator::InitiatorCli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = InitiatorCli::parse();
    let _log = pqx_util::init_logging("initiator");
    pqx_app::cli::finish("initiator", pqx_app::initiator::run(cli).await)
}
