//! The data dir as the `phasegate` binary meets it: one coordinator per dir, private modes, a
//! closed stdout, and a full disk (a real tmpfs, which needs permission to mount: without it that
//! test says so and passes, unless `PHASEGATE_REQUIRE_TMPFS=1`).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phasegate");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `phasegate serve` on `data_dir` as a child process; killed when dropped.
struct Serve {
    child: Child,
    data_dir: PathBuf,
}

impl Serve {
    fn spawn(data_dir: &Path) -> Child {
        Command::new(BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--http", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn phasegate serve")
    }

    /// Starts a coordinator and waits until it answers clients.
    fn start(data_dir: &Path) -> Self {
        let mut serve = Self { child: Self::spawn(data_dir), data_dir: data_dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("phasegate serve exited early with {status}");
            }
            if serve.access_file().exists() && serve.cli(&["agents", "--json"]).status.success() {
                return serve;
            }
            assert!(Instant::now() < deadline, "phasegate serve did not answer within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn access_file(&self) -> PathBuf {
        self.data_dir.join("access.toml")
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--access-file").arg(self.access_file()).args(args).stdin(Stdio::null());
        cmd
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.client(args).output().expect("run phasegate")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A spec directory that submits a small command job.
fn spec_dir(root: &Path) -> PathBuf {
    let dir = root.join("spec");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train.py"), "print('training')\n").unwrap();
    let spec = r#"experiment = "disk-test"
phase = "1"
priority = "manual"

[finetune]
command = ["python3", "train.py"]
requires = { gpu = false, vram_mib = 0, labels = [] }
timeout = "1m"
"#;
    std::fs::write(dir.join("phase.toml"), spec).unwrap();
    dir.join("phase.toml")
}

#[test]
fn a_second_coordinator_on_the_same_data_dir_is_refused_and_access_toml_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let first = Serve::start(&data_dir);
    let access_before = std::fs::read(first.access_file()).unwrap();
    let db_before = std::fs::metadata(data_dir.join("phasegate.db")).unwrap().modified().unwrap();

    for command in ["serve", "up"] {
        let started = Instant::now();
        let mut cmd = Command::new(BIN);
        cmd.arg(command)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--http", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null());
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{command}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{command} took {:?} to refuse", started.elapsed());
        assert!(stderr.contains(&data_dir.display().to_string()), "{command} does not name the dir: {stderr}");
        assert!(stderr.contains(&format!("pid {}", first.child.id())), "{command} does not name the holder: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(std::fs::read(first.access_file()).unwrap(), access_before, "access.toml was rewritten");
    let db_after = std::fs::metadata(data_dir.join("phasegate.db")).unwrap().modified().unwrap();
    assert_eq!(db_after, db_before, "the database was touched");
    assert!(first.cli(&["agents", "--json"]).status.success(), "the first coordinator stopped answering");
}

#[test]
fn the_data_dir_is_0700_and_its_files_0600_after_the_first_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    // A dir that exists with loose permissions is tightened too.
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let serve = Serve::start(&data_dir);
    let spec = spec_dir(tmp.path());
    let out = serve.cli(&["submit", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(mode(&data_dir), 0o700);
    for file in ["access.toml", "phasegate.db", "phasegate.db-wal", "phasegate.db-shm", "coordinator.lock"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    let mut artifacts = 0;
    for shard in std::fs::read_dir(data_dir.join("artifacts")).unwrap() {
        let shard = shard.unwrap().path();
        assert_eq!(mode(&shard), 0o700, "{}", shard.display());
        for file in std::fs::read_dir(&shard).unwrap() {
            let file = file.unwrap().path();
            assert_eq!(mode(&file), 0o600, "{}", file.display());
            artifacts += 1;
        }
    }
    assert!(artifacts >= 1, "the submitted source bundle is not stored as an artifact");
}

/// Runs a command with stdout a pipe whose reader is already gone.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped()).output().expect("run phasegate")
}

#[test]
fn commands_end_quietly_when_stdout_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let serve = Serve::start(&data_dir);
    let spec = spec_dir(tmp.path());
    for _ in 0..3 {
        assert!(serve.cli(&["submit", spec.to_str().unwrap()]).status.success());
    }
    let data = data_dir.to_str().unwrap();
    let commands: [&[&str]; 5] = [
        &["runs"],
        &["show", "1"],
        &["logs", "1"],
        &["agents", "--json"],
        &["history", "disk-test", "--json", "--data-dir", data],
    ];
    for args in commands {
        let open = serve.cli(args);
        let code = open.status.code();
        // `logs` of a run no agent took prints nothing; every other command has output to lose.
        assert!(args[0] == "logs" || !open.stdout.is_empty(), "{args:?} printed nothing to begin with");
        let closed = with_closed_stdout(serve.client(args));
        let stderr = String::from_utf8_lossy(&closed.stderr);
        assert!(!stderr.contains("panicked"), "{args:?} panicked on a closed stdout: {stderr}");
        assert!(!stderr.contains("Broken pipe") && !stderr.contains("error"), "{args:?} complained: {stderr}");
        assert_eq!(closed.status.code(), code, "{args:?}: not its normal exit code; stderr: {stderr}");
    }
}

/// A tmpfs of `size` mounted on a fresh temp dir; unmounted when dropped.
struct Tmpfs {
    mount: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let parent = tempfile::tempdir().unwrap();
        let mount = parent.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&mount).output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            let why = match out {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(std::env::var("PHASEGATE_REQUIRE_TMPFS").as_deref() != Ok("1"), "cannot mount a tmpfs: {why}");
            eprintln!("skipped: cannot mount a tmpfs ({why}); PHASEGATE_REQUIRE_TMPFS=1 makes this a failure");
            return None;
        }
        Some(Self { mount, _parent: parent })
    }

    /// Writes a filler file until the file system is full.
    fn fill(&self) -> PathBuf {
        let path = self.mount.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5au8; 4096];
        while file.write_all(&chunk).and_then(|()| file.sync_all()).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

#[test]
fn submit_to_a_coordinator_out_of_disk_space_exits_3_and_works_again_once_space_is_back() {
    let Some(fs) = Tmpfs::mount("6m") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_dir(tmp.path());
    let spec = spec.to_str().unwrap();
    let serve = Serve::start(&fs.mount.join("data"));
    assert!(serve.cli(&["submit", spec]).status.success());

    let filler = fs.fill();
    let out = serve.cli(&["submit", spec]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("coordinator out of disk space"), "{stderr}");
    let runs = serve.cli(&["runs"]);
    assert!(runs.status.success(), "reads stopped on a full disk: {}", String::from_utf8_lossy(&runs.stderr));

    std::fs::remove_file(filler).unwrap();
    let out = serve.cli(&["submit", spec]);
    assert!(out.status.success(), "submit after freeing space: {}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&serve.cli(&["runs"]).stdout).into_owned();
    assert_eq!(listed.lines().filter(|l| l.contains("disk-test")).count(), 2, "{listed}");
}
