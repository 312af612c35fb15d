//! A port that is already taken, through the real binary: the server stops
//! at once with exit code 1 and one line on stderr that names the address
//! and the flag it came from, and says what to do (`--bind ADDR:PORT`).

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Starts the binary with `args` (and an empty environment) and returns its
/// exit code and stderr. Bounded: a server that started anyway is killed.
fn start(args: &[&str]) -> (Option<i32>, String) {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_wsrooms"))
            .args(args)
            .env_clear(),
        None,
        Duration::from_secs(10),
    );
    (out.exited().code(), out.stderr.clone())
}

/// The one line of stderr about the listening socket.
fn listen_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("wsrooms: cannot listen"))
        .unwrap_or_else(|| panic!("no 'cannot listen' line in stderr: {stderr:?}"))
}

#[test]
fn a_busy_bind_address_is_named_with_the_flag_to_change_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = start(&["--bind", &addr]);
    assert_eq!(code, Some(1), "exit code; stderr {stderr:?}");
    let line = listen_line(&stderr);
    assert!(
        line.starts_with(&format!("wsrooms: cannot listen on {addr} (--bind): ")),
        "{line:?}"
    );
    assert!(line.contains("Address already in use"), "{line:?}");
    assert!(
        line.ends_with("is another wsrooms running? choose another with --bind ADDR:PORT"),
        "{line:?}"
    );
    drop(taken);
}

#[test]
fn a_busy_metrics_address_names_metrics_bind() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = start(&["--bind", "127.0.0.1:0", "--metrics-bind", &addr]);
    assert_eq!(code, Some(1), "exit code; stderr {stderr:?}");
    let line = listen_line(&stderr);
    assert!(
        line.starts_with(&format!(
            "wsrooms: cannot listen on {addr} (--metrics-bind): "
        )),
        "{line:?}"
    );
    assert!(
        line.ends_with("choose another with --metrics-bind ADDR:PORT"),
        "{line:?}"
    );
    drop(taken);
}
