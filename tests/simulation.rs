//! The deterministic simulation of the whole server (see `tests/sim/`):
//! the real server core, hundreds of virtual clients, a virtual clock and
//! faults drawn from a seed, with the invariants checked after every loop
//! turn.
//!
//! - `cargo test --test simulation` runs `WSROOMS_SIM_SEEDS` seeds (default
//!   200) from `WSROOMS_SIM_FIRST` (default 1);
//! - `WSROOMS_SIM_SEEDS=5000 cargo test --release --test simulation` runs
//!   thousands;
//! - `WSROOMS_SIM_SEED=N cargo test --test simulation -- --nocapture`
//!   replays seed N alone, the same run turn for turn and byte for byte
//!   (the core's wall clock and session tokens come from the seed: see
//!   `wsrooms::outside`).

mod sim;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn the_invariants_hold_for_every_seed() {
    if let Some(seed) = env("WSROOMS_SIM_SEED") {
        match sim::run_seed(seed) {
            Ok(turns) => println!("seed {seed}: {turns} turns, every invariant held"),
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let first = env("WSROOMS_SIM_FIRST").unwrap_or(1);
    let seeds = env("WSROOMS_SIM_SEEDS").unwrap_or(200);
    let mut turns = 0;
    for seed in first..first + seeds {
        match sim::run_seed(seed) {
            Ok(t) => turns += t,
            Err(e) => panic!("{e}"),
        }
    }
    println!("{seeds} seeds from {first}: {turns} turns, every invariant held");
}

/// A seed's run is the same to the last byte every time: the core takes
/// nothing from the world but what it is given (events, instants, and a
/// wall clock and token source it is handed). Seeds with and without a
/// data file.
#[test]
fn a_seed_replays_byte_for_byte() {
    let first = env("WSROOMS_SIM_FIRST").unwrap_or(1);
    for seed in first..first + 6 {
        let once = sim::digest_of_seed(seed).unwrap_or_else(|e| panic!("{e}"));
        let again = sim::digest_of_seed(seed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(once, again, "seed {seed} sent other bytes the second time");
        let other = sim::digest_of_seed(seed + 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(
            once,
            other,
            "seeds {seed} and {} sent the same bytes",
            seed + 1000
        );
    }
}
