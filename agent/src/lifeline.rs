//! A job's processes die with its agent.
//!
//! Before a job's leader execs, it forks a tiny watchdog that holds the read end of a pipe whose
//! only write end the agent keeps. The kernel closes that write end however the agent ends
//! (SIGKILL included); the watchdog then reads end-of-file and kills the job's process group. When
//! the job ends normally the agent writes one byte first, and the watchdog leaves without killing
//! anything. The watchdog sits in its own process group, so signals to the job's group (stop,
//! timeout) do not reach it and it never counts as a member of the job.
//!
//! Belt and braces for a watchdog that was itself killed: the runner records the job's group and
//! its leader's start time in a pid file, and a restarted agent kills the groups of the files it
//! finds ([`kill_leftovers`]) before it takes new leases.
//!
//! `unsafe` is allowed here only: forking in the child before exec needs raw libc calls.
#![allow(unsafe_code)]

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The agent's end of a job's lifeline. Dropping it without [`Lifeline::release`] (the agent died,
/// or abandoned the job) makes the watchdog kill the job's group.
#[derive(Debug)]
pub(crate) struct Lifeline {
    write: Option<std::fs::File>,
    read: Option<OwnedFd>,
}

impl Lifeline {
    /// Arms `cmd` (which must start its own process group) with a watchdog.
    pub(crate) fn arm(cmd: &mut tokio::process::Command) -> std::io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 just opened both descriptors and nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let read_fd = read.as_raw_fd();
        let write_fd = write.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
        // calls (getpid, fork, setpgid, close_range, read, kill, _exit).
        unsafe {
            cmd.pre_exec(move || spawn_watchdog(read_fd, write_fd));
        }
        Ok(Self { write: Some(std::fs::File::from(write)), read: Some(read) })
    }

    /// Once the job has started, the agent no longer needs the read end.
    pub(crate) fn started(&mut self) {
        self.read = None;
    }

    /// The job ended under the agent's control: tell the watchdog to leave the group alone.
    pub(crate) fn release(mut self) {
        if let Some(mut w) = self.write.take() {
            let _ = w.write_all(b"x");
        }
    }
}

/// In the job's leader-to-be (already in its own process group): forks the watchdog.
fn spawn_watchdog(read_fd: RawFd, write_fd: RawFd) -> std::io::Result<()> {
    // SAFETY: async-signal-safe libc calls in a single-threaded forked child.
    unsafe {
        let leader = libc::getpid();
        match libc::fork() {
            -1 => Err(std::io::Error::last_os_error()),
            0 => watchdog(leader, read_fd),
            _ => {
                libc::close(write_fd);
                Ok(())
            }
        }
    }
}

/// The watchdog's whole life: wait on the pipe, then kill the job's group unless told not to.
unsafe fn watchdog(leader: libc::pid_t, read_fd: RawFd) -> ! {
    // SAFETY: async-signal-safe libc calls; this process never returns into Rust code.
    unsafe {
        libc::setpgid(0, 0);
        // Keep only the pipe: in particular no other job's write end, which would keep that job's
        // watchdog waiting after its agent died.
        let fd = read_fd as libc::c_uint;
        if fd > 0 {
            libc::close_range(0, fd - 1, 0);
        }
        libc::close_range(fd + 1, libc::c_uint::MAX, 0);
        let mut byte = 0u8;
        let n = loop {
            let n = libc::read(read_fd, (&raw mut byte).cast(), 1);
            if n >= 0 || *libc::__errno_location() != libc::EINTR {
                break n;
            }
        };
        if n <= 0 {
            libc::kill(-leader, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}

/// Where the runner records a running job's group: `<work dir>/pids/<job>-<attempt>`.
pub(crate) fn pid_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("pids")
}

/// Records `leader`'s group (with its start time, so a reused pid is never mistaken for it).
pub(crate) fn record(path: &Path, leader: u32) -> std::io::Result<()> {
    let Some(start) = start_time(leader) else { return Ok(()) };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, format!("{leader} {start}\n"))
}

/// Kills the process group of every pid file left in `dir` whose leader is still the same process,
/// and removes the files. Returns the groups killed.
pub(crate) fn kill_leftovers(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut fields = text.split_whitespace();
        let leader = fields.next().and_then(|f| f.parse::<u32>().ok());
        let start = fields.next().and_then(|f| f.parse::<u64>().ok());
        if let (Some(leader), Some(start)) = (leader, start)
            && start_time(leader) == Some(start)
            && let Ok(pid) = i32::try_from(leader)
        {
            tracing::warn!(pgid = leader, file = %path.display(), "killing a job left over from an earlier agent");
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            killed.push(leader);
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Field 22 of `/proc/PID/stat`: the process's start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state is field 3, so start time (22) is the 20th field here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use super::*;

    /// Long enough for a loaded machine; the watchdog acts at once.
    const GONE_WITHIN: Duration = Duration::from_secs(2);

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| crate::proctree::parse_stat(&t))
            .is_some_and(|p| p.state != 'Z' && p.state != 'X')
    }

    fn wait_gone(pids: &[u32]) -> bool {
        let deadline = Instant::now() + GONE_WITHIN;
        while Instant::now() < deadline {
            if pids.iter().all(|p| !alive(*p)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A job whose leader starts a background child and prints its pid; returns the child process,
    /// the lifeline and the background pid.
    async fn spawn_job() -> (tokio::process::Child, Lifeline, u32) {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "sleep 300 & echo $!; wait"]).stdout(Stdio::piped()).stdin(Stdio::null()).process_group(0);
        let mut lifeline = Lifeline::arm(&mut cmd).expect("arm");
        let mut child = cmd.spawn().expect("spawn");
        lifeline.started();
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let bg = lines.next_line().await.expect("read").expect("a pid line").trim().parse().expect("pid");
        (child, lifeline, bg)
    }

    #[tokio::test]
    async fn a_dropped_lifeline_kills_the_jobs_whole_group() {
        let (mut child, lifeline, bg) = spawn_job().await;
        let leader = child.id().expect("leader pid");
        assert!(alive(leader) && alive(bg));
        // What the kernel does for a SIGKILLed agent: its write end closes.
        drop(lifeline);
        let _ = child.wait().await;
        assert!(wait_gone(&[leader, bg]), "the job's processes outlived their lifeline");
    }

    #[tokio::test]
    async fn a_released_lifeline_leaves_the_group_alone() {
        let (mut child, lifeline, bg) = spawn_job().await;
        lifeline.release();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(alive(bg), "the watchdog killed a job the agent released");
        let pgid = Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid fits"));
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }

    #[tokio::test]
    async fn leftovers_recorded_by_an_earlier_agent_are_killed_and_reused_pids_spared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = pid_dir(dir.path());
        let (mut child, lifeline, bg) = spawn_job().await;
        let leader = child.id().expect("leader pid");
        record(&pids.join("7-1"), leader).expect("record");
        // A file naming a live process with another start time: a reused pid, not our job.
        std::fs::write(pids.join("8-1"), format!("{} 1\n", std::process::id())).expect("write");
        let killed = kill_leftovers(&pids);
        assert_eq!(killed, vec![leader]);
        let _ = child.wait().await;
        assert!(wait_gone(&[leader, bg]), "leftover job still running");
        assert!(std::fs::read_dir(&pids).expect("dir").next().is_none(), "pid files are removed");
        lifeline.release();
    }
}
