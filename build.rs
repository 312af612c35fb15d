//! Build script: the commit the binary is built from, for `--version` and
//! `wsrooms_build_info` (`src/build_info.rs`), as `WSROOMS_COMMIT`.
//!
//! It asks `git rev-parse --short HEAD`, but only when the package
//! directory is itself the top of a git work tree (a tarball unpacked
//! inside some other repository must not take that repository's commit);
//! without git, or outside a work tree, the commit is `unknown`. No network.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WSROOMS_COMMIT");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var("WSROOMS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git_commit(&dir))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=WSROOMS_COMMIT={commit}");
}

/// `git rev-parse` in `dir`, trimmed; `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The short commit of the work tree whose top is `dir`, and the files
/// that change when it moves (so that a new commit rebuilds with the new
/// name, and nothing else reruns this script).
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| a.canonicalize().ok() == b.canonicalize().ok();
    if !same(Path::new(&top), dir) {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let mut watch = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.extend(git(dir, &["rev-parse", "--git-path", &branch]));
    }
    watch.extend(git(dir, &["rev-parse", "--git-path", "packed-refs"]));
    for path in watch {
        let path = dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
