//! `phasegate bench chaos` with a few trials: real processes, real SIGKILLs, and the bench's own
//! checks of losses, false failures, double runs and incomplete logs.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_phasegate");

fn figure(out: &str, label: &str) -> u64 {
    let line = out.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no `{label}` in:\n{out}"));
    let value = line[label.len()..].split_whitespace().next().unwrap_or_default();
    value.parse().unwrap_or_else(|_| panic!("`{label}` is not a count in {line:?}"))
}

#[test]
fn random_kills_of_the_coordinator_and_agents_lose_and_fail_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .args(["bench", "chaos", "--trials", "4", "--lease-ttl", "2s", "--max-down", "2s", "--seed", "7"])
        .arg("--keep-dir")
        .arg(dir.path())
        .output()
        .expect("run phasegate bench chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs = || {
        ["coordinator", "agent-a1", "agent-a2"]
            .iter()
            .map(|n| {
                format!("--- {n}\n{}", std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(out.status.success(), "{stdout}\n{}\n{}", String::from_utf8_lossy(&out.stderr), logs());
    assert!(stdout.contains("4 trials"), "{stdout}");
    for defect in ["false failures:", "double runs:", "losses:", "not ended:", "incomplete logs, metrics or artifacts:"]
    {
        assert_eq!(figure(&stdout, defect), 0, "{stdout}");
    }
    assert!(figure(&stdout, "runs acknowledged:") > 0, "{stdout}");
    assert!(figure(&stdout, "succeeded:") > 0, "{stdout}");
}
