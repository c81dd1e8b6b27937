//! `RescorePhases`: `phasegate rescore` through a coordinator. The client sends its suite's text;
//! the coordinator reads the suite language's dictionary from its own model cache and re-scores the
//! phases in its own store with the code the offline command runs
//! ([`crate::history::rescore_stored`]).

use std::path::{Path, PathBuf};

use tonic::Status;

use phasegate_proto::pb;

use super::convert::rescore_line_to_pb;
use crate::history::{RescoreOutcome, rescore_stored};
use crate::rescore::Rescorer;
use crate::shell::store_status;
use crate::store::Store;

/// Largest suite text accepted.
pub(super) const MAX_SUITE_BYTES: usize = 1024 * 1024;

/// The file name errors give a suite sent without one.
const UNNAMED_SUITE: &str = "<suite>";

/// Re-scores the stored phases of `req.experiment` with the rules scorer of the suite in the
/// request, reading its language's dictionary from `model_cache`. Errors: a missing experiment
/// name, an oversized suite or one that does not parse are `INVALID_ARGUMENT`; a dictionary that
/// does not load is `FAILED_PRECONDITION` (its message names the pull command); an experiment with
/// no phases is `NOT_FOUND`.
pub(super) async fn rescore_phases<S: Store>(
    store: &S,
    model_cache: PathBuf,
    req: pb::RescorePhasesRequest,
) -> Result<pb::RescorePhasesResponse, Status> {
    let pb::RescorePhasesRequest { experiment, suite_toml, suite_path } = req;
    if experiment.is_empty() {
        return Err(Status::invalid_argument("experiment: is required"));
    }
    if suite_toml.len() > MAX_SUITE_BYTES {
        return Err(Status::invalid_argument(format!(
            "suite_toml: {} bytes exceeds the limit of {MAX_SUITE_BYTES}",
            suite_toml.len()
        )));
    }
    let path = if suite_path.is_empty() { UNNAMED_SUITE.to_owned() } else { suite_path };
    let rescorer = tokio::task::spawn_blocking(move || rules_scorer(&suite_toml, &path, &model_cache))
        .await
        .map_err(|e| Status::internal(format!("failed to load the suite: {e}")))??;
    let lines = rescore_stored(store, &experiment, &rescorer).await.map_err(store_status)?;
    if lines.is_empty() {
        return Err(Status::not_found(format!("no phases in experiment {experiment}")));
    }
    let rescored = lines.iter().filter(|l| matches!(l.outcome, RescoreOutcome::Rescored { .. })).count();
    tracing::info!(experiment = %experiment, phases = lines.len(), rescored, "phases re-scored");
    Ok(pb::RescorePhasesResponse {
        lines: lines.iter().map(rescore_line_to_pb).collect(),
        instrument: rescorer.instrument().to_string(),
    })
}

/// Blocking: the suite parsed from its text (`path` names it in errors) and its language's
/// dictionary read from the model cache.
fn rules_scorer(text: &str, path: &str, model_cache: &Path) -> Result<Rescorer, Status> {
    let suite = phasegate_score::Suite::from_toml_str(text, Path::new(path))
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let lexicon =
        phasegate_score::Lexicon::load(model_cache, &suite).map_err(|e| Status::failed_precondition(e.to_string()))?;
    Ok(Rescorer::new(suite, lexicon))
}

#[cfg(test)]
mod tests {
    use super::*;

    use tonic::Code;

    use crate::rescore::test_support::hand_scored;
    use crate::store::SqliteStore;

    const SUITE: &str = include_str!("../../../datasets/persona-v1/suite.toml");
    const SUITE_PATH: &str = "datasets/persona-v1/suite.toml";

    /// A store, and a model cache holding a Portuguese dictionary of three words: these tests look
    /// at what is answered, not at the scores.
    async fn fixture(dir: &Path) -> (SqliteStore, PathBuf) {
        let store = SqliteStore::open(&dir.join("phasegate.db")).await.unwrap();
        let cache = dir.join("models");
        let dict = phasegate_score::dictionary_dir(&cache, phasegate_score::Language::Pt);
        std::fs::create_dir_all(&dict).unwrap();
        std::fs::write(dict.join("index.aff"), "SET UTF-8\n").unwrap();
        std::fs::write(dict.join("index.dic"), "3\nsou\na\niara\n").unwrap();
        (store, cache)
    }

    fn request(experiment: &str, suite_toml: &str) -> pb::RescorePhasesRequest {
        pb::RescorePhasesRequest {
            experiment: experiment.to_owned(),
            suite_toml: suite_toml.to_owned(),
            suite_path: SUITE_PATH.to_owned(),
        }
    }

    #[tokio::test]
    async fn a_suite_that_does_not_parse_is_an_invalid_argument_naming_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache) = fixture(dir.path()).await;
        let err = rescore_phases(&store, cache.clone(), request("persona-v1", "[rubric\nname = 1")).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(&format!("failed to parse eval suite {SUITE_PATH}")), "{}", err.message());

        let invalid = SUITE.replacen("language = \"pt\"", "language = \"xx\"", 1);
        assert_ne!(invalid, SUITE, "the bundled suite names its language; adapt the test");
        let err = rescore_phases(&store, cache, request("persona-v1", &invalid)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(SUITE_PATH) && err.message().contains("xx"), "{}", err.message());
    }

    #[tokio::test]
    async fn an_oversized_suite_or_no_experiment_is_an_invalid_argument() {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache) = fixture(dir.path()).await;
        let huge = "#".repeat(MAX_SUITE_BYTES + 1);
        let err = rescore_phases(&store, cache.clone(), request("persona-v1", &huge)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("suite_toml:"), "{}", err.message());
        let err = rescore_phases(&store, cache, request("", SUITE)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("experiment:"), "{}", err.message());
    }

    #[tokio::test]
    async fn an_experiment_with_no_phases_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache) = fixture(dir.path()).await;
        store.upsert_phase(&hand_scored(8), None, 1).await.unwrap();
        let err = rescore_phases(&store, cache, request("persona-v2", SUITE)).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert_eq!(err.message(), "no phases in experiment persona-v2");
    }

    #[tokio::test]
    async fn a_missing_dictionary_is_a_failed_precondition_naming_the_pull_command() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = fixture(dir.path()).await;
        store.upsert_phase(&hand_scored(8), None, 1).await.unwrap();
        let empty = dir.path().join("empty-cache");
        let err = rescore_phases(&store, empty, request("persona-v1", SUITE)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("phasegate models pull dictionary-pt"), "{}", err.message());
        let stored = store.phases("persona-v1").await.unwrap();
        assert!(stored[0].phase.instrument() == gate_rules::Instrument::Human, "nothing was re-scored");
    }

    #[tokio::test]
    async fn each_phase_gets_a_line_and_the_rescored_ones_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache) = fixture(dir.path()).await;
        for n in [6, 8] {
            store.upsert_phase(&hand_scored(n), None, 1).await.unwrap();
        }
        let resp = rescore_phases(&store, cache.clone(), request("persona-v1", SUITE)).await.unwrap();
        assert!(resp.instrument.starts_with("rules scorer "), "{}", resp.instrument);
        let [six, eight] = resp.lines.as_slice() else { panic!("one line per phase: {resp:?}") };
        use pb::rescore_line::Outcome;
        assert_eq!((six.label.as_str(), six.from.as_str()), ("6", "human scores"));
        assert!(matches!(&six.outcome, Some(Outcome::Skipped(why)) if why.contains("keeps no response")), "{six:?}");
        assert_eq!(eight.before, hand_scored(8).score());
        assert!(matches!(eight.outcome, Some(Outcome::Rescored(_))), "{eight:?}");

        let stored = store.phases("persona-v1").await.unwrap();
        assert_eq!(stored[1].phase.instrument().to_string(), resp.instrument);
        assert_eq!(stored[1].phase.earlier_scores[0].eval, hand_scored(8).eval, "the hand scores are kept");
        let again = rescore_phases(&store, cache, request("persona-v1", SUITE)).await.unwrap();
        assert!(matches!(again.lines[1].outcome, Some(Outcome::Current(_))), "{:?}", again.lines[1]);
    }
}
