//! The shipped deploy/nginx.conf, run for real (issue 7): nginx from
//! Debian's package with a self-signed certificate made here, terminating
//! TLS in front of the real `wsrooms` binary run with the `--trust-proxy`
//! (loopback) and per-address limits deploy/wsrooms.service sets. A Python client (tests/python/proxy_chat.py)
//! logs in over https and chats over wss://.
//!
//! The test renders the shipped file, replacing only its `listen` lines,
//! the certificate paths and the upstream `server` line (see the top of
//! deploy/nginx.conf); everything else is tested as shipped.
//!
//! Skipped (with a message) without nginx, openssl or Python `websockets`;
//! under CI (`CI=true` or `CI=1`) their absence fails.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "deploy_nginx",
        &[
            (
                "chat_over_wss_through_the_shipped_nginx_config",
                chat_over_wss_through_the_shipped_nginx_config,
            ),
            (
                "the_proxy_redirects_http_and_hides_metrics",
                the_proxy_redirects_http_and_hides_metrics,
            ),
            (
                "trust_proxy_logs_the_address_nginx_saw",
                trust_proxy_logs_the_address_nginx_saw,
            ),
            (
                "keepalive_pings_pass_through_nginx",
                keepalive_pings_pass_through_nginx,
            ),
            (
                "the_site_files_pass_nginx_t_inside_debians_own_nginx_conf",
                the_site_files_pass_nginx_t_inside_debians_own_nginx_conf,
            ),
        ],
    )
}

/// The name these tests are skipped under when a tool is missing.
const SUITE: &str = "deploy_nginx";

/// The per-address limits deploy/wsrooms.service sets (its
/// `Environment=WSROOMS_…_PER_IP=` lines), so the backend runs with them.
fn unit_per_address_limits() -> Vec<(String, String)> {
    shipped("wsrooms.service")
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("WSROOMS_") && k.ends_with("_PER_IP"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The shipped unit's `WSROOMS_TRUST_PROXY` (the proxies it names).
fn unit_trust_proxy() -> String {
    shipped("wsrooms.service")
        .lines()
        .find_map(|l| l.strip_prefix("Environment=WSROOMS_TRUST_PROXY="))
        .expect("WSROOMS_TRUST_PROXY in wsrooms.service")
        .to_string()
}

/// A backend, nginx in front of it, and what the Python client needs.
struct Proxied {
    // Dropped in this order: nginx, the backend, then their directory.
    nginx: Nginx,
    backend: Spawned,
    _dir: TempDir,
    python: PathBuf,
    cert: PathBuf,
    https_port: u16,
    http_port: u16,
}

impl Proxied {
    fn start(backend_args: &[&str]) -> Option<Proxied> {
        if !have_nginx_and_openssl(SUITE) {
            return None;
        }
        let python = python(SUITE, &["websockets"])?;
        let dir = TempDir::new("nginx");
        let (cert, key) = self_signed_cert(dir.path());
        let mut args = vec!["--bind", "127.0.0.1:0"];
        args.extend_from_slice(backend_args);
        let mut limits = unit_per_address_limits();
        limits.push(("WSROOMS_TRUST_PROXY".into(), unit_trust_proxy()));
        let envs: Vec<(&str, &str)> = limits
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let backend = spawn_isolated(&args, &envs, dir.join("wsrooms.log"));
        let (nginx, https_port, http_port) =
            Nginx::start_on_free_ports(dir.path(), |https, http| {
                render_site(
                    "nginx.conf",
                    https,
                    http,
                    &cert,
                    &key,
                    &[("server 127.0.0.1:8080", backend.addr)],
                )
            });
        Some(Proxied {
            python,
            _dir: dir,
            cert,
            https_port,
            http_port,
            nginx,
            backend,
        })
    }

    /// Runs proxy_chat.py `command` against this nginx.
    fn client(&self, command: &str, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<String> = vec![
            command.into(),
            "--port".into(),
            self.https_port.to_string(),
            "--cafile".into(),
            path(&self.cert),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let result = std::panic::catch_unwind(|| run_python(&self.python, "proxy_chat.py", &all));
        match result {
            Ok(v) => v,
            Err(e) => {
                eprintln!(
                    "--- nginx error log ---\n{}\n--- wsrooms log ---\n{}",
                    self.nginx.log(),
                    self.backend.log.all()
                );
                std::panic::resume_unwind(e)
            }
        }
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn chat_over_wss_through_the_shipped_nginx_config() {
    let Some(p) = Proxied::start(&["--log-level", "info"]) else {
        return;
    };
    // Two rooms, three users each (one with a Hangul id), every one of them
    // logs in over https, loads the room page, and chats over wss://.
    let r = p.client(
        "chat",
        &[
            "--rooms",
            "5,6",
            "--users",
            "alice,bob,민준",
            "--messages",
            "4",
        ],
    );
    assert_eq!(r["messages"], 2 * 3 * 4, "{r}");
    // A page of another site may not open a socket with the visitor's cookie.
    let r = p.client("bad-origin", &["--room", "7", "--user", "carol"]);
    assert_eq!(r["status"], 403);
    p.backend
        .log
        .wait_for(&["login: \"alice\" reserved in room 5"], IO_TIMEOUT);
    // The unit's proxies: loopback, where nginx connects from.
    p.backend
        .log
        .wait_for(&["trust_proxy=127.0.0.1/32,::1/128 "], IO_TIMEOUT);
    // ...with the unit's per-address limits on, and not in the way.
    let config = p.backend.log.wait_for(&["config: "], IO_TIMEOUT);
    for (name, value) in unit_per_address_limits() {
        let key = name.trim_start_matches("WSROOMS_").to_ascii_lowercase();
        assert!(
            config.contains(&format!("{key}={value}")),
            "{name}: {config}"
        );
    }
    assert_eq!(unit_per_address_limits().len(), 3);
}

fn the_proxy_redirects_http_and_hides_metrics() {
    let Some(p) = Proxied::start(&[]) else {
        return;
    };
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], p.http_port));
    let r = http_raw(
        http,
        "GET /rooms/5?x=1 HTTP/1.1\r\nHost: chat.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("Location"),
        Some("https://chat.example.com/rooms/5?x=1")
    );
    let get = |path: &str| p.client("get", &["--path", path]);
    let r = get("/metrics");
    assert_eq!(r["status"], 404, "/metrics must not be public: {r}");
    let r = get("/healthz");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body"], "ok");
    let r = get("/");
    assert_eq!(r["status"], 200, "{r}");
    assert!(
        r["headers"]["strict-transport-security"]
            .as_str()
            .is_some_and(|v| v.starts_with("max-age=")),
        "{r}"
    );
    assert!(r["headers"]["content-security-policy"].is_string(), "{r}");
    // Still there on the backend itself, for a local scraper.
    let direct = common::get(p.backend.addr, "/metrics", "");
    assert_eq!(direct.status, 200);
}

/// `--trust-proxy`: the client address is the one nginx saw and appended
/// to X-Forwarded-For, not nginx's own and not one the client made up.
/// The client connects from 127.0.0.2 (still loopback) so the two differ.
fn trust_proxy_logs_the_address_nginx_saw() {
    let Some(p) = Proxied::start(&["--log-level", "debug"]) else {
        return;
    };
    let r = p.client(
        "chat",
        &[
            "--rooms",
            "9",
            "--users",
            "dora",
            "--messages",
            "1",
            "--source",
            "127.0.0.2",
            "--spoof-xff",
            "203.0.113.9",
        ],
    );
    assert_eq!(r["messages"], 1);
    p.backend
        .log
        .wait_for(&["upgraded to WebSocket"], IO_TIMEOUT);
    let log = p.backend.log.all();
    let upgraded: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upgraded to WebSocket"))
        .collect();
    assert_eq!(upgraded.len(), 1, "{log}");
    assert!(
        upgraded[0].contains("127.0.0.2:"),
        "the socket's address must be the client's (127.0.0.2): {}",
        upgraded[0]
    );
    assert!(
        !log.contains("203.0.113.9"),
        "a spoofed address was believed:\n{log}"
    );
}

/// Server pings and client pongs pass through the proxy: with a 1 s ping
/// and 1 s pong timeout, a socket idle for 3 s is still open afterwards.
fn keepalive_pings_pass_through_nginx() {
    let Some(p) = Proxied::start(&["--ping-interval-secs", "1", "--pong-timeout-secs", "1"]) else {
        return;
    };
    let r = p.client(
        "chat",
        &[
            "--rooms",
            "3",
            "--users",
            "erin,finn",
            "--messages",
            "2",
            "--idle",
            "3",
        ],
    );
    assert_eq!(r["messages"], 4);
}

/// The install steps of deploy/README.md: either site file dropped into
/// Debian's own /etc/nginx (its nginx.conf, mime types, modules) passes
/// `nginx -t`. Works on a copy with the paths moved into a temp directory.
fn the_site_files_pass_nginx_t_inside_debians_own_nginx_conf() {
    if !have_nginx_and_openssl(SUITE) {
        return;
    }
    let etc = Path::new("/etc/nginx");
    if !require(
        SUITE,
        "Debian's /etc/nginx/nginx.conf",
        "apt-get install nginx",
        etc.join("nginx.conf").is_file(),
    ) {
        return;
    }
    let dir = TempDir::new("debian-nginx");
    let (cert, key) = self_signed_cert(dir.path());
    let root = dir.join("etc-nginx");
    let out = run_bounded(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(etc)
            .arg(&root),
        None,
        TOOL_TIMEOUT,
    );
    assert!(out.exited().success(), "{out:?}");
    let logs = dir.join("log");
    std::fs::create_dir_all(&logs).unwrap();
    let main = std::fs::read_to_string(root.join("nginx.conf"))
        .unwrap()
        .replace("/etc/nginx/", &format!("{}/", root.display()))
        .replace("/var/log/nginx/", &format!("{}/", logs.display()));
    std::fs::write(root.join("nginx.conf"), main).unwrap();
    let enabled = root.join("sites-enabled");
    let _ = std::fs::remove_dir_all(&enabled);
    std::fs::create_dir_all(&enabled).unwrap();
    for file in ["nginx.conf", "nginx-sharded.conf"] {
        let site = render(
            &shipped(file),
            file,
            &[
                (
                    "/etc/letsencrypt/live/chat.example.com/fullchain.pem",
                    path(&cert),
                ),
                (
                    "/etc/letsencrypt/live/chat.example.com/privkey.pem",
                    path(&key),
                ),
            ],
        );
        std::fs::write(enabled.join("wsrooms"), site).unwrap();
        let out = run_bounded(
            std::process::Command::new("nginx")
                .arg("-t")
                .arg("-c")
                .arg(root.join("nginx.conf"))
                .arg("-e")
                .arg(logs.join("error.log")),
            None,
            TOOL_TIMEOUT,
        );
        assert!(
            out.exited().success(),
            "deploy/{file} in Debian's nginx.conf: {}",
            out.stderr
        );
    }
}
