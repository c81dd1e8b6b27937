//! The GitHub side of the command line, as a user meets it: `serve --config` rejects a bad
//! `phasegate.toml` before listening, and `report RUN --github` explains what it needs.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_phasegate");

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("PHASEGATE_CONFIG")
        .env_remove("PHASEGATE_GITHUB_TOKEN")
        .output()
        .expect("run phasegate");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_rejects_an_unknown_config_section_with_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("phasegate.toml"), "[gihtub]\ntoken_file = \"t\"\n").unwrap();
    let (code, stderr) = run(&["serve", "--config", "phasegate.toml", "--listen", "127.0.0.1:0"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown section `gihtub`") && stderr.contains("phasegate.toml"), "{stderr}");

    std::fs::write(dir.path().join("phasegate.toml"), "[github]\napi_url = \"http://127.0.0.1:9\"\n").unwrap();
    let (code, stderr) = run(&["serve", "--config", "phasegate.toml"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no credentials") && stderr.contains("hint:"), "{stderr}");
}

#[test]
fn report_needs_a_target_a_github_section_and_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(&["report", "1"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--github"), "{stderr}");

    std::fs::write(dir.path().join("phasegate.toml"), "").unwrap();
    let (code, stderr) = run(&["report", "1", "--github"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no [github] section"), "{stderr}");

    std::fs::write(dir.path().join("token"), "ghp_secret_value\n").unwrap();
    let config = "[github]\napi_url = \"http://127.0.0.1:9\"\ntoken_file = \"token\"\n";
    std::fs::write(dir.path().join("phasegate.toml"), config).unwrap();
    let (code, stderr) = run(&["report", "1", "--github", "--data-dir", "nowhere"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no phasegate database"), "{stderr}");
    assert!(!stderr.contains("ghp_secret_value"), "{stderr}");
}
