/**
 * Glob and prefix matching for methods, hosts and paths, exactly as the
 * Rust SDK's `matching` module does it.
 *
 * Globs: `*` matches any run of characters within one path segment (no
 * `/`), `**` matches anything including `/`, `?` matches one byte other
 * than `/`; everything else matches itself. So `/admin/**` matches every
 * path under `/admin/`, `/users/*\/keys` one level of user, and
 * `*.example.com` any subdomain label. Patterns and text are compared as
 * UTF-8 bytes, as in Rust.
 *
 * @module
 */

import { asciiLower } from './action.js';

const ANY_RUN = -1; // `**`
const SEGMENT_RUN = -2; // `*`
const ONE = -3; // `?`
const SLASH = 0x2f;
const STAR = 0x2a;
const QUESTION = 0x3f;

/**
 * `text` as UTF-8 bytes, by hand: the SDK uses no platform API (some
 * engines, QuickJS among them, have no TextEncoder).
 *
 * @param {string} text
 */
function utf8(text) {
  const bytes = [];
  for (const character of text) {
    const point = character.codePointAt(0);
    if (point < 0x80) bytes.push(point);
    else if (point < 0x800) bytes.push(0xc0 | (point >> 6), 0x80 | (point & 0x3f));
    else if (point < 0x10000) bytes.push(0xe0 | (point >> 12), 0x80 | ((point >> 6) & 0x3f), 0x80 | (point & 0x3f));
    else bytes.push(0xf0 | (point >> 18), 0x80 | ((point >> 12) & 0x3f), 0x80 | ((point >> 6) & 0x3f), 0x80 | (point & 0x3f));
  }
  return bytes;
}

/** A pattern's tokens: a byte to match itself, or one of the wildcards above. */
function tokenize(pattern) {
  const bytes = utf8(pattern);
  const tokens = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === STAR && bytes[i + 1] === STAR) {
      tokens.push(ANY_RUN);
      i++;
    } else if (bytes[i] === STAR) {
      tokens.push(SEGMENT_RUN);
    } else if (bytes[i] === QUESTION) {
      tokens.push(ONE);
    } else {
      tokens.push(bytes[i]);
    }
  }
  return tokens;
}

/** A star may match nothing: where it is active, so is the token after it. */
function closeOverStars(tokens, active) {
  for (let position = 0; position < tokens.length; position++) {
    if (active[position] && (tokens[position] === ANY_RUN || tokens[position] === SEGMENT_RUN)) {
      active[position + 1] = 1;
    }
  }
}

/**
 * True if `text` matches the glob `pattern`.
 *
 * Runs in time proportional to pattern length times text length, whatever
 * the pattern: the text is scanned once while the set of pattern positions
 * it could be at is tracked (no backtracking, so no blow-up on `**a**a**b`).
 *
 * @param {string} pattern
 * @param {string} text
 */
export function glob(pattern, text) {
  const tokens = tokenize(pattern);
  // active[i]: the text read so far can end with the pattern at token i.
  let active = new Uint8Array(tokens.length + 1);
  active[0] = 1;
  closeOverStars(tokens, active);
  for (const byte of utf8(text)) {
    const next = new Uint8Array(tokens.length + 1);
    let any = false;
    for (let position = 0; position < tokens.length; position++) {
      if (!active[position]) continue;
      const token = tokens[position];
      if (token === ANY_RUN || (token === SEGMENT_RUN && byte !== SLASH)) {
        next[position] = 1;
      } else if ((token === ONE && byte !== SLASH) || token === byte) {
        next[position + 1] = 1;
      } else {
        continue;
      }
      any = true;
    }
    if (!any) return false;
    closeOverStars(tokens, next);
    active = next;
  }
  return active[tokens.length] === 1;
}

/**
 * True if `text` matches any of `patterns`.
 *
 * @param {string[]} patterns
 * @param {string} text
 */
export function anyGlob(patterns, text) {
  return patterns.some((pattern) => glob(pattern, text));
}

/**
 * True if `path` is `prefix` or lies under it by whole segments: `/api`
 * covers `/api` and `/api/users` but not `/apiary`.
 *
 * @param {string} prefix
 * @param {string} path
 */
export function pathUnder(prefix, path) {
  const trimmed = prefix.replace(/\/+$/, '');
  if (!path.startsWith(trimmed)) return false;
  const rest = path.slice(trimmed.length);
  return rest === '' || rest.startsWith('/');
}

/**
 * True if `method` matches `pattern`, case-insensitively (ASCII); `*`
 * matches any method.
 *
 * @param {string} pattern
 * @param {string} method
 */
export function method(pattern, method) {
  return pattern === '*' || asciiLower(pattern) === asciiLower(method);
}

/**
 * True if `request` matches a rule's optional `methods`, `paths` and
 * `hosts`: every field given must match (an absent field, `undefined` or
 * `null`, matches all; an empty list none). Host patterns are compared
 * lower-case, as hosts arrive.
 *
 * @param {string[] | undefined | null} methods
 * @param {string[] | undefined | null} paths
 * @param {string[] | undefined | null} hosts
 * @param {{ method: string, path: string, host: string }} request
 */
export function requestMatches(methods, paths, hosts, request) {
  return (
    (methods == null || methods.some((pattern) => method(pattern, request.method))) &&
    (paths == null || anyGlob(paths, request.path)) &&
    (hosts == null || hosts.some((pattern) => glob(asciiLower(pattern), request.host)))
  );
}
