//! The `subscriber` binary: see `pqx_app::subscriber`. Started with `pqx::exec::GUARD_ARG`, it is
//! a subscriber's guard instead (see `pqx::exec::Guard`): no runtime, no logging, a few lines read.

use std::process::ExitCode;

use clap::Parser;
use pqx_app::subscriber::{Stopped, SubscriberCli};

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == pqx::exec::GUARD_ARG)
    {
        pqx::exec::serve_guard(std::io::stdin().lock());
        return ExitCode::SUCCESS;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = pqx_app::cli::completions::<SubscriberCli>(&args) {
        return code;
    }
    let cli = SubscriberCli::parse_from(args);
    // One thread: each binary does one thing at a time, and a subscriber should be small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(subscribe(cli)),
        Err(e) => {
            eprintln!("subscriber: error: cannot start its runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn subscribe(cli: SubscriberCli) -> ExitCode {
    pqx_util::init_logging("subscriber");
    match pqx_app::subscriber::run(cli).await {
        Ok(Stopped::Cleanly) => ExitCode::SUCCESS,
        // As a shell reports a command ended by SIGINT.
        Ok(Stopped::Interrupted) => ExitCode::from(130),
        Err(e) => pqx_app::cli::finish("subscriber", Err(e)),
    }
}
