//! Configuration: one struct holding every limit and setting, with its default,
//! filled from `WSROOMS_*` environment variables and then command-line flags
//! (flags win). Every limit of SPEC §7 is a named field here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server can be told. `Config::default()` is what runs when no
/// flag is given.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub bind: SocketAddr,
    /// Most TCP connections at once (HTTP and WebSocket). Beyond it a new
    /// connection gets `503` and is closed. Default 10,000 (and the server
    /// lowers it below `RLIMIT_NOFILE` at start).
    pub max_connections: usize,
    /// Largest request head (request line + headers). Default 8 KiB → `431`.
    pub max_head_bytes: usize,
    /// Largest request line (method + target + version). Fixed 2 KiB → `414`.
    pub max_request_line_bytes: usize,
    /// Largest request body (the login form). Default 4 KiB → `413`.
    pub max_body_bytes: usize,
    /// Time a client has to send a full request head. Default 10 s.
    pub head_timeout: Duration,
    /// Largest WebSocket message after reassembly. Default 64 KiB → `1009`.
    pub max_message_bytes: usize,
    /// Largest single WebSocket frame payload. Default 64 KiB, or
    /// `max_message_bytes` when only that was raised → `1009`.
    pub max_frame_bytes: usize,
    /// Chat text longer than this many code points is truncated. Default 50.
    pub max_chat_chars: usize,
    /// Chat messages per second per connection (token bucket refill).
    /// Default 20; 0 turns the limit off.
    pub rate_limit: f64,
    /// Token bucket size: messages that may arrive at once. Default 40.
    pub rate_burst: f64,
    /// Most users (reservations included) in one room. Default 1,000 → `409`.
    pub max_users_per_room: usize,
    /// Most sessions (logins joined or reserved) in the whole server: bounds
    /// the memory a flood of logins can take. Default 100,000 → `503`.
    pub max_sessions: usize,
    /// Above this many buffered outgoing bytes, stop reading from that
    /// connection until it drains below half. Default 64 KiB.
    pub pause_reading_at: usize,
    /// Above this many buffered outgoing bytes the connection is closed with
    /// `1008` `backpressure limit`. Default 1 MiB.
    pub max_buffered: usize,
    /// Send a ping after this long. Default 30 s.
    pub ping_interval: Duration,
    /// Drop the connection when no pong arrives this long after a ping. Default 30 s.
    pub pong_timeout: Duration,
    /// Drop the connection this long after our close frame if the peer has
    /// not finished the close handshake. Default 5 s.
    pub close_timeout: Duration,
    /// On SIGINT/SIGTERM, wait at most this long for close frames. Default 5 s.
    pub shutdown_timeout: Duration,
    /// How long a login's reservation waits for its WebSocket. Default 60 s.
    pub reserve_timeout: Duration,
    /// How long a reservation is kept after its socket closed. Default 10 s.
    pub grace_timeout: Duration,
    /// `message` events kept per room for late joiners and reconnects. Default 50.
    pub history_messages: usize,
    /// Extra origins allowed to open room sockets (besides the page's own).
    pub allow_origins: Vec<String>,
    /// Serve the `/echo` WebSocket endpoint. Default off.
    pub echo: bool,
    /// Serve the pages from this directory instead of the embedded copies.
    pub www: Option<PathBuf>,
    /// Take the client address from `X-Forwarded-For` and the host from
    /// `X-Forwarded-Host` (only behind a proxy that sets them). Default off.
    pub trust_proxy: bool,
    /// Serve `/metrics` and `/healthz` on this separate address instead of
    /// the main one (`/metrics` is then 404 on the main one). Default unset.
    pub metrics_bind: Option<SocketAddr>,
    /// Behind a proxy that routes by room: a `POST /login` without
    /// `?room=N` gets `307` to `/login?room=N`. Default off.
    pub sharded: bool,
    /// Most connections open at once from one client address (see
    /// `trust_proxy` for which address). 0 = off (the default) → `503`.
    pub max_connections_per_ip: usize,
    /// `POST /login` per second from one client address (token bucket
    /// refill). 0 = off (the default) → `429` with `Retry-After`.
    pub login_rate_per_ip: f64,
    /// Logins one client address may send at once. Default 10.
    pub login_burst_per_ip: f64,
    /// Log level name (`error`, `warn`, `info`, `debug`, `trace`). Default `info`.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 10_000,
            max_head_bytes: 8 * 1024,
            max_request_line_bytes: 2 * 1024,
            max_body_bytes: 4 * 1024,
            head_timeout: Duration::from_secs(10),
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            max_chat_chars: 50,
            rate_limit: 20.0,
            rate_burst: 40.0,
            max_users_per_room: 1000,
            max_sessions: 100_000,
            pause_reading_at: 64 * 1024,
            max_buffered: 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            reserve_timeout: Duration::from_secs(60),
            grace_timeout: Duration::from_secs(10),
            history_messages: 50,
            allow_origins: Vec::new(),
            echo: false,
            www: None,
            trust_proxy: false,
            metrics_bind: None,
            sharded: false,
            max_connections_per_ip: 0,
            login_rate_per_ip: 0.0,
            login_burst_per_ip: 10.0,
            log_level: "info".to_string(),
        }
    }
}

/// What parsing the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with this configuration.
    Run(Box<Config>),
    /// Print the help text and exit 0.
    Help,
}

/// A refused setting: the one-line message names the flag and what it takes.
#[derive(Debug, PartialEq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One option: its flag name (without `--`), whether it takes a value, its
/// help line, and the function that stores it.
struct Opt {
    name: &'static str,
    takes_value: bool,
    help: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

const OPTIONS: &[Opt] = &[
    Opt { name: "bind", takes_value: true, help: "ADDR:PORT to listen on [127.0.0.1:8080]", set: set_bind },
    Opt { name: "max-connections", takes_value: true, help: "open TCP connections at most, 1..1000000 [10000]; more get 503", set: set_max_connections },
    Opt { name: "max-head-bytes", takes_value: true, help: "bytes of an HTTP request head, 256..1048576 [8192]; more get 431", set: set_max_head_bytes },
    Opt { name: "head-timeout-secs", takes_value: true, help: "seconds to send a full request head, 1..3600 [10]", set: set_head_timeout },
    Opt { name: "max-message-bytes", takes_value: true, help: "bytes of one WebSocket message, 125..1073741824 [65536]; more closes 1009", set: set_max_message_bytes },
    Opt { name: "max-frame-bytes", takes_value: true, help: "bytes of one WebSocket frame, 125..1073741824 [65536, or max-message-bytes if larger]; more closes 1009", set: set_max_frame_bytes },
    Opt { name: "max-chat-chars", takes_value: true, help: "code points of one chat message, 1..100000 [50]; longer is truncated", set: set_max_chat_chars },
    Opt { name: "rate-limit", takes_value: true, help: "chat messages per second per connection, 0..1000000, 0 = off [20]; more closes 1008", set: set_rate_limit },
    Opt { name: "rate-burst", takes_value: true, help: "chat messages allowed at once, 1..1000000 [40]", set: set_rate_burst },
    Opt { name: "max-users-per-room", takes_value: true, help: "users in one room, 1..1000000 [1000]; more get 409 at login", set: set_max_users },
    Opt { name: "max-connections-per-ip", takes_value: true, help: "connections open from one client address, 0..1000000, 0 = off [0]; more get 503", set: set_max_connections_per_ip },
    Opt { name: "login-rate-per-ip", takes_value: true, help: "logins per second from one client address, 0..1000000, 0 = off [0]; more get 429", set: set_login_rate_per_ip },
    Opt { name: "login-burst-per-ip", takes_value: true, help: "logins one client address may send at once, 1..1000000 [10]", set: set_login_burst_per_ip },
    Opt { name: "max-sessions", takes_value: true, help: "logins held at once in all rooms, 1..10000000 [100000]; more get 503 at login", set: set_max_sessions },
    Opt { name: "pause-reading-at", takes_value: true, help: "buffered outgoing bytes that pause reading, 1024..1073741824 [65536]", set: set_pause_reading_at },
    Opt { name: "max-buffered", takes_value: true, help: "buffered outgoing bytes before closing 1008, 1024..1073741824 [1048576]", set: set_max_buffered },
    Opt { name: "ping-interval-secs", takes_value: true, help: "seconds between pings, 1..86400 [30]", set: set_ping_interval },
    Opt { name: "pong-timeout-secs", takes_value: true, help: "seconds to wait for a pong, 1..86400 [30]", set: set_pong_timeout },
    Opt { name: "close-timeout-secs", takes_value: true, help: "seconds to wait for the peer's close, 1..3600 [5]", set: set_close_timeout },
    Opt { name: "shutdown-timeout-secs", takes_value: true, help: "seconds to drain sockets on SIGTERM, 0..3600 [5]", set: set_shutdown_timeout },
    Opt { name: "reserve-secs", takes_value: true, help: "seconds a login waits for its socket, 1..86400 [60]", set: set_reserve },
    Opt { name: "grace-secs", takes_value: true, help: "seconds an id stays reserved after its socket closed, 0..86400 [10]", set: set_grace },
    Opt { name: "history-messages", takes_value: true, help: "messages kept per room for late joiners, 0..100000 [50]", set: set_history },
    Opt { name: "allow-origin", takes_value: true, help: "extra allowed Origin for room sockets, repeatable or comma-separated [none]", set: set_allow_origin },
    Opt { name: "echo", takes_value: false, help: "serve the /echo WebSocket endpoint [off]", set: set_echo },
    Opt { name: "www", takes_value: true, help: "serve pages from this directory instead of the embedded ones [embedded]", set: set_www },
    Opt { name: "trust-proxy", takes_value: false, help: "client address from X-Forwarded-For, host from X-Forwarded-Host [off]", set: set_trust_proxy },
    Opt { name: "metrics-bind", takes_value: true, help: "ADDR:PORT serving only /metrics and /healthz; hides /metrics from --bind [unset]", set: set_metrics_bind },
    Opt { name: "sharded", takes_value: false, help: "behind a room-hashing proxy: POST /login without ?room=N gets 307 to it [off]", set: set_sharded },
    Opt { name: "log-level", takes_value: true, help: "error, warn, info, debug or trace [info, or RUST_LOG]", set: set_log_level },
];

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    value: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    match value.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "expects a number from {min} to {max}, got {value:?}"
        )),
    }
}

fn secs(value: &str, min: u64, max: u64) -> Result<Duration, String> {
    number(value, min, max).map(Duration::from_secs)
}

fn set_bind(c: &mut Config, v: &str) -> Result<(), String> {
    c.bind = v
        .parse()
        .map_err(|_| format!("expects ADDR:PORT such as 127.0.0.1:8080, got {v:?}"))?;
    Ok(())
}
fn set_max_connections(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_connections = number(v, 1, 1_000_000)?;
    Ok(())
}
fn set_max_head_bytes(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_head_bytes = number(v, 256, 1 << 20)?;
    Ok(())
}
fn set_head_timeout(c: &mut Config, v: &str) -> Result<(), String> {
    c.head_timeout = secs(v, 1, 3600)?;
    Ok(())
}
fn set_max_message_bytes(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_message_bytes = number(v, 125, 1 << 30)?;
    Ok(())
}
fn set_max_frame_bytes(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_frame_bytes = number(v, 125, 1 << 30)?;
    Ok(())
}
fn set_max_chat_chars(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_chat_chars = number(v, 1, 100_000)?;
    Ok(())
}
fn set_rate_limit(c: &mut Config, v: &str) -> Result<(), String> {
    c.rate_limit = number(v, 0.0, 1_000_000.0)?;
    Ok(())
}
fn set_rate_burst(c: &mut Config, v: &str) -> Result<(), String> {
    c.rate_burst = number(v, 1.0, 1_000_000.0)?;
    Ok(())
}
fn set_max_users(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_users_per_room = number(v, 1, 1_000_000)?;
    Ok(())
}
fn set_max_sessions(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_sessions = number(v, 1, 10_000_000)?;
    Ok(())
}
fn set_max_connections_per_ip(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_connections_per_ip = number(v, 0, 1_000_000)?;
    Ok(())
}
fn set_login_rate_per_ip(c: &mut Config, v: &str) -> Result<(), String> {
    c.login_rate_per_ip = number(v, 0.0, 1_000_000.0)?;
    Ok(())
}
fn set_login_burst_per_ip(c: &mut Config, v: &str) -> Result<(), String> {
    c.login_burst_per_ip = number(v, 1.0, 1_000_000.0)?;
    Ok(())
}
fn set_pause_reading_at(c: &mut Config, v: &str) -> Result<(), String> {
    c.pause_reading_at = number(v, 1024, 1 << 30)?;
    Ok(())
}
fn set_max_buffered(c: &mut Config, v: &str) -> Result<(), String> {
    c.max_buffered = number(v, 1024, 1 << 30)?;
    Ok(())
}
fn set_ping_interval(c: &mut Config, v: &str) -> Result<(), String> {
    c.ping_interval = secs(v, 1, 86_400)?;
    Ok(())
}
fn set_pong_timeout(c: &mut Config, v: &str) -> Result<(), String> {
    c.pong_timeout = secs(v, 1, 86_400)?;
    Ok(())
}
fn set_close_timeout(c: &mut Config, v: &str) -> Result<(), String> {
    c.close_timeout = secs(v, 1, 3600)?;
    Ok(())
}
fn set_shutdown_timeout(c: &mut Config, v: &str) -> Result<(), String> {
    c.shutdown_timeout = secs(v, 0, 3600)?;
    Ok(())
}
fn set_reserve(c: &mut Config, v: &str) -> Result<(), String> {
    c.reserve_timeout = secs(v, 1, 86_400)?;
    Ok(())
}
fn set_grace(c: &mut Config, v: &str) -> Result<(), String> {
    c.grace_timeout = secs(v, 0, 86_400)?;
    Ok(())
}
fn set_history(c: &mut Config, v: &str) -> Result<(), String> {
    c.history_messages = number(v, 0, 100_000)?;
    Ok(())
}
fn set_allow_origin(c: &mut Config, v: &str) -> Result<(), String> {
    for origin in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(format!(
                "expects an origin such as https://chat.example, got {origin:?}"
            ));
        }
        c.allow_origins
            .push(origin.trim_end_matches('/').to_ascii_lowercase());
    }
    Ok(())
}
fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expects true or false, got {v:?}")),
    }
}
fn set_echo(c: &mut Config, v: &str) -> Result<(), String> {
    c.echo = boolean(v)?;
    Ok(())
}
fn set_trust_proxy(c: &mut Config, v: &str) -> Result<(), String> {
    c.trust_proxy = boolean(v)?;
    Ok(())
}
fn set_sharded(c: &mut Config, v: &str) -> Result<(), String> {
    c.sharded = boolean(v)?;
    Ok(())
}
fn set_metrics_bind(c: &mut Config, v: &str) -> Result<(), String> {
    c.metrics_bind = Some(
        v.parse()
            .map_err(|_| format!("expects ADDR:PORT such as 127.0.0.1:9090, got {v:?}"))?,
    );
    Ok(())
}
fn set_www(c: &mut Config, v: &str) -> Result<(), String> {
    let path = PathBuf::from(v);
    if !path.is_dir() {
        return Err(format!("expects a directory, {v:?} is not one"));
    }
    c.www = Some(path);
    Ok(())
}
fn set_log_level(c: &mut Config, v: &str) -> Result<(), String> {
    match v.to_ascii_lowercase().as_str() {
        "error" | "warn" | "info" | "debug" | "trace" | "off" => {
            c.log_level = v.to_ascii_lowercase();
            Ok(())
        }
        _ => Err(format!(
            "expects error, warn, info, debug, trace or off, got {v:?}"
        )),
    }
}

/// The environment variable that stands for a flag: `max-buffered` →
/// `WSROOMS_MAX_BUFFERED`.
pub fn env_name(flag: &str) -> String {
    format!("WSROOMS_{}", flag.replace('-', "_").to_ascii_uppercase())
}

/// The `--help` text.
pub fn help() -> String {
    let mut text = String::from(
        "wsrooms: a single-threaded WebSocket chat-room server\n\n\
         usage: wsrooms [--flag value]...\n\n\
         Every flag can also be set by its environment variable (flags win).\n\n",
    );
    for opt in OPTIONS {
        let flag = if opt.takes_value {
            format!("--{} VALUE", opt.name)
        } else {
            format!("--{}", opt.name)
        };
        text.push_str(&format!(
            "  {flag:<30} {}\n  {:<30} env {}\n",
            opt.help,
            "",
            env_name(opt.name)
        ));
    }
    text.push_str("  --help                         print this text\n");
    text
}

impl Config {
    /// Builds the configuration from `args` (without the program name) and an
    /// environment lookup. Environment first, then flags over it.
    pub fn parse<F>(args: &[String], env: F) -> Result<Parsed, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let mut config = Config::default();
        let mut frame_set = false;
        if let Some(level) = env("RUST_LOG") {
            if set_log_level(&mut config, &level).is_ok() {
                config.log_level = level.to_ascii_lowercase();
            }
        }
        for opt in OPTIONS {
            if let Some(value) = env(&env_name(opt.name)) {
                (opt.set)(&mut config, &value)
                    .map_err(|e| ConfigError(format!("{}: {e}", env_name(opt.name))))?;
                frame_set |= opt.name == "max-frame-bytes";
            }
        }
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg == "--help" || arg == "-h" {
                return Ok(Parsed::Help);
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ConfigError(format!(
                    "unexpected argument {arg:?} (see --help)"
                )));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(opt) = OPTIONS.iter().find(|o| o.name == name) else {
                return Err(ConfigError(format!("unknown flag --{name} (see --help)")));
            };
            let value = match (inline, opt.takes_value) {
                (Some(v), _) => v,
                (None, false) => String::new(),
                (None, true) => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| ConfigError(format!("--{name} needs a value")))?
                }
            };
            (opt.set)(&mut config, &value).map_err(|e| ConfigError(format!("--{name}: {e}")))?;
            frame_set |= opt.name == "max-frame-bytes";
            i += 1;
        }
        if !frame_set && config.max_message_bytes > config.max_frame_bytes {
            config.max_frame_bytes = config.max_message_bytes;
        }
        if config.pause_reading_at > config.max_buffered {
            return Err(ConfigError(format!(
                "--pause-reading-at ({}) must not exceed --max-buffered ({})",
                config.pause_reading_at, config.max_buffered
            )));
        }
        Ok(Parsed::Run(Box::new(config)))
    }

    /// A one-line summary of the effective configuration, for the start log.
    pub fn summary(&self) -> String {
        format!(
            "bind={} max_connections={} max_head_bytes={} head_timeout={}s max_message_bytes={} \
             max_frame_bytes={} max_chat_chars={} rate_limit={}/s burst={} max_users_per_room={} max_sessions={} \
             max_connections_per_ip={} login_rate_per_ip={}/s login_burst_per_ip={} pause_reading_at={} max_buffered={} ping={}s pong_timeout={}s close_timeout={}s \
             reserve={}s grace={}s history={} echo={} www={} allow_origin={:?} trust_proxy={} \
             metrics_bind={} sharded={}",
            self.bind,
            self.max_connections,
            self.max_head_bytes,
            self.head_timeout.as_secs(),
            self.max_message_bytes,
            self.max_frame_bytes,
            self.max_chat_chars,
            self.rate_limit,
            self.rate_burst,
            self.max_users_per_room,
            self.max_sessions,
            self.max_connections_per_ip,
            self.login_rate_per_ip,
            self.login_burst_per_ip,
            self.pause_reading_at,
            self.max_buffered,
            self.ping_interval.as_secs(),
            self.pong_timeout.as_secs(),
            self.close_timeout.as_secs(),
            self.reserve_timeout.as_secs(),
            self.grace_timeout.as_secs(),
            self.history_messages,
            self.echo,
            self.www
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "embedded".into()),
            self.allow_origins,
            self.trust_proxy,
            self.metrics_bind
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            self.sharded,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(list: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match Config::parse(&args(list), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Parsed::Run(c) => Ok(*c),
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.max_head_bytes, 8192);
        assert_eq!(c.max_message_bytes, 65536);
        assert_eq!(c.max_frame_bytes, 65536);
        assert_eq!(c.max_chat_chars, 50);
        assert_eq!(c.rate_limit, 20.0);
        assert_eq!(c.rate_burst, 40.0);
        assert_eq!(c.pause_reading_at, 65536);
        assert_eq!(c.max_buffered, 1 << 20);
        assert_eq!(c.history_messages, 50);
        assert_eq!(c.max_connections_per_ip, 0, "per-address limits off");
        assert_eq!(c.login_rate_per_ip, 0.0, "per-address limits off");
    }

    #[test]
    fn flags_win_over_environment() {
        let c = run(
            &["--max-chat-chars", "7"],
            &[("WSROOMS_MAX_CHAT_CHARS", "9")],
        )
        .unwrap();
        assert_eq!(c.max_chat_chars, 7);
        let c = run(&[], &[("WSROOMS_MAX_CHAT_CHARS", "9")]).unwrap();
        assert_eq!(c.max_chat_chars, 9);
        let c = run(&["--bind=0.0.0.0:9000", "--echo"], &[]).unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert!(c.echo);
    }

    #[test]
    fn frame_limit_follows_a_raised_message_limit() {
        let c = run(&["--max-message-bytes", "16777216"], &[]).unwrap();
        assert_eq!(c.max_frame_bytes, 16 << 20);
        let c = run(
            &[
                "--max-message-bytes",
                "16777216",
                "--max-frame-bytes",
                "1000",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.max_frame_bytes, 1000);
    }

    #[test]
    fn bad_values_name_the_flag_and_range() {
        let e = run(&["--max-chat-chars", "0"], &[]).unwrap_err();
        assert!(
            e.0.contains("--max-chat-chars") && e.0.contains("1 to 100000"),
            "{e}"
        );
        let e = run(&[], &[("WSROOMS_RATE_LIMIT", "fast")]).unwrap_err();
        assert!(e.0.contains("WSROOMS_RATE_LIMIT"), "{e}");
        assert!(run(&["--nope"], &[]).is_err());
        assert!(run(&["--bind"], &[]).is_err());
        assert!(run(&["--bind", "nowhere"], &[]).is_err());
    }

    #[test]
    fn help_lists_every_flag_and_its_env() {
        let text = help();
        for opt in OPTIONS {
            assert!(text.contains(&format!("--{}", opt.name)));
            assert!(text.contains(&env_name(opt.name)));
        }
    }
}
