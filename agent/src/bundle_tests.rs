use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;

const LIMIT: u64 = 1024 * 1024;

fn write(root: &Path, rel: &str, body: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

fn spec_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "spec.toml", b"experiment = \"persona-v1\"\n");
    write(root, "train.py", b"print('train')\n");
    write(root, "data/persona.jsonl", b"{\"messages\": []}\n");
    write(root, ".git/HEAD", b"ref: refs/heads/main\n");
    write(root, ".gitignore", b"output/\n*.pyc\n");
    write(root, ".phasegateignore", b"data/big.bin\n");
    write(root, "output/adapter.bin", b"old run");
    write(root, "cache.pyc", b"bytecode");
    write(root, "data/big.bin", b"huge");
    fs::create_dir_all(root.join("empty")).unwrap();
    dir
}

/// Entry names in archive order.
fn names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn pack_honours_ignore_files_and_skips_git() {
    let dir = spec_dir();
    let packed = pack(dir.path(), LIMIT).unwrap();
    assert_eq!(
        names(&packed.bytes),
        [".gitignore", ".phasegateignore", "data", "data/persona.jsonl", "empty", "spec.toml", "train.py",]
    );
    assert_eq!(packed.file_count, 5);
    assert_eq!(packed.sha256, sha256_hex(&packed.bytes));
}

#[test]
fn round_trip_restores_content_and_executable_bit() {
    let dir = spec_dir();
    let script = dir.path().join("run.sh");
    fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o750)).unwrap();
    symlink("data/persona.jsonl", dir.path().join("current.jsonl")).unwrap();
    // Longer than the 100 bytes a plain tar header holds.
    let deep = format!("{}/weights.txt", ["nested-directory-name"; 8].join("/"));
    write(dir.path(), &deep, b"deep");
    let packed = pack(dir.path(), LIMIT).unwrap();

    let dest = tempfile::tempdir().unwrap();
    let job = dest.path().join("job");
    let summary = unpack(&packed.bytes, &job).unwrap();
    assert_eq!(summary.file_count, packed.file_count);
    assert_eq!(fs::read(job.join("train.py")).unwrap(), b"print('train')\n");
    assert_eq!(fs::read(job.join("current.jsonl")).unwrap(), b"{\"messages\": []}\n");
    let mode = fs::metadata(job.join("run.sh")).unwrap().permissions().mode();
    assert_ne!(mode & 0o100, 0, "mode {mode:o}");
    assert!(job.join("empty").is_dir());
    assert_eq!(fs::read(job.join(&deep)).unwrap(), b"deep");
    assert!(!job.join(".git").exists());
}

#[test]
fn same_tree_gives_same_digest() {
    let a = spec_dir();
    let b = spec_dir();
    // Different mtimes and creation order must not matter.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(b.path(), "train.py", b"print('train')\n");
    let first = pack(a.path(), LIMIT).unwrap();
    assert_eq!(first.sha256, pack(a.path(), LIMIT).unwrap().sha256);
    assert_eq!(first.sha256, pack(b.path(), LIMIT).unwrap().sha256);
    write(b.path(), "train.py", b"print('changed')\n");
    assert_ne!(first.sha256, pack(b.path(), LIMIT).unwrap().sha256);
}

#[test]
fn over_the_limit_names_limit_total_and_largest_files() {
    let dir = tempfile::tempdir().unwrap();
    for (i, size) in [10_usize, 600, 300, 50, 400, 200, 5].into_iter().enumerate() {
        write(dir.path(), &format!("f{i}.bin"), &vec![b'x'; size]);
    }
    let err = pack(dir.path(), 1000).unwrap_err();
    let BundleError::TooLarge { limit, total, ref largest, .. } = err else {
        panic!("unexpected error {err}");
    };
    assert_eq!((limit, total), (1000, 1565));
    let names: Vec<&str> = largest.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["f1.bin", "f4.bin", "f2.bin", "f5.bin", "f3.bin"]);
    let message = err.to_string();
    assert!(message.contains("reach 1565 bytes, over the limit of 1000 bytes"), "{message}");
    assert!(message.contains("f1.bin (600 bytes), f4.bin (400 bytes)"), "{message}");
    assert!(message.contains("hint: list large files in .phasegateignore"), "{message}");
}

#[test]
fn links_leaving_the_tree_are_skipped_when_packing() {
    let dir = spec_dir();
    symlink("/etc/hostname", dir.path().join("host")).unwrap();
    symlink("../../elsewhere", dir.path().join("data/up")).unwrap();
    let packed = pack(dir.path(), LIMIT).unwrap();
    assert_eq!(packed.skipped_links, ["data/up", "host"]);
    assert!(!names(&packed.bytes).iter().any(|n| n == "host"));
}

/// An archive with one raw entry, bypassing the tar crate's own path checks.
fn raw_archive(name: &str, kind: tar::EntryType, link: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    append_raw(&mut builder, name, kind, link, body);
    builder.into_inner().unwrap().finish().unwrap()
}

fn append_raw<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    body: &[u8],
) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(body.len() as u64);
    header.set_cksum();
    builder.append(&header, body).unwrap();
}

fn unpack_error(bytes: &[u8]) -> String {
    let dest = tempfile::tempdir().unwrap();
    unpack(bytes, dest.path()).unwrap_err().to_string()
}

#[test]
fn unpack_rejects_traversal_and_absolute_paths() {
    let err = unpack_error(&raw_archive("../evil.sh", tar::EntryType::Regular, None, b"x"));
    assert_eq!(err, "failed to unpack entry `../evil.sh`: the path contains `..`");
    let err = unpack_error(&raw_archive("a/../../evil", tar::EntryType::Regular, None, b"x"));
    assert!(err.contains("`a/../../evil`"), "{err}");
    let err = unpack_error(&raw_archive("/tmp/evil", tar::EntryType::Regular, None, b"x"));
    assert_eq!(err, "failed to unpack entry `/tmp/evil`: the path is absolute");
}

#[test]
fn unpack_rejects_links_out_of_dest() {
    let err = unpack_error(&raw_archive("l", tar::EntryType::Symlink, Some("/etc"), b""));
    assert_eq!(err, "failed to unpack entry `l`: the link points to the absolute path /etc");
    let err = unpack_error(&raw_archive("a/l", tar::EntryType::Symlink, Some("../.."), b""));
    assert!(err.contains("`a/l`: the link target ../.. leaves the bundle"), "{err}");
    let err = unpack_error(&raw_archive("l", tar::EntryType::Symlink, Some("x/../.."), b""));
    assert!(err.contains("has `..` after a name"), "{err}");
    let err = unpack_error(&raw_archive("h", tar::EntryType::Link, Some("/etc/passwd"), b""));
    assert!(err.contains("`h`: entry type Link is not allowed"), "{err}");
}

#[test]
fn unpack_refuses_to_write_through_a_link() {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    append_raw(&mut builder, "sub", tar::EntryType::Directory, None, b"");
    append_raw(&mut builder, "here", tar::EntryType::Symlink, Some("sub"), b"");
    append_raw(&mut builder, "here/file", tar::EntryType::Regular, None, b"x");
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    let err = unpack_error(&bytes);
    assert_eq!(err, "failed to unpack entry `here/file`: its path goes through a link");
}

#[test]
fn unpack_accepts_links_inside_dest() {
    let dest = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    append_raw(&mut builder, "a/b/data.txt", tar::EntryType::Regular, None, b"ok");
    append_raw(&mut builder, "a/b/l", tar::EntryType::Symlink, Some("../../a/b/data.txt"), b"");
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    unpack(&bytes, dest.path()).unwrap();
    assert_eq!(fs::read(dest.path().join("a/b/l")).unwrap(), b"ok");
}

#[test]
fn sha256_of_file_matches_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "x", b"abc");
    let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(sha256_hex(b"abc"), expected);
    assert_eq!(sha256_file(&dir.path().join("x")).unwrap(), expected);
}

/// A gzipped tar of `files` (name, size of zeros): a few KiB that expand to their sum.
fn zeros_archive(files: &[(&str, usize)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, size) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(*size as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, std::io::repeat(0).take(*size as u64)).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

#[test]
fn a_bundle_bomb_fails_naming_the_limit_and_writes_nothing_big() {
    let bomb = zeros_archive(&[("small.txt", 10), ("bomb.bin", 8 << 20)]);
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {} bytes", bomb.len());
    let dest = tempfile::tempdir().unwrap();
    let limits = UnpackLimits { max_bytes: 1 << 20, ..UnpackLimits::default() };
    let err = unpack_with(&bomb, dest.path(), &limits).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unpacked size in bytes reaches 8388618, over the limit of 1048576"), "{msg}");
    assert!(!dest.path().join("bomb.bin").exists());
    assert!(dir_bytes(dest.path()) <= 10);
}

#[test]
fn the_default_limit_rejects_an_entry_declaring_more_than_it_before_reading_it() {
    // A header declaring 2 GiB followed by no data: rejected on the declared size alone.
    let mut header = tar::Header::new_gnu();
    header.set_path("huge.bin").unwrap();
    header.set_size(2 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(header.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let msg = unpack_error(&bytes);
    assert!(msg.contains(&format!("over the limit of {MAX_UNPACKED_BYTES}")), "{msg}");
}

#[test]
fn entry_count_and_path_depth_are_limited() {
    let many: Vec<(String, usize)> = (0..6).map(|i| (format!("f{i}.txt"), 1)).collect();
    let many: Vec<(&str, usize)> = many.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let dest = tempfile::tempdir().unwrap();
    let limits = UnpackLimits { max_entries: 5, ..UnpackLimits::default() };
    let msg = unpack_with(&zeros_archive(&many), dest.path(), &limits).unwrap_err().to_string();
    assert!(msg.contains("the entry count reaches 6, over the limit of 5"), "{msg}");

    let deep = vec!["d"; MAX_PATH_DEPTH].join("/") + "/f.txt";
    let msg = unpack_error(&zeros_archive(&[(deep.as_str(), 1)]));
    assert!(
        msg.contains(&format!("the path depth reaches {}, over the limit of {MAX_PATH_DEPTH}", MAX_PATH_DEPTH + 1)),
        "{msg}"
    );
    let ok = vec!["d"; MAX_PATH_DEPTH - 1].join("/") + "/f.txt";
    let dest = tempfile::tempdir().unwrap();
    unpack(&zeros_archive(&[(ok.as_str(), 1)]), dest.path()).unwrap();
}
