use super::*;

const PATH: &str = "phasegate.toml";

fn no_env(_: &str) -> Option<String> {
    None
}

fn fake_read(path: &Path) -> Result<String, ConfigError> {
    Ok(format!("secret-from-{}", path.display()))
}

fn parse(text: &str) -> Result<GithubConfig, ConfigError> {
    GithubConfig::parse(text, Path::new(PATH), &no_env, &fake_read)
}

const FULL: &str = r#"
[coordinator]
listen = "127.0.0.1:7000"

[github]
token_file = "gh-token"
webhook_secret_file = "hook-secret"
comment = "on-failure"
inconclusive = "failure"

[[experiment]]
name = "persona"
repo = "acme/persona-lab"
paths = ["datasets/**", "experiments/**/phase.toml"]
spec = "experiments/persona/phase.toml"
dashboard_url = "http://dash.local/persona"
"#;

#[test]
fn full_config_parses_with_defaults() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.api_url, DEFAULT_API_URL);
    assert!(matches!(&c.credentials, Credentials::Token(t) if t.expose() == "secret-from-gh-token"));
    assert_eq!(c.webhook_secret.as_ref().unwrap().expose(), "secret-from-hook-secret");
    assert_eq!(c.comment, CommentPolicy::OnFailure);
    assert_eq!(c.inconclusive, InconclusivePolicy::Failure);
    let e = &c.experiments[0];
    assert_eq!(e.fork_label, DEFAULT_FORK_LABEL);
    assert_eq!(e.repo.to_string(), "acme/persona-lab");
    assert!(e.matches_any(&["datasets/persona-v1/train.jsonl".to_owned()]));
    assert!(e.matches_any(&["experiments/a/b/phase.toml".to_owned()]));
    assert!(!e.matches_any(&["README.md".to_owned(), "src/main.rs".to_owned()]));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = parse(FULL).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("secret-from"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn unknown_keys_name_the_key_and_the_file() {
    let text = FULL.replace("comment = \"on-failure\"", "coment = \"on-failure\"");
    let msg = parse(&text).unwrap_err().to_string();
    assert!(msg.contains("coment") && msg.contains(PATH), "{msg}");
    let text = FULL.replace("spec = ", "branch = \"main\"\nspec = ");
    let msg = parse(&text).unwrap_err().to_string();
    assert!(msg.contains("branch") && msg.contains("[[experiment]] #1") && msg.contains(PATH), "{msg}");
}

#[test]
fn bad_values_are_rejected_with_the_value() {
    let msg = parse(&FULL.replace("acme/persona-lab", "acme")).unwrap_err().to_string();
    assert!(msg.contains("`acme`"), "{msg}");
    let msg = parse(&FULL.replace("datasets/**", "datasets/[")).unwrap_err().to_string();
    assert!(msg.contains("datasets/["), "{msg}");
    let msg = parse(&FULL.replace("\"on-failure\"", "\"sometimes\"")).unwrap_err().to_string();
    assert!(msg.contains("sometimes"), "{msg}");
}

#[test]
fn app_credentials_and_env_fallback() {
    let text = "[github]\napp_id = 12\ninstallation_id = 34\n";
    let env = |k: &str| (k == ENV_PRIVATE_KEY).then(|| "PEM".to_owned());
    let c = GithubConfig::parse(text, Path::new(PATH), &env, &fake_read).unwrap();
    assert!(matches!(
        &c.credentials,
        Credentials::App { app_id: 12, installation_id: 34, private_key_pem } if private_key_pem.expose() == "PEM"
    ));
    assert!(c.webhook_secret.is_none());

    let env = |k: &str| (k == ENV_TOKEN).then(|| "tok".to_owned());
    let c = GithubConfig::parse("[github]\n", Path::new(PATH), &env, &fake_read).unwrap();
    assert!(matches!(&c.credentials, Credentials::Token(t) if t.expose() == "tok"));
}

#[test]
fn credential_mistakes_are_errors() {
    let cases = [
        ("[github]\n", "has no credentials"),
        ("[github]\ntoken_file = \"t\"\napp_id = 1\n", "both"),
        ("[github]\napp_id = 1\nprivate_key_file = \"k\"\n", "installation_id"),
        ("[github]\napp_id = 1\ninstallation_id = 2\n", "private key"),
    ];
    for (text, needle) in cases {
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.contains(needle), "{text}: {msg}");
    }
}

#[test]
fn duplicate_experiment_names_are_rejected() {
    let text = format!("{FULL}\n[[experiment]]\nname = \"persona\"\nrepo = \"a/b\"\nspec = \"s\"\n");
    assert!(matches!(parse(&text), Err(ConfigError::DuplicateExperiment { name, .. }) if name == "persona"));
}

#[test]
fn delivery_retries_have_defaults_and_are_validated_by_key() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.delivery_attempts, DEFAULT_DELIVERY_ATTEMPTS);
    assert_eq!(c.delivery_initial_delay, Duration::from_secs(30));
    assert_eq!(c.delivery_max_delay, Duration::from_secs(30 * 60));

    let set = |keys: &str| FULL.replace("[github]\n", &format!("[github]\n{keys}\n"));
    let c = parse(&set("delivery_attempts = 2\ndelivery_initial_delay_ms = 50\ndelivery_max_delay_ms = 400")).unwrap();
    assert_eq!(
        (c.delivery_attempts, c.delivery_initial_delay, c.delivery_max_delay),
        (2, Duration::from_millis(50), Duration::from_millis(400))
    );
    let c = parse(&set("delivery_initial_delay_ms = 7200000")).unwrap();
    assert_eq!(c.delivery_max_delay, c.delivery_initial_delay, "the default cap never undercuts the first wait");

    let cases = [
        ("delivery_attempts = 0", "[github] delivery_attempts must be greater than zero, got 0"),
        ("delivery_initial_delay_ms = 0", "[github] delivery_initial_delay_ms must be greater than zero"),
        ("delivery_max_delay_ms = 0", "[github] delivery_max_delay_ms must be greater than zero"),
        (
            "delivery_initial_delay_ms = 500\ndelivery_max_delay_ms = 100",
            "[github] delivery_max_delay_ms (100) must not be less than delivery_initial_delay_ms (500)",
        ),
        ("delivery_attempts = -1", "delivery_attempts"),
        ("delivery_atempts = 3", "delivery_atempts"),
    ];
    for (keys, needle) in cases {
        let msg = parse(&set(keys)).unwrap_err().to_string();
        assert!(msg.contains(needle) && msg.contains(PATH), "{keys}: {msg}");
    }
}
