//! # wsrooms
//!
//! A single-threaded WebSocket chat-room server on a hand-written `mio` poll
//! loop. Read it in this order to follow one byte from the socket to every
//! receiver:
//!
//! 1. [`server`]: the poll loop (accept, read, dispatch, timers, flush) and
//!    `Server::apply`, where a connection's decisions take effect;
//! 2. [`conn`]: one connection's socket, buffers and input gate, and
//!    [`conn::machine`], its protocol as a state machine with no I/O;
//! 3. [`http`]: request heads, responses, the WebSocket upgrade, forms, routes;
//! 4. [`ws`]: the frame codec: frames, message assembly, UTF-8, close codes;
//! 5. [`chat`]: rooms, sessions, events, history;
//! 6. [`queue`]: the write queue with shared frames and vectored writes;
//! 7. [`bytes`] (static, shared or owned output), [`table`] (generational
//!    ids), [`timers`], [`rate`], [`config`], [`listeners`], [`assets`],
//!    [`build_info`], [`metrics`], [`peer_limits`], [`trust_proxy`],
//!    [`logsafe`] (how peer text reaches the log), [`shutdown`] (when the
//!    drain after a signal may end);
//! 8. [`store`]: the `--data-file`, and [`admin_cli`], the `wsrooms backup`
//!    and `wsrooms restore` commands around its copies.
//!
//! Dependencies point down: `server` uses everything below it and nothing
//! calls back up into it; `conn::machine` uses `http` and `ws` (and names
//! sessions by `chat`'s ids, as `chat` names sockets by `conn`'s: type
//! names only, no calls); `http` knows nothing of `ws` frames or of the
//! loop; `ws`, `bytes`, `table`, `timers` and `rate` know nothing of HTTP,
//! chat or the loop.
//!
//! The repository's `docs/ARCHITECTURE.md` walks one chat message through
//! these modules function by function; `docs/PROTOCOL.md` says what the
//! server does seen from outside (URLs, events, close codes, flags).

#![warn(missing_docs)]

pub mod admin_cli;
pub mod assets;
pub mod build_info;
pub mod bytes;
pub mod chat;
pub mod config;
pub mod conn;
pub mod http;
pub mod listeners;
pub mod logsafe;
pub mod metrics;
pub mod peer_limits;
pub mod queue;
pub mod rate;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod table;
pub mod timers;
pub mod trust_proxy;
pub mod ws;

pub use config::Config;
pub use server::Server;
