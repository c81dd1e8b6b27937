//! A run with `[eval]`, `[score]` and `[gate]` end to end, in process: a coordinator on
//! 127.0.0.1:0 with the bundled persona-v1 history imported, one real agent with its own model
//! cache, and a tiny random llama model written at test time. The agent generates for real (the
//! answers are gibberish), scores them, and the coordinator's gate judges the phase.
//!
//! `real_smollm2_when_cached_*` does the same with the real SmolLM2-135M-Instruct when it is in the
//! model cache (`PHASEGATE_MODEL_CACHE`, else the default cache) and says that it skips otherwise.
//! It also skips in debug builds, where candle needs over ten minutes for what takes seconds
//! optimised: `.ci/run` runs it with `cargo test --release` after `phasegate models pull`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use phasegate_coordinator::history::History;
use phasegate_coordinator::{AccessFile, ServeConfig, ShellConfig};
use phasegate_proto::client::{ControlClient, channel, control_client};
use phasegate_proto::pb;

const DATASET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/persona-v1");
const SMOLLM2: &str = "smollm2-135m-instruct";

/// The eval-only phase spec the tests submit; `{model}`, `{tokens}` and the `[score]` keys `{score}`
/// are filled in by [`spec`].
const SPEC: &str = r#"
experiment = "persona-v1"
phase = "10"
parent = "9"
description = "eval of a base model"

[eval]
model = "{model}"
suite = "suite.toml"
max_new_tokens = {tokens}
temperature = 0.7
samples = 2
seed = 11
max_batch = 16

[score]
{score}

[gate]
config = "gate.toml"
"#;

/// The `[score]` section of the rules-only runs with the tiny test dictionary, on which the suite's
/// anchors cannot score in their bands: calibration is off ([`RULES_CALIBRATED`] is the default).
const RULES: &str = "mode = \"rules\"\ncalibration = false";
/// The `[score]` section with calibration enforced, as a spec gets it by default.
const RULES_CALIBRATED: &str = r#"mode = "rules""#;

fn spec(model: &str, tokens: u32, score: &str) -> String {
    SPEC.replace("{model}", model).replace("{tokens}", &tokens.to_string()).replace("{score}", score)
}

/// A Portuguese dictionary of a few words where the rules scorer looks for one: the tests need no
/// downloaded dictionary (the tiny model's answers are gibberish to any dictionary).
fn write_tiny_dictionary(cache: &Path) {
    let dir = phasegate_score::dictionary_dir(cache, phasegate_score::Language::Pt);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.aff"), "SET UTF-8\n").unwrap();
    std::fs::write(dir.join("index.dic"), "3\neu\nsou\na\n").unwrap();
}

/// A coordinator and one agent in this process; dropping `stop` ends both.
struct Local {
    control: ControlClient,
    data_dir: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn import_history(data_dir: &Path) {
    let history = History::create(data_dir).await.unwrap();
    for phase in ["6", "7", "8", "9"] {
        let dir = Path::new(DATASET).join(format!("history/phase{phase}"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let options = gate_rules::import::ImportOptions {
            phase: Some(phase.to_owned()),
            scorer: Some(gate_rules::InstrumentKind::Human),
            ..Default::default()
        };
        let parsed = gate_rules::import::load_files_with(&files, "persona-v1", &options).unwrap();
        history.import_phase(parsed, true).await.unwrap();
    }
}

async fn start(root: &Path, model_cache: &Path) -> Local {
    let data_dir = root.join("data");
    import_history(&data_dir).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shell = ShellConfig { model_cache: Some(model_cache.to_owned()), ..ShellConfig::default() };
    let config = ServeConfig { data_dir: data_dir.clone(), shell, tls: None };
    let mut server_stop = stop_rx.clone();
    tokio::spawn(phasegate_coordinator::run(config, grpc, http, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    let access_path = data_dir.join("access.toml");
    let access = loop {
        if let Ok(a) = AccessFile::load(&access_path) {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let agent = phasegate_agent::AgentConfig {
        coordinator: access.address.clone(),
        token: access.agent_token.clone(),
        ca_pem: None,
        name: "eval-agent".into(),
        labels: Vec::new(),
        work_dir: root.join("agent"),
        max_jobs: 1,
        python_packages: Some(Vec::new()),
        grace: Duration::from_secs(2),
        lease_wait: Duration::from_secs(2),
        model_cache: model_cache.to_owned(),
        keep_job_dirs: phasegate_agent::DEFAULT_KEEP_JOB_DIRS,
        drain_timeout: phasegate_agent::DEFAULT_DRAIN_TIMEOUT,
    };
    let probe = Arc::new(phasegate_agent::caps::FakeGpuProbe::default());
    let mut agent_stop = stop_rx;
    tokio::spawn(phasegate_agent::run(agent, probe, async move {
        let _ = agent_stop.wait_for(|s| *s).await;
    }));
    let mut control = control_client(channel(&access.address, None).unwrap(), &access.client_token).unwrap();
    // A run no registered agent fits fails at submission: wait for the agent first.
    for _ in 0..500 {
        let agents = control.list_agents(pb::ListAgentsRequest {}).await.unwrap().into_inner().agents;
        if agents.iter().any(|a| a.online) {
            return Local { control, data_dir, stop };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the agent did not register");
}

/// The bundled suite; with `short_prompt`, its persona system prompt cut to one sentence (the
/// tiny model's context of 1024 positions cannot hold the real prompt in its tiny vocabulary).
fn suite(short_prompt: bool) -> String {
    let text = std::fs::read_to_string(Path::new(DATASET).join("suite.toml")).unwrap();
    if !short_prompt {
        return text;
    }
    let start = text.find("system_prompt = \"\"\"").expect("the suite has a system_prompt block");
    let end = start + 20 + text[start + 20..].find("\"\"\"").expect("the system_prompt block ends");
    format!(
        "{}system_prompt = \"Você é a Iara, parceira de programação do Tomás.\"{}",
        &text[..start],
        &text[end + 3..]
    )
}

/// Packs a bundle of the spec with `suite` and the bundled gate config, uploads it and submits
/// (every stage runs: no cached results).
async fn submit(local: &mut Local, root: &Path, spec: &str, suite: &str) -> u64 {
    submit_with(local, root, spec, suite, &[], true).await
}

/// [`submit`] with more files in the bundle and the cache read unless `no_cache`.
async fn submit_with(
    local: &mut Local,
    root: &Path,
    spec: &str,
    suite: &str,
    files: &[(&str, &str)],
    no_cache: bool,
) -> u64 {
    let dir = root.join("spec");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::copy(Path::new(DATASET).join("gate.toml"), dir.join("gate.toml")).unwrap();
    std::fs::write(dir.join("suite.toml"), suite).unwrap();
    std::fs::write(dir.join("phase.toml"), spec).unwrap();
    let bundle = phasegate_agent::bundle::pack(&dir, 16 << 20).unwrap();
    let header = pb::ArtifactHeader {
        name: "source-bundle.tar.gz".into(),
        size: bundle.bytes.len() as u64,
        sha256: bundle.sha256.clone(),
        ..Default::default()
    };
    let chunks = vec![
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header)) },
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(bundle.bytes)) },
    ];
    local.control.upload_bundle(futures::stream::iter(chunks)).await.unwrap();
    let request = pb::SubmitRunRequest {
        spec_toml: spec.to_owned(),
        spec_path: "spec/phase.toml".into(),
        bundle_sha256: bundle.sha256,
        trigger: Some(pb::Trigger::default()),
        no_cache,
        ..Default::default()
    };
    local.control.submit_run(request).await.unwrap().into_inner().run_id
}

async fn wait_for_end(control: &mut ControlClient, run_id: u64, timeout: Duration) -> pb::Run {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let run = control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
        if matches!(run.state.as_str(), "succeeded" | "failed" | "cancelled") {
            return run;
        }
        assert!(tokio::time::Instant::now() < deadline, "run {run_id} did not end in {timeout:?}: {run:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job<'a>(run: &'a pb::Run, stage: &str) -> &'a pb::Job {
    run.jobs.iter().find(|j| j.stage == stage).unwrap_or_else(|| panic!("no {stage} job in {run:?}"))
}

/// Runs the spec for `model` and checks everything a finished eval → score → gate run must hold.
async fn run_and_check(model_cache: &Path, model: &str, tokens: u32, timeout: Duration) -> gate_rules::Phase {
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), model_cache).await;
    let score = if model == "tiny" { RULES } else { RULES_CALIBRATED };
    let run_id = submit(&mut local, root.path(), &spec(model, tokens, score), &suite(model == "tiny")).await;
    let run = wait_for_end(&mut local.control, run_id, timeout).await;
    assert_eq!(run.state, "succeeded", "{}\n{run:?}", run.error);
    let stages: Vec<&str> = run.jobs.iter().map(|j| j.stage.as_str()).collect();
    assert_eq!(stages, ["eval", "score", "gate"]);
    let eval = job(&run, "eval");
    assert_eq!(eval.artifacts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["eval/responses.json"]);
    assert_eq!(job(&run, "score").artifacts[0].name, "score/scores.json");
    assert!(["pass", "warn", "fail", "inconclusive"].contains(&run.verdict.as_str()), "verdict {:?}", run.verdict);
    assert!(run.report.contains("phase 10"), "{}", run.report);
    // The hand-scored history was re-scored by the candidate's rules scorer in the gate stage.
    assert!(run.report.contains("re-scored from its stored responses"), "{}", run.report);
    assert!(!run.report.contains("not comparable"), "{}", run.report);
    let _ = local.stop.send(true);
    let phase = History::open(&local.data_dir).await.unwrap().run_phase(run_id).await.unwrap();
    check_phase(&phase, tokens);
    phase
}

fn check_phase(phase: &gate_rules::Phase, tokens: u32) {
    assert_eq!((phase.label.as_str(), phase.accepted), ("10", false));
    assert_eq!(phase.eval.len(), 8, "the bundled suite's 8 questions");
    for q in &phase.eval {
        assert_eq!(q.samples.len(), 2, "K = 2 samples of {}", q.id);
        for s in &q.samples {
            assert_eq!(s.dimensions.len(), 5, "{}", q.id);
            assert!(s.dimensions.iter().all(|d| d.reason.is_some()), "{}", q.id);
            assert!(s.seed.is_some() && s.response.is_some(), "{}", q.id);
        }
    }
    let generation = |key: &str| phase.generation.iter().find(|e| e.key == key).map(|e| e.value.clone());
    assert_eq!(generation("max_new_tokens"), Some(tokens.to_string()));
    assert_eq!(generation("samples").as_deref(), Some("2"));
    assert_eq!(generation("repetition_penalty_scope").as_deref(), Some("all"));
    for key in ["dtype", "batch_size", "eval_engine", "gpu", "os", "phasegate"] {
        assert!(phase.environment.contains_key(key), "environment lacks {key}: {:?}", phase.environment);
    }
    assert_eq!(phase.environment["batch_size"], "16");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_model_run_generates_scores_and_gates() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let phase = run_and_check(cache.path(), "tiny", 12, Duration::from_secs(120)).await;
    assert_eq!(phase.config_value("model"), Some("tiny"));
}

/// Result caching by digest, end to end: the same spec submitted again, with only an ignored file
/// changed, runs no agent stage (lint, eval and score reuse the first run's jobs, nothing is
/// leased) and the gate gives the same verdict; a changed dataset line re-runs the lint, the one stage that reads it, while the eval
/// of the base model and its score stay cached; `no_cache` runs everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_spec_again_is_cached_and_a_changed_dataset_line_reruns_only_its_reader() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    let data_dir = local.data_dir.clone();
    let spec = format!("{}\n[lint]\ndatasets = [\"data/train.jsonl\"]\nmax_length = 4000\n", spec("tiny", 8, RULES));
    let clean = std::fs::read_to_string(Path::new(DATASET).join("../lint-fixture/clean.jsonl")).unwrap();
    let suite = suite(true);
    // A file `.phasegateignore` keeps out of the bundle changes with every submission, as notes
    // a PR edits beside the experiment do: it must not stop the cache.
    let mut submitted = 0;
    let mut submit_data = async |data: &str, no_cache: bool| {
        submitted += 1;
        let note = format!("notes of submission {submitted}");
        let files = [("data/train.jsonl", data), (".phasegateignore", "notes.md\n"), ("notes.md", &note)];
        let run_id = submit_with(&mut local, root.path(), &spec, &suite, &files, no_cache).await;
        let run = wait_for_end(&mut local.control, run_id, Duration::from_secs(120)).await;
        assert_eq!(run.state, "succeeded", "{}\n{run:?}", run.error);
        run
    };
    let first = submit_data(&clean, false).await;
    assert!(first.jobs.iter().all(|j| j.cached_from.is_none()), "nothing to reuse yet: {first:?}");
    // The gate's report carries what the lint saw in the data, and the phase its identity.
    assert!(first.report.contains("### Data") && first.report.contains("10 examples (sharegpt)"), "{}", first.report);
    let stored = History::open(&data_dir).await.unwrap().run_phase(first.id).await.unwrap();
    let dataset = stored.dataset.expect("the lint's dataset digest and size go with the phase");
    assert_eq!(dataset.size, Some(10));

    let started = std::time::Instant::now();
    let second = submit_data(&clean, false).await;
    let took = started.elapsed();
    for stage in ["lint", "eval", "score"] {
        let (was, now) = (job(&first, stage), job(&second, stage));
        assert_eq!(now.cached_from, Some(was.id), "{stage}: {second:?}");
        assert_eq!(now.cached_from_run, Some(first.id));
        assert!(now.attempts == 0 && now.history.is_empty() && now.agent.is_empty(), "{stage} never leased: {now:?}");
        assert_eq!(now.artifacts, was.artifacts, "{stage} keeps the first run's artifacts");
    }
    let gate = job(&second, "gate");
    assert!(gate.cached_from.is_none(), "the gate judges again against today's history");
    assert_eq!(second.verdict, first.verdict);
    assert!(second.report.contains("_Cached: lint (run 1), eval (run 1), score (run 1)"), "{}", second.report);
    eprintln!("the cached run took {:.2} s from submit to verdict", took.as_secs_f64());

    let mut lines: Vec<&str> = clean.lines().collect();
    let edited = lines[0].replacen("Tomás", "o Tomás mesmo", 1);
    assert_ne!(edited, lines[0], "the edit changes the line");
    lines[0] = &edited;
    let third = submit_data(&(lines.join("\n") + "\n"), false).await;
    assert!(job(&third, "lint").cached_from.is_none() && job(&third, "lint").attempts == 1, "{third:?}");
    assert_eq!(job(&third, "eval").cached_from, Some(job(&first, "eval").id), "the eval does not read the dataset");
    assert_eq!(job(&third, "score").cached_from, Some(job(&first, "score").id));

    let fourth = submit_data(&clean, true).await;
    assert!(
        fourth.jobs.iter().all(|j| j.cached_from.is_none() && (j.stage == "gate" || j.attempts == 1)),
        "{fourth:?}"
    );
    let _ = local.stop.send(true);
}

/// Without `lint.baseline`, the lint diffs the run's dataset against the one the experiment's
/// newest accepted phase trained on (from that run's bundle): a PR sees "+2 added, −1 removed"
/// with no baseline file kept by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lint_diffs_against_the_accepted_phases_dataset_when_no_baseline_is_given() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    let lint = "\n[lint]\ndatasets = [\"data/train.jsonl\"]\nmax_length = 4000\n";
    let spec10 = format!("{}{lint}", spec("tiny", 8, RULES));
    let clean = std::fs::read_to_string(Path::new(DATASET).join("../lint-fixture/clean.jsonl")).unwrap();
    let suite = suite(true);
    let files = [("data/train.jsonl", clean.as_str())];
    let first = submit_with(&mut local, root.path(), &spec10, &suite, &files, true).await;
    let first = wait_for_end(&mut local.control, first, Duration::from_secs(120)).await;
    assert_eq!(first.state, "succeeded", "{first:?}");
    let no_diff = artifact(&local, job(&first, "lint"), "lint/report.json");
    assert!(no_diff["diff"].is_null(), "phase 10 has no accepted dataset to diff against: {no_diff}");
    History::open(&local.data_dir).await.unwrap().accept("persona-v1", "10").await.unwrap();

    // Phase 11 drops the first example and adds two.
    let mut lines: Vec<String> = clean.lines().skip(1).map(str::to_owned).collect();
    for q in ["Você gosta de Rust?", "O que o Tomás faz?"] {
        let turns = serde_json::json!({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": "Gosto, e ele também."}]});
        lines.push(turns.to_string());
    }
    let spec11 = spec10.replace("phase = \"10\"", "phase = \"11\"").replace("parent = \"9\"", "parent = \"10\"");
    let data = lines.join("\n") + "\n";
    let second = submit_with(&mut local, root.path(), &spec11, &suite, &[("data/train.jsonl", &data)], true).await;
    let second = wait_for_end(&mut local.control, second, Duration::from_secs(120)).await;
    assert_eq!(second.state, "succeeded", "{second:?}");
    let report = artifact(&local, job(&second, "lint"), "lint/report.json");
    let diff = &report["diff"];
    assert_eq!((diff["before"].as_u64(), diff["after"].as_u64()), (Some(10), Some(11)), "{report}");
    assert_eq!((diff["added"].as_u64(), diff["removed"].as_u64()), (Some(2), Some(1)), "{report}");
    assert!(second.report.contains("diff: 10 → 11 examples, +2 added, −1 removed"), "{}", second.report);
    let _ = local.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_scorer_that_misses_an_anchor_fails_the_score_job_naming_it() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    // With a dictionary of three words, the ideal anchors read as word salad.
    let run_id = submit(&mut local, root.path(), &spec("tiny", 8, RULES_CALIBRATED), &suite(true)).await;
    let run = wait_for_end(&mut local.control, run_id, Duration::from_secs(120)).await;
    assert_eq!(run.state, "failed", "{run:?}");
    let score = job(&run, "score");
    assert!(score.error.contains("calibration anchor"), "{}", score.error);
    assert!(score.error.contains("Q1 ideal anchor scored"), "{}", score.error);
    assert!(score.error.contains("score.calibration = false"), "{}", score.error);
    let _ = local.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_of_a_model_missing_from_the_cache_fails_naming_it() {
    let cache = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    let run_id = submit(&mut local, root.path(), &spec("no-such-model", 8, RULES), &suite(true)).await;
    let run = wait_for_end(&mut local.control, run_id, Duration::from_secs(60)).await;
    assert_eq!(run.state, "failed");
    let eval = job(&run, "eval");
    assert!(eval.error.contains("eval.model") && eval.error.contains("no-such-model"), "{}", eval.error);
    assert!(eval.error.contains("phasegate models pull"), "{}", eval.error);
    let _ = local.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_smollm2_when_cached_runs_eval_score_gate() {
    if cfg!(debug_assertions) {
        eprintln!(
            "skipping real_smollm2_when_cached_runs_eval_score_gate: debug build (candle is too slow unoptimised); \
             run it with `cargo test --release -p phasegate --test eval_run real_smollm2`"
        );
        return;
    }
    let cache = phasegate_eval::models::default_cache_dir();
    if phasegate_eval::models::resolve(SMOLLM2, &cache).is_err() {
        // CI pulls the model first and sets this, so a missing model fails there instead of skipping.
        assert!(
            std::env::var_os("PHASEGATE_REQUIRE_REAL_MODEL").is_none(),
            "{SMOLLM2} is not in the model cache {} but PHASEGATE_REQUIRE_REAL_MODEL is set",
            cache.display()
        );
        eprintln!(
            "skipping real_smollm2_when_cached_runs_eval_score_gate: {SMOLLM2} is not in the model cache {} \
             (run `phasegate models pull {SMOLLM2}` or set PHASEGATE_MODEL_CACHE)",
            cache.display()
        );
        return;
    }
    let phase = run_and_check(&cache, SMOLLM2, 16, Duration::from_secs(300)).await;
    assert_eq!(phase.config_value("model"), Some(SMOLLM2));
    assert!(phase.environment["dtype"].starts_with("q4_1"), "{:?}", phase.environment);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_timeout_stops_generation_and_fails_the_eval_naming_it() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    // 8 questions x 8 samples x 600 tokens (2,400 decoding steps in batches of 16) take the tiny
    // model far longer than a second.
    let spec = spec("tiny", 600, RULES)
        .replace("samples = 2", "samples = 8")
        .replace("max_batch = 16", "max_batch = 16\ntimeout = \"1s\"");
    let started = std::time::Instant::now();
    let run_id = submit(&mut local, root.path(), &spec, &suite(true)).await;
    let run = wait_for_end(&mut local.control, run_id, Duration::from_secs(120)).await;
    assert_eq!(run.state, "failed", "{run:?}");
    let eval = job(&run, "eval");
    assert!(eval.error.contains("`eval.timeout` (1s) reached"), "{}", eval.error);
    assert!(started.elapsed() < Duration::from_secs(60), "the eval ran on after its timeout: {:?}", started.elapsed());
    let _ = local.stop.send(true);
}

/// [`suite`] with the short prompt, cut further so that a judge prompt fits the tiny model's context
/// of 1024 positions: a judge prompt holds the rubric, the question's expectations and the answer,
/// and for the first anchor of the bundled suite that is 1,891 tokens of the tiny vocabulary. The
/// dimensions lose their descriptions, the anchors of the newer kinds go, the questions with anchors
/// what they check (names, facts, false claims), and each anchor is one short line of its kind. The rule scorer's markers and
/// automatic zeros stay.
fn judge_suite() -> String {
    let mut suite: toml::Table = suite(true).parse().unwrap();
    for dimension in suite["rubric"]["dimensions"].as_array_mut().unwrap() {
        dimension.as_table_mut().unwrap().remove("description");
    }
    for question in suite["questions"].as_array_mut().unwrap() {
        let question = question.as_table_mut().unwrap();
        let Some(anchors) = question.get_mut("anchors").and_then(toml::Value::as_array_mut) else { continue };
        // The three original kinds keep the judge's calibration to nine short prompts.
        anchors.retain(|a| ["ideal", "generic", "contaminated"].contains(&a["kind"].as_str().unwrap_or_default()));
        for anchor in anchors {
            let text = match anchor["kind"].as_str().unwrap() {
                "ideal" => "Eu sou a Iara e o Tomás é o meu parceiro.",
                "generic" => "Como posso ajudar?",
                _ => "<|user|>",
            };
            anchor["text"] = toml::Value::from(text);
        }
        for key in ["name_self", "name_partner", "facts", "min_facts", "false_claims"] {
            question.remove(key);
        }
    }
    toml::to_string(&suite).unwrap()
}

/// The calibration anchors of [`judge_suite`], as the refusal names them. The random model's reply to
/// each is gibberish: "judge reply holds no JSON object: <excerpt>".
const ANCHORS: [&str; 9] = [
    "Q1 ideal anchor",
    "Q1 generic anchor",
    "Q1 contaminated anchor",
    "Q5 ideal anchor",
    "Q5 generic anchor",
    "Q5 contaminated anchor",
    "Q7 ideal anchor",
    "Q7 generic anchor",
    "Q7 contaminated anchor",
];

/// A `[score]` section in `mode` with the tiny model judging its own answers; 8 judge tokens keep
/// the calibration calls short.
fn tiny_judge(mode: &str) -> String {
    format!("mode = \"{mode}\"\njudge_model = \"tiny\"\njudge_max_new_tokens = 8\ncalibration = false")
}

/// The JSON artifact `name` of `job`, from the coordinator's content-addressed store
/// (`artifacts/ab/abcdef…` by sha256 in its data dir).
fn artifact(local: &Local, job: &pb::Job, name: &str) -> serde_json::Value {
    let a = job.artifacts.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no {name} in {job:?}"));
    let path = local.data_dir.join("artifacts").join(&a.sha256[..2]).join(&a.sha256);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The log lines of the run's `stage` job.
async fn log_lines(control: &mut ControlClient, run_id: u64, stage: &str) -> Vec<String> {
    use futures::StreamExt as _;
    let mut stream = control.fetch_logs(pb::FetchLogsRequest { run_id, follow: false }).await.unwrap().into_inner();
    let mut lines = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if chunk.stage == stage {
            lines.extend(chunk.lines.into_iter().map(|l| l.text));
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_mode_both_end_to_end_keeps_the_rules_scores_and_records_the_judges_refusal() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    // The same eval scored by the rules alone, then with the judge beside them: the eval is seeded,
    // so the two runs score the same answers.
    let mut ended = Vec::new();
    for score in [RULES.to_owned(), tiny_judge("both")] {
        let run_id = submit(&mut local, root.path(), &spec("tiny", 8, &score), &judge_suite()).await;
        ended.push(wait_for_end(&mut local.control, run_id, Duration::from_secs(120)).await);
    }
    let [rules_run, run] = <[pb::Run; 2]>::try_from(ended).unwrap();
    for r in [&rules_run, &run] {
        assert_eq!(r.state, "succeeded", "{}\n{r:?}", r.error);
        let stages: Vec<(&str, &str)> = r.jobs.iter().map(|j| (j.stage.as_str(), j.state.as_str())).collect();
        assert_eq!(stages, [("eval", "succeeded"), ("score", "succeeded"), ("gate", "succeeded")]);
        assert!(["pass", "warn", "fail", "inconclusive"].contains(&r.verdict.as_str()), "verdict {:?}", r.verdict);
    }
    let score = job(&run, "score");
    let summary: serde_json::Value = serde_json::from_str(&score.result_json).unwrap();
    assert_eq!(summary["judge"], serde_json::json!({ "model": "tiny", "refused": true }), "{summary}");

    // The scores file: the rules scorer's record, with the refusal in its `judge` object.
    let file = artifact(&local, score, "score/scores.json");
    assert_eq!((file["mode"].as_str(), file["scorer"].as_str()), (Some("both"), Some("rules")));
    let judge = &file["judge"];
    assert_eq!((judge["model"].as_str(), judge["max_new_tokens"].as_u64()), (Some("tiny"), Some(8)), "{judge}");
    let refused = judge["refused"].as_str().unwrap_or_else(|| panic!("no judge.refused in {judge}"));
    assert!(refused.starts_with("refused the judge: it misjudged 9 of 9 calibration anchors: "), "{refused}");
    for anchor in ANCHORS {
        assert!(refused.contains(&format!("{anchor}: judge reply holds no JSON object: ")), "{anchor}: {refused}");
    }
    for key in ["calibration", "samples", "agreed", "agreement_with_rules"] {
        assert!(judge.get(key).is_none(), "a refused judge has no {key}: {judge}");
    }
    let entries = file["scores"].as_array().unwrap();
    assert_eq!(entries.len(), 16, "8 questions x 2 samples");
    for entry in entries {
        // Only a judge that passed calibration annotates the samples (`judge`, `source`).
        for key in ["judge", "source", "rules_total"] {
            assert!(entry.get(key).is_none(), "{key} in {entry}");
        }
    }
    // Field for field the rules-only run's file, but for the mode and the judge object.
    let mut rules_file = artifact(&local, job(&rules_run, "score"), "score/scores.json");
    assert_eq!(rules_file["mode"], "rules");
    rules_file["mode"] = "both".into();
    rules_file["judge"] = file["judge"].clone();
    assert_eq!(file, rules_file);

    // What the gate imported and judged is that record, sample for sample and dimension for
    // dimension. (The second run's phase 10 replaced the first's in the history.)
    let lines = log_lines(&mut local.control, run.id, "score").await;
    let _ = local.stop.send(true);
    let phase = History::open(&local.data_dir).await.unwrap().run_phase(run.id).await.unwrap();
    check_phase(&phase, 8);
    let samples: Vec<&gate_rules::Sample> = phase.eval.iter().flat_map(|q| &q.samples).collect();
    assert_eq!(samples.len(), entries.len());
    for (sample, entry) in samples.into_iter().zip(entries) {
        assert_eq!(Some(sample.points), entry["total"].as_f64(), "{entry}");
        for d in &sample.dimensions {
            assert_eq!(serde_json::json!(d.score), entry[d.dimension.to_lowercase()]["score"], "{entry}");
        }
    }

    // The job's log says so too, after calibrating on every anchor with both seeds.
    assert!(lines.iter().any(|l| l == "judge: calibration 18/18 calls done"), "{lines:#?}");
    let line = format!("judge: {refused}; the rule scores stay the record");
    assert!(lines.contains(&line), "no {line:?} in {lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_mode_judge_end_to_end_fails_the_score_stage_naming_the_calibration() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    let run_id = submit(&mut local, root.path(), &spec("tiny", 8, &tiny_judge("judge")), &judge_suite()).await;
    let run = wait_for_end(&mut local.control, run_id, Duration::from_secs(120)).await;
    // The coordinator handed the job the best (7) and previous (9) accepted phases' answers, for
    // the judge to score too; the refusal came first.
    let lines = log_lines(&mut local.control, run_id, "score").await;
    for phase in ["7", "9"] {
        let line = format!("judge: scoring accepted phase {phase} too, the gate's baseline");
        assert!(lines.contains(&line), "{line:?} not in {lines:#?}");
    }
    let _ = local.stop.send(true);
    assert_eq!(run.state, "failed", "{run:?}");
    let stages: Vec<(&str, &str)> = run.jobs.iter().map(|j| (j.stage.as_str(), j.state.as_str())).collect();
    assert_eq!(stages, [("eval", "succeeded"), ("score", "failed"), ("gate", "cancelled")], "{run:?}");
    assert_eq!(job(&run, "gate").error, "skipped: stage score failed");
    let score = job(&run, "score");
    assert_eq!(run.error, format!("stage score failed: {}", score.error));
    assert!(score.artifacts.is_empty(), "a refused judge uploads no scores: {score:?}");
    assert!(score.error.starts_with("refused the judge: it misjudged 9 of 9 calibration anchors: "), "{}", score.error);
    for anchor in ANCHORS {
        let unreadable = format!("{anchor}: judge reply holds no JSON object: ");
        assert!(score.error.contains(&unreadable), "{anchor}: {}", score.error);
    }
    assert!(
        score.error.contains(
            "(`score.judge_model` = \"tiny\")\nhint: use a stronger judge model, or `score.mode = \"both\"` \
             to keep the rule scores and record the refusal"
        ),
        "{}",
        score.error
    );
    assert!(run.verdict.is_empty(), "a run without scores has no verdict: {:?}", run.verdict);
}

/// A mock OpenAI-compatible judge server on 127.0.0.1:0 that, asked which of two answers is
/// better, always picks the one that is phase 9's (the accepted phase's) stored answer: it sees
/// through the order, so both orders agree. Returns its endpoint and the pairwise prompts it saw.
async fn judge_preferring_phase_9() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let text = std::fs::read_to_string(Path::new(DATASET).join("history/phase9/eval_responses_phase9.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    let phase9: Vec<String> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["response"].as_str().unwrap().chars().take(40).collect())
        .collect();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let prompts = seen.clone();
    let reply = move |body: axum::body::Bytes| {
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let user = body["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str());
        let user = user.unwrap_or_default().to_owned();
        let (a, b) = (user.find("Answer A:").unwrap_or(0), user.find("Answer B:").unwrap_or(0));
        let a_is_phase9 = phase9.iter().any(|p| user[a..b.max(a)].contains(p.as_str()));
        let better = if a_is_phase9 { "A" } else { "B" };
        prompts.lock().unwrap().push(user);
        let dims: Vec<String> = (1..=5).map(|i| format!("\"D{i}\": {{\"better\": \"{better}\"}}")).collect();
        let content = format!("{{{}}}", dims.join(", "));
        let answer = serde_json::json!({ "id": "c", "object": "chat.completion", "choices": [{ "index": 0,
            "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }] });
        async move { answer.to_string() }
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(reply));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairwise_judging_against_the_accepted_phase_feeds_the_gates_own_comparison() {
    let cache = tempfile::tempdir().unwrap();
    phasegate_eval::tiny::write_tiny_gguf(cache.path());
    write_tiny_dictionary(cache.path());
    let root = tempfile::tempdir().unwrap();
    let mut local = start(root.path(), cache.path()).await;
    let (endpoint, prompts) = judge_preferring_phase_9().await;
    // No `baseline_responses`: the coordinator hands the score job accepted phase 9's answers.
    let score = format!(
        "mode = \"pairwise\"\njudge_model = \"judge-7b\"\njudge_endpoint = \"{endpoint}\"\ncalibration = false"
    );
    let run_id = submit(&mut local, root.path(), &spec("tiny", 8, &score), &suite(true)).await;
    let run = wait_for_end(&mut local.control, run_id, Duration::from_secs(120)).await;
    assert_eq!(run.state, "succeeded", "{}\n{run:?}", run.error);
    // Phase 9 keeps one answer per question, the candidate two: one pair per question, both orders.
    assert_eq!(prompts.lock().unwrap().len(), 2 * 8);
    let file = artifact(&local, job(&run, "score"), "score/scores.json");
    assert_eq!(file["pairwise"]["baseline"]["phase"], "9", "{}", file["pairwise"]);
    assert_eq!(file["pairwise"]["preference"], -1.0, "{}", file["pairwise"]);
    // The gate tested the preferences as their own comparison and failed on them.
    assert_eq!(run.verdict, "fail", "{}", run.report);
    let evaluation: serde_json::Value = serde_json::from_str(&run.evaluation_json).unwrap();
    let pairwise = &evaluation["pairwise"];
    assert_eq!(pairwise["baseline"], "9", "{pairwise}");
    assert_eq!(pairwise["judge"], format!("judge-7b at {endpoint}"), "{pairwise}");
    assert_eq!((pairwise["questions"].as_u64(), pairwise["baseline_preferred"].as_u64()), (Some(8), Some(8)));
    assert_eq!(pairwise["p_value"], 2.0 / 256.0, "{pairwise}");
    let finding = evaluation["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "pairwise");
    assert_eq!(finding.map(|f| f["severity"].clone()), Some(serde_json::json!("fail")), "{evaluation}");
    assert!(run.report.contains("## Pairwise judging"), "{}", run.report);
    assert!(run.report.contains("prefers phase 9's answers"), "{}", run.report);
    let lines = log_lines(&mut local.control, run_id, "score").await;
    assert!(lines.iter().any(|l| l == "pairwise: the baseline is accepted phase 9"), "{lines:#?}");
    let _ = local.stop.send(true);
}
