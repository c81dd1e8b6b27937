//! The HTTP judge against a mock OpenAI-compatible server on 127.0.0.1:0 (a tiny axum app that
//! records every request and answers from a script): exact request bodies and headers, the retry
//! rule, the timeout, the concurrency bound and the judge flow end to end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use phasegate_proto::spec::{JudgeModel, JudgeServer, ScoreMode};
use phasegate_score::judge::{build_prompt, prompt_digest};
use phasegate_score::{Instrument, Suite};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::wire::call_seed;
use super::*;
use crate::judge::fake::{faithful, reply, two_samples_per_question};
use crate::judge::{JudgeBackend, JudgeCall, JudgeOutcome};
use phasegate_score::calibration::anchors;
use phasegate_score::judge::JudgePrompt;

const SECRET: &str = "sk-mock-secret-42";
const MODEL: &str = "judge-on-server";
const SEED: u64 = 7;
const MAX_TOKENS: usize = 64;
/// `call_seed(SEED, "Q1/0")`, pinned: a rerun must send the same seeds.
const Q1_SEED: u64 = 1_671_134_746;
/// Short waits so retry tests take milliseconds.
const TEST_BACKOFF: Duration = Duration::from_millis(5);
const TEST_TIMEOUT: Duration = Duration::from_secs(5);
const SUITE: &str = include_str!("../../../../datasets/persona-v1/suite.toml");

/// What the mock answers to its `n`-th request (from 0): status, body, delay before answering.
type Script = Box<dyn Fn(usize, &Value) -> (StatusCode, String, Duration) + Send + Sync>;

struct Mock {
    script: Script,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

async fn on_completion(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let now = mock.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    mock.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut requests = mock.requests.lock().unwrap();
        requests.push((headers, body.clone()));
        requests.len() - 1
    };
    let (status, text, delay) = (mock.script)(n, &body);
    tokio::time::sleep(delay).await;
    mock.in_flight.fetch_sub(1, Ordering::SeqCst);
    (status, text)
}

/// Serves the mock; returns it and its endpoint (`http://127.0.0.1:PORT/v1`).
async fn serve(
    script: impl Fn(usize, &Value) -> (StatusCode, String, Duration) + Send + Sync + 'static,
) -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock {
        script: Box::new(script),
        requests: Mutex::new(Vec::new()),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
    });
    let app =
        axum::Router::new().route("/v1/chat/completions", axum::routing::post(on_completion)).with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (mock, endpoint)
}

/// A chat-completions answer whose reply is `content`.
fn completion(content: &str) -> String {
    json!({ "id": "c1", "object": "chat.completion",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }] })
    .to_string()
}

fn ok(content: &str) -> (StatusCode, String, Duration) {
    (StatusCode::OK, completion(content), Duration::ZERO)
}

fn server(endpoint: &str, retries: u32, concurrency: u32) -> JudgeServer {
    JudgeServer { endpoint: endpoint.to_owned(), api_key_file: None, timeout_s: 60, retries, concurrency }
}

fn judge(endpoint: &str, retries: u32, concurrency: u32) -> HttpJudge {
    let key = ApiKey::read(key_file().path()).unwrap();
    HttpJudge::new(&server(endpoint, retries, concurrency), MODEL, Some(key))
        .unwrap()
        .with_timing(TEST_TIMEOUT, TEST_BACKOFF)
}

/// A key file as an operator writes one; the key is read from it at once.
fn key_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{SECRET}\n")).unwrap();
    file
}

fn call(id: &str) -> JudgeCall {
    JudgeCall { id: id.to_owned(), prompt: JudgePrompt { system: "Score it.".into(), user: format!("Answer {id}") } }
}

#[tokio::test]
async fn the_request_is_exactly_the_openai_chat_body_with_the_bearer_key() {
    let (mock, endpoint) = serve(|_, _| ok("{\"D1\": {\"score\": 2}}")).await;
    let text = judge(&endpoint, 0, 1).complete(&call("Q1/0"), SEED, MAX_TOKENS).await.unwrap();
    assert_eq!(text, "{\"D1\": {\"score\": 2}}");
    let requests = mock.requests.lock().unwrap();
    let (headers, body) = &requests[0];
    let expected = json!({
        "model": MODEL,
        "messages": [
            { "role": "system", "content": "Score it." },
            { "role": "user", "content": "Answer Q1/0" },
        ],
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": MAX_TOKENS,
        "seed": Q1_SEED,
        "stream": false,
    });
    assert_eq!(body, &expected);
    assert_eq!(call_seed(SEED, "Q1/0"), Q1_SEED);
    assert_eq!(headers["authorization"], format!("Bearer {SECRET}").as_str());
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(requests.len(), 1);
}

#[tokio::test]
async fn a_503_is_retried_until_it_answers() {
    let (mock, endpoint) =
        serve(|n, _| if n < 2 { (StatusCode::SERVICE_UNAVAILABLE, "busy".into(), Duration::ZERO) } else { ok("fine") })
            .await;
    let text = judge(&endpoint, 3, 1).complete(&call("Q1/0"), SEED, MAX_TOKENS).await.unwrap();
    assert_eq!(text, "fine");
    let requests = mock.requests.lock().unwrap();
    assert_eq!(requests.len(), 3);
    // Every attempt is the same request.
    assert!(requests.iter().all(|(_, body)| body == &requests[0].1));
}

#[tokio::test]
async fn retries_on_429_and_5xx_end_with_the_last_status() {
    for (status, retries) in [(StatusCode::TOO_MANY_REQUESTS, 2), (StatusCode::BAD_GATEWAY, 1)] {
        let (mock, endpoint) = serve(move |_, _| (status, "slow down".into(), Duration::ZERO)).await;
        let err = judge(&endpoint, retries, 1).complete(&call("Q1/0"), SEED, MAX_TOKENS).await.unwrap_err();
        let attempts = retries + 1;
        let expected = HttpJudgeError::Status {
            endpoint: endpoint.clone(),
            status: status.as_u16(),
            attempts,
            excerpt: "slow down".into(),
        };
        assert_eq!(err, expected);
        assert_eq!(mock.requests.lock().unwrap().len(), attempts as usize);
    }
}

#[tokio::test]
async fn a_400_is_not_retried_and_the_error_names_the_endpoint_never_the_key() {
    // A server that echoes the request's key back in its error.
    let (mock, endpoint) = serve(|_, _| (StatusCode::BAD_REQUEST, format!("bad token {SECRET}"), Duration::ZERO)).await;
    let err = judge(&endpoint, 3, 1).complete(&call("Q1/0"), SEED, MAX_TOKENS).await.unwrap_err();
    assert_eq!(mock.requests.lock().unwrap().len(), 1);
    let msg = err.to_string();
    assert_eq!(msg, format!("the judge server {endpoint} answered 400 after 1 attempt(s): bad token [redacted]"));
}

#[tokio::test]
async fn a_slow_server_times_out_naming_the_endpoint_without_a_retry() {
    let (mock, endpoint) = serve(|_, _| (StatusCode::OK, completion("late"), Duration::from_secs(3))).await;
    let judge = judge(&endpoint, 3, 1).with_timing(Duration::from_millis(200), TEST_BACKOFF);
    let err = judge.complete(&call("Q1/0"), SEED, MAX_TOKENS).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the judge server {endpoint} did not answer within `score.judge_timeout` (200ms)")
    );
    assert_eq!(mock.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn answers_that_are_not_replies_fail_naming_the_endpoint() {
    type Expected = fn(String, String) -> HttpJudgeError;
    let cases: [(&str, Expected); 2] = [
        ("<html>oops</html>", |endpoint, excerpt| HttpJudgeError::NotJson { endpoint, excerpt }),
        ("{\"choices\": []}", |endpoint, excerpt| HttpJudgeError::NoContent { endpoint, excerpt }),
    ];
    for (body, expected) in cases {
        let (_mock, endpoint) = serve(move |_, _| (StatusCode::OK, body.to_owned(), Duration::ZERO)).await;
        let err = judge(&endpoint, 3, 1).complete(&call("Q1/0"), SEED, MAX_TOKENS).await.unwrap_err();
        assert_eq!(err, expected(endpoint.clone(), body.to_owned()));
    }
}

#[tokio::test]
async fn a_server_that_is_not_there_is_retried_then_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let err = judge(&endpoint, 2, 1).complete(&call("Q1/0"), SEED, MAX_TOKENS).await.unwrap_err();
    let HttpJudgeError::Unreachable { endpoint: named, attempts, detail } = &err else { panic!("{err}") };
    assert_eq!((named.as_str(), *attempts), (endpoint.as_str(), 3));
    assert!(detail.to_lowercase().contains("refused"), "{detail}");
    assert!(!err.to_string().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_at_most_concurrency_requests_in_flight_and_its_order() {
    const CALLS: usize = 12;
    const CONCURRENCY: u32 = 3;
    // Later calls answer sooner, so order comes from the backend, not the server.
    let (mock, endpoint) = serve(|n, body| {
        let user = body["messages"][1]["content"].as_str().unwrap_or_default().to_owned();
        (StatusCode::OK, completion(&user), Duration::from_millis(80 - 5 * (n as u64 % 12)))
    })
    .await;
    let calls: Vec<JudgeCall> = (0..CALLS).map(|i| call(&format!("Q{i}/0"))).collect();
    let (_stop_tx, stop) = watch::channel(None);
    let mut backend = HttpBackend::new(judge(&endpoint, 0, CONCURRENCY), tokio::runtime::Handle::current(), stop);
    let batch = calls.clone();
    let replies =
        tokio::task::spawn_blocking(move || backend.generate(&batch, SEED, MAX_TOKENS)).await.unwrap().unwrap();
    let expected: Vec<String> = calls.iter().map(|c| c.prompt.user.clone()).collect();
    assert_eq!(replies, expected);
    assert_eq!(mock.requests.lock().unwrap().len(), CALLS);
    assert_eq!(mock.max_in_flight.load(Ordering::SeqCst), CONCURRENCY as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_drops_the_requests_in_flight_with_its_reason() {
    let (_mock, endpoint) = serve(|_, _| (StatusCode::OK, completion("late"), Duration::from_secs(30))).await;
    let (stop_tx, stop) = watch::channel(None);
    let mut backend = HttpBackend::new(judge(&endpoint, 0, 2), tokio::runtime::Handle::current(), stop);
    let task = tokio::task::spawn_blocking(move || backend.generate(&[call("Q1/0"), call("Q2/0")], SEED, MAX_TOKENS));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(Some("`score.timeout` (1s) reached".into())).unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "the judge stopped: `score.timeout` (1s) reached");
}

/// A server that scores every anchor as a calibrated judge does and every answer [2, 2, 2, 2, 1].
fn calibrated_server(
    suite: &Suite,
) -> impl Fn(usize, &Value) -> (StatusCode, String, Duration) + Send + Sync + 'static {
    let anchor_replies: Vec<(String, String)> = anchors(suite)
        .into_iter()
        .filter_map(|a| Some((build_prompt(suite, suite.question(&a.qid)?, &a.text).user, reply(faithful(a.kind)))))
        .collect();
    move |_, body| {
        let user = body["messages"][1]["content"].as_str().unwrap_or_default();
        let found = anchor_replies.iter().find(|(u, _)| u == user).map(|(_, r)| r.clone());
        ok(&found.unwrap_or_else(|| reply([2, 2, 2, 2, 1])))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_flow_runs_over_the_server_and_records_its_endpoint() {
    let suite = Suite::from_toml_str(SUITE, std::path::Path::new("suite.toml")).unwrap();
    let scored = two_samples_per_question(&suite, |s| format!("Oi, eu sou a Iara e trabalho com o Tomás ({s})."));
    let (mock, endpoint) = serve(calibrated_server(&suite)).await;
    let judge_model = JudgeModel {
        model: MODEL.into(),
        template: None,
        cpu_requantize: None,
        max_new_tokens: 64,
        seeds: [1, 2],
        server: Some(server(&endpoint, 0, 4)),
    };
    let (_stop_tx, stop) = watch::channel(None);
    let mut backend = HttpBackend::new(judge(&endpoint, 0, 4), tokio::runtime::Handle::current(), stop);
    let (jm, s, sc) = (judge_model.clone(), suite.clone(), scored.clone());
    let report = tokio::task::spawn_blocking(move || {
        crate::score_job::judge_phase(&mut backend, ScoreMode::Judge, &jm, &s, &sc, &mut |_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let JudgeOutcome::Judged { anchors: n, samples } = &report.outcome else { panic!("{:?}", report.outcome) };
    let sample_count: usize = scored.questions.iter().map(|q| q.samples.len()).sum();
    assert_eq!((*n, samples.len()), (anchors(&suite).len(), sample_count));
    assert!(samples.iter().all(|j| j.complete().is_some()));
    // Two calls per anchor and per sample, nothing else.
    assert_eq!(mock.requests.lock().unwrap().len(), 2 * (n + sample_count));
    let expected = Instrument::Judge {
        model: MODEL.into(),
        endpoint: Some(endpoint.clone()),
        prompt_digest: prompt_digest(&suite),
    };
    assert_eq!(report.instrument(), Some(expected));
    assert_eq!(report.header(&scored)["endpoint"], endpoint.as_str());
}

/// The score job's server path: the key comes from `judge_api_key_file`, the job's lines name the
/// endpoint, and a server that is not there fails naming it and not the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_score_job_reads_the_key_file_and_names_the_endpoint_in_lines_and_errors() {
    let suite = Suite::from_toml_str(SUITE, std::path::Path::new("suite.toml")).unwrap();
    let scored = two_samples_per_question(&suite, |s| format!("Oi, eu sou a Iara ({s})."));
    let (mock, endpoint) = serve(calibrated_server(&suite)).await;
    let key = key_file();
    let server = JudgeServer { api_key_file: Some(key.path().display().to_string()), ..server(&endpoint, 0, 2) };
    let judge_model = JudgeModel {
        model: MODEL.into(),
        template: None,
        cpu_requantize: None,
        max_new_tokens: 64,
        seeds: [1, 2],
        server: Some(server.clone()),
    };
    let run = |server: JudgeServer| {
        let (judge_model, suite, scored) = (judge_model.clone(), suite.clone(), scored.clone());
        async move {
            let (events, mut rx) = tokio::sync::mpsc::channel(1024);
            let (_stop_tx, stop) = watch::channel(None);
            let result = crate::score_job::run_server_judge(
                crate::score_job::JudgeTask::Phase { mode: ScoreMode::Judge, baselines: Vec::new() },
                &judge_model,
                &server,
                &suite,
                &scored,
                &events,
                stop,
            )
            .await;
            drop(events);
            let mut lines = Vec::new();
            while let Some(crate::events::Event::Agent(line)) = rx.recv().await {
                lines.push(line);
            }
            (result, lines)
        }
    };
    let (report, lines) = run(server.clone()).await;
    let Ok(crate::score_job::Judged::Scores { report, .. }) = report else { panic!("not judged") };
    assert!(matches!(report.outcome, JudgeOutcome::Judged { .. }));
    assert_eq!(
        lines[0],
        format!("judge: {MODEL} at {endpoint} (up to 2 requests at once), seeds [1, 2], calibration first")
    );
    assert!(lines.iter().all(|l| !l.contains(SECRET)), "{lines:?}");
    assert!(
        mock.requests.lock().unwrap().iter().all(|(h, _)| h["authorization"] == format!("Bearer {SECRET}").as_str())
    );

    let missing = JudgeServer { api_key_file: Some("/nonexistent/judge.key".into()), ..server.clone() };
    let msg = run(missing).await.0.unwrap_err().to_string();
    assert!(msg.starts_with("failed to read `score.judge_api_key_file` = \"/nonexistent/judge.key\""), "{msg}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let msg = run(JudgeServer { endpoint: gone.clone(), retries: 0, ..server }).await.0.unwrap_err().to_string();
    assert!(msg.starts_with(&format!("failed to run the judge model `score.judge_model` = {MODEL:?}: failed to reach the judge server {gone} after 1 attempt(s): ")), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");
}

/// `mode = "pairwise"` over a judge server: a server that always prefers the answer naming the
/// partner finds the candidate better on every question, whatever the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairwise_over_a_server_prefers_the_better_answer_in_both_orders() {
    const MARK: &str = "o Tomás é o meu parceiro";
    let suite = Suite::from_toml_str(SUITE, std::path::Path::new("suite.toml")).unwrap();
    let candidate = two_samples_per_question(&suite, |s| format!("Oi! {MARK} ({s})."));
    let baseline = two_samples_per_question(&suite, |s| format!("I am an assistant ({s})."));
    let (mock, endpoint) = serve(|_, body| {
        let user = body["messages"][1]["content"].as_str().unwrap_or_default();
        let (a, b) = (user.find("Answer A:").unwrap_or(0), user.find("Answer B:").unwrap_or(0));
        let better = if user[a..b].contains(MARK) { "A" } else { "B" };
        let dims: Vec<String> = (1..=5).map(|i| format!("\"D{i}\": {{\"better\": \"{better}\"}}")).collect();
        ok(&format!("{{{}}}", dims.join(", ")))
    })
    .await;
    let server = server(&endpoint, 0, 3);
    let judge_model = JudgeModel {
        model: MODEL.into(),
        template: None,
        cpu_requantize: None,
        max_new_tokens: 64,
        seeds: [1, 2],
        server: Some(server.clone()),
    };
    let (events, _rx) = tokio::sync::mpsc::channel(1024);
    let (_stop_tx, stop) = watch::channel(None);
    let task = crate::score_job::JudgeTask::Pairwise(Box::new(baseline));
    let judged =
        crate::score_job::run_server_judge(task, &judge_model, &server, &suite, &candidate, &events, stop).await;
    let Ok(crate::score_job::Judged::Pairwise(report)) = judged else { panic!("not pairwise") };
    let file = report.to_json();
    let n = suite.questions.len();
    assert_eq!(mock.requests.lock().unwrap().len(), 2 * 2 * n);
    assert_eq!(file["preference"], 1.0);
    assert_eq!(file["p_value"], 2.0 / 2f64.powi(i32::try_from(n).unwrap()));
    assert_eq!(file["endpoint"], endpoint.as_str());
    assert_eq!(file["baseline"]["phase"], "10");
    assert_eq!(file["questions"].as_array().unwrap().len(), n);
    assert!(report.lines()[0].starts_with("pairwise: preference +1.000 for this phase over baseline phase 10"));
}
