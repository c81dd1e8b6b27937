//! `phasegate lint`: the dataset pre-gate, offline. Reads the dataset files, the suite and
//! `gate.toml`, measures rendered token lengths with the model's tokenizer when one is named,
//! and hands everything to `gate_rules::data::lint`; prints markdown or JSON. Exit code = the
//! verdict (0 pass or warn, 1 fail); a file that cannot be read at all is 2, naming the file,
//! line or index and field.

use std::path::{Path, PathBuf};

use gate_rules::Verdict;
use gate_rules::data::{Dataset, EvalSuite, LintConfig, LintInput, LintReport, TokenLengths};
use phasegate_agent::lint_job::{self, LintError};

use crate::cli::{LintArgs, ReportFormat};
use crate::exit::{Code, Failure, Result};
use crate::out::out;

pub fn lint(args: &LintArgs) -> Result<Code> {
    let config = lint_config(args)?;
    let datasets = read_datasets(&args.datasets)?;
    let baseline = if args.baseline.is_empty() { None } else { Some(read_datasets(&args.baseline)?) };
    let suite = args.suite.as_deref().map(eval_suite).transpose()?;
    let lengths = measure(&datasets, &config, &args.models.dir())?;
    let report = gate_rules::data::lint(&LintInput {
        datasets: &datasets,
        baseline: baseline.as_deref(),
        suite: suite.as_ref(),
        config: &config,
        token_lengths: &lengths,
    });
    print(&report, args.format);
    Ok(exit_code(report.verdict))
}

pub(crate) fn exit_code(verdict: Verdict) -> Code {
    if verdict == Verdict::Fail { Code::Regression } else { Code::Success }
}

fn print(report: &LintReport, format: ReportFormat) {
    match format {
        ReportFormat::Json => out!("{}\n", serde_json::to_string_pretty(report).unwrap_or_default()),
        ReportFormat::Markdown => out!("{}", gate_rules::data::render_markdown(report)),
    }
}

/// `[lint]` of `--config` (defaults without one), with the command line's overrides.
fn lint_config(args: &LintArgs) -> Result<LintConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::io(format!("failed to read gate config {}: {e}", path.display()), &e))?;
            gate_rules::GateConfig::from_toml_str(&text, path).map_err(|e| Failure::usage(e.to_string()))?.lint
        }
        None => LintConfig::default(),
    };
    config.max_length = args.max_length.or(config.max_length);
    config.model = args.model.clone().or(config.model);
    config.template = args.template.clone().or(config.template);
    Ok(config)
}

pub(crate) fn read_datasets(paths: &[PathBuf]) -> Result<Vec<Dataset>> {
    lint_job::read_datasets(paths, |p| p.display().to_string()).map_err(|e| Failure::usage(e.to_string()))
}

fn eval_suite(path: &Path) -> Result<EvalSuite> {
    Ok(lint_job::probes(&super::gate::load_suite(path)?))
}

/// Token lengths with `[lint] model`'s tokenizer, or why they are skipped.
pub(crate) fn measure(datasets: &[Dataset], config: &LintConfig, cache: &Path) -> Result<TokenLengths> {
    lint_job::measure(datasets, config, cache).map_err(|e| match e {
        LintError::Input(m) => Failure::usage(m),
        LintError::Tokenizer(m) => Failure::usage(m),
    })
}
