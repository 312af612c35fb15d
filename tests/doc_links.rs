//! The repository's Markdown documents link only to what exists: every
//! relative link `[text](path)` or `[text](path#anchor)` in a `.md` file
//! names a file or directory of the repository, and every anchor a heading
//! of the file it points into (as GitHub makes anchors from headings). No
//! document points outside the repository with `../`. Web links
//! (`https://…`) are not checked: tests stay off the network.

use std::path::{Path, PathBuf};

/// Directories that hold no documents of ours.
const SKIP_DIRS: &[&str] = &["target", "node_modules", ".git", "corpus", "artifacts"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.md` file of the repository, outside [`SKIP_DIRS`].
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks and inline code spans.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop `code spans`: a link target never contains a backtick.
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of `[text](target)` links.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_`
/// kept, spaces made `-`, everything else dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a document's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// What is wrong with `target`, a link in `file`, if anything.
fn check(file: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let dest = if path.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().unwrap().join(path)
    };
    let Ok(dest) = dest.canonicalize() else {
        return Some(format!("{target}: no such file"));
    };
    if !dest.starts_with(repo().canonicalize().unwrap()) {
        return Some(format!("{target}: outside the repository"));
    }
    let fragment = fragment?;
    if dest.extension().is_some_and(|e| e == "md") {
        let text = std::fs::read_to_string(&dest).unwrap();
        if !anchors(&text).iter().any(|a| a == fragment) {
            return Some(format!("{target}: no heading with anchor #{fragment}"));
        }
    }
    None
}

#[test]
fn relative_links_in_markdown_resolve() {
    let mut files = Vec::new();
    markdown_files(&repo(), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("README.md")),
        "found no README.md: {files:?}"
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&prose(&text)) {
            checked += 1;
            if let Some(why) = check(file, &target) {
                let shown = file.strip_prefix(repo()).unwrap_or(file);
                broken.push(format!("{}: {why}", shown.display()));
            }
        }
    }
    assert!(
        checked > 10,
        "only {checked} links found: is the scan broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        anchor(" Durable rooms (`--data-file`)"),
        "durable-rooms---data-file"
    );
    assert_eq!(anchor(" The turn's commit"), "the-turns-commit");
    assert_eq!(
        anchor(" Sharding: more than one core or machine"),
        "sharding-more-than-one-core-or-machine"
    );
}

/// Every "Rust 1.N" a document asks for is the `rust-version` of
/// `Cargo.toml`: a reader with the version one page names must be able to
/// build.
#[test]
fn documents_ask_for_the_rust_version_cargo_toml_sets() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let wanted = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|rest| rest.split('"').next())
        .expect("rust-version in Cargo.toml");
    let mut files = Vec::new();
    markdown_files(&repo(), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // "Rust 1.89", "Rust (stable, 1.89 or later": a `1.NN` just after "Rust".
        for (at, _) in text.match_indices("Rust") {
            let after = &text[at..text.len().min(at + 40)];
            let Some(start) = after.find("1.") else {
                continue;
            };
            let version: String = after[start..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let version = version.trim_end_matches('.');
            if version.len() >= 4 && version != wanted {
                let shown = file.strip_prefix(repo()).unwrap_or(file);
                wrong.push(format!("{}: Rust {version}", shown.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "rust-version is {wanted}, but:\n{}",
        wrong.join("\n")
    );
}
