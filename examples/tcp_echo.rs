//! Step 1 of the ladder (docs/LEARN.md): a bare `mio` echo server.
//!
//! mio tells us when a socket is *ready* (a read or write would not block);
//! we then do the read or write ourselves. Readiness is edge-triggered: one
//! event per change, so after an event we keep reading until `WouldBlock`.
//!
//! Run: `cargo run --example tcp_echo [ADDR]`, then `nc 127.0.0.1 7878`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// The listener's token; connections get 1, 2, 3…
const LISTENER: Token = Token(0);
/// Stop reading from a peer while this much of its echo is unsent.
const MAX_PENDING: usize = 64 * 1024;

/// One client: its socket and the bytes not yet echoed back.
struct Conn {
    socket: TcpStream,
    pending: Vec<u8>,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7878".into());
    let mut listener = TcpListener::bind(addr.parse().expect("an address like 127.0.0.1:7878"))?;
    println!("tcp_echo listening on {}", listener.local_addr()?);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1;
    let mut events = Events::with_capacity(128);
    loop {
        poll.poll(&mut events, None)?; // sleep until something is ready
        for event in events.iter() {
            if event.token() == LISTENER {
                // Accept everyone waiting, until WouldBlock.
                while let Ok((mut socket, _)) = listener.accept() {
                    let token = Token(next);
                    next += 1;
                    let both = Interest::READABLE | Interest::WRITABLE;
                    poll.registry().register(&mut socket, token, both)?;
                    let pending = Vec::new();
                    conns.insert(token, Conn { socket, pending });
                }
            } else if let Some(conn) = conns.get_mut(&event.token()) {
                // Readable or writable: either way, make all the progress we can.
                if !serve(conn) {
                    conns.remove(&event.token()); // dropping the socket closes it
                }
            }
        }
    }
}

/// Echoes what `conn` sent until its socket would block. False when the
/// connection is finished (the peer closed it, or an error).
fn serve(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        // Write first: what is pending goes out before we read more.
        while !conn.pending.is_empty() {
            match conn.socket.write(&conn.pending) {
                Ok(n) => drop(conn.pending.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if conn.pending.len() >= MAX_PENDING {
            return true; // the peer does not read: wait for a writable event
        }
        match conn.socket.read(&mut buf) {
            Ok(0) => return false, // the peer closed its side
            Ok(n) => conn.pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
