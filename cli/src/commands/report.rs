//! `phasegate report RUN --github`: re-deliver a stored verdict to GitHub (operators).
//!
//! It opens the coordinator's data dir offline, like `import` and `accept`, and delivers through
//! the `[github]` section of the coordinator's `phasegate.toml`; the outcome is stored with the run
//! (`github_delivery` in `phasegate show --json`).

use phasegate_coordinator::github::{RedeliverError, load_config, redeliver};

use crate::cli::ReportArgs;
use crate::exit::{Code, Failure, Result};

pub async fn report(args: ReportArgs) -> Result<Code> {
    if !args.github {
        return Err(Failure::usage("nothing to deliver: `phasegate report` needs a target")
            .with_hint("pass --github to deliver the stored verdict to GitHub again"));
    }
    let config = load_config(&args.config)
        .map_err(|e| Failure::usage(e.to_string()))?
        .ok_or_else(|| Failure::usage(format!("{} has no [github] section", args.config.display())))?;
    let outcome = redeliver(&args.data.data_dir, &config, args.run).await.map_err(|e| match e {
        RedeliverError::Store(_) | RedeliverError::Sink(_) => Failure::infra(e.to_string()),
        _ => Failure::usage(e.to_string()),
    })?;
    match outcome.status.as_str() {
        "delivered" => {
            eprintln!("run {}: delivered to GitHub", args.run);
            Ok(Code::Success)
        }
        "pending" => Err(Failure::infra(format!("failed to deliver run {} to GitHub: {}", args.run, outcome.error))
            .with_hint("a transient failure: a running coordinator retries it; or run this command again later")),
        _ => Err(Failure::infra(format!("failed to deliver run {} to GitHub: {}", args.run, outcome.error))),
    }
}
