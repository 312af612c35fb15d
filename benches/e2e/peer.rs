//! An idiomatic broadcast chat server on a current-thread tokio runtime:
//! `POST /login` gives a cookie, `GET /rooms/{n}/ws` with it opens a
//! tokio-tungstenite WebSocket; one `broadcast` channel per room; each
//! socket has a reader (chat text → JSON event → channel) and a writer
//! task (channel → socket, feeding all queued messages, one flush).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

struct Room {
    tx: broadcast::Sender<Message>,
    seq: Cell<u64>,
    users: RefCell<HashSet<String>>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, (u32, String)>,
    rooms: HashMap<u32, Rc<Room>>,
    next_token: u64,
}

type Shared = Rc<RefCell<State>>;

pub fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!(
            "peer listening on http://{}",
            listener.local_addr().expect("addr")
        );
        let state: Shared = Rc::default();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(connection(stream, state.clone()));
        }
    });
}

async fn connection(stream: TcpStream, state: Shared) {
    let mut first = [0u8; 4];
    loop {
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(4) => break,
            Ok(_) => tokio::task::yield_now().await,
        }
    }
    if &first == b"POST" {
        login(stream, state).await;
    } else {
        socket(stream, state).await;
    }
}

async fn login(mut stream: TcpStream, state: Shared) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (head_len, body_len) = loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0);
                if buf.len() >= head_len + len {
                    break (head_len, len);
                }
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return,
        }
    };
    let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).into_owned();
    let field = |name: &str| {
        body.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let user = field("user").unwrap_or_default();
    let room = field("room").and_then(|r| r.parse::<u32>().ok());
    let response = match room {
        Some(room) if !user.is_empty() => {
            let mut st = state.borrow_mut();
            st.next_token += 1;
            let token = format!("{:016x}{:016x}", st.next_token, rand_u64());
            st.sessions.insert(token.clone(), (room, user));
            format!(
                "HTTP/1.1 303 See Other\r\nLocation: /rooms/{room}\r\nSet-Cookie: session={token}; HttpOnly; SameSite=Strict; Path=/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        }
        _ => {
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Wait for the client to close its side.
    let _ = stream.read(&mut chunk).await;
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn socket(stream: TcpStream, state: Shared) {
    let mut found: Option<(u32, String)> = None;
    // The signature is tungstenite's (`Callback`); its error type is large.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let refuse = |why: &str| {
            let mut r = ErrorResponse::new(Some(why.to_string()));
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        };
        let room = req
            .uri()
            .path()
            .strip_prefix("/rooms/")
            .and_then(|r| r.strip_suffix("/ws"))
            .and_then(|r| r.parse::<u32>().ok())
            .ok_or_else(|| refuse("no such room"))?;
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = req
            .headers()
            .get("origin")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if origin.strip_prefix("http://") != Some(host) {
            return Err(refuse("origin"));
        }
        let token = req
            .headers()
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| kv.trim().strip_prefix("session=").map(str::to_string))
            .ok_or_else(|| refuse("no session"))?;
        let st = state.borrow();
        match st.sessions.get(&token) {
            Some((r, user)) if *r == room => {
                found = Some((room, user.clone()));
                Ok(resp)
            }
            _ => Err(refuse("no session for this room")),
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let Some((number, user)) = found else { return };
    let room = {
        let mut st = state.borrow_mut();
        st.rooms
            .entry(number)
            .or_insert_with(|| {
                Rc::new(Room {
                    tx: broadcast::channel(1024).0,
                    seq: Cell::new(0),
                    users: RefCell::default(),
                })
            })
            .clone()
    };
    room.users.borrow_mut().insert(user.clone());
    let mut rx = room.tx.subscribe();
    let (mut sink, mut stream) = ws.split();
    let users: Vec<String> = room.users.borrow().iter().map(|u| json_str(u)).collect();
    let welcome = format!(
        "{{\"type\":\"welcome\",\"room\":{number},\"user\":{},\"users\":[{}],\"history\":[],\"gap\":false}}",
        json_str(&user),
        users.join(",")
    );
    if sink.send(Message::text(welcome)).await.is_err() {
        return;
    }
    let user_json = json_str(&user);
    let _ = room.tx.send(Message::text(format!(
        "{{\"type\":\"join\",\"user\":{user_json},\"at\":{}}}",
        unix_millis()
    )));
    let writer = tokio::task::spawn_local(async move {
        loop {
            let first = match rx.recv().await {
                Ok(m) => m,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if sink.feed(first).await.is_err() {
                return;
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        if sink.feed(m).await.is_err() {
                            return;
                        }
                    }
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(text) => {
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let seq = room.seq.get() + 1;
                room.seq.set(seq);
                let event = format!(
                    "{{\"type\":\"message\",\"user\":{user_json},\"text\":{},\"at\":{},\"seq\":{seq}}}",
                    json_str(text),
                    unix_millis()
                );
                let _ = room.tx.send(Message::text(event));
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
    room.users.borrow_mut().remove(&user);
    let _ = room.tx.send(Message::text(format!(
        "{{\"type\":\"leave\",\"user\":{user_json},\"at\":{}}}",
        unix_millis()
    )));
    if room.users.borrow().is_empty() {
        state.borrow_mut().rooms.remove(&number);
    }
}
