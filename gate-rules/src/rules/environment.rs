//! Rule 9, `environment`: baseline and candidate were measured in different environments (GPU,
//! driver, CUDA, library versions, dtype, batch size) or with different generation parameters →
//! an info finding marked as a confounder, so the report says the comparison is not like for like.

use std::collections::BTreeSet;

use super::{Context, describe};
use crate::finding::{Finding, KeyDifference, RuleId, Severity};
use crate::phase::{ConfigEntry, Phase};

pub(crate) fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let ignore = &ctx.config.rules.environment.ignore_keys;
    ctx.baselines
        .iter()
        .filter_map(|b| {
            let differences: Vec<KeyDifference> =
                differences(b.phase, ctx.candidate).into_iter().filter(|d| !ignore.contains(&d.key)).collect();
            if differences.is_empty() {
                return None;
            }
            let keys: Vec<&str> = differences.iter().map(|d| d.key.as_str()).collect();
            let mut f = Finding::new(
                RuleId::Environment,
                Severity::Info,
                format!("confounder: {} and the candidate differ in {}", describe(b), keys.join(", ")),
            )
            .against(&b.phase.label);
            f.evidence.differences = differences;
            f.evidence.confounder = true;
            Some(f)
        })
        .collect()
}

/// Environment keys as they are; generation parameters as `generation.KEY`.
fn differences(baseline: &Phase, candidate: &Phase) -> Vec<KeyDifference> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = baseline.environment.keys().chain(candidate.environment.keys()).collect();
    for key in keys {
        push_if_different(&mut out, key.clone(), baseline.environment.get(key), candidate.environment.get(key));
    }
    let find = |entries: &[ConfigEntry], key: &str| entries.iter().find(|e| e.key == key).map(|e| e.value.clone());
    let mut gen_keys: Vec<&str> = Vec::new();
    for e in baseline.generation.iter().chain(&candidate.generation) {
        if !gen_keys.contains(&e.key.as_str()) {
            gen_keys.push(&e.key);
        }
    }
    for key in gen_keys {
        let (b, c) = (find(&baseline.generation, key), find(&candidate.generation, key));
        push_if_different(&mut out, format!("generation.{key}"), b.as_ref(), c.as_ref());
    }
    out
}

fn push_if_different(out: &mut Vec<KeyDifference>, key: String, baseline: Option<&String>, candidate: Option<&String>) {
    if baseline != candidate {
        out.push(KeyDifference { key, baseline: baseline.cloned(), candidate: candidate.cloned() });
    }
}

#[cfg(test)]
mod tests {
    use crate::config::GateConfig;
    use crate::finding::{RuleId, Severity};
    use crate::phase::{ConfigEntry, Phase};
    use crate::rules::test_support::findings_of;
    use crate::testkit::phase;

    fn with_env(label: &str, ordinal: u64, env: &[(&str, &str)], generation: &[(&str, &str)]) -> Phase {
        let mut p = phase(label, ordinal, &[5.0; 3]);
        p.environment = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        p.generation =
            generation.iter().map(|(k, v)| ConfigEntry { key: (*k).to_owned(), value: (*v).to_owned() }).collect();
        p
    }

    #[test]
    fn table() {
        let base = with_env("1", 1, &[("gpu", "RTX 3050"), ("cuda", "12.4")], &[("max_new_tokens", "300")]);
        let cases: [(&str, Phase, &[&str]); 4] = [
            ("same", with_env("2", 2, &[("gpu", "RTX 3050"), ("cuda", "12.4")], &[("max_new_tokens", "300")]), &[]),
            (
                "other gpu",
                with_env("2", 2, &[("gpu", "A100"), ("cuda", "12.4")], &[("max_new_tokens", "300")]),
                &["gpu"],
            ),
            (
                "missing key and generation",
                with_env("2", 2, &[("gpu", "RTX 3050")], &[("max_new_tokens", "150")]),
                &["cuda", "generation.max_new_tokens"],
            ),
            (
                "new generation key",
                with_env(
                    "2",
                    2,
                    &[("gpu", "RTX 3050"), ("cuda", "12.4")],
                    &[("max_new_tokens", "300"), ("repetition_penalty", "1.3")],
                ),
                &["generation.repetition_penalty"],
            ),
        ];
        for (name, cand, keys) in cases {
            let found = findings_of(RuleId::Environment, std::slice::from_ref(&base), &cand, &GateConfig::default());
            let got: Vec<&str> =
                found.iter().flat_map(|f| f.evidence.differences.iter().map(|d| d.key.as_str())).collect();
            assert_eq!(got, keys, "{name}");
            assert!(found.iter().all(|f| f.severity == Severity::Info && f.evidence.confounder));
        }
    }

    #[test]
    fn ignored_keys_are_not_confounders() {
        let mut config = GateConfig::default();
        config.rules.environment.ignore_keys = vec!["gpu".to_owned()];
        let base = with_env("1", 1, &[("gpu", "RTX 3050")], &[]);
        let cand = with_env("2", 2, &[("gpu", "A100")], &[]);
        assert!(findings_of(RuleId::Environment, &[base], &cand, &config).is_empty());
    }
}
