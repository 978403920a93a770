//! Running one process: stdout and stderr are read line by line as they come (and handed to the
//! caller, which logs them), the consuming timeout and a stopping subscriber kill the whole process
//! tree so that children the command started die with it, and the report says how the run ended.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio_util::sync::CancellationToken;

use super::output::{LineSplitter, Tail};
use super::tree::kill_tree;
use super::{CannotStart, Guard, OutputStream, ProcessSpec, RunEnd, RunReport};

/// How long output is still read after the process ended, for lines a child that outlived it may
/// still hold in the pipe.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// How much of a pipe is read at a time.
const READ_SIZE: usize = 8192;

/// Runs `spec` to its end, until `timeout`, or until `cancel` fires, calling `on_line` for each
/// output line.
///
/// The process gets its own process group and no stdin. Output that is not UTF-8 is passed on with
/// replacement characters. This never fails: a process that cannot start is a [`RunEnd::NotStarted`].
pub async fn run(
    spec: &ProcessSpec,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    run_guarded(spec, None, timeout, cancel, on_line).await
}

/// [`run`], the process watched by `guard` while it runs, so that it dies if the subscriber does.
pub async fn run_guarded(
    spec: &ProcessSpec,
    guard: Option<&Guard>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let started_at = SystemTime::now();
    let child = match spawn(spec) {
        Ok(child) => child,
        Err(why) => return RunReport::not_started(why.0),
    };
    let pid = child.id();
    if let (Some(guard), Some(pid)) = (guard, pid) {
        guard.watch(pid);
    }
    let report = follow(spec, child, started_at, timeout, cancel, on_line).await;
    if let (Some(guard), Some(pid)) = (guard, pid) {
        guard.release(pid);
    }
    report
}

/// Follows a started process to its end.
async fn follow(
    spec: &ProcessSpec,
    mut child: Child,
    started_at: SystemTime,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let mut output = Output::take(&mut child);
    let end = match output
        .follow(&mut child, timeout, cancel, &mut on_line)
        .await
    {
        Ok(status) => exit_end(status, &spec.program),
        Err(end) => {
            if let Some(root) = child.id().and_then(|id| i32::try_from(id).ok()) {
                kill_tree(Pid::from_raw(root));
            }
            let _ = child.wait().await;
            end
        }
    };
    output.drain(&mut on_line).await;
    let [stdout, stderr] = output.tails();
    RunReport::ended(end, started_at, stdout, stderr)
}

/// Starts the process in a group of its own, with piped output; why not, when it cannot start.
fn spawn(spec: &ProcessSpec) -> Result<Child, CannotStart> {
    if let Some(dir) = &spec.dir {
        if !dir.is_dir() {
            let why = format!("directory {} does not exist", dir.display());
            return Err(CannotStart(why));
        }
    }
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(no_input())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.dir {
        command.current_dir(dir);
    }
    command.spawn().map_err(|e| {
        CannotStart(match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{} is not installed (not found on PATH)", spec.program)
            }
            _ => format!("{}: {e}", spec.program),
        })
    })
}

/// A child's stdin: /dev/null, opened once and duplicated for each child. `Stdio::null()` opens
/// it again for every command, and an open walks the path and passes the machine's file-open
/// checks: a measurable part of what spawning cost the subscriber, where a duplicate is one
/// `fcntl`. Opened per child, as `Stdio::null()` does, if it could not be kept.
fn no_input() -> Stdio {
    kept_dev_null()
        .and_then(|file| file.try_clone().ok())
        .map_or_else(Stdio::null, Stdio::from)
}

/// /dev/null, opened once (close-on-exec, as Rust opens every file: no child inherits it).
fn kept_dev_null() -> Option<&'static File> {
    static DEV_NULL: OnceLock<Option<File>> = OnceLock::new();
    DEV_NULL
        .get_or_init(|| File::open("/dev/null").ok())
        .as_ref()
}

/// How a process that exited by itself ended.
fn exit_end(status: std::io::Result<ExitStatus>, program: &str) -> RunEnd {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => RunEnd::Exited(code),
            (None, Some(signal)) => RunEnd::Signaled(signal),
            (None, None) => RunEnd::NotStarted("no exit status".into()),
        },
        Err(e) => RunEnd::NotStarted(format!("waiting for {program}: {e}")),
    }
}

/// A child's stdout and stderr, line by line as they come, and the tail of each for the record.
///
/// Both pipes are read by the task that waits for the child: a reader task per pipe would cost a
/// task and a channel hand-off for every line, and every command, on the subscriber's hot path.
struct Output {
    out: Pipe<ChildStdout>,
    err: Pipe<ChildStderr>,
}

impl Output {
    /// Takes the child's pipes.
    fn take(child: &mut Child) -> Self {
        Self {
            out: Pipe::new(child.stdout.take(), OutputStream::Stdout),
            err: Pipe::new(child.stderr.take(), OutputStream::Stderr),
        }
    }

    /// Passes lines on until the child exits (its status), the timeout passes or `cancel` fires
    /// (the end to report once the tree is killed).
    async fn follow(
        &mut self,
        child: &mut Child,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        on_line: &mut impl FnMut(OutputStream, &str),
    ) -> Result<std::io::Result<ExitStatus>, RunEnd> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let Self { out, err } = self;
        loop {
            // In this order: a stop or the timeout before output that never pauses; what was
            // printed before the child's end; stdout before stderr when both are ready, as a
            // command that printed to both in turn printed them.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(RunEnd::Interrupted),
                _ = pqx_util::sleep_until(deadline) => {
                    return Err(RunEnd::TimedOut(timeout.unwrap_or_default()))
                }
                n = out.read(), if out.is_open() => out.took(n, on_line),
                n = err.read(), if err.is_open() => err.took(n, on_line),
                status = child.wait() => return Ok(status),
            }
        }
    }

    /// Passes on the lines still in the pipes, waiting a little for writers that outlived the
    /// process.
    async fn drain(&mut self, on_line: &mut impl FnMut(OutputStream, &str)) {
        let until = tokio::time::Instant::now() + DRAIN_GRACE;
        let Self { out, err } = self;
        while out.is_open() || err.is_open() {
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(until) => break,
                n = out.read(), if out.is_open() => out.took(n, on_line),
                n = err.read(), if err.is_open() => err.took(n, on_line),
            }
        }
        out.close(on_line);
        err.close(on_line);
    }

    fn tails(self) -> [Tail; 2] {
        [self.out.tail, self.err.tail]
    }
}

/// One of a child's output pipes, split into lines.
struct Pipe<R> {
    reader: Option<R>,
    stream: OutputStream,
    /// Read into without zeroing first: most commands print little, and a zeroed buffer per
    /// pipe per command was a visible part of a subscriber's work.
    buf: Vec<u8>,
    splitter: LineSplitter,
    tail: Tail,
}

impl<R: AsyncRead + Unpin> Pipe<R> {
    fn new(reader: Option<R>, stream: OutputStream) -> Self {
        Self {
            reader,
            stream,
            buf: Vec::new(),
            splitter: LineSplitter::default(),
            tail: Tail::default(),
        }
    }

    fn is_open(&self) -> bool {
        self.reader.is_some()
    }

    /// Reads what the pipe holds: how many bytes, 0 once it ended.
    async fn read(&mut self) -> usize {
        let Some(reader) = &mut self.reader else {
            return 0;
        };
        self.buf.clear();
        self.buf.reserve(READ_SIZE);
        reader.read_buf(&mut self.buf).await.unwrap_or(0)
    }

    /// Passes on the lines in the `n` bytes read; closes the pipe when it ended.
    fn took(&mut self, n: usize, on_line: &mut impl FnMut(OutputStream, &str)) {
        if n == 0 {
            return self.close(on_line);
        }
        let (stream, tail) = (self.stream, &mut self.tail);
        let pass_on = |line: &[u8]| pass_on(stream, tail, on_line, line);
        self.splitter.push(&self.buf, pass_on);
    }

    /// Stops reading, passing on a last line that had no newline.
    fn close(&mut self, on_line: &mut impl FnMut(OutputStream, &str)) {
        self.reader = None;
        let (stream, tail) = (self.stream, &mut self.tail);
        self.splitter
            .finish(|line| pass_on(stream, tail, on_line, line));
    }
}

/// Hands a line to the caller and keeps it in the stream's tail.
fn pass_on(
    stream: OutputStream,
    tail: &mut Tail,
    on_line: &mut impl FnMut(OutputStream, &str),
    line: &[u8],
) {
    on_line(stream, &String::from_utf8_lossy(line));
    tail.push_line(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> CancellationToken {
        CancellationToken::new()
    }

    #[tokio::test]
    async fn cancel_interrupts_and_kills() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            trigger.cancel();
        });
        let started = std::time::Instant::now();
        let report = run(&bash("echo started; sleep 30"), None, &cancel, |_, _| {}).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(report.end, RunEnd::Interrupted);
        assert_eq!(report.exit_code(), 130);
        assert_eq!(report.stdout.text(), "started\n");
    }

    fn bash(script: &str) -> ProcessSpec {
        ProcessSpec::new("bash").with_args(["-c", script])
    }

    #[tokio::test]
    async fn every_child_reads_an_empty_stdin_and_not_the_kept_dev_null() {
        use std::os::fd::AsRawFd;
        // Twice: the second child gets the kept /dev/null as the first did. `read` fails at the
        // end of its input; a stdin that was a terminal or a pipe left open would block it. The
        // kept descriptor itself must not reach the child.
        for _ in 0..2 {
            let kept = kept_dev_null().expect("/dev/null opens").as_raw_fd();
            let script = format!(
                "if read -r line; then echo got; else echo eof; fi; \
                 [ /dev/stdin -ef /dev/null ] && echo null; \
                 [ /proc/$$/fd/{kept} -ef /dev/null ] && echo inherited {kept}; true"
            );
            let report = run(&bash(&script), None, &never(), |_, _| {}).await;
            assert_eq!(report.end, RunEnd::Exited(0), "{}", report.stderr.text());
            assert_eq!(report.stdout.text(), "eof\nnull\n");
        }
    }

    #[tokio::test]
    async fn streams_lines_and_exit_code() {
        let mut lines = Vec::new();
        let report = run(
            &bash("echo out; echo err >&2; exit 3"),
            None,
            &never(),
            |s, l| lines.push((s, l.to_owned())),
        )
        .await;
        assert_eq!(report.end, RunEnd::Exited(3));
        assert_eq!(report.summary(), "failed: exit code 3: err");
        assert!(lines.contains(&(OutputStream::Stdout, "out".into())));
        assert!(lines.contains(&(OutputStream::Stderr, "err".into())));
    }

    /// Runs `<launch> sleep 30 &` under a 500 ms timeout and checks the sleep died with the run.
    async fn timeout_kills(launch: &str) {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        let script = format!("{launch} sleep 30 & echo $! > {}; wait", marker.display());
        let limit = Duration::from_millis(500);
        let report = run(&bash(&script), Some(limit), &never(), |_, _| {}).await;
        assert_eq!(report.end, RunEnd::TimedOut(limit));
        assert_eq!(report.exit_code(), 124);
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        pqx_testkit::wait_gone(pid, 5).await.unwrap();
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        timeout_kills("").await;
    }

    #[tokio::test]
    async fn timeout_kills_children_in_other_sessions() {
        timeout_kills("setsid").await;
    }

    #[tokio::test]
    async fn lines_a_child_prints_after_the_process_ended_are_kept() {
        // The background writer keeps both pipes open after bash exits, and prints later.
        let script = "(sleep 0.2; echo late; printf 'no newline' >&2) & echo early";
        let mut lines = Vec::new();
        let report = run(&bash(script), None, &never(), |s, l| {
            lines.push((s, l.to_owned()))
        })
        .await;
        assert!(report.success(), "{}", report.summary());
        assert_eq!(report.stdout.text(), "early\nlate\n");
        assert_eq!(report.stderr.text(), "no newline\n");
        assert!(lines.contains(&(OutputStream::Stderr, "no newline".into())));
    }

    #[tokio::test]
    async fn a_writer_that_never_closes_its_pipe_does_not_hold_the_run() {
        let started = std::time::Instant::now();
        let report = run(&bash("sleep 30 & echo $!"), None, &never(), |_, _| {}).await;
        assert!(report.success(), "{}", report.summary());
        assert!(started.elapsed() < Duration::from_secs(10));
        let sleeper: i32 = report.stdout.text().trim().parse().unwrap();
        let _ = nix::sys::signal::kill(Pid::from_raw(sleeper), nix::sys::signal::Signal::SIGKILL);
    }

    #[tokio::test]
    async fn output_that_never_pauses_does_not_keep_off_the_timeout() {
        let limit = Duration::from_millis(300);
        let report = run(&bash("yes"), Some(limit), &never(), |_, _| {}).await;
        assert_eq!(report.end, RunEnd::TimedOut(limit));
        assert!(report.stdout.truncated(), "it read what was printed");
    }

    #[tokio::test]
    async fn stdout_and_stderr_printed_in_turn_are_passed_on_in_turn() {
        let script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done";
        let mut lines = Vec::new();
        run(&bash(script), None, &never(), |_, l| {
            lines.push(l.to_owned())
        })
        .await;
        assert_eq!(lines.len(), 6, "{lines:?}");
        for i in 1..=3 {
            let out = lines.iter().position(|l| *l == format!("out{i}"));
            let err = lines.iter().position(|l| *l == format!("err{i}"));
            assert!(out < err, "{lines:?}");
        }
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let report = run(
            &ProcessSpec::new("pqx-no-such-program"),
            None,
            &never(),
            |_, _| {},
        )
        .await;
        assert_eq!(
            report.summary(),
            "failed: not started: pqx-no-such-program is not installed (not found on PATH)"
        );
        assert_eq!(report.exit_code(), 127);
    }

    #[tokio::test]
    async fn bad_dir_is_reported() {
        let spec = bash("true").with_dir("/nonexistent/pqx");
        let report = run(&spec, None, &never(), |_, _| {}).await;
        assert_eq!(
            report.summary(),
            "failed: not started: directory /nonexistent/pqx does not exist"
        );
    }

    #[tokio::test]
    async fn tails_keep_output_and_summary_names_the_last_error() {
        let script = "seq 1 100000; echo first >&2; echo 'the reason' >&2; exit 2";
        let report = run(&bash(script), None, &never(), |_, _| {}).await;
        assert!(report.stdout.truncated());
        assert!(report.stdout.text().ends_with("99999\n100000\n"));
        assert_eq!(report.stderr.text(), "first\nthe reason\n");
        assert_eq!(report.summary(), "failed: exit code 2: the reason");
    }

    #[tokio::test]
    async fn huge_line_and_binary_output_do_not_break_it() {
        let mut longest = 0;
        let script = r"head -c 3000000 /dev/zero | tr '\0' x; printf '\xff\xfe\n'";
        let report = run(&bash(script), None, &never(), |_, l| {
            longest = longest.max(l.len())
        })
        .await;
        assert!(report.success(), "{}", report.summary());
        assert_eq!(longest, crate::exec::MAX_LINE);
        assert!(report.stdout.text().ends_with("\u{fffd}\u{fffd}\n"));
    }
}
