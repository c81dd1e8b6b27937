//! The chaos bench's verdict on what it saw: pure functions over the runs the coordinator reports,
//! the logs it kept and the ledger each job wrote itself. Nothing here does I/O.
//!
//! A job of the bench appends to its own ledger file (one per job key, shared by every attempt):
//! `start PID NS AGENT ATTEMPT`, then `tick PID NS` after each step, then `end PID NS` when it
//! finished or `stop PID NS` when it was told to stop. The ledger is the job's own account, so a job
//! that ran on two agents at once is seen even when the coordinator's records say otherwise.

use std::collections::BTreeMap;

/// The one failure a restart may cause: the job's leases expired `--max-attempts` times.
pub const AGENT_LOST: &str = "agent lost after";

/// What the coordinator reports of one run, and the logs and metrics it kept.
#[derive(Debug, Clone, Default)]
pub struct RunSeen {
    pub id: u64,
    pub state: String,
    pub error: String,
    /// The job's error (the bench's runs have one job).
    pub job_error: String,
    pub attempts: u32,
    /// `(seq, text)` of every stored log line of the job.
    pub lines: Vec<(u64, String)>,
    /// Steps of the job's stored loss curve, in order.
    pub loss_steps: Vec<u64>,
    /// `(name, sha256)` of the job's artifacts.
    pub artifacts: Vec<(String, String)>,
}

/// One job key: whether its submit was acknowledged, the run found for it, and its ledger text.
#[derive(Debug, Clone, Default)]
pub struct KeySeen {
    pub key: String,
    pub acknowledged: bool,
    pub run: Option<RunSeen>,
    pub ledger: String,
    /// The sha256 of the artifact the job writes (its key).
    pub artifact: String,
}

/// What a succeeded job must have left: `steps` log lines and loss points (and its artifact).
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub steps: u64,
}

/// The tally. Every `Vec<String>` holds one sentence per defect, naming the key and run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub acknowledged: usize,
    /// Runs stored for a submit whose answer was lost (the submit errored, the run exists).
    pub stored_unacknowledged: usize,
    pub succeeded: usize,
    /// Runs that failed `agent lost after N attempts`: a lease outlived, not a false failure.
    pub agent_lost: usize,
    /// Jobs that ran more than once, one after the other (an attempt lost with its agent).
    pub reexecuted: usize,
    pub losses: Vec<String>,
    pub not_terminal: Vec<String>,
    pub false_failures: Vec<String>,
    pub double_runs: Vec<String>,
    pub incomplete: Vec<String>,
}

impl Tally {
    pub fn defects(&self) -> usize {
        self.losses.len()
            + self.not_terminal.len()
            + self.false_failures.len()
            + self.double_runs.len()
            + self.incomplete.len()
    }
}

/// Judges every key.
pub fn tally(keys: &[KeySeen], expect: &Expect) -> Tally {
    let mut t = Tally::default();
    for k in keys {
        if k.acknowledged {
            t.acknowledged += 1;
        }
        let runs = intervals(&k.ledger);
        if let Some(sentence) = overlap(&k.key, &runs) {
            t.double_runs.push(sentence);
        } else if runs.len() > 1 {
            t.reexecuted += 1;
        }
        let Some(run) = &k.run else {
            if k.acknowledged {
                t.losses.push(format!("{}: acknowledged, but the coordinator has no such run", k.key));
            }
            continue;
        };
        if !k.acknowledged {
            t.stored_unacknowledged += 1;
        }
        let name = format!("{} (run {})", k.key, run.id);
        match run.state.as_str() {
            "succeeded" => {
                t.succeeded += 1;
                if let Some(why) = incomplete(run, expect, &k.artifact) {
                    t.incomplete.push(format!("{name}: {why}"));
                }
            }
            "failed" if run.job_error.starts_with(AGENT_LOST) => t.agent_lost += 1,
            "failed" | "cancelled" => {
                let why = if run.job_error.is_empty() { &run.error } else { &run.job_error };
                t.false_failures.push(format!("{name}: {} after {} attempts: {why}", run.state, run.attempts));
            }
            other => t.not_terminal.push(format!("{name}: still {other}")),
        }
    }
    t
}

/// One attempt's life as its ledger tells it: `[start, last sign of life]` in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub pid: u64,
    pub agent: String,
    pub start_ns: u128,
    pub last_ns: u128,
}

/// The attempts a ledger records, by start time. A line cut short by a kill is skipped.
pub fn intervals(ledger: &str) -> Vec<Interval> {
    let mut by_pid: BTreeMap<u64, Interval> = BTreeMap::new();
    for line in ledger.lines() {
        let mut f = line.split_whitespace();
        let (Some(kind), Some(pid), Some(ns)) = (f.next(), f.next(), f.next()) else { continue };
        let (Ok(pid), Ok(ns)) = (pid.parse::<u64>(), ns.parse::<u128>()) else { continue };
        match kind {
            "start" => {
                let agent = f.next().unwrap_or("?").to_owned();
                by_pid.insert(pid, Interval { pid, agent, start_ns: ns, last_ns: ns });
            }
            "tick" | "end" | "stop" => {
                if let Some(i) = by_pid.get_mut(&pid) {
                    i.last_ns = i.last_ns.max(ns);
                }
            }
            _ => {}
        }
    }
    let mut all: Vec<Interval> = by_pid.into_values().collect();
    all.sort_by_key(|i| i.start_ns);
    all
}

/// A sentence when two attempts of one job were alive at the same time.
fn overlap(key: &str, runs: &[Interval]) -> Option<String> {
    runs.windows(2).find(|w| w[1].start_ns < w[0].last_ns).map(|w| {
        let ms = (w[0].last_ns - w[1].start_ns) as f64 / 1e6;
        format!(
            "{key}: pid {} on {} started {ms:.0} ms before pid {} on {} stopped",
            w[1].pid, w[1].agent, w[0].pid, w[0].agent
        )
    })
}

/// Why a succeeded job's stored logs, metrics or artifacts are not what it produced.
fn incomplete(run: &RunSeen, expect: &Expect, artifact: &str) -> Option<String> {
    // Log seqs are `(epoch << 32) + n`: the succeeded attempt is the newest epoch.
    let epoch = run.lines.iter().map(|(seq, _)| seq >> 32).max();
    let mut lines: Vec<&(u64, String)> =
        run.lines.iter().filter(|(seq, text)| Some(seq >> 32) == epoch && text.starts_with("line ")).collect();
    lines.sort_by_key(|(seq, _)| *seq);
    let want: Vec<String> = (1..=expect.steps).map(|i| format!("line {i}")).collect();
    let got: Vec<&str> = lines.iter().map(|(_, t)| t.split(" of ").next().unwrap_or(t)).collect();
    if got != want {
        return Some(format!("log lines {got:?}, expected line 1 to line {} in order", expect.steps));
    }
    let steps: Vec<u64> = (1..=expect.steps).collect();
    if run.loss_steps != steps {
        return Some(format!("loss curve steps {:?}, expected 1 to {}", run.loss_steps, expect.steps));
    }
    match run.artifacts.iter().find(|(name, _)| name == "out/a") {
        None => Some("artifact out/a is missing".into()),
        Some((_, sha)) if sha != artifact => Some(format!("artifact out/a has sha256 {sha}")),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect() -> Expect {
        Expect { steps: 3 }
    }

    fn good_run(id: u64) -> RunSeen {
        let epoch = 2u64 << 32;
        RunSeen {
            id,
            state: "succeeded".into(),
            attempts: 2,
            lines: vec![
                // An earlier attempt's lines are ignored.
                ((1 << 32) + 1, "line 1 of k".into()),
                (epoch + 3, "line 3 of k".into()),
                (epoch + 1, "line 1 of k".into()),
                (epoch + 2, "PHASEGATE_METRIC {}".into()),
                (epoch + 2, "line 2 of k".into()),
            ],
            loss_steps: vec![1, 2, 3],
            artifacts: vec![("out/a".into(), "abc".into())],
            ..Default::default()
        }
    }

    fn key(name: &str, acknowledged: bool, run: Option<RunSeen>, ledger: &str) -> KeySeen {
        KeySeen { key: name.into(), acknowledged, run, ledger: ledger.into(), artifact: "abc".into() }
    }

    #[test]
    fn a_clean_history_has_no_defects() {
        let ledger = "start 10 100 a1 1\ntick 10 200\nstart 11 300 a2 2\ntick 11 400\nend 11 500\n";
        let t = tally(&[key("k1", true, Some(good_run(1)), ledger)], &expect());
        assert_eq!(t.defects(), 0, "{t:?}");
        assert_eq!((t.acknowledged, t.succeeded, t.reexecuted), (1, 1, 1));
    }

    #[test]
    fn overlapping_attempts_of_one_job_are_a_double_run() {
        // pid 11 started at 300 while pid 10 still ticked at 350.
        let ledger = "start 10 100 a1 1\ntick 10 350\nstart 11 300 a2 2\nend 11 500\n";
        let t = tally(&[key("k1", true, Some(good_run(1)), ledger)], &expect());
        assert_eq!(t.double_runs.len(), 1, "{t:?}");
        assert!(t.double_runs[0].contains("pid 11 on a2"), "{}", t.double_runs[0]);
    }

    #[test]
    fn a_line_cut_short_by_a_kill_is_skipped() {
        let runs = intervals("start 10 100 a1 1\ntick 10 2\ntick 1");
        assert_eq!(runs, [Interval { pid: 10, agent: "a1".into(), start_ns: 100, last_ns: 100 }]);
    }

    #[test]
    fn failures_other_than_agent_lost_are_false() {
        let failed = |error: &str| RunSeen { id: 2, state: "failed".into(), job_error: error.into(), ..good_run(2) };
        let t = tally(
            &[
                key("lost", true, Some(failed("agent lost after 10 attempts")), ""),
                key("upload", true, Some(failed("failed to upload artifact out/a: tcp connect error")), ""),
            ],
            &expect(),
        );
        assert_eq!(t.agent_lost, 1);
        assert_eq!(t.false_failures.len(), 1, "{t:?}");
        assert!(t.false_failures[0].contains("failed to upload"), "{}", t.false_failures[0]);
    }

    #[test]
    fn an_acknowledged_run_missing_is_a_loss_and_an_unacknowledged_one_is_not() {
        let t = tally(&[key("a", true, None, ""), key("b", false, None, "")], &expect());
        assert_eq!(t.losses.len(), 1, "{t:?}");
        assert!(t.losses[0].starts_with("a:"));
    }

    #[test]
    fn gaps_in_the_logs_missing_loss_points_or_artifacts_are_incomplete() {
        let mut gap = good_run(1);
        gap.lines.retain(|(_, t)| t != "line 2 of k");
        let mut loss = good_run(2);
        loss.loss_steps = vec![1, 3];
        let mut artifact = good_run(3);
        artifact.artifacts.clear();
        let mut order = good_run(4);
        order.lines = vec![(1, "line 2 of k".into()), (2, "line 1 of k".into()), (3, "line 3 of k".into())];
        let keys = [
            key("gap", true, Some(gap), ""),
            key("loss", true, Some(loss), ""),
            key("artifact", true, Some(artifact), ""),
            key("order", true, Some(order), ""),
        ];
        let t = tally(&keys, &expect());
        assert_eq!(t.incomplete.len(), 4, "{t:?}");
    }

    #[test]
    fn a_run_still_running_at_the_end_is_not_terminal() {
        let running = RunSeen { id: 5, state: "running".into(), ..Default::default() };
        let t = tally(&[key("k", true, Some(running), "")], &expect());
        assert_eq!(t.not_terminal.len(), 1);
    }
}
