#!/usr/bin/env python3
"""Server CPU per request, for each kind of request a client can repeat.

Not part of `cargo test` or `cargo bench`: run by hand against a release
build (`cargo build --release`, then `python3 benches/request_costs.py`).
It starts `target/release/wsrooms` (or `$WSROOMS_BIN`) on a free loopback
port with a data file, fills room 1 with 1,000 messages, and for each row
pipelines that one request on 4 connections (16 in flight on each) for
`--secs` seconds (default 2), reading the server's CPU time from
/proc/PID/stat: CPU per answered request, answers per second and the
server's share of a core. The WebSocket rows open a socket, read its
`welcome` and close it, in a loop, in a room where 200 other sockets sit
idle (each join and leave is sent to all of them). Extra arguments go to
the server (`--scrollback-rate 0` to see what a page costs: otherwise
most of that row's answers are `429`). Everything goes to 127.0.0.1 and
stops by itself.
"""

import os
import socket
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from scrollback_flood import BIN, Ws, cpu_secs, fill, free_port, login, pipelined, start_server  # noqa: E402

CONNS = 4
DEPTH = 16


def sockets_cycled(port, cookie, room, secs):
    """Opens a room socket, reads its welcome, closes it; again and again."""
    counts = {}
    end = time.monotonic() + secs
    while time.monotonic() < end:
        ws = Ws(port, room, cookie)
        counts[ws.status] = counts.get(ws.status, 0) + 1
        if ws.status == 101:
            while ws.recv().get("type") != "welcome":
                pass
            ws.sock.close()
    return counts


def measure(pid, name, run):
    cpu0, t0 = cpu_secs(pid), time.monotonic()
    counts = run()
    elapsed = time.monotonic() - t0
    cpu = cpu_secs(pid) - cpu0
    n = sum(counts.values())
    per = 1e6 * cpu / n if n else float("nan")
    print(f"{name:44} {per:8.1f} µs/req {n / elapsed:10,.0f} req/s  CPU {100 * cpu / elapsed:4.0f} %  {counts}")


def main():
    args = sys.argv[1:]
    secs = 2.0
    if "--secs" in args:
        i = args.index("--secs")
        secs = float(args[i + 1])
        del args[i : i + 2]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, tmp, args)
        try:
            cookie = login(port, "mallory", 1)
            keep = fill(port, cookie, 1000)
            host = f"Host: 127.0.0.1:{port}\r\n"
            get = lambda path, extra="": f"GET {path} HTTP/1.1\r\n{host}{extra}\r\n"  # noqa: E731
            with_cookie = f"Cookie: {cookie}\r\n"
            body = urllib.parse.urlencode({"user": "mallory", "room": "1"})
            taken = (
                f"POST /login HTTP/1.1\r\n{host}Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}"
            )
            rows = [
                ("GET /healthz", get("/healthz")),
                ("GET /metrics", get("/metrics")),
                ("GET / (login page)", get("/")),
                ("GET /static/room.js", get("/static/room.js")),
                ("GET /static/room.js, If-None-Match (304)", None),
                ("GET /rooms/1 with the session", get("/rooms/1", with_cookie)),
                ("GET /rooms/1 without (303)", get("/rooms/1")),
                ("GET /rooms/1/history?limit=100", get("/rooms/1/history?limit=100", with_cookie)),
                ("GET /rooms/1/history (no cookie, 403)", get("/rooms/1/history")),
                ("POST /login, id taken (409)", taken),
            ]
            for name, request in rows:
                if request is None:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    s.sendall(get("/static/room.js").encode())
                    head = s.recv(4096).split(b"\r\n\r\n")[0]
                    s.close()
                    etag = [l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n")
                            if l.lower().startswith(b"etag:")][0]
                    request = get("/static/room.js", f"If-None-Match: {etag}\r\n")
                measure(server.pid, name, lambda: pipelined(port, request, secs, CONNS, DEPTH))
            # A room with 200 idle sockets, and one session cycling a socket in it.
            idle = []
            for i in range(200):
                c = login(port, f"idle{i}", 3)
                idle.append(Ws(port, 3, c))
            cycler = login(port, "cycler", 3)
            measure(server.pid, "room socket open+close, 200 in the room", lambda: sockets_cycled(port, cycler, 3, secs))
            other = login(port, "nobody", 4)
            measure(server.pid, "room socket open+close, alone in the room", lambda: sockets_cycled(port, other, 4, secs))
            for ws in idle:
                ws.sock.close()
            keep.sock.close()
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
