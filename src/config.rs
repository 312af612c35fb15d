//! Configuration: [`Config`] holds every limit and setting, and
//! `Config::default()` is what runs when nothing is given.
//!
//! Each setting is written once, as one field of [`Config`] with one
//! `#[arg(...)]` attribute (clap's derive API): its doc comment is its
//! `--help` line, `env` names its `WSROOMS_*` variable (a flag wins over
//! its variable), `default_value` is its default (and so
//! `Config::default()`'s value), and its range is written as
//! `within = MIN..=MAX` (or `seconds = …` for a time, `rate = …` for a
//! rate), which both checks the value and shows the range in `--help`. A
//! time also says `value_parser = None`: clap has no parser of its own for
//! a `Duration` and must be told not to look for one; `seconds` sets it.
//! [`Config::summary`], the start-up log line, is read off the same fields
//! and the same table. A refused value names the flag (or the variable it
//! came from) and what it accepts, and the process exits with code 2.
//!
//! A value is checked for what the server derives from it too, not only
//! for its text: a rate other than 0 must give a token at least once a day
//! (so its period, `1 / rate`, is a time the server can wait), and
//! `--pause-reading-at` may not exceed `--max-buffered`.
//!
//! This module owns no server state and does no I/O beyond reading the
//! process's arguments and environment.

use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::net::{Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};
use serde::{Serialize, Serializer};
use serde_json::Value;

pub use crate::trust_proxy::TrustProxy;

/// Everything the server can be told, one field per setting, in `--help`
/// order. A field's doc comment is its `--help` line.
#[derive(Parser, Serialize, Clone, Debug)]
#[command(
    name = "wsrooms",
    version = crate::build_info::LONG_VERSION,
    about,
    long_about = None,
    next_line_help = true,
    after_help = "Every flag can also be set by its environment variable, shown \
                  beside it; a flag given on the command line wins over its variable.\n\n\
                  Copies of the data file: `wsrooms backup --data-file FILE COPY` \
                  (while the server runs) and `wsrooms restore COPY --data-file FILE` \
                  (server stopped); `wsrooms backup --help` says more."
)]
pub struct Config {
    /// Address to listen on
    #[arg(long, value_name = "ADDR:PORT", env = "WSROOMS_BIND",
          default_value = "127.0.0.1:8080", value_parser = Checked(address))]
    pub bind: SocketAddr,

    /// Open TCP connections at most (lowered below the open-files limit at
    /// start); more get 503
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_CONNECTIONS",
          default_value_t = 10_000, within = 1_usize..=1_000_000)]
    pub max_connections: usize,

    /// Bytes of an HTTP request head; more get 431
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_HEAD_BYTES",
          default_value_t = 8 * 1024, within = 256_usize..=1_048_576)]
    pub max_head_bytes: usize,

    /// Bytes of a request line (method, target, version); more get 414.
    /// Fixed: not a flag
    #[arg(skip = 2 * 1024_usize)]
    pub max_request_line_bytes: usize,

    /// Bytes of a request body (the login form); more get 413. Fixed: not a
    /// flag
    #[arg(skip = 4 * 1024_usize)]
    pub max_body_bytes: usize,

    /// Seconds a client has to send a full request head
    #[arg(long = "head-timeout-secs", value_name = "S", env = "WSROOMS_HEAD_TIMEOUT_SECS",
          default_value = "10", value_parser = None, seconds = 1..=3600)]
    pub head_timeout: Duration,

    /// Bytes of one WebSocket message; more closes 1009
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_MESSAGE_BYTES",
          default_value_t = 64 * 1024, within = 125_usize..=1_073_741_824)]
    pub max_message_bytes: usize,

    /// Bytes of one WebSocket frame; more closes 1009. When neither this flag
    /// nor its variable is given, it rises with --max-message-bytes
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_FRAME_BYTES",
          default_value_t = 64 * 1024, within = 125_usize..=1_073_741_824)]
    pub max_frame_bytes: usize,

    /// Code points of one chat message; longer is truncated (50 is the
    /// seed demo's limit)
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_CHAT_CHARS",
          default_value_t = 2000, within = 1_usize..=100_000)]
    pub max_chat_chars: usize,

    /// Lines of one chat message; the lines after them are dropped
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_CHAT_LINES",
          default_value_t = 40, within = 1_usize..=10_000)]
    pub max_chat_lines: usize,

    /// Seconds after sending it that a message may still be edited or
    /// deleted by its sender (0 = never); later is refused
    #[arg(long = "edit-window-secs", value_name = "S", env = "WSROOMS_EDIT_WINDOW_SECS",
          default_value = "900", value_parser = None, seconds = 0..=2_592_000)]
    pub edit_window: Duration,

    /// Chat messages per second per connection, 0 = off; more closes 1008
    #[arg(long, value_name = "R", env = "WSROOMS_RATE_LIMIT",
          default_value_t = 20.0, rate = 0.0..=1e6)]
    pub rate_limit: f64,

    /// Chat messages allowed at once (the token bucket's size)
    #[arg(long, value_name = "B", env = "WSROOMS_RATE_BURST",
          default_value_t = 40.0, within = 1.0..=1e6)]
    pub rate_burst: f64,

    /// Users (joined or reserved) in one room; more get 409 at login
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_USERS_PER_ROOM",
          default_value_t = 1000, within = 1_usize..=1_000_000)]
    pub max_users_per_room: usize,

    /// Connections open at once from one client address, 0 = off; more get 503
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_CONNECTIONS_PER_IP",
          default_value_t = 0, within = 0_usize..=1_000_000)]
    pub max_connections_per_ip: usize,

    /// Logins per second from one client address, 0 = off; more get 429
    #[arg(long, value_name = "R", env = "WSROOMS_LOGIN_RATE_PER_IP",
          default_value_t = 0.0, rate = 0.0..=1e6)]
    pub login_rate_per_ip: f64,

    /// Logins one client address may send at once
    #[arg(long, value_name = "B", env = "WSROOMS_LOGIN_BURST_PER_IP",
          default_value_t = 10.0, within = 1.0..=1e6)]
    pub login_burst_per_ip: f64,

    /// Scrollback pages per second per session, all its connections
    /// together, a room socket opened counting as one; 0 = off; more get 429
    #[arg(long, value_name = "R", env = "WSROOMS_SCROLLBACK_RATE",
          default_value_t = 10.0, rate = 0.0..=10_000.0)]
    pub scrollback_rate: f64,

    /// Scrollback pages a session may fetch at once
    #[arg(long, value_name = "B", env = "WSROOMS_SCROLLBACK_BURST",
          default_value_t = 20, within = 1_u32..=100_000)]
    pub scrollback_burst: u32,

    /// Logins held at once in all rooms; more get 503 at login
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_SESSIONS",
          default_value_t = 100_000, within = 1_usize..=10_000_000)]
    pub max_sessions: usize,

    /// Buffered outgoing bytes that pause reading from a connection
    #[arg(long, value_name = "N", env = "WSROOMS_PAUSE_READING_AT",
          default_value_t = 64 * 1024, within = 1024_usize..=1_073_741_824)]
    pub pause_reading_at: usize,

    /// Buffered outgoing bytes that close a connection with 1008
    #[arg(long, value_name = "N", env = "WSROOMS_MAX_BUFFERED",
          default_value_t = 1024 * 1024, within = 1024_usize..=1_073_741_824)]
    pub max_buffered: usize,

    /// Seconds between pings
    #[arg(long = "ping-interval-secs", value_name = "S", env = "WSROOMS_PING_INTERVAL_SECS",
          default_value = "30", value_parser = None, seconds = 1..=86_400)]
    pub ping_interval: Duration,

    /// Seconds to wait for a pong
    #[arg(long = "pong-timeout-secs", value_name = "S", env = "WSROOMS_PONG_TIMEOUT_SECS",
          default_value = "30", value_parser = None, seconds = 1..=86_400)]
    pub pong_timeout: Duration,

    /// Seconds to wait for the peer's close frame after ours
    #[arg(long = "close-timeout-secs", value_name = "S", env = "WSROOMS_CLOSE_TIMEOUT_SECS",
          default_value = "5", value_parser = None, seconds = 1..=3600)]
    pub close_timeout: Duration,

    /// Seconds to drain sockets on SIGINT or SIGTERM
    #[arg(long = "shutdown-timeout-secs", value_name = "S",
          env = "WSROOMS_SHUTDOWN_TIMEOUT_SECS", default_value = "5", value_parser = None, seconds = 0..=3600)]
    pub shutdown_timeout: Duration,

    /// Seconds a login waits for its socket
    #[arg(long = "reserve-secs", value_name = "S", env = "WSROOMS_RESERVE_SECS",
          default_value = "60", value_parser = None, seconds = 1..=86_400)]
    pub reserve_timeout: Duration,

    /// Seconds an id stays reserved after its socket closed (a day, so a
    /// closed tab or a phone that slept comes back as itself)
    #[arg(long = "grace-secs", value_name = "S", env = "WSROOMS_GRACE_SECS",
          default_value = "86400", value_parser = None, seconds = 0..=2_592_000)]
    pub grace_timeout: Duration,

    /// Seconds a user whose socket closed stays in the room's list, so that
    /// a reload or a network blip shows the others no leave and no join; 0
    /// sends the leave at once
    #[arg(long = "leave-delay-secs", value_name = "S", env = "WSROOMS_LEAVE_DELAY_SECS",
          default_value = "5", value_parser = None, seconds = 0..=3600)]
    pub leave_delay: Duration,

    /// With --data-file: seconds after a start in which those who were in a
    /// room when the server stopped may come back unannounced (the page
    /// retries at most 15 s apart); 0 announces each one again
    #[arg(long = "restart-leave-delay-secs", value_name = "S",
          env = "WSROOMS_RESTART_LEAVE_DELAY_SECS",
          default_value = "20", value_parser = None, seconds = 0..=3600)]
    pub restart_leave_delay: Duration,

    /// Messages kept per room for late joiners and reconnects
    #[arg(long, value_name = "N", env = "WSROOMS_HISTORY_MESSAGES",
          default_value_t = 50, within = 0_usize..=100_000)]
    pub history_messages: usize,

    /// Extra Origin allowed to open room sockets, repeatable or
    /// comma-separated [default: none]
    #[arg(long = "allow-origin", value_name = "URL", env = "WSROOMS_ALLOW_ORIGIN",
          value_delimiter = ',', value_parser = Checked(origin))]
    pub allow_origins: Vec<String>,

    /// Serve the /echo WebSocket endpoint
    #[arg(long, env = "WSROOMS_ECHO", switch = false)]
    pub echo: bool,

    /// Serve the pages from this directory instead of the embedded copies
    /// [default: embedded]
    #[arg(long, value_name = "DIR", env = "WSROOMS_WWW", value_parser = CheckedPath(directory))]
    #[serde(serialize_with = "lossy_path")]
    pub www: Option<PathBuf>,

    /// The reverse proxies whose X-Forwarded-For (client address) and
    /// X-Forwarded-Host count: addresses or networks, comma-separated, e.g.
    /// 127.0.0.1,10.0.0.0/8,::1; the flag alone or `true` is `loopback`
    /// (127.0.0.0/8 and ::1); `false` or `off` trusts none
    #[arg(long, value_name = "ADDR|CIDR,...", env = "WSROOMS_TRUST_PROXY",
          num_args = 0..=1, default_value = "false", default_missing_value = "loopback",
          value_parser = Checked(TrustProxy::parse))]
    #[serde(serialize_with = "displayed")]
    pub trust_proxy: TrustProxy,

    /// Serve only /metrics and /healthz on this address, and hide /metrics
    /// from --bind [default: unset]
    #[arg(long, value_name = "ADDR:PORT", env = "WSROOMS_METRICS_BIND",
          value_parser = Checked(address))]
    pub metrics_bind: Option<SocketAddr>,

    /// Serve the operator API (/admin/*: list rooms, remove a user, bar an
    /// address) on this address only; keep it on loopback or a private
    /// network [default: unset, no admin API]
    #[arg(long, value_name = "ADDR:PORT", env = "WSROOMS_ADMIN_BIND",
          value_parser = Checked(address))]
    pub admin_bind: Option<SocketAddr>,

    /// Behind a room-hashing proxy: POST /login without ?room=N gets 307 to it
    #[arg(long, env = "WSROOMS_SHARDED", switch = false)]
    pub sharded: bool,

    /// Keep sessions, message numbers and messages in this SQLite file
    /// (created if missing), so that a restart loses no login and no message
    /// [default: unset, all in memory]
    #[arg(long, value_name = "PATH", env = "WSROOMS_DATA_FILE")]
    #[serde(serialize_with = "lossy_path")]
    pub data_file: Option<PathBuf>,

    /// Messages kept per room in the data file
    #[arg(long, value_name = "N", env = "WSROOMS_KEEP_MESSAGES",
          default_value_t = crate::store::DEFAULT_KEEP_MESSAGES as usize,
          within = 1_usize..=100_000_000)]
    pub keep_messages: usize,

    /// With --data-file, the longest a committed message waits to be synced
    /// to the disk, in ms (the power-loss window); 0 syncs every turn's
    /// commit before its output is sent
    #[arg(long, value_name = "MS", env = "WSROOMS_SYNC_MS",
          default_value_t = crate::store::sync::DEFAULT_SYNC_MS,
          within = 0_u64..=60_000)]
    pub sync_ms: u64,

    /// With --data-file, delete messages older than this many days (a room's
    /// newest stays while the room is in use); 0 is no age limit
    #[arg(long, value_name = "DAYS", env = "WSROOMS_KEEP_DAYS",
          default_value_t = 0, within = 0_u64..=36_500)]
    pub keep_days: u64,

    /// Log level; when neither this flag nor its variable is given, RUST_LOG
    /// is used if it names a level
    #[arg(long, value_name = "LEVEL", env = "WSROOMS_LOG_LEVEL",
          default_value = "info", value_parser = Checked(level))]
    pub log_level: String,
}

impl Default for Config {
    /// The configuration of an empty command line, whatever the
    /// environment holds: every field at the default its `#[arg]` names.
    fn default() -> Self {
        let mut command = Config::command().mut_args(|arg| arg.env(None));
        let parsed = command
            .try_get_matches_from_mut(["wsrooms"])
            .and_then(|matches| Config::from_matches(&mut command, &matches, None));
        // Only a default outside its own range could fail here, and
        // `every_default_is_accepted` (below) rules that out.
        parsed.expect("the declared defaults are valid")
    }
}

/// The levels `--log-level` and `RUST_LOG` may name.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// The slowest rate other than 0 (off) that a rate flag takes: one a day.
/// The server turns a rate into times (how long until the next token, the
/// `Retry-After` of a refused login); one a day keeps them short enough to
/// wait for.
pub const MIN_RATE: f64 = 1.0 / 86_400.0;

/// The helpers the `#[arg(...)]` lines above call (clap's derive turns
/// `within = A..=B` into `.within(A..=B)` on the flag's `Arg`).
trait ArgExt {
    /// A number from `range`: checked by the parser and shown in `--help`.
    fn within<T: Number>(self, range: RangeInclusive<T>) -> Self;
    /// A whole number of seconds from `range`, read as a `Duration`.
    fn seconds(self, range: RangeInclusive<u64>) -> Self;
    /// Events per second from `range`: 0 is off, and any other rate must
    /// be at least [`MIN_RATE`].
    fn rate(self, range: RangeInclusive<f64>) -> Self;
    /// An on/off switch: `--echo` alone is on; `--echo=false` and the
    /// variable take `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    fn switch(self, default: bool) -> Self;
}

/// The number types a flag may hold. A range is written in the field's own
/// type (`1_usize..=100`): the parser makes values of the range's type, and
/// clap panics if that is not the field's type when it reads them, which
/// `Config::default()` (and so every test) would show at once.
trait Number: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static {}
impl Number for usize {}
impl Number for u32 {}
impl Number for u64 {}
impl Number for f64 {}

impl ArgExt for Arg {
    fn within<T: Number>(self, range: RangeInclusive<T>) -> Self {
        let (min, max) = range.into_inner();
        with_range(self, min, max).value_parser(Checked(move |v: &str| number(v, min, max)))
    }

    fn seconds(self, range: RangeInclusive<u64>) -> Self {
        let (min, max) = range.into_inner();
        with_range(self, min, max).value_parser(Checked(move |v: &str| {
            number(v, min, max).map(Duration::from_secs)
        }))
    }

    fn rate(self, range: RangeInclusive<f64>) -> Self {
        let (min, max) = range.into_inner();
        with_range(self, min, max).value_parser(Checked(move |v: &str| rate(v, min, max)))
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

/// `arg` with its range shown in its help line; `-1` is read as a value
/// (and refused as out of range), not as a flag.
fn with_range<T: Display>(arg: Arg, min: T, max: T) -> Arg {
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [range: {min} to {max}]"))
        .allow_negative_numbers(true)
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
        (self.0)(&value.to_string_lossy()).map_err(|why| refusal(cmd, arg, source, &why))
    }
}

/// [`Checked`] for a path, which is checked as the system will see it
/// (not after a lossy conversion to UTF-8): `fn(&Path) -> Result<T, String>`.
#[derive(Clone)]
struct CheckedPath<F>(F);

impl<F, T> TypedValueParser for CheckedPath<F>
where
    F: Fn(&Path) -> Result<T, String> + Clone + Send + Sync + 'static,
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
        (self.0)(Path::new(value)).map_err(|why| refusal(cmd, arg, source, &why))
    }
}

/// The error for a refused value: the flag, or the variable it came from.
fn refusal(cmd: &Command, arg: Option<&Arg>, source: ValueSource, why: &str) -> clap::Error {
    let flag = format!("--{}", arg.and_then(Arg::get_long).unwrap_or("?"));
    let place = match (source, arg.and_then(Arg::get_env)) {
        (ValueSource::EnvVariable, Some(var)) => format!("{} ({flag})", var.to_string_lossy()),
        _ => flag,
    };
    clap::Error::raw(ErrorKind::ValueValidation, format!("{place}: {why}")).format(&mut cmd.clone())
}

fn number<T: Number>(value: &str, min: T, max: T) -> Result<T, String> {
    match value.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "expects a number from {min} to {max}, got {value:?}"
        )),
    }
}

fn rate(value: &str, min: f64, max: f64) -> Result<f64, String> {
    match number(value, min, max)? {
        r if r > 0.0 && r < MIN_RATE => Err(format!(
            "expects 0 (off) or a rate of at least 1/86400 (one a day), got {value:?}"
        )),
        r => Ok(r.abs()), // -0 is 0
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

/// One origin, in the form a browser sends it in `Origin` (RFC 6454's
/// serialisation): `http` or `https`, `://`, a host, and a port only if
/// it is not the scheme's default; nothing else. Upper case is folded
/// and a default port dropped, so that it compares equal to what
/// browsers send; anything that could never equal an `Origin` (a path, a
/// trailing `/`, a query, user info, an empty piece) is refused.
fn origin(v: &str) -> Result<String, String> {
    let v = v.trim();
    let lower = v.to_ascii_lowercase();
    serialised_origin(&lower)
        .map_err(|why| format!("expects an origin such as https://chat.example, got {v:?} ({why})"))
}

/// `v` (lower case) as an origin's serialisation, or why it is not one.
fn serialised_origin(v: &str) -> Result<String, &'static str> {
    let (scheme, default_port, rest) = if let Some(rest) = v.strip_prefix("https://") {
        ("https", 443, rest)
    } else if let Some(rest) = v.strip_prefix("http://") {
        ("http", 80, rest)
    } else if v.is_empty() {
        return Err("empty");
    } else {
        return Err("the scheme must be http:// or https://");
    };
    if let Some(at) = rest.find(['/', '?', '#', '@']) {
        return Err(match rest.as_bytes()[at] {
            b'/' if at + 1 == rest.len() => "no trailing slash: an origin has no path",
            b'/' => "an origin has no path",
            b'@' => "an origin has no user info",
            _ => "an origin has no query or fragment",
        });
    }
    let (host, port) = host_and_port(rest)?;
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// `host[:port]` split and checked: a DNS name or IPv4 address in ASCII,
/// or an IPv6 address in brackets; a port from 1 to 65535.
fn host_and_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        if authority[1..end].parse::<Ipv6Addr>().is_err() {
            return Err("not an IPv6 address in brackets");
        }
        let (host, after) = authority.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err("unexpected text after the ]"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let is_name = |h: &str| {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if !host.starts_with('[') && !is_name(host) {
        return Err(match host.is_ascii() {
            true => "the host must be a name or an address",
            false => "write an international name in its xn-- form",
        });
    }
    match port.map(|p| (p, p.parse::<u16>())) {
        None => Ok((host, None)),
        Some((p, Ok(n))) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok((host, Some(n))),
        Some(_) => Err("the port must be a number from 1 to 65535"),
    }
}

fn directory(path: &Path) -> Result<PathBuf, String> {
    match path.is_dir() {
        true => Ok(path.to_owned()),
        false => Err(format!("expects a directory, {path:?} is not one")),
    }
}

fn level(v: &str) -> Result<String, String> {
    match LEVELS.iter().find(|l| l.eq_ignore_ascii_case(v)) {
        Some(l) => Ok(l.to_string()),
        None => Err(format!("expects one of {}, got {v:?}", LEVELS.join(", "))),
    }
}

/// A path for the summary, even one that is not UTF-8.
fn lossy_path<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    path.as_deref().map(Path::to_string_lossy).serialize(s)
}

/// A value as its `Display` text (`--trust-proxy`'s networks).
fn displayed<S: Serializer, T: Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

impl Config {
    /// How the data file is kept: `--keep-messages`, `--sync-ms`,
    /// `--keep-days`.
    pub fn store_settings(&self) -> crate::store::Settings {
        crate::store::Settings {
            keep_messages: self.keep_messages as u64,
            sync: crate::store::SyncEvery::from_millis(self.sync_ms),
            keep_days: self.keep_days,
        }
    }

    /// The command line `wsrooms` accepts: every flag with its variable,
    /// default, range and help line.
    pub fn command() -> Command {
        <Config as CommandFactory>::command()
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
        Config::parse_with(args, std::env::var("RUST_LOG").ok().as_deref())
    }

    /// [`Config::from_args`] with `RUST_LOG` given rather than read.
    fn parse_with<I, T>(args: I, rust_log: Option<&str>) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Config::command();
        let matches = command.try_get_matches_from_mut(args)?;
        Config::from_matches(&mut command, &matches, rust_log)
    }

    /// The configuration `matches` describe. `matches` also tells which
    /// flags were left at their defaults: an unset frame limit follows a
    /// raised message limit, and an unset log level falls back to
    /// `rust_log`. Then the relations between flags are checked.
    fn from_matches(
        command: &mut Command,
        matches: &ArgMatches,
        rust_log: Option<&str>,
    ) -> Result<Config, clap::Error> {
        let mut config = Config::from_arg_matches(matches).map_err(|e| e.format(command))?;
        let given = |id: &str| matches.value_source(id) != Some(ValueSource::DefaultValue);
        if !given("max_frame_bytes") {
            config.max_frame_bytes = config.max_frame_bytes.max(config.max_message_bytes);
        }
        if let Some(Ok(from_rust_log)) = rust_log.map(level)
            && !given("log_level")
        {
            config.log_level = from_rust_log;
        }
        // With a data file, memory holds no event the file no longer keeps
        // (an edit of one would change memory only, and a restart would
        // lose what memory still showed).
        if config.data_file.is_some() {
            config.history_messages = config.history_messages.min(config.keep_messages);
        }
        if config.pause_reading_at > config.max_buffered {
            let why = format!(
                "--pause-reading-at ({}) must not exceed --max-buffered ({})",
                config.pause_reading_at, config.max_buffered
            );
            return Err(clap::Error::raw(ErrorKind::ArgumentConflict, why).format(command));
        }
        if let Some(why) = config.listeners_clash() {
            return Err(clap::Error::raw(ErrorKind::ArgumentConflict, why).format(command));
        }
        Ok(config)
    }

    /// Two listeners given the same address (not port 0, which picks a
    /// free port for each): the second could never be bound, and the
    /// start would fail as if another program held the port.
    fn listeners_clash(&self) -> Option<String> {
        let listeners = [
            ("--bind", Some(self.bind)),
            ("--metrics-bind", self.metrics_bind),
            ("--admin-bind", self.admin_bind),
        ];
        for (i, (first, a)) in listeners.iter().enumerate() {
            for (second, b) in &listeners[i + 1..] {
                if let (Some(a), Some(b)) = (a, b)
                    && a == b
                    && a.port() != 0
                {
                    return Some(format!(
                        "{first} and {second} are both {a}; give each its own"
                    ));
                }
            }
        }
        None
    }

    /// One line of `name=value` for every field, for the start log: the
    /// fields in `--help` order, then the fixed ones. A rate (`<R>`) is
    /// shown per second, a time as such (`10s`), an unset value as `-`.
    pub fn summary(&self) -> String {
        let Ok(Value::Object(mut fields)) = serde_json::to_value(self) else {
            return "?".into();
        };
        let mut shown = Vec::with_capacity(fields.len());
        for arg in Config::command().get_arguments() {
            let name = arg.get_id().as_str();
            if let Some(value) = fields.remove(name) {
                let per_second = arg
                    .get_value_names()
                    .is_some_and(|n| n.iter().any(|n| n == "R"));
                let unit = if per_second { "/s" } else { "" };
                shown.push(format!("{name}={}{unit}", show(&value)));
            }
        }
        shown.extend(
            fields
                .iter()
                .map(|(name, value)| format!("{name}={}", show(value))),
        );
        shown.join(" ")
    }
}

/// One field's value in the summary.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => whole.to_string(),
            (None, Some(real)) => real.to_string(),
            (None, None) => n.to_string(),
        },
        // A `Duration`, as serde writes it.
        Value::Object(o) => match (o.get("secs"), o.get("nanos")) {
            (Some(Value::Number(s)), Some(Value::Number(n))) => {
                let secs = s.as_u64().unwrap_or(0);
                let nanos = n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                format!("{:?}", Duration::new(secs, nanos.min(999_999_999)))
            }
            _ => value.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `flags` as `wsrooms` would (the environment is the test
    /// process's; `RUST_LOG` is given).
    fn run(flags: &[&str], rust_log: Option<&str>) -> Result<Config, clap::Error> {
        Config::parse_with(
            std::iter::once("wsrooms").chain(flags.iter().copied()),
            rust_log,
        )
    }

    /// Every flag but `--help` and `--version`.
    fn flags() -> Vec<Arg> {
        Config::command()
            .get_arguments()
            .filter(|a| !matches!(a.get_long(), Some("help" | "version") | None))
            .cloned()
            .collect()
    }

    #[test]
    fn every_default_is_accepted() {
        // `Config::default()` parses an empty command line with the
        // variables left out: a default outside its own range, or a range
        // of another type than its field, would panic here.
        let c = Config::default();
        assert!(c.allow_origins.is_empty() && c.data_file.is_none());
    }

    /// The flags table of docs/PROTOCOL.md: each flag with the default the
    /// page gives it, as `--help` would write it (`None`: no default).
    fn documented_defaults() -> Vec<(String, Option<String>)> {
        let doc = include_str!("../docs/PROTOCOL.md");
        let mut table = Vec::new();
        for row in doc.lines().filter(|l| l.starts_with("| `--")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let names: Vec<String> = cells[0]
                .split("`--")
                .skip(1)
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                        .collect()
                })
                .collect();
            let defaults: Vec<&str> = match names.len() {
                1 => vec![cells[1]],
                _ if cells[1].contains(" / ") => cells[1].split(" / ").collect(),
                _ => cells[1].split(", ").collect(),
            };
            assert_eq!(defaults.len(), names.len(), "{row}");
            for (name, default) in names.into_iter().zip(defaults) {
                let word = default.split_whitespace().next().unwrap_or("");
                let word = word.trim_matches(|c| c == '`' || c == ',');
                let word = word.trim_end_matches("/s");
                let value = match word {
                    "unset" | "none" | "embedded" => None,
                    "off" => Some("false".to_string()),
                    w => Some(w.to_string()),
                };
                table.push((name, value));
            }
        }
        table
    }

    #[test]
    fn every_flag_and_default_is_the_one_the_protocol_page_documents() {
        let documented = documented_defaults();
        let flags = flags();
        for arg in &flags {
            let long = arg.get_long().unwrap();
            let Some((_, doc)) = documented.iter().find(|(n, _)| n == long) else {
                panic!("--{long} is not in docs/PROTOCOL.md's flags table");
            };
            let code: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            assert_eq!(code.first(), doc.as_ref(), "--{long}'s default");
        }
        for (name, _) in &documented {
            let known = flags.iter().any(|a| a.get_long() == Some(name));
            assert!(
                known,
                "docs/PROTOCOL.md documents --{name}, wsrooms has none"
            );
        }
    }

    #[test]
    fn the_command_is_well_formed_and_every_flag_has_its_variable() {
        let command = Config::command();
        command.clone().debug_assert();
        for arg in flags() {
            let long = arg.get_long().unwrap();
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
        "--max-chat-lines=32",
        "--edit-window-secs=33",
        "--rate-limit=1.5",
        "--rate-burst=16",
        "--max-users-per-room=17",
        "--max-connections-per-ip=18",
        "--login-rate-per-ip=0.25",
        "--login-burst-per-ip=19",
        "--scrollback-rate=2.5",
        "--scrollback-burst=3",
        "--max-sessions=20",
        "--pause-reading-at=2100",
        "--max-buffered=2200",
        "--ping-interval-secs=23",
        "--pong-timeout-secs=24",
        "--close-timeout-secs=25",
        "--shutdown-timeout-secs=26",
        "--reserve-secs=27",
        "--grace-secs=28",
        "--leave-delay-secs=33",
        "--restart-leave-delay-secs=34",
        "--history-messages=29",
        "--allow-origin=https://A.example:443, http://b:8080",
        "--allow-origin",
        "https://[::1]:8443",
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
        assert_eq!(
            (c.login_rate_per_ip, c.login_burst_per_ip, c.max_sessions),
            (0.25, 19.0, 20)
        );
        assert_eq!((c.scrollback_rate, c.scrollback_burst), (2.5, 3));
        assert_eq!(c.max_chat_lines, 32);
        assert_eq!(c.edit_window, Duration::from_secs(33));
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
        assert_eq!((secs(c.leave_delay), secs(c.restart_leave_delay)), (33, 34));
        // As browsers send them: lower case, no default port.
        assert_eq!(
            c.allow_origins,
            ["https://a.example", "http://b:8080", "https://[::1]:8443"]
        );
        assert!(c.echo && c.sharded);
        assert_eq!(c.trust_proxy, TrustProxy::loopback(), "--trust-proxy=yes");
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
    fn trust_proxy_takes_networks_and_alone_means_loopback() {
        let c = run(
            &["--trust-proxy", "127.0.0.1,10.0.0.0/8,::1", "--echo"],
            None,
        )
        .unwrap();
        assert_eq!(c.trust_proxy.to_string(), "127.0.0.1/32,10.0.0.0/8,::1/128");
        assert!(c.echo);
        let c = run(&["--trust-proxy", "--sharded"], None).unwrap();
        assert_eq!(c.trust_proxy, TrustProxy::loopback());
        assert!(c.sharded, "the next flag is not taken as the value");
        assert!(run(&[], None).unwrap().trust_proxy.is_off());
        let (line, code) = refusal(&["--trust-proxy", "10.0.0.0/40"]);
        assert_eq!(code, 2);
        assert!(
            line.contains("--trust-proxy") && line.contains("10.0.0.0/40"),
            "{line}"
        );
    }

    #[test]
    fn with_a_data_file_memory_keeps_no_more_than_the_file() {
        let c = run(&["--data-file", "r.db", "--keep-messages", "10"], None).unwrap();
        assert_eq!(c.history_messages, 10);
        let c = run(&["--keep-messages", "10"], None).unwrap();
        assert_eq!(
            c.history_messages, 50,
            "without a data file, no file to follow"
        );
        let c = run(&["--data-file", "r.db", "--history-messages", "20"], None).unwrap();
        assert_eq!(c.history_messages, 20);
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
        let (line, _) = refusal(&["--scrollback-burst=1.5"]);
        assert!(line.contains("1 to 100000"), "{line}");
        assert_eq!(refusal(&["--nope"]).1, 2);
        assert_eq!(refusal(&["--bind"]).1, 2);
        assert_eq!(refusal(&["--bind", "nowhere"]).1, 2);
    }

    #[test]
    fn a_rate_is_off_or_at_least_one_a_day() {
        for flag in ["--rate-limit", "--login-rate-per-ip", "--scrollback-rate"] {
            for tiny in ["5e-20", "4.9e-324", "0.00001157"] {
                let (line, code) = refusal(&[flag, tiny]);
                assert_eq!(code, 2, "{flag} {tiny}");
                assert!(line.contains(flag) && line.contains("one a day"), "{line}");
            }
            let rate = |v: &str| {
                let c = run(&[flag, v], None).unwrap();
                [c.rate_limit, c.login_rate_per_ip, c.scrollback_rate]
            };
            assert!(rate("0.0000116").contains(&0.0000116), "{flag}");
            assert!(rate("-0").iter().all(|r| r.is_sign_positive()), "{flag}");
        }
    }

    #[test]
    fn an_origin_is_scheme_host_and_port_only() {
        let accepted = [
            ("https://chat.example", "https://chat.example"),
            ("HTTP://Chat.Example:8080", "http://chat.example:8080"),
            ("http://chat.example:80", "http://chat.example"),
            ("https://chat.example:80", "https://chat.example:80"),
            ("http://10.0.0.1:3000", "http://10.0.0.1:3000"),
            ("http://[::1]", "http://[::1]"),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
        ];
        for (given, kept) in accepted {
            assert_eq!(origin(given).as_deref(), Ok(kept), "{given}");
        }
        let refused = [
            ("", "empty"),
            ("chat.example", "scheme"),
            ("ftp://chat.example", "scheme"),
            ("https://", "host"),
            ("https://chat.example/", "trailing slash"),
            ("http://x/path", "path"),
            ("https://chat.example?x=1", "query"),
            ("https://chat.example#top", "fragment"),
            ("https://user@chat.example", "user info"),
            ("https://chat..example", "host"),
            ("https://chat example", "host"),
            ("https://bücher.example", "xn--"),
            ("https://chat.example:", "port"),
            ("https://chat.example:0", "port"),
            ("https://chat.example:65536", "port"),
            ("https://chat.example:+1", "port"),
            ("http://[::1", "]"),
            ("http://[nope]", "IPv6"),
            ("http://[::1]x", "after"),
        ];
        for (given, why) in refused {
            let e = origin(given).expect_err(given);
            assert!(
                e.contains("https://chat.example") && e.contains(why),
                "{given}: {e}"
            );
        }
        let (line, code) = refusal(&["--allow-origin", ""]);
        assert_eq!(code, 2);
        assert!(line.contains("--allow-origin"), "{line}");
        let (line, _) = refusal(&["--allow-origin", "https://a.example,,https://b.example"]);
        assert!(
            line.contains("--allow-origin") && line.contains("empty"),
            "{line}"
        );
    }

    #[test]
    fn the_summary_names_every_field_with_its_unit() {
        let summary = Config::default().summary();
        let debug = format!("{:?}", Config::default());
        let names: Vec<&str> = debug
            .split([' ', '{', ','])
            .filter_map(|w| w.strip_suffix(':'))
            .collect();
        let pairs: Vec<&str> = summary.split(' ').collect();
        assert_eq!(pairs.len(), names.len(), "{summary}");
        for name in names {
            assert!(
                pairs.iter().any(|p| p.starts_with(&format!("{name}="))),
                "{name}: {summary}"
            );
        }
        for arg in flags() {
            let id = arg.get_id().as_str();
            let pair = pairs
                .iter()
                .find(|p| p.starts_with(&format!("{id}=")))
                .unwrap();
            match arg
                .get_value_names()
                .and_then(|n| n.first())
                .map(|n| n.as_str())
            {
                Some("R") => assert!(pair.ends_with("/s"), "{pair}"),
                Some("S") => assert!(pair.ends_with('s') && !pair.ends_with("/s"), "{pair}"),
                _ => {}
            }
        }
        let c = run(
            &["--data-file", "/tmp/w.db", "--allow-origin", "http://a"],
            None,
        )
        .unwrap();
        let summary = c.summary();
        assert!(summary.contains(" data_file=/tmp/w.db "), "{summary}");
        assert!(
            summary.contains(r#" allow_origins=["http://a"] "#),
            "{summary}"
        );
        assert!(summary.contains(" www=- "), "{summary}");
    }

    #[test]
    fn help_shows_each_range_once_written() {
        let help = Config::command().render_help().to_string();
        assert!(help.contains("[range: 1 to 100000]"), "{help}");
        assert!(help.contains("[range: 125 to 1073741824]"), "{help}");
        assert!(help.contains("[range: 1 to 3600]"), "{help}");
        assert!(help.contains("[default: 50]"), "{help}");
    }
}
