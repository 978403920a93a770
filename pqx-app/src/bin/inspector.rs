//! The `inspector` binary: see `pqx_app::inspector`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::inspector::InspectorCli;

// One thread: each binary does one thing at a time, and a subscriber should be small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = InspectorCli::parse();
    let _log = pqx_util::init_logging("inspector");
    pqx_app::cli::finish("inspector", pqx_app::inspector::run(cli).await)
}
