//! Scenario and property tests of the scheduling core: no runtime, no sleeps, time passed in.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use phasegate_proto::domain::{
    AgentCaps, AgentName, Epoch, GpuInfo, JobId, JobState, LEASE_TOKEN_BYTES, Lease, LeaseToken, Priority,
    Requirements, RunId, RunState, Stage,
};

use super::{CompletedLease, Core, CoreConfig, NewJob, NewRun, Rejection, is_repeat_completion};

const TTL: u64 = 1_000;

fn core() -> Core {
    Core::new(CoreConfig { lease_ttl_ms: TTL, max_attempts: 3 })
}

/// A distinct token per lease, as the shell's CSPRNG would give.
fn test_token() -> LeaseToken {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    LeaseToken::from_bytes([NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed); LEASE_TOKEN_BYTES])
}

const FORGED: LeaseToken = LeaseToken::from_bytes([0; LEASE_TOKEN_BYTES]);

fn name(s: &str) -> AgentName {
    AgentName::parse("name", s).unwrap()
}

fn gpu_agent(total: u64, max_jobs: u32) -> AgentCaps {
    AgentCaps {
        gpus: vec![GpuInfo { index: 0, name: "RTX 3050".into(), total_vram_mib: total, free_vram_mib: total }],
        labels: BTreeSet::new(),
        max_jobs,
    }
}

fn job(id: u64, stage: Stage, deps: &[u64], vram: u64) -> NewJob {
    NewJob {
        id: JobId(id),
        stage,
        depends_on: deps.iter().map(|d| JobId(*d)).collect(),
        requires: Requirements { gpu: vram > 0, vram_mib: vram, labels: BTreeSet::new() },
        state: JobState::Queued,
        epoch: Epoch(0),
        token: None,
        attempt: 0,
        agent: None,
        gpu: None,
        history: Vec::new(),
    }
}

fn run(id: u64, priority: Priority, jobs: Vec<NewJob>) -> NewRun {
    NewRun { id: RunId(id), priority, pr_key: None, jobs }
}

fn lease(core: &mut Core, agent: &str, now: u64) -> Option<Lease> {
    core.on_lease_request(&name(agent), test_token(), now).unwrap().map(|(l, _)| l)
}

#[test]
fn a_job_is_leased_once_and_completes_its_run() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 2), "", &[], 0);
    c.on_agent_registered(name("b"), gpu_agent(4096, 2), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let l = lease(&mut c, "a", 1).unwrap();
    assert_eq!((l.job, l.epoch), (JobId(1), Epoch(1)));
    assert_eq!(lease(&mut c, "b", 1), None, "the same job must not be leased twice");
    let effects = c.on_job_completed(l, None, true, "").unwrap();
    assert_eq!(effects.jobs[&JobId(1)].state, JobState::Succeeded);
    assert_eq!(effects.runs[&RunId(1)].state, RunState::Succeeded);
    assert!(!c.is_active_run(RunId(1)));
}

#[test]
fn expired_lease_requeues_with_next_attempt_then_fails_with_history() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let mut now = 0;
    for attempt in 1..=3u32 {
        let l = lease(&mut c, "a", now).unwrap();
        assert_eq!(l.epoch, Epoch(u64::from(attempt)));
        now += TTL + 1;
        let effects = c.on_tick(now);
        let snap = &effects.jobs[&JobId(1)];
        assert_eq!(snap.attempt, attempt);
        if attempt < 3 {
            assert_eq!(snap.state, JobState::Queued);
            assert!(effects.work_available);
        } else {
            assert_eq!(snap.state, JobState::Failed);
            assert!(snap.error.starts_with("agent lost after 3 attempts"), "{}", snap.error);
            assert_eq!(snap.history.len(), 3);
            assert_eq!(effects.runs[&RunId(1)].state, RunState::Failed);
        }
    }
}

#[test]
fn heartbeat_keeps_a_lease_alive() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let l = lease(&mut c, "a", 0).unwrap();
    for t in (500..5_000).step_by(500) {
        assert!(c.on_heartbeat(&name("a"), &[], &[l], false, t).stop.is_empty());
        assert!(c.on_tick(t).is_empty(), "a renewed lease must not expire at {t}");
    }
}

#[test]
fn stale_epoch_changes_nothing() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "", &[], 0);
    c.on_agent_registered(name("b"), gpu_agent(4096, 1), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let old = lease(&mut c, "a", 0).unwrap();
    c.on_tick(TTL + 1);
    let new = lease(&mut c, "b", TTL + 2).unwrap();
    assert_eq!(new.epoch, Epoch(2));
    let err = c.on_job_completed(old, None, true, "").unwrap_err();
    assert_eq!(err, Rejection::StaleEpoch { job: JobId(1), given: Epoch(1), current: Epoch(2) });
    assert!(c.on_job_started(old, None, TTL + 3).is_err());
    // The old agent is told to stop the job it no longer owns.
    assert_eq!(c.on_heartbeat(&name("a"), &[], &[old], false, TTL + 4).stop, vec![JobId(1)]);
    // The current holder is unaffected.
    assert!(c.on_job_completed(new, None, true, "").is_ok());
}

#[test]
fn priorities_pr_then_nightly_then_manual_fifo_within() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 10), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    c.on_run_submitted(run(2, Priority::Nightly, vec![job(2, Stage::Finetune, &[], 0)]), 0);
    c.on_run_submitted(run(3, Priority::Pr, vec![job(3, Stage::Finetune, &[], 0)]), 0);
    c.on_run_submitted(run(4, Priority::Pr, vec![job(4, Stage::Finetune, &[], 0)]), 0);
    let order: Vec<u64> = (0..4).map(|_| lease(&mut c, "a", 1).unwrap().job.0).collect();
    assert_eq!(order, [3, 4, 2, 1]);
}

#[test]
fn dependent_stage_waits_and_is_cancelled_when_its_dependency_fails() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 2), "", &[], 0);
    c.on_run_submitted(
        run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0), job(2, Stage::Eval, &[1], 0)]),
        0,
    );
    let l = lease(&mut c, "a", 0).unwrap();
    assert_eq!(l.job, JobId(1));
    assert_eq!(lease(&mut c, "a", 0), None, "eval must wait for finetune");
    let effects = c.on_job_completed(l, None, false, "command exited with status 1").unwrap();
    assert_eq!(effects.jobs[&JobId(2)].state, JobState::Cancelled);
    let run = &effects.runs[&RunId(1)];
    assert_eq!(run.state, RunState::Failed);
    assert!(run.error.contains("stage finetune failed"), "{}", run.error);
}

#[test]
fn placement_respects_free_vram_and_promises() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 4), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 2500)]), 0);
    c.on_run_submitted(run(2, Priority::Manual, vec![job(2, Stage::Finetune, &[], 2500)]), 0);
    assert!(lease(&mut c, "a", 0).is_some());
    assert_eq!(lease(&mut c, "a", 0), None, "2500 + 2500 MiB does not fit a 4096 MiB GPU");
    // Another process took memory: even a small job no longer fits.
    assert!(!c.on_heartbeat(&name("a"), &[(0, 1000)], &[], false, 1).capacity_grew);
    c.on_run_submitted(run(3, Priority::Pr, vec![job(3, Stage::Finetune, &[], 100)]), 1);
    assert_eq!(lease(&mut c, "a", 1), None);
    // The memory is freed again: the heartbeat says capacity grew and the small job fits.
    assert!(c.on_heartbeat(&name("a"), &[(0, 4000)], &[], false, 2).capacity_grew);
    assert_eq!(lease(&mut c, "a", 2).map(|l| l.job), Some(JobId(3)));
}

#[test]
fn reregistration_keeps_owned_leases_and_stops_the_rest() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 2), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let l = lease(&mut c, "a", 0).unwrap();
    let foreign = Lease { job: JobId(99), epoch: Epoch(1), token: test_token() };
    let (stop, effects) = c.on_agent_registered(name("a"), gpu_agent(4096, 2), "", &[l, foreign], 10);
    assert_eq!(stop, vec![JobId(99)]);
    assert!(effects.jobs.is_empty(), "the kept lease changes nothing durable");
    assert!(c.on_job_completed(l, None, true, "").is_ok());
}

#[test]
fn agent_restarting_without_its_job_requeues_it() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 2), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    lease(&mut c, "a", 0).unwrap();
    let (_, effects) = c.on_agent_registered(name("a"), gpu_agent(4096, 2), "", &[], 10);
    assert_eq!(effects.jobs[&JobId(1)].state, JobState::Queued);
    assert_eq!(lease(&mut c, "a", 11).unwrap().epoch, Epoch(2));
}

#[test]
fn the_same_process_registering_again_keeps_a_lease_its_list_missed_until_it_lapses() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 2), "p1", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let l = lease(&mut c, "a", 0).unwrap();
    // The registration was built before the lease reached the agent: it does not list the job.
    let (_, effects) = c.on_agent_registered(name("a"), gpu_agent(4096, 2), "p1", &[], 10);
    assert!(effects.jobs.is_empty(), "a lease on its way was requeued: {:?}", effects.jobs);
    assert_eq!(lease(&mut c, "a", 11), None, "the job was leased a second time");
    let renewed = c.on_heartbeat(&name("a"), &[], &[l], false, 500);
    assert!(renewed.stop.is_empty());
    assert!(c.on_job_completed(l, None, true, "").is_ok(), "the kept lease is still the current one");

    // Never reported, it lapses as a silent lease does.
    c.on_run_submitted(run(2, Priority::Manual, vec![job(2, Stage::Finetune, &[], 0)]), 600);
    lease(&mut c, "a", 600).unwrap();
    c.on_agent_registered(name("a"), gpu_agent(4096, 2), "p1", &[], 610);
    let effects = c.on_tick(600 + TTL);
    assert_eq!(effects.jobs[&JobId(2)].state, JobState::Queued);
}

#[test]
fn an_agent_restored_from_the_store_is_leased_nothing_until_it_registers() {
    let mut c = core();
    c.on_agent_restored(name("a"), gpu_agent(4096, 1), None, 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    c.on_heartbeat(&name("a"), &[], &[], false, 1);
    assert_eq!(
        c.on_lease_request(&name("a"), test_token(), 2).unwrap_err(),
        Rejection::UnknownAgent(name("a")),
        "a lease crossing the agent's registration would be requeued while it runs"
    );
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "p1", &[], 3);
    assert_eq!(lease(&mut c, "a", 4).map(|l| l.job), Some(JobId(1)));
}

#[test]
fn newer_pr_run_supersedes_older() {
    let mut c = core();
    let key = ("owner/repo".to_owned(), 7);
    let mut older = run(1, Priority::Pr, vec![job(1, Stage::Finetune, &[], 0)]);
    older.pr_key = Some(key.clone());
    c.on_run_submitted(older, 0);
    let mut newer = run(2, Priority::Pr, vec![job(2, Stage::Finetune, &[], 0)]);
    newer.pr_key = Some(key.clone());
    c.on_run_submitted(newer, 1);
    let (superseded, effects) = c.supersede(RunId(2), &key);
    assert_eq!(superseded, vec![RunId(1)]);
    assert_eq!(effects.runs[&RunId(1)].state, RunState::Cancelled);
    assert!(effects.runs[&RunId(1)].error.contains("superseded by run 2"));
    assert_eq!(super::superseded_by(&effects.runs[&RunId(1)].error), Some(RunId(2)), "read back for GitHub");
    assert_eq!(super::superseded_by("cancelled by user"), None);
    assert!(c.is_active_run(RunId(2)));
}

#[derive(Debug, Clone)]
enum Op {
    Lease(usize),
    Complete(usize, bool),
    Heartbeat(usize),
    Tick(u64),
    Submit(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize).prop_map(Op::Lease),
        (0..3usize, any::<bool>()).prop_map(|(a, s)| Op::Complete(a, s)),
        (0..3usize).prop_map(Op::Heartbeat),
        (1..1500u64).prop_map(Op::Tick),
        (0..3000u64).prop_map(Op::Submit),
    ]
}

proptest! {
    /// Whatever agents, expiries and completions happen: a job is never held by two agents at once,
    /// a GPU is never promised more than its free VRAM, and a stale report never changes anything.
    #[test]
    fn leases_are_exclusive_and_vram_never_overcommitted(ops in proptest::collection::vec(op(), 1..120)) {
        let mut c = core();
        let agents = ["a", "b", "c"];
        for a in agents {
            c.on_agent_registered(name(a), gpu_agent(4096, 3), "", &[], 0);
        }
        let mut now = 0u64;
        let mut next_id = 1u64;
        // Every lease ever granted, and which agent holds which job now (per the leases granted).
        let mut held: HashMap<JobId, (usize, Lease, u64)> = HashMap::new();
        let mut stale: Vec<Lease> = Vec::new();
        for op in ops {
            match op {
                Op::Submit(vram) => {
                    c.on_run_submitted(run(next_id, Priority::Manual, vec![job(next_id, Stage::Finetune, &[], vram)]), now);
                    next_id += 1;
                }
                Op::Lease(a) => {
                    if let Some(l) = lease(&mut c, agents[a], now)
                        && let Some((_, old, _)) = held.insert(l.job, (a, l, 0)) {
                            stale.push(old);
                        }
                }
                Op::Complete(a, ok) => {
                    if let Some((&job, &(_, l, _))) = held.iter().find(|(_, (h, _, _))| *h == a)
                        && c.on_job_completed(l, None, ok, "").is_ok() {
                            held.remove(&job);
                        }
                }
                Op::Heartbeat(a) => {
                    let mine: Vec<Lease> = held.values().filter(|(h, _, _)| *h == a).map(|(_, l, _)| *l).collect();
                    c.on_heartbeat(&name(agents[a]), &[], &mine, false, now);
                }
                Op::Tick(dt) => {
                    now += dt;
                    c.on_tick(now);
                }
            }
            for l in &stale {
                prop_assert!(c.check_lease(*l, None).is_err(), "a stale lease was accepted");
            }
            // Exclusivity: the core's view has each active job on at most one agent.
            let mut seen = BTreeSet::new();
            for a in agents {
                if let Some(super::AgentStatus { running, .. }) = c.agent_status(&name(a)) {
                    for j in running {
                        prop_assert!(seen.insert(j), "job {j} held by two agents");
                    }
                }
            }
            for a in agents {
                let promised = c.promised_vram_for_test(&name(a));
                prop_assert!(promised.iter().all(|p| *p <= 4096), "overcommitted: {promised:?}");
            }
        }
    }
}

fn gate_run(id: u64) -> NewRun {
    run(id, Priority::Manual, vec![job(10 * id, Stage::Finetune, &[], 0), job(10 * id + 1, Stage::Gate, &[10 * id], 0)])
}

#[test]
fn gate_jobs_are_never_leased_and_become_ready_after_their_dependencies() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 4), "", &[], 0);
    c.on_run_submitted(gate_run(1), 0);
    assert!(c.ready_coordinator_jobs().is_empty(), "the gate waits for the finetune");
    let l = lease(&mut c, "a", 1).unwrap();
    assert_eq!(l.job, JobId(10));
    assert_eq!(lease(&mut c, "a", 1), None, "the gate job must not be leased to an agent");
    let effects = c.on_job_completed(l, None, true, "").unwrap();
    assert!(effects.work_available);
    assert_eq!(c.ready_coordinator_jobs(), vec![(RunId(1), JobId(11))]);
    assert_eq!(lease(&mut c, "a", 2), None, "a ready gate job is still not for agents");
}

#[test]
fn a_started_gate_job_runs_once_and_its_success_ends_the_run() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 4), "", &[], 0);
    c.on_run_submitted(gate_run(1), 0);
    let l = lease(&mut c, "a", 1).unwrap();
    c.on_job_completed(l, None, true, "").unwrap();
    let started = c.on_coordinator_job_started(JobId(11)).unwrap();
    assert_eq!(started.jobs[&JobId(11)].state, JobState::Running);
    assert!(c.ready_coordinator_jobs().is_empty(), "a started gate job is not ready again");
    assert!(matches!(c.on_coordinator_job_started(JobId(11)), Err(Rejection::NotReady { .. })));
    // No agent can report on it, even with a guessed lease.
    let guess = Lease { job: JobId(11), epoch: Epoch(0), token: FORGED };
    assert_eq!(c.on_job_completed(guess, None, true, ""), Err(Rejection::UnknownJob(JobId(11))));
    // Nor does it expire like an agent's lease.
    assert!(c.on_tick(10 * TTL).jobs.is_empty());
    let done = c.on_coordinator_job_done(JobId(11), true, "").unwrap();
    assert_eq!(done.jobs[&JobId(11)].state, JobState::Succeeded);
    assert_eq!(done.runs[&RunId(1)].state, RunState::Succeeded);
    assert!(!c.is_active_run(RunId(1)));
}

#[test]
fn a_gate_that_cannot_run_fails_the_run_with_its_error() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 4), "", &[], 0);
    c.on_run_submitted(gate_run(1), 0);
    let l = lease(&mut c, "a", 1).unwrap();
    c.on_job_completed(l, None, true, "").unwrap();
    c.on_coordinator_job_started(JobId(11)).unwrap();
    let done = c.on_coordinator_job_done(JobId(11), false, "no file matched results").unwrap();
    assert_eq!(done.jobs[&JobId(11)].state, JobState::Failed);
    let update = &done.runs[&RunId(1)];
    assert_eq!(update.state, RunState::Failed);
    assert!(update.error.contains("stage gate failed: no file matched results"), "{}", update.error);
}

#[test]
fn gate_not_ready_cannot_start_and_failed_finetune_cancels_it() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 4), "", &[], 0);
    c.on_run_submitted(gate_run(1), 0);
    assert!(matches!(c.on_coordinator_job_started(JobId(11)), Err(Rejection::NotReady { .. })));
    assert!(matches!(c.on_coordinator_job_started(JobId(10)), Err(Rejection::NotReady { .. })));
    let l = lease(&mut c, "a", 1).unwrap();
    let effects = c.on_job_completed(l, None, false, "oom").unwrap();
    assert_eq!(effects.jobs[&JobId(11)].state, JobState::Cancelled);
    assert!(c.ready_coordinator_jobs().is_empty());
    assert_eq!(c.on_coordinator_job_done(JobId(11), true, ""), Err(Rejection::UnknownJob(JobId(11))));
}

#[test]
fn a_gate_job_running_when_the_coordinator_stopped_is_queued_again_on_restore() {
    let mut c = core();
    let mut finetune = job(10, Stage::Finetune, &[], 0);
    finetune.state = JobState::Succeeded;
    let mut gate = job(11, Stage::Gate, &[10], 0);
    gate.state = JobState::Running;
    let effects = c.on_run_submitted(run(1, Priority::Manual, vec![finetune, gate]), 0);
    assert_eq!(effects.jobs[&JobId(11)].state, JobState::Queued);
    assert_eq!(c.ready_coordinator_jobs(), vec![(RunId(1), JobId(11))]);
}

#[test]
fn a_wrong_token_or_another_agent_is_denied_and_changes_nothing() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "pa", &[], 0);
    c.on_agent_registered(name("b"), gpu_agent(4096, 1), "pb", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let l = lease(&mut c, "a", 0).unwrap();
    let forged = Lease { token: FORGED, ..l };
    let err = c.on_job_completed(forged, Some(&name("b")), true, "").unwrap_err();
    assert_eq!(err, Rejection::WrongToken { job: JobId(1), epoch: Epoch(1) });
    assert!(err.is_denial());
    assert!(c.on_job_started(forged, None, 1).is_err());
    // The right token from the wrong agent is refused too.
    let err = c.on_job_completed(l, Some(&name("b")), true, "").unwrap_err();
    assert_eq!(err, Rejection::NotHolder { job: JobId(1), holder: "a".into(), caller: name("b") });
    // A heartbeat with a forged token renews nothing and stops nothing on the holder.
    assert_eq!(c.on_heartbeat(&name("a"), &[], &[forged], false, 1).stop, vec![JobId(1)]);
    assert!(c.on_heartbeat(&name("a"), &[], &[l], false, 2).stop.is_empty());
    let effects = c.on_job_completed(l, Some(&name("a")), true, "").unwrap();
    assert_eq!(effects.jobs[&JobId(1)].state, JobState::Succeeded);
    assert_eq!(effects.jobs[&JobId(1)].token, Some(l.token), "the completing lease's token, for repeats");
    assert!(c.on_job_started(l, Some(&name("a")), 3).is_err(), "a finished job's token leases nothing");
    // The run ended and left the core; the stored snapshot recognises a repeat.
    let snap = &effects.jobs[&JobId(1)];
    let done = CompletedLease { state: snap.state, epoch: snap.epoch, token: snap.token, agent: snap.agent.as_ref() };
    assert!(is_repeat_completion(done, l, Some(&name("a")), true), "the same completion again");
    assert!(is_repeat_completion(done, l, None, true), "the same completion, caller unnamed");
    assert!(!is_repeat_completion(done, l, Some(&name("a")), false), "another outcome");
    assert!(!is_repeat_completion(done, l, Some(&name("b")), true), "another agent");
    assert!(!is_repeat_completion(done, forged, Some(&name("a")), true), "another token");
}

#[test]
fn a_live_name_is_kept_from_other_processes() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "first", &[], 0);
    let err = c.check_registration(&name("a"), "second", false, TTL - 1).unwrap_err();
    assert_eq!(err, Rejection::NameInUse(name("a")));
    assert!(err.to_string().contains("agent name a belongs to a live agent"), "{err}");
    assert!(c.check_registration(&name("a"), "first", false, TTL - 1).is_ok(), "the same process");
    assert!(c.check_registration(&name("a"), "second", true, TTL - 1).is_ok(), "its own credential");
    assert!(c.check_registration(&name("a"), "second", false, TTL).is_ok(), "silent for a TTL: not live");
    assert!(c.check_registration(&name("new"), "x", false, 0).is_ok());
}

#[test]
fn an_agent_that_left_frees_its_name_at_once() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "first", &[], 0);
    assert!(c.check_registration(&name("a"), "second", false, 1).is_err(), "live before it leaves");
    assert!(c.on_agent_left(&name("a")));
    assert!(c.check_registration(&name("a"), "second", false, 2).is_ok(), "free once it left");
    assert_eq!(c.online_agents(), 0);
    assert!(!c.on_agent_left(&name("nobody")), "an unknown agent is not known");
}

#[test]
fn a_drained_agent_is_leased_nothing_while_its_running_job_finishes_and_undrained_it_leases_again() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 2), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let running = lease(&mut c, "a", 1).unwrap();
    c.on_run_submitted(run(2, Priority::Manual, vec![job(2, Stage::Finetune, &[], 0)]), 1);
    assert!(!c.on_agent_drained(&name("a"), Some(2)).unwrap().work_available);
    assert_eq!(lease(&mut c, "a", 3), None, "a drained agent is leased nothing new");
    assert_eq!(c.agent_status(&name("a")).unwrap().drained_ms, Some(2));
    // Its running job goes on and completes normally.
    assert!(c.on_heartbeat(&name("a"), &[], &[running], false, 4).stop.is_empty());
    assert_eq!(c.on_job_completed(running, None, true, "").unwrap().jobs[&JobId(1)].state, JobState::Succeeded);
    assert_eq!(lease(&mut c, "a", 5), None);
    assert!(c.on_agent_drained(&name("a"), None).unwrap().work_available, "undraining wakes waiting requests");
    assert_eq!(lease(&mut c, "a", 6).map(|l| l.job), Some(JobId(2)));
    assert_eq!(c.on_agent_drained(&name("nobody"), Some(7)).unwrap_err(), Rejection::UnknownAgent(name("nobody")));
}

#[test]
fn an_operators_drain_outlives_a_re_registration_and_an_agents_own_drain_only_its_process() {
    let mut c = core();
    c.on_agent_restored(name("a"), gpu_agent(4096, 1), Some(5), 0);
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "p1", &[], 10);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 10);
    assert_eq!(lease(&mut c, "a", 11), None, "the drain restored from the store holds after registering");
    c.on_agent_drained(&name("a"), None).unwrap();

    let began = c.on_heartbeat(&name("a"), &[], &[], true, 12);
    assert!(began.drain_began && c.is_self_draining(&name("a")));
    assert!(!c.on_heartbeat(&name("a"), &[], &[], true, 13).drain_began, "only the first heartbeat begins it");
    assert_eq!(lease(&mut c, "a", 14), None, "an agent draining itself is leased nothing");
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "p1", &[], 15);
    assert!(c.is_self_draining(&name("a")), "the same process registering again is still draining");
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "p2", &[], 16);
    assert!(!c.is_self_draining(&name("a")), "a new process starts undrained");
    assert_eq!(lease(&mut c, "a", 17).map(|l| l.job), Some(JobId(1)));
}

#[test]
fn a_released_job_is_requeued_at_once_and_its_attempt_is_not_counted() {
    let mut c = Core::new(CoreConfig { lease_ttl_ms: TTL, max_attempts: 1 });
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "", &[], 0);
    c.on_agent_registered(name("b"), gpu_agent(4096, 1), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    for (i, agent) in ["a", "b"].into_iter().enumerate() {
        let l = lease(&mut c, agent, 1).unwrap();
        c.on_job_started(l, Some(&name(agent)), 2).unwrap();
        let effects = c.on_job_released(l, Some(&name(agent)), "drain timeout passed").unwrap();
        let snap = &effects.jobs[&JobId(1)];
        assert_eq!((snap.state, snap.agent.as_ref(), snap.gpu), (JobState::Queued, None, None));
        assert!(effects.work_available, "the job is ready to lease again at once");
        assert_eq!(snap.history.len(), i + 1);
        let h = &snap.history[i];
        assert!(h.released && h.agent == agent && h.outcome == "released: drain timeout passed", "{h:?}");
        assert!(c.agent_status(&name(agent)).unwrap().running.is_empty());
    }
    // With max_attempts 1, the third lease still runs and succeeds.
    let l = lease(&mut c, "a", 3).unwrap();
    assert_eq!(l.epoch, Epoch(3));
    let done = c.on_job_completed(l, None, true, "").unwrap();
    assert_eq!(done.jobs[&JobId(1)].state, JobState::Succeeded);
}

#[test]
fn a_lost_lease_after_releases_counts_only_the_unreleased_attempts() {
    let mut c = Core::new(CoreConfig { lease_ttl_ms: TTL, max_attempts: 2 });
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let l = lease(&mut c, "a", 0).unwrap();
    c.on_job_released(l, None, "draining").unwrap();
    lease(&mut c, "a", 1).unwrap();
    let effects = c.on_tick(TTL + 2);
    assert_eq!(effects.jobs[&JobId(1)].state, JobState::Queued, "one counted attempt of two");
    lease(&mut c, "a", TTL + 3).unwrap();
    let effects = c.on_tick(2 * TTL + 4);
    let snap = &effects.jobs[&JobId(1)];
    assert_eq!(snap.state, JobState::Failed);
    assert!(snap.error.starts_with("agent lost after 2 attempts"), "{}", snap.error);
}

#[test]
fn a_forged_or_stale_release_is_refused_and_a_repeated_one_is_recognised() {
    let mut c = core();
    c.on_agent_registered(name("a"), gpu_agent(4096, 1), "", &[], 0);
    c.on_agent_registered(name("b"), gpu_agent(4096, 1), "", &[], 0);
    c.on_run_submitted(run(1, Priority::Manual, vec![job(1, Stage::Finetune, &[], 0)]), 0);
    let l = lease(&mut c, "a", 0).unwrap();
    let forged = Lease { token: FORGED, ..l };
    assert_eq!(c.on_job_released(forged, None, "x"), Err(Rejection::WrongToken { job: JobId(1), epoch: l.epoch }));
    assert!(c.on_job_released(l, Some(&name("b")), "x").unwrap_err().is_denial(), "only the holder releases");
    assert_eq!(c.agent_status(&name("a")).unwrap().running, vec![JobId(1)], "a refused release changes nothing");

    c.on_job_released(l, Some(&name("a")), "draining").unwrap();
    assert!(matches!(c.on_job_released(l, Some(&name("a")), "draining"), Err(Rejection::NotLeased { .. })));
    assert!(c.repeats_release(l, Some(&name("a"))), "the holder's repeat is recognised");
    assert!(!c.repeats_release(l, Some(&name("b"))) && !c.repeats_release(forged, None));
    let next = lease(&mut c, "b", 1).unwrap();
    assert!(!c.repeats_release(l, Some(&name("a"))), "once leased again the old lease is just stale");
    assert!(matches!(c.on_job_released(l, None, "late"), Err(Rejection::StaleEpoch { .. })));
    assert!(c.check_lease(next, Some(&name("b"))).is_ok());
}

#[test]
fn a_lint_that_ends_the_run_cancels_every_later_stage_before_it_is_leased() {
    let mut c = core();
    c.on_agent_registered(
        name("cpu"),
        AgentCaps { gpus: Vec::new(), labels: BTreeSet::new(), max_jobs: 2 },
        "",
        &[],
        0,
    );
    c.on_agent_registered(name("gpu"), gpu_agent(4096, 2), "", &[], 0);
    let jobs = vec![job(1, Stage::Lint, &[], 0), job(2, Stage::Finetune, &[1], 2048), job(3, Stage::Gate, &[1, 2], 0)];
    c.on_run_submitted(run(1, Priority::Pr, jobs), 0);
    let l = lease(&mut c, "cpu", 1).unwrap();
    assert_eq!(l.job, JobId(1), "the lint needs no GPU");
    assert_eq!(lease(&mut c, "gpu", 1), None, "the GPU stage waits for the lint");
    let effects = c.on_job_completed_ending_run(l, Some(&name("cpu")), "skipped: the lint verdict is fail").unwrap();
    assert_eq!(effects.jobs[&JobId(1)].state, JobState::Succeeded);
    for later in [JobId(2), JobId(3)] {
        assert_eq!(effects.jobs[&later].state, JobState::Cancelled, "{later}");
    }
    assert_eq!(effects.runs[&RunId(1)].state, RunState::Succeeded);
    assert!(!c.is_active_run(RunId(1)));
    assert_eq!(lease(&mut c, "gpu", 2), None, "nothing of the run is leased after it ended");
    assert!(c.ready_coordinator_jobs().is_empty(), "nor is its gate run");
}
