#!/usr/bin/env python3
"""One logged-in user floods scrollback; another user measures chat echo.

Not part of `cargo test` or `cargo bench`: run by hand, against a release
build, to see what one session pipelining `GET /rooms/{n}/history` costs
everyone else (and what the scrollback budget leaves of it):

    cargo build --release
    python3 benches/scrollback_flood.py                          # defaults (budget on)
    python3 benches/scrollback_flood.py --scrollback-rate 0      # budget off

It starts `target/release/wsrooms` on a free loopback port with a data file
in a temporary directory, fills room 1 with 1,000 messages, then for
`--secs` seconds: mallory's session sends history requests (`limit=100`)
pipelined on 20 connections (16 in flight on each), while bob, in room 2,
sends a chat message every 10 ms on his own socket and times each until it
comes back. Prints pages/s served, 429s/s, the server's CPU (from
/proc/PID/stat) and bob's echo round trips (p50, p99, max), with a quiet
run of bob alone first. `--path /healthz` floods another path instead, to
compare. Everything goes to 127.0.0.1 and stops by itself. Extra arguments
are passed to the server.
"""

import base64
import json
import multiprocessing
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

BIN = os.environ.get("WSROOMS_BIN") or os.path.join(os.path.dirname(__file__), "..", "target", "release", "wsrooms")
CONNS = 20
DEPTH = 16
FLOOD_ROOM = 1
ECHO_ROOM = 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(port, request):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(request.encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def login(port, user, room):
    body = urllib.parse.urlencode({"user": user, "room": str(room)})
    answer = http(
        port,
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}",
    )
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"set-cookie:"):
            return line.split(b":", 1)[1].split(b";")[0].strip().decode()
    raise SystemExit(f"login of {user} failed: {answer[:200]!r}")


class Ws:
    """A minimal WebSocket client: text frames out (masked), frames in."""

    def __init__(self, port, room, cookie):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /rooms/{room}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])
        if self.status != 101:
            self.sock.close()

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def recv(self):
        """The next text frame's JSON (pings are answered)."""
        while True:
            self._need(2)
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            at = 2
            if n == 126:
                self._need(4)
                n, at = int.from_bytes(self.buf[2:4], "big"), 4
            elif n == 127:
                self._need(10)
                n, at = int.from_bytes(self.buf[2:10], "big"), 10
            self._need(at + n)
            payload, self.buf = self.buf[at : at + n], self.buf[at + n :]
            if op == 1:
                return json.loads(payload)
            if op == 9:
                self.sock.sendall(bytes([0x8A, 0x80]) + b"\0\0\0\0")


def fill(port, cookie, n):
    """Sends `n` messages to the flood room; returns the open socket."""
    ws = Ws(port, FLOOD_ROOM, cookie)
    for i in range(n):
        ws.send(f"an old message number {i} with a few words in it")
    while True:
        e = ws.recv()
        if e.get("type") == "message" and e["text"].endswith(f" {n - 1} with a few words in it"):
            return ws


def echo_times(port, cookie, secs, out):
    """Bob: a message every 10 ms, each timed until it comes back (ms)."""
    ws = Ws(port, ECHO_ROOM, cookie)
    while ws.recv().get("type") != "welcome":
        pass
    times = []
    end = time.monotonic() + secs
    i = 0
    while time.monotonic() < end:
        text = f"echo {i}"
        t0 = time.perf_counter()
        ws.send(text)
        while True:
            e = ws.recv()
            if e.get("type") == "message" and e.get("text") == text:
                break
        times.append((time.perf_counter() - t0) * 1000)
        i += 1
        time.sleep(0.01)
    ws.sock.close()
    out.put(times)


def flood(port, cookie, secs, path):
    """Mallory: 20 connections, DEPTH requests for `path` in flight on each."""
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
    )
    return pipelined(port, request, secs)


def pipelined(port, request, secs, conns=CONNS, depth=DEPTH):
    """Keeps `depth` copies of `request` in flight on each of `conns`
    connections for `secs` seconds; returns {status: count}."""
    req = request.encode()
    sel = selectors.DefaultSelector()
    bufs = {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        s.sendall(req * depth)
        bufs[s] = bytearray()
        sel.register(s, selectors.EVENT_READ)
    counts = {}
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(s)
                continue
            buf = bufs[s]
            buf += chunk
            done = 0
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = bytes(buf[:head_end])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                if head.startswith(b"HEAD"):
                    length = 0
                if len(buf) < head_end + 4 + length:
                    break
                status = int(head.split(b" ")[1])
                counts[status] = counts.get(status, 0) + 1
                del buf[: head_end + 4 + length]
                done += 1
            if done:
                try:
                    s.send(req * done)
                except OSError:
                    pass
    for s in bufs:
        s.close()
    return counts


def start_server(port, tmp, args):
    """The release server on `port` with a data file in `tmp`, once it
    accepts connections (at most about 5 s)."""
    server = subprocess.Popen(
        [BIN, "--bind", f"127.0.0.1:{port}", "--rate-limit", "0", "--log-level", "warn",
         "--data-file", os.path.join(tmp, "rooms.db"), *args]
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return server


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(times, p):
    s = sorted(times)
    return s[min(len(s) - 1, int(len(s) * p))]


def summary(times):
    return f"p50 {pct(times, 0.5):.2f} ms, p99 {pct(times, 0.99):.2f} ms, max {max(times):.2f} ms ({len(times)} round trips)"


def main():
    args = sys.argv[1:]
    secs = 5.0
    if "--secs" in args:
        i = args.index("--secs")
        secs = float(args[i + 1])
        del args[i : i + 2]
    path = f"/rooms/{FLOOD_ROOM}/history?limit=100"
    if "--path" in args:
        i = args.index("--path")
        path = args[i + 1]
        del args[i : i + 2]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, tmp, args)
        try:
            mallory = login(port, "mallory", FLOOD_ROOM)
            bob = login(port, "bob", ECHO_ROOM)
            keep = fill(port, mallory, 1000)
            q = multiprocessing.Queue()
            quiet = multiprocessing.Process(target=echo_times, args=(port, bob, 2.0, q))
            quiet.start()
            print("quiet:  bob's echo", summary(q.get()))
            quiet.join()
            echo = multiprocessing.Process(target=echo_times, args=(port, bob, secs, q))
            cpu0, t0 = cpu_secs(server.pid), time.monotonic()
            echo.start()
            counts = flood(port, mallory, secs, path)
            elapsed = time.monotonic() - t0
            cpu = cpu_secs(server.pid) - cpu0
            times = q.get()
            echo.join()
            served = counts.get(200, 0)
            print(f"flood:  {served / elapsed:,.0f} pages/s served, "
                  f"{counts.get(429, 0) / elapsed:,.0f} 429/s, other {dict((k, v) for k, v in counts.items() if k not in (200, 429))}; "
                  f"server CPU {100 * cpu / elapsed:.0f} % ({cpu:.2f} s in {elapsed:.1f} s)")
            print("flood:  bob's echo", summary(times))
            keep.sock.close()
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
