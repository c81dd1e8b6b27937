//! Counters for `/metrics` (Prometheus text format), kept with atomics so the hot path never locks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use phasegate_proto::domain::JobState;

/// Upper bounds (seconds) of the job duration histogram buckets.
const BUCKETS: [f64; 10] = [0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

#[derive(Debug, Default)]
pub(crate) struct Stats {
    runs_submitted: AtomicU64,
    jobs_succeeded: AtomicU64,
    jobs_failed: AtomicU64,
    jobs_cancelled: AtomicU64,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_ms: AtomicU64,
    github_webhook_failures: AtomicU64,
}

/// Gauges read from the scheduler at scrape time.
#[derive(Debug)]
pub(crate) struct Gauges {
    pub queued: usize,
    pub leased: usize,
    pub agents_online: usize,
    pub agents_known: usize,
}

impl Stats {
    pub fn run_submitted(&self) {
        self.runs_submitted.fetch_add(1, Ordering::Relaxed);
    }

    /// A webhook event failed for one experiment (files not listed, run not started, merge not
    /// accepted).
    pub fn github_webhook_failed(&self) {
        self.github_webhook_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn job_finished(&self, state: JobState, leased_for: Option<Duration>) {
        let counter = match state {
            JobState::Succeeded => &self.jobs_succeeded,
            JobState::Failed => &self.jobs_failed,
            _ => &self.jobs_cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = leased_for {
            let secs = d.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            self.duration_count.fetch_add(1, Ordering::Relaxed);
            self.duration_sum_ms.fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        }
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP phasegate_queue_depth Jobs waiting for an agent.");
        let _ = writeln!(out, "# TYPE phasegate_queue_depth gauge\nphasegate_queue_depth {}", g.queued);
        let _ = writeln!(out, "# HELP phasegate_leases Jobs leased to agents (leased or running).");
        let _ = writeln!(out, "# TYPE phasegate_leases gauge\nphasegate_leases {}", g.leased);
        let _ = writeln!(out, "# HELP phasegate_agents Known agents by status.");
        let _ = writeln!(out, "# TYPE phasegate_agents gauge");
        let _ = writeln!(out, "phasegate_agents{{status=\"online\"}} {}", g.agents_online);
        let _ = writeln!(out, "phasegate_agents{{status=\"offline\"}} {}", g.agents_known - g.agents_online);
        let _ = writeln!(out, "# HELP phasegate_runs_submitted_total Runs accepted.");
        let _ = writeln!(out, "# TYPE phasegate_runs_submitted_total counter");
        let _ = writeln!(out, "phasegate_runs_submitted_total {}", get(&self.runs_submitted));
        let _ = writeln!(out, "# HELP phasegate_jobs_finished_total Jobs that ended, by outcome.");
        let _ = writeln!(out, "# TYPE phasegate_jobs_finished_total counter");
        for (label, c) in
            [("succeeded", &self.jobs_succeeded), ("failed", &self.jobs_failed), ("cancelled", &self.jobs_cancelled)]
        {
            let _ = writeln!(out, "phasegate_jobs_finished_total{{outcome=\"{label}\"}} {}", get(c));
        }
        let _ = writeln!(out, "# HELP phasegate_job_duration_seconds Time from lease to end of a job.");
        let _ = writeln!(out, "# TYPE phasegate_job_duration_seconds histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.duration_buckets) {
            let _ = writeln!(out, "phasegate_job_duration_seconds_bucket{{le=\"{bound}\"}} {}", get(count));
        }
        let count = get(&self.duration_count);
        let _ = writeln!(out, "phasegate_job_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "phasegate_job_duration_seconds_sum {}", get(&self.duration_sum_ms) as f64 / 1000.0);
        let _ = writeln!(out, "phasegate_job_duration_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP phasegate_github_webhook_failures_total GitHub webhook events that failed for an experiment."
        );
        let _ = writeln!(out, "# TYPE phasegate_github_webhook_failures_total counter");
        let _ = writeln!(out, "phasegate_github_webhook_failures_total {}", get(&self.github_webhook_failures));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = Stats::default();
        s.job_finished(JobState::Succeeded, Some(Duration::from_millis(50)));
        s.job_finished(JobState::Failed, Some(Duration::from_secs(30)));
        let text = s.render(&Gauges { queued: 2, leased: 1, agents_online: 1, agents_known: 3 });
        assert!(text.contains("phasegate_job_duration_seconds_bucket{le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("phasegate_job_duration_seconds_bucket{le=\"60\"} 2\n"), "{text}");
        assert!(text.contains("phasegate_queue_depth 2\n"));
        assert!(text.contains("phasegate_agents{status=\"offline\"} 2\n"));
        assert!(text.contains("phasegate_jobs_finished_total{outcome=\"failed\"} 1\n"));
        s.github_webhook_failed();
        let text = s.render(&Gauges { queued: 0, leased: 0, agents_online: 0, agents_known: 0 });
        assert!(text.contains("phasegate_github_webhook_failures_total 1\n"), "{text}");
    }
}
