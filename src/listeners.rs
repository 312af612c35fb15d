//! Where the listening sockets come from: passed in by the service manager
//! (socket activation), or bound here from `--bind`, `--metrics-bind` and
//! `--admin-bind`.
//!
//! # Socket activation
//!
//! A service manager such as systemd can open the listening socket itself
//! and hand it to the process it starts. The hand-over is three
//! environment variables and inherited file descriptors:
//!
//! - `LISTEN_PID`: the process the sockets are for. Another process (a
//!   child that inherited the variables) ignores them.
//! - `LISTEN_FDS`: how many sockets; they are file descriptors 3, 4, ….
//! - `LISTEN_FDNAMES` (optional): their names, separated by `:`.
//!
//! wsrooms takes at most three: one named `main` (the application, in place
//! of `--bind`), one named `metrics` (in place of `--metrics-bind`) and one
//! named `admin` (the operator API, in place of `--admin-bind`). With no
//! socket named `main`, the first one not named `metrics` or `admin` is the
//! main one
//! (systemd names a socket after its unit unless `FileDescriptorName=` says
//! otherwise). Any other socket, a descriptor that is not a listening TCP
//! socket, or variables that do not add up stop the server at start
//! ([`ListenError::Passed`], exit 2), rather than serving on half of what
//! the operator configured.
//!
//! Why it matters: the service manager keeps its own copy of the socket
//! open while wsrooms restarts. A client that connects while no wsrooms
//! process runs waits in the socket's backlog and is answered by the next
//! process, instead of being refused.
//!
//! Turning a descriptor number into a socket needs `unsafe` (`FromRawFd`);
//! the server has none, so the `listenfd` crate does that step (it also
//! checks that the descriptor is a TCP socket and marks it close-on-exec).
//! `listenfd` also removes `LISTEN_PID` and `LISTEN_FDS` from the
//! environment, so that nothing this process starts takes the sockets to be
//! its own (changing the environment is `unsafe` too). The rest is here:
//! `LISTEN_PID` must name this process (`listenfd` also accepts it missing,
//! a convention of other tools), the names, and the check that the socket
//! is listening.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use listenfd::ListenFd;
use mio::net::TcpListener;

/// Listen backlog for the sockets bound here: bursts of connects wait there
/// instead of being dropped (std's 128 overflows with a few hundred clients
/// connecting at once, and they retry only after a second). A passed socket
/// has the backlog its service manager gave it (`Backlog=`).
pub const BACKLOG: u32 = 4096;

/// The first descriptor of passed sockets.
const FIRST_FD: usize = 3;

/// The most sockets wsrooms takes: `main`, `metrics` and `admin`.
const MAX_PASSED: usize = 3;

/// The listening sockets the server accepts on (non-blocking).
#[derive(Debug)]
pub struct Listeners {
    /// The application: pages, login, WebSockets.
    pub main: TcpListener,
    /// Only `/metrics` and `/healthz`, if configured or passed.
    pub metrics: Option<TcpListener>,
    /// Only the operator API (`/admin/*`) and `/healthz`, if configured or
    /// passed.
    pub admin: Option<TcpListener>,
    /// `main` was passed in by the service manager, which keeps a copy:
    /// closing ours at shutdown leaves it listening for the next process.
    pub inherited: bool,
}

/// Why the listening sockets could not be had.
#[derive(Debug)]
pub enum ListenError {
    /// The sockets or variables passed by the service manager are not
    /// usable: a configuration error, exit code 2.
    Passed(String),
    /// Binding `--bind`, `--metrics-bind` or `--admin-bind` failed (address
    /// in use, no permission): exit code 1, as any other failure to start.
    Bind {
        /// The flag the address came from: `bind`, `metrics-bind` or
        /// `admin-bind`.
        flag: &'static str,
        /// The address that could not be bound.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
}

impl ListenError {
    /// The process exit code this error becomes.
    pub fn exit_code(&self) -> u8 {
        match self {
            ListenError::Passed(_) => 2,
            ListenError::Bind { .. } => 1,
        }
    }
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Passed(why) => write!(f, "socket activation: {why}"),
            ListenError::Bind { flag, addr, source } => {
                write!(f, "cannot listen on {addr} (--{flag}): {source}")?;
                match bind_hint(source.kind()) {
                    Some(hint) => write!(f, "; {hint} choose another with --{flag} ADDR:PORT"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The likely cause of a failed bind, when it is a common one, ending in
/// the punctuation that leads to "choose another with --bind ADDR:PORT".
fn bind_hint(kind: io::ErrorKind) -> Option<&'static str> {
    match kind {
        io::ErrorKind::AddrInUse => Some("is another wsrooms running?"),
        io::ErrorKind::AddrNotAvailable => Some("this machine has no such address;"),
        io::ErrorKind::PermissionDenied => {
            Some("ports below 1024 need root or CAP_NET_BIND_SERVICE;")
        }
        _ => None,
    }
}

impl std::error::Error for ListenError {}

impl From<ListenError> for io::Error {
    fn from(e: ListenError) -> io::Error {
        match e {
            ListenError::Bind { source, .. } => source,
            passed => io::Error::new(io::ErrorKind::InvalidInput, passed),
        }
    }
}

/// Which of the passed sockets (by position, 0 = descriptor 3) serves what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Roles {
    main: usize,
    metrics: Option<usize>,
    admin: Option<usize>,
}

/// The addresses to bind when no socket of that role was passed in.
#[derive(Debug, Clone, Copy)]
pub struct Binds {
    /// `--bind`.
    pub main: SocketAddr,
    /// `--metrics-bind`.
    pub metrics: Option<SocketAddr>,
    /// `--admin-bind`.
    pub admin: Option<SocketAddr>,
}

impl Binds {
    /// The addresses a configuration names.
    pub fn of(config: &crate::config::Config) -> Binds {
        Binds {
            main: config.bind,
            metrics: config.metrics_bind,
            admin: config.admin_bind,
        }
    }
}

impl Listeners {
    /// The sockets passed in by the service manager, or else bound from
    /// `binds` (the `--bind`, `--metrics-bind` and `--admin-bind` values).
    ///
    /// Descriptors 3, 4, … are taken to be the passed sockets. The files
    /// the process opened before (the data file) cannot have those numbers:
    /// the passed sockets were open from the start. (If `LISTEN_FDS` names a
    /// descriptor that was not passed, whatever has that number is refused
    /// here as not a listening socket.)
    pub fn open(binds: Binds) -> Result<Listeners, ListenError> {
        let passed = passed_roles(|name| std::env::var(name).ok(), std::process::id());
        // listenfd reads the same variables again (they were checked above)
        // and removes `LISTEN_PID` and `LISTEN_FDS`, whoever they were for.
        let fds = ListenFd::from_env();
        match passed? {
            Some(roles) => take_passed(fds, roles, binds),
            None => bind_all(binds),
        }
    }
}

/// Reads the `LISTEN_*` variables (through `env`, for tests): `None` when
/// no sockets were passed to this process (`pid`).
fn passed_roles(
    env: impl Fn(&str) -> Option<String>,
    pid: u32,
) -> Result<Option<Roles>, ListenError> {
    let Some(fds) = env("LISTEN_FDS") else {
        return Ok(None);
    };
    let for_pid = env("LISTEN_PID");
    if for_pid.as_deref().and_then(|p| p.parse::<u32>().ok()) != Some(pid) {
        log::info!(
            "LISTEN_FDS ignored: LISTEN_PID is {}, this process is {pid}",
            for_pid.as_deref().unwrap_or("unset")
        );
        return Ok(None);
    }
    let count: usize = fds
        .parse()
        .map_err(|_| ListenError::Passed(format!("LISTEN_FDS={fds:?} is not a number")))?;
    if count == 0 {
        return Ok(None);
    }
    if count > MAX_PASSED {
        return Err(ListenError::Passed(format!(
            "LISTEN_FDS={count}: wsrooms takes at most three sockets (main, metrics, admin)"
        )));
    }
    let names = env("LISTEN_FDNAMES");
    assign_roles(count, names.as_deref()).map(Some)
}

/// Decides which passed socket is `main`, which `metrics` and which
/// `admin`, from their names (see the module documentation).
fn assign_roles(count: usize, names: Option<&str>) -> Result<Roles, ListenError> {
    let names: Vec<&str> = match names {
        Some(list) => list.split(':').collect(),
        None => vec![""; count],
    };
    if names.len() != count {
        return Err(ListenError::Passed(format!(
            "LISTEN_FDNAMES names {} sockets, LISTEN_FDS says {count}",
            names.len()
        )));
    }
    let mut main = None;
    let mut metrics = None;
    let mut admin = None;
    let mut others = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let slot = match *name {
            "main" => &mut main,
            "metrics" => &mut metrics,
            "admin" => &mut admin,
            _ => {
                others.push(index);
                continue;
            }
        };
        if slot.replace(index).is_some() {
            return Err(ListenError::Passed(format!(
                "two sockets are named {name:?}"
            )));
        }
    }
    if main.is_none() && !others.is_empty() {
        main = Some(others.remove(0));
    }
    if let Some(&extra) = others.first() {
        return Err(ListenError::Passed(format!(
            "socket {} (fd {}) is named {:?}: name the sockets main, metrics and admin",
            extra + 1,
            FIRST_FD + extra,
            names[extra]
        )));
    }
    let Some(main) = main else {
        return Err(ListenError::Passed(
            "only a metrics or admin socket was passed: pass the main one too".into(),
        ));
    };
    Ok(Roles {
        main,
        metrics,
        admin,
    })
}

/// Takes the passed sockets; `--metrics-bind` and `--admin-bind` are bound
/// only when no socket of their role was passed.
fn take_passed(mut fds: ListenFd, roles: Roles, binds: Binds) -> Result<Listeners, ListenError> {
    let main = take_one(&mut fds, roles.main)?;
    log::info!(
        "listening on {}: socket passed in by the service manager (fd {}); --bind is not used",
        local_addr_text(&main),
        FIRST_FD + roles.main
    );
    let metrics = match roles.metrics {
        Some(index) => Some(take_side(&mut fds, index, Side::METRICS, binds.metrics)?),
        None => bind_side(Side::METRICS, binds.metrics)?,
    };
    let admin = match roles.admin {
        Some(index) => Some(take_side(&mut fds, index, Side::ADMIN, binds.admin)?),
        None => bind_side(Side::ADMIN, binds.admin)?,
    };
    Ok(Listeners {
        main,
        metrics,
        admin,
        inherited: true,
    })
}

/// A listener beside the main one: what its log line calls it and the flag
/// that binds it.
#[derive(Debug, Clone, Copy)]
struct Side {
    what: &'static str,
    flag: &'static str,
}

impl Side {
    const METRICS: Side = Side {
        what: "metrics",
        flag: "metrics-bind",
    };
    const ADMIN: Side = Side {
        what: "admin API",
        flag: "admin-bind",
    };
}

/// The passed socket of a side listener (its flag, if given, is not used).
fn take_side(
    fds: &mut ListenFd,
    index: usize,
    side: Side,
    bind: Option<SocketAddr>,
) -> Result<TcpListener, ListenError> {
    let listener = take_one(fds, index)?;
    log::info!(
        "{} on {}: socket passed in by the service manager (fd {}){}",
        side.what,
        local_addr_text(&listener),
        FIRST_FD + index,
        if bind.is_some() {
            format!("; --{} is not used", side.flag)
        } else {
            String::new()
        }
    );
    Ok(listener)
}

/// The passed socket at `index`, checked to be a listening TCP socket and
/// made non-blocking.
fn take_one(fds: &mut ListenFd, index: usize) -> Result<TcpListener, ListenError> {
    let fd = FIRST_FD + index;
    let listener = fds
        .take_tcp_listener(index)
        // ("fd 3 is not a socket", "… is not a valid tcp socket")
        .map_err(|e| ListenError::Passed(e.to_string()))?
        .ok_or_else(|| ListenError::Passed(format!("fd {fd} was not passed")))?;
    let listening = socket2::SockRef::from(&listener)
        .is_listener()
        .map_err(|e| ListenError::Passed(format!("fd {fd}: {e}")))?;
    if !listening {
        return Err(ListenError::Passed(format!(
            "fd {fd} is a TCP socket that is not listening"
        )));
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| ListenError::Passed(format!("fd {fd}: {e}")))?;
    Ok(TcpListener::from_std(listener))
}

/// No sockets passed: bind every address here.
fn bind_all(binds: Binds) -> Result<Listeners, ListenError> {
    let main = listen(binds.main).map_err(|source| ListenError::Bind {
        flag: "bind",
        addr: binds.main,
        source,
    })?;
    log::info!("listening on {}: bound from --bind", local_addr_text(&main));
    Ok(Listeners {
        main,
        metrics: bind_side(Side::METRICS, binds.metrics)?,
        admin: bind_side(Side::ADMIN, binds.admin)?,
        inherited: false,
    })
}

fn bind_side(side: Side, bind: Option<SocketAddr>) -> Result<Option<TcpListener>, ListenError> {
    let Some(addr) = bind else {
        return Ok(None);
    };
    let listener = listen(addr).map_err(|source| ListenError::Bind {
        flag: side.flag,
        addr,
        source,
    })?;
    log::info!(
        "{} on {}: bound from --{}",
        side.what,
        local_addr_text(&listener),
        side.flag
    );
    Ok(Some(listener))
}

/// A non-blocking listener with a large backlog ([`BACKLOG`]).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG as i32)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn local_addr_text(listener: &TcpListener) -> String {
    match listener.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(e) => format!("(unknown address: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(count: usize, names: Option<&str>) -> Result<Roles, String> {
        assign_roles(count, names).map_err(|e| e.to_string())
    }

    #[test]
    fn one_socket_is_main_whatever_its_name() {
        let main_only = Roles {
            main: 0,
            metrics: None,
            admin: None,
        };
        assert_eq!(roles(1, None), Ok(main_only));
        assert_eq!(roles(1, Some("main")), Ok(main_only));
        assert_eq!(roles(1, Some("wsrooms.socket")), Ok(main_only));
        assert_eq!(roles(1, Some("")), Ok(main_only));
    }

    #[test]
    fn two_sockets_go_by_name_not_position() {
        let both = |main, metrics| {
            Ok(Roles {
                main,
                metrics: Some(metrics),
                admin: None,
            })
        };
        assert_eq!(roles(2, Some("main:metrics")), both(0, 1));
        assert_eq!(roles(2, Some("metrics:main")), both(1, 0));
        assert_eq!(roles(2, Some("wsrooms.socket:metrics")), both(0, 1));
        assert_eq!(roles(2, Some("metrics:wsrooms.socket")), both(1, 0));
    }

    #[test]
    fn three_sockets_main_metrics_and_admin() {
        let all = |main, metrics, admin| {
            Ok(Roles {
                main,
                metrics: Some(metrics),
                admin: Some(admin),
            })
        };
        assert_eq!(roles(3, Some("main:metrics:admin")), all(0, 1, 2));
        assert_eq!(roles(3, Some("admin:metrics:main")), all(2, 1, 0));
        assert_eq!(roles(3, Some("admin:wsrooms.socket:metrics")), all(1, 2, 0));
        let admin_only = Ok(Roles {
            main: 1,
            metrics: None,
            admin: Some(0),
        });
        assert_eq!(roles(2, Some("admin:main")), admin_only);
        assert!(roles(2, Some("admin:admin")).is_err());
        assert!(roles(1, Some("admin")).is_err());
        assert!(roles(2, Some("admin:metrics")).is_err());
    }

    #[test]
    fn sockets_that_cannot_be_placed_are_errors() {
        let err = roles(2, None).unwrap_err();
        assert!(err.contains("fd 4"), "{err}");
        assert!(roles(2, Some("main:other")).is_err());
        assert!(roles(2, Some("main:main")).is_err());
        assert!(roles(2, Some("metrics:metrics")).is_err());
        assert!(roles(1, Some("metrics")).is_err());
        assert!(roles(2, Some("main")).is_err());
        assert!(roles(1, Some("main:metrics")).is_err());
    }

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn variables_for_another_process_are_ignored() {
        let none = |vars: &[(&str, &str)]| passed_roles(env_of(vars), 42).unwrap();
        assert_eq!(none(&[]), None);
        assert_eq!(none(&[("LISTEN_FDS", "1")]), None);
        assert_eq!(none(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "41")]), None);
        assert_eq!(none(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "x")]), None);
        assert_eq!(none(&[("LISTEN_FDS", "0"), ("LISTEN_PID", "42")]), None);
    }

    #[test]
    fn variables_for_this_process_are_checked() {
        let ours = |fds: &str| {
            passed_roles(env_of(&[("LISTEN_FDS", fds), ("LISTEN_PID", "42")]), 42)
                .map_err(|e| e.exit_code())
        };
        assert_eq!(
            ours("1"),
            Ok(Some(Roles {
                main: 0,
                metrics: None,
                admin: None,
            }))
        );
        assert_eq!(ours("4"), Err(2));
        assert_eq!(ours("one"), Err(2));
        assert_eq!(ours("-1"), Err(2));
    }
}
