//! What /proc says of processes: whether one is gone, the CPU and memory a process used, the command
//! lines of all (to look for secrets).

use anyhow::{bail, Context, Result};

use crate::Deadline;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// Waits up to `secs` for process `pid` to be gone, or a zombie (which nothing will run again).
pub async fn wait_gone(pid: i32, secs: u64) -> Result<()> {
    let deadline = Deadline::after_secs(secs);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            return Ok(());
        }
        deadline
            .tick(|| format!("process {pid} is still alive: {stat}"))
            .await?;
    }
}

/// CPU seconds used so far by process `pid` (`self` for this one), all its threads, and by the
/// children it reaped.
pub fn process_cpu_secs(pid: &str) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .context("/proc stat without a command name")?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    let [utime, stime, cutime, cstime] = fields[..] else {
        bail!("/proc/{pid}/stat is too short");
    };
    Ok((
        (utime + stime) as f64 / TICKS,
        (cutime + cstime) as f64 / TICKS,
    ))
}

/// CPU seconds this process's live threads have run, to the nanosecond (from each thread's
/// schedstat): for figures too small for the 10 ms ticks of [`process_cpu_secs`]. Threads that
/// ended are not counted.
pub fn threads_cpu_secs() -> Result<f64> {
    let ran = |stat: &str| stat.split_whitespace().next()?.parse().ok();
    Ok(threads_sum("schedstat", ran)? as f64 / 1e9)
}

/// Context switches (voluntary and not) of this process's live threads so far.
pub fn threads_switches() -> Result<u64> {
    let switches = |status: &str| {
        let count = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].trim().parse().ok()
        };
        Some(count("voluntary_ctxt_switches:")? + count("nonvoluntary_ctxt_switches:")?)
    };
    threads_sum("status", switches)
}

/// The sum over this process's live threads of the count `pick` reads in each one's `file`.
fn threads_sum(file: &str, pick: impl Fn(&str) -> Option<u64>) -> Result<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join(file);
        // A thread that ended since the listing has no file any more: nothing to count.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        sum += pick(&text).with_context(|| format!("{} has no count", path.display()))?;
    }
    Ok(sum)
}

/// CPU seconds all cores spent busy since boot.
pub fn busy_cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy.
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(busy as f64 / TICKS)
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// The proportional set size of process `pid` in KiB: its memory, with each page it shares
/// counted as its share (code shared by many processes counted once over all of them).
pub fn pss_kib(pid: u32) -> Result<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The value of the `field` line (`Name:   123 kB`) of a /proc file.
fn kib_field(path: &str, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in {path}"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("{field} value in {path}"))?
        .parse()?)
}

/// The pids of the children of process `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The command lines of all processes, arguments joined by spaces.
pub fn all_cmdlines() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn threads_cpu_counts_the_work_of_this_thread_in_seconds() {
        let before = threads_cpu_secs().unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let ran = threads_cpu_secs().unwrap() - before;
        // 100 ms of spinning, of which a busy machine may give this thread less, never more.
        assert!((0.01..0.5).contains(&ran), "counted {ran} s");
    }

    #[test]
    fn threads_switches_counts_each_sleep() {
        let before = threads_switches().unwrap();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let switched = threads_switches().unwrap() - before;
        assert!(switched >= 20, "counted {switched} switches for 20 sleeps");
    }
}
