//! The HTTP side port under abuse, over loopback: a coordinator on `127.0.0.1:0` with a webhook
//! secret and short limits, flooded with oversized webhook bodies and held by slow clients.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use phasegate_coordinator::github::{GithubSetup, load_config};
use phasegate_coordinator::{HttpLimits, ServeConfig, ShellConfig};

/// Short bounds so the tests run in seconds.
const LIMITS: HttpLimits = HttpLimits {
    max_connections: 32,
    header_timeout: Duration::from_millis(500),
    body_timeout: Duration::from_millis(500),
    max_webhook_bytes: 64 * 1024,
    webhook_in_flight: 4,
};
/// What GitHub itself allows, and what each flooding client tries to send.
const GITHUB_MAX_PAYLOAD: usize = 25 * 1024 * 1024;
const FLOOD: usize = 48;
/// More than a closed connection should take to notice, less than any test's patience.
const MARGIN: Duration = Duration::from_secs(3);

struct Coordinator {
    _dir: tempfile::TempDir,
    http: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("token"), "ghp_test_token\n").unwrap();
    std::fs::write(dir.join("secret"), "webhook-s3cret").unwrap();
    let text = format!(
        "[github]\napi_url = \"http://127.0.0.1:9\"\ntoken_file = \"{}\"\nwebhook_secret_file = \"{}\"\n",
        dir.join("token").display(),
        dir.join("secret").display()
    );
    let path = dir.join("phasegate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start() -> Coordinator {
    let dir = tempfile::tempdir().unwrap();
    let config = load_config(&write_config(dir.path())).unwrap().expect("a [github] section");
    let shell = ShellConfig { github: Some(GithubSetup::new(config)), http: LIMITS, ..ShellConfig::default() };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let serve = ServeConfig { data_dir: dir.path().join("data"), shell, tls: None };
    tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        phasegate_coordinator::run(serve, grpc, http, stop).await.expect("coordinator runs");
    });
    let c = Coordinator { _dir: dir, http: addr, stop };
    for _ in 0..250 {
        if TcpStream::connect(addr).await.is_ok() && get(addr, "/healthz").await.starts_with("HTTP/1.1 200") {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the coordinator did not start");
}

/// GETs `route`; returns the whole response.
async fn get(addr: SocketAddr, route: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else { return String::new() };
    let head = format!("GET {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn status(response: &[u8]) -> u16 {
    String::from_utf8_lossy(response).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The resident set of this process (server and clients), from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const WEBHOOK_HEAD: &str = "POST /github/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                            X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=00\r\n";

/// A delivery declaring GitHub's largest payload: answered before any of the body is sent.
async fn declared_flood(addr: SocketAddr) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("{WEBHOOK_HEAD}Content-Length: {GITHUB_MAX_PAYLOAD}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(MARGIN, stream.read_to_end(&mut response)).await;
    status(&response)
}

/// A chunked delivery with no length that streams GitHub's largest payload from `body` (shared,
/// so the clients' own memory does not grow with the flood).
async fn streamed_flood(addr: SocketAddr, body: Arc<Vec<u8>>) -> u16 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(format!("{WEBHOOK_HEAD}Transfer-Encoding: chunked\r\n\r\n").as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            write.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            write.write_all(chunk).await?;
            write.write_all(b"\r\n").await?;
        }
        write.write_all(b"0\r\n\r\n").await
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(MARGIN * 2, read.read_to_end(&mut response)).await;
    writer.abort();
    status(&response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_oversized_webhook_bodies_is_refused_with_bounded_memory_while_metrics_answer() {
    let c = start().await;
    let body = Arc::new(vec![b' '; GITHUB_MAX_PAYLOAD]);
    let before = rss_kib();
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let (addr, body) = (c.http, body.clone());
        flood.push(tokio::spawn(async move {
            if i % 2 == 0 { declared_flood(addr).await } else { streamed_flood(addr, body).await }
        }));
    }
    // The side port keeps answering while the flood runs.
    let started = Instant::now();
    let metrics = get(c.http, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200") && metrics.contains("phasegate_"), "{metrics}");
    assert!(started.elapsed() < MARGIN, "/metrics took {:?}", started.elapsed());
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await.unwrap());
    }
    let after = rss_kib();
    // 413: over the limit; 503: too many bodies in flight. Never accepted, never a hang.
    assert!(statuses.iter().all(|s| *s == 413 || *s == 503), "{statuses:?}");
    assert!(statuses.iter().step_by(2).all(|s| *s == 413), "declared lengths are refused first: {statuses:?}");
    let grown_mib = after.saturating_sub(before) / 1024;
    // Buffering each body, as GitHub's 25 MB limit allowed, would grow by over a gigabyte.
    assert!(grown_mib < 64, "rss grew by {grown_mib} MiB ({before} KiB → {after} KiB)");
    assert!(get(c.http, "/healthz").await.starts_with("HTTP/1.1 200"));
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut response = Vec::new();
    let read = tokio::time::timeout(LIMITS.header_timeout + MARGIN, stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the server kept the connection open past its timeout");
    (response, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_within_the_timeouts() {
    let c = start().await;
    // Half a header, then nothing.
    let mut loris = TcpStream::connect(c.http).await.unwrap();
    loris.write_all(b"POST /github/webhook HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, took) = until_closed(&mut loris).await;
    assert!(took >= LIMITS.header_timeout / 2, "closed after {took:?}, before the timeout");

    // A whole head and part of the body: 408 after the body timeout.
    let mut slow = TcpStream::connect(c.http).await.unwrap();
    slow.write_all(format!("{WEBHOOK_HEAD}Content-Length: 100\r\n\r\n0123456789").as_bytes()).await.unwrap();
    let (response, _) = until_closed(&mut slow).await;
    assert_eq!(status(&response), 408, "{}", String::from_utf8_lossy(&response));

    // A keep-alive connection left idle after its request.
    let mut idle = TcpStream::connect(c.http).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (response, _) = until_closed(&mut idle).await;
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_slow_clients_than_connection_slots_do_not_lock_the_port_out() {
    let c = start().await;
    let mut held = Vec::new();
    for _ in 0..LIMITS.max_connections * 3 {
        let mut s = TcpStream::connect(c.http).await.unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n").await;
        held.push(s);
    }
    // Every slot is taken by a slow client; each is closed after the header timeout, so a real
    // request gets its turn within a few timeouts.
    let started = Instant::now();
    let metrics = tokio::time::timeout(LIMITS.header_timeout * 4 + MARGIN, get(c.http, "/metrics")).await;
    let metrics = metrics.expect("/metrics answers once slow clients are closed");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(started.elapsed() >= LIMITS.header_timeout / 2, "the slots were not all taken");
    drop(held);
}
