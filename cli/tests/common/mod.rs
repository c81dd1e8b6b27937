//! Helpers for the end-to-end tests: a coordinator and agents run as separate `phasegate` processes.
//!
//! A [`Cluster`] owns every child process it starts and kills them all when dropped, so a failing
//! test leaves nothing running. Child stderr goes to files in the cluster's temp dir; when a test
//! panics the guard prints them, which is usually all it takes to see why.

// Each test binary uses part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_phasegate");

/// The example phase spec the tests copy and adapt.
const EXAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/persona-v1/phase10");

/// A port that was free a moment ago: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGKILL to a child and reaps it.
pub fn sigkill(child: &mut Child) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    // ESRCH (already gone) is fine: the point is that it is not running afterwards.
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// A copy of the example spec directory whose trainer runs `steps` steps of `step_seconds` each,
/// optionally with other `requires`.
pub fn example_spec(root: &Path, name: &str, steps: u32, step_seconds: f64, requires: Option<&str>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create spec dir");
    std::fs::copy(Path::new(EXAMPLE_DIR).join("train.py"), dir.join("train.py")).expect("copy train.py");
    let original = std::fs::read_to_string(Path::new(EXAMPLE_DIR).join("phase.toml")).expect("read example spec");
    let original = finetune_only(&original);
    let old_tail = r#""--steps", "24"]"#;
    assert!(original.contains(old_tail), "the example spec's command changed; adapt the e2e helper");
    let mut spec = original.replace(old_tail, &format!(r#""--steps", "{steps}", "--step-seconds", "{step_seconds}"]"#));
    if let Some(requires) = requires {
        let old = "requires = { gpu = false, vram_mib = 0, labels = [] }";
        assert!(spec.contains(old), "the example spec's requirements changed; adapt the e2e helper");
        spec = spec.replace(old, &format!("requires = {requires}"));
    }
    let path = dir.join("phase.toml");
    std::fs::write(&path, spec).expect("write spec");
    path
}

/// A one-stage spec whose finetune job runs `script` with `sh -c`, collecting `artifacts` (TOML
/// array text).
pub fn command_spec(root: &Path, name: &str, script: &str, artifacts: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create spec dir");
    let script = toml_string(script);
    let spec = format!(
        "experiment = \"probe\"\nphase = \"{name}\"\n\n[finetune]\ncommand = [\"sh\", \"-c\", {script}]\n\
         requires = {{ gpu = false, vram_mib = 0, labels = [] }}\ntimeout = \"5m\"\nartifacts = {artifacts}\n"
    );
    let path = dir.join("phase.toml");
    std::fs::write(&path, spec).expect("write spec");
    path
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The spec up to the end of its `[finetune]` table: these tests are about the command job, so later
/// stages (such as `[gate]`, which needs an imported history) are left out.
fn finetune_only(spec: &str) -> String {
    let start = spec.find("[finetune]").expect("the example spec has a [finetune] stage");
    match spec[start + 1..].find("\n[") {
        Some(end) => spec[..start + 1 + end + 1].to_owned(),
        None => spec.to_owned(),
    }
}

/// A Portuguese dictionary of a few words where the rules scorer looks for one in the model cache
/// `cache`: tests of what re-scoring stores need no downloaded dictionary.
pub fn write_tiny_dictionary(cache: &Path) {
    let dir = phasegate_score::dictionary_dir(cache, phasegate_score::Language::Pt);
    std::fs::create_dir_all(&dir).expect("create dictionary dir");
    std::fs::write(dir.join("index.aff"), "SET UTF-8\n").expect("write index.aff");
    std::fs::write(dir.join("index.dic"), "3\neu\nsou\na\n").expect("write index.dic");
}

/// The result files of a bundled persona-v1 history phase (`datasets/persona-v1/history/phaseN`),
/// sorted.
pub fn history_files(phase: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../datasets/persona-v1/history/phase{phase}"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path().display().to_string())
        .collect();
    files.sort();
    files
}

/// A coordinator and named agents, each a separate `phasegate` process.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub grpc_port: u16,
    pub http_port: u16,
    coordinator: Option<Child>,
    /// Extra environment of the coordinator process, kept across restarts.
    coordinator_env: Vec<(String, OsString)>,
    agents: BTreeMap<String, Child>,
    starts: u32,
}

impl Cluster {
    /// Starts a coordinator (lease TTL 2 s, heartbeats every 500 ms) and the named agents, and waits
    /// until every agent is registered and online.
    pub fn start(agents: &[&str]) -> Self {
        Self::start_with_env(agents, &[])
    }

    /// [`Cluster::start`] with extra environment for the coordinator process, e.g. its model cache
    /// (`PHASEGATE_MODEL_CACHE`).
    pub fn start_with_env(agents: &[&str], env: &[(&str, &OsStr)]) -> Self {
        let mut cluster = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            grpc_port: free_port(),
            http_port: free_port(),
            coordinator: None,
            coordinator_env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            agents: BTreeMap::new(),
            starts: 0,
        };
        cluster.start_coordinator();
        for name in agents {
            cluster.start_agent(name);
        }
        cluster.wait_agents_online(agents);
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn access_file(&self) -> PathBuf {
        self.data_dir().join("access.toml")
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("open child log")
    }

    /// Starts `phasegate serve` on the cluster's ports and data dir and waits until it answers.
    pub fn start_coordinator(&mut self) {
        assert!(self.coordinator.is_none(), "the coordinator is already running");
        self.starts += 1;
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.grpc_port)])
            .args(["--http", &format!("127.0.0.1:{}", self.http_port)])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--lease-ttl", "2s", "--heartbeat", "500ms"])
            .envs(self.coordinator_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file("coordinator"))
            .spawn()
            .expect("spawn coordinator");
        self.coordinator = Some(child);
        wait_for("the coordinator to answer", Duration::from_secs(15), || {
            if let Some(status) = self.coordinator.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the coordinator exited early with {status}:\n{}", self.child_logs());
            }
            (self.access_file().exists() && self.cli(&["agents", "--json"]).status.success()).then_some(())
        });
    }

    pub fn kill_coordinator(&mut self) {
        let mut child = self.coordinator.take().expect("the coordinator is running");
        sigkill(&mut child);
    }

    pub fn start_agent(&mut self, name: &str) {
        self.start_agent_with(name, &[]);
    }

    /// Starts an agent with extra `phasegate agent` arguments.
    pub fn start_agent_with(&mut self, name: &str, extra: &[&str]) {
        assert!(!self.agents.contains_key(name), "agent {name} is already running");
        let work_dir = self.dir.path().join(format!("work-{name}"));
        let child = Command::new(BIN)
            .arg("agent")
            .arg("--access-file")
            .arg(self.access_file())
            .args(["--name", name, "--grace", "1s"])
            .args(extra)
            .arg("--work-dir")
            .arg(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file(&format!("agent-{name}")))
            .spawn()
            .expect("spawn agent");
        self.agents.insert(name.to_owned(), child);
    }

    pub fn kill_agent(&mut self, name: &str) {
        let mut child = self.agents.remove(name).unwrap_or_else(|| panic!("agent {name} is not running"));
        sigkill(&mut child);
    }

    /// Sends `signal` to a running agent (it stays in the cluster until it exits).
    pub fn signal_agent(&self, name: &str, signal: Signal) {
        let child = self.agents.get(name).unwrap_or_else(|| panic!("agent {name} is not running"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        kill(pid, signal).expect("signal the agent");
    }

    /// Waits until the agent process exits; returns its exit status.
    pub fn wait_agent_exit(&mut self, name: &str, timeout: Duration) -> std::process::ExitStatus {
        let status = wait_for(&format!("agent {name} to exit"), timeout, || {
            self.agents.get_mut(name).and_then(|c| c.try_wait().ok().flatten())
        });
        self.agents.remove(name);
        status
    }

    pub fn wait_agents_online(&self, names: &[&str]) {
        wait_for("every agent to be online", Duration::from_secs(20), || {
            let agents = self.json(&["agents", "--json"]).ok()?;
            let online =
                |name: &str| agents.as_array().into_iter().flatten().any(|a| a["name"] == name && a["online"] == true);
            names.iter().all(|n| online(n)).then_some(())
        });
    }

    /// Runs the CLI against this cluster's coordinator (client token from the access file).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--access-file")
            .arg(self.access_file())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run phasegate")
    }

    /// Runs the CLI and parses its stdout as JSON; `Err` carries stderr when it failed.
    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.cli(args);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub fn show(&self, run: u64) -> Value {
        self.json(&["show", &run.to_string(), "--json"]).unwrap_or_else(|e| panic!("show {run} failed: {e}"))
    }

    /// Submits a spec without waiting; returns the run id.
    pub fn submit(&self, spec: &Path) -> u64 {
        let spec = spec.to_str().expect("utf-8 path");
        // Every submission of these tests must run (they are about running it), never reuse an
        // earlier run's results.
        let v = self.json(&["submit", spec, "--no-cache", "--json"]).unwrap_or_else(|e| panic!("submit failed: {e}"));
        v["id"].as_u64().unwrap_or_else(|| panic!("submit --json has no id: {v}"))
    }

    /// Waits until the run's finetune job is running on some agent; returns the agent's name.
    pub fn wait_running(&self, run: u64, timeout: Duration) -> String {
        wait_for(&format!("run {run}'s job to run on an agent"), timeout, || {
            let v = self.json(&["show", &run.to_string(), "--json"]).ok()?;
            let job = v["jobs"].as_array()?.iter().find(|j| j["stage"] == "finetune")?;
            // Wait for a reported step too, so the job is really mid-way, not about to start.
            let stepping = job["progress"]["step"].as_u64().is_some_and(|s| s > 0);
            (job["state"] == "running" && stepping).then(|| job["agent"].as_str().map(str::to_owned)).flatten()
        })
    }

    /// Waits until the run has ended; returns `show --json`.
    pub fn wait_ended(&self, run: u64, timeout: Duration) -> Value {
        wait_for(&format!("run {run} to end"), timeout, || {
            let v = self.json(&["show", &run.to_string(), "--json"]).ok()?;
            matches!(v["state"].as_str(), Some("succeeded" | "failed" | "cancelled")).then_some(v)
        })
    }

    /// The stderr of every child started so far, for failure messages.
    pub fn child_logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push_str(&format!("--- {}\n{text}\n", path.file_name().unwrap_or_default().to_string_lossy()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.agents.values_mut().chain(self.coordinator.as_mut()) {
            sigkill(child);
        }
        if std::thread::panicking() {
            eprintln!("child process logs (coordinator started {} times):\n{}", self.starts, self.child_logs());
        }
    }
}
