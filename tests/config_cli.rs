//! Configuration through the real binary (issue 7): flags and
//! `WSROOMS_*` variables, flags winning; bad values refused at start with
//! exit code 2 and a first line naming the flag (or variable) and its range;
//! `--help`; the effective configuration logged at start.
//!
//! Every run empties the environment first, so a developer's own
//! `WSROOMS_*` or `RUST_LOG` cannot change the outcome.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use tungstenite::Message;

/// Every flag of the flags table in docs/PROTOCOL.md.
const FLAGS: &[&str] = &[
    "bind",
    "max-connections",
    "max-head-bytes",
    "head-timeout-secs",
    "max-message-bytes",
    "max-frame-bytes",
    "max-chat-chars",
    "max-chat-lines",
    "edit-window-secs",
    "rate-limit",
    "rate-burst",
    "max-users-per-room",
    "max-sessions",
    "max-connections-per-ip",
    "login-rate-per-ip",
    "login-burst-per-ip",
    "pause-reading-at",
    "max-buffered",
    "ping-interval-secs",
    "pong-timeout-secs",
    "close-timeout-secs",
    "shutdown-timeout-secs",
    "reserve-secs",
    "grace-secs",
    "history-messages",
    "allow-origin",
    "echo",
    "www",
    "trust-proxy",
    "metrics-bind",
    "sharded",
    "data-file",
    "keep-messages",
    "log-level",
];

fn env_name(flag: &str) -> String {
    format!("WSROOMS_{}", flag.replace('-', "_").to_ascii_uppercase())
}

/// Runs the binary to its end (10 s at most) with only `envs` set.
/// `--bind 127.0.0.1:0` comes first, so that a run which wrongly starts
/// listens on a free port rather than on 8080 (and then times out here).
fn run(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_wsrooms"))
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .envs(envs.iter().copied()),
        None,
        Duration::from_secs(10),
    );
    (out.exited().code(), out.stdout.clone(), out.stderr.clone())
}

/// Asserts a refused start: exit 2, nothing on stdout, and a first line on
/// stderr that contains every one of `needles` (usage lines may follow).
/// Returns the whole of stderr.
fn refused(args: &[&str], envs: &[(&str, &str)], needles: &[&str]) -> String {
    let (code, stdout, stderr) = run(args, envs);
    let what = format!("{args:?} {envs:?}");
    assert_eq!(code, Some(2), "{what}: exit code; stderr {stderr:?}");
    assert_eq!(stdout, "", "{what}: stdout");
    assert!(stderr.ends_with('\n'), "{what}: {stderr:?}");
    let first = stderr.lines().next().unwrap_or("");
    for needle in needles {
        assert!(
            first.contains(needle),
            "{what}: first line {first:?} lacks {needle:?}; stderr {stderr:?}"
        );
    }
    stderr
}

#[test]
fn bad_values_stop_the_start_with_exit_2_and_a_first_line_naming_the_flag() {
    refused(
        &["--max-chat-chars", "0"],
        &[],
        &["--max-chat-chars", "1 to 100000", "\"0\""],
    );
    refused(
        &["--max-chat-chars=abc"],
        &[],
        &["--max-chat-chars", "1 to 100000"],
    );
    refused(
        &[],
        &[("WSROOMS_RATE_LIMIT", "fast")],
        &["WSROOMS_RATE_LIMIT", "0 to 1000000", "\"fast\""],
    );
    refused(
        &[],
        &[("WSROOMS_PING_INTERVAL_SECS", "0")],
        &["WSROOMS_PING_INTERVAL_SECS", "1 to 86400"],
    );
    let stderr = refused(&["--no-such-flag"], &[], &["--no-such-flag"]);
    assert!(stderr.contains("--help"), "{stderr}");
    // A misspelt flag gets the right one suggested.
    let stderr = refused(&["--max-chat-char", "5"], &[], &["--max-chat-char"]);
    assert!(stderr.contains("--max-chat-chars"), "{stderr}");
    refused(&["stray"], &[], &["'stray'"]);
    refused(&["--max-buffered"], &[], &["--max-buffered", "value"]);
    refused(&["--bind", "nowhere"], &[], &["--bind", "ADDR:PORT"]);
    refused(
        &["--metrics-bind", "localhost"],
        &[],
        &["--metrics-bind", "ADDR:PORT"],
    );
    refused(&["--log-level", "loud"], &[], &["--log-level", "debug"]);
    refused(&["--echo=maybe"], &[], &["--echo", "true or false"]);
    refused(
        &[],
        &[("WSROOMS_TRUST_PROXY", "perhaps")],
        &["WSROOMS_TRUST_PROXY", "perhaps", "10.0.0.0/8"],
    );
    refused(
        &["--allow-origin", "chat.example"],
        &[],
        &["--allow-origin", "https://"],
    );
    refused(
        &["--max-head-bytes", "100"],
        &[],
        &["--max-head-bytes", "256 to 1048576"],
    );
    refused(
        &["--pause-reading-at", "2000000", "--max-buffered", "1048576"],
        &[],
        &["--pause-reading-at", "--max-buffered"],
    );
    // The per-address limits (issue 11): 0 is off, so the range starts there
    // for the connections and the rate; a burst needs at least one.
    refused(
        &["--max-connections-per-ip", "-1"],
        &[],
        &["--max-connections-per-ip", "0 to 1000000", "\"-1\""],
    );
    refused(
        &[],
        &[("WSROOMS_LOGIN_RATE_PER_IP", "fast")],
        &["WSROOMS_LOGIN_RATE_PER_IP", "0 to 1000000", "\"fast\""],
    );
    refused(
        &["--login-burst-per-ip=0"],
        &[],
        &["--login-burst-per-ip", "1 to 1000000"],
    );
}

/// `--version` names the commit the binary was built from (the build
/// script asks git; `unknown` outside a git work tree, e.g. a tarball).
#[test]
fn version_names_the_commit() {
    let (code, stdout, stderr) = run(&["--version"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stdout.trim();
    let prefix = concat!("wsrooms ", env!("CARGO_PKG_VERSION"), " (commit ");
    let commit = line
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?}"));
    // The work tree's top and its commit, if the sources are one.
    let head = Command::new("git")
        .args(["rev-parse", "--show-toplevel", "--short", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .and_then(|out| {
            let (top, head) = out.trim().split_once('\n')?;
            let top = std::path::Path::new(top).canonicalize().ok()?;
            (top == repo().canonicalize().ok()?).then(|| head.trim().to_string())
        });
    match head {
        Some(head) => assert_eq!(commit, head, "built from another commit than HEAD"),
        None => assert_eq!(commit, "unknown"),
    }
}

/// Issue 18 §3: values that passed the old checks and crashed the server or
/// could never match are refused at start, naming the flag.
#[test]
fn derived_values_and_origins_are_checked_at_start() {
    for flag in ["--login-rate-per-ip", "--rate-limit", "--scrollback-rate"] {
        refused(&[flag, "5e-20"], &[], &[flag, "one a day", "\"5e-20\""]);
    }
    refused(
        &[],
        &[("WSROOMS_LOGIN_RATE_PER_IP", "1e-300")],
        &["WSROOMS_LOGIN_RATE_PER_IP", "one a day"],
    );
    for (origin, why) in [
        ("", "empty"),
        ("http://x/path", "no path"),
        ("https://chat.example/", "trailing slash"),
        ("https://chat.example?x", "query"),
        ("https://me@chat.example", "user info"),
        ("https://chat.example:0", "port"),
        ("https://a.example,,https://b.example", "empty"),
    ] {
        refused(
            &["--allow-origin", origin],
            &[],
            &["--allow-origin", "https://chat.example", why],
        );
    }
    refused(
        &[],
        &[("WSROOMS_ALLOW_ORIGIN", "http://x/path")],
        &["WSROOMS_ALLOW_ORIGIN", "no path"],
    );
}

#[test]
fn help_lists_every_flag_with_its_variable_and_default() {
    let (code, stdout, stderr) = run(&["--help"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    for flag in FLAGS {
        let at = lines
            .iter()
            .position(|line| heads_entry_of(line, flag))
            .unwrap_or_else(|| panic!("--help lacks --{flag}:\n{stdout}"));
        // Under its own line, its help line gives the default in brackets and
        // its variable; a number's gives its range too.
        let help = lines.get(at + 1).copied().unwrap_or("");
        assert!(
            help.contains("[default: "),
            "--{flag} has no [default]: {help}"
        );
        let env = format!("[env: {}=]", env_name(flag));
        assert!(help.contains(&env), "--{flag}'s variable: {help:?}");
        let numeric = ["<N>", "<S>", "<R>", "<B>"]
            .iter()
            .any(|v| lines[at].contains(v));
        assert!(
            !numeric || help.contains("[range: "),
            "--{flag}'s range: {help}"
        );
    }
    // And every flag --help lists is one docs/PROTOCOL.md documents.
    let readme = std::fs::read_to_string(repo().join("docs/PROTOCOL.md")).unwrap();
    for word in stdout.split_whitespace() {
        if let Some(rest) = word.strip_prefix("--") {
            let flag: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !flag.is_empty() && flag != "help" {
                assert!(
                    readme.contains(&format!("`--{flag}")),
                    "--{flag} is in --help but not in docs/PROTOCOL.md"
                );
            }
        }
    }
    // -h too.
    let (code, short, _) = run(&["-h"], &[]);
    assert_eq!((code, short), (Some(0), stdout));
}

/// Whether `line` of `--help` is the one that introduces `--flag`
/// (`--bind <ADDR:PORT>`, `--echo[=<BOOL>]`, `-h, --help`).
fn heads_entry_of(line: &str, flag: &str) -> bool {
    let line = line.trim_start();
    let name = format!("--{flag}");
    line.starts_with('-') && line.split([' ', '[', ',']).any(|word| word == name)
}

/// Starts the binary with `args` and `envs` (the environment otherwise
/// empty); the caller's `args` must include `--bind`.
fn spawn(dir: &TempDir, args: &[&str], envs: &[(&str, &str)]) -> Spawned {
    spawn_isolated(args, envs, dir.join("wsrooms.log"))
}

fn max_chars_seen(addr: SocketAddr) -> (u64, String) {
    let (mut ws, welcome) = join(addr, "tess", 2);
    ws.send(Message::text("abcdefghijklmnopqrstuvwxyz"))
        .unwrap();
    let echoed = next_of_type(&mut ws, "message");
    (
        welcome["maxChars"].as_u64().unwrap(),
        echoed["text"].as_str().unwrap().to_string(),
    )
}

#[test]
fn environment_sets_and_flags_override_it() {
    let dir = TempDir::new("config");
    // The variable alone: a 5-character limit, seen in the welcome and in
    // the truncation; the start log shows the effective value.
    let s = spawn(
        &dir,
        &["--bind", "127.0.0.1:0"],
        &[("WSROOMS_MAX_CHAT_CHARS", "5")],
    );
    assert_eq!(max_chars_seen(s.addr), (5, "abcde".to_string()));
    let config_line = s.log.wait_for(&["config: "], IO_TIMEOUT);
    assert!(config_line.contains("max_chat_chars=5"), "{config_line}");
    assert!(config_line.contains("INFO"), "{config_line}");
    drop(s);
    // Flag and variable: the flag wins.
    let s = spawn(
        &dir,
        &["--bind", "127.0.0.1:0", "--max-chat-chars", "7"],
        &[("WSROOMS_MAX_CHAT_CHARS", "5")],
    );
    assert_eq!(max_chars_seen(s.addr), (7, "abcdefg".to_string()));
    drop(s);
    // A variable that a flag overrides is not read at all, so a bad value
    // there does not stop the start.
    let s = spawn(
        &dir,
        &["--bind", "127.0.0.1:0", "--max-chat-chars", "7"],
        &[("WSROOMS_MAX_CHAT_CHARS", "lots")],
    );
    let config_line = s.log.wait_for(&["config: "], IO_TIMEOUT);
    assert!(config_line.contains("max_chat_chars=7"), "{config_line}");
    drop(s);
    // WSROOMS_BIND alone picks the address; a boolean variable turns a
    // switch on (here /echo).
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let s = spawn(&dir, &[], &[("WSROOMS_BIND", &bind), ("WSROOMS_ECHO", "1")]);
    assert_eq!(s.addr.port(), port);
    let mut echo = ws_connect_path(s.addr, "/echo", None, None).expect("/echo is on");
    echo.send(Message::text("hi")).unwrap();
    assert_eq!(echo.read().unwrap(), Message::text("hi"));
    drop(s);
    // ...and the flag form of a switch wins over a variable saying off.
    let s = spawn(
        &dir,
        &["--bind", "127.0.0.1:0", "--echo"],
        &[("WSROOMS_ECHO", "false")],
    );
    assert!(ws_connect_path(s.addr, "/echo", None, None).is_ok());
    drop(s);
    let s = spawn(
        &dir,
        &["--bind", "127.0.0.1:0"],
        &[("WSROOMS_ECHO", "false")],
    );
    assert!(ws_connect_path(s.addr, "/echo", None, None).is_err());
}

#[test]
fn per_address_limits_are_off_by_default_and_set_by_variable_or_flag() {
    let dir = TempDir::new("config-per-ip");
    let s = spawn(&dir, &["--bind", "127.0.0.1:0"], &[]);
    let line = s.log.wait_for(&["config: "], IO_TIMEOUT);
    assert!(
        line.contains("max_connections_per_ip=0 login_rate_per_ip=0/s"),
        "{line}"
    );
    drop(s);
    let s = spawn(
        &dir,
        &["--bind", "127.0.0.1:0", "--login-burst-per-ip", "30"],
        &[
            ("WSROOMS_MAX_CONNECTIONS_PER_IP", "200"),
            ("WSROOMS_LOGIN_RATE_PER_IP", "0.5"),
            ("WSROOMS_LOGIN_BURST_PER_IP", "7"),
        ],
    );
    let line = s.log.wait_for(&["config: "], IO_TIMEOUT);
    assert!(
        line.contains("max_connections_per_ip=200 login_rate_per_ip=0.5/s login_burst_per_ip=30"),
        "{line}"
    );
}

#[test]
fn log_level_comes_from_the_flag_or_rust_log() {
    let dir = TempDir::new("loglevel");
    // RUST_LOG=warn: no info lines (the config line is info).
    let s = spawn(&dir, &["--bind", "127.0.0.1:0"], &[("RUST_LOG", "warn")]);
    let _ = join(s.addr, "uma", 1);
    assert!(!s.log.all().contains("config: "), "{}", s.log.all());
    drop(s);
    // --log-level debug over RUST_LOG=warn: connection lines appear.
    let s = spawn(
        &dir,
        &["--bind", "127.0.0.1:0", "--log-level", "debug"],
        &[("RUST_LOG", "warn")],
    );
    let _ = join(s.addr, "uma", 1);
    s.log.wait_for(&["upgraded to WebSocket"], IO_TIMEOUT);
    s.log.wait_for(&["config: "], IO_TIMEOUT);
}
