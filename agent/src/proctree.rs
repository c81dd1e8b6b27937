//! The processes of a job, found through `/proc`: members of the job's process group, plus
//! descendants of its leader that moved to another group (e.g. with `setsid`). Zombies are ignored:
//! they hold no memory and cannot be signalled away.

use std::collections::BTreeSet;

/// The fields of `/proc/PID/stat` that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: u32,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may itself contain spaces and
/// parentheses, so the fields are read after the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { pid, state, ppid, pgrp })
}

/// Every live process on the host; processes that vanish while reading are skipped.
fn live_processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|text| parse_stat(&text))
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .collect()
}

/// The job's pids (sorted): group members and the leader's descendants.
pub(crate) fn job_pids(leader: u32) -> Vec<u32> {
    select_job(&live_processes(), leader)
}

pub(crate) fn select_job(processes: &[ProcStat], leader: u32) -> Vec<u32> {
    let mut found: BTreeSet<u32> =
        processes.iter().filter(|p| p.pgrp == leader || p.pid == leader).map(|p| p.pid).collect();
    // Grow by parent links until nothing new appears; the tree is small.
    loop {
        let before = found.len();
        for p in processes {
            if found.contains(&p.ppid) {
                found.insert(p.pid);
            }
        }
        if found.len() == before {
            return found.into_iter().collect();
        }
    }
}

/// Whether any live process is still in the group `pgid`.
pub(crate) fn group_alive(pgid: u32) -> bool {
    live_processes().iter().any(|p| p.pgrp == pgid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, pgrp: u32) -> ProcStat {
        ProcStat { pid, state: 'S', ppid, pgrp }
    }

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let text = "4242 (python3 (train) x) S 4200 4242 4242 0 -1 4194560 0 0";
        assert_eq!(parse_stat(text), Some(ProcStat { pid: 4242, state: 'S', ppid: 4200, pgrp: 4242 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn selects_group_and_escaped_descendants() {
        let processes = [
            stat(1, 0, 1),
            stat(100, 1, 100),   // leader
            stat(101, 100, 100), // child
            stat(102, 101, 300), // grandchild that called setsid
            stat(103, 102, 300), // its child
            stat(200, 1, 200),   // unrelated
            stat(104, 1, 100),   // orphaned group member
        ];
        assert_eq!(select_job(&processes, 100), [100, 101, 102, 103, 104]);
    }

    #[test]
    fn this_process_is_found() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let parsed = parse_stat(&stat).unwrap();
        assert_eq!(parsed.pid, me);
        assert!(job_pids(parsed.pgrp).contains(&me));
    }
}
