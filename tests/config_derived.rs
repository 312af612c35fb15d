//! No flag can crash the server through what the server derives from it
//! (issue 18 §3): `--login-rate-per-ip 5e-20` passed the range check, and
//! the tenth login from one address panicked in turning `1 / rate` into a
//! `Duration`.
//!
//! - A property test over every numeric flag (read from `--help`'s own
//!   `[range: A to B]`, so a new flag is covered without a word here), with
//!   values inside, at the edges of and just outside its range, alone and
//!   combined: parsing never panics and refuses with exit code 2; and for
//!   every accepted configuration, building what the server derives from it
//!   never panics: the machine's settings and keep-alive tick, every
//!   deadline, the timers' sleep, the chat and scrollback token buckets and
//!   the per-address login limit driven at the same instant and a century
//!   later, the input gate. A rate's `Retry-After` is at most a day.
//! - A server given the slowest rate a `Config` can hold (built in code,
//!   past the parser) answers `429` and keeps serving.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use wsrooms::config::MIN_RATE;
use wsrooms::conn::InputGate;
use wsrooms::conn::machine::{Machine, Settings};
use wsrooms::peer_limits::{PeerLimits, Refusal};
use wsrooms::rate::TokenBucket;
use wsrooms::timers::Timers;

/// Long enough to overflow any refill, short enough for an `Instant`.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A numeric flag and its range, as `--help` shows them.
#[derive(Debug, Clone)]
struct Numeric {
    long: String,
    min: f64,
    max: f64,
}

/// Every flag whose help line shows a `[range: A to B]`.
fn numeric_flags() -> Vec<Numeric> {
    Config::command()
        .get_arguments()
        .filter_map(|arg| {
            let help = arg.get_help()?.to_string();
            let range = help.split("[range: ").nth(1)?.split(']').next()?;
            let (min, max) = range.split_once(" to ")?;
            Some(Numeric {
                long: arg.get_long()?.to_string(),
                min: min.parse().ok()?,
                max: max.parse().ok()?,
            })
        })
        .collect()
}

/// Texts to give a flag with range `min..=max`: inside, at and just past
/// both edges, around the slowest rate, and numbers no flag takes.
fn values(min: f64, max: f64) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (min..=max).prop_map(|v| v.to_string()),
        1 => (min..=max).prop_map(|v| format!("{}", v.round() as u64)),
        1 => (min - 2.0..=min + 2.0).prop_map(|v| v.to_string()),
        3 => prop::sample::select(vec![
            min.to_string(),
            max.to_string(),
            (min - 1.0).to_string(),
            (max + 1.0).to_string(),
            (max * (1.0 + 1e-12)).to_string(),
            (MIN_RATE * (1.0 - 1e-9)).to_string(),
            (MIN_RATE * (1.0 + 1e-9)).to_string(),
            "5e-20".into(),
            "4.9e-324".into(),
            "-0".into(),
            "NaN".into(),
            "inf".into(),
            "-inf".into(),
            "1e308".into(),
            "18446744073709551616".into(),
            "9007199254740993".into(),
            "".into(),
            " 7 ".into(),
            "0x10".into(),
        ]),
        1 => any::<f64>().prop_map(|v| v.to_string()),
    ]
}

/// One to four numeric flags with values for each.
fn command_lines() -> impl Strategy<Value = Vec<(String, String)>> {
    let flags = numeric_flags();
    assert!(flags.len() >= 20, "{flags:?}");
    let one = prop::sample::select(flags).prop_flat_map(|f| {
        let long = f.long.clone();
        values(f.min, f.max).prop_map(move |v| (long.clone(), v))
    });
    prop::collection::vec(one, 1..=4)
}

fn parse(flags: &[(String, String)]) -> Result<Config, clap::Error> {
    let args = flags
        .iter()
        .map(|(long, value)| format!("--{long}={value}"));
    Config::from_args(["wsrooms".to_string()].into_iter().chain(args))
}

/// Builds and drives everything the server derives from `config`.
fn derive_all(config: &Config) -> Result<(), TestCaseError> {
    let epoch = Instant::now();
    let s = Settings::of(config, epoch);
    for at in [
        epoch,
        epoch + s.ping_interval + s.pong_timeout,
        epoch + CENTURY,
    ] {
        let tick = s.on_tick(at);
        prop_assert!(tick >= at && tick - at <= s.keepalive_tick);
    }
    let deadlines = [
        config.head_timeout,
        config.ping_interval + config.pong_timeout,
        config.close_timeout,
        config.shutdown_timeout,
        config.reserve_timeout,
        config.grace_timeout,
    ];
    let mut timers = Timers::new();
    for (key, d) in deadlines.into_iter().enumerate() {
        timers.add(s.on_tick(epoch + d), key);
    }
    prop_assert!(timers.poll_timeout(epoch).is_some());
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut machine = Machine::new(peer, epoch, &s);
    if let Some(deadline) = machine.deadline() {
        let _ = machine.on_timer(&mut wsrooms::queue::WriteQueue::new(), deadline, &s);
    }
    for (rate, burst) in [
        (config.rate_limit, config.rate_burst),
        (config.scrollback_rate, f64::from(config.scrollback_burst)),
    ] {
        let mut bucket = TokenBucket::new(burst, epoch);
        for at in [epoch, epoch + Duration::from_nanos(1), epoch + CENTURY] {
            for _ in 0..(burst.min(64.0) as usize + 2) {
                bucket.take(rate, burst, at);
                let _ = at.checked_add(bucket.time_to_token(rate));
            }
        }
    }
    let mut limits = PeerLimits::new(config);
    let ip = IpAddr::from([10, 0, 0, 1]);
    let logins = config.login_burst_per_ip.min(64.0) as usize + 2;
    for at in [epoch, epoch + CENTURY] {
        for _ in 0..logins {
            if let Err(Refusal::LoginRate { retry_after_secs }) = limits.login(ip, at) {
                prop_assert!(
                    (1..=86_400).contains(&retry_after_secs),
                    "{retry_after_secs}"
                );
            }
        }
    }
    let mut gate = InputGate::Open;
    gate.admits(config.max_buffered, config.pause_reading_at);
    gate.reopens(0, config.pause_reading_at);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_numeric_flag_panics_in_parsing_or_in_what_it_derives(flags in command_lines()) {
        match parse(&flags) {
            Ok(config) => derive_all(&config)?,
            Err(e) => prop_assert_eq!(e.exit_code(), 2, "{:?}: {}", flags, e),
        }
    }
}

/// The edges of every numeric flag, each with every other flag at its
/// lowest (so the slowest rate meets a burst of one), deterministically.
#[test]
fn every_numeric_flag_at_its_edges_derives_without_a_panic() {
    let flags = numeric_flags();
    for f in &flags {
        // The edges, and the rates just below the slowest one (refused,
        // or accepted: either way nothing may panic).
        let edges = [f.min, f.max, MIN_RATE, MIN_RATE / 2.0, 5e-20, 5e-324];
        for edge in edges {
            for other in flags.iter().filter(|o| o.long != f.long) {
                let given = [
                    (f.long.clone(), edge.to_string()),
                    (other.long.clone(), other.min.to_string()),
                ];
                if let Ok(config) = parse(&given) {
                    derive_all(&config).unwrap();
                }
            }
        }
    }
}

#[test]
fn the_slowest_rate_a_config_can_hold_answers_429_and_the_server_lives_on() {
    let addr = start(Config {
        login_rate_per_ip: 5e-20,
        login_burst_per_ip: 1.0,
        ..test_config()
    });
    assert_eq!(login_raw(addr, "first", "1").status, 303);
    let refused = login_raw(addr, "second", "1");
    assert_eq!(refused.status, 429, "{}", refused.text());
    let retry: u64 = refused.header("Retry-After").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(get(addr, "/healthz", "").status, 200, "still serving");
}
