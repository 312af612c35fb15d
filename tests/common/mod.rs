//! The one helper module of the integration tests. Each test file says
//! `mod common; use common::*;` and gets every helper by its plain name.
//!
//! The submodules are split by concern:
//! - `server`: a server in a thread of the test or as a child process of
//!   the real binary, its collected log, signals and exit;
//! - `http`: loopback sockets with timeouts, HTTP requests and responses,
//!   login;
//! - `ws`: WebSocket clients, both `tungstenite` ones and raw sockets that
//!   do exactly what a test tells them;
//! - `frames`: the one reader of server frames;
//! - `metrics`: the one parser of the Prometheus text of `/metrics`;
//! - `procfs`: readings of a process from `/proc` (memory, CPU time,
//!   open-files limit);
//! - `tools`: outside programs (Python, nginx, Chromium, node…), the one
//!   skip-or-fail rule for a missing one, bounded child runs, temporary
//!   directories, and the one-time setup of the Python venv and the npm
//!   packages;
//! - `harness`: the runner of the suites that need those outside programs
//!   (`harness = false` targets), which prints what it skipped;
//! - `nginx`: nginx run from a temporary directory with the shipped site
//!   files rendered for test ports.
//!
//! Everything listens on 127.0.0.1 only, every socket has read and write
//! timeouts, every wait is bounded, and every child process is killed on
//! drop.

// Each test file uses only some of the helpers.
#![allow(dead_code, unused_imports, clippy::result_large_err)]

mod frames;
pub mod harness;
mod http;
mod metrics;
mod nginx;
mod procfs;
mod server;
mod tools;
mod ws;

pub use frames::*;
pub use http::*;
pub use metrics::*;
pub use nginx::*;
pub use procfs::*;
pub use server::*;
pub use tools::*;
pub use ws::*;

use std::time::{Duration, Instant};

/// Default time any single read may take in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `cond` holds, polling every few milliseconds, up to `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
