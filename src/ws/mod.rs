//! The WebSocket protocol (RFC 6455), server side, as pure functions and
//! state machines over bytes:
//!
//! - [`handshake`]: checking the upgrade request, computing the accept key;
//! - [`frame`]: frame headers, masking, encoding server frames;
//! - [`reader`]: assembling messages from frames, with limits;
//! - [`utf8`]: incremental UTF-8 validation across fragments;
//! - [`close`]: close codes and the protocol errors that map to them.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod reader;
pub mod utf8;
