// Helpers for the browser tests: the server binary as a child process, a
// small TCP proxy that can cut connections, and Chromium via playwright-core.
//
// Everything listens on 127.0.0.1 only, and every wait has a time limit.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

/** How long one wait in a test may take (ms). */
export const WAIT_MS = 20000;

export const SHOTS_DIR = process.env.WSROOMS_SHOTS_DIR || path.join(repo, 'target', 'browser-shots');

/** The server binary: WSROOMS_BIN, else the release or debug build. */
export function serverBinary() {
  const candidates = [
    process.env.WSROOMS_BIN,
    path.join(repo, 'target', 'release', 'wsrooms'),
    path.join(repo, 'target', 'debug', 'wsrooms'),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error('no wsrooms binary: set WSROOMS_BIN or run cargo build');
  }
  return found;
}

export function chromiumPath() {
  if (process.env.CHROMIUM_PATH) {
    return process.env.CHROMIUM_PATH;
  }
  return '/usr/bin/chromium';
}

// ------------------------------------------------------------------ server

/**
 * Runs the server binary on 127.0.0.1 (`port` 0 = any free port) and
 * resolves once it printed `wsrooms listening on http://ADDR`.
 */
export async function startServer({ port = 0, args = [] } = {}) {
  const bin = serverBinary();
  const deadline = Date.now() + WAIT_MS;
  // Restarting on the same port right after a stop can briefly fail to bind:
  // try again until the deadline.
  for (;;) {
    try {
      return await startOnce(bin, port, args);
    } catch (err) {
      if (port === 0 || Date.now() > deadline) {
        throw err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function startOnce(bin, port, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--bind', `127.0.0.1:${port}`, '--log-level', 'warn', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start in time; stderr: ${err}`));
    }, WAIT_MS);
    child.stderr.on('data', (d) => {
      err += d;
      if (process.env.WSROOMS_BROWSER_VERBOSE) process.stderr.write(d);
    });
    child.stdout.on('data', (d) => {
      out += d;
      const m = /wsrooms listening on http:\/\/(\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        const addr = m[1];
        const server = {
          child,
          addr,
          port: Number(addr.split(':').pop()),
          url: `http://${addr}`,
          stderr: () => err,
          exited: new Promise((res) => child.once('exit', (code, signal) => res({ code, signal }))),
        };
        resolve(server);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (${code ?? signal}); stderr: ${err}`));
    });
  });
}

/**
 * A fresh directory for a server's `--data-file`: `{ file, remove() }`.
 * The file itself is left for the server to create.
 */
export function tempDataFile() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wsrooms-browser-'));
  return {
    file: path.join(dir, 'rooms.sqlite'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Runs the binary with `args` as a command (`backup`, `restore`), not as a
 * server: resolves to `{ code, stdout, stderr }` (killed after WAIT_MS).
 */
export function runWsrooms(args) {
  return new Promise((resolve) => {
    execFile(serverBinary(), args, { timeout: WAIT_MS }, (error, stdout, stderr) => {
      const code = error === null ? 0 : (Number.isInteger(error.code) ? error.code : `killed (${error.signal})`);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Stops the server with `signal` (SIGTERM: graceful, 1001 to every socket). */
export async function stopServer(server, signal = 'SIGTERM') {
  if (server.child.exitCode !== null || server.child.signalCode !== null) {
    return;
  }
  server.child.kill(signal);
  const result = await withTimeout(server.exited, WAIT_MS, 'server did not exit');
  return result;
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} (after ${ms} ms)`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A port on 127.0.0.1 that was free a moment ago (for --admin-bind). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * A request to the operator API at 127.0.0.1:`port`: a POST (with the
 * `Wsrooms-Admin: yes` header and `form` as its body) or, without `form`,
 * a GET. Resolves to `{ status, body }` (body parsed as JSON when it is).
 */
export async function admin(port, path, form) {
  const init = form === undefined ? {} : {
    method: 'POST',
    headers: { 'Wsrooms-Admin': 'yes', 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  };
  const res = await withTimeout(fetch(`http://127.0.0.1:${port}${path}`, init), WAIT_MS, `admin ${path}`);
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch (err) {
    // not JSON: kept as text
  }
  return { status: res.status, body };
}

// ------------------------------------------------------------------ proxy

/**
 * A TCP proxy on 127.0.0.1 to `target` port. `cut()` resets every open
 * connection (the browser sees the socket die without a close frame: 1006)
 * and refuses new ones until `restore()`.
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  let blocked = false;
  const server = net.createServer((client) => {
    if (blocked) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    open: () => pairs.size,
    cut() {
      blocked = true;
      for (const { client, upstream } of [...pairs]) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    restore() {
      blocked = false;
    },
    close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

// ------------------------------------------------------------------ browser

export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    timeout: WAIT_MS * 2,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/**
 * Console messages that are expected while servers stop, logins are
 * refused or sockets are cut: network errors, not page bugs.
 */
const EXPECTED_CONSOLE = [
  /^Failed to load resource: the server responded with a status of (400|403|409)/,
  /^Failed to load resource: net::ERR_/,
  /^WebSocket connection to '.*' failed/,
];

/**
 * A new browser context whose pages record console errors, uncaught
 * exceptions, CSP violations and dialogs; `check()` throws if any
 * unexpected one happened.
 */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  const problems = [];
  const dialogs = [];
  // Runs before any page script, outside the page's CSP (DevTools injects it).
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  context.on('page', (page) => watchPage(page, problems, dialogs));
  context.problems = problems;
  context.dialogs = dialogs;
  /** Throws if a page logged an unexpected error, violated the CSP or opened a dialog. */
  context.check = async () => {
    for (const page of context.pages()) {
      if (page.isClosed()) continue;
      const csp = await page.evaluate(() => window.__cspViolations || []).catch(() => []);
      for (const v of csp) problems.push(`CSP violation on ${page.url()}: ${v}`);
    }
    const all = [...problems, ...dialogs.map((d) => `dialog opened: ${d}`)];
    problems.length = 0;
    dialogs.length = 0;
    if (all.length) {
      throw new Error('page problems:\n  ' + all.join('\n  '));
    }
  };
  return context;
}

function watchPage(page, problems, dialogs) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const text = msg.text();
    if (msg.type() === 'warning' && !/Content.Security.Policy|Refused/i.test(text)) return;
    if (EXPECTED_CONSOLE.some((re) => re.test(text))) return;
    problems.push(`console ${msg.type()} on ${page.url()}: ${text} [${msg.location()?.url || ''}]`);
  });
  page.on('pageerror', (err) => problems.push(`uncaught exception on ${page.url()}: ${err.message}`));
  page.on('dialog', async (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
}

// ------------------------------------------------------------------ page actions

/** The login page of `base`, optionally with ?room=. */
export async function openLogin(page, base, room) {
  const res = await page.goto(room === undefined ? `${base}/` : `${base}/?room=${room}`);
  return res;
}

/** Logs in through the login page and waits until the room socket is open. */
export async function login(page, base, user, room) {
  await openLogin(page, base);
  await page.fill('#user', user);
  await page.fill('#room', String(room));
  await page.click('#submit');
  await page.waitForURL(`${base}/rooms/${room}`);
  await waitState(page, 'connected');
}

export async function waitState(page, state, timeout = WAIT_MS) {
  await page.waitForSelector(`#state[data-state="${state}"]`, { timeout });
  // The visible word must be the same as the attribute.
  const text = await page.textContent('#state');
  if (text.trim() !== state) {
    throw new Error(`#state says ${JSON.stringify(text)} but data-state is ${state}`);
  }
}

/** Types `text` and presses Enter; waits until the input is cleared (sent). */
export async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => document.getElementById('text').value === '', null, { timeout: WAIT_MS });
}

/**
 * The chat messages shown, in order: `text` is what the line shows (for a
 * deleted message, its "message deleted" line); `edited` whether it is
 * marked "(edited)".
 */
export function messages(page) {
  return page.$$eval('#messages li.msg', (items) =>
    items.map((li) => ({
      seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
      user: li.querySelector('.author')?.textContent ?? '',
      text: li.querySelector('.text')?.textContent ?? '',
      own: li.classList.contains('own'),
      history: li.classList.contains('history'),
      edited: li.querySelector('.edited-mark') !== null,
      deleted: li.classList.contains('deleted'),
    })),
  );
}

/**
 * What a reader sees of each message, for comparing two pages: seq, id,
 * text (or the tombstone's words) and the "(edited)" mark.
 */
export async function messageStates(page) {
  return (await messages(page)).map((m) => [m.seq, m.user, m.text, m.edited, m.deleted]);
}

/** Waits until a message with exactly this text is shown. */
export async function waitMessage(page, text, timeout = WAIT_MS) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li.msg .text')].some((n) => n.textContent === t),
    text,
    { timeout },
  );
}

/** The ids in the presence list. */
export function presence(page) {
  return page.$$eval('#users li.user', (items) => items.map((li) => li.dataset.user));
}

export async function waitPresence(page, expected, timeout = WAIT_MS) {
  const want = [...expected].sort();
  try {
    await page.waitForFunction(
      (w) => {
        const have = [...document.querySelectorAll('#users li.user')].map((li) => li.dataset.user).sort();
        return JSON.stringify(have) === JSON.stringify(w);
      },
      want,
      { timeout },
    );
  } catch (err) {
    throw new Error(`presence list is ${JSON.stringify(await presence(page))}, expected ${JSON.stringify(want)}`);
  }
}

/**
 * Messages whose text starts with a marker `[Nd] ` or `[Nm] ` (N days or
 * minutes, signed) reach `page` with their `at` moved by that much and the
 * marker taken out of the text, live and in a welcome's history alike. The
 * server sets `at` itself, so this is how a test shows a page messages of
 * other days. The page's socket goes through Playwright's WebSocket route:
 * every other frame passes unchanged, both ways.
 */
export async function shiftTimes(page) {
  const MARK = /^\[([+-]?[0-9]+)([dm])\] /;
  const shift = (m) => {
    const match = m && m.type === 'message' && typeof m.text === 'string' ? MARK.exec(m.text) : null;
    if (match) {
      m.at += Number(match[1]) * (match[2] === 'd' ? 86400000 : 60000);
      m.text = m.text.slice(match[0].length);
    }
  };
  await page.routeWebSocket(/\/rooms\/[0-9]+\/ws/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (typeof m !== 'string') return ws.send(m);
      let event;
      try {
        event = JSON.parse(m);
      } catch (err) {
        return ws.send(m);
      }
      shift(event);
      for (const h of Array.isArray(event.history) ? event.history : []) shift(h);
      ws.send(JSON.stringify(event));
    });
  });
}

/**
 * A context option that puts the page's clock near midday, whatever the
 * time of the run: date lines and five-minute groups then do not depend on
 * a test running near midnight.
 */
export function middayTimezone() {
  const east = 12 - new Date().getUTCHours(); // -11 … 12 hours from UTC
  return east === 0 ? 'Etc/GMT' : `Etc/GMT${east > 0 ? '-' : '+'}${Math.abs(east)}`;
}

/** Makes the page believe its tab is hidden (true) or shown again (false). */
export function setHidden(page, hidden) {
  return page.evaluate((h) => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

/** The date lines of the message list, in order. */
export function dayLines(page) {
  return page.$$eval('#messages li.day', (items) => items.map((li) => li.textContent));
}

export function shotPath(name) {
  mkdirSync(SHOTS_DIR, { recursive: true });
  return path.join(SHOTS_DIR, name);
}
