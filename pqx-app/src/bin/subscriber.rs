//! The `subscriber` binary: see `pqx_app::subscriber`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::subscriber::SubscriberCli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = SubscriberCli::parse();
    let _log = pqx_util::init_logging("subscriber");
    pqx_app::cli::finish("subscriber", pqx_app::subscriber::run(cli).await)
}
