//! The `publisher` binary: see `pqx_app::publisher`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::publisher::PublisherCli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = PublisherCli::parse();
    let _log = pqx_util::init_logging("publisher");
    pqx_app::cli::finish("publisher", pqx_app::publisher::run(cli).await)
}
