//! A `subscriber` process started as an operator starts one, that the caller can wait for (it
//! writes its `--ready-file` once it consumes its queue), signal, and look at; killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{process_cpu_secs, rss_kib, Deadline};

/// A running subscriber.
pub struct Subscriber {
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
    /// Its `--ready-file`, if it was given one.
    pub ready: Option<PathBuf>,
}

impl Subscriber {
    /// Starts `command` (a subscriber with its arguments), logging to `log`; with `ready` it waits
    /// until that ready file exists.
    pub fn start(mut command: Command, log: PathBuf, ready: Option<PathBuf>) -> Result<Self> {
        if let Some(ready) = &ready {
            command.arg("--ready-file").arg(ready);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting the subscriber")?;
        let mut sub = Self {
            child,
            log,
            ready: ready.clone(),
        };
        let Some(ready) = ready else {
            return Ok(sub);
        };
        let deadline = Deadline::after_secs(30);
        while !ready.exists() {
            if let Some(status) = sub.child.try_wait()? {
                bail!("the subscriber exited with {status}: {}", sub.log());
            }
            deadline.tick_blocking(|| format!("the subscriber did not start: {}", sub.log()))?;
        }
        Ok(sub)
    }

    /// Whether its ready file says it consumes its queue now.
    pub fn is_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(|ready| ready.exists())
    }

    /// Waits up to `secs` until its ready file says `ready` (consuming or not).
    pub async fn wait_ready(&self, ready: bool, secs: u64) -> Result<()> {
        let deadline = Deadline::after_secs(secs);
        while self.is_ready() != ready {
            deadline
                .tick(|| format!("the ready file did not become {ready}: {}", self.log()))
                .await?;
        }
        Ok(())
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.pid()).context("pid")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("sending {signal}"))
    }

    /// Sends SIGTERM and waits for it to exit; returns its exit code.
    pub fn stop(mut self) -> Result<Option<i32>> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(30)
    }

    /// Waits up to `secs` for it to exit; returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Result<Option<i32>> {
        let deadline = Deadline::after_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            deadline.tick_blocking(|| format!("the subscriber did not exit: {}", self.log()))?;
        }
    }

    /// Waits up to `secs` until its log contains `text`.
    pub async fn wait_log(&self, text: &str, secs: u64) -> Result<()> {
        let deadline = Deadline::after_secs(secs);
        while !self.log().contains(text) {
            deadline
                .tick(|| format!("the subscriber never logged {text:?}: {}", self.log()))
                .await?;
        }
        Ok(())
    }

    /// CPU seconds used so far by the subscriber itself (all its threads) and by the commands it
    /// ran and reaped.
    pub fn cpu_secs(&self) -> Result<(f64, f64)> {
        process_cpu_secs(&self.pid().to_string())
    }

    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
