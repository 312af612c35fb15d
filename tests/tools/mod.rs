//! Helpers for the tests that drive external programs (issue 7: config,
//! metrics, deployment): find Python / nginx / openssl or skip (a failure
//! under `CI=true`), temporary directories, free loopback ports, a
//! self-signed certificate, nginx run from a temporary directory with the
//! shipped site config rendered for test ports, and `wsrooms` children whose
//! log goes to a file. Everything listens on 127.0.0.1 only, every wait is
//! bounded, and every child process is killed on drop.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest any helper program (python, openssl, nginx start) may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Under `CI=true` a missing tool fails the test instead of skipping it.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a missing tool: panics under CI; otherwise prints why the test
/// is skipped (the caller then returns).
pub fn missing(what: &str) {
    if ci() {
        panic!("CI=true but {what} is missing (.ci/run installs it)");
    }
    eprintln!("SKIPPED: {what} is missing; install it (see .ci/run) to run this test");
}

/// The repository's root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program args…` runs and exits 0 (within a few seconds).
pub fn runs(program: &str, args: &[&str]) -> bool {
    let Ok(mut child) = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// The Python that has `modules`: `$WSROOMS_TEST_PYTHON`, else
/// `target/test-venv/bin/python`, else `python3`. `None` (after
/// [`missing`]) when none of them can import the modules.
pub fn python(modules: &[&str]) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("WSROOMS_TEST_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(repo().join("target/test-venv/bin/python"));
    candidates.push(PathBuf::from("python3"));
    let import = format!("import {}", modules.join(", "));
    for candidate in candidates {
        if runs(candidate.to_str().unwrap(), &["-c", &import]) {
            return Some(candidate);
        }
    }
    missing(&format!(
        "a Python with {} (tests/python/requirements.txt in target/test-venv)",
        modules.join(" and ")
    ));
    None
}

/// `nginx` and `openssl`, or `false` after [`missing`].
pub fn have_nginx_and_openssl() -> bool {
    if !runs("nginx", &["-v"]) {
        missing("nginx (Debian package nginx)");
        return false;
    }
    if !runs("openssl", &["version"]) {
        missing("openssl (Debian package openssl)");
        return false;
    }
    true
}

/// Runs a command to its end, at most `limit`; panics (with what it printed)
/// when it takes longer.
pub fn run_with_timeout(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("{cmd:?} took longer than {limit:?}; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `tests/python/{script}` with `args`; panics unless it exits 0.
/// Returns its stdout parsed as JSON.
pub fn run_python(python: &Path, script: &str, args: &[String]) -> serde_json::Value {
    let path = repo().join("tests/python").join(script);
    let out = run_with_timeout(
        Command::new(python).arg(&path).args(args),
        None,
        TOOL_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}\n{stderr}"))
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "wsrooms-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for `localhost` / 127.0.0.1, valid one day:
/// returns (certificate, key) paths in `dir`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = run_with_timeout(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=localhost", "-days", "1"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        None,
        TOOL_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `template` with every `(from, to)` replaced. Panics when a `from` is not
/// in the template: the shipped file changed and the test must follow.
pub fn render(template: &str, file: &str, substitutions: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (from, to) in substitutions {
        assert!(
            text.contains(from),
            "{file} no longer contains {from:?}; update the test that renders it"
        );
        text = text.replace(from, to);
    }
    text
}

/// The shipped `deploy/{name}`.
pub fn shipped(name: &str) -> String {
    std::fs::read_to_string(repo().join("deploy").join(name))
        .unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// Renders a shipped nginx site file (deploy/nginx.conf or
/// deploy/nginx-sharded.conf) for a test: its listen lines become
/// 127.0.0.1 with the given ports (the IPv6 ones are dropped), the
/// certificate paths the test's own, and each `upstreams` pair
/// `(shipped server line, backend address)` is rewritten.
pub fn render_site(
    file: &str,
    https_port: u16,
    http_port: u16,
    cert: &Path,
    key: &Path,
    upstreams: &[(&str, SocketAddr)],
) -> String {
    let mut subs: Vec<(&str, String)> = vec![
        (
            "listen 443 ssl;",
            format!("listen 127.0.0.1:{https_port} ssl;"),
        ),
        ("listen [::]:443 ssl;", String::new()),
        ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
        ("listen [::]:80;", String::new()),
        (
            "/etc/letsencrypt/live/chat.example.com/fullchain.pem",
            cert.display().to_string(),
        ),
        (
            "/etc/letsencrypt/live/chat.example.com/privkey.pem",
            key.display().to_string(),
        ),
    ];
    for (line, addr) in upstreams {
        subs.push((line, format!("server {addr}")));
    }
    render(&shipped(file), file, &subs)
}

/// nginx running in the foreground as one process (`master_process off`)
/// with its config, pid, logs and temp files in a test directory; killed
/// on drop.
pub struct Nginx {
    child: Child,
    pub error_log: PathBuf,
}

impl Nginx {
    /// Starts nginx with the site `render(https_port, http_port)` returns,
    /// on two free loopback ports; picks new ports when another process took
    /// one meanwhile. Returns nginx and the two ports.
    pub fn start_on_free_ports(
        dir: &Path,
        render: impl Fn(u16, u16) -> String,
    ) -> (Nginx, u16, u16) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let https_port = free_port();
            let http_port = free_port();
            if https_port == http_port {
                continue;
            }
            match Nginx::try_start(
                dir,
                &render(https_port, http_port),
                &[https_port, http_port],
            ) {
                Ok(nginx) => return (nginx, https_port, http_port),
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
    }

    /// Wraps `site` (an http-level site file) in a main config, checks it
    /// with `nginx -t`, starts nginx and waits until `ports` accept.
    pub fn start(dir: &Path, site: &str, ports: &[u16]) -> Nginx {
        Nginx::try_start(dir, site, ports)
            .unwrap_or_else(|log| panic!("nginx did not start:\n{log}"))
    }

    /// Like [`Nginx::start`]; when nginx exits at once, returns its log.
    pub fn try_start(dir: &Path, site: &str, ports: &[u16]) -> Result<Nginx, String> {
        let d = dir.display();
        // WSROOMS_TEST_NGINX_LOG=debug to see nginx's side of a failure.
        let level = std::env::var("WSROOMS_TEST_NGINX_LOG").unwrap_or_else(|_| "notice".into());
        std::fs::write(dir.join("site.conf"), site).unwrap();
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log {level};\nevents {{ worker_connections 1024; }}\n\
             http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/client_body;\n\
             \x20   proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
             \x20   include {d}/site.conf;\n}}\n"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let error_log = dir.join("error.log");
        let nginx = |extra: &[&str]| {
            let mut cmd = Command::new("nginx");
            cmd.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&error_log)
                .args(extra);
            cmd
        };
        let test = run_with_timeout(&mut nginx(&["-t", "-q"]), None, TOOL_TIMEOUT);
        assert!(
            test.status.success(),
            "nginx -t refuses the rendered config:\n{}\n{}\n--- site.conf ---\n{site}",
            String::from_utf8_lossy(&test.stderr),
            std::fs::read_to_string(&error_log).unwrap_or_default()
        );
        let mut child = nginx(&[])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(dir.join("stderr.log")).unwrap()))
            .spawn()
            .expect("spawn nginx");
        let deadline = Instant::now() + Duration::from_secs(15);
        for &port in ports {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return Err(format!(
                        "nginx exited ({status}):\n{}\n{}",
                        std::fs::read_to_string(&error_log).unwrap_or_default(),
                        std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
                    ));
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("nginx does not listen on {port}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(Nginx { child, error_log })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(keep) = std::env::var("WSROOMS_TEST_KEEP_NGINX_LOG") {
            let _ = std::fs::copy(&self.error_log, keep);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `wsrooms` child process; its log (stdout and stderr: `simple_logger`
/// writes to stdout) is collected in memory and also written to a file.
pub struct Wsrooms {
    child: Child,
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Wsrooms {
    /// Runs the binary with exactly `args` and `envs` (the environment is
    /// otherwise emptied, so no `WSROOMS_*` or `RUST_LOG` of the caller leaks
    /// in) and waits for its "listening on" line.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], log: PathBuf) -> Wsrooms {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsrooms"))
            .args(args)
            .env_clear()
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsrooms");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let file = Arc::new(Mutex::new(File::create(&log).unwrap()));
        let (tx, rx) = mpsc::channel();
        let collect = |pipe: Box<dyn Read + Send>, tx: Option<mpsc::Sender<SocketAddr>>| {
            let (lines, file) = (Arc::clone(&lines), Arc::clone(&file));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let (Some(tx), Some(addr)) =
                        (&tx, line.strip_prefix("wsrooms listening on http://"))
                    {
                        let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                    }
                    let _ = writeln!(file.lock().unwrap(), "{line}");
                    lines.lock().unwrap().push(line);
                }
            });
        };
        collect(Box::new(child.stdout.take().unwrap()), Some(tx));
        collect(Box::new(child.stderr.take().unwrap()), None);
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => Wsrooms { child, addr, lines },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "wsrooms {args:?} did not report its address; log:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (up to 10 s) for a log line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Wsrooms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of an unlabelled sample in Prometheus text (`name value`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    metric_with(text, name, "")
}

/// The value of a sample `name{labels} value` with exactly this label text
/// (e.g. `code="1000"`), or of `name value` when `labels` is empty.
pub fn metric_with(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
}
