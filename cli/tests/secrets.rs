//! No secret text in what the CLI and the agent print: every refusal and every broken-input error
//! they report, on stderr and in the agent's log, and the coordinator's own log of those refusals,
//! is read for any 12-hex-digit run of a token, a credential or a near miss of one.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Cluster};

/// `t` with its last digit changed: a token one typo away.
fn near_miss(t: &str) -> String {
    format!("{}{}", &t[..t.len() - 1], if t.ends_with('0') { '1' } else { '0' })
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Runs phasegate with `args`; an agent gets 15 s to give up before it is killed.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phasegate");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn no_refusal_or_input_error_printed_by_the_cli_or_agent_shows_secret_text() {
    let cluster = Cluster::start(&[]);
    let dir = cluster.dir.path();
    let access_text = std::fs::read_to_string(cluster.access_file()).expect("access file");
    let access = phasegate_coordinator::AccessFile::load(&cluster.access_file()).expect("access file");
    let created = cluster.cli(&["token", "create", "--agent", "gpu-1"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let credential = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert_eq!(credential.len(), 64, "token create prints the credential alone");
    let (client_miss, agent_miss, credential_miss) =
        (near_miss(&access.client_token), near_miss(&access.agent_token), near_miss(&credential));
    let addr = access.address.clone();

    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut note = |what: &str, out: Output| outputs.push((what.to_owned(), out));
    // The CLI with a wrong, near-miss or other role's token, from a file and from the environment.
    for (what, token) in [("client near miss", &client_miss), ("agent token as client", &access.agent_token)] {
        let file = write(dir, "client-token", token);
        note(what, run(&["--coordinator", &addr, "--token-file", &file, "runs"]));
        let out = Command::new(BIN)
            .args(["--coordinator", &addr, "runs"])
            .env("PHASEGATE_TOKEN", token)
            .output()
            .expect("run phasegate");
        note(&format!("{what} from PHASEGATE_TOKEN"), out);
    }
    // Agents refused: a near miss of the shared token, the client token, a near miss of a
    // credential, a credential for another name, a pasted token as the name.
    let agent = |token: &str, name: &str, file: &str| {
        let file = write(dir, file, token);
        let work = dir.join(format!("work-{file}"));
        let work = work.to_str().expect("utf-8 path").to_owned();
        run(&["agent", "--coordinator", &addr, "--token-file", &file, "--name", name, "--work-dir", &work])
    };
    note("agent near miss", agent(&agent_miss, "gpu-1", "t1"));
    note("client token as agent", agent(&access.client_token, "gpu-1", "t2"));
    note("credential near miss", agent(&credential_miss, "gpu-1", "t3"));
    note("credential for another name", agent(&credential, "gpu-2", "t4"));
    note("token as the agent name", agent(&access.agent_token, &credential, "t5"));
    // Revoking or creating with a secret pasted as the target.
    note("revoke by secret", cluster.cli(&["token", "revoke", &credential]));
    note("create for a secret", cluster.cli(&["token", "create", "--agent", &access.agent_token]));
    // The credential revoked, then used.
    let revoked = cluster.cli(&["token", "revoke", "gpu-1"]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    note("revoked credential", agent(&credential, "gpu-1", "t6"));
    // The access file truncated inside a token, and edited so a token lost its closing quote.
    let cut = access_text.find(&access.agent_token).expect("agent token in access file") + 20;
    let truncated = write(dir, "truncated.toml", &access_text[..cut]);
    let unquoted = access_text.replacen(&format!("{}\"", access.client_token), &access.client_token, 1);
    let unquoted = write(dir, "unquoted.toml", &unquoted);
    for (what, file) in [("truncated access file", &truncated), ("unquoted access file", &unquoted)] {
        note(what, run(&["--access-file", file, "runs"]));
        let work = dir.join("work-gpu-9");
        let work = work.to_str().expect("utf-8 path");
        note(
            &format!("agent with {what}"),
            run(&["--access-file", file, "agent", "--name", "gpu-9", "--work-dir", work]),
        );
    }
    assert!(outputs.iter().all(|(_, o)| !o.status.success()), "every case is refused");

    let mut texts: Vec<(String, String)> = outputs
        .iter()
        .map(|(what, o)| {
            (what.clone(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        })
        .collect();
    for (what, text) in &texts {
        assert!(!text.trim().is_empty(), "{what}: nothing printed");
    }
    texts.push(("coordinator log".into(), cluster.child_logs()));
    let secrets = [&access.client_token, &access.agent_token, &credential, &client_miss, &agent_miss, &credential_miss];
    for (what, text) in &texts {
        for s in secrets {
            for w in s.as_bytes().windows(12) {
                let piece = std::str::from_utf8(w).expect("hex");
                assert!(!text.contains(piece), "{what} shows secret text {piece:?}:\n{text}");
            }
        }
    }
}
