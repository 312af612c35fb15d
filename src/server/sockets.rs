//! The loop's sockets, found by their connection's [`ConnId`]: a vector
//! indexed by the id's slot, each entry checked against the full id (the
//! generation too), so an event for a closed connection finds nothing.

use mio::Interest;
use mio::net::TcpStream;

use crate::conn::ConnId;

/// One connection's socket and what it is registered for.
#[derive(Debug)]
pub struct Socket {
    /// The socket (non-blocking).
    pub stream: TcpStream,
    /// What it is registered for with the poll.
    pub interest: Interest,
}

impl Socket {
    /// A freshly accepted socket, registered for `READABLE`.
    pub fn new(stream: TcpStream) -> Self {
        Socket {
            stream,
            interest: Interest::READABLE,
        }
    }
}

/// Every open socket, by connection id.
#[derive(Debug, Default)]
pub struct Sockets {
    slots: Vec<Option<(ConnId, Socket)>>,
}

impl Sockets {
    /// Keeps `socket` as connection `id`'s.
    pub fn insert(&mut self, id: ConnId, socket: Socket) {
        let key = id.key as usize;
        if self.slots.len() <= key {
            self.slots.resize_with(key + 1, || None);
        }
        self.slots[key] = Some((id, socket));
    }

    /// Connection `id`'s socket, if it is still open.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Socket> {
        match self.slots.get_mut(id.key as usize) {
            Some(Some((held, socket))) if *held == id => Some(socket),
            _ => None,
        }
    }

    /// Takes connection `id`'s socket out (dropping it closes it).
    pub fn remove(&mut self, id: ConnId) -> Option<Socket> {
        let slot = self.slots.get_mut(id.key as usize)?;
        match slot {
            Some((held, _)) if *held == id => slot.take().map(|(_, socket)| socket),
            _ => None,
        }
    }
}
