//! The floor set by the work itself: how many `bash -c true` a second this machine can spawn and
//! reap from Rust, one or two at a time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use pqx_testkit::process_cpu_secs;

/// Spawns and waits for `n` runs of `bash -c true` on each of `parallel` threads; returns runs/s
/// and the microseconds of CPU each run cost (the children's, as reaped).
pub fn spawn_rate(n: usize, parallel: usize) -> Result<(f64, f64)> {
    let (_, children_before) = process_cpu_secs("self")?;
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
    let runs = (n * parallel) as f64;
    let rate = runs / started.elapsed().as_secs_f64();
    let (_, children_after) = process_cpu_secs("self")?;
    Ok((rate, (children_after - children_before) * 1e6 / runs))
}

/// Milliseconds from just before each of `n` spawns of `bash -c 'echo $EPOCHREALTIME'` from Rust to
/// the moment bash reads its clock: the part of publish-to-start latency that is the spawn alone.
pub fn spawn_latencies_ms(n: usize) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let before = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
        let out = Command::new("bash")
            .args(["-c", "echo $EPOCHREALTIME"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let started: f64 = text
            .trim()
            .parse()
            .with_context(|| format!("bash printed {text:?}, not a time"))?;
        latencies.push((started - before) * 1000.0);
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(latencies)
}
