//! The `inspector` binary: see `pqx_app::inspector`.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::inspector::InspectorCli;

// One thread: each binary does one thing at a time, and a subscriber should be small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = pqx_app::cli::completions::<InspectorCli>(&args) {
        return code;
    }
    let cli = InspectorCli::parse_from(pqx_app::inspector::args_of(args));
    pqx_util::init_logging("inspector");
    match pqx_app::inspector::run(cli).await {
        // `show --follow` exits as the command it followed did.
        Err(e @ pqx_app::Error::Followed(code)) => {
            eprintln!("inspector: {e}");
            ExitCode::from(code)
        }
        result => pqx_app::cli::finish("inspector", result),
    }
}
