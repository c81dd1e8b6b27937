//! `phasegate submit`: validate the spec, pack and upload its directory, submit, optionally wait.

use std::io::IsTerminal as _;
use std::path::Path;

use futures::StreamExt as _;

use phasegate_proto::client::ControlClient;
use phasegate_proto::spec::PhaseSpec;
use phasegate_proto::{CHUNK_BYTES, pb};

use crate::cli::SubmitArgs;
use crate::connect::Endpoint;
use crate::exit::{Code, Failure, Result};
use crate::out::{out, outln};
use crate::render::{run_json, run_text};

pub async fn submit(args: SubmitArgs, endpoint: &Endpoint) -> Result<Code> {
    let trigger = trigger(&args);
    let mut client = endpoint.control()?;
    let limit = args.bundle_limit_mib << 20;
    let priority = args.priority.clone().unwrap_or_default();
    let (spec, resp) = submit_spec_as(&mut client, &args.spec, trigger, limit, priority, args.no_cache).await?;
    if !args.json {
        eprintln!("submitted run {} ({} phase {})", resp.run_id, spec.experiment, spec.phase);
        for old in &resp.superseded {
            eprintln!("cancelled run {old}: superseded by run {}", resp.run_id);
        }
    }
    if !args.wait {
        if args.json {
            outln!("{}", serde_json::json!({"id": resp.run_id, "superseded": resp.superseded}));
        }
        return Ok(Code::Success);
    }
    let run = wait(&mut client, resp.run_id, args.json).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&run_json(&run)).unwrap_or_default());
    } else {
        out!("{}", run_text(&run));
        if !run.report.is_empty() {
            outln!("\n{}", run.report);
        }
    }
    Ok(exit_code(&run))
}

/// Validates a spec file, packs and uploads its directory, and submits the run.
pub async fn submit_spec(
    client: &mut ControlClient,
    path: &Path,
    trigger: pb::Trigger,
    bundle_limit: u64,
    no_cache: bool,
) -> Result<(PhaseSpec, pb::SubmitRunResponse)> {
    submit_spec_as(client, path, trigger, bundle_limit, String::new(), no_cache).await
}

/// [`submit_spec`] with a priority overriding the spec's (`""`: the spec's own).
pub async fn submit_spec_as(
    client: &mut ControlClient,
    path: &Path,
    trigger: pb::Trigger,
    bundle_limit: u64,
    priority: String,
    no_cache: bool,
) -> Result<(PhaseSpec, pb::SubmitRunResponse)> {
    let spec_path = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("failed to read spec {spec_path}: {e}")))?;
    // Validate here first so the error names the local file before anything is uploaded.
    let spec = PhaseSpec::parse(&text, &spec_path).map_err(|e| Failure::usage(e.to_string()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let bundle = pack(dir, bundle_limit)?;
    let bundle_sha = upload(client, bundle).await?;
    let req = pb::SubmitRunRequest {
        spec_toml: text,
        spec_path,
        bundle_sha256: bundle_sha,
        trigger: Some(trigger),
        priority,
        no_cache,
    };
    let resp =
        client.submit_run(req).await.map_err(|s| Failure::from_status("failed to submit the run", &s))?.into_inner();
    Ok((spec, resp))
}

/// The exit code of an ended run: its verdict when it has one, else 0 for success and 3 otherwise.
pub fn exit_code(run: &pb::Run) -> Code {
    match run.verdict.as_str() {
        "pass" | "warn" => Code::Success,
        "fail" => Code::Regression,
        "inconclusive" | "insufficient_baseline" => Code::Inconclusive,
        _ if run.state == "succeeded" => Code::Success,
        _ => Code::Infrastructure,
    }
}

fn trigger(args: &SubmitArgs) -> pb::Trigger {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // GitHub Actions: GITHUB_REF is refs/pull/<n>/merge on pull_request events.
    let pr_from_ref = env("GITHUB_REF")
        .and_then(|r| r.strip_prefix("refs/pull/").and_then(|r| r.split('/').next()).and_then(|n| n.parse().ok()));
    pb::Trigger {
        pr: args.pr.or(pr_from_ref),
        sha: args.sha.clone().or_else(|| env("GITHUB_SHA")).unwrap_or_default(),
        branch: args
            .branch
            .clone()
            .or_else(|| env("GITHUB_HEAD_REF"))
            .or_else(|| env("GITHUB_REF_NAME"))
            .unwrap_or_default(),
        repo: args.repo.clone().or_else(|| env("GITHUB_REPOSITORY")).unwrap_or_default(),
    }
}

fn pack(dir: &Path, limit: u64) -> Result<phasegate_agent::bundle::PackedBundle> {
    phasegate_agent::bundle::pack(dir, limit).map_err(|e| {
        Failure::usage(format!("failed to pack the source bundle: {e}"))
            .with_hint("exclude large files with a .phasegateignore next to the spec, or raise --bundle-limit-mib")
    })
}

async fn upload(client: &mut ControlClient, bundle: phasegate_agent::bundle::PackedBundle) -> Result<String> {
    let header = pb::ArtifactHeader {
        name: "source-bundle.tar.gz".into(),
        size: bundle.bytes.len() as u64,
        sha256: bundle.sha256.clone(),
        ..Default::default()
    };
    let mut chunks = vec![pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header)) }];
    chunks.extend(
        bundle
            .bytes
            .chunks(CHUNK_BYTES)
            .map(|c| pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(c.to_vec())) }),
    );
    let resp = client
        .upload_bundle(futures::stream::iter(chunks))
        .await
        .map_err(|s| Failure::from_status("failed to upload the source bundle", &s))?;
    Ok(resp.into_inner().artifact.map(|a| a.sha256).unwrap_or(bundle.sha256))
}

/// Follows a run until it ends: a progress bar on a terminal, plain lines otherwise.
pub async fn wait(client: &mut ControlClient, run_id: u64, quiet: bool) -> Result<pb::Run> {
    let what = format!("failed to watch run {run_id}");
    let mut stream = client
        .watch_run(pb::WatchRunRequest { run_id })
        .await
        .map_err(|s| Failure::from_status(&what, &s))?
        .into_inner();
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut last_line = String::new();
    let mut last = None;
    while let Some(run) = stream.next().await {
        let run = run.map_err(|s| Failure::from_status(&what, &s))?;
        let line = progress_line(&run);
        if let Some(b) = &bar {
            b.set_message(line);
        } else if !quiet && line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        last = Some(run);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    last.ok_or_else(|| Failure::infra(format!("{what}: the stream ended without a state")))
}

fn progress_line(run: &pb::Run) -> String {
    let jobs: Vec<String> = run
        .jobs
        .iter()
        .map(|j| {
            let mut s = format!("{} {}", j.stage, j.state);
            if j.attempts > 1 {
                s.push_str(&format!(" (attempt {})", j.attempts));
            }
            if let Some(p) = &j.progress {
                if let Some(step) = p.step {
                    s.push_str(&format!(" step {step}"));
                }
                if let Some(loss) = p.loss {
                    s.push_str(&format!(" loss {loss:.4}"));
                }
            }
            s
        })
        .collect();
    format!("run {} {}: {}", run.id, run.state, jobs.join(", "))
}
