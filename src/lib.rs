//! # wsrooms
//!
//! A single-threaded WebSocket chat-room server on a hand-written `mio` poll
//! loop. Read it in this order to follow one byte from the socket to every
//! receiver:
//!
//! 1. [`server`]: the poll loop (accept, read, dispatch, timers, flush);
//! 2. [`conn`]: one connection's state machine and buffers;
//! 3. [`http`]: request heads, responses, forms, routes;
//! 4. [`ws`]: the WebSocket handshake, frames, message assembly, UTF-8;
//! 5. [`chat`]: rooms, sessions, events, history;
//! 6. [`queue`]: the write queue with shared frames and vectored writes;
//! 7. [`timers`], [`config`], [`assets`], [`metrics`], [`peer_limits`],
//!    [`logsafe`] (how peer text reaches the log).

pub mod assets;
pub mod chat;
pub mod config;
pub mod conn;
pub mod http;
pub mod logsafe;
pub mod metrics;
pub mod peer_limits;
pub mod queue;
pub mod server;
pub mod store;
pub mod timers;
pub mod ws;

pub use config::Config;
pub use server::Server;
