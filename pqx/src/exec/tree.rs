//! Killing a command's whole process tree. The command runs in a process group of its own, but a
//! script may start children in new groups or sessions (`setsid`, daemons); those are found by
//! walking /proc for the descendants of the command's process before anything is killed, because
//! once a parent dies its children are re-parented and can no longer be traced to the command.

use std::collections::{HashMap, HashSet};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// SIGKILLs `root`, its process group and every descendant, until no descendant is left (a process
/// may fork while the tree is being killed).
pub fn kill_tree(root: Pid) {
    for _ in 0..5 {
        let descendants = descendants(root);
        let _ = killpg(root, Signal::SIGKILL);
        let _ = kill(root, Signal::SIGKILL);
        for pid in &descendants {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        if descendants.is_empty() {
            return;
        }
    }
}

/// The processes below `root`, from /proc.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut seen = HashSet::new();
    let mut stack = vec![root.as_raw()];
    let mut found = Vec::new();
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(child) {
                found.push(Pid::from_raw(child));
                stack.push(child);
            }
        }
    }
    found
}

/// The parent pid from /proc/PID/stat; the command name may hold spaces and parentheses, so the
/// fields are read after its last `)`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_parent() {
        let me = std::process::id() as i32;
        let parent = parent_of(me).unwrap();
        assert!(descendants(Pid::from_raw(parent)).contains(&Pid::from_raw(me)));
    }
}
