//! The dataset pre-gate: training data read, checked and compared before any GPU time.
//!
//! `parse` reads dataset bytes (ShareGPT, messages, Alpaca, prompt/completion, text; JSON array
//! or JSONL) into [`Dataset`]s; [`lint`] checks them against an eval suite and `[lint]` —
//! schema, duplicates, contamination, token lengths (given by the caller, who owns the
//! tokenizer), config, and a diff against a baseline — and returns a typed [`LintReport`];
//! [`render_markdown`] prints it. No file, network or model I/O happens here; per-example
//! work runs on scoped std threads (`par`), with results in input order.

mod config;
mod contamination;
mod diff;
mod duplicates;
mod example;
mod lengths;
mod lint;
mod markdown;
mod normalise;
mod par;
mod parse;
mod report;
mod schema;

pub use config::{LintConfig, LintLevel, LintRule};
pub use contamination::{Contaminated, EvalSuite, MatchKind, Probe, ProbeSide};
pub use diff::{DiffExample, DiffGroup, DiffReport};
pub use duplicates::{ExactGroup, NearGroup};
pub use example::{Dataset, Example, Format, Layout, MalformedRecord, Position, Role, Turn};
pub use lengths::{OverLength, TokenLengthStats};
pub use lint::{LintInput, TokenLengths, digest_hex, lint};
pub use markdown::{render_data_section, render_markdown};
pub use normalise::normalise;
pub use parse::{DatasetError, parse_dataset};
pub use report::{DatasetSummary, Duplicates, LintFinding, LintReport};
#[cfg(test)]
mod tests;
