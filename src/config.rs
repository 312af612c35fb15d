//! Configuration: [`Config`] holds every limit and setting, and
//! `Config::default()` is what runs when nothing is given.
//!
//! The command line is declared once, in the private `Cli` struct, through
//! clap's derive API. Each field there is one flag: its doc comment is its
//! `--help` line, `env` names its `WSROOMS_*` variable (a flag wins over its
//! variable), its default is read from `Config::default()`, and its range is
//! written once, as `within = MIN..=MAX`, which both checks the value and
//! shows the range in `--help`. A refused value names the flag (or the
//! variable it came from) and what it accepts, and clap exits with code 2.
//! This module owns no server state and does no I/O beyond reading the
//! process's arguments and environment.

use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};

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
    /// Scrollback pages (`GET /rooms/{n}/history`) per second per session,
    /// all its connections together; opening a room socket counts as a page
    /// (token bucket refill). Default 10; 0 turns the limit off → `429`
    /// with `Retry-After`.
    pub scrollback_rate: f64,
    /// Scrollback pages one session may ask for at once. Default 20.
    pub scrollback_burst: f64,
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
    /// Keep sessions, `seq` counters and messages in this SQLite file, so
    /// that a restart or a crash logs out no one and loses no message.
    /// Default unset: everything in memory only.
    pub data_file: Option<PathBuf>,
    /// Messages kept per room in the data file. Default 10,000.
    pub keep_messages: usize,
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
            scrollback_rate: 10.0,
            scrollback_burst: 20.0,
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
            data_file: None,
            keep_messages: crate::store::DEFAULT_KEEP_MESSAGES as usize,
            log_level: "info".to_string(),
        }
    }
}

/// The command line. One field per flag, in `--help` order; [`Cli::into_config`]
/// turns it into a [`Config`]. `within = A..=B` and `switch = D` are not
/// clap's own attributes: clap's derive turns them into calls of
/// [`ArgExt::within`] and [`ArgExt::switch`] on the flag's `Arg`.
#[derive(Parser, Debug)]
#[command(
    name = "wsrooms",
    version,
    about,
    next_line_help = true,
    after_help = "Every flag can also be set by its environment variable, shown \
                  beside it; a flag given on the command line wins over its variable."
)]
struct Cli {
    /// Address to listen on
    #[arg(long, value_name = "ADDR:PORT", env = "WSROOMS_BIND",
          default_value_t = Config::default().bind, value_parser = Checked(address))]
    bind: SocketAddr,

    /// Open TCP connections at most (lowered below the open-files limit at
    /// start); more get 503
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_CONNECTIONS",
          default_value_t = Config::default().max_connections, within = 1..=1_000_000)]
    max_connections: usize,

    /// Bytes of an HTTP request head; more get 431
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_HEAD_BYTES",
          default_value_t = Config::default().max_head_bytes, within = 256..=1_048_576)]
    max_head_bytes: usize,

    /// Seconds a client has to send a full request head
    #[arg(long, value_name = "S", env = "WSROOMS_HEAD_TIMEOUT_SECS",
          default_value_t = Config::default().head_timeout.as_secs() as usize,
          within = 1..=3600)]
    head_timeout_secs: usize,

    /// Bytes of one WebSocket message; more closes 1009
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_MESSAGE_BYTES",
          default_value_t = Config::default().max_message_bytes,
          within = 125..=1_073_741_824)]
    max_message_bytes: usize,

    /// Bytes of one WebSocket frame; more closes 1009. When neither this flag
    /// nor its variable is given, it rises with --max-message-bytes
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_FRAME_BYTES",
          default_value_t = Config::default().max_frame_bytes,
          within = 125..=1_073_741_824)]
    max_frame_bytes: usize,

    /// Code points of one chat message; longer is truncated
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_CHAT_CHARS",
          default_value_t = Config::default().max_chat_chars, within = 1..=100_000)]
    max_chat_chars: usize,

    /// Chat messages per second per connection, 0 = off; more closes 1008
    #[arg(long, value_name = "R", env = "WSROOMS_RATE_LIMIT",
          default_value_t = Config::default().rate_limit, within = 0.0..=1e6)]
    rate_limit: f64,

    /// Chat messages allowed at once (the token bucket's size)
    #[arg(long, value_name = "B", env = "WSROOMS_RATE_BURST",
          default_value_t = Config::default().rate_burst, within = 1.0..=1e6)]
    rate_burst: f64,

    /// Scrollback pages (and room sockets opened) per second per session,
    /// 0 = off; more get 429
    #[arg(long, value_name = "R", env = "WSROOMS_SCROLLBACK_RATE",
          default_value_t = Config::default().scrollback_rate, within = 0.0..=1e6)]
    scrollback_rate: f64,

    /// Scrollback pages one session may ask for at once
    #[arg(long, value_name = "B", env = "WSROOMS_SCROLLBACK_BURST",
          default_value_t = Config::default().scrollback_burst, within = 1.0..=1e6)]
    scrollback_burst: f64,

    /// Users (joined or reserved) in one room; more get 409 at login
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_USERS_PER_ROOM",
          default_value_t = Config::default().max_users_per_room, within = 1..=1_000_000)]
    max_users_per_room: usize,

    /// Connections open at once from one client address, 0 = off; more get 503
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_CONNECTIONS_PER_IP",
          default_value_t = Config::default().max_connections_per_ip,
          within = 0..=1_000_000)]
    max_connections_per_ip: usize,

    /// Logins per second from one client address, 0 = off; more get 429
    #[arg(long, value_name = "R", env = "WSROOMS_LOGIN_RATE_PER_IP",
          default_value_t = Config::default().login_rate_per_ip, within = 0.0..=1e6)]
    login_rate_per_ip: f64,

    /// Logins one client address may send at once
    #[arg(long, value_name = "B", env = "WSROOMS_LOGIN_BURST_PER_IP",
          default_value_t = Config::default().login_burst_per_ip, within = 1.0..=1e6)]
    login_burst_per_ip: f64,

    /// Logins held at once in all rooms; more get 503 at login
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_SESSIONS",
          default_value_t = Config::default().max_sessions, within = 1..=10_000_000)]
    max_sessions: usize,

    /// Buffered outgoing bytes that pause reading from a connection
    #[arg(long, value_name = "N", env = "WSROOMS_PAUSE_READING_AT",
          default_value_t = Config::default().pause_reading_at,
          within = 1024..=1_073_741_824)]
    pause_reading_at: usize,

    /// Buffered outgoing bytes that close a connection with 1008
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_BUFFERED",
          default_value_t = Config::default().max_buffered,
          within = 1024..=1_073_741_824)]
    max_buffered: usize,

    /// Seconds between pings
    #[arg(long, value_name = "S", env = "WSROOMS_PING_INTERVAL_SECS",
          default_value_t = Config::default().ping_interval.as_secs() as usize,
          within = 1..=86_400)]
    ping_interval_secs: usize,

    /// Seconds to wait for a pong
    #[arg(long, value_name = "S", env = "WSROOMS_PONG_TIMEOUT_SECS",
          default_value_t = Config::default().pong_timeout.as_secs() as usize,
          within = 1..=86_400)]
    pong_timeout_secs: usize,

    /// Seconds to wait for the peer's close frame after ours
    #[arg(long, value_name = "S", env = "WSROOMS_CLOSE_TIMEOUT_SECS",
          default_value_t = Config::default().close_timeout.as_secs() as usize,
          within = 1..=3600)]
    close_timeout_secs: usize,

    /// Seconds to drain sockets on SIGINT or SIGTERM
    #[arg(long, value_name = "S", env = "WSROOMS_SHUTDOWN_TIMEOUT_SECS",
          default_value_t = Config::default().shutdown_timeout.as_secs() as usize,
          within = 0..=3600)]
    shutdown_timeout_secs: usize,

    /// Seconds a login waits for its socket
    #[arg(long, value_name = "S", env = "WSROOMS_RESERVE_SECS",
          default_value_t = Config::default().reserve_timeout.as_secs() as usize,
          within = 1..=86_400)]
    reserve_secs: usize,

    /// Seconds an id stays reserved after its socket closed
    #[arg(long, value_name = "S", env = "WSROOMS_GRACE_SECS",
          default_value_t = Config::default().grace_timeout.as_secs() as usize,
          within = 0..=86_400)]
    grace_secs: usize,

    /// Messages kept per room for late joiners and reconnects
    #[arg(long, value_name = "N", env = "WSROOMS_HISTORY_MESSAGES",
          default_value_t = Config::default().history_messages, within = 0..=100_000)]
    history_messages: usize,

    /// Extra Origin allowed to open room sockets, repeatable or
    /// comma-separated [default: none]
    #[arg(long, value_name = "URL", env = "WSROOMS_ALLOW_ORIGIN",
          value_delimiter = ',', value_parser = Checked(origin))]
    allow_origin: Vec<String>,

    /// Serve the /echo WebSocket endpoint
    #[arg(long, env = "WSROOMS_ECHO", switch = Config::default().echo)]
    echo: bool,

    /// Serve the pages from this directory instead of the embedded copies
    /// [default: embedded]
    #[arg(long, value_name = "DIR", env = "WSROOMS_WWW", value_parser = Checked(directory))]
    www: Option<PathBuf>,

    /// Take the client address from X-Forwarded-For and the host from
    /// X-Forwarded-Host
    #[arg(long, env = "WSROOMS_TRUST_PROXY", switch = Config::default().trust_proxy)]
    trust_proxy: bool,

    /// Serve only /metrics and /healthz on this address, and hide /metrics
    /// from --bind [default: unset]
    #[arg(long, value_name = "ADDR:PORT", env = "WSROOMS_METRICS_BIND",
          value_parser = Checked(address))]
    metrics_bind: Option<SocketAddr>,

    /// Behind a room-hashing proxy: POST /login without ?room=N gets 307 to it
    #[arg(long, env = "WSROOMS_SHARDED", switch = Config::default().sharded)]
    sharded: bool,

    /// Keep sessions, message numbers and messages in this SQLite file
    /// (created if missing), so that a restart loses no login and no message
    /// [default: unset, all in memory]
    #[arg(long, value_name = "PATH", env = "WSROOMS_DATA_FILE")]
    data_file: Option<PathBuf>,

    /// Messages kept per room in the data file
    #[arg(long, value_name = "N", env = "WSROOMS_KEEP_MESSAGES",
          default_value_t = Config::default().keep_messages, within = 1..=100_000_000)]
    keep_messages: usize,

    /// Log level; when neither this flag nor its variable is given, RUST_LOG
    /// is used if it names a level
    #[arg(long, value_name = "LEVEL", env = "WSROOMS_LOG_LEVEL",
          default_value_t = Config::default().log_level, value_parser = Checked(level))]
    log_level: String,
}

/// The levels `--log-level` and `RUST_LOG` may name.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Two helpers for the `#[arg(...)]` lines above.
trait ArgExt {
    /// A number from `range`: checked by the parser and shown in `--help`.
    fn within<T: Number>(self, range: RangeInclusive<T>) -> Self;
    /// An on/off switch: `--echo` alone is on; `--echo=false` and the
    /// variable take `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    fn switch(self, default: bool) -> Self;
}

/// The number types a flag may hold.
trait Number: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static {}
impl Number for usize {}
impl Number for f64 {}

impl ArgExt for Arg {
    fn within<T: Number>(self, range: RangeInclusive<T>) -> Self {
        let (min, max) = range.into_inner();
        let help = self.get_help().map(ToString::to_string).unwrap_or_default();
        self.help(format!("{help} [range: {min} to {max}]"))
            .allow_negative_numbers(true) // so that `-1` is refused as out of range
            .value_parser(Checked(move |v: &str| number(v, min, max)))
    }

    fn switch(self, default: bool) -> Self {
        self.action(ArgAction::Set)
            .value_name("BOOL")
            .num_args(0..=1)
            .require_equals(true)
            .default_value(if default { "true" } else { "false" })
            .default_missing_value("true")
            .value_parser(Checked(boolean))
    }
}

/// A value parser made of a plain check, `fn(&str) -> Result<T, String>`.
/// Unlike clap's own, its refusal names the variable when the value came
/// from one, so that a typo in a unit file points at the right line.
#[derive(Clone)]
struct Checked<F>(F);

impl<F, T> TypedValueParser for Checked<F>
where
    F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        self.parse_ref_(cmd, arg, value, ValueSource::CommandLine)
    }

    fn parse_ref_(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<T, clap::Error> {
        (self.0)(&value.to_string_lossy()).map_err(|why| {
            let flag = format!("--{}", arg.and_then(Arg::get_long).unwrap_or("?"));
            let place = match (source, arg.and_then(Arg::get_env)) {
                (ValueSource::EnvVariable, Some(var)) => {
                    format!("{} ({flag})", var.to_string_lossy())
                }
                _ => flag,
            };
            clap::Error::raw(ErrorKind::ValueValidation, format!("{place}: {why}"))
                .format(&mut cmd.clone())
        })
    }
}

fn number<T: Number>(value: &str, min: T, max: T) -> Result<T, String> {
    match value.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "expects a number from {min} to {max}, got {value:?}"
        )),
    }
}

fn address(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("expects ADDR:PORT such as 127.0.0.1:8080, got {v:?}"))
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expects true or false, got {v:?}")),
    }
}

/// One origin, as it is compared later: no trailing `/`, lower case. An
/// empty piece (`a,,b`) becomes "" and is dropped by [`Cli::into_config`].
fn origin(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() || v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.trim_end_matches('/').to_ascii_lowercase())
    } else {
        Err(format!(
            "expects an origin such as https://chat.example, got {v:?}"
        ))
    }
}

fn directory(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v);
    match path.is_dir() {
        true => Ok(path),
        false => Err(format!("expects a directory, {v:?} is not one")),
    }
}

fn level(v: &str) -> Result<String, String> {
    match LEVELS.iter().find(|l| l.eq_ignore_ascii_case(v)) {
        Some(l) => Ok(l.to_string()),
        None => Err(format!("expects one of {}, got {v:?}", LEVELS.join(", "))),
    }
}

impl Cli {
    /// The configuration these flags describe. `matches` tells which flags
    /// were left at their defaults: an unset frame limit follows a raised
    /// message limit, and an unset log level falls back to `rust_log`.
    fn into_config(self, matches: &ArgMatches, rust_log: Option<&str>) -> Config {
        let given = |id: &str| matches.value_source(id) != Some(ValueSource::DefaultValue);
        let mut max_frame_bytes = self.max_frame_bytes;
        if !given("max_frame_bytes") {
            max_frame_bytes = max_frame_bytes.max(self.max_message_bytes);
        }
        let log_level = match rust_log.map(level) {
            Some(Ok(from_rust_log)) if !given("log_level") => from_rust_log,
            _ => self.log_level,
        };
        let secs = |s: usize| Duration::from_secs(s as u64);
        Config {
            bind: self.bind,
            max_connections: self.max_connections,
            max_head_bytes: self.max_head_bytes,
            head_timeout: secs(self.head_timeout_secs),
            max_message_bytes: self.max_message_bytes,
            max_frame_bytes,
            max_chat_chars: self.max_chat_chars,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            scrollback_rate: self.scrollback_rate,
            scrollback_burst: self.scrollback_burst,
            max_users_per_room: self.max_users_per_room,
            max_sessions: self.max_sessions,
            pause_reading_at: self.pause_reading_at,
            max_buffered: self.max_buffered,
            ping_interval: secs(self.ping_interval_secs),
            pong_timeout: secs(self.pong_timeout_secs),
            close_timeout: secs(self.close_timeout_secs),
            shutdown_timeout: secs(self.shutdown_timeout_secs),
            reserve_timeout: secs(self.reserve_secs),
            grace_timeout: secs(self.grace_secs),
            history_messages: self.history_messages,
            allow_origins: self
                .allow_origin
                .into_iter()
                .filter(|o| !o.is_empty())
                .collect(),
            echo: self.echo,
            www: self.www,
            trust_proxy: self.trust_proxy,
            metrics_bind: self.metrics_bind,
            sharded: self.sharded,
            max_connections_per_ip: self.max_connections_per_ip,
            login_rate_per_ip: self.login_rate_per_ip,
            login_burst_per_ip: self.login_burst_per_ip,
            data_file: self.data_file,
            keep_messages: self.keep_messages,
            log_level,
            ..Config::default()
        }
    }
}

impl Config {
    /// The command line `wsrooms` accepts: every flag with its variable,
    /// default, range and help line.
    pub fn command() -> Command {
        Cli::command()
    }

    /// Builds the configuration from `args` (the program name first, as in
    /// `std::env::args_os()`), the `WSROOMS_*` variables and `RUST_LOG`.
    ///
    /// `Err` carries what to print and the exit code (`Error::exit` does
    /// both): 2 for a refused value, 0 for `--help` and `--version`.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::parse(args, std::env::var("RUST_LOG").ok().as_deref())
    }

    /// [`Config::from_args`] with `RUST_LOG` given rather than read.
    fn parse<I, T>(args: I, rust_log: Option<&str>) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Cli::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        let config = cli.into_config(&matches, rust_log);
        if config.pause_reading_at > config.max_buffered {
            let why = format!(
                "--pause-reading-at ({}) must not exceed --max-buffered ({})",
                config.pause_reading_at, config.max_buffered
            );
            return Err(clap::Error::raw(ErrorKind::ArgumentConflict, why).format(&mut command));
        }
        Ok(config)
    }

    /// A one-line summary of every field, for the start log.
    pub fn summary(&self) -> String {
        let www = match &self.www {
            Some(dir) => dir.display().to_string(),
            None => "embedded".into(),
        };
        let data_file = match &self.data_file {
            Some(path) => path.display().to_string(),
            None => "-".into(),
        };
        let metrics_bind = match self.metrics_bind {
            Some(addr) => addr.to_string(),
            None => "-".into(),
        };
        format!(
            "bind={} max_connections={} max_head_bytes={} max_request_line_bytes={} \
             max_body_bytes={} head_timeout={}s max_message_bytes={} max_frame_bytes={} \
             max_chat_chars={} rate_limit={}/s burst={} scrollback_rate={}/s scrollback_burst={} \
             max_users_per_room={} max_sessions={} \
             max_connections_per_ip={} login_rate_per_ip={}/s login_burst_per_ip={} \
             pause_reading_at={} max_buffered={} ping={}s pong_timeout={}s close_timeout={}s \
             shutdown_timeout={}s reserve={}s grace={}s history={} echo={} www={} \
             allow_origin={:?} trust_proxy={} metrics_bind={} sharded={} data_file={} \
             keep_messages={} log_level={}",
            self.bind,
            self.max_connections,
            self.max_head_bytes,
            self.max_request_line_bytes,
            self.max_body_bytes,
            self.head_timeout.as_secs(),
            self.max_message_bytes,
            self.max_frame_bytes,
            self.max_chat_chars,
            self.rate_limit,
            self.rate_burst,
            self.scrollback_rate,
            self.scrollback_burst,
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
            self.shutdown_timeout.as_secs(),
            self.reserve_timeout.as_secs(),
            self.grace_timeout.as_secs(),
            self.history_messages,
            self.echo,
            www,
            self.allow_origins,
            self.trust_proxy,
            metrics_bind,
            self.sharded,
            data_file,
            self.keep_messages,
            self.log_level,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `flags` as `wsrooms` would (the environment is the test
    /// process's; `RUST_LOG` is given).
    fn run(flags: &[&str], rust_log: Option<&str>) -> Result<Config, clap::Error> {
        Config::parse(
            std::iter::once("wsrooms").chain(flags.iter().copied()),
            rust_log,
        )
    }

    /// A Config's debug text, to compare two configurations field by field.
    fn fields(c: &Config) -> String {
        format!("{c:?}")
    }

    #[test]
    fn no_flags_is_config_default() {
        let c = run(&[], None).unwrap();
        assert_eq!(fields(&c), fields(&Config::default()));
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.max_head_bytes, 8192);
        assert_eq!(c.max_message_bytes, 65536);
        assert_eq!(c.max_frame_bytes, 65536);
        assert_eq!(c.max_chat_chars, 50);
        assert_eq!(c.rate_limit, 20.0);
        assert_eq!(c.rate_burst, 40.0);
        assert_eq!((c.scrollback_rate, c.scrollback_burst), (10.0, 20.0));
        assert_eq!(c.pause_reading_at, 65536);
        assert_eq!(c.max_buffered, 1 << 20);
        assert_eq!(c.history_messages, 50);
        assert_eq!(c.data_file, None, "in memory only");
        assert_eq!(c.keep_messages, 10_000);
        assert_eq!(c.max_connections_per_ip, 0, "per-address limits off");
        assert_eq!(c.login_rate_per_ip, 0.0, "per-address limits off");
    }

    #[test]
    fn the_command_is_well_formed_and_every_flag_has_its_variable() {
        let command = Config::command();
        command.clone().debug_assert();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let env = format!("WSROOMS_{}", long.replace('-', "_").to_ascii_uppercase());
            assert_eq!(arg.get_env(), Some(OsStr::new(&env)), "--{long}");
        }
    }

    /// One value for every flag but `--www` (which needs a directory).
    const EVERY_FLAG: &[&str] = &[
        "--bind=0.0.0.0:9000",
        "--max-connections=11",
        "--max-head-bytes=300",
        "--head-timeout-secs=12",
        "--max-message-bytes=1300",
        "--max-frame-bytes=1400",
        "--max-chat-chars=15",
        "--rate-limit=1.5",
        "--rate-burst=16",
        "--scrollback-rate=2.5",
        "--scrollback-burst=7",
        "--max-users-per-room=17",
        "--max-connections-per-ip=18",
        "--login-rate-per-ip=0.25",
        "--login-burst-per-ip=19",
        "--max-sessions=20",
        "--pause-reading-at=2100",
        "--max-buffered=2200",
        "--ping-interval-secs=23",
        "--pong-timeout-secs=24",
        "--close-timeout-secs=25",
        "--shutdown-timeout-secs=26",
        "--reserve-secs=27",
        "--grace-secs=28",
        "--history-messages=29",
        "--allow-origin=https://A.example/,http://b",
        "--allow-origin",
        "https://c",
        "--echo",
        "--trust-proxy=yes",
        "--metrics-bind=127.0.0.1:9100",
        "--sharded=1",
        "--data-file=/var/lib/wsrooms/rooms.db",
        "--keep-messages=31",
        "--log-level=DEBUG",
    ];

    #[test]
    fn every_flag_reaches_its_field() {
        let www = std::env::temp_dir();
        let www_flag = format!("--www={}", www.display());
        let flags: Vec<&str> = EVERY_FLAG
            .iter()
            .copied()
            .chain([www_flag.as_str()])
            .collect();
        let c = run(&flags, Some("warn")).unwrap();
        let secs = |c: Duration| c.as_secs();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(
            (c.max_connections, c.max_head_bytes, c.max_message_bytes),
            (11, 300, 1300)
        );
        assert_eq!(
            (c.max_frame_bytes, c.max_chat_chars, c.rate_limit),
            (1400, 15, 1.5)
        );
        assert_eq!(
            (c.rate_burst, c.max_users_per_room, c.max_connections_per_ip),
            (16.0, 17, 18)
        );
        assert_eq!((c.scrollback_rate, c.scrollback_burst), (2.5, 7.0));
        assert_eq!(
            (c.login_rate_per_ip, c.login_burst_per_ip, c.max_sessions),
            (0.25, 19.0, 20)
        );
        assert_eq!(
            (c.pause_reading_at, c.max_buffered, c.history_messages),
            (2100, 2200, 29)
        );
        assert_eq!(
            (
                secs(c.head_timeout),
                secs(c.ping_interval),
                secs(c.pong_timeout)
            ),
            (12, 23, 24)
        );
        assert_eq!((secs(c.close_timeout), secs(c.shutdown_timeout)), (25, 26));
        assert_eq!((secs(c.reserve_timeout), secs(c.grace_timeout)), (27, 28));
        assert_eq!(
            c.allow_origins,
            ["https://a.example", "http://b", "https://c"]
        );
        assert!(c.echo && c.trust_proxy && c.sharded);
        assert_eq!(c.www, Some(www));
        assert_eq!(c.metrics_bind.unwrap().port(), 9100);
        assert_eq!(
            c.data_file.as_deref(),
            Some(std::path::Path::new("/var/lib/wsrooms/rooms.db"))
        );
        assert_eq!(c.keep_messages, 31);
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn frame_limit_follows_a_raised_message_limit() {
        let c = run(&["--max-message-bytes", "16777216"], None).unwrap();
        assert_eq!(c.max_frame_bytes, 16 << 20);
        let c = run(
            &[
                "--max-message-bytes",
                "16777216",
                "--max-frame-bytes",
                "1000",
            ],
            None,
        );
        assert_eq!(c.unwrap().max_frame_bytes, 1000);
        let c = run(&["--max-message-bytes", "1000"], None).unwrap();
        assert_eq!(
            c.max_frame_bytes, 65536,
            "a lowered message limit leaves it"
        );
    }

    #[test]
    fn rust_log_is_the_fallback_for_the_log_level() {
        assert_eq!(run(&[], Some("Trace")).unwrap().log_level, "trace");
        assert_eq!(run(&[], Some("wsrooms=debug")).unwrap().log_level, "info");
        let c = run(&["--log-level", "error"], Some("trace")).unwrap();
        assert_eq!(c.log_level, "error");
    }

    /// The first line of a refusal, and its exit code.
    fn refusal(flags: &[&str]) -> (String, i32) {
        let e = run(flags, None).unwrap_err();
        let text = e.render().to_string();
        (text.lines().next().unwrap_or("").to_string(), e.exit_code())
    }

    #[test]
    fn bad_values_name_the_flag_and_range_and_exit_2() {
        let (line, code) = refusal(&["--max-chat-chars", "0"]);
        assert_eq!(code, 2);
        assert!(
            line.contains("--max-chat-chars") && line.contains("1 to 100000"),
            "{line}"
        );
        let (line, _) = refusal(&["--rate-limit", "NaN"]);
        assert!(line.contains("0 to 1000000"), "{line}");
        let (line, _) = refusal(&["--echo=maybe"]);
        assert!(
            line.contains("--echo") && line.contains("true or false"),
            "{line}"
        );
        let (line, _) = refusal(&["--pause-reading-at=4096", "--max-buffered=2048"]);
        assert!(
            line.contains("--pause-reading-at") && line.contains("--max-buffered"),
            "{line}"
        );
        assert_eq!(refusal(&["--nope"]).1, 2);
        assert_eq!(refusal(&["--bind"]).1, 2);
        assert_eq!(refusal(&["--bind", "nowhere"]).1, 2);
    }

    #[test]
    fn the_summary_names_every_field() {
        let summary = Config::default().summary();
        let debug = format!("{:?}", Config::default());
        // Config's Debug text names each field; the summary uses a shorter
        // name for some.
        let short = [
            ("ping_interval", "ping"),
            ("rate_burst", "burst"),
            ("reserve_timeout", "reserve"),
            ("grace_timeout", "grace"),
            ("history_messages", "history"),
            ("allow_origins", "allow_origin"),
        ];
        for field in debug
            .split([' ', '{', ','])
            .filter_map(|w| w.strip_suffix(':'))
        {
            let name = short
                .iter()
                .find(|(f, _)| *f == field)
                .map_or(field, |(_, s)| *s);
            assert!(
                summary.contains(&format!(" {name}=")) || summary.starts_with(&format!("{name}=")),
                "{field}: {summary}"
            );
        }
    }

    #[test]
    fn help_shows_each_range_once_written() {
        let help = Config::command().render_help().to_string();
        assert!(help.contains("[range: 1 to 100000]"), "{help}");
        assert!(help.contains("[range: 125 to 1073741824]"), "{help}");
        assert!(help.contains("[default: 50]"), "{help}");
    }
}
