//! What the five binaries share on the command line: the original `-o <option>` form next to the
//! same options as subcommands, and turning a result into an exit code and one line on stderr.

use std::process::ExitCode;

use clap::{Args, CommandFactory, Subcommand, ValueEnum};

/// The longest wait any option takes, in seconds: 7 days (the broker's consumer timeout as
/// scripts/services.sh sets it).
pub const MAX_SECS: u64 = 7 * 24 * 3600;

/// What a binary is to do, given either way: `-o NAME` (the original PQX's form) or the subcommand
/// `NAME` (with its own `--help`). The options are one enum `O` deriving both `Subcommand` and
/// `ValueEnum`, each variant named once with `#[clap(name = "...")]`.
#[derive(Debug, Clone, Args)]
pub struct Choice<O: Subcommand + ValueEnum + Clone + Send + Sync + 'static> {
    /// What to do (the original PQX's option strings)
    #[arg(short, long, value_enum)]
    pub option: Option<O>,
    #[command(subcommand)]
    pub command: Option<O>,
}

impl<O: Subcommand + ValueEnum + Copy + Send + Sync + 'static> Choice<O> {
    /// The option given, either way.
    pub fn given(&self) -> Option<O> {
        self.option.or(self.command)
    }

    /// The option given; exits with a usage error of binary `C` when there is none.
    pub fn chosen<C: CommandFactory>(&self) -> O {
        match self.given() {
            Some(o) => o,
            None => C::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "choose what to do: -o <OPTION> or a subcommand (see --help)",
                )
                .exit(),
        }
    }
}

/// Exit code 0 on success; otherwise `<binary>: error: <message>` on stderr and exit code 1.
pub fn finish(binary: &str, result: crate::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the error quotes (a file's content, a broker's reply).
            eprintln!(
                "{binary}: error: {}",
                pqx_util::escape_control(&e.to_string())
            );
            ExitCode::FAILURE
        }
    }
}

/// Checks that `-o NAME` and the subcommand `NAME` choose the same option, for each of `names`
/// (the original PQX's strings) and no other.
#[cfg(test)]
pub(crate) fn assert_same_options<C, O>(names: &[&str], chosen: impl Fn(C) -> Option<O>)
where
    C: clap::Parser,
    O: clap::ValueEnum + PartialEq + std::fmt::Debug,
{
    let listed: Vec<String> = O::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_owned())
        .collect();
    assert_eq!(listed, names);
    for (option, name) in O::value_variants().iter().zip(names) {
        let by_flag = C::try_parse_from(["pqx", "-o", name]).map(&chosen);
        let by_subcommand = C::try_parse_from(["pqx", name]).map(&chosen);
        assert_eq!(by_flag.ok().flatten().as_ref(), Some(option), "-o {name}");
        assert_eq!(
            by_subcommand.ok().flatten().as_ref(),
            Some(option),
            "{name}"
        );
    }
}

/// The command line with `BINARY SUBCOMMAND VALUE` read as `BINARY SUBCOMMAND FLAG VALUE`: the
/// subcommands double as `-o` values, so they take no positional arguments of their own
/// (`inspector show ID`, `initiator add-host QUEUE`).
pub fn value_after(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    subcommand: &str,
    flag: &str,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    // The subcommand, or `-o SUBCOMMAND`, wherever it stands among the options.
    let Some(at) = args
        .iter()
        .skip(1)
        .position(|a| a == subcommand)
        .map(|i| i + 1)
    else {
        return args;
    };
    let value = args
        .get(at + 1)
        .filter(|a| !a.to_string_lossy().starts_with('-'));
    if value.is_some() {
        args.insert(at + 1, flag.into());
    }
    args
}

/// `BINARY completions SHELL` (bash, zsh, fish, elvish, powershell): prints the completion script
/// of `C` to standard output and returns the exit code; `None` when the command line asks for
/// something else.
pub fn completions<C: clap::CommandFactory>(
    args: &[std::ffi::OsString],
) -> Option<std::process::ExitCode> {
    use clap::ValueEnum;
    if args.get(1).is_none_or(|a| a != "completions") {
        return None;
    }
    let mut command = C::command();
    let name = command.get_name().to_owned();
    let asked = args.get(2).map(|a| a.to_string_lossy().into_owned());
    let shell = asked
        .as_deref()
        .and_then(|s| clap_complete::Shell::from_str(s, true).ok());
    let Some(shell) = shell else {
        eprintln!(
            "{name}: error: say which shell: {name} completions bash|zsh|fish|elvish|powershell{}",
            asked.map(|s| format!(" (not {s:?})")).unwrap_or_default()
        );
        return Some(std::process::ExitCode::from(2));
    };
    // Written whole, then: a reader that stops early (`| head`) is no panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
    Some(std::process::ExitCode::SUCCESS)
}
