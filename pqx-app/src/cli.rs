//! What the five binaries share on the command line: the original `-o <option>` form next to the
//! same options as subcommands, and turning a result into an exit code and one line on stderr.

use std::process::ExitCode;

use clap::CommandFactory;

/// The option chosen with `-o` or as a subcommand; exits with a usage error when neither is given.
pub fn chosen<C: CommandFactory, O: Copy>(option: Option<O>, subcommand: Option<O>) -> O {
    match option.or(subcommand) {
        Some(o) => o,
        None => C::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "choose what to do: -o <OPTION> or a subcommand (see --help)",
            )
            .exit(),
    }
}

/// Exit code 0 on success; otherwise `<binary>: error: <message>` on stderr and exit code 1.
pub fn finish(binary: &str, result: crate::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Checks that every `-o` value of `O` is a subcommand of `C` and the other way round.
#[cfg(test)]
pub(crate) fn assert_option_names<C: CommandFactory, O: clap::ValueEnum>() {
    let mut options: Vec<String> = O::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_owned())
        .collect();
    let mut subcommands: Vec<String> = C::command()
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .filter(|name| name != "help")
        .collect();
    options.sort();
    subcommands.sort();
    assert_eq!(options, subcommands);
}
