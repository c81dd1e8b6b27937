//! `gc`: the coordinator's retention, run on demand (a dry run changes nothing and prints the same
//! figures).

use std::time::Duration;

use phasegate_proto::pb;

use crate::cli::GcArgs;
use crate::connect::Endpoint;
use crate::exit::{Code, Failure, Result};
use crate::out::outln;

pub async fn gc(args: GcArgs, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let req = pb::CollectGarbageRequest {
        dry_run: args.dry_run,
        keep_runs: args.keep_runs,
        older_than_ms: args.older_than.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let what = if args.dry_run { "failed to dry-run gc" } else { "failed to run gc" };
    let resp = client.collect_garbage(req).await.map_err(|s| Failure::from_status(what, &s))?.into_inner();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report_json(&resp)).unwrap_or_default());
    } else {
        outln!("{}", report_text(&resp));
    }
    Ok(Code::Success)
}

fn report_json(r: &pb::CollectGarbageResponse) -> serde_json::Value {
    serde_json::json!({
        "dry_run": r.dry_run,
        "runs_pruned": r.run_ids.len(),
        "run_ids": r.run_ids,
        "log_lines": r.log_lines,
        "metric_points": r.metric_points,
        "blobs": r.blobs,
        "bytes_freed": r.bytes_freed,
        "keep_runs": r.keep_runs,
        "older_than_ms": r.older_than_ms,
    })
}

fn report_text(r: &pb::CollectGarbageResponse) -> String {
    let ids: Vec<String> = r.run_ids.iter().map(u64::to_string).collect();
    let runs = if ids.is_empty() { "no runs".to_owned() } else { format!("{} runs ({})", ids.len(), ids.join(", ")) };
    let verb = if r.dry_run { "dry run: would prune" } else { "pruned" };
    let freed = if r.dry_run { "would be freed" } else { "freed" };
    let age = age_text(r.older_than_ms);
    format!(
        "gc {verb} {runs}: {} log lines, {} metric points, {} files, {} bytes {freed}\n\
         policy: keep the newest {} runs of each experiment and every accepted phase's run; prune \
         finished runs older than {age}",
        r.log_lines, r.metric_points, r.blobs, r.bytes_freed, r.keep_runs
    )
}

/// An age as a person writes it: "30 days", "1 day", "12 hours"; other spans as `humantime` does.
fn age_text(ms: u64) -> String {
    const HOUR_MS: u64 = 60 * 60 * 1000;
    const DAY_MS: u64 = 24 * HOUR_MS;
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    match ms {
        0 => "0s".to_owned(),
        ms if ms % DAY_MS == 0 => plural(ms / DAY_MS, "day"),
        ms if ms % HOUR_MS == 0 => plural(ms / HOUR_MS, "hour"),
        ms => humantime::format_duration(Duration::from_millis(ms)).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_says_what_it_would_prune() {
        let r = pb::CollectGarbageResponse {
            dry_run: true,
            run_ids: vec![4, 7],
            log_lines: 5,
            metric_points: 3,
            blobs: 2,
            bytes_freed: 1234,
            keep_runs: 20,
            older_than_ms: 30 * 24 * 60 * 60 * 1000,
        };
        let text = report_text(&r);
        assert!(text.starts_with("gc dry run: would prune 2 runs (4, 7): 5 log lines, 3 metric points, 2 files, 1234 bytes would be freed"), "{text}");
        assert!(text.contains("newest 20 runs") && text.contains("older than 30 days"), "{text}");
        let json = report_json(&r);
        assert_eq!(json["runs_pruned"], 2);
        assert_eq!(age_text(24 * 60 * 60 * 1000), "1 day");
        assert_eq!(age_text(36 * 60 * 60 * 1000), "36 hours");
        assert_eq!(age_text(90 * 60 * 1000), "1h 30m");
        assert_eq!(json["bytes_freed"], 1234);
    }
}
