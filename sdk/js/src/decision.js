/**
 * What a policy answers: allow (optionally changing request headers), deny
 * (a status, a reason, response headers) or hold until approvers approve.
 * A `Decision` is the contract's `decision` variant as the component
 * bindings read it, `{ tag, val }`, with constructors added.
 *
 * @module
 */

import { asciiLower } from './action.js';

/** The largest u64: durations in milliseconds saturate here, as in the Rust SDK. */
const U64_MAX = (1n << 64n) - 1n;

/**
 * `seconds` (an integer) in milliseconds, saturating at the largest u64: a
 * number when exact, else a bigint.
 *
 * @param {number | bigint} seconds
 */
export function saturatingMillis(seconds) {
  const millis = BigInt(seconds) * 1000n;
  const capped = millis > U64_MAX ? U64_MAX : millis;
  return capped <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(capped) : capped;
}

/**
 * @typedef {import('./host.js').Header} Header
 *
 * @typedef {object} Allow Carry the action out.
 * @property {Header[]} setHeaders Set (replace) these request headers first.
 * @property {string[]} removeHeaders Remove these request headers first.
 *
 * @typedef {object} Deny Refuse the action.
 * @property {number} status A 4xx or 5xx status.
 * @property {string} reason Short, shown to the client and recorded.
 * @property {Header[]} headers Extra response headers, e.g. `retry-after`.
 *
 * @typedef {object} Grant After approval, the same principal's matching actions pass for a while.
 * @property {string} scope What it covers, e.g. `DELETE /admin/users`.
 * @property {number | bigint} lifetimeMs
 *
 * @typedef {object} Hold Wait until enough approvers approve.
 * @property {string} reason
 * @property {string[]} approverGroups Members of any of these groups may approve.
 * @property {number} quorum Distinct approvers needed, at least 1.
 * @property {number | bigint} timeoutMs How long to wait before the action expires.
 * @property {Grant | undefined} grant
 */

/** The answer to one action. */
export class Decision {
  /**
   * @param {'allow' | 'deny' | 'hold'} tag
   * @param {Allow | Deny | Hold} val
   */
  constructor(tag, val) {
    this.tag = tag;
    this.val = val;
  }

  /**
   * Carry the action out, setting and removing request headers first
   * (names are lower-cased).
   *
   * @param {{ setHeaders?: Header[], removeHeaders?: string[] }} [changes]
   */
  static allow({ setHeaders = [], removeHeaders = [] } = {}) {
    return new Decision('allow', {
      setHeaders: setHeaders.map(({ name, value }) => ({ name: asciiLower(name), value })),
      removeHeaders: removeHeaders.map(asciiLower),
    });
  }

  /**
   * Carry the action out, setting request header `name` to `value` first.
   *
   * @param {string} name
   * @param {string} value
   */
  static allowWithHeader(name, value) {
    return Decision.allow({ setHeaders: [{ name, value }] });
  }

  /**
   * Refuse the action with `status` (4xx or 5xx) and a short reason.
   *
   * @param {number} status
   * @param {string} reason
   * @param {Header[]} [headers] Extra response headers.
   */
  static deny(status, reason, headers = []) {
    return new Decision('deny', { status, reason, headers });
  }

  /**
   * Hold the action until `quorum` distinct members of `groups` approve,
   * for at most `timeoutMs`.
   *
   * @param {string} reason
   * @param {string[]} groups
   * @param {number} quorum
   * @param {number | bigint} timeoutMs
   */
  static hold(reason, groups, quorum, timeoutMs) {
    return new Decision('hold', {
      reason,
      approverGroups: [...groups],
      quorum,
      timeoutMs,
      grant: undefined,
    });
  }

  /**
   * On a hold: after approval, let the same principal's actions of `scope`
   * pass for `lifetimeMs`. Other decisions are returned unchanged.
   *
   * @param {string} scope
   * @param {number | bigint} lifetimeMs
   */
  withGrant(scope, lifetimeMs) {
    if (this.tag !== 'hold') return this;
    return new Decision('hold', { ...this.val, grant: { scope, lifetimeMs } });
  }

  /** `allow`, `deny` or `hold`. */
  get kind() {
    return this.tag;
  }
}
