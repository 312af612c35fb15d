// The README's screenshot, docs/room.png: made by the browser test, and
// checked so that it cannot silently stop showing the page as it is.
//
// A fresh screenshot differs from the committed one in every run (the
// message times are the clock's), so comparing pixels would either always
// fail or need a tolerance that hides real changes. What matters is that
// the picture shows the page's current layout. So the committed PNG carries,
// in a tEXt chunk, the outline of the room page it shows: every element of
// the page as tag#id.classes, indented by depth, with siblings of the same
// shape (message lines, people) written once. The test
// compares:
//   - the pixel size of the committed PNG with the fresh screenshot's;
//   - the outline stored in it with the page's outline now.
// A change to the page's elements, ids or classes (a new panel, a renamed
// class, a removed button) fails the test until the picture is made again:
//   WSROOMS_UPDATE_DOCS_SHOT=1 cargo test --test browser
// which writes the fresh screenshot, with its outline, to docs/room.png.
// Colours, fonts and wording are not checked. Make the picture on a machine
// with a Korean font (Debian: fonts-nanum), or the Hangul lines show as boxes.

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The committed screenshot. */
export const DOCS_SHOT = path.resolve(here, '..', '..', 'docs', 'room.png');
/** The tEXt keyword the outline is stored under. */
const KEY = 'wsrooms-page-outline';
const REGENERATE = 'WSROOMS_UPDATE_DOCS_SHOT=1 cargo test --test browser';

/** The page's element outline (see the top of this file). */
export async function pageOutline(page) {
  return page.evaluate(() => {
    const sig = (e) => {
      const classes = [...e.classList].sort().map((c) => '.' + c).join('');
      return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + classes;
    };
    const lines = (e, depth) => {
      const own = ['  '.repeat(depth) + sig(e)];
      const seen = new Set();
      for (const child of e.children) {
        if (child.tagName === 'SCRIPT') continue;
        const sub = lines(child, depth + 1);
        const text = sub.join('\n');
        if (seen.has(text)) continue; // a sibling shaped like an earlier one
        seen.add(text);
        own.push(...sub);
      }
      return own;
    };
    return lines(document.body, 0).join('\n');
  });
}

// ------------------------------------------------------------------ PNG

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Width and height from a PNG's IHDR chunk. */
export function pngSize(png) {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** The text stored under `key` in a tEXt chunk, or null. */
function pngText(png, key) {
  let at = 8;
  while (at + 12 <= png.length) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (type === 'tEXt') {
      const nul = data.indexOf(0);
      if (nul > 0 && data.toString('latin1', 0, nul) === key) {
        return data.toString('latin1', nul + 1);
      }
    }
    if (type === 'IEND') break;
    at += 12 + length;
  }
  return null;
}

/** `png` with a tEXt chunk `key` = `text` right after its IHDR. */
function withText(png, key, text) {
  const data = Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write('tEXt', 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  return Buffer.concat([png.subarray(0, ihdrEnd), head, data, crc, png.subarray(ihdrEnd)]);
}

// ------------------------------------------------------------------ the check

/**
 * Compares docs/room.png with `freshPath` (a screenshot of `page` just
 * taken), or with WSROOMS_UPDATE_DOCS_SHOT=1 writes it from there. Returns
 * null when all is well, else what is wrong (for an assertion message).
 */
export async function checkDocsShot(page, freshPath) {
  const fresh = readFileSync(freshPath);
  const outline = await pageOutline(page);
  if (process.env.WSROOMS_UPDATE_DOCS_SHOT === '1') {
    writeFileSync(DOCS_SHOT, withText(fresh, KEY, outline));
    return null;
  }
  if (!existsSync(DOCS_SHOT)) {
    return `${DOCS_SHOT} is missing; make it with: ${REGENERATE}`;
  }
  const committed = readFileSync(DOCS_SHOT);
  const want = pngSize(fresh);
  const have = pngSize(committed);
  if (want.width !== have.width || want.height !== have.height) {
    return `docs/room.png is ${have.width}×${have.height} but the page's screenshot is ` +
      `${want.width}×${want.height}; make it again with: ${REGENERATE}`;
  }
  const stored = pngText(committed, KEY);
  if (stored !== outline) {
    const a = (stored ?? '').split('\n');
    const b = outline.split('\n');
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return `docs/room.png shows an older room page: its outline differs at line ${i + 1} ` +
      `(picture: ${JSON.stringify(a[i] ?? '(end)')}, page now: ${JSON.stringify(b[i] ?? '(end)')}); ` +
      `make it again with: ${REGENERATE}`;
  }
  return null;
}
