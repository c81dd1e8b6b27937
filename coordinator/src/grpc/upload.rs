//! Receiving and sending chunked artifacts.

use futures::{Stream, StreamExt as _};
use tonic::Status;

use phasegate_proto::domain::parse_sha256;
use phasegate_proto::{CHUNK_BYTES, pb};

use crate::artifacts::ArtifactStore;
use crate::shell::{Shared, now_ms, store_status};
use crate::store::Store;

/// Reads an upload stream: the header, then data chunks. `check` runs on the header before any data
/// is accepted (lease fencing for agents).
pub(crate) async fn receive<S, St, F, Fut>(
    shared: &Shared<S>,
    mut stream: St,
    limit: u64,
    check: F,
) -> Result<pb::ArtifactRef, Status>
where
    S: Store,
    St: Stream<Item = Result<pb::ArtifactChunk, Status>> + Unpin,
    F: FnOnce(pb::ArtifactHeader) -> Fut,
    Fut: std::future::Future<Output = Result<pb::ArtifactHeader, Status>>,
{
    let first = stream.next().await.ok_or_else(|| Status::invalid_argument("upload: empty stream"))??;
    let Some(pb::artifact_chunk::Part::Header(header)) = first.part else {
        return Err(Status::invalid_argument("upload: the first chunk must be the header"));
    };
    let header = check(header).await?;
    let sha = parse_sha256("header.sha256", &header.sha256).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if header.name.is_empty() || header.name.len() > 512 {
        return Err(Status::invalid_argument("header.name: must be 1-512 characters"));
    }
    let mut incoming = shared.artifacts.begin(&header.name, header.size, &sha, limit).map_err(|e| e.status())?;
    while let Some(chunk) = stream.next().await {
        match chunk?.part {
            Some(pb::artifact_chunk::Part::Data(data)) => incoming.write(&data).map_err(|e| e.status())?,
            _ => return Err(Status::invalid_argument("upload: only the first chunk may be a header")),
        }
    }
    let artifacts = shared.artifacts.clone();
    // From placing the file to recording its row, gc may not delete it (it may be a blob gc is
    // removing: the same content uploaded again).
    let _placing = shared.artifacts.placing().await;
    let (digest, size) = tokio::task::spawn_blocking(move || artifacts.finish(incoming))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| e.status())?;
    shared.store.record_artifact(&digest, size, now_ms() as i64).await.map_err(store_status)?;
    Ok(pb::ArtifactRef { name: header.name, sha256: digest, size })
}

pub(crate) type ChunkStream = std::pin::Pin<Box<dyn Stream<Item = Result<pb::ArtifactChunk, Status>> + Send>>;

/// Streams a stored artifact in chunks.
pub(crate) fn send(artifacts: &ArtifactStore, sha256: &str) -> Result<ChunkStream, Status> {
    let sha = parse_sha256("sha256", sha256).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let path = artifacts.path_of(&sha);
    let size = std::fs::metadata(&path).map_err(|_| Status::not_found(format!("no artifact with sha256 {sha}")))?.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let header = pb::ArtifactHeader { name: sha.clone(), size, sha256: sha, ..Default::default() };
        if tx.send(Ok(pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header)) })).await.is_err() {
            return;
        }
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(Status::internal(format!("failed to open artifact: {e}")))).await;
                return;
            }
        };
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    let chunk = pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(buf[..n].to_vec())) };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(Status::internal(format!("failed to read artifact: {e}")))).await;
                    return;
                }
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
