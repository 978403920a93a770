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
