//! What the binary was built from: the package version and the git commit
//! (set by the build script, `build.rs`; `unknown` when built outside a git
//! work tree, e.g. from a tarball). Shown by `--version` and served as
//! `wsrooms_build_info{version,commit} 1`.

/// The package version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit, or `unknown`.
pub const COMMIT: &str = env!("WSROOMS_COMMIT");

/// What `--version` prints after the program's name: `0.1.0 (commit 3decc8e)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WSROOMS_COMMIT"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_is_a_short_hash_or_unknown() {
        let hex = (7..=40).contains(&COMMIT.len()) && COMMIT.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(hex || COMMIT == "unknown", "{COMMIT:?}");
        assert!(LONG_VERSION.starts_with(VERSION) && LONG_VERSION.contains(COMMIT));
    }
}
