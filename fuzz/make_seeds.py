"""Writes the hand-made seed corpus (fuzz/corpus/<target>/seed-*).

Run from fuzz/: python3 make_seeds.py. Each file starts with the target's
control bytes (see the `//!` doc of each target), then the input.
"""

import os
import struct

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(fin, opcode, payload, mask=MASK, rsv=0, masked=True):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def close(code, reason=b""):
    return frame(True, 8, struct.pack(">H", code) + reason)


def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


CTL = bytes([64, 64, 0])  # limits 381 / 1149 bytes, whole pieces

frames = {
    "rfc-hello": bytes.fromhex("818537fa213d7f9f4d5158"),
    "text": frame(True, 1, "안녕 κόσμε 🎉".encode()),
    "binary-126": frame(True, 2, bytes(range(126))),
    "fragmented-with-ping": frame(False, 1, "€".encode()[:1])
    + frame(True, 9, b"ping")
    + frame(False, 0, "€".encode()[1:])
    + frame(True, 10, b"")
    + frame(True, 0, b"!"),
    "binary-fragments": frame(False, 2, b"ab") + frame(False, 0, b"") + frame(True, 0, b"cd"),
    "close-normal": close(1000, "bye 👋".encode()),
    "close-empty": frame(True, 8, b""),
    "close-1byte": frame(True, 8, b"\x03"),
    "close-1005": close(1005),
    "close-bad-reason": close(1000, b"\xff"),
    "unmasked": frame(True, 1, b"hi", masked=False),
    "rsv1": frame(True, 1, b"hi", rsv=0x40),
    "opcode-3": frame(True, 3, b""),
    "ping-126": frame(True, 9, bytes(126)),
    "ping-fragmented": frame(False, 9, b"p"),
    "continuation-alone": frame(True, 0, b"x"),
    "text-in-text": frame(False, 1, b"a") + frame(True, 1, b"b"),
    "utf8-fail-fast": frame(False, 1, b"ok\xed\xa0"),
    "utf8-truncated": frame(True, 1, b"\xe2\x82"),
    "len16-nonminimal": bytes([0x82, 0xFE, 0, 5]) + MASK + bytes(5),
    "len64-topbit": bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1]) + MASK + b"x",
    "len64-big": bytes([0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0]) + MASK,
    "frame-over-limit": frame(True, 2, bytes(400)),
    "message-over-limit": frame(False, 2, bytes(380)) * 1 + frame(False, 0, bytes(380)) * 3,
}
for name, data in frames.items():
    write("frame_reader", name, CTL + data)
write("frame_reader", "bytewise-pieces", bytes([0, 0, 0]) + frames["fragmented-with-ping"])

utf8 = {
    "ascii": b"hello",
    "mixed": "aé한🎉κόσμε".encode(),
    "kosme-surrogate": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    "overlong": b"\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf",
    "max": b"\xf4\x8f\xbf\xbf",
    "above-max": b"\xf4\x90\x80\x80",
    "truncated": b"ok\xe2\x82",
    "boundaries": b"\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80",
}
for i, (name, data) in enumerate(utf8.items()):
    write("utf8", name, bytes([i]) + data)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
heads = {
    "upgrade": b"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: x, chat\r\n\r\n",
    "room-upgrade": b"GET /rooms/5/ws?since=3 HTTP/1.1\r\nHost: a\r\nOrigin: http://a\r\nCookie: a=b; wsrooms_session=0123456789abcdef0123456789abcdef\r\n"
    b"Upgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "login": b"POST /login?room=7 HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 19\r\n\r\nuser=%EA%B0%80&room=7",
    "bare-lf": b"GET / HTTP/1.0\nConnection: keep-alive\n\n",
    "pipelined": b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "chunked": b"POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "two-lengths": b"POST /login HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "long-line": b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n",
    "no-end": b"GET / HTTP/1.1\r\nX: " + b"y" * 200,
    "garbage": b"\x00\xff\r\n\r\n",
    "empty-lines-first": b"\r\n\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    "only-empty-lines": b"\r\n" * 40 + b"\n" * 40,
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
}
for name, data in heads.items():
    write("http_head", name, bytes([255, 64, 7]) + data)

# http_pipeline: head limit 1056, line limit 528, body limit 128; seeds for
# the read sizes and pauses.
pipelines = {
    "metrics-x20": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20,
    "rooms-and-login": b"".join(b"GET /rooms/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(1, 9))
    + heads["login"]
    + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "upgrade-then-frames": heads["upgrade"] + frames["text"] + frames["close-normal"],
    "body-cut": heads["login"][:-5],
    "then-garbage": heads["pipelined"] + heads["garbage"],
    "then-too-large": heads["pipelined"] + heads["two-lengths"],
}
for i, (name, data) in enumerate(pipelines.items()):
    write("http_pipeline", name, bytes([64, 64, 32, i, 7 * i + 1]) + data)

# The user_id target takes the text alone: ids of many scripts, look-alikes,
# and each kind of refused character.
user_ids = {
    "latin": "alice",
    "spaces": "  Straße  ",
    "fullwidth": "ＡＬＩＣＥ",
    "cyrillic-a": "\u0430lice",
    "hindi": "कृष्ण",
    "hindi-2": "अर्जुन",
    "kannada": "ಕನ್ನಡ",
    "khmer": "ខ្មែរ",
    "burmese": "မြန်မာ",
    "thai": "สมศักดิ์",
    "arabic": "مُحَمَّد",
    "hebrew": "שָׁלוֹם",
    "han-hangul": "张伟_김철수",
    "jamo": "\u1100\u1161\u1102\u1161",
    "combining-acute": "e\u0301" * 16,
    "too-long": "e\u0301" * 16 + "e",
    "ligature": "\ufdfa" * 32,
    "hangul-filler": "alice\u3164",
    "zwj": "ali\u200dce",
    "variation-selector": "a\ufe0f\U000e0100",
    "cgj": "a\u034f",
    "bidi": "ali\u202ece\u2066",
    "control": "a\u0000\u0085\u009f",
    "format": "\u0600a\U000e0001",
    "stray-marks": "\u0301e_\u094d.\u17d2",
    "symbols": "a b@😀",
    "capital-i-zero": "aIice_B0B_Il_0O",
    "vv-dot": "vvill_ali\u0307ce",
    "kannada-zero": "\u0ce6",
    "rtl-digits": "\u05d012_\u0628\u0661",
    "rtl-order": "ab\u05d0\u05d1-\u05d1-\u05d0",
    "khitan-filler": "a\U00016fe4b",
    "low-line": "alice\u0332",
    "mark-tower": "a" + "\u0301" * 31,
    "five-marks": "a\u0300\u0301\u0302\u0303\u0304",
    "lone-jamo": "\u314b\u314b\u314b",
    "insular-d": "\ua779\ua77a",
}
for name, text in user_ids.items():
    write("user_id", name, text.encode())

# chat_command: wsrooms.v2 frames, good and bad.
commands = {
    "say": b'{"type":"say","text":"hi\\nthere"}',
    "edit": b'{"seq":17,"type":"edit","text":"fixed"}',
    "delete": b'{"type":"delete","seq":3}',
    "typing": b'{"type":"typing"}',
    "extra-field": b'{"type":"typing","user":"bob"}',
    "twice": b'{"type":"say","text":"a","text":"b"}',
    "seq-string": b'{"type":"delete","seq":"3"}',
    "seq-float": b'{"type":"delete","seq":3.0}',
    "not-object": b'["say","hi"]',
    "trailing": b'{"type":"typing"} x',
    "escapes": b'{"type":"say","text":"\\u00e9\\ud83d\\ude00\\"<"}',
}
for name, data in commands.items():
    write("chat_command", name, data)

# conn_machine: control bytes (event seed, role 0 chat / 1 echo / 2 v2 chat, frame
# limit 16 + 4 * n), then a client's whole conversation: an upgrade and
# frames, pipelined requests, a refused request.
UPGRADE = (
    b"GET /rooms/5/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
conversations = {
    "chat-then-close": (0, UPGRADE + frame(True, 1, b"hello") + frame(True, 9, b"p")
                        + frame(True, 10, b"") + close(1000, b"bye")),
    "echo-fragments": (1, UPGRADE + frame(False, 1, "€".encode()[:1])
                       + frame(True, 0, "€".encode()[1:]) + frame(True, 2, bytes(40))),
    "chat-rate": (0, UPGRADE + frame(True, 1, b"a") * 8),
    "chat-binary": (0, UPGRADE + frame(True, 2, b"\x00")),
    "protocol-error": (1, UPGRADE + frame(True, 1, b"hi", masked=False) + frame(True, 1, b"x")),
    "pipelined": (0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                  + b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
                  + b"GET /c HTTP/1.0\r\n\r\nGET /d HTTP/1.1\r\n\r\n"),
    "refused": (0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nnot http\r\n\r\n"),
    "v2-commands": (2, UPGRADE + frame(True, 1, b'{"type":"say","text":"hi"}')
                    + frame(True, 1, b'{"type":"typing"}') + frame(True, 1, b'{"type":"x"}')),
}
for i, (name, (role, data)) in enumerate(conversations.items()):
    write("conn_machine", name, bytes([17 * i + 3, role, 60]) + data)
