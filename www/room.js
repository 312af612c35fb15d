'use strict';

/*
 * wsrooms — room page.
 *
 * One WebSocket to /rooms/{room}/ws. The server sends JSON events
 * (welcome, join, leave, message, edit, delete, typing, error). The page
 * asks for the subprotocol "wsrooms.v2": when the server picks it, the page
 * sends JSON commands (say, edit, delete, typing); a server without it
 * picks "chat", offered second, and the page sends each chat message as
 * plain text (and offers no editing). When the connection drops for a reason worth retrying
 * we reconnect with exponential backoff and ask only for the events we have
 * not seen yet (?since=lastSeq), so every message is shown exactly once.
 *
 * An edit or a delete is a room event with its own seq, aimed at an earlier
 * message (its "target"): lastSeq counts them too, so a reconnect replays
 * the edits and deletes it missed, and the page ends up showing what a
 * fresh page shows (history and scrollback carry each message as it is
 * now: its current text and "edited", or "deleted" without text).
 *
 * Older messages come from GET /rooms/{room}/history?before=SEQ&limit=N
 * (JSON {"messages":[...],"more":bool}, oldest first): a page at a time when
 * the reader scrolls to the top, and, after a reconnect whose welcome says
 * some messages are no longer in the server's memory ("gap"), the missed
 * ones. Each seq is shown at most once, wherever it comes from.
 *
 * A seq names one message within one "epoch" of the server's numbering
 * (welcome.epoch). When the server's data was put back from an older copy,
 * or it runs without a data file and restarted, the epoch changes and the
 * same seqs may name other messages: the page then forgets every seq it
 * has seen and shows the room afresh.
 *
 * The server allows each session a few pages a second: a request answered
 * 429 waits the Retry-After it names and is sent again, quietly.
 *
 * Peer text is never markup: every string from the server goes into the page
 * as text nodes (textContent), and only http(s) URLs become <a> elements,
 * built here with their href checked by the URL parser.
 */

// ---------------------------------------------------------------- settings

const DEFAULT_MAX_CHARS = 2000;    // until the welcome event tells us
const DEFAULT_MAX_LINES = 40;      // likewise
const GROUP_MS = 5 * 60 * 1000;    // one sender's messages this close together share one name
const SEND_BUFFER_LIMIT = 64 * 1024; // bytes waiting in the browser before we hold back
const SEND_RETRY_MS = 100;
const BACKOFF_FIRST_MS = 500;      // 0.5 s, 1 s, 2 s, 4 s …
const BACKOFF_MAX_MS = 15000;      // … never more than 15 s
const NEAR_BOTTOM_PX = 80;         // "reading the newest messages" tolerance
const NEAR_TOP_PX = 200;           // this close to the top, older messages load
const OLDER_PAGE = 50;             // messages per scrollback request
const GAP_PAGE = 100;              // messages per request when filling a gap (the server's maximum)
const OLDER_RETRY_MS = 3000;       // after a failed load, wait this long before trying again
const THROTTLE_MIN_MS = 1000;      // a 429 is retried after its Retry-After, at least this …
const THROTTLE_MAX_MS = 60000;     // … and at most this
const SUBPROTOCOL = 'wsrooms.v2';  // JSON commands; without it, text frames are messages
const LEGACY_SUBPROTOCOL = 'chat'; // what a server without SUBPROTOCOL picks: text frames
const DEFAULT_EDIT_WINDOW_SECS = 900; // own messages may be changed this long, unless welcome says
const EDIT_MARGIN_MS = 1000;       // the page stops offering a change this much before the server would refuse
const EXPIRY_CHECK_MAX_MS = 60000; // own messages' controls are checked at least this often
const TYPING_SEND_MS = 3000;       // at most one "typing" per this while the reader types
const TYPING_SHOW_MS = 5000;       // "bob is typing…" lasts this long after his last "typing"
const NOTICE_MS = 6000;            // a refusal from the server shows this long
const PATCHES_MAX = 1000;          // edits and deletes kept for messages not (yet) on the page

// ---------------------------------------------------------------- page elements

const $ = (id) => document.getElementById(id);
const ui = {
  room: $('room'),
  me: $('me'),
  state: $('state'),
  detail: $('status-detail'),
  reconnect: $('reconnect'),
  users: $('users'),
  userCount: $('user-count'),
  log: $('log'),
  older: $('older'),
  messages: $('messages'),
  jump: $('jump'),
  form: $('composer'),
  input: $('text'),
  notify: $('notify'),
  logout: $('logout'),
  count: $('count'),
  send: $('send'),
  hint: $('composer-hint'),
  typing: $('typing'),
  statusBar: $('status-detail').parentElement,
};

// ---------------------------------------------------------------- state

const room = roomFromPath(location.pathname);
const baseTitle = room === null ? 'wsrooms' : `Room ${room} — wsrooms`;

let socket = null;        // the current WebSocket (kept after it closes, for inspection)
let state = 'connecting'; // connecting | connected | reconnecting | closed
let lastSeq = null;       // seq of the newest message shown, null before any
let oldestSeq = null;     // seq of the oldest message shown, null before any
let olderBefore = null;   // scrollback's cursor: the oldest seq a history answer held
const shown = new Set();  // seq of every message on the page
// Scrollback, one of: idle (older messages may exist), loading, waiting (a
// load failed; no retry until OLDER_RETRY_MS passed), done (none are older).
let older = 'idle';
let historyTurn = Promise.resolve(); // history requests run one after another
let epoch = null;         // the numbering's epoch, from the last welcome (a string)
let era = 0;              // bumps when the epoch changes; older history answers are dropped
let me = null;            // our own id, as the server spelled it in "welcome"
let maxChars = DEFAULT_MAX_CHARS;
let maxLines = DEFAULT_MAX_LINES;
let notifyOn = false;     // desktop notifications for mentions, asked for by the reader
let midnightTimer = null; // relabels the date lines ("Today" becomes "Yesterday")
let welcomed = false;     // has any welcome arrived yet?
let failures = 0;         // failed attempts since the last successful open
let generation = 0;       // bumps on every connect/stop, to ignore stale callbacks
let reconnectTimer = null;
let countdownTimer = null;
let sendRetryTimer = null;
let unconfirmed = [];      // texts sent on this socket whose own echo has not come back yet
let unread = 0;           // messages that arrived while the tab was hidden
let leaving = false;      // the page is being unloaded
let atBottom = true;      // was the reader at the newest message at the last scroll?
const presence = new Map(); // lower-cased id → id as displayed
let v2 = false;           // did the server pick SUBPROTOCOL for the current socket?
let editWindowMs = DEFAULT_EDIT_WINDOW_SECS * 1000;
let clockSkew = 0;        // the server's clock minus ours (ms), from the last live message
let expiryTimer = null;   // takes the edit controls off own messages whose window closed
let expiryDue = Infinity; // when expiryTimer fires
const patches = new Map(); // target seq → the newest edit or delete of a message not on the page
let lastTypingSent = 0;   // when we last sent "typing" (ms)
const typers = new Map(); // lower-cased id → { user, until } of those typing now
let typingTimer = null;
let noticeTimer = null;
let lastChanged = null;   // the seq our last edit or delete was for (an `error` is about it)

// ---------------------------------------------------------------- small helpers

/** "/rooms/42" → 42; anything else → null. */
function roomFromPath(path) {
  const match = /^\/rooms\/([0-9]{1,6})\/?$/.exec(path);
  if (!match) {
    return null;
  }
  const number = Number(match[1]);
  return number >= 1 && number <= 999999 ? number : null;
}

/** Number of Unicode code points (what the server counts), not UTF-16 units. */
function codePoints(text) {
  return [...text].length;
}

/**
 * Lines as the server counts them: every line break (LF, CR LF, CR, and
 * the other breaks Unicode says end a line) starts one.
 */
function lineCount(text) {
  return text.split(/\r\n|[\n\r\v\f\u0085\u2028\u2029]/).length;
}

/** What is sent for what is in the box: trailing spaces and blank lines go. */
function outgoing(text) {
  return text.trimEnd();
}

/** Why `text` cannot be sent whole (too many characters or lines), or null. */
function tooLong(text) {
  const used = codePoints(text);
  if (used > maxChars) {
    return `Too long: ${used} characters, the limit is ${maxChars}. Shorten it to send.`;
  }
  const lines = lineCount(text);
  if (lines > maxLines) {
    return `Too many lines: ${lines}, the limit is ${maxLines}. Shorten it to send.`;
  }
  return null;
}

/**
 * The key a mention is compared by. The server compares ids by a stronger
 * key (look-alike letters too, which needs Unicode's confusables data); the
 * page approximates it with NFKC and lower case, so "@ALICE" and fullwidth
 * "@ａｌｉｃｅ" name alice, while a look-alike spelling is not highlighted.
 */
function mentionKey(text) {
  return String(text).normalize('NFKC').toLowerCase();
}

/** Ids are unique per room ignoring case: "Alice" and "alice" are one person. */
function sameUser(a, b) {
  return typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
}

function isMe(user) {
  return me !== null && sameUser(user, me);
}

/**
 * Creates an element. Text is always set with textContent, never innerHTML,
 * so whatever a peer types ("<img src=x onerror=…>") shows literally.
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A <time> showing hours:minutes in the reader's own time zone. */
function timeEl(at) {
  const date = new Date(Number.isFinite(at) ? at : Date.now());
  const node = el('time', '', date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
  node.dateTime = date.toISOString();
  node.title = date.toLocaleString();
  return node;
}

/** Same id → same colour class (c0…c7), so authors are easy to tell apart. */
function colourClass(user) {
  let hash = 0;
  for (const ch of String(user).toLowerCase()) {
    hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  }
  return 'c' + (hash % 8);
}

// ---------------------------------------------------------------- connection state

/**
 * Shows the connection state in words. `detail` (optional) is the longer
 * explanation line; pass undefined to keep the current one.
 */
function setState(next, detail) {
  state = next;
  ui.state.textContent = next;
  ui.state.dataset.state = next;
  document.body.dataset.state = next;
  if (detail !== undefined) {
    ui.detail.textContent = detail;
  }
  const usable = next === 'connected';
  const hadFocus = document.activeElement === ui.input;
  ui.input.disabled = !usable;
  updateSendButton();
  if (usable) {
    if (hadFocus || ui.input.dataset.refocus === 'yes') {
      ui.input.focus();
    }
    delete ui.input.dataset.refocus;
  } else {
    if (hadFocus) {
      ui.input.dataset.refocus = 'yes'; // give the focus back once connected again
    }
    typers.clear(); // their `typing` events stopped coming with the socket
    renderTyping();
  }
}

/** Shows the manual button with a label, or hides it (null). */
function offerReconnect(label) {
  ui.reconnect.hidden = label === null;
  if (label !== null) {
    ui.reconnect.textContent = label;
  }
}

function clearTimers() {
  clearTimeout(reconnectTimer);
  clearInterval(countdownTimer);
  reconnectTimer = null;
  countdownTimer = null;
}

/** "(code 1008, “rate limit”)": the close code and the server's reason. */
function codeWords(code, reason) {
  return reason ? `(code ${code}, “${reason}”)` : `(code ${code})`;
}

/**
 * What a close code means for the person, and whether we try again.
 * Codes: RFC 6455 §7.4; 4000 ("replaced") and 4001 ("removed by the
 * operator") are this application's own.
 * `text` is the sentence shown when we stop; `why` the short cause shown
 * while we wait to retry. Both end with the code and the server's reason.
 */
function explainClose(code, reason) {
  const tail = codeWords(code, reason);
  switch (code) {
    case 1001: // the server is shutting down or restarting
      return { retry: true, why: `the server is restarting ${tail}` };
    case 1006: // no close frame at all: network drop, server crash, refused handshake
      return { retry: true, why: `the connection was lost ${tail}` };
    case 1011: // the server hit an unexpected error
      return { retry: true, why: `the server had an internal error ${tail}` };
    case 1012: // service restart
    case 1013: // try again later
      return { retry: true, why: `the server asked to try again later ${tail}` };
    case 1000:
      if (reason === 'logged out') {
        return { retry: false, text: `You logged out of this room ${tail}. Log in again to come back.`, login: true };
      }
      return { retry: false, text: `The server ended the connection normally ${tail}.` };
    case 1002:
      return { retry: false, text: `Disconnected: the server reported a WebSocket protocol error ${tail}.` };
    case 1003:
      return { retry: false, text: `Disconnected: the server accepts only text messages ${tail}.` };
    case 1007:
      return { retry: false, text: `Disconnected: a message was not valid UTF-8 text ${tail}.` };
    case 1009:
      return { retry: false, text: `Disconnected: a message was too big for the server ${tail}.` };
    case 1008: // policy violation; the reason says which policy
      if (reason === 'rate limit') {
        return { retry: false, text: `Disconnected: messages were sent too fast ${tail}. Wait a moment, then reconnect.` };
      }
      if (reason === 'backpressure limit') {
        return { retry: false, text: `Disconnected: this connection could not keep up with the room ${tail}. Check your network, then reconnect.` };
      }
      return { retry: false, text: `Disconnected by the server's policy ${tail}.` };
    case 4000: // the same session opened the room in another tab or window
      return {
        retry: false,
        text: `The room was opened in another tab or window, which took over ${tail}.`,
        button: 'Use this tab',
      };
    case 4001: // the operator removed this id from the room; its session is over
      return {
        retry: false,
        removed: true,
        text: `You were removed from this room by the operator ${tail}. You cannot come back for a while.`,
      };
    case 1005:
      return { retry: false, text: 'The connection was closed without a status code (code 1005).' };
    default:
      return { retry: false, text: `The connection closed ${tail}.` };
  }
}

// ---------------------------------------------------------------- connecting

function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const since = lastSeq !== null ? '?since=' + lastSeq : '';
  return scheme + location.host + '/rooms/' + room + '/ws' + since;
}

function connect() {
  clearTimers();
  stopSendRetry();
  const myGeneration = ++generation;
  const first = !welcomed && failures === 0;
  // While reconnecting, the line keeps saying why (a live region: each
  // attempt's own words would be read out every second or two).
  setState(first ? 'connecting' : 'reconnecting',
    first ? `Connecting to room ${room}…` : (state === 'reconnecting' ? undefined : 'Reconnecting…'));
  offerReconnect(null);
  ui.statusBar.classList.remove('removed');

  let ws;
  try {
    // Both offered, the first preferred. A server without SUBPROTOCOL picks
    // "chat" (plain text frames): Chromium fails a handshake in which the
    // client offered subprotocols and the server picked none.
    ws = new WebSocket(socketUrl(), [SUBPROTOCOL, LEGACY_SUBPROTOCOL]);
  } catch (err) {
    // Only a malformed URL throws here; network problems arrive as 'close'.
    setState('closed', 'Could not open a WebSocket in this browser.');
    return;
  }
  socket = ws;
  let opened = false;

  // readyState goes CONNECTING (0) → OPEN (1) → CLOSING (2) → CLOSED (3).
  ws.addEventListener('open', () => {
    if (myGeneration !== generation) return;
    opened = true;
    failures = 0; // a successful open resets the backoff
    v2 = ws.protocol === SUBPROTOCOL;
    setState('connected', '');
  });

  ws.addEventListener('message', (event) => {
    if (myGeneration !== generation) return;
    handleFrame(event.data);
  });

  // 'error' carries no detail on purpose (browsers hide it); a 'close' event
  // with the code always follows, so all the handling happens there.
  ws.addEventListener('close', (event) => {
    if (myGeneration !== generation) return;
    handleClose(event, opened, myGeneration);
  });
}

/**
 * The socket closed. event.code / event.reason come from the server's close
 * frame; 1006 means there was none (connection dropped, or never opened).
 */
function handleClose(event, opened, myGeneration) {
  stopSendRetry();
  if (leaving) {
    return;
  }
  const info = explainClose(event.code, event.reason);
  restoreUnconfirmed(event.code);

  if (!opened) {
    // The handshake failed. Maybe the server is down, maybe it no longer
    // knows our session (it restarted): ask the room page to find out.
    checkSessionThenRetry(myGeneration);
    return;
  }
  if (info.retry) {
    scheduleReconnect(info.why);
    return;
  }
  generation++; // nothing more to wait for
  setState('closed', info.text);
  if (info.removed) {
    // A banner, and no button: the server refuses this session now. We
    // are no longer in the room, so its list of who is there would only
    // go stale: it is emptied.
    ui.statusBar.classList.add('removed');
    presence.clear();
    renderPresence();
    offerReconnect(null);
    return;
  }
  if (info.login) {
    // The session is gone: reconnecting cannot work; the login page can.
    location.replace('/?room=' + room);
    return;
  }
  offerReconnect(info.button || 'Reconnect');
}

/**
 * Close 1011 ("message not stored": the server could not write it, and
 * delivered it to no one): what this socket sent and never saw come back
 * goes back into the box, if the box is empty, with a word. Any other
 * close forgets them (a reconnect's history shows what arrived).
 */
function restoreUnconfirmed(code) {
  const lost = unconfirmed;
  unconfirmed = [];
  if (code !== 1011 || lost.length === 0 || ui.input.value !== '') {
    return;
  }
  ui.input.value = lost.join('\n');
  updateCounter();
  setHint(lost.length === 1
    ? 'Your last message was not stored: it is back in the box.'
    : 'Your last messages were not stored: they are back in the box.');
}

/**
 * GET /rooms/{room} without following redirects: a 303 (seen as an
 * "opaqueredirect" response) means the server has no session for us, so
 * we go back to the login page with the room filled in.
 */
async function checkSessionThenRetry(myGeneration) {
  const again = welcomed || failures > 0;
  setState(again ? 'reconnecting' : 'connecting', again && state === 'reconnecting' ? undefined : 'Checking the session…');
  let why;
  try {
    const res = await fetch(location.pathname, { redirect: 'manual', cache: 'no-store' });
    if (myGeneration !== generation) return;
    if (res.type === 'opaqueredirect') {
      generation++;
      setState('closed', 'The server no longer knows your session (it may have restarted). ' +
        'Back to the login page to enter the room again…');
      location.replace('/?room=' + room);
      return;
    }
    // The session is fine, yet the WebSocket was refused (e.g. the server
    // is full right now): try again later.
    why = res.ok ? 'the server refused the connection (code 1006)'
      : `the server answered HTTP ${res.status} (code 1006)`;
  } catch (err) {
    // No answer at all: the server is down or the network is gone.
    if (myGeneration !== generation) return;
    why = 'the server cannot be reached (code 1006)';
  }
  scheduleReconnect(why);
}

/** Waits 0.5 s, 1 s, 2 s … 15 s (±20 % jitter, so tabs don't retry in step). */
function scheduleReconnect(why) {
  clearTimers();
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures);
  const delay = Math.min(BACKOFF_MAX_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
  failures += 1;
  const due = Date.now() + delay;

  // The cause goes to the polite live region once; the seconds left are on
  // the button, which is not announced (a screen reader heard the region
  // every second).
  const showCountdown = () => {
    const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    offerReconnect(`Reconnect now (${seconds} s)`);
  };
  setState('reconnecting');
  const line = `Reconnecting: ${why}.`;
  if (ui.detail.textContent !== line) {
    ui.detail.textContent = line; // read out when the cause changes only
  }
  showCountdown();
  countdownTimer = setInterval(showCountdown, 250);
  reconnectTimer = setTimeout(connect, delay);
}

/** The manual button: "Reconnect now" while waiting, "Reconnect" once closed. */
function onReconnectClick() {
  if (state === 'closed') {
    failures = 0;
  }
  connect();
}

// ---------------------------------------------------------------- incoming events

/** One text frame = one JSON event. Anything else is ignored. */
function handleFrame(data) {
  if (typeof data !== 'string') {
    return;
  }
  let event;
  try {
    event = JSON.parse(data);
  } catch (err) {
    return;
  }
  if (!event || typeof event !== 'object') {
    return;
  }
  switch (event.type) {
    case 'welcome': onWelcome(event); break;
    case 'join': onJoin(event); break;
    case 'leave': onLeave(event); break;
    case 'message': onMessage(event); break;
    case 'edit':
    case 'delete': onChange(event); break;
    case 'typing': onTyping(event); break;
    case 'error': onError(event); break;
    default: break; // unknown event types are for newer pages
  }
}

function onWelcome(event) {
  const renumbered = typeof event.epoch === 'string' && epoch !== null && event.epoch !== epoch;
  if (typeof event.epoch === 'string') {
    epoch = event.epoch;
  }
  if (renumbered) {
    startAfresh();
  }
  const first = !welcomed || renumbered;
  welcomed = true;

  if (typeof event.user === 'string') {
    me = event.user;
    ui.me.textContent = me;
  }
  if (Number.isInteger(event.maxChars) && event.maxChars > 0) {
    maxChars = event.maxChars;
  }
  if (Number.isInteger(event.maxLines) && event.maxLines > 0) {
    maxLines = event.maxLines;
  }
  if (Number.isInteger(event.editWindowSecs) && event.editWindowSecs >= 0) {
    editWindowMs = event.editWindowSecs * 1000;
  }
  updateCounter();

  setPresence(Array.isArray(event.users) ? event.users : []);

  // Messages, and the edits and deletes replayed after `since`.
  const history = (Array.isArray(event.history) ? event.history : [])
    .filter((m) => m && isRoomEvent(m) && isNewSeq(m.seq));
  // "gap": the server no longer has in memory all the messages after the
  // last one we saw. They go where `gapMark` is, fetched by fillGap().
  const seenUpTo = lastSeq;
  const missing = event.gap === true && seenUpTo !== null;
  let gapMark = null;

  withAutoScroll(first, () => {
    if (renumbered) {
      addSystem('The server numbers this room\'s messages anew (its data was restored or lost): showing the room afresh.');
    }
    if (history.length > 0 || missing) {
      addSeparator(first ? 'earlier messages' : 'missed while you were away');
    }
    if (missing) {
      gapMark = addSystem('loading missed messages…', undefined, 'gap-fill');
    }
    for (const item of history) {
      if (item.type === 'message') {
        addMessage(item, true);
      } else {
        applyEvent(item);
      }
    }
    addSystem(first ? `You joined room ${room}.` : 'Reconnected.', Date.now());
    return true;
  });
  if (gapMark !== null) {
    fillGap(gapMark, seenUpTo);
  }
  maybeLoadOlder(); // a short log is already at the top
  refreshActions(); // the subprotocol or the edit window may be another now

  // Ready to type right away, unless the reader is busy elsewhere on the page.
  if (first && (document.activeElement === null || document.activeElement === document.body)) {
    ui.input.focus();
  }
}

function onJoin(event) {
  if (typeof event.user !== 'string') return;
  addPresence(event.user);
  if (!isMe(event.user)) {
    withAutoScroll(false, () => addSystem(`${event.user} joined`, event.at));
  }
}

function onLeave(event) {
  if (typeof event.user !== 'string' || isMe(event.user)) return;
  removePresence(event.user);
  stopTyping(event.user);
  withAutoScroll(false, () => addSystem(`${event.user} left`, event.at));
}

function onMessage(event) {
  const own = isMe(event.user);
  if (own && unconfirmed.length > 0) {
    unconfirmed.shift(); // ours come back in the order they were sent
  }
  if (Number.isFinite(event.at)) {
    clockSkew = event.at - Date.now(); // stamped by the server a moment ago
  }
  stopTyping(event.user);
  // Our own message: always scroll to it. Others: only if we were at the bottom.
  const added = withAutoScroll(own, () => addMessage(event, false));
  if (added && !own) {
    countUnread();
    if (mentionsMe(String(event.text ?? ''))) {
      notifyMention(event);
    }
  }
}

// ---------------------------------------------------------------- presence list

function setPresence(users) {
  presence.clear();
  for (const user of users) {
    if (typeof user === 'string') {
      presence.set(user.toLowerCase(), user);
    }
  }
  if (me !== null) {
    presence.set(me.toLowerCase(), me);
  }
  renderPresence();
}

function addPresence(user) {
  presence.set(user.toLowerCase(), user);
  renderPresence();
}

function removePresence(user) {
  presence.delete(user.toLowerCase());
  renderPresence();
}

/** Redraws the list: ourselves first, then everyone else alphabetically. */
function renderPresence() {
  const names = [...presence.values()].sort((a, b) =>
    (Number(isMe(b)) - Number(isMe(a))) || a.localeCompare(b));
  ui.users.replaceChildren(...names.map(userItem));
  ui.userCount.textContent = String(names.length);
}

function userItem(user) {
  const li = el('li', 'user');
  li.dataset.user = user;
  // The initial is drawn by CSS (::before { content: attr(data-initial) }), so
  // the item's text stays just "alice (you)".
  const avatar = el('span', 'avatar ' + colourClass(user));
  avatar.dataset.initial = [...user][0].toUpperCase();
  avatar.setAttribute('aria-hidden', 'true');
  li.append(avatar, el('span', 'user-name', user));
  if (isMe(user)) {
    li.classList.add('me');
    li.append(' ', el('span', 'you', '(you)'));
  }
  return li;
}

// ---------------------------------------------------------------- message list

/**
 * The server's numbering changed epoch: the seqs we saw may now name other
 * messages. Forget them all and empty the list; the welcome's history and
 * scrollback then fill it as on a first visit. History answers still on
 * their way belong to the old numbering and are dropped (see `era`).
 */
function startAfresh() {
  era += 1;
  ui.messages.replaceChildren();
  shown.clear();
  patches.clear();
  lastSeq = null;
  oldestSeq = null;
  olderBefore = null;
  older = 'idle';
  showOlder('', '');
}

/**
 * True if a message (or an edit or delete) with this seq is news: newer than
 * any seen, and not seen yet (events without seq always are).
 */
function isNewSeq(seq) {
  return !Number.isInteger(seq) || (!shown.has(seq) && (lastSeq === null || seq > lastSeq));
}

/** Notes that the message with this seq is on the page. */
function remember(seq) {
  noteSeq(seq);
  oldestSeq = oldestSeq === null ? seq : Math.min(oldestSeq, seq);
}

/**
 * Notes that the event with this seq was seen (a message, or an edit or a
 * delete, which takes a seq of its own but no line): the next reconnect
 * asks for what came after it.
 */
function noteSeq(seq) {
  if (!Number.isInteger(seq)) {
    return;
  }
  shown.add(seq);
  lastSeq = lastSeq === null ? seq : Math.max(lastSeq, seq);
}

/** Is this one of the events a room numbers (message, edit, delete)? */
function isRoomEvent(event) {
  return event.type === 'message' || isChange(event);
}

/** An edit or a delete of an earlier message (its `target`). */
function isChange(event) {
  return (event.type === 'edit' || event.type === 'delete') && Number.isInteger(event.target);
}

/** Adds one chat message at the end; returns false if it was already shown. */
function addMessage(message, fromHistory) {
  if (!isNewSeq(message.seq)) {
    return false; // already on screen (e.g. resent after a reconnect)
  }
  const li = messageItem(message, fromHistory);
  ui.messages.append(li);
  tidy([li]);
  return true;
}

/**
 * The list item of one chat message, to be put on the page by the caller;
 * null if a message with its seq is already shown.
 */
function messageItem(message, fromHistory) {
  const user = String(message.user);
  const li = el('li', 'msg');
  if (Number.isInteger(message.seq)) {
    if (shown.has(message.seq)) {
      refreshShown(message);
      return null;
    }
    remember(message.seq);
    li.dataset.seq = String(message.seq);
  }
  if (fromHistory) {
    li.classList.add('history');
  }
  if (isMe(user)) {
    li.classList.add('own');
  }

  li.dataset.user = user;
  li.dataset.at = String(Number.isFinite(message.at) ? message.at : Date.now());

  const bubble = el('div', 'bubble');
  const meta = el('div', 'meta');
  meta.append(el('span', 'author ' + colourClass(user), user), ' ', timeEl(message.at));
  const body = el('p', 'text');
  body.dir = 'auto'; // a right-to-left message reads right to left, in its own box
  bubble.append(meta, body);
  li.append(bubble);
  if (message.deleted === true) {
    showDeleted(li, message.by);
  } else {
    showText(li, String(message.text ?? ''));
    if (Number.isFinite(message.edited)) {
      showEdited(li, message.edited, null);
    }
  }
  const patch = patches.get(message.seq);
  if (patch !== undefined) {
    patches.delete(message.seq);
    applyTo(li, patch);
  }
  syncActions(li);
  return li;
}

/** Puts `text` in the message's body (links and mentions), replacing what was there. */
function showText(li, text) {
  const body = li.querySelector('.text');
  body.replaceChildren();
  fillText(body, text);
  li.classList.toggle('mention', !isMe(li.dataset.user) && mentionsMe(text));
}

// ---------------------------------------------------------------- edits and deletes

/** The line of the message with this seq, or null when it is not on the page. */
function messageElement(seq) {
  if (!Number.isInteger(seq)) {
    return null;
  }
  return ui.messages.querySelector(`li.msg[data-seq="${seq}"]`);
}

/** A live edit or delete. */
function onChange(event) {
  if (!isChange(event) || !isNewSeq(event.seq)) {
    return; // malformed, or already seen (replayed after a reconnect)
  }
  keepInView(() => applyEvent(event));
}

/** An edit or delete (live, replayed, or from scrollback): noted, and shown on its target. */
function applyEvent(event) {
  if (!isChange(event)) {
    return;
  }
  noteSeq(event.seq);
  if (event.type === 'edit' && (typeof event.text !== 'string' || event.text === '')) {
    return; // an edit of a message deleted since: it lost its text, the delete follows
  }
  const li = messageElement(event.target);
  if (li === null) {
    keepPatch(event); // its message may come later, from scrollback
    return;
  }
  applyTo(li, event);
}

/**
 * Keeps an edit or delete whose message is not on the page (older than the
 * oldest shown, or in a gap being filled), to apply when it comes. A delete
 * stays; of two edits the newer one stays. At most PATCHES_MAX, oldest
 * dropped first.
 */
function keepPatch(event) {
  const had = patches.get(event.target);
  if (had !== undefined && (had.type === 'delete' || !(event.type === 'delete' || event.seq > had.seq))) {
    return;
  }
  patches.delete(event.target);
  patches.set(event.target, event);
  if (patches.size > PATCHES_MAX) {
    patches.delete(patches.keys().next().value);
  }
}

/**
 * Shows an edit or delete on its message's line: a deleted message stays
 * deleted (a delete replayed after its tombstone may still say who did it).
 */
function applyTo(li, event) {
  if (event.type === 'delete') {
    showDeleted(li, event.by);
    return;
  }
  if (li.classList.contains('deleted')) {
    return;
  }
  if (!Number.isFinite(event.at) || !newerEdit(li, event.at, event.seq)) {
    return; // the line already shows this edit or a later one
  }
  showText(li, event.text);
  showEdited(li, event.at, event.seq);
}

/**
 * Is an edit made at `at` (seq `seq`, or null when it came as a message's
 * "edited") newer than what the line shows?
 */
function newerEdit(li, at, seq) {
  if (li.dataset.edited === undefined) {
    return true;
  }
  const shownSeq = li.dataset.editSeq === undefined ? null : Number(li.dataset.editSeq);
  if (seq !== null && shownSeq !== null) {
    // Two edit events: their seqs say which came last (the server's clock
    // may have stepped back between them; its order did not).
    return seq > shownSeq;
  }
  const shownAt = Number(li.dataset.edited);
  if (at !== shownAt) {
    return at > shownAt;
  }
  return seq !== null && shownSeq === null;
}

/** "(edited)" by the time, with when in its tooltip. */
function showEdited(li, at, seq) {
  li.classList.add('edited');
  li.dataset.edited = String(at);
  if (seq !== null) {
    li.dataset.editSeq = String(seq);
  } else {
    delete li.dataset.editSeq;
  }
  let mark = li.querySelector('.edited-mark');
  if (mark === null) {
    mark = el('span', 'edited-mark', '(edited)');
    li.querySelector('.meta time').after(' ', mark);
  }
  mark.title = `edited ${new Date(at).toLocaleString()}`;
}

/**
 * The message is gone: its text leaves the page, a grey line says so (who
 * did it when that is known: `by` null is the operator; a tombstone from
 * history does not say, and a later word from a delete event stays).
 */
function showDeleted(li, by) {
  const body = li.querySelector('.text');
  if (li.classList.contains('deleted')) {
    if (by === null) {
      body.textContent = 'message deleted by the operator';
    }
    return;
  }
  closeEditor(li);
  li.classList.add('deleted');
  li.classList.remove('mention', 'edited');
  li.querySelector('.edited-mark')?.remove();
  li.querySelector('.actions')?.remove();
  delete li.dataset.edited;
  delete li.dataset.editSeq;
  body.classList.add('tombstone');
  body.replaceChildren(by === null ? 'message deleted by the operator' : 'message deleted');
}

/**
 * A message already on the page came again (scrollback, a gap filled): it
 * carries its state as it is now; show that if it is newer.
 */
function refreshShown(message) {
  const li = messageElement(message.seq);
  if (li === null || li.classList.contains('deleted')) {
    return;
  }
  if (message.deleted === true) {
    showDeleted(li, message.by);
  } else if (Number.isFinite(message.edited) && newerEdit(li, message.edited, null)) {
    showText(li, String(message.text ?? ''));
    showEdited(li, message.edited, null);
  }
}

// ---------------------------------------------------------------- changing own messages

/** The server's clock now, as far as we can tell. */
function serverNow() {
  return Date.now() + clockSkew;
}

/** Until when (server clock) the page offers to change this line; -Infinity if never. */
function changeableUntil(li) {
  if (!v2 || !li.classList.contains('own') || li.classList.contains('deleted') || li.dataset.seq === undefined) {
    return -Infinity;
  }
  return Number(li.dataset.at) + editWindowMs - EDIT_MARGIN_MS;
}

/**
 * Gives an own message its "Edit" and "Delete" buttons while it may be
 * changed, and takes them away after. Plans the next check.
 */
function syncActions(li) {
  const until = changeableUntil(li);
  const open = until > serverNow();
  const actions = li.querySelector('.actions');
  if (open && actions === null) {
    li.querySelector('.meta').append(actionButtons(li));
  } else if (!open && actions !== null) {
    const hadFocus = actions.contains(document.activeElement);
    actions.remove();
    if (hadFocus) {
      ui.input.focus();
    }
  }
  if (open) {
    planExpiry(until);
  }
}

/** Checks every own message's buttons again (the window, the subprotocol). */
function refreshActions() {
  clearTimeout(expiryTimer);
  expiryTimer = null;
  expiryDue = Infinity;
  for (const li of ui.messages.querySelectorAll('li.msg.own')) {
    syncActions(li);
  }
}

/** Makes sure refreshActions() runs by `until` (server clock). */
function planExpiry(until) {
  const due = Math.min(until, serverNow() + EXPIRY_CHECK_MAX_MS);
  if (due >= expiryDue) {
    return;
  }
  clearTimeout(expiryTimer);
  expiryDue = due;
  expiryTimer = setTimeout(refreshActions, Math.max(0, due - serverNow()) + 50);
}

/** A small button of a message line. */
function actionButton(label, title, onClick) {
  const button = el('button', 'msg-action', label);
  button.type = 'button';
  button.title = title;
  button.addEventListener('click', onClick);
  return button;
}

/** "Edit" and "Delete" for one own message. */
function actionButtons(li) {
  const box = el('span', 'actions');
  box.append(
    actionButton('Edit', 'Edit this message (or press ↑ in an empty message box)', () => startEdit(li)),
    actionButton('Delete', 'Delete this message', () => askDelete(li)),
  );
  return box;
}

/** The message's own buttons back, in place of a question. */
function restoreActions(li) {
  const box = li.querySelector('.actions');
  if (box !== null) {
    box.replaceWith(actionButtons(li));
  }
}

/** Sends a JSON command (subprotocol only); false when it could not go now. */
function sendCommand(command) {
  if (!v2 || !socket || socket.readyState !== WebSocket.OPEN) {
    return false;
  }
  socket.send(JSON.stringify(wellFormed(command)));
  if (command.type === 'edit' || command.type === 'delete') {
    lastChanged = command.seq;
  }
  return true;
}

/** "Delete this message? [Delete] [Keep]" in place of the buttons; Keep has the focus. */
function askDelete(li) {
  const box = li.querySelector('.actions');
  if (box === null) {
    return;
  }
  const question = el('span', 'actions confirm');
  const keep = actionButton('Keep', 'Keep this message', () => {
    restoreActions(li);
    li.querySelector('.actions .msg-action')?.focus();
  });
  const yes = actionButton('Delete', 'Delete this message for everyone', () => {
    if (!sendCommand({ type: 'delete', seq: Number(li.dataset.seq) })) {
      showNotice('Not connected: the message was not deleted.');
    }
    restoreActions(li);
    ui.input.focus();
  });
  yes.classList.add('danger');
  question.append(el('span', 'confirm-text', 'Delete this message?'), yes, keep);
  question.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      keep.click();
    }
  });
  box.replaceWith(question);
  keep.focus();
}

/** The message being edited, or null. */
function editingItem() {
  return ui.messages.querySelector('li.msg.editing');
}

/**
 * Opens the in-place editor on an own message: a box with its text, Enter
 * (or Save) saves, Esc (or Cancel) cancels. One at a time.
 */
function startEdit(li) {
  const open = editingItem();
  if (open !== null) {
    closeEditor(open);
  }
  const body = li.querySelector('.text');
  const id = `edit-help-${li.dataset.seq}`;
  const box = el('textarea', 'edit-box');
  box.value = body.textContent;
  box.rows = 1;
  box.dir = 'auto';
  box.setAttribute('aria-label', 'Edit your message');
  box.setAttribute('aria-describedby', id);
  const help = el('span', 'edit-help', 'Enter saves · Esc cancels');
  help.id = id;
  help.setAttribute('aria-live', 'polite');
  const bar = el('div', 'edit-bar');
  bar.append(
    actionButton('Save', 'Save the change', () => saveEdit(li)),
    actionButton('Cancel', 'Keep the message as it was', () => cancelEdit(li)),
    help,
  );
  body.hidden = true;
  body.after(box, bar);
  li.classList.add('editing');
  box.addEventListener('keydown', (event) => onEditKey(event, li));
  box.addEventListener('input', () => {
    const problem = tooLong(outgoing(box.value));
    help.textContent = problem ?? 'Enter saves · Esc cancels';
    help.classList.toggle('warn', problem !== null);
    growBox(box);
  });
  keepInView(() => growBox(box));
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
}

function onEditKey(event, li) {
  if (event.key === 'Escape') {
    event.preventDefault();
    cancelEdit(li);
  } else if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    saveEdit(li);
  }
}

/**
 * Sends the edit (the text changes on the page when the server's `edit`
 * event comes back) and closes the editor; the focus goes back to the
 * message box. Nothing is sent for unchanged text.
 */
function saveEdit(li) {
  const box = li.querySelector('.edit-box');
  const help = li.querySelector('.edit-help');
  const text = outgoing(box.value);
  const problem = text.trim() === '' ? 'An empty message cannot be saved: use Delete to remove it.' : tooLong(text);
  if (problem !== null) {
    help.textContent = problem;
    help.classList.add('warn');
    return;
  }
  if (text !== li.querySelector('.text').textContent) {
    if (!sendCommand({ type: 'edit', seq: Number(li.dataset.seq), text })) {
      help.textContent = 'Not connected: your change stays here until you can save it.';
      help.classList.add('warn');
      return;
    }
  }
  closeEditor(li);
  ui.input.focus();
}

/** Closes the editor unchanged; the focus goes back to the message's Edit button. */
function cancelEdit(li) {
  closeEditor(li);
  const edit = li.querySelector('.actions .msg-action');
  (edit ?? ui.input).focus();
}

/**
 * Takes the editor off a line (if it has one) and shows its text again.
 * If the focus was in it, it goes to the message box (callers that know
 * better move it on).
 */
function closeEditor(li) {
  if (!li.classList.contains('editing')) {
    return;
  }
  if (li.contains(document.activeElement)) {
    ui.input.focus();
  }
  li.querySelector('.edit-box')?.remove();
  li.querySelector('.edit-bar')?.remove();
  li.querySelector('.text').hidden = false;
  li.classList.remove('editing');
}

/** ↑ in the empty message box: edit the newest own message that may still be changed. */
function editLast() {
  const own = [...ui.messages.querySelectorAll('li.msg.own .actions')];
  const li = own.length === 0 ? null : own.at(-1).closest('li.msg');
  if (li === null) {
    return false;
  }
  startEdit(li);
  return true;
}

// ---------------------------------------------------------------- typing

/** Tells the others we type: at most once per TYPING_SEND_MS, never for an empty box. */
function maybeSendTyping() {
  const now = Date.now();
  if (state !== 'connected' || outgoing(ui.input.value).trim() === '' || now - lastTypingSent < TYPING_SEND_MS) {
    return;
  }
  if (sendCommand({ type: 'typing' })) {
    lastTypingSent = now;
  }
}

/** Someone types: shown for TYPING_SHOW_MS after their last `typing`. */
function onTyping(event) {
  if (typeof event.user !== 'string' || isMe(event.user)) {
    return;
  }
  typers.set(event.user.toLowerCase(), { user: event.user, until: Date.now() + TYPING_SHOW_MS });
  renderTyping();
}

/** They sent their message (or left): no longer typing. */
function stopTyping(user) {
  if (typeof user === 'string' && typers.delete(user.toLowerCase())) {
    renderTyping();
  }
}

/** "bob is typing…", "bob and carol are typing…", "bob, carol and dave are typing…". */
function typingText(names) {
  if (names.length === 0) {
    return '';
  }
  if (names.length === 1) {
    return `${names[0]} is typing…`;
  }
  if (names.length > 3) {
    return 'Several people are typing…';
  }
  return `${names.slice(0, -1).join(', ')} and ${names.at(-1)} are typing…`;
}

/** Redraws the typing line, dropping who stopped, and plans the next redraw. */
function renderTyping() {
  clearTimeout(typingTimer);
  typingTimer = null;
  const now = Date.now();
  for (const [key, typer] of typers) {
    if (typer.until <= now) {
      typers.delete(key);
    }
  }
  const names = [...typers.values()].map((t) => t.user).sort((a, b) => a.localeCompare(b));
  const text = typingText(names);
  if (ui.typing.textContent !== text) {
    ui.typing.textContent = text;
  }
  if (typers.size > 0) {
    const next = Math.min(...[...typers.values()].map((t) => t.until));
    typingTimer = setTimeout(renderTyping, next - now + 10);
  }
}

// ---------------------------------------------------------------- notices

/** The server's reasons for refusing a change, in words; others are shown as they come. */
const REFUSALS = {
  'too late': 'the time to change that message is over',
  'not yours': 'that message is not yours',
  'deleted': 'that message was deleted',
  'no such message': 'that message is no longer kept',
  'empty': 'a message cannot be empty',
};

/** The server refused a command (an edit too late, a message not ours…). */
function onError(event) {
  const reason = typeof event.reason === 'string' && event.reason !== '' ? event.reason : 'no reason given';
  const words = Object.hasOwn(REFUSALS, reason) ? REFUSALS[reason] : reason;
  showNotice(`The server refused that: ${words}.`);
  if (reason === 'too late') {
    learnWindow(messageElement(lastChanged));
  }
  refreshActions();
}

/**
 * A change of `li` came too late: the server's window is shorter than the
 * page thought (a server whose welcome does not say it). No longer offer
 * changes of messages as old as this one.
 */
function learnWindow(li) {
  if (li === null) {
    return;
  }
  const age = serverNow() - Number(li.dataset.at);
  if (age >= 0 && age < editWindowMs) {
    editWindowMs = Math.max(0, Math.floor(age));
  }
}

/** A short line under the message box, gone after NOTICE_MS or at the next keystroke. */
function showNotice(text) {
  setHint(text, true);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    if (ui.hint.textContent === text) {
      setHint('');
    }
  }, NOTICE_MS);
}

// ---------------------------------------------------------------- message text: links and mentions

// An http(s) URL: up to a space, a control, a quote or angle bracket, or a
// bidi control or invisible character (which could make a link read as
// another address). Trailing punctuation is trimmed by trimUrl().
const URL_RE = /\bhttps?:\/\/[^\s<>"\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]+/giu;
// "@" and an id (letters, digits, marks, _ - .), not inside a word or an address.
const MENTION_RE = /(^|[^\p{L}\p{N}\p{M}_.@-])@([\p{L}\p{N}\p{M}_.-]{1,64})/gu;
const CLOSERS = { ')': '(', ']': '[', '}': '{' };

/** The URL without the punctuation that ends the sentence around it. */
function trimUrl(url) {
  for (;;) {
    const last = url.at(-1);
    const opener = CLOSERS[last];
    const unbalanced = opener !== undefined && url.split(last).length > url.split(opener).length;
    if (!'.,;:!?\'*'.includes(last) && !unbalanced) {
      return url;
    }
    url = url.slice(0, -1);
  }
}

/** The href of a URL the parser accepts as http(s) with a host, else null. */
function safeHref(text) {
  let url;
  try {
    url = new URL(text);
  } catch (err) {
    return null;
  }
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '' ? url.href : null;
}

/**
 * Puts `text` into `node`: text nodes, <a> for http(s) URLs (new tab,
 * no referrer, no opener, nofollow) and <mark> for a mention of the reader.
 * Nothing in the text is ever parsed as HTML.
 */
function fillText(node, text) {
  let done = 0;
  for (const match of text.matchAll(URL_RE)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (href === null) {
      continue;
    }
    appendWithMentions(node, text.slice(done, match.index));
    const link = el('a', 'link', url);
    link.href = href;
    link.rel = 'noopener noreferrer nofollow';
    link.target = '_blank';
    link.dir = 'ltr'; // a URL reads left to right, even inside right-to-left text
    node.append(link);
    done = match.index + url.length;
  }
  appendWithMentions(node, text.slice(done));
}

/** Appends plain text, with every "@me" in a <mark>. */
function appendWithMentions(node, text) {
  let done = 0;
  for (const match of text.matchAll(MENTION_RE)) {
    const at = match.index + match[1].length;
    const name = namedId(match[2]);
    if (name === null) {
      continue;
    }
    node.append(text.slice(done, at));
    node.append(el('mark', 'mention-name', '@' + name));
    done = at + 1 + name.length;
  }
  node.append(text.slice(done));
}

/**
 * The part of `word` (what follows an "@") that names the reader, or null:
 * the whole word, or the word without the dots, dashes or underscores that
 * end a sentence ("@bob." names bob).
 */
function namedId(word) {
  if (me === null) {
    return null;
  }
  const mine = mentionKey(me);
  const trimmed = word.replace(/[._-]+$/u, '');
  for (const candidate of [word, trimmed]) {
    if (candidate !== '' && mentionKey(candidate) === mine) {
      return candidate;
    }
  }
  return null;
}

/** Does this text mention the reader (@id)? */
function mentionsMe(text) {
  for (const match of text.matchAll(MENTION_RE)) {
    if (namedId(match[2]) !== null) {
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------- date lines and grouping

/** The local calendar day of a time, as a string to compare. */
function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** "Today", "Yesterday", or the date ("Monday, 3 March", with the year if not this one). */
function dayLabel(ms) {
  const now = new Date();
  if (dayKey(ms) === dayKey(now.getTime())) {
    return 'Today';
  }
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1, 12);
  if (dayKey(ms) === dayKey(yesterday.getTime())) {
    return 'Yesterday';
  }
  const date = new Date(ms);
  const options = { weekday: 'long', month: 'long', day: 'numeric' };
  if (date.getFullYear() !== now.getFullYear()) {
    options.year = 'numeric';
  }
  return date.toLocaleDateString([], options);
}

function daySeparator(ms) {
  const li = el('li', 'system separator day');
  li.dataset.day = String(ms);
  li.append(el('span', '', dayLabel(ms)));
  return li;
}

/** The nearest line before (or after) `item` that has a time, or null. */
function datedSibling(item, forward) {
  let next = forward ? item.nextElementSibling : item.previousElementSibling;
  while (next !== null && next.dataset.at === undefined) {
    next = forward ? next.nextElementSibling : next.previousElementSibling;
  }
  return next;
}

/**
 * Puts a date line before `item` when it is the first line of its day, and
 * marks a message that follows one of the same sender within GROUP_MS
 * (class "cont": its name is not shown again).
 */
function placeItem(item) {
  if (item.dataset.at === undefined) {
    return;
  }
  const at = Number(item.dataset.at);
  const before = item.previousElementSibling;
  if (before !== null && before.classList.contains('day')) {
    before.remove();
  }
  const prev = datedSibling(item, false);
  if (prev === null || dayKey(Number(prev.dataset.at)) !== dayKey(at)) {
    item.before(daySeparator(at));
  }
  if (item.classList.contains('msg')) {
    const p = item.previousElementSibling;
    const gap = p === null ? -1 : at - Number(p.dataset.at);
    const grouped = p !== null && p.classList.contains('msg') && p.dataset.user === item.dataset.user &&
      gap >= 0 && gap < GROUP_MS;
    item.classList.toggle('cont', grouped);
  }
}

/**
 * Date lines and grouping for lines just put on the page (`items`, in
 * order, side by side), and for the line after them, whose neighbour changed.
 */
function tidy(items) {
  for (const item of items) {
    placeItem(item);
  }
  const last = items.at(-1);
  const next = last === undefined ? null : datedSibling(last, true);
  if (next !== null) {
    placeItem(next);
  }
}

/** At midnight "Today" becomes "Yesterday": label the date lines anew. */
function relabelDaysAtMidnight() {
  clearTimeout(midnightTimer);
  const now = new Date();
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 0, 0, 1);
  midnightTimer = setTimeout(() => {
    for (const line of ui.messages.querySelectorAll('li.day')) {
      line.firstElementChild.textContent = dayLabel(Number(line.dataset.day));
    }
    relabelDaysAtMidnight();
  }, midnight - now);
}

/** A grey line in the middle (joins, leaves, notices); returns it. */
function addSystem(text, at, extraClass) {
  const li = el('li', 'system' + (extraClass ? ' ' + extraClass : ''));
  li.append(el('span', '', text));
  if (at !== undefined) {
    li.dataset.at = String(Number.isFinite(at) ? at : Date.now());
    li.append(' · ', timeEl(at));
  }
  ui.messages.append(li);
  tidy([li]);
  return li;
}

/** A line with rules on both sides, e.g. "earlier messages". */
function addSeparator(text) {
  const li = el('li', 'system separator');
  li.append(el('span', '', text));
  ui.messages.append(li);
}

/** The seq of the first message after `node` in the list, or null. */
function nextSeqAfter(node) {
  for (let item = node.nextElementSibling; item !== null; item = item.nextElementSibling) {
    if (item.dataset.seq !== undefined) {
      return Number(item.dataset.seq);
    }
  }
  return null;
}

// ---------------------------------------------------------------- scrolling

function isNearBottom() {
  const log = ui.log;
  return log.scrollHeight - log.scrollTop - log.clientHeight <= NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  ui.log.scrollTop = ui.log.scrollHeight;
  ui.jump.hidden = true;
}

/**
 * Runs render(); afterwards scrolls to the newest line only if the reader
 * was already near the bottom (or `force`), so reading older messages is
 * never interrupted. Otherwise a "New messages" button appears.
 */
function withAutoScroll(force, render) {
  const follow = force || isNearBottom();
  const added = render();
  if (follow) {
    scrollToBottom();
  } else if (added) {
    ui.jump.hidden = false;
  }
  return added;
}

function onLogScroll() {
  atBottom = isNearBottom();
  if (atBottom) {
    ui.jump.hidden = true;
  }
  if (ui.log.scrollTop <= NEAR_TOP_PX) {
    maybeLoadOlder();
  }
}

/**
 * The first chat message (at least partly) in view, or null. A message, not
 * any line: older messages go in below the "earlier messages" rule, which
 * must not be what stays put.
 */
function firstVisibleMessage() {
  const top = ui.log.getBoundingClientRect().top;
  for (const item of ui.messages.children) {
    if (item.dataset.seq !== undefined && item.getBoundingClientRect().bottom > top) {
      return item;
    }
  }
  return null;
}

/**
 * Runs change(), which adds or removes lines above or among the messages,
 * without moving what the reader is looking at: a reader at the bottom stays
 * at the bottom; otherwise the first message in view stays where it was on
 * screen. Returns what change() returned.
 */
function keepInView(change) {
  const follow = isNearBottom();
  const anchor = follow ? null : firstVisibleMessage();
  const before = anchor === null ? 0 : anchor.getBoundingClientRect().top;
  const result = change();
  if (follow) {
    ui.log.scrollTop = ui.log.scrollHeight;
  } else if (anchor !== null && anchor.isConnected) {
    ui.log.scrollTop += anchor.getBoundingClientRect().top - before;
  }
  return result;
}

/**
 * The log got shorter (status line shown, phone keyboard opened, window
 * resized): if the reader was at the bottom, keep the newest message in view.
 */
function onLogResize() {
  if (atBottom) {
    ui.log.scrollTop = ui.log.scrollHeight;
  }
}

// ---------------------------------------------------------------- history requests

/** Runs `job` (async) once the history request before it is finished: one at a time. */
function inTurn(job) {
  const run = historyTurn.then(job);
  historyTurn = run.catch(() => {});
  return run;
}

/** Resolves after `ms` milliseconds. */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * How long a 429 asks us to wait: its Retry-After (whole seconds), kept
 * between THROTTLE_MIN_MS and THROTTLE_MAX_MS (a missing or unreadable one:
 * the least).
 */
function retryAfterMs(res) {
  const secs = Number(res.headers.get('Retry-After'));
  const ms = Number.isFinite(secs) ? secs * 1000 : 0;
  return Math.min(Math.max(ms, THROTTLE_MIN_MS), THROTTLE_MAX_MS);
}

/**
 * GET /rooms/{room}/history: up to `limit` messages with seq < `before`
 * (null: the newest), oldest first, and whether older ones are kept
 * (`more`). Over the session's scrollback budget (429) it waits what the
 * server says and asks again: a throttle is not an error. Throws an Error
 * whose message says why, for the person.
 */
async function fetchHistory(before, limit) {
  const asked = era;
  const query = new URLSearchParams({ limit: String(limit) });
  if (before !== null) {
    query.set('before', String(before));
  }
  let res;
  for (;;) {
    try {
      res = await fetch(`/rooms/${room}/history?${query}`, { cache: 'no-store' });
    } catch (err) {
      throw new Error('the server cannot be reached');
    }
    if (res.status !== 429) {
      break;
    }
    await sleep(retryAfterMs(res));
  }
  if (!res.ok) {
    throw new Error(`HTTP ${res.status}`);
  }
  let body;
  try {
    body = await res.json();
  } catch (err) {
    throw new Error('the answer was not JSON');
  }
  if (asked !== era) {
    // Asked in another epoch: its seqs mean other messages now.
    const stale = new Error('the room was renumbered meanwhile');
    stale.stale = true;
    throw stale;
  }
  const list = body && Array.isArray(body.messages) ? body.messages : [];
  const events = list.filter((m) => m && Number.isInteger(m.seq)).sort((a, b) => a.seq - b.seq);
  return {
    messages: events.filter((m) => m.type === 'message'),
    changes: events.filter(isChange),
    more: Boolean(body && body.more === true),
  };
}

/** Shows the edits and deletes a history answer holds (if it holds any). */
function applyChanges(changes) {
  keepInView(() => {
    for (const change of changes) {
      applyEvent(change);
    }
  });
}

// ---------------------------------------------------------------- older messages (scrollback)

/** The line above the messages: state is loading | failed | done | '' (blank). */
function showOlder(lineState, text) {
  ui.older.dataset.state = lineState;
  ui.older.textContent = text;
}

function startText() {
  return oldestSeq === null || oldestSeq === 1
    ? `This is the start of room ${room}.`
    : 'Older messages are no longer kept.';
}

/**
 * The reader is near the top: load one page of older messages, unless a
 * load is running, failed a moment ago, or there is nothing older.
 */
function maybeLoadOlder() {
  if (older !== 'idle' || !welcomed || ui.log.scrollTop > NEAR_TOP_PX) {
    return;
  }
  if (oldestSeq === 1) { // the room's first message is shown: nothing to ask
    older = 'done';
    keepInView(() => showOlder('done', startText()));
    return;
  }
  older = 'loading';
  keepInView(() => showOlder('loading', 'loading older…'));
  inTurn(loadOlder);
}

/**
 * Where the next page of scrollback starts: below the oldest message shown
 * and below the oldest event an answer held (a page may hold only edits
 * and deletes: they have seqs too), and never above what the socket has
 * brought (what is newer comes on the socket, in order).
 */
function olderStart() {
  const bounds = [oldestSeq, olderBefore, lastSeq === null ? null : lastSeq + 1]
    .filter((seq) => seq !== null);
  return bounds.length === 0 ? null : Math.min(...bounds);
}

/** The oldest seq of a history answer's events, or null if it has none. */
function oldestOf(page) {
  const seqs = page.messages.concat(page.changes).map((e) => e.seq);
  return seqs.length === 0 ? null : Math.min(...seqs);
}

async function loadOlder() {
  let page;
  try {
    page = await fetchHistory(olderStart(), OLDER_PAGE);
  } catch (err) {
    if (err.stale) {
      return; // startAfresh() reset the scrollback state
    }
    older = 'waiting';
    keepInView(() => showOlder('failed', `Older messages could not be loaded (${err.message}). Scroll up to try again.`));
    setTimeout(() => { older = 'idle'; }, OLDER_RETRY_MS);
    return;
  }
  // Compared with oldestSeq as it is now: a live message may have arrived
  // meanwhile (when nothing was shown, the request asked for the newest).
  const items = page.messages
    .filter((m) => oldestSeq === null || m.seq < oldestSeq)
    .map((m) => messageItem(m, true))
    .filter((item) => item !== null);
  const oldest = oldestOf(page);
  if (oldest !== null) {
    olderBefore = olderBefore === null ? oldest : Math.min(olderBefore, oldest);
  }
  const done = !page.more || oldest === null;
  keepInView(() => {
    insertOlder(items);
    showOlder(done ? 'done' : '', done ? startText() : '');
  });
  applyChanges(page.changes);
  older = done ? 'done' : 'idle';
  maybeLoadOlder(); // the page was short: still near the top
}

/** Puts older messages first, under the "earlier messages" rule if it leads. */
function insertOlder(items) {
  const first = ui.messages.firstElementChild;
  if (first !== null && first.classList.contains('separator') && !first.classList.contains('day')) {
    first.after(...items);
  } else {
    ui.messages.prepend(...items);
  }
  tidy(items);
}

// ---------------------------------------------------------------- missed messages (gap)

/**
 * Fetches the messages missed after seq `after` (the last one shown before
 * a reconnect) up to the first message below `mark`, and puts them right
 * after `mark`, newest page first, so they end up in order. When all are
 * there the mark goes; when some cannot be had (no longer kept, or the
 * request failed) it stays as a line saying so.
 */
function fillGap(mark, after) {
  inTurn(async () => {
    let problem = null;
    try {
      problem = await fetchGapPages(mark, after);
    } catch (err) {
      if (err.stale) {
        return; // the mark went with the old list
      }
      problem = `they could not be loaded (${err.message})`;
    }
    keepInView(() => {
      if (problem === null) {
        mark.remove();
        return;
      }
      // Edits and deletes have seqs too, so the seqs do not count messages.
      mark.className = 'system gap';
      mark.replaceChildren(el('span', '', `Some messages were missed: ${problem}.`));
    });
  });
}

/** fillGap()'s requests; returns null when the gap is closed, else why not. */
async function fetchGapPages(mark, after) {
  // Below the first message after the mark (or what the socket brought);
  // each answer moves it down to its oldest event.
  let before = nextSeqAfter(mark) ?? (lastSeq === null ? null : lastSeq + 1);
  for (;;) {
    if (before !== null && before <= after + 1) {
      return null; // seqs go up by one: nothing is missing any more
    }
    const page = await fetchHistory(before, GAP_PAGE);
    const below = nextSeqAfter(mark); // live messages may have come meanwhile
    // Messages already shown come too: they refresh edits and deletes the
    // reconnect could not replay (see refreshShown()).
    const items = page.messages
      .filter((m) => below === null || m.seq < below)
      .map((m) => (m.seq > after ? messageItem(m, true) : (refreshShown(m), null)))
      .filter((item) => item !== null);
    keepInView(() => {
      mark.after(...items);
      tidy(items);
    });
    applyChanges(page.changes.filter((c) => c.seq > after));
    // Done once the answer reaches back to what was shown before the cut;
    // its oldest event (a message, or an edit or a delete: they have seqs
    // too) is where the next page starts.
    const oldest = oldestOf(page);
    if (oldest !== null && oldest <= after + 1) {
      return null;
    }
    if (oldest === null || !page.more) {
      return 'the room no longer keeps them';
    }
    before = before === null ? oldest : Math.min(before, oldest);
  }
}

// ---------------------------------------------------------------- unread count in the title

function countUnread() {
  if (document.hidden) {
    unread += 1;
    document.title = `(${unread}) ${baseTitle}`;
  }
}

function onVisibilityChange() {
  if (!document.hidden) {
    unread = 0;
    document.title = baseTitle;
  }
}

// ---------------------------------------------------------------- desktop notifications (opt-in)

const NOTIFY_KEY = 'wsrooms.notify';

function savedNotify() {
  try {
    return localStorage.getItem(NOTIFY_KEY) === 'on';
  } catch (err) {
    return false; // storage turned off: ask again on each visit
  }
}

function saveNotify(on) {
  try {
    localStorage.setItem(NOTIFY_KEY, on ? 'on' : 'off');
  } catch (err) {
    // storage turned off: the choice lasts for this page only
  }
}

/** The button shows where the browser has notifications; off until asked for. */
function initNotify() {
  if (!('Notification' in window)) {
    return;
  }
  ui.notify.hidden = false;
  notifyOn = Notification.permission === 'granted' && savedNotify();
  showNotify();
  ui.notify.addEventListener('click', toggleNotify);
}

function showNotify(blocked) {
  ui.notify.setAttribute('aria-pressed', String(notifyOn));
  ui.notify.textContent = notifyOn ? 'Notifying' : 'Notify me';
  ui.notify.title = blocked
    ? 'Notifications are blocked for this site in the browser\'s settings.'
    : notifyOn
      ? 'A desktop notification when a message names you (@id) while this tab is hidden. Click to turn off.'
      : 'Turn on desktop notifications for messages that name you (@id) while this tab is hidden.';
}

async function toggleNotify() {
  if (notifyOn) {
    notifyOn = false;
    saveNotify(false);
    showNotify();
    return;
  }
  let permission = Notification.permission;
  if (permission === 'default') {
    try {
      permission = await Notification.requestPermission();
    } catch (err) {
      permission = 'denied';
    }
  }
  notifyOn = permission === 'granted';
  saveNotify(notifyOn);
  showNotify(!notifyOn);
  if (!notifyOn) {
    setHint('Notifications are blocked for this site in the browser\'s settings.');
  }
}

/** A live message names the reader: a notification if asked for and the tab is hidden. */
function notifyMention(event) {
  if (!notifyOn || !document.hidden || Notification.permission !== 'granted') {
    return;
  }
  try {
    const note = new Notification(`${event.user} mentioned you in room ${room}`, {
      body: String(event.text ?? '').slice(0, 200),
      tag: `wsrooms-room-${room}`,
    });
    note.addEventListener('click', () => {
      window.focus();
      note.close();
    });
  } catch (err) {
    // Some browsers allow notifications only from a service worker.
  }
}

// ---------------------------------------------------------------- sending

function setHint(text, warn) {
  ui.hint.textContent = text;
  ui.hint.classList.toggle('warn', Boolean(warn));
}

/**
 * Updates "n/2000" (code points of what would be sent). Over the limit (in
 * characters or lines) the counter turns red, the hint says why, and Send
 * is disabled: the text stays whole in the box until it is shortened.
 */
function updateCounter() {
  const text = outgoing(ui.input.value);
  const problem = tooLong(text);
  ui.count.textContent = `${codePoints(text)}/${maxChars}`;
  ui.count.classList.toggle('over', problem !== null);
  ui.input.setAttribute('aria-invalid', problem !== null ? 'true' : 'false');
  if (problem !== null) {
    setHint(problem, true);
  } else if (ui.hint.classList.contains('warn')) {
    setHint('');
  }
  updateSendButton();
  growInput();
}

function updateSendButton() {
  ui.send.disabled = state !== 'connected' || tooLong(outgoing(ui.input.value)) !== null;
}

/** The box grows with its text, up to the few lines CSS allows (then it scrolls). */
function growInput() {
  growBox(ui.input);
}

/** A textarea as tall as its text, up to its CSS max-height. */
function growBox(box) {
  box.style.height = 'auto';
  const borders = box.offsetHeight - box.clientHeight;
  box.style.height = `${box.scrollHeight + borders}px`;
}

/**
 * Enter sends; Shift+Enter (and Enter while an input method composes) does
 * not. ↑ in an empty box edits one's newest message that may still be changed.
 */
function onInputKey(event) {
  const plain = !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing;
  if (event.key === 'ArrowUp' && plain && ui.input.value === '' && editLast()) {
    event.preventDefault();
    return;
  }
  if (event.key !== 'Enter' || event.shiftKey || event.isComposing || event.keyCode === 229) {
    return;
  }
  event.preventDefault();
  submitMessage();
}

function stopSendRetry() {
  clearTimeout(sendRetryTimer);
  sendRetryTimer = null;
  if (ui.hint.textContent === 'sending…') {
    setHint('');
  }
}

/**
 * Sends what is in the input. The text stays in the input until it has
 * really been handed to the socket, so nothing piles up in a queue of ours.
 */
function send() {
  sendRetryTimer = null;
  const text = outgoing(ui.input.value);
  if (text.trim() === '') {
    setHint('');
    return; // the server ignores blank messages anyway
  }
  const problem = tooLong(text);
  if (problem !== null) {
    setHint(problem, true);
    return;
  }
  // send() is only allowed while readyState is OPEN.
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    setHint('Not connected. Your message stays here until you can send it.');
    return;
  }
  // bufferedAmount = bytes passed to send() that the browser has not yet put
  // on the network. If a lot is still waiting, the network (or the server)
  // is slow: wait instead of piling more on top.
  if (socket.bufferedAmount > SEND_BUFFER_LIMIT) {
    setHint('sending…');
    if (sendRetryTimer === null) {
      sendRetryTimer = setTimeout(send, SEND_RETRY_MS);
    }
    return;
  }
  socket.send(sayFrame(text));
  unconfirmed.push(text);
  ui.input.value = '';
  updateCounter();
  setHint('');
}

/** What goes on the socket for a chat message: a "say" command, or the text itself. */
function sayFrame(text) {
  return v2 ? JSON.stringify({ type: 'say', text: wellFormed(text) }) : text;
}

/**
 * A text (or a command's `text`) with each lone surrogate (half of an
 * emoji, from a broken paste) made U+FFFD. JSON.stringify would write it
 * as an escape the server refuses as a bad command (close 1008, the text
 * lost); a plain text frame is encoded that way by the browser itself.
 */
function wellFormed(value) {
  if (typeof value === 'string') {
    return typeof value.toWellFormed === 'function' ? value.toWellFormed() : value;
  }
  if (value !== null && typeof value === 'object' && typeof value.text === 'string') {
    return { ...value, text: wellFormed(value.text) };
  }
  return value;
}

function onInput() {
  updateCounter();
  maybeSendTyping();
}

function onSubmit(event) {
  event.preventDefault();
  submitMessage();
  // Sent with the button: the next message is typed without a click (and
  // a phone keeps its keyboard).
  ui.input.focus();
}

function submitMessage() {
  if (sendRetryTimer !== null) {
    return; // already waiting for the buffer to drain
  }
  send();
}

// ---------------------------------------------------------------- page life

function onPageHide() {
  leaving = true;
}

/** Back/forward cache: the page comes back, but its socket is gone. */
function onPageShow(event) {
  leaving = false;
  if (event.persisted && room !== null && (!socket || socket.readyState === WebSocket.CLOSED)) {
    failures = 0;
    connect();
  }
}

/** The network came back: don't sit out the rest of the backoff. */
function onOnline() {
  if (state === 'reconnecting' && reconnectTimer !== null) {
    connect();
  }
}

// A read-only hook for automated browser tests.
window.wsrooms = Object.freeze({
  get socket() { return socket; },
  get lastSeq() { return lastSeq; },
  get epoch() { return epoch; },
  get oldestSeq() { return oldestSeq; },
  get older() { return older; },
  get state() { return state; },
  get v2() { return v2; },
  get editWindowMs() { return editWindowMs; },
  /** The frame the page would send for a chat message `text` on this socket. */
  sayFrame,
});

function init() {
  ui.form.addEventListener('submit', onSubmit);
  ui.input.addEventListener('input', onInput);
  ui.input.addEventListener('keydown', onInputKey);
  ui.log.addEventListener('scroll', onLogScroll, { passive: true });
  if ('ResizeObserver' in window) {
    new ResizeObserver(onLogResize).observe(ui.log);
  }
  ui.jump.addEventListener('click', () => {
    scrollToBottom();
    ui.input.focus();
  });
  ui.reconnect.addEventListener('click', onReconnectClick);
  // Logging out closes our socket ("logged out") while the page goes away.
  ui.logout.addEventListener('submit', () => { leaving = true; });
  document.addEventListener('visibilitychange', onVisibilityChange);
  window.addEventListener('pagehide', onPageHide);
  window.addEventListener('pageshow', onPageShow);
  window.addEventListener('online', onOnline);

  updateCounter();
  initNotify();
  relabelDaysAtMidnight();

  if (room === null) {
    setState('closed', 'This address is not a chat room. Use "Leave" or the logo to pick a room.');
    return;
  }
  ui.room.textContent = String(room);
  ui.logout.action = `/logout?room=${room}`;
  document.title = baseTitle;
  connect();
}

init();
