#!/usr/bin/env python3
"""A wsrooms client speaking through the TLS proxy of deploy/nginx*.conf.

Used by tests/deploy_nginx.rs and tests/deploy_sharded.rs. Every socket goes
to 127.0.0.1 (the certificate names localhost; TLS is verified against the
test's own self-signed certificate). Exits 0 and prints one JSON line when
every check held; otherwise prints why on stderr and exits 1.

    proxy_chat.py chat --port P --cafile CERT --rooms 1,2 --users a,b
                       [--messages N] [--plain-form] [--source 127.0.0.2]
        For each room: every user logs in over https (cookie, Secure flag),
        loads the room page, opens wss:// with the page's Origin, and
        everyone sends N messages; every user must receive every message of
        its room, in one order for all.
        [--spoof-xff ADDR] [--idle SECONDS] [--pad]
        --spoof-xff sends a made-up X-Forwarded-For on the handshake;
        --idle waits that long (answering pings) before chatting;
        --pad writes the room with leading zeros in /login's query and form.
    proxy_chat.py bad-origin --port P --cafile CERT --room R --user U
        Logs in, then opens the socket with a foreign Origin: must be 403.
    proxy_chat.py get --port P --cafile CERT --path /x
        One GET; prints {"status", "headers" (lower-case names), "body"}.
"""

import argparse
import asyncio
import faulthandler
import http.client
import json
import socket
import ssl
import sys
import time
import urllib.parse

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

TIMEOUT = 10.0


class Failed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failed(message)


def tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    # A self-signed test certificate is its own CA; Python >= 3.13's strict
    # mode wants extensions a quick `openssl req -x509` does not add.
    if hasattr(ssl, "VERIFY_X509_STRICT"):
        ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return ctx


def tcp(port, source):
    """A TCP socket to 127.0.0.1:port (never another address)."""
    src = (source, 0) if source else None
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=src)


def https(args, method, path, body=None, headers=None):
    """One HTTPS request to localhost:port; returns (status, headers, body)."""
    ctx = tls_context(args.cafile)
    conn = http.client.HTTPSConnection("localhost", args.port, context=ctx, timeout=TIMEOUT)
    conn.sock = ctx.wrap_socket(tcp(args.port, args.source), server_hostname="localhost")
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheaders(), data
    finally:
        conn.close()


def header(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def login(args, user, room):
    """Logs in like the page's script (or like a plain form with
    --plain-form, following the 307 of a --sharded backend). Returns the
    cookie pair."""
    room_text = f"00{room}" if getattr(args, "pad", False) else str(room)
    form = urllib.parse.urlencode({"user": user, "room": room_text})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    path = "/login" if args.plain_form else f"/login?room={room_text}"
    status, hdrs, body = https(args, "POST", path, form, headers)
    if args.plain_form:
        check(status == 307, f"plain POST /login for {user} in {room}: {status} {body!r}")
        path = header(hdrs, "Location")
        check(path == f"/login?room={room}", f"307 Location {path!r}")
        status, hdrs, body = https(args, "POST", path, form, headers)
    check(status == 303, f"login {user} to room {room}: {status} {body[:200]!r}")
    check(header(hdrs, "Location") == f"/rooms/{room}", f"login Location {header(hdrs, 'Location')!r}")
    cookie = header(hdrs, "Set-Cookie")
    check(cookie and cookie.startswith("wsrooms_session="), f"login cookie {cookie!r}")
    flags = [f.strip().lower() for f in cookie.split(";")[1:]]
    check("secure" in flags, f"the proxy must mark the session cookie Secure: {cookie!r}")
    check("httponly" in flags, f"cookie not HttpOnly: {cookie!r}")
    pair = cookie.split(";")[0]
    status, _, page = https(args, "GET", f"/rooms/{room}", headers={"Cookie": pair})
    check(status == 200 and b"<html" in page.lower(),
          f"room page {room} for {user}: {status} (did the proxy send it to another process?)")
    return pair


async def open_socket(args, room, cookie, origin=None):
    # The asyncio client: it runs TLS on one thread. (The threaded sync
    # client reads and writes one TLS session from two threads, which
    # OpenSSL does not allow; it hung now and then here.)
    origin = origin or f"https://localhost:{args.port}"
    headers = {"Cookie": cookie}
    if getattr(args, "spoof_xff", None):
        headers["X-Forwarded-For"] = args.spoof_xff
    return await connect(
        f"wss://localhost:{args.port}/rooms/{room}/ws",
        sock=tcp(args.port, args.source),
        ssl=tls_context(args.cafile),
        server_hostname="localhost",
        origin=origin,
        additional_headers=headers,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        compression=None,
    )


async def recv_event(ws, timeout=TIMEOUT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def chat_room(args, room):
    users = [u for u in args.users.split(",") if u]
    sockets = []
    try:
        for i, user in enumerate(users):
            cookie = login(args, user, room)
            ws = await open_socket(args, room, cookie)
            sockets.append((user, ws))
            welcome = await recv_event(ws)
            check(welcome.get("type") == "welcome", f"first event {welcome}")
            check(welcome.get("room") == room and welcome.get("user") == user, f"welcome {welcome}")
            present = sorted(u.lower() for u in welcome.get("users", []))
            check(present == sorted(u.lower() for u in users[: i + 1]),
                  f"{user} in room {room} sees {present}: not everyone of the room is on one process")
        if args.idle:
            # Only the server's pings (answered by the client library) cross
            # the proxy meanwhile; the sockets must still be open after.
            await asyncio.sleep(args.idle)
        expected = set()
        for n in range(args.messages):
            for user, ws in sockets:
                text = f"{user} says {n} in {room}"
                expected.add((user, text))
                await ws.send(text)
        orders = []
        for user, ws in sockets:
            got = []
            deadline = time.monotonic() + TIMEOUT
            while len(got) < len(expected):
                check(time.monotonic() < deadline, f"{user} in {room}: only {len(got)} messages")
                event = await recv_event(ws)
                if event.get("type") == "message":
                    got.append((event["seq"], event["user"], event["text"]))
                else:
                    check(event.get("type") == "join", f"{user} got {event}")
            check({(u, t) for _, u, t in got} == expected, f"{user} in {room} got {got}")
            orders.append(got)
        check(all(o == orders[0] for o in orders), f"room {room}: orders differ {orders}")
        seqs = [s for s, _, _ in orders[0]]
        check(seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"seqs {seqs}")
        return len(expected)
    finally:
        for _, ws in sockets:
            await ws.close()


async def cmd_chat(args):
    rooms = [int(r) for r in args.rooms.split(",") if r]
    total = 0
    for room in rooms:
        total += await chat_room(args, room)
    return {"ok": True, "rooms": len(rooms), "messages": total}


async def cmd_bad_origin(args):
    cookie = login(args, args.user, args.room)
    try:
        ws = await open_socket(args, args.room, cookie, origin="https://evil.example")
    except InvalidStatus as e:
        status = e.response.status_code
        check(status == 403, f"foreign Origin got {status}, not 403")
        return {"ok": True, "status": status}
    await ws.close()
    raise Failed("a foreign Origin opened a room socket")


async def cmd_get(args):
    status, hdrs, body = https(args, "GET", args.path)
    return {
        "status": status,
        "headers": {k.lower(): v for k, v in hdrs},
        "body": body.decode("utf-8", "replace"),
    }


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("chat", "bad-origin", "get"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--cafile", required=True)
        s.add_argument("--source", default=None, help="local address to connect from")
        s.add_argument("--plain-form", action="store_true")
        if name == "chat":
            s.add_argument("--rooms", required=True)
            s.add_argument("--users", required=True)
            s.add_argument("--messages", type=int, default=3)
            s.add_argument("--spoof-xff", default=None)
            s.add_argument("--idle", type=float, default=0)
            s.add_argument("--pad", action="store_true")
        elif name == "get":
            s.add_argument("--path", required=True)
        else:
            s.add_argument("--room", type=int, required=True)
            s.add_argument("--user", required=True)
    args = p.parse_args()
    # A hang shows where it is: every thread's stack, then exit 1 (before
    # the Rust test's own 60 s limit).
    faulthandler.dump_traceback_later(45, exit=True)
    try:
        command = {"chat": cmd_chat, "bad-origin": cmd_bad_origin, "get": cmd_get}[args.cmd]
        result = asyncio.run(command(args))
    except Failed as e:
        print(f"proxy_chat: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
