//! A repository tarball (GitHub's tarball endpoint) into a run's source bundle.
//!
//! GitHub's archives hold one top-level folder (`owner-repo-sha/`) and a pax global header. The
//! bundle is the phase spec's directory inside it, exactly what `phasegate submit <spec>` would
//! pack from a checkout: the entries below that directory are copied into a new archive, unpacked
//! with the agent's safe unpacker (no `..`, no absolute paths, no links out), then packed with the
//! agent's deterministic packer (which honours `.phasegateignore`).

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use phasegate_agent::bundle::{Budget, BundleError, PackedBundle, UnpackLimits};

/// Largest phase spec read from a repository (the control API's limit too).
const MAX_SPEC_BYTES: u64 = 256 * 1024;

/// Why a repository tarball could not become a source bundle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("invalid spec path `{0}` in [[experiment]]: expected a relative path inside the repository")]
    SpecPath(String),
    #[error("failed to read the repository tarball: {0}")]
    Archive(std::io::Error),
    #[error("the repository tarball does not hold exactly one top-level folder (found `{first}` and `{other}`)")]
    TopLevel { first: String, other: String },
    #[error("the files under `{dir}` in the repository exceed the bundle limit of {limit} bytes")]
    TooLarge { dir: String, limit: u64 },
    #[error("the repository at this commit has no phase spec `{0}`")]
    NoSpec(String),
    #[error("failed to read the phase spec `{path}` from the repository: {message}")]
    Spec { path: String, message: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("failed to prepare the source bundle: {0}")]
    Io(std::io::Error),
}

/// The spec text and the bundle of its directory.
#[derive(Debug)]
pub(crate) struct SourceBundle {
    pub spec_toml: String,
    /// The spec's path in the repository (for messages, as the CLI sends the local path).
    pub spec_path: String,
    pub bundle: PackedBundle,
}

/// Builds the source bundle of `spec` (a repository-relative path) from a gzipped repository
/// tarball; `limit` bounds the bundle's content. Blocking.
pub(crate) fn source_bundle(tarball: &[u8], spec: &str, limit: u64) -> Result<SourceBundle, SourceError> {
    let spec_rel = relative(spec).ok_or_else(|| SourceError::SpecPath(spec.to_owned()))?;
    let spec_dir = spec_rel.parent().map(Path::to_path_buf).unwrap_or_default();
    let filtered = subtree(tarball, &spec_dir, limit)?;
    let dir = tempfile::tempdir().map_err(SourceError::Io)?;
    let limits = UnpackLimits { max_bytes: limit, ..UnpackLimits::default() };
    phasegate_agent::bundle::unpack_with(&filtered, dir.path(), &limits)?;
    let file_name = spec_rel.file_name().map(PathBuf::from).unwrap_or_default();
    let spec_file = dir.path().join(file_name);
    if !spec_file.is_file() {
        return Err(SourceError::NoSpec(spec.to_owned()));
    }
    let spec_toml = read_spec(&spec_file).map_err(|message| SourceError::Spec { path: spec.to_owned(), message })?;
    let bundle = phasegate_agent::bundle::pack(dir.path(), limit)?;
    Ok(SourceBundle { spec_toml, spec_path: spec.to_owned(), bundle })
}

fn read_spec(path: &Path) -> Result<String, String> {
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    file.take(MAX_SPEC_BYTES + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(format!("larger than {MAX_SPEC_BYTES} bytes"));
    }
    Ok(text)
}

/// `path` as plain relative components, or `None` for absolute paths and `..`.
fn relative(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// A new gzipped tar of the entries below `top/dir/`, renamed relative to it; pax headers are
/// dropped and the top-level folder must be the same for every entry. The tarball is read as a
/// stream; the entries kept are bounded by `limit` bytes and the default entry count and depth.
fn subtree(tarball: &[u8], dir: &Path, limit: u64) -> Result<Vec<u8>, SourceError> {
    let mut archive = tar::Archive::new(GzDecoder::new(tarball));
    let mut out = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut top: Option<PathBuf> = None;
    let mut total: u64 = 0;
    let mut budget = Budget::new(&UnpackLimits::default());
    for entry in archive.entries().map_err(SourceError::Archive)? {
        let mut entry = entry.map_err(SourceError::Archive)?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        }
        let path = entry.path().map_err(SourceError::Archive)?.into_owned();
        let mut components = path.components();
        let Some(Component::Normal(first)) = components.next() else { continue };
        let first = PathBuf::from(first);
        match &top {
            None => top = Some(first),
            Some(t) if *t != first => {
                let (first, other) = (t.display().to_string(), first.display().to_string());
                return Err(SourceError::TopLevel { first, other });
            }
            Some(_) => {}
        }
        let Ok(rel) = components.as_path().strip_prefix(dir) else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let rel = rel.to_path_buf();
        total = total.saturating_add(entry.size());
        if total > limit {
            return Err(SourceError::TooLarge { dir: dir.display().to_string(), limit });
        }
        budget.take(&rel, 0)?;
        let mut header = entry.header().clone();
        if kind == tar::EntryType::Symlink {
            let target = entry.link_name().map_err(SourceError::Archive)?.unwrap_or_default().into_owned();
            out.append_link(&mut header, &rel, target).map_err(SourceError::Io)?;
        } else {
            out.append_data(&mut header, &rel, &mut entry).map_err(SourceError::Io)?;
        }
    }
    out.into_inner().and_then(GzEncoder::finish).map_err(SourceError::Io)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tarball shaped like GitHub's: a pax global header, then `acme-lab-<sha>/...`.
    pub(crate) fn github_tarball(sha: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        let comment = format!("52 comment={sha}\n");
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XGlobalHeader);
        pax.set_size(comment.len() as u64);
        pax.set_cksum();
        builder.append_data(&mut pax, "pax_global_header", comment.as_bytes()).unwrap();
        let top = format!("acme-lab-{}", &sha[..7]);
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        dir.set_cksum();
        builder.append_data(&mut dir, format!("{top}/"), std::io::empty()).unwrap();
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, format!("{top}/{name}"), *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn names(bundle: &PackedBundle) -> Vec<String> {
        let mut archive = tar::Archive::new(GzDecoder::new(bundle.bytes.as_slice()));
        let mut names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        names.sort();
        names
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn the_bundle_is_the_spec_directory_without_the_top_folder() {
        let tarball = github_tarball(
            SHA,
            &[
                ("README.md", b"hi"),
                ("experiments/persona/phase.toml", b"experiment = \"persona\"\n"),
                ("experiments/persona/gate.toml", b"min_effect = 0.5\n"),
                ("experiments/persona/data/train.jsonl", b"{}\n"),
                ("experiments/other/phase.toml", b"x"),
            ],
        );
        let source = source_bundle(&tarball, "experiments/persona/phase.toml", 1 << 20).unwrap();
        assert_eq!(source.spec_toml, "experiment = \"persona\"\n");
        assert_eq!(source.spec_path, "experiments/persona/phase.toml");
        let names = names(&source.bundle);
        assert!(names.contains(&"gate.toml".to_owned()) && names.contains(&"data/train.jsonl".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("README") || n.contains("other") || n.contains("acme")), "{names:?}");
        // Deterministic: the same tree gives the same bundle.
        let again = source_bundle(&tarball, "./experiments/persona/phase.toml", 1 << 20).unwrap();
        assert_eq!(again.bundle.sha256, source.bundle.sha256);
    }

    #[test]
    fn missing_spec_bad_paths_and_limits_are_errors() {
        let tarball = github_tarball(SHA, &[("experiments/persona/phase.toml", b"0123456789")]);
        let err = source_bundle(&tarball, "experiments/nope/phase.toml", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("no phase spec `experiments/nope/phase.toml`"), "{err}");
        for bad in ["../phase.toml", "/etc/phase.toml", ""] {
            assert!(matches!(source_bundle(&tarball, bad, 1 << 20), Err(SourceError::SpecPath(_))), "{bad}");
        }
        let err = source_bundle(&tarball, "experiments/persona/phase.toml", 5).unwrap_err();
        assert!(matches!(err, SourceError::TooLarge { .. }), "{err}");
        assert!(matches!(source_bundle(b"not a tarball", "phase.toml", 1 << 20), Err(SourceError::Archive(_))));
    }

    #[test]
    fn deep_paths_and_bombs_in_the_tarball_name_their_limit() {
        let deep = format!("experiments/persona/{}/f.txt", vec!["d"; 40].join("/"));
        let tarball = github_tarball(SHA, &[("experiments/persona/phase.toml", b"x"), (deep.as_str(), b"1")]);
        let err = source_bundle(&tarball, "experiments/persona/phase.toml", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("the path depth reaches 41, over the limit of 32"), "{err}");
        let big = vec![0_u8; 4 << 20];
        let tarball =
            github_tarball(SHA, &[("experiments/persona/phase.toml", b"x"), ("experiments/persona/z.bin", &big)]);
        assert!(tarball.len() < 64 * 1024);
        let err = source_bundle(&tarball, "experiments/persona/phase.toml", 1 << 20).unwrap_err();
        assert!(matches!(err, SourceError::TooLarge { limit: 1048576, .. }), "{err}");
    }
}
