//! Result caching by digest: the key of each stage of a run, from everything its result depends
//! on. A stage whose key equals a succeeded job's is not run again; that job's metrics,
//! artifacts and result stand in for it.
//!
//! A key covers: the cache format and phasegate's version (engine, scorer and lint change with
//! it); the stage's work as parsed (command, env, globs; model, template, generation parameters
//! and seed; scorer mode and judge; lint settings); its input files' digests from the source
//! bundle — the whole bundle for a command stage, which may read any file; the suite,
//! `gate.toml` and baseline files for eval, score and lint; the dataset files for lint — and the
//! keys of the stages whose artifacts it reads (the fine-tune for eval, the eval for score). A
//! stage that does not read an earlier stage's output (an eval of a base model after a lint) does
//! not take its key: changing a dataset line re-runs the stages that read it, not the others.
//!
//! A stage that will run whatever the cache holds (`cache = false`, or a command without a source
//! bundle, whose inputs are the agent's files) gets a key no later run can meet, so the stages
//! reading its fresh artifacts run too; `--no-cache` and nightly runs look nothing up but record
//! their keys. The gate is never
//! cached (it judges against the history of the day). A model named by cache name or path is
//! keyed by that name: the coordinator cannot read an agent's model file.
//!
//! Pure: the caller reads the bundle's file digests ([`bundle_digests`]) and the store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use phasegate_proto::domain::Stage;
use phasegate_proto::spec::{StagePlan, StageWork};

/// Bumped when what a key covers changes, so older keys are never met again.
const FORMAT: &str = "phasegate-stage-cache 1";

/// Largest bundle file hashed for a key; a bigger one is keyed by the bundle's digest.
const MAX_HASHED_FILE: u64 = 1 << 30;

/// The digest of a bundle file a key needs, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileDigest {
    Sha256(String),
    Missing,
}

/// How the run reads the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheUse {
    /// Reuse what matches and record what runs.
    ReadWrite,
    /// `--no-cache` or a nightly run: run everything, still record it for later runs.
    WriteOnly,
}

/// One stage's key, and whether the cache may stand in for it in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageKey {
    pub key: String,
    pub lookup: bool,
}

/// The bundle files the keys of `plans` read (relative to the spec's directory).
pub(crate) fn files_needed(plans: &[StagePlan]) -> BTreeSet<String> {
    plans.iter().flat_map(|p| files_read(&p.work)).map(str::to_owned).collect()
}

/// The bundle files one stage's result depends on besides its work (a command's is the whole
/// bundle, keyed apart).
fn files_read(work: &StageWork) -> Vec<&str> {
    let mut files: Vec<&str> = Vec::new();
    match work {
        StageWork::Lint(l) => {
            files.extend(l.datasets.iter().chain(&l.baseline).map(String::as_str));
            files.extend(l.suite.iter().chain(&l.config).map(String::as_str));
        }
        StageWork::Eval(e) => files.push(&e.suite),
        StageWork::Score(s) => {
            files.push(&s.suite);
            files.extend(s.baseline_responses.as_deref());
        }
        StageWork::Command(_) | StageWork::Gate(_) => {}
    }
    files
}

/// The key of every plan (`None` for the gate), in plan order. `nonce` is unique to the run: it
/// makes the keys of stages that will run anyway unmatchable.
pub(crate) fn stage_keys(
    plans: &[StagePlan],
    bundle_sha256: &str,
    files: &BTreeMap<String, FileDigest>,
    cache_use: CacheUse,
    nonce: &str,
) -> Vec<Option<StageKey>> {
    let mut keys: BTreeMap<Stage, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let Some(work) = work_json(&plan.work) else {
            out.push(None);
            continue;
        };
        let mut h = Sha256::new();
        let mut line = |label: &str, value: &str| {
            h.update(label.as_bytes());
            h.update([0]);
            h.update(value.as_bytes());
            h.update([b'\n']);
        };
        line("format", FORMAT);
        line("version", env!("CARGO_PKG_VERSION"));
        line("stage", plan.stage.as_str());
        line("work", &work);
        for (name, digest) in input_files(&plan.work, files) {
            let digest = match digest {
                FileDigest::Sha256(d) => d.as_str(),
                FileDigest::Missing => "missing",
            };
            line(&format!("file {name}"), digest);
        }
        if matches!(plan.work, StageWork::Command(_)) {
            line("bundle", bundle_sha256);
        }
        for upstream in reads_from(&plan.work) {
            if let Some(k) = keys.get(upstream) {
                line(&format!("upstream {}", upstream.as_str()), k);
            }
        }
        // A command without a source bundle runs whatever its agent holds: nothing says its
        // inputs are unchanged.
        let cacheable = plan.cache && !(matches!(plan.work, StageWork::Command(_)) && bundle_sha256.is_empty());
        let lookup = cacheable && cache_use == CacheUse::ReadWrite;
        if !cacheable {
            // Runs every time: neither it nor what reads its output may ever be met again.
            line("nonce", nonce);
        }
        let key = hex(&h.finalize());
        keys.insert(plan.stage, key.clone());
        out.push(Some(StageKey { key, lookup }));
    }
    out
}

/// The stages whose artifacts a stage reads.
fn reads_from(work: &StageWork) -> &'static [Stage] {
    match work {
        StageWork::Eval(_) => &[Stage::Finetune],
        StageWork::Score(_) => &[Stage::Eval],
        StageWork::Lint(_) | StageWork::Command(_) | StageWork::Gate(_) => &[],
    }
}

/// The stage's work as canonical JSON; `None` for the gate (never cached).
fn work_json(work: &StageWork) -> Option<String> {
    let value = match work {
        StageWork::Lint(l) => serde_json::to_value(l).ok()?,
        StageWork::Eval(e) => serde_json::to_value(e).ok()?,
        StageWork::Score(s) => serde_json::to_value(s).ok()?,
        StageWork::Command(c) => serde_json::json!({
            "command": c.command,
            "env": c.env,
            "metrics": c.metrics,
            "artifacts": c.artifacts,
            "timeout_ms": c.timeout.as_millis() as u64,
        }),
        StageWork::Gate(_) => return None,
    };
    Some(value.to_string())
}

fn input_files<'a>(work: &StageWork, files: &'a BTreeMap<String, FileDigest>) -> Vec<(&'a str, &'a FileDigest)> {
    let wanted = files_read(work);
    files.iter().filter(|(name, _)| wanted.contains(&name.as_str())).map(|(n, d)| (n.as_str(), d)).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of each wanted file of a source bundle (a `.tar.gz`), read in one pass. Blocking.
pub(crate) fn bundle_digests(bundle: &Path, wanted: &BTreeSet<String>) -> Result<BTreeMap<String, FileDigest>, String> {
    let mut out: BTreeMap<String, FileDigest> = wanted.iter().map(|w| (w.clone(), FileDigest::Missing)).collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let file = std::fs::File::open(bundle).map_err(|e| format!("failed to open the source bundle: {e}"))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.to_string_lossy().trim_start_matches("./").to_owned();
        let Some(slot) = out.get_mut(&path) else { continue };
        let mut hasher = Sha256::new();
        let mut limited = entry.take(MAX_HASHED_FILE);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = limited.read(&mut buf).map_err(|e| format!("failed to read {path} from the bundle: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        *slot = FileDigest::Sha256(hex(&hasher.finalize()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phasegate_proto::spec::PhaseSpec;

    const SPEC: &str = r#"
experiment = "e"
phase = "1"

[lint]
datasets = ["data/train.jsonl"]

[finetune]
command = ["python3", "train.py"]

[eval]
model = "smollm2-135m-instruct"
suite = "suite.toml"
adapter = "output/adapter"
seed = 7

[score]

[gate]
config = "gate.toml"
"#;

    fn files(train: &str, suite: &str) -> BTreeMap<String, FileDigest> {
        [("data/train.jsonl", train), ("suite.toml", suite)]
            .into_iter()
            .map(|(n, d)| (n.to_owned(), FileDigest::Sha256(d.to_owned())))
            .collect()
    }

    fn keys(spec: &str, bundle: &str, files: &BTreeMap<String, FileDigest>, nonce: &str) -> Vec<Option<String>> {
        let plans = PhaseSpec::parse(spec, "p.toml").unwrap().stages();
        stage_keys(&plans, bundle, files, CacheUse::ReadWrite, nonce).into_iter().map(|k| k.map(|k| k.key)).collect()
    }

    #[test]
    fn the_same_inputs_give_the_same_keys_and_the_gate_has_none() {
        let a = keys(SPEC, "b1", &files("t1", "s1"), "run-1");
        assert_eq!(a, keys(SPEC, "b1", &files("t1", "s1"), "run-2"), "the run itself is not an input");
        assert_eq!(a.len(), 5);
        assert!(a[..4].iter().all(Option::is_some) && a[4].is_none(), "{a:?}");
        let distinct: BTreeSet<_> = a.iter().flatten().collect();
        assert_eq!(distinct.len(), 4, "every stage has its own key");
    }

    #[test]
    fn a_change_reruns_the_stages_that_read_it_and_only_those() {
        let base = keys(SPEC, "b1", &files("t1", "s1"), "n");
        // A dataset line: the lint reads it; the bundle changed, so the fine-tune (a command,
        // which may read any file) runs, and with it everything reading its adapter.
        let data = keys(SPEC, "b2", &files("t2", "s1"), "n");
        assert!(base.iter().zip(&data).take(4).all(|(a, b)| a != b), "{base:?} {data:?}");
        // The suite alone in an eval of a base model: the lint checks against it, eval and score
        // read it; nothing else is an input of those.
        let no_finetune = SPEC
            .replace("[finetune]\ncommand = [\"python3\", \"train.py\"]\n", "")
            .replace("adapter = \"output/adapter\"\n", "");
        let before = keys(&no_finetune, "b1", &files("t1", "s1"), "n");
        let after_data = keys(&no_finetune, "b2", &files("t2", "s1"), "n");
        assert_ne!(before[0], after_data[0], "the lint reads the dataset");
        assert_eq!(before[1..3], after_data[1..3], "an eval of a base model does not read the dataset");
        // Generation parameters are inputs.
        let seed = keys(&SPEC.replace("seed = 7", "seed = 8"), "b1", &files("t1", "s1"), "n");
        assert_eq!(base[..2], seed[..2]);
        assert_ne!(base[2], seed[2]);
        assert_ne!(base[3], seed[3], "the score reads the eval's answers");
    }

    #[test]
    fn a_stage_that_always_runs_is_never_met_and_neither_are_its_readers() {
        let spec = SPEC
            .replace("command = [\"python3\", \"train.py\"]", "command = [\"python3\", \"train.py\"]\ncache = false");
        let one = keys(&spec, "b1", &files("t1", "s1"), "run-1");
        let two = keys(&spec, "b1", &files("t1", "s1"), "run-2");
        assert_eq!(one[0], two[0], "the lint is still cached");
        assert!(one[1..4].iter().zip(&two[1..4]).all(|(a, b)| a != b), "{one:?} {two:?}");
        let plans = PhaseSpec::parse(&spec, "p.toml").unwrap().stages();
        let lookups: Vec<bool> = stage_keys(&plans, "b1", &files("t1", "s1"), CacheUse::ReadWrite, "n")
            .into_iter()
            .flatten()
            .map(|k| k.lookup)
            .collect();
        assert_eq!(lookups, [true, false, true, true]);
        let unbundled: Vec<bool> = stage_keys(
            &PhaseSpec::parse(SPEC, "p.toml").unwrap().stages(),
            "",
            &files("t1", "s1"),
            CacheUse::ReadWrite,
            "n",
        )
        .into_iter()
        .flatten()
        .map(|k| k.lookup)
        .collect();
        assert_eq!(unbundled, [true, false, true, true], "a command without a bundle reads the agent's files");
        let write_only: Vec<bool> = stage_keys(&plans, "b1", &files("t1", "s1"), CacheUse::WriteOnly, "n")
            .into_iter()
            .flatten()
            .map(|k| k.lookup)
            .collect();
        assert!(write_only.iter().all(|l| !l), "--no-cache and nightly runs never read the cache");
    }

    #[test]
    fn bundle_digests_hash_the_wanted_files_and_name_the_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("data")).unwrap();
        std::fs::write(src.join("data/train.jsonl"), "{\"text\": \"oi\"}\n").unwrap();
        std::fs::write(src.join("phase.toml"), "x").unwrap();
        let bundle = dir.path().join("b.tar.gz");
        let file = std::fs::File::create(&bundle).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
        tar.append_dir_all(".", &src).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let wanted: BTreeSet<String> = ["data/train.jsonl".to_owned(), "suite.toml".to_owned()].into();
        let digests = bundle_digests(&bundle, &wanted).unwrap();
        let expected = hex(&Sha256::digest(b"{\"text\": \"oi\"}\n"));
        assert_eq!(digests["data/train.jsonl"], FileDigest::Sha256(expected));
        assert_eq!(digests["suite.toml"], FileDigest::Missing);
    }
}
