//! The HTTP judge against a real OpenAI-compatible server on loopback: llama-cpp-python's server
//! serving SmolLM2-135M-Instruct, started by `.ci/judge-server start`, which writes its base URL to
//! `target/judge-server/endpoint`. The model is far too small to judge, so calibration must refuse
//! it: the request/response mechanics are real, the verdict is the expected refusal.
//!
//! Skips (saying why) when no server is running; `PHASEGATE_REQUIRE_JUDGE_SERVER=1` makes that a
//! failure (CI sets it).

use std::path::Path;

use phasegate_proto::spec::{JudgeModel, JudgeServer, ScoreMode};
use phasegate_score::Suite;
use tokio::sync::watch;

use super::{HttpBackend, HttpJudge};
use crate::score_job::JudgeError;

const SUITE: &str = include_str!("../../../../datasets/persona-v1/suite.toml");
/// Where `.ci/judge-server start` writes the server's base URL (relative to the agent crate).
const ENDPOINT_FILE: &str = "../target/judge-server/endpoint";
const MODEL: &str = "smollm2-135m-instruct";
/// Enough for a reply to start; the small model's replies are unreadable or misjudged either way.
const MAX_NEW_TOKENS: u32 = 32;
/// Per request. The server answers one request at a time, and on a busy 2-core machine it was seen
/// at under 1 token/s; unloaded it does about 90.
const TIMEOUT_S: u64 = 600;

fn endpoint() -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(ENDPOINT_FILE);
    let found = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if found.is_none() {
        let why =
            format!("no judge server: {} is missing (run `.ci/judge-server install` and `start`)", path.display());
        assert!(std::env::var_os("PHASEGATE_REQUIRE_JUDGE_SERVER").is_none_or(|v| v != "1"), "{why}");
        eprintln!("skipping: {why}");
    }
    found
}

/// The bundled suite cut to its first question with calibration anchors (one call per anchor and
/// seed).
fn one_question_suite() -> Suite {
    let mut suite = Suite::from_toml_str(SUITE, Path::new("suite.toml")).unwrap();
    let first = suite.questions.iter().position(|q| !q.anchors.is_empty()).unwrap();
    suite.questions = vec![suite.questions.remove(first)];
    suite
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_refuses_the_small_judge_on_a_real_server() {
    let Some(endpoint) = endpoint() else { return };
    let suite = one_question_suite();
    let anchors = phasegate_score::calibration::anchors(&suite).len();
    let scored = crate::judge::fake::two_samples_per_question(&suite, |_| "Oi, eu sou a Iara.".to_owned());
    let server = JudgeServer {
        endpoint: endpoint.clone(),
        api_key_file: None,
        timeout_s: TIMEOUT_S,
        retries: 1,
        concurrency: 1,
    };
    let judge = JudgeModel {
        model: MODEL.into(),
        template: None,
        cpu_requantize: None,
        max_new_tokens: MAX_NEW_TOKENS,
        seeds: [1, 2],
        server: Some(server.clone()),
    };
    let http = HttpJudge::new(&server, MODEL, None).unwrap();
    let (_stop_tx, stop) = watch::channel(None);
    let mut backend = HttpBackend::new(http, tokio::runtime::Handle::current(), stop);
    let mut lines = Vec::new();
    let result = tokio::task::spawn_blocking(move || {
        let r = crate::score_job::judge_phase(&mut backend, ScoreMode::Judge, &judge, &suite, &scored, &mut |l| {
            lines.push(l)
        });
        (r, lines)
    })
    .await
    .unwrap();
    let (result, lines) = result;
    let done = format!("judge: calibration {0}/{0} calls done", 2 * anchors);
    assert_eq!(lines.last(), Some(&done), "lines {lines:?}, error {:?}", result.as_ref().err());
    let err = result.expect_err("a 135M judge must not pass calibration");
    let msg = err.to_string();
    eprintln!("refusal: {msg}");
    assert!(matches!(err, JudgeError::Refused { .. }), "{msg}");
    assert!(msg.starts_with("refused the judge: it misjudged "), "{msg}");
    assert!(msg.contains(&format!(" of {anchors} calibration anchors: ")), "{msg}");
    assert!(msg.contains(&format!("(`score.judge_model` = {MODEL:?} at {endpoint})")), "{msg}");
}
