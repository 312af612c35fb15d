//! # wsrooms
//!
//! A single-threaded WebSocket chat-room server on a hand-written `mio` poll
//! loop. Read it in this order to follow one byte from the socket to every
//! receiver:
//!
//! 1. [`server`]: the poll loop, a thin driver: sockets, accept, read,
//!    write, and nothing else;
//! 2. [`core`]: the whole server without I/O: every connection's protocol
//!    state and buffers, the chat state, the timers, the turn's work queue
//!    and its commit; events in, what to write and close out;
//! 3. [`conn`]: one connection's buffers and input gate, and
//!    [`conn::machine`], its protocol as a state machine with no I/O;
//! 4. [`http`]: request heads, responses, the WebSocket upgrade, forms, routes;
//! 5. [`ws`]: the frame codec: frames, message assembly, UTF-8, close codes;
//! 6. [`chat`]: rooms, sessions, events, history;
//! 7. [`queue`]: the write queue with shared frames and vectored writes;
//! 8. [`store`]: the `--data-file`, and [`admin_cli`], the `wsrooms backup`
//!    and `wsrooms restore` commands around its copies;
//!    [`admin`]: the operator API of `--admin-bind` (its requests, and the
//!    bars it sets);
//! 9. [`bytes`] (static, shared or owned output), [`table`] (generational
//!    ids), [`timers`], [`rate`], [`token`] (session tokens and their
//!    hashes), [`outside`] (the wall clock and token source the core is
//!    given: the system's, or a simulation's that replays byte for byte),
//!    [`config`], [`listeners`], [`assets`], [`build_info`],
//!    [`metrics`], [`peer_limits`], [`trust_proxy`], [`logsafe`] (how peer
//!    text reaches the log), [`shutdown`] (when the drain after a signal
//!    may end).
//!
//! Dependencies point down: `server` drives `core` and owns the sockets;
//! `core` uses everything below it and nothing calls back up into it;
//! `conn::machine` uses `http` and `ws` (and names sessions by `chat`'s
//! ids, as `chat` names sockets by `conn`'s: type names only, no calls);
//! `chat` and `store` share [`token`] and know nothing of each other, nor
//! of HTTP statuses or close codes (the core decides what a client is
//! told); `http` knows nothing of `ws` frames or of the loop; `ws`,
//! `bytes`, `table`, `timers` and `rate` know nothing of HTTP, chat or the
//! loop.
//!
//! The repository's `docs/ARCHITECTURE.md` walks one chat message through
//! these modules function by function; `docs/PROTOCOL.md` says what the
//! server does seen from outside (URLs, events, close codes, flags).

#![warn(missing_docs)]

pub mod admin;
pub mod admin_cli;
pub mod assets;
pub mod build_info;
pub mod bytes;
pub mod chat;
pub mod config;
pub mod conn;
pub mod core;
pub mod http;
pub mod listeners;
pub mod logsafe;
pub mod metrics;
pub mod outside;
pub mod peer_limits;
pub mod queue;
pub mod rate;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod table;
pub mod timers;
pub mod token;
pub mod trust_proxy;
pub mod ws;

pub use config::Config;
pub use server::Server;
