//! The `subscriber` binary: see `pqx_app::subscriber`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::subscriber::{Stopped, SubscriberCli};

// One thread: each binary does one thing at a time, and a subscriber should be small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = SubscriberCli::parse();
    let _log = pqx_util::init_logging("subscriber");
    match pqx_app::subscriber::run(cli).await {
        Ok(Stopped::Cleanly) => ExitCode::SUCCESS,
        // As a shell reports a command ended by SIGINT.
        Ok(Stopped::Interrupted) => ExitCode::from(130),
        Err(e) => pqx_app::cli::finish("subscriber", Err(e)),
    }
}
