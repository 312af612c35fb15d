//! The WebSocket frame codec (RFC 6455), server side, as pure functions and
//! state machines over bytes. It knows nothing of HTTP: the opening
//! handshake is an HTTP exchange and lives in `http::upgrade`.
//!
//! - [`frame`]: frame headers, masking, encoding server frames;
//! - [`reader`]: assembling messages from frames, with limits;
//! - [`utf8`]: incremental UTF-8 validation across fragments;
//! - [`close`]: close codes and the protocol errors that map to them.

pub mod close;
pub mod frame;
pub mod reader;
pub mod utf8;
