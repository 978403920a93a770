//! Commands die with their subscriber. A subscriber killed with SIGKILL cannot kill the commands it
//! runs, and the broker hands their messages out again: without this, the same command would run
//! twice on the host at once. So each subscriber starts a guard, a small process of its own (the
//! subscriber's program, started with [`GUARD_ARG`], in a process group of its own so that a
//! Ctrl-C meant for the subscriber does not reach it), and tells it over a pipe which commands run:
//! `+PID` when one starts, `-PID` when it ended, `bye` when the subscriber exits as it should. When
//! the pipe closes without `bye` (the subscriber died), the guard kills each command's process
//! tree, as the consuming timeout does, and exits.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::unistd::Pid;

use super::tree::kill_tree;

/// The argument that makes the subscriber's program a guard.
pub const GUARD_ARG: &str = "--pqx-guard";

/// A subscriber's handle on its guard; dropping it says `bye`.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Guard {
    /// Starts a guard: this process's own program with [`GUARD_ARG`].
    pub fn start() -> std::io::Result<Self> {
        let program = std::env::current_exe()?;
        let mut child = Command::new(program)
            .arg(GUARD_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner { child, pipe })),
        })
    }

    /// The guard's pid.
    pub fn pid(&self) -> Option<u32> {
        self.inner.lock().ok().map(|inner| inner.child.id())
    }

    /// Tells the guard that command `pid` runs.
    pub fn watch(&self, pid: u32) {
        self.say(&format!("+{pid}\n"));
    }

    /// Tells the guard that command `pid` ended.
    pub fn release(&self, pid: u32) {
        self.say(&format!("-{pid}\n"));
    }

    fn say(&self, line: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        // A guard that is gone cannot be helped here; its commands still end as they would.
        if let Some(pipe) = inner.pipe.as_mut() {
            if pipe.write_all(line.as_bytes()).is_err() {
                inner.pipe = None;
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"bye\n");
        }
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guard {{ pid: {:?} }}", self.pid())
    }
}

// One guard per subscriber: two handles are equal when they are the same guard.
impl PartialEq for Guard {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Guard {}

/// A guard's life: follows `+PID`/`-PID` lines on `input` until `bye` (exit code 0, nothing
/// killed) or the end of `input` (its subscriber died: every command still running is killed with
/// its process tree). Returns how many commands it killed.
pub fn serve(input: impl BufRead) -> usize {
    let mut running = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        match line.as_bytes().first() {
            Some(b'+') => {
                if let Ok(pid) = line[1..].parse::<i32>() {
                    running.insert(pid);
                }
            }
            Some(b'-') => {
                if let Ok(pid) = line[1..].parse::<i32>() {
                    running.remove(&pid);
                }
            }
            _ if line == "bye" => return 0,
            _ => {}
        }
    }
    for pid in &running {
        kill_tree(Pid::from_raw(*pid));
    }
    running.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bye_kills_nothing_and_a_closed_pipe_kills_what_runs() {
        assert_eq!(serve("+1\n-1\nbye\n".as_bytes()), 0);
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = sleeper.id();
        let killed = serve(format!("+{pid}\n+999999999\n-999999999\n").as_bytes());
        assert_eq!(killed, 1);
        let status = sleeper.wait().unwrap();
        assert!(!status.success(), "{status:?}");
    }
}
