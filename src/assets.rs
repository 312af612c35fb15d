//! The web pages in `www/`, embedded in the binary at build time (or read from
//! a directory with `--www`, to edit the front end without rebuilding).
//! Each asset has an `ETag` (a hash of its bytes) so browsers revalidate
//! cheaply with `If-None-Match` and get `304 Not Modified`.

use std::path::PathBuf;

use crate::bytes::Bytes;

/// One page or file.
struct Asset {
    /// File name in `www/`.
    file: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        file: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../www/index.html"),
    },
    Asset {
        file: "room.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../www/room.html"),
    },
    Asset {
        file: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../www/style.css"),
    },
    Asset {
        file: "login.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../www/login.js"),
    },
    Asset {
        file: "room.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../www/room.js"),
    },
    Asset {
        file: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../www/favicon.svg"),
    },
];

/// An asset ready to send.
pub struct Found {
    /// Embedded (`Static`, no copy) or read from disk (`Owned`).
    pub bytes: Bytes,
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// Its `ETag` (a hash of the embedded bytes), for `If-None-Match`.
    pub etag: String,
}

/// Where pages come from.
pub struct Assets {
    dir: Option<PathBuf>,
    etags: Vec<String>,
}

impl Assets {
    /// The embedded pages, or with `dir` (`--www`) the files of that directory;
    /// hashes the embedded ones for their `ETag`s.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let etags = ASSETS.iter().map(|a| etag(a.bytes)).collect();
        Assets { dir, etags }
    }

    /// The asset stored as `file` (e.g. `room.js`).
    pub fn get(&self, file: &str) -> Option<Found> {
        let index = ASSETS.iter().position(|a| a.file == file)?;
        let asset = &ASSETS[index];
        if let Some(dir) = &self.dir {
            let bytes = std::fs::read(dir.join(asset.file)).ok()?;
            let tag = etag(&bytes);
            return Some(Found {
                bytes: Bytes::Owned(bytes),
                content_type: asset.content_type,
                etag: tag,
            });
        }
        Some(Found {
            bytes: Bytes::Static(asset.bytes),
            content_type: asset.content_type,
            etag: self.etags[index].clone(),
        })
    }
}

/// A strong ETag: the FNV-1a 64-bit hash of the bytes.
fn etag(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}
