//! A coordinator whose data dir runs out of space: a real tmpfs mount, filled by a filler file.
//!
//! Needs permission to mount (root); without it the test says so and passes, unless
//! `PHASEGATE_REQUIRE_TMPFS=1` makes the missing mount a failure.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tonic::Code;

use phasegate_coordinator::ShellConfig;
use phasegate_proto::client::{ControlClient, channel, control_client};
use phasegate_proto::pb;

use common::Coordinator;

/// A tmpfs of `size` mounted on a fresh temp dir; unmounted when dropped.
struct Tmpfs {
    mount: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after saying why) when mounting is not permitted here.
    fn mount(size: &str) -> Option<Self> {
        let parent = tempfile::tempdir().unwrap();
        let mount = parent.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&mount).output();
        let ok = matches!(&out, Ok(o) if o.status.success());
        if !ok {
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
        let chunk = vec![0xa5u8; 4096];
        loop {
            if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling the disk: {e}");
                return path;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

const SPEC: &str = r#"experiment = "disk-test"
phase = "1"
priority = "manual"

[finetune]
command = ["python3", "train.py"]
requires = { gpu = false, vram_mib = 0, labels = [] }
timeout = "1m"
"#;

/// A spec whose comment makes the run row larger than what the WAL already holds, so storing it
/// has to grow a file on the full disk.
fn large_spec() -> String {
    let comment: String =
        (0..4500).map(|i| format!("# padding line {i:05} of a spec far larger than usual\n")).collect();
    format!("{comment}{SPEC}")
}

/// Uploads a small source bundle, then submits `spec` with it: what `phasegate submit` does.
async fn submit(client: &mut ControlClient, spec: &str, with_bundle: bool) -> Result<u64, tonic::Status> {
    let mut bundle_sha256 = String::new();
    if with_bundle {
        let data = b"a source bundle, small".to_vec();
        let sha = hex::encode(Sha256::digest(&data));
        let header = pb::ArtifactHeader {
            name: "source-bundle.tar.gz".into(),
            size: data.len() as u64,
            sha256: sha.clone(),
            ..Default::default()
        };
        let chunks = vec![
            pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header)) },
            pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(data)) },
        ];
        client.upload_bundle(futures::stream::iter(chunks)).await?;
        bundle_sha256 = sha;
    }
    let req = pb::SubmitRunRequest {
        spec_toml: spec.to_owned(),
        spec_path: "phase.toml".into(),
        bundle_sha256,
        // Each submission must run: the tests are about what the store keeps of it.
        no_cache: true,
        ..Default::default()
    };
    Ok(client.submit_run(req).await?.into_inner().run_id)
}

async fn listed(client: &mut ControlClient) -> Vec<(u64, String)> {
    let req = pb::ListRunsRequest { limit: 1000, ..Default::default() };
    let runs = client.list_runs(req).await.expect("list runs").into_inner().runs;
    let mut out: Vec<(u64, String)> = runs.into_iter().map(|r| (r.id, r.state)).collect();
    out.sort();
    out
}

fn assert_out_of_space(what: &str, outcome: Result<u64, tonic::Status>) {
    let status = outcome.expect_err(&format!("{what} succeeded on a full disk"));
    assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
    assert!(status.message().contains("coordinator out of disk space"), "{what}: {}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_dir_refuses_writes_keeps_reads_and_recovers_without_restart() {
    let Some(fs) = Tmpfs::mount("6m") else { return };
    let data_dir = fs.mount.join("data");
    let coordinator = Coordinator::start(&data_dir, ShellConfig::default()).await;
    let access = &coordinator.access;
    let mut client = control_client(channel(&access.address, None).unwrap(), &access.client_token).unwrap();

    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        acknowledged.push(submit(&mut client, SPEC, true).await.expect("submit before the disk fills"));
    }
    let before = listed(&mut client).await;
    assert_eq!(before.iter().map(|r| r.0).collect::<Vec<_>>(), acknowledged);

    let filler = fs.fill();
    // The bundle upload writes an artifact file; the large spec has to grow the database's WAL.
    assert_out_of_space("bundle upload", submit(&mut client, SPEC, true).await);
    for attempt in 0..6 {
        assert_out_of_space(&format!("large submit {attempt}"), submit(&mut client, &large_spec(), false).await);
        // Reads keep working while the disk is full, and every connection answers the same.
        assert_eq!(listed(&mut client).await, before, "reads disagree after failed write {attempt}");
    }

    std::fs::remove_file(filler).unwrap();
    // Writes resume by themselves: no restart, no "database is locked" from a stuck connection.
    let started = std::time::Instant::now();
    acknowledged.push(submit(&mut client, SPEC, true).await.expect("submit once space is back"));
    acknowledged.push(submit(&mut client, &large_spec(), false).await.expect("large submit once space is back"));
    assert!(started.elapsed() < Duration::from_secs(5), "writes waited on a lock for {:?}", started.elapsed());
    let after = listed(&mut client).await;
    assert_eq!(after.iter().map(|r| r.0).collect::<Vec<_>>(), acknowledged, "an acknowledged run is missing");
    for (id, state) in &before {
        assert!(after.contains(&(*id, state.clone())), "run {id} changed while the disk was full");
    }
}
