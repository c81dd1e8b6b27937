//! The judge over any OpenAI-compatible server (`score.judge_endpoint`): each judge call is one
//! `POST {endpoint}/chat/completions`, at most `score.judge_concurrency` in flight, retried with
//! exponential backoff on connection errors, 429 and 5xx only. The calibration, self-agreement and
//! refusal rules are the in-process judge's ([`super::flow`]); only the backend differs.
//!
//! The API key is read from `score.judge_api_key_file` on the agent at run time and sent as a
//! bearer token; it is in no spec, log line, error or `Debug` output.

mod backend;
mod client;
mod key;
mod wire;

#[cfg(test)]
mod real_server_tests;
#[cfg(test)]
mod tests;

pub(crate) use backend::HttpBackend;
pub(crate) use client::{HttpJudge, HttpJudgeError};
pub(crate) use key::{ApiKey, KeyError};
