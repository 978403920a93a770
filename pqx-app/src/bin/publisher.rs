//! The `publisher` binary: see `pqx_app::publisher`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::publisher::PublisherCli;

// One thread: each binary does one thing at a time, and a subscriber should be small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = pqx_app::cli::completions::<PublisherCli>(&args) {
        return code;
    }
    let cli = PublisherCli::parse_from(pqx_app::publisher::args_of(args));
    pqx_util::init_logging("publisher");
    pqx_app::cli::finish("publisher", pqx_app::publisher::run(cli).await)
}
