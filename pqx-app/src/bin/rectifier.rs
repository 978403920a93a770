//! The `rectifier` binary: see `pqx_app::rectifier`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::rectifier::RectifierCli;

// One thread: each binary does one thing at a time, and a subscriber should be small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = pqx_app::cli::completions::<RectifierCli>(&args) {
        return code;
    }
    let cli = RectifierCli::parse_from(pqx_app::rectifier::args_of(args));
    pqx_util::init_logging("rectifier");
    pqx_app::cli::finish("rectifier", pqx_app::rectifier::run(cli).await)
}
