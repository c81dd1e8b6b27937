use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::GithubConfig;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const SECRET: &str = "It's a Secret to Everybody";

fn experiment() -> ExperimentConfig {
    let text = r#"
[github]
token_file = "t"
[[experiment]]
name = "persona"
repo = "acme/lab"
paths = ["datasets/**", "experiments/**/phase.toml"]
spec = "experiments/persona/phase.toml"
override_label = "phasegate:override"
"#;
    let read = |_: &Path| Ok("x".to_owned());
    GithubConfig::parse(text, Path::new("phasegate.toml"), &|_| None, &read).unwrap().experiments.remove(0)
}

fn pr_payload(action: &str, head_repo: Option<&str>, label: Option<&str>) -> Vec<u8> {
    let head_repo = head_repo.map(|r| json!({ "full_name": r }));
    let mut v = json!({
        "action": action,
        "number": 12,
        "pull_request": {
            "number": 12,
            "head": { "sha": SHA, "ref": "feature", "repo": head_repo },
            "base": { "sha": SHA, "ref": "main", "repo": { "full_name": "acme/lab" } },
            "labels": [{ "name": "bug" }]
        },
        "repository": { "full_name": "acme/lab", "default_branch": "main" },
        "sender": { "login": "ana" }
    });
    if let Some(label) = label {
        v["label"] = json!({ "name": label });
    }
    serde_json::to_vec(&v).unwrap()
}

fn push_payload(git_ref: &str, message: &str, modified: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": git_ref,
        "before": "1111111111111111111111111111111111111111",
        "after": SHA,
        "deleted": false,
        "repository": { "full_name": "acme/lab", "default_branch": "main" },
        "commits": [{ "message": message, "added": [], "removed": [], "modified": modified }],
        "head_commit": { "message": message, "added": [], "removed": [], "modified": modified }
    }))
    .unwrap()
}

fn files(list: &[&str]) -> Vec<String> {
    list.iter().map(|f| (*f).to_owned()).collect()
}

#[test]
fn signature_matches_githubs_published_example() {
    // The example from GitHub's "validating webhook deliveries" documentation.
    let secret = Secret::new(SECRET);
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign(&secret, b"Hello, World!"), expected);
    assert_eq!(verify_signature(&secret, Some(expected), b"Hello, World!"), Ok(()));
}

#[test]
fn signature_rejections() {
    let secret = Secret::new(SECRET);
    let body = pr_payload("opened", Some("acme/lab"), None);
    let good = sign(&secret, &body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let wrong = sign(&Secret::new("another secret"), &body);
    let cases: [(Option<&str>, &[u8], SignatureError); 5] = [
        (None, &body, SignatureError::Missing),
        (Some(wrong.as_str()), &body, SignatureError::Mismatch),
        (Some(good.as_str()), &tampered, SignatureError::Mismatch),
        (Some("sha1=abcdef"), &body, SignatureError::Malformed),
        (Some("sha256=zz"), &body, SignatureError::Malformed),
    ];
    for (header, body, expected) in cases {
        assert_eq!(verify_signature(&secret, header, body), Err(expected.clone()), "{header:?}");
    }
    assert_eq!(verify_signature(&secret, Some(&good), &body), Ok(()));
}

#[test]
fn pull_request_payload_parses() {
    let Event::PullRequest(pr) =
        parse_event("pull_request", &pr_payload("labeled", Some("bob/lab"), Some("x"))).unwrap()
    else {
        panic!()
    };
    assert_eq!(pr.action, PrAction::Labeled { label: "x".to_owned() });
    assert_eq!((pr.repo.to_string(), pr.pr, pr.head_sha.as_str()), ("acme/lab".to_owned(), PrNumber(12), SHA));
    assert_eq!((pr.base_branch.as_str(), pr.labels.clone()), ("main", vec!["bug".to_owned()]));
    assert!(pr.is_fork());
    assert_eq!(pr.sender.as_deref(), Some("ana"));
    assert!(matches!(parse_event("pull_request", &pr_payload("closed", None, None)), Ok(Event::Ignored { .. })));
    assert!(matches!(parse_event("issues", b"{}"), Ok(Event::Ignored { .. })));
    assert!(matches!(parse_event("pull_request", b"{"), Err(WebhookError::Json { .. })));
}

/// action, head repository, label, changed files, expected decision.
type Row<'a> = (&'static str, Option<&'static str>, Option<&'static str>, &'a [String], &'static str);

#[test]
fn pr_decision_table() {
    let exp = experiment();
    let data = files(&["datasets/persona-v1/train.jsonl", "README.md"]);
    let docs = files(&["README.md", "src/lib.rs"]);
    let spec = files(&["experiments/persona/phase.toml"]);
    let own = Some("acme/lab");
    let fork = Some("bob/lab");
    #[rustfmt::skip]
    let table: [Row<'_>; 15] = [
        ("opened", own, None, &data, "start"),
        ("synchronize", own, None, &data, "start"),
        ("reopened", own, None, &spec, "start"),
        ("opened", own, None, &docs, "ignore"),
        ("opened", own, None, &[], "ignore"),
        ("opened", fork, None, &data, "wait"),
        ("synchronize", fork, None, &data, "wait"),
        ("opened", None, None, &data, "wait"),
        ("labeled", fork, Some("phasegate:run"), &data, "start"),
        ("labeled", fork, Some("bug"), &data, "ignore"),
        ("labeled", own, Some("phasegate:run"), &data, "ignore"),
        ("labeled", fork, Some("phasegate:run"), &docs, "ignore"),
        ("labeled", own, Some("phasegate:override"), &data, "override"),
        ("labeled", fork, Some("phasegate:override"), &data, "override"),
        ("labeled", own, Some("phasegate:override"), &docs, "ignore"),
    ];
    for (action, head_repo, label, changed, expected) in table {
        let event = parse_event("pull_request", &pr_payload(action, head_repo, label)).unwrap();
        let got = match decide(&event, &exp, changed) {
            Decision::StartRun { .. } => "start",
            Decision::WaitForLabel { ref label, .. } => {
                assert_eq!(label, "phasegate:run");
                "wait"
            }
            Decision::Ignore(_) => "ignore",
            Decision::AcceptMerged { .. } => "accept",
            Decision::OverrideVerdict { ref by, ref label, .. } => {
                assert_eq!((by.as_str(), label.as_str()), ("ana", "phasegate:override"));
                "override"
            }
        };
        assert_eq!(got, expected, "{action} {head_repo:?} {label:?} {changed:?}");
    }
}

#[test]
fn other_repositories_are_ignored() {
    let body = pr_payload("opened", Some("acme/lab"), None);
    let body = String::from_utf8(body).unwrap().replace("\"acme/lab\"", "\"acme/other\"");
    let event = parse_event("pull_request", body.as_bytes()).unwrap();
    assert_eq!(decide(&event, &experiment(), &files(&["datasets/a"])), Decision::Ignore(IgnoreReason::OtherRepository));
}

#[test]
fn push_to_default_branch_accepts_the_merged_pr() {
    let exp = experiment();
    let event = parse_event(
        "push",
        &push_payload("refs/heads/main", "Merge pull request #12 from bob/x\n\nmsg", &["datasets/p/a.jsonl"]),
    )
    .unwrap();
    assert_eq!(
        decide(&event, &exp, &[]),
        Decision::AcceptMerged {
            repo: RepoName::try_from("acme/lab").unwrap(),
            branch: "main".to_owned(),
            sha: CommitSha::try_from(SHA).unwrap(),
            pr: Some(PrNumber(12)),
        }
    );
    let squash = parse_event("push", &push_payload("refs/heads/main", "Tune lr (#34)", &["datasets/x"])).unwrap();
    assert!(matches!(decide(&squash, &exp, &[]), Decision::AcceptMerged { pr: Some(PrNumber(34)), .. }));
    let plain = parse_event("push", &push_payload("refs/heads/main", "direct push", &["datasets/x"])).unwrap();
    assert!(matches!(decide(&plain, &exp, &[]), Decision::AcceptMerged { pr: None, .. }));
    let branch = parse_event("push", &push_payload("refs/heads/feature", "x (#1)", &["datasets/x"])).unwrap();
    assert_eq!(decide(&branch, &exp, &[]), Decision::Ignore(IgnoreReason::NotDefaultBranch));
    let tag = parse_event("push", &push_payload("refs/tags/v1", "x", &["datasets/x"])).unwrap();
    assert_eq!(decide(&tag, &exp, &[]), Decision::Ignore(IgnoreReason::NotDefaultBranch));
    let docs = parse_event("push", &push_payload("refs/heads/main", "docs (#5)", &["README.md"])).unwrap();
    assert_eq!(decide(&docs, &exp, &[]), Decision::Ignore(IgnoreReason::NoMatchingPaths));
}
