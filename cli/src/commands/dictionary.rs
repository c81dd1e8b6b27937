//! `phasegate models pull dictionary-pt|dictionary-en`: the Hunspell dictionary the rules scorer
//! reads answers with, from the npm package of that name (`npm pack`, no root, no install), kept in
//! the model cache under `dictionaries/<language>/` (see `phasegate_score::dictionary_dir`).

use std::path::{Path, PathBuf};
use std::process::Command;

use phasegate_score::{Language, dictionary_dir, dictionary_package};

use crate::exit::{Failure, Result};

/// The packages are pinned: the dictionary is part of the rules instrument.
const PINNED: &[(Language, &str)] = &[(Language::Pt, "dictionary-pt@4.0.0"), (Language::En, "dictionary-en@4.0.0")];
/// The files of the package the scorer reads.
const MEMBERS: [&str; 2] = ["index.aff", "index.dic"];

/// The language whose dictionary `name` is (`dictionary-pt`), or None for a model name.
pub fn language_of(name: &str) -> Option<Language> {
    PINNED.iter().map(|(l, _)| *l).find(|l| dictionary_package(*l) == name)
}

/// Pulls the dictionary of `language` into `cache` unless it is there; returns its directory.
pub async fn pull_into(language: Language, cache: &Path) -> Result<PathBuf> {
    let target = dictionary_dir(cache, language);
    if MEMBERS.iter().all(|m| target.join(m).is_file()) {
        eprintln!("dictionary {} is cached at {}", dictionary_package(language), target.display());
        return Ok(target);
    }
    let spec = PINNED.iter().find(|(l, _)| *l == language).map_or("", |(_, s)| *s).to_owned();
    eprintln!("pulling dictionary {spec} into {}: `npm pack {spec}` (one time)", target.display());
    let cache = cache.to_owned();
    tokio::task::spawn_blocking(move || pull(&spec, &cache, &target))
        .await
        .map_err(|e| Failure::infra(format!("the pull task stopped: {e}")))?
}

fn pull(spec: &str, cache: &Path, target: &Path) -> Result<PathBuf> {
    let staging = cache.join(format!(".pull-dictionary-{}", std::process::id()));
    let result = pack_and_extract(spec, &staging, target);
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| target.to_owned())
}

fn pack_and_extract(spec: &str, staging: &Path, target: &Path) -> Result<()> {
    let fail = |what: String| Failure::infra(format!("failed to pull dictionary {spec}: {what}"));
    std::fs::create_dir_all(staging).map_err(|e| fail(format!("cannot create {}: {e}", staging.display())))?;
    let output = Command::new("npm")
        .args(["pack", "--silent", spec])
        .current_dir(staging)
        .output()
        .map_err(|e| fail(format!("cannot run `npm`: {e}")).with_hint("install Node.js and npm"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!("`npm pack {spec}` failed ({}): {}", output.status, stderr.trim())));
    }
    let tarball = std::fs::read_dir(staging)
        .ok()
        .and_then(|d| d.filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.extension().is_some_and(|x| x == "tgz")))
        .ok_or_else(|| fail(format!("npm pack left no tarball in {}", staging.display())))?;
    let out = staging.join("dictionary");
    extract(&tarball, &out).map_err(|e| fail(format!("cannot unpack {}: {e}", tarball.display())))?;
    if let Some(missing) = MEMBERS.iter().find(|m| !out.join(m).is_file()) {
        return Err(fail(format!("{} has no package/{missing}", tarball.display())));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let _ = std::fs::remove_dir_all(target);
    // One rename of a directory in the same cache: readers see both files or neither.
    std::fs::rename(&out, target).map_err(|e| fail(format!("cannot move it to {}: {e}", target.display())))
}

/// Writes the tarball's `package/index.aff` and `package/index.dic` into `out`.
fn extract(tarball: &Path, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let file = std::fs::File::open(tarball)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if let Some(name) = MEMBERS.iter().find(|m| path == Path::new("package").join(m)) {
            entry.unpack(out.join(name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_names_map_to_languages() {
        let cases = [("dictionary-pt", Some(Language::Pt)), ("dictionary-en", Some(Language::En))];
        let others = [("dictionary-es", None), ("smollm2-135m-instruct", None)];
        for (name, expected) in cases.into_iter().chain(others) {
            assert_eq!(language_of(name), expected, "{name}");
        }
    }

    #[test]
    fn extract_takes_only_the_two_dictionary_files() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("d.tgz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tarball).unwrap(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, body) in
            [("package/index.aff", "SET UTF-8\n"), ("package/index.dic", "1\nola\n"), ("package/index.js", "x")]
        {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, body.as_bytes()).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        let out = dir.path().join("out");
        extract(&tarball, &out).unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["index.aff", "index.dic"]);
    }
}
