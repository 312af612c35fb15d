//! Socket activation, with the test as the service manager: the test opens
//! the listening sockets itself and starts the real binary with them as
//! descriptors 3 (and 4), `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID`
//! set to the child's own pid (a shell sets it to `$$` and `exec`s the
//! binary, which keeps that pid). One test uses systemd's own
//! `systemd-socket-activate` instead. No `systemctl`: no service manager
//! runs here.
//!
//! The property that matters: while the test holds the socket, a client
//! that connects when no wsrooms process runs (before the first, between
//! two) waits in the backlog and is answered by the next process.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::*;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "socket_activation",
        &[
            (
                "a_passed_socket_is_served_and_the_log_says_so",
                a_passed_socket_is_served_and_the_log_says_so,
            ),
            (
                "a_connect_while_no_process_runs_is_answered_by_the_next_one",
                a_connect_while_no_process_runs_is_answered_by_the_next_one,
            ),
            (
                "main_and_metrics_sockets_go_by_their_names",
                main_and_metrics_sockets_go_by_their_names,
            ),
            (
                "main_and_admin_sockets_go_by_their_names",
                main_and_admin_sockets_go_by_their_names,
            ),
            (
                "variables_for_another_process_are_ignored",
                variables_for_another_process_are_ignored,
            ),
            (
                "a_passed_descriptor_that_is_not_a_listening_tcp_socket_exits_2",
                a_passed_descriptor_that_is_not_a_listening_tcp_socket_exits_2,
            ),
            (
                "systemd_socket_activate_hands_over_its_socket",
                systemd_socket_activate_hands_over_its_socket,
            ),
            (
                "the_shipped_socket_units_match_their_services_and_nginx",
                the_shipped_socket_units_match_their_services_and_nginx,
            ),
        ],
    )
}

const CLOSE: u8 = 0x8;

/// What a passed-in socket's start logs.
const PASSED_LOG: &str = "socket passed in by the service manager";

/// A wsrooms process started as a service manager starts it; killed on drop.
struct Activated {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Activated {
    /// Starts the binary with `sockets` as descriptors 3, 4, … (at most
    /// two), `LISTEN_FDNAMES=names` if given, and `args`; waits for its
    /// "listening on" line. Its output (stdout and stderr) is collected.
    fn start(sockets: &[&TcpListener], names: Option<&str>, args: &[&str]) -> Activated {
        // The shell gets the sockets as its stdin (and stdout), moves them
        // to 3 (and 4), sends the program's own output to stderr, sets
        // LISTEN_PID to its pid and becomes the program.
        let moves = match sockets.len() {
            1 => "3<&0 0</dev/null 1>&2",
            2 => "3<&0 4>&1 0</dev/null 1>&2",
            n => panic!("{n} sockets: the test passes one or two"),
        };
        let script = format!("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\" {moves}");
        let fd = |l: &TcpListener| Stdio::from(OwnedFd::from(l.try_clone().unwrap()));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_wsrooms"))
            .args(["--log-level", "info"])
            .args(args)
            .env_clear()
            .env("LISTEN_FDS", sockets.len().to_string())
            .stdin(fd(sockets[0]))
            .stdout(sockets.get(1).map_or_else(Stdio::null, |l| fd(l)))
            .stderr(Stdio::piped());
        if let Some(names) = names {
            cmd.env("LISTEN_FDNAMES", names);
        }
        let mut child = cmd.spawn().expect("spawn sh + wsrooms");
        let output = Box::new(child.stderr.take().unwrap());
        let (lines, addr) = collect_lines(output);
        match addr.recv_timeout(IO_TIMEOUT) {
            Ok(addr) => Activated { child, addr, lines },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no 'listening on' line; output:\n{}", text(&lines));
            }
        }
    }

    fn log(&self) -> String {
        text(&self.lines)
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects `pipe`'s lines in a thread; the channel gets the address of
/// the "wsrooms listening on http://…" line.
fn collect_lines(
    pipe: Box<dyn Read + Send>,
) -> (Arc<Mutex<Vec<String>>>, mpsc::Receiver<SocketAddr>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("wsrooms listening on http://") {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
            sink.lock().unwrap().push(line);
        }
    });
    (lines, rx)
}

fn text(lines: &Mutex<Vec<String>>) -> String {
    lines.lock().unwrap().join("\n")
}

fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a test socket")
}

/// Connects and sends `GET /healthz` without waiting for the answer.
fn ask_health(addr: SocketAddr) -> TcpStream {
    let mut s =
        TcpStream::connect(addr).expect("connect: must wait in the backlog, not be refused");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    s
}

fn expect_healthy(s: &mut TcpStream, who: &str) {
    let r = read_response(s);
    assert_eq!(r.status, 200, "{who}: {}", r.text());
    assert_eq!(r.text().trim(), "ok", "{who}");
}

fn a_passed_socket_is_served_and_the_log_says_so() {
    let listener = loopback_listener();
    let addr = listener.local_addr().unwrap();
    // --bind names another port: the passed socket wins.
    let server = Activated::start(&[&listener], Some("main"), &["--bind", "127.0.0.1:1"]);
    assert_eq!(server.addr, addr, "reported address");
    expect_healthy(&mut ask_health(addr), "the passed socket");
    let log = server.log();
    assert!(
        log.contains(&format!("listening on {addr}: {PASSED_LOG}")),
        "{log}"
    );
}

fn a_connect_while_no_process_runs_is_answered_by_the_next_one() {
    let listener = loopback_listener();
    let addr = listener.local_addr().unwrap();

    // Before the first process starts.
    let mut before_first = ask_health(addr);
    let args = ["--echo", "--shutdown-timeout-secs", "20"];
    let mut first = Activated::start(&[&listener], Some("main"), &args);
    expect_healthy(&mut before_first, "connected before the first process");

    // While the first one drains: a socket that never answers its 1001
    // keeps it running; it has stopped accepting once the 1001 is out.
    let mut mute = raw_ws(addr, "/echo", None);
    sigterm(first.child.id());
    assert_eq!(read_until_opcode(&mut mute, CLOSE).close().0, 1001);
    let mut while_draining = ask_health(addr);
    while_draining
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = while_draining.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "a draining process must leave new connections to the next one: {early:?}"
    );
    assert!(first.child.try_wait().unwrap().is_none(), "still draining");
    drop(mute);
    let status = wait_exit(&mut first.child, IO_TIMEOUT).expect("first process exits");
    assert!(status.success(), "first process: {status}");
    assert!(
        first.log().contains("left to the service manager"),
        "{}",
        first.log()
    );

    // No process at all.
    let mut between = ask_health(addr);
    while_draining.set_read_timeout(Some(IO_TIMEOUT)).unwrap();

    let _second = Activated::start(&[&listener], Some("main"), &args);
    expect_healthy(&mut while_draining, "connected while the first drained");
    expect_healthy(&mut between, "connected while no process ran");
}

fn main_and_metrics_sockets_go_by_their_names() {
    let main = loopback_listener();
    let metrics = loopback_listener();
    let (main_addr, metrics_addr) = (main.local_addr().unwrap(), metrics.local_addr().unwrap());
    // Metrics first: names decide, not positions.
    let server = Activated::start(&[&metrics, &main], Some("metrics:main"), &[]);
    assert_eq!(server.addr, main_addr);

    let scraped = get(metrics_addr, "/metrics", "");
    assert_eq!(scraped.status, 200);
    assert!(
        scraped.text().contains("wsrooms_connections"),
        "{}",
        scraped.text()
    );
    assert_eq!(
        get(metrics_addr, "/", "").status,
        404,
        "metrics socket: operations only"
    );
    assert_eq!(
        get(main_addr, "/metrics", "").status,
        404,
        "/metrics hidden on main"
    );
    assert_eq!(get(main_addr, "/healthz", "").status, 200);
    assert_eq!(get(main_addr, "/", "").status, 200);
    let log = server.log();
    assert!(
        log.contains(&format!("metrics on {metrics_addr}: {PASSED_LOG}")),
        "{log}"
    );
}

fn main_and_admin_sockets_go_by_their_names() {
    let main = loopback_listener();
    let admin = loopback_listener();
    let (main_addr, admin_addr) = (main.local_addr().unwrap(), admin.local_addr().unwrap());
    // Admin first: names decide, not positions.
    let server = Activated::start(&[&admin, &main], Some("admin:main"), &[]);
    assert_eq!(server.addr, main_addr);

    let rooms = admin_request(admin_addr, "GET", "/admin/rooms", "", "");
    assert_eq!(rooms.status, 200, "{}", rooms.text());
    assert_eq!(json_of(&rooms), serde_json::json!([]));
    assert_eq!(
        get(admin_addr, "/", "").status,
        404,
        "admin socket: API only"
    );
    assert_eq!(
        get(main_addr, "/admin/rooms", "").status,
        404,
        "not on main"
    );
    assert_eq!(get(main_addr, "/", "").status, 200);
    let log = server.log();
    assert!(
        log.contains(&format!("admin API on {admin_addr}: {PASSED_LOG}")),
        "{log}"
    );
}

fn variables_for_another_process_are_ignored() {
    // LISTEN_PID names some other process: wsrooms binds --bind as usual.
    let out = Command::new(env!("CARGO_BIN_EXE_wsrooms"))
        .args(["--bind", "127.0.0.1:0", "--log-level", "info"])
        .env_clear()
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wsrooms");
    let mut child = KillOnDrop(out);
    let (lines, addr) = collect_lines(Box::new(child.0.stdout.take().unwrap()));
    let addr = addr.recv_timeout(IO_TIMEOUT).expect("listening line");
    expect_healthy(&mut ask_health(addr), "bound from --bind");
    assert!(
        text(&lines).contains("bound from --bind"),
        "{}",
        text(&lines)
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs wsrooms with `LISTEN_FDS=count` for itself and `fd3` as descriptor
/// 3 (given as a shell redirection); returns (exit code, stderr).
fn run_with_fd3(count: &str, fd3: &str, stdin: Stdio) -> (Option<i32>, String) {
    let script = format!("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\" {fd3} 0</dev/null");
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_wsrooms"))
        .args(["--bind", "127.0.0.1:0"])
        .env_clear()
        .env("LISTEN_FDS", count)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh + wsrooms");
    let mut child = KillOnDrop(child);
    let mut stderr = child.0.stderr.take().unwrap();
    let status = wait_exit(&mut child.0, IO_TIMEOUT).expect("exits at start");
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    (status.code(), err)
}

fn a_passed_descriptor_that_is_not_a_listening_tcp_socket_exits_2() {
    let bound_only =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    bound_only
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cases: Vec<(&str, &str, Stdio, &str)> = vec![
        ("1", "3</dev/null", Stdio::null(), "fd 3 is not a socket"),
        ("1", "", Stdio::null(), "fd 3 is not a socket"),
        (
            "1",
            "3<&0",
            Stdio::from(OwnedFd::from(bound_only.try_clone().unwrap())),
            "fd 3 is a TCP socket that is not listening",
        ),
        (
            "1",
            "3<&0",
            Stdio::from(OwnedFd::from(udp.try_clone().unwrap())),
            "fd 3 is not a valid tcp socket",
        ),
        ("4", "3</dev/null", Stdio::null(), "LISTEN_FDS=4"),
        ("x", "3</dev/null", Stdio::null(), "is not a number"),
    ];
    for (count, fd3, stdin, why) in cases {
        let (code, err) = run_with_fd3(count, fd3, stdin);
        assert_eq!(code, Some(2), "LISTEN_FDS={count} {fd3:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {err:?}");
        assert!(
            lines[0].starts_with("wsrooms: socket activation: ") && lines[0].contains(why),
            "LISTEN_FDS={count} {fd3:?}: {err:?}"
        );
    }
}

fn systemd_socket_activate_hands_over_its_socket() {
    let tool = find_program(&["systemd-socket-activate"]);
    if !require(
        "socket activation",
        "systemd-socket-activate",
        "apt-get install systemd",
        tool.is_some(),
    ) {
        return;
    }
    let Some(tool) = tool else { return };
    // All three sockets wsrooms takes, named as the units name them.
    let [addr, metrics, admin] = [(); 3].map(|()| {
        let port = loopback_listener().local_addr().unwrap().port();
        format!("127.0.0.1:{port}").parse::<SocketAddr>().unwrap()
    });
    let mut child = Command::new(tool)
        .args(["-l", &addr.to_string(), "-l", &metrics.to_string()])
        .args(["-l", &admin.to_string(), "--fdname=main:metrics:admin"])
        .arg(env!("CARGO_BIN_EXE_wsrooms"))
        .args(["--log-level", "info"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    let (tool_lines, _) = collect_lines(Box::new(stderr));
    let (lines, listening) = collect_lines(Box::new(stdout));
    assert!(
        wait_until(IO_TIMEOUT, || text(&tool_lines).contains("Listening on")),
        "systemd-socket-activate did not listen: {}",
        text(&tool_lines)
    );
    // The tool starts wsrooms at the first connection, which waits for it.
    expect_healthy(&mut ask_health(addr), "through systemd-socket-activate");
    assert_eq!(listening.recv_timeout(IO_TIMEOUT).ok(), Some(addr));
    assert!(
        text(&lines).contains(&format!("listening on {addr}: {PASSED_LOG}")),
        "{}",
        text(&lines)
    );
    assert_eq!(get(metrics, "/metrics", "").status, 200);
    let rooms = admin_request(admin, "GET", "/admin/rooms", "", "");
    assert_eq!(rooms.status, 200, "{}", rooms.text());
    assert_eq!(get(addr, "/admin/rooms", "").status, 404);
    assert!(child.0.try_wait().unwrap().is_none(), "still serving");
}

/// The value of `key=` in a shipped unit file (the first such line).
fn unit_value(file: &str, key: &str) -> String {
    let path = format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("deploy/{file} has no {key}= line"))
        .to_string()
}

fn the_shipped_socket_units_match_their_services_and_nginx() {
    for (socket, service, nginx) in [
        ("wsrooms.socket", "wsrooms.service", "nginx.conf"),
        ("wsrooms@.socket", "wsrooms@.service", "nginx-sharded.conf"),
    ] {
        let listen = unit_value(socket, "ListenStream");
        assert_eq!(unit_value(socket, "FileDescriptorName"), "main", "{socket}");
        assert!(
            unit_value(socket, "Backlog").parse::<u32>().unwrap() >= 4096,
            "{socket}: a restart's reconnects must fit in the backlog"
        );
        // The fallback address of the service is the socket's address.
        assert_eq!(
            unit_value(service, "Environment=WSROOMS_BIND"),
            listen,
            "{service}"
        );
        let unit = socket.replace('@', "@%i");
        assert!(unit_value(service, "Requires").contains(&unit), "{service}");
        assert!(unit_value(service, "After").contains(&unit), "{service}");
        let site = format!("{}/deploy/{nginx}", env!("CARGO_MANIFEST_DIR"));
        let site = std::fs::read_to_string(site).unwrap();
        let upstream = listen.replace("%i", "8081");
        assert!(
            site.contains(&format!("server {upstream}")),
            "deploy/{nginx} proxies to {upstream}"
        );
    }
}
