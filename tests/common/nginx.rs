//! nginx for the deployment tests: the shipped site files of `deploy/`
//! rendered for loopback test ports and a self-signed certificate, and
//! nginx run in the foreground from a temporary directory (config, pid,
//! logs and temp files all there), killed on drop.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::{TOOL_TIMEOUT, free_port, repo, run_bounded};

/// A self-signed certificate for `localhost` / 127.0.0.1, valid one day:
/// returns (certificate, key) paths in `dir`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = run_bounded(
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
    assert!(out.exited().success(), "openssl req failed: {}", out.stderr);
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
        let test = run_bounded(&mut nginx(&["-t", "-q"]), None, TOOL_TIMEOUT);
        assert!(
            test.exited().success(),
            "nginx -t refuses the rendered config:\n{}\n{}\n--- site.conf ---\n{site}",
            test.stderr,
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
