//! `phasegate demo`: the whole product on one box, in one command.
//!
//! Starts a coordinator and a local agent on a fresh data dir, submits the bundled persona phase,
//! follows it live, prints the report and the verdict, and says how to look again. Exits 0 when the
//! demo itself worked, whatever the verdict.

use std::path::{Path, PathBuf};

use tokio::net::TcpListener;

use phasegate_coordinator::{ServeConfig, ShellConfig};
use phasegate_proto::client::{channel, control_client};
use phasegate_proto::pb;

use super::serve::start_local;
use super::submit::{submit_spec, wait};
use crate::cli::DemoArgs;
use crate::exit::{Code, Failure, Result};
use crate::render::run_text;

/// Where the bundled experiment lives, relative to the repository root.
const DATASET: &str = "datasets/persona-v1";

pub async fn demo(args: DemoArgs) -> Result<Code> {
    let dataset = find_dataset(args.dataset.as_deref())?;
    let data_dir = args.data_dir.clone();
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)
            .map_err(|e| Failure::usage(format!("failed to clear the demo data dir {}: {e}", data_dir.display())))?;
    }
    let bind = |what: &str| {
        let what = what.to_owned();
        async move {
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| Failure::infra(format!("failed to listen for {what}: {e}")))
        }
    };
    let config = ServeConfig { data_dir: data_dir.clone(), shell: ShellConfig::default(), tls: None };
    let cluster =
        start_local(config, bind("grpc").await?, bind("http").await?, "demo-agent".into(), Vec::new(), 1).await?;
    println!(
        "phasegate demo: coordinator {} with one local agent, data dir {}",
        cluster.access.address,
        data_dir.display()
    );
    let result = run_phase(&cluster.access, &dataset).await;
    let access_path = cluster.access_path.clone();
    cluster.shutdown().await?;
    let run = result?;
    print!("\n{}", run_text(&run));
    if !run.report.is_empty() {
        println!("\n{}", run.report);
    }
    let verdict = if run.verdict.is_empty() { "none (the run has no gate stage)" } else { run.verdict.as_str() };
    println!("verdict: {verdict}");
    println!("\nlook again:");
    println!("  phasegate up --data-dir {}      # then, in another shell:", data_dir.display());
    println!("  phasegate --access-file {} show {}", access_path.display(), run.id);
    println!("  phasegate --access-file {} logs {}", access_path.display(), run.id);
    if run.state == "succeeded" {
        Ok(Code::Success)
    } else {
        Err(Failure::infra(format!("the demo run ended {}", run.state)))
    }
}

async fn run_phase(access: &phasegate_coordinator::AccessFile, dataset: &Path) -> Result<pb::Run> {
    let ch = channel(&access.address, None).map_err(|e| Failure::infra(e.to_string()))?;
    let mut client = control_client(ch, &access.client_token).map_err(|e| Failure::infra(e.to_string()))?;
    let spec = dataset.join("phase10").join("phase.toml");
    let (spec, resp) = submit_spec(&mut client, &spec, pb::Trigger::default(), 64 << 20).await?;
    println!("phasegate demo: submitted run {} ({} phase {})", resp.run_id, spec.experiment, spec.phase);
    wait(&mut client, resp.run_id, false).await
}

fn find_dataset(given: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match given {
        Some(p) => vec![p.to_owned()],
        None => vec![PathBuf::from(DATASET), Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DATASET)],
    };
    candidates.into_iter().find(|p| p.join("phase10").join("phase.toml").is_file()).ok_or_else(|| {
        Failure::usage(format!("failed to find the bundled experiment {DATASET}"))
            .with_hint("run the demo from the repository root, or pass --dataset DIR")
    })
}
