// Interoperability with Node's `ws` client (issue 3): run by
// tests/protocol_node_interop.rs, or by hand against
// `wsrooms --echo --max-message-bytes 16777216`:
//
//   node tests/browser/ws_interop.mjs ws://127.0.0.1:PORT/echo
//
// (or with the URL in WSROOMS_ECHO_URL). Text and binary messages of 0 B,
// 125 B, 126 B, 64 KiB, 1 MiB and 16 MiB, whole and fragmented (text
// fragments cut in the middle of UTF-8 characters), compared by SHA-256 and
// by type; a ping with a payload; then a close with code 4001 that the server
// must echo. Exits non-zero with a message on the first failure; every step
// is bounded by a timeout.

import { createHash, randomBytes } from "node:crypto";
import WebSocket from "ws";

const URL = process.argv[2] || process.env.WSROOMS_ECHO_URL;
const SIZES = [0, 125, 126, 64 * 1024, 1 << 20, 16 << 20];
const STEP_TIMEOUT_MS = 30_000;
const TOTAL_TIMEOUT_MS = 110_000;

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

if (!URL) fail("usage: node ws_interop.mjs ws://HOST:PORT/echo");

const overall = setTimeout(
  () => fail(`not finished within ${TOTAL_TIMEOUT_MS} ms`),
  TOTAL_TIMEOUT_MS,
);
overall.unref();

const sha = (buf) => createHash("sha256").update(buf).digest("hex");

/** `n` bytes of UTF-8 with 1-, 2-, 3- and 4-byte characters. */
function textPayload(n) {
  const unit = Buffer.from("aé한🎉", "utf8"); // 1 + 2 + 3 + 4 = 10 bytes
  const out = Buffer.alloc(n, "x");
  for (let i = 0; i + unit.length <= n; i += unit.length) unit.copy(out, i);
  return out;
}

/** Rejects after `ms` with `what` in the message. */
function bounded(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const ws = new WebSocket(URL, {
  handshakeTimeout: STEP_TIMEOUT_MS,
  maxPayload: 64 << 20,
  // perMessageDeflate is offered by default; the server must decline it.
});

// Incoming messages in order, consumed one at a time.
const inbox = [];
const waiters = [];
ws.on("message", (data, isBinary) => {
  const msg = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary };
  const w = waiters.shift();
  if (w) w(msg);
  else inbox.push(msg);
});
ws.on("error", (err) => fail(`ws error: ${err.message}`));
const closed = new Promise((resolve) => {
  ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
});
let expectingClose = false;
closed.then(({ code, reason }) => {
  if (!expectingClose) fail(`server closed unexpectedly: ${code} ${reason}`);
});

function nextMessage(what) {
  const ready = inbox.shift();
  if (ready) return Promise.resolve(ready);
  return bounded(new Promise((resolve) => waiters.push(resolve)), what);
}

function sendAsync(data, opts) {
  return new Promise((resolve, reject) =>
    ws.send(data, opts, (err) => (err ? reject(err) : resolve())),
  );
}

async function checkEcho(label, payload, binary, fragmentSize) {
  if (fragmentSize === undefined) {
    await bounded(sendAsync(payload, { binary }), `send ${label}`);
  } else {
    const n = payload.length;
    let off = 0;
    do {
      const end = Math.min(off + fragmentSize, n);
      await bounded(
        sendAsync(payload.subarray(off, end), { binary, fin: end >= n }),
        `send ${label}`,
      );
      off = end;
    } while (off < n);
  }
  const got = await nextMessage(`echo of ${label}`);
  if (got.isBinary !== binary) {
    fail(`${label}: sent ${binary ? "binary" : "text"}, got ${got.isBinary ? "binary" : "text"}`);
  }
  if (got.data.length !== payload.length || sha(got.data) !== sha(payload)) {
    fail(`${label}: echoed bytes differ (sent ${payload.length} B, got ${got.data.length} B)`);
  }
  console.log(`ok ${label}`);
}

async function main() {
  await bounded(
    new Promise((resolve) => ws.once("open", resolve)),
    "opening handshake",
  );
  if (ws.extensions) fail(`server accepted an extension: ${ws.extensions}`);
  console.log(`ok open ${URL}`);

  for (const n of SIZES) {
    await checkEcho(`text ${n} B`, textPayload(n), false);
    await checkEcho(`binary ${n} B`, randomBytes(n), true);
  }

  // Fragmented: 7-byte text fragments split characters; larger ones too
  // (1 MiB + 3 is not a multiple of 10).
  await checkEcho("text 1000 B in 7 B fragments", textPayload(1000), false, 7);
  await checkEcho("binary 1000 B in 7 B fragments", randomBytes(1000), true, 7);
  const big = 16 << 20;
  await checkEcho(
    `text ${big} B in ~1048576 B fragments`,
    textPayload(big),
    false,
    (1 << 20) + 3,
  );
  await checkEcho(`binary ${big} B in ~1048576 B fragments`, randomBytes(big), true, 1 << 20);

  // Ping with a payload gets a pong with the same payload.
  const pingPayload = Buffer.from("ping-payload-\u00e9", "utf8");
  const pong = bounded(
    new Promise((resolve) => ws.once("pong", resolve)),
    "pong",
  );
  ws.ping(pingPayload);
  const pongData = await pong;
  if (!pongData.equals(pingPayload)) {
    fail(`pong payload ${pongData.toString("hex")} != ping payload ${pingPayload.toString("hex")}`);
  }
  console.log("ok ping/pong");

  // Close handshake: the server echoes the code.
  expectingClose = true;
  ws.close(4001, "bye");
  const { code } = await bounded(closed, "close handshake");
  if (code !== 4001) fail(`close: sent 4001, server answered ${code}`);
  console.log("ok close 4001");
  console.log("all ok");
  process.exit(0);
}

main().catch((err) => fail(err.message));
