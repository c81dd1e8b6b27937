//! `phasegate demo`: the whole product on one box, in one command.
//!
//! Pulls SmolLM2-135M-Instruct and the suite language's dictionary into the model cache unless they
//! are there, starts a coordinator and a
//! local agent on a fresh data dir, imports the bundled accepted history, submits the candidate
//! phase (SmolLM2 with the persona prompt, eval → score → gate), follows it live (job states and
//! the agent's eval/score lines), prints the report and the verdict, and says how to look again.
//! Exits 0 when the demo itself worked, whatever the verdict.

use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use tokio::net::TcpListener;

use phasegate_coordinator::{ServeConfig, ShellConfig};
use phasegate_proto::client::{channel, control_client};
use phasegate_proto::pb;

use gate_rules::import::ImportOptions;
use phasegate_coordinator::history::History;

use super::gate::{load_candidate, store_failure};
use super::serve::start_local;
use super::submit::{submit_spec, wait};
use crate::cli::DemoArgs;
use crate::exit::{Code, Failure, Result};
use crate::out::{out, outln};
use crate::render::run_text;

/// Where the bundled experiment lives, relative to the repository root.
const DATASET: &str = "datasets/persona-v1";
const EXPERIMENT: &str = "persona-v1";
/// The candidate phase the demo submits, relative to the dataset; its directory is the bundle.
const CANDIDATE_SPEC: &str = "smollm2-base.toml";
/// The model that spec evaluates, pulled into the cache when missing.
const MODEL: &str = "smollm2-135m-instruct";

pub async fn demo(args: DemoArgs) -> Result<Code> {
    let started = std::time::Instant::now();
    let dataset = find_dataset(args.dataset.as_deref())?;
    let model_cache = args.models.dir();
    super::models::pull_into(MODEL, &model_cache).await?;
    super::dictionary::pull_into(suite_language(&dataset)?, &model_cache).await?;
    let data_dir = args.data_dir.clone();
    // Locked before it is cleared: a coordinator serving from this dir keeps it.
    let lock = super::serve::lock_data_dir(&data_dir)?;
    clear_except_lock(&data_dir)?;
    let bind = |what: &str| {
        let what = what.to_owned();
        async move {
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| Failure::infra(format!("failed to listen for {what}: {e}")))
        }
    };
    import_history(&dataset, &data_dir).await?;
    let config = ServeConfig { data_dir: data_dir.clone(), shell: ShellConfig::default(), tls: None };
    let (grpc, http) = (bind("grpc").await?, bind("http").await?);
    let cluster = start_local(lock, config, grpc, http, "demo-agent".into(), Vec::new(), 1, model_cache).await?;
    outln!(
        "phasegate demo: coordinator {} with one local agent, data dir {}",
        cluster.access.address,
        data_dir.display()
    );
    let result = run_phase(&cluster.access, &dataset).await;
    let access_path = cluster.access_path.clone();
    cluster.shutdown().await?;
    let run = result?;
    out!("\n{}", run_text(&run));
    if !run.report.is_empty() {
        outln!("\n{}", run.report);
    }
    let verdict = if run.verdict.is_empty() { "none (the run has no gate stage)" } else { run.verdict.as_str() };
    outln!("verdict: {verdict}");
    outln!("demo wall time: {:.1} s", started.elapsed().as_secs_f64());
    outln!("\nlook again:");
    outln!("  phasegate up --data-dir {}      # then, in another shell:", data_dir.display());
    outln!("  phasegate --access-file {} show {}", access_path.display(), run.id);
    outln!("  phasegate --access-file {} logs {}", access_path.display(), run.id);
    outln!("  phasegate history {EXPERIMENT} --data-dir {}", data_dir.display());
    if run.state == "succeeded" {
        Ok(Code::Success)
    } else {
        Err(Failure::infra(format!("the demo run ended {}", run.state)))
    }
}

/// Imports the bundled history (phases 6 to 9, each a folder of result files) as accepted phases.
async fn import_history(dataset: &Path, data_dir: &Path) -> Result<()> {
    let history = History::create(data_dir).await.map_err(store_failure)?;
    let root = dataset.join("history");
    let mut phases: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| Failure::usage(format!("failed to read the bundled history {}: {e}", root.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    phases.sort();
    for dir in phases {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Failure::usage(format!("failed to read {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        // The team scored every bundled phase by hand, phase 6's totals included.
        let options = ImportOptions { scorer: Some(gate_rules::InstrumentKind::Human), ..ImportOptions::default() };
        let phase = load_candidate(&files, EXPERIMENT, &options)?;
        let (label, score) = (phase.label.clone(), phase.score());
        history.import_phase(phase, true).await.map_err(store_failure)?;
        let score = score.map_or_else(|| "no score".to_owned(), |s| format!("{s:.3}/10"));
        outln!("phasegate demo: imported accepted phase {label} ({score}) from {}", dir.display());
    }
    Ok(())
}

async fn run_phase(access: &phasegate_coordinator::AccessFile, dataset: &Path) -> Result<pb::Run> {
    let ch = channel(&access.address, None).map_err(|e| Failure::infra(e.to_string()))?;
    let mut client = control_client(ch, &access.client_token).map_err(|e| Failure::infra(e.to_string()))?;
    let spec = dataset.join(CANDIDATE_SPEC);
    let (spec, resp) = submit_spec(&mut client, &spec, pb::Trigger::default(), 64 << 20, false).await?;
    outln!(
        "phasegate demo: submitted run {} ({} phase {}: {})",
        resp.run_id,
        spec.experiment,
        spec.phase,
        spec.description
    );
    let logs = tokio::spawn(print_agent_lines(client.clone(), resp.run_id));
    let run = wait(&mut client, resp.run_id, false).await;
    // The log stream ends with the run; a moment lets the last lines arrive.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), logs).await;
    run
}

/// Empties the demo's data dir for a fresh start, keeping the lock file this process holds.
fn clear_except_lock(data_dir: &Path) -> Result<()> {
    let fail =
        |e: std::io::Error| Failure::io(format!("failed to clear the demo data dir {}: {e}", data_dir.display()), &e);
    for entry in std::fs::read_dir(data_dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        if entry.file_name() == phasegate_coordinator::DATA_DIR_LOCK_FILE {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map_err(fail)?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(fail)?;
    }
    Ok(())
}

/// Prints the agent's own lines of the run (eval progress, scores) as they arrive.
async fn print_agent_lines(mut client: phasegate_proto::client::ControlClient, run_id: u64) {
    let Ok(resp) = client.fetch_logs(pb::FetchLogsRequest { run_id, follow: true }).await else { return };
    let mut stream = resp.into_inner();
    while let Some(Ok(chunk)) = stream.next().await {
        for line in chunk.lines.iter().filter(|l| l.stream == "agent") {
            outln!("  [{}] {}", chunk.stage, line.text);
        }
    }
}

/// The language of the bundled suite: the score stage reads answers with its dictionary.
fn suite_language(dataset: &Path) -> Result<phasegate_score::Language> {
    let suite = phasegate_score::Suite::load(&dataset.join("suite.toml")).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(suite.language)
}

fn find_dataset(given: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match given {
        Some(p) => vec![p.to_owned()],
        None => vec![PathBuf::from(DATASET), Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DATASET)],
    };
    candidates.into_iter().find(|p| p.join(CANDIDATE_SPEC).is_file()).ok_or_else(|| {
        Failure::usage(format!("failed to find the bundled experiment {DATASET}"))
            .with_hint("run the demo from the repository root, or pass --dataset DIR")
    })
}
