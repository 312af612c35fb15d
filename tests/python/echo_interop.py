"""Interoperability with an independent client: Python's `websockets` against
wsrooms' `/echo` (run by tests/protocol_interop.rs, or by hand:
`python tests/python/echo_interop.py ws://127.0.0.1:PORT/echo` against
`wsrooms --echo --max-message-bytes 16777216`).

Text and binary messages of 0 B, 125 B, 126 B, 64 KiB, 1 MiB and 16 MiB, whole
and fragmented (websockets sends an iterable as one fragmented message), each
compared by SHA-256 and type, not only by length; then pings, a subprotocol,
and the close handshake. Exits non-zero with a message on the first mismatch.
"""

import hashlib
import inspect
import os
import sys

from websockets.sync.client import connect

SIZES = [0, 125, 126, 64 * 1024, 1 << 20, 16 << 20]
TIMEOUT = 60


def digest(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def binary_payload(n):
    return os.urandom(n)


def text_payload(n):
    """`n` bytes of UTF-8 with 1-, 2-, 3- and 4-byte characters."""
    unit = "aé한🎉"  # 1 + 2 + 3 + 4 = 10 bytes
    s = unit * (n // 10)
    return s + "x" * (n - len(s.encode("utf-8")))


def fragments(payload, size):
    """Cuts a payload into pieces of `size` (text at character boundaries)."""
    if isinstance(payload, str):
        out, piece, used = [], [], 0
        for ch in payload:
            piece.append(ch)
            used += len(ch.encode("utf-8"))
            if used >= size:
                out.append("".join(piece))
                piece, used = [], 0
        if piece or not out:
            out.append("".join(piece))
        return out
    return [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]


def open_ws(url, **extra):
    kwargs = dict(
        max_size=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        ping_interval=None,
        compression="deflate",  # offered; the server must decline it
    )
    if "proxy" in inspect.signature(connect).parameters:
        kwargs["proxy"] = None
    kwargs.update(extra)
    return connect(url, **kwargs)


def check_echo(ws, label, payload, send=None):
    ws.send(payload if send is None else send)
    got = ws.recv(timeout=TIMEOUT)
    if type(got) is not type(payload):
        fail(f"{label}: sent {type(payload).__name__}, got {type(got).__name__}")
    if digest(got) != digest(payload):
        fail(
            f"{label}: echoed bytes differ (sent {len(payload)} chars/bytes, "
            f"got {len(got)})"
        )
    print(f"ok {label}", flush=True)


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def main():
    url = sys.argv[1]
    with open_ws(url) as ws:
        if ws.response.headers.get("Sec-WebSocket-Extensions"):
            fail("the server accepted an extension")
        if ws.subprotocol is not None:
            fail(f"a subprotocol nobody offered: {ws.subprotocol}")
        for n in SIZES:
            check_echo(ws, f"binary {n} B", binary_payload(n))
            check_echo(ws, f"text {n} B", text_payload(n))
        # Fragmented sends: many frames, one message.
        for n, size in [
            (1000, 1),
            (64 * 1024, 1000),
            (1 << 20, 64),
            (4 << 20, 64),
            (4 << 20, 65536),
            (16 << 20, 1 << 20),
        ]:
            b = binary_payload(n)
            check_echo(ws, f"binary {n} B in {size} B fragments", b, fragments(b, size))
            t = text_payload(n)
            check_echo(ws, f"text {n} B in ~{size} B fragments", t, fragments(t, size))
        # Pings answered with their payload (websockets checks it).
        for payload in [b"", b"x" * 125, b"\x00\xff"]:
            ws.ping(payload).wait(TIMEOUT) or fail(f"no pong for {payload!r}")
        print("ok pings", flush=True)
        ws.close(code=4321, reason="done")
        if ws.close_code != 4321:
            fail(f"close code {ws.close_code} echoed for 4321")
        print("ok close 4321 echoed", flush=True)

    with open_ws(url, subprotocols=["superchat", "chat"]) as ws:
        if ws.subprotocol != "chat":
            fail(f"subprotocol {ws.subprotocol!r}, expected 'chat'")
        check_echo(ws, "text with subprotocol chat", "안녕")
    print("ok subprotocol chat", flush=True)
    print("all ok", flush=True)


if __name__ == "__main__":
    main()
