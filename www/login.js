'use strict';

/*
 * wsrooms — login page.
 *
 * The form in index.html works on its own (a plain POST to /login). This
 * script only improves it:
 *   - fills in the room number from /?room=N,
 *   - checks the fields before sending (the server stays the authority),
 *   - sends the form with fetch() so a 400 / 409 answer can be shown next to
 *     the field it is about, keeping what the person typed.
 */

// Same rules as the server (which stays the authority; its Unicode data may
// be newer than the browser's). 1–32 code points as typed; each one is
//   - a letter or decimal digit of any script (\p{L}, \p{Nd}),
//   - one of _ - . ,
//   - or a combining mark (\p{M}: vowel signs, viramas, accents) right after
//     a letter, a digit or another mark;
// and none is invisible: default-ignorable (zero-width characters, Hangul
// fillers, variation selectors…, though some are letters or marks), a bidi
// control, or another control or format character. In the NFKD form at most
// 4 marks follow a letter, and no mark follows itself. (The server also
// refuses characters that Unicode does not recommend for identifiers; the
// browser has no such table, so that message comes from the server's 400.)
// The `u` flag makes \p{…} work, and [...text] splits text into code points.
const USER_BASE = /^[\p{L}\p{Nd}]$/u;
const USER_JOINER = /^[_.\-]$/u;
const USER_MARK = /^\p{M}$/u;
const USER_INVISIBLE = /^[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}\p{Cc}\p{Cf}]$/u;
const USER_MAX = 32;
const USER_MAX_MARKS = 4;
const ROOM_MAX = 999999;

const form = document.getElementById('login');
const userInput = document.getElementById('user');
const roomInput = document.getElementById('room');
const submitButton = document.getElementById('submit');
const formError = document.getElementById('form-error');
const submitLabel = submitButton.textContent;

const inputs = { user: userInput, room: roomInput };

// ---------------------------------------------------------------- checks

/** Number of Unicode code points (not UTF-16 units) in a string. */
function codePoints(text) {
  return [...text].length;
}

/** Returns an error message for the user id, or '' when it is fine. */
function checkUser(raw) {
  const user = raw.trim();
  if (user === '') {
    return 'Enter a user id.';
  }
  const length = codePoints(user);
  if (length > USER_MAX) {
    return `Too long: ${length} characters (at most ${USER_MAX}).`;
  }
  return checkUserChars([...user]) || checkUserMarks([...user.normalize('NFKD')]);
}

/** Code point as U+XXXX, for messages about characters one may not see. */
function codeName(c) {
  return 'U+' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0');
}

/** The per-character part of checkUser, over an array of code points. */
function checkUserChars(chars) {
  let afterBase = false; // may a mark come next?
  for (const c of chars) {
    if (USER_INVISIBLE.test(c)) {
      return `Remove the invisible or control character ${codeName(c)}.`;
    }
    if (USER_MARK.test(c)) {
      if (!afterBase) {
        return `The combining mark ${codeName(c)} must follow a letter or a digit.`;
      }
    } else if (USER_BASE.test(c)) {
      afterBase = true;
    } else if (USER_JOINER.test(c)) {
      afterBase = false;
    } else {
      return 'Use only letters, digits, _ - and . (no spaces or other symbols).';
    }
  }
  return '';
}

/** At most USER_MAX_MARKS marks after a letter, none twice in a row, over
 * the code points of the id's NFKD form (precomposed accents count). */
function checkUserMarks(chars) {
  let marks = 0;
  let previous = '';
  for (const c of chars) {
    if (!USER_MARK.test(c)) {
      marks = 0;
    } else if (++marks > USER_MAX_MARKS) {
      return `At most ${USER_MAX_MARKS} combining marks may follow a letter (${codeName(c)} is one too many).`;
    } else if (c === previous) {
      return `A combining mark may not follow itself (${codeName(c)} twice).`;
    }
    previous = c;
  }
  return '';
}

/** Returns an error message for the room number, or '' when it is fine. */
function checkRoom(raw) {
  const room = raw.trim();
  if (room === '') {
    return 'Enter a room number.';
  }
  if (!/^[0-9]+$/.test(room)) {
    return 'The room must be a whole number, digits only.';
  }
  const number = Number(room);
  if (number < 1 || number > ROOM_MAX) {
    return `Choose a room from 1 to ${ROOM_MAX}.`;
  }
  return '';
}

// ---------------------------------------------------------------- messages

/** Shows (or clears, with '') the inline message of one field. */
function showFieldError(field, message) {
  const box = document.getElementById(field + '-error');
  box.textContent = message;
  inputs[field].setAttribute('aria-invalid', message ? 'true' : 'false');
}

/** Shows (or clears) the message about the whole form. */
function showFormError(message) {
  formError.textContent = message;
}

function clearErrors() {
  showFieldError('user', '');
  showFieldError('room', '');
  showFormError('');
}

function setBusy(busy) {
  submitButton.disabled = busy;
  submitButton.textContent = busy ? 'Joining…' : submitLabel;
  form.setAttribute('aria-busy', busy ? 'true' : 'false');
}

// ---------------------------------------------------------------- server answers

/** At most this much of a refusal's text is shown. */
const REASON_MAX = 300;

/**
 * The server answers 400 / 403 / 409 with a small HTML page holding one
 * <p class="error" data-field="user|room">message</p>. Parse it (DOMParser
 * never runs scripts or loads images) and show its text next to that field.
 * A 403 may also be plain text (a barred address): shown as it is, as text.
 */
async function showRefusal(res) {
  if (res.status === 400 || res.status === 403 || res.status === 409) {
    const body = await res.text();
    const type = res.headers.get('Content-Type') || '';
    if (type.startsWith('text/html')) {
      const doc = new DOMParser().parseFromString(body, 'text/html');
      const node = doc.querySelector('[data-field]');
      const message = node ? node.textContent.trim().slice(0, REASON_MAX) : '';
      if (message) {
        const field = node.getAttribute('data-field') === 'room' ? 'room' : 'user';
        showFieldError(field, message);
        inputs[field].focus();
        return;
      }
    } else if (res.status === 403 && body.trim() !== '') {
      showFormError(`The server refused the login: ${body.trim().slice(0, REASON_MAX)}`);
      return;
    }
  }
  if (res.status === 429 || res.status === 503) {
    showFormError(`The server is busy right now (HTTP ${res.status}). Please try again in a moment.`);
  } else {
    showFormError(`The server could not log you in (HTTP ${res.status}). Please try again.`);
  }
}

/**
 * fetch() followed the 303 to /rooms/N (res.redirected) and loaded it, so the
 * session cookie is set: go there. If we ended up somewhere else (the room
 * page sent us back to the login page), the browser did not keep the cookie.
 */
function followSuccess(res, room) {
  if (!res.redirected) {
    location.href = '/rooms/' + room;
    return true;
  }
  const landed = new URL(res.url);
  if (/^\/rooms\/[0-9]+\/?$/.test(landed.pathname)) {
    location.href = res.url;
    return true;
  }
  showFormError('The server accepted the login, but your browser did not keep the ' +
    'session cookie. Please allow cookies for this site and try again.');
  return false;
}

// ---------------------------------------------------------------- submit

async function onSubmit(event) {
  event.preventDefault();
  if (submitButton.disabled) {
    return; // a request is already on its way
  }
  clearErrors();

  const user = userInput.value.trim();
  const userProblem = checkUser(user);
  const roomProblem = checkRoom(roomInput.value);
  showFieldError('user', userProblem);
  showFieldError('room', roomProblem);
  if (userProblem || roomProblem) {
    (userProblem ? userInput : roomInput).focus();
    return;
  }
  const room = String(Number(roomInput.value.trim())); // "007" → "7"

  setBusy(true);
  let navigating = false;
  try {
    // The room also goes in the query string so a proxy can route by room.
    const res = await fetch('/login?room=' + encodeURIComponent(room), {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ user, room }),
    });
    if (res.ok) {
      rememberUser(user);
      navigating = followSuccess(res, room);
    } else {
      await showRefusal(res);
    }
  } catch (err) {
    // fetch() rejects only when there is no HTTP answer at all.
    showFormError('Could not reach the server. Check your connection and try again.');
  }
  if (!navigating) {
    setBusy(false);
  }
}

// ---------------------------------------------------------------- small comforts

/** Keeps the last id of this tab, so a return to /?room=N needs no retyping. */
function rememberUser(user) {
  try {
    sessionStorage.setItem('wsrooms.user', user);
  } catch (err) {
    // Storage may be disabled; that's fine.
  }
}

function recalledUser() {
  try {
    return sessionStorage.getItem('wsrooms.user') || '';
  } catch (err) {
    return '';
  }
}

/** /?room=N fills in the room; the user id field then gets the focus. */
function prefill() {
  const room = new URLSearchParams(location.search).get('room');
  if (room !== null && checkRoom(room) === '') {
    roomInput.value = String(Number(room.trim()));
  }
  if (!userInput.value) {
    userInput.value = recalledUser();
  }
  const first = !userInput.value ? userInput : (!roomInput.value ? roomInput : submitButton);
  first.focus();
}

function init() {
  // We show our own inline messages instead of the browser's bubbles.
  form.noValidate = true;
  form.addEventListener('submit', onSubmit);
  // Typing in a field clears that field's message.
  for (const field of Object.keys(inputs)) {
    inputs[field].addEventListener('input', () => {
      showFieldError(field, '');
      showFormError('');
    });
  }
  // Coming back with the Back button may restore this page from the cache
  // with the button still disabled.
  window.addEventListener('pageshow', () => setBusy(false));
  prefill();
}

init();
