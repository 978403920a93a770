//! The floor set by the work itself: how many `bash -c true` a second this machine can spawn and
//! reap from Rust, one or two at a time.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Result};

/// Spawns and waits for `n` runs of `bash -c true` on each of `parallel` threads; returns runs/s.
pub fn spawn_rate(n: usize, parallel: usize) -> Result<f64> {
    let started = Instant::now();
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            std::thread::spawn(move || -> Result<()> {
                for _ in 0..n {
                    let status = Command::new("bash")
                        .args(["-c", "true"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()?;
                    if !status.success() {
                        bail!("bash -c true failed");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        match w.join() {
            Ok(r) => r?,
            Err(_) => bail!("a spawning thread panicked"),
        }
    }
    Ok((n * parallel) as f64 / started.elapsed().as_secs_f64())
}
