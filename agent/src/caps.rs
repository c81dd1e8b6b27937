//! The agent's capabilities: host facts, GPUs, labels and an environment fingerprint.
//!
//! GPU facts come through the [`GpuProbe`] trait so tests (and CPU boxes) need no NVIDIA driver:
//! [`NvmlProbe`] reads NVML, [`FakeGpuProbe`] returns fixed answers. A host without the NVML library
//! or without GPUs simply has zero GPUs. Linux only: host facts are read from `/proc` and `/etc`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// The Python packages whose versions go into the fingerprint unless configured otherwise.
pub const DEFAULT_PYTHON_PACKAGES: [&str; 6] = ["torch", "transformers", "peft", "bitsandbytes", "accelerate", "trl"];

/// The fingerprint value for a package, or for `python` itself, that is not installed.
pub const ABSENT: &str = "absent";

/// One GPU as measured now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub total_vram_mib: u64,
    pub free_vram_mib: u64,
}

/// Everything the agent registers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub hostname: String,
    pub cpu_count: u32,
    pub ram_mib: u64,
    pub gpus: Vec<GpuInfo>,
    pub driver_version: Option<String>,
    /// The CUDA version the driver supports, as `major.minor`.
    pub cuda_version: Option<String>,
    pub labels: Vec<String>,
    /// `os`, `arch`, `phasegate`, `driver` and `cuda` when known, `python` and one key per configured
    /// Python package (its version or [`ABSENT`]).
    pub fingerprint: BTreeMap<String, String>,
}

/// Where GPU facts come from. Implementations never fail: a GPU that cannot be read is left out
/// (and logged at debug), and no GPUs is a valid answer.
pub trait GpuProbe: Send + Sync + std::fmt::Debug {
    /// Every GPU with its total and currently free VRAM.
    fn gpus(&self) -> Vec<GpuInfo>;
    fn driver_version(&self) -> Option<String>;
    fn cuda_version(&self) -> Option<String>;
    /// `(index, free MiB)` for each GPU; called at every heartbeat.
    fn measure_free_vram(&self) -> Vec<(u32, u64)>;
    /// VRAM used by these processes summed over all GPUs, or `None` when nothing can be measured
    /// (no GPU, or none of the processes holds GPU memory).
    fn process_vram_used_mib(&self, pids: &[u32]) -> Option<u64>;
}

/// The NVML-backed probe. Holds no library when NVML could not be loaded.
pub struct NvmlProbe {
    nvml: Option<Nvml>,
}

impl std::fmt::Debug for NvmlProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlProbe").field("loaded", &self.nvml.is_some()).finish()
    }
}

impl NvmlProbe {
    /// Loads NVML; a missing library or driver gives a probe that reports zero GPUs.
    pub fn new() -> Self {
        let nvml =
            Nvml::init().inspect_err(|e| tracing::debug!(error = %e, "NVML unavailable; reporting zero GPUs")).ok();
        Self { nvml }
    }

    fn devices(&self) -> Vec<(u32, nvml_wrapper::Device<'_>)> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = nvml
            .device_count()
            .inspect_err(|e| tracing::debug!(error = %e, "NVML could not count devices"))
            .unwrap_or(0);
        (0..count)
            .filter_map(|i| match nvml.device_by_index(i) {
                Ok(device) => Some((i, device)),
                Err(e) => {
                    tracing::debug!(index = i, error = %e, "NVML could not open a device");
                    None
                }
            })
            .collect()
    }
}

impl Default for NvmlProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl GpuProbe for NvmlProbe {
    fn gpus(&self) -> Vec<GpuInfo> {
        self.devices()
            .into_iter()
            .filter_map(|(index, device)| {
                let memory = device
                    .memory_info()
                    .inspect_err(|e| tracing::debug!(index, error = %e, "NVML memory_info failed"))
                    .ok()?;
                Some(GpuInfo {
                    index,
                    name: device.name().unwrap_or_else(|_| "unknown".into()),
                    uuid: device.uuid().unwrap_or_default(),
                    total_vram_mib: memory.total / MIB,
                    free_vram_mib: memory.free / MIB,
                })
            })
            .collect()
    }

    fn driver_version(&self) -> Option<String> {
        self.nvml.as_ref()?.sys_driver_version().ok()
    }

    fn cuda_version(&self) -> Option<String> {
        let version = self.nvml.as_ref()?.sys_cuda_driver_version().ok()?;
        Some(format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(version),
            nvml_wrapper::cuda_driver_version_minor(version)
        ))
    }

    fn measure_free_vram(&self) -> Vec<(u32, u64)> {
        self.devices()
            .into_iter()
            .filter_map(|(index, device)| Some((index, device.memory_info().ok()?.free / MIB)))
            .collect()
    }

    fn process_vram_used_mib(&self, pids: &[u32]) -> Option<u64> {
        let mut total = None;
        for (_, device) in self.devices() {
            let Ok(processes) = device.running_compute_processes() else {
                continue;
            };
            for process in processes.iter().filter(|p| pids.contains(&p.pid)) {
                if let UsedGpuMemory::Used(bytes) = process.used_gpu_memory {
                    *total.get_or_insert(0) += bytes / MIB;
                }
            }
        }
        total
    }
}

/// A probe with fixed GPUs, for tests and for simulated agents. `process_vram` is what
/// [`GpuProbe::process_vram_used_mib`] answers whenever it is asked about at least one pid; the pids
/// asked about are recorded.
#[derive(Debug, Default)]
pub struct FakeGpuProbe {
    pub gpus: Vec<GpuInfo>,
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    pub process_vram: Option<u64>,
    pub asked_pids: Mutex<Vec<Vec<u32>>>,
}

impl GpuProbe for FakeGpuProbe {
    fn gpus(&self) -> Vec<GpuInfo> {
        self.gpus.clone()
    }
    fn driver_version(&self) -> Option<String> {
        self.driver_version.clone()
    }
    fn cuda_version(&self) -> Option<String> {
        self.cuda_version.clone()
    }
    fn measure_free_vram(&self) -> Vec<(u32, u64)> {
        self.gpus.iter().map(|g| (g.index, g.free_vram_mib)).collect()
    }
    fn process_vram_used_mib(&self, pids: &[u32]) -> Option<u64> {
        if let Ok(mut asked) = self.asked_pids.lock() {
            asked.push(pids.to_vec());
        }
        self.process_vram.filter(|_| !pids.is_empty())
    }
}

/// What the caller decides about the fingerprint and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapsConfig {
    pub labels: Vec<String>,
    pub phasegate_version: String,
    pub python_packages: Vec<String>,
    /// The interpreter to ask; `python3` from `PATH` by default.
    pub python: String,
    pub python_timeout: Duration,
}

impl CapsConfig {
    pub fn new(phasegate_version: impl Into<String>, labels: Vec<String>) -> Self {
        Self {
            labels,
            phasegate_version: phasegate_version.into(),
            python_packages: DEFAULT_PYTHON_PACKAGES.map(str::to_owned).to_vec(),
            python: "python3".into(),
            python_timeout: Duration::from_secs(5),
        }
    }
}

/// Gathers the capabilities; never fails (unknown facts are reported as such).
pub async fn gather(config: &CapsConfig, probe: &dyn GpuProbe) -> Capabilities {
    let driver_version = probe.driver_version();
    let cuda_version = probe.cuda_version();
    let mut fingerprint = BTreeMap::new();
    fingerprint.insert("os".to_owned(), os_description());
    fingerprint.insert("arch".to_owned(), std::env::consts::ARCH.to_owned());
    fingerprint.insert("phasegate".to_owned(), config.phasegate_version.clone());
    if let Some(v) = &driver_version {
        fingerprint.insert("driver".to_owned(), v.clone());
    }
    if let Some(v) = &cuda_version {
        fingerprint.insert("cuda".to_owned(), v.clone());
    }
    fingerprint.extend(python_versions(config).await);
    Capabilities {
        hostname: hostname(),
        cpu_count: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        ram_mib: read(Path::new("/proc/meminfo")).and_then(|text| parse_meminfo_total_mib(&text)).unwrap_or(0),
        gpus: probe.gpus(),
        driver_version,
        cuda_version,
        labels: config.labels.clone(),
        fingerprint,
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .inspect_err(|e| tracing::debug!(path = %path.display(), error = %e, "could not read"))
        .ok()
}

fn hostname() -> String {
    read(Path::new("/proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `MemTotal` of `/proc/meminfo`, in MiB.
pub fn parse_meminfo_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `PRETTY_NAME` of an os-release file, unquoted.
pub fn parse_os_release_pretty_name(os_release: &str) -> Option<String> {
    let value = os_release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?.trim();
    let unquoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    Some(unquoted.to_owned())
}

/// For example `Debian GNU/Linux 12 (bookworm); Linux 6.1.0`.
fn os_description() -> String {
    let name = read(Path::new("/etc/os-release"))
        .and_then(|text| parse_os_release_pretty_name(&text))
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    match read(Path::new("/proc/sys/kernel/osrelease")) {
        Some(kernel) => format!("{name}; Linux {}", kernel.trim()),
        None => name,
    }
}

/// Prints a JSON object: `python` (its version) and each package's version, `null` when missing.
const PYTHON_SCRIPT: &str = r#"
import json, platform, sys
from importlib import metadata
out = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except Exception:
        out[name] = None
print(json.dumps(out))
"#;

/// Versions of Python and the configured packages from one interpreter call.
async fn python_versions(config: &CapsConfig) -> BTreeMap<String, String> {
    let mut command = tokio::process::Command::new(&config.python);
    command
        .arg("-c")
        .arg(PYTHON_SCRIPT)
        .args(&config.python_packages)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let outcome = tokio::time::timeout(config.python_timeout, command.output()).await;
    let failed = |value: &str| -> BTreeMap<String, String> {
        std::iter::once(("python".to_owned(), value.to_owned())).collect()
    };
    match outcome {
        Err(_) => {
            tracing::debug!(python = %config.python, "python version probe timed out");
            failed("unknown (timed out)")
        }
        Ok(Err(e)) => {
            tracing::debug!(python = %config.python, error = %e, "python not found");
            failed(ABSENT)
        }
        Ok(Ok(output)) => parse_python_output(&output.stdout, &config.python_packages).unwrap_or_else(|| {
            tracing::debug!(status = %output.status, "python version probe gave no JSON");
            failed("unknown (probe failed)")
        }),
    }
}

/// Reads the script's JSON; every requested package gets a value.
fn parse_python_output(stdout: &[u8], packages: &[String]) -> Option<BTreeMap<String, String>> {
    let text = std::str::from_utf8(stdout).ok()?;
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text.lines().last()?).ok()?;
    let mut versions = BTreeMap::new();
    let python = object.get("python").and_then(|v| v.as_str()).unwrap_or(ABSENT);
    versions.insert("python".to_owned(), python.to_owned());
    for package in packages {
        let version = object.get(package).and_then(|v| v.as_str()).unwrap_or(ABSENT);
        versions.insert(package.clone(), version.to_owned());
    }
    Some(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, free: u64) -> GpuInfo {
        GpuInfo {
            index,
            name: "NVIDIA GeForce RTX 3050 Laptop GPU".into(),
            uuid: format!("GPU-{index}"),
            total_vram_mib: 4096,
            free_vram_mib: free,
        }
    }

    fn config(python: &str, packages: &[&str]) -> CapsConfig {
        CapsConfig {
            python: python.into(),
            python_packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            ..CapsConfig::new("0.1.0", vec!["cuda".into(), "lab".into()])
        }
    }

    #[tokio::test]
    async fn gather_with_fake_gpus() {
        let probe = FakeGpuProbe {
            gpus: vec![gpu(0, 3900), gpu(1, 1200)],
            driver_version: Some("550.54.14".into()),
            cuda_version: Some("12.4".into()),
            ..FakeGpuProbe::default()
        };
        let caps = gather(&config("phasegate-no-such-python", &["torch"]), &probe).await;
        assert_eq!(caps.gpus, [gpu(0, 3900), gpu(1, 1200)]);
        assert_eq!(caps.driver_version.as_deref(), Some("550.54.14"));
        assert_eq!(caps.labels, ["cuda", "lab"]);
        assert!(caps.cpu_count >= 1);
        assert!(caps.ram_mib > 0);
        assert!(!caps.hostname.is_empty());
        let fp = &caps.fingerprint;
        assert_eq!(fp.get("cuda").map(String::as_str), Some("12.4"));
        assert_eq!(fp.get("driver").map(String::as_str), Some("550.54.14"));
        assert_eq!(fp.get("phasegate").map(String::as_str), Some("0.1.0"));
        assert_eq!(fp.get("arch").map(String::as_str), Some(std::env::consts::ARCH));
        assert!(fp.get("os").is_some_and(|os| !os.is_empty()));
        assert_eq!(probe.measure_free_vram(), [(0, 3900), (1, 1200)]);
    }

    #[tokio::test]
    async fn no_python_means_python_absent() {
        let caps = gather(&config("phasegate-no-such-python", &["torch"]), &FakeGpuProbe::default()).await;
        assert_eq!(caps.fingerprint.get("python").map(String::as_str), Some(ABSENT));
        assert!(!caps.fingerprint.contains_key("torch"));
        assert!(caps.gpus.is_empty());
    }

    #[tokio::test]
    async fn python_packages_are_versioned_or_absent() {
        if std::process::Command::new("python3").arg("-V").output().is_err() {
            return;
        }
        let packages = ["pip", "phasegate-surely-not-installed"];
        let versions = python_versions(&config("python3", &packages)).await;
        assert!(versions["python"].starts_with('3'), "{versions:?}");
        assert_eq!(versions["phasegate-surely-not-installed"], ABSENT);
        assert!(versions.contains_key("pip"));
    }

    #[tokio::test]
    async fn slow_python_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("python");
        std::fs::write(&fake, "#!/bin/sh\nsleep 5\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut config = config(fake.to_str().unwrap(), &["torch"]);
        config.python_timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let versions = python_versions(&config).await;
        assert_eq!(versions["python"], "unknown (timed out)");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn python_output_parsing() {
        let out = br#"{"python": "3.11.2", "torch": "2.3.1", "peft": null}"#;
        let packages = ["torch".to_owned(), "peft".to_owned(), "trl".to_owned()];
        let versions = parse_python_output(out, &packages).unwrap();
        assert_eq!(versions["python"], "3.11.2");
        assert_eq!(versions["torch"], "2.3.1");
        assert_eq!(versions["peft"], ABSENT);
        assert_eq!(versions["trl"], ABSENT);
        assert!(parse_python_output(b"Traceback ...", &packages).is_none());
    }

    #[test]
    fn nvml_absent_means_zero_gpus() {
        // On machines without the NVIDIA driver this exercises the unloaded path; with a driver it
        // still must answer without panicking.
        let probe = NvmlProbe::new();
        if probe.nvml.is_none() {
            assert!(probe.gpus().is_empty());
            assert!(probe.measure_free_vram().is_empty());
            assert_eq!(probe.process_vram_used_mib(&[1]), None);
            assert_eq!(probe.driver_version(), None);
            assert_eq!(probe.cuda_version(), None);
        } else {
            assert_eq!(probe.gpus().len(), probe.measure_free_vram().len());
        }
    }

    #[test]
    fn host_file_parsers() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total_mib(meminfo), Some(24000));
        assert_eq!(parse_meminfo_total_mib("MemFree: 1 kB"), None);
        let release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(parse_os_release_pretty_name(release).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(parse_os_release_pretty_name("PRETTY_NAME=Alpine").as_deref(), Some("Alpine"));
    }
}
