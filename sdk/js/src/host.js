/**
 * What Airlock offers a policy: log, clock, local time, live pool figures
 * and the judged request's headers (the contract's `host` interface).
 *
 * In a component these call the host's imports, which the generated entry
 * module connects with {@link serveHost} before anything runs; natively
 * (under `node --test`) the `TestHost` of `airlock-policy-sdk/testing`
 * serves them while it runs a policy.
 *
 * @module
 */

/**
 * @typedef {'trace' | 'debug' | 'info' | 'warn' | 'error'} Level
 *
 * @typedef {object} LocalTime A wall-clock time in a named time zone.
 * @property {number} year
 * @property {number} month 1 to 12.
 * @property {number} day 1 to 31.
 * @property {number} hour
 * @property {number} minute
 * @property {number} second
 * @property {number} weekday 1 = Monday to 7 = Sunday (ISO 8601).
 * @property {number} utcOffsetSeconds
 * @property {string} abbreviation Zone abbreviation, e.g. `CET`.
 *
 * @typedef {object} PoolFigures Live figures of one pool.
 * @property {string} pool
 * @property {number} healthyBackends
 * @property {number} totalBackends
 * @property {number} inFlight
 * @property {number} errorRate Share of recent requests that failed, 0 to 1.
 * @property {number | undefined} latencyP99Ms Undefined before any sample.
 *
 * @typedef {object} Header
 * @property {string} name Lower-case header name.
 * @property {string} value
 *
 * @typedef {object} HostFunctions The contract's `host` imports, as the
 *   component bindings (or a test host) present them.
 * @property {(level: Level, message: string) => void} log
 * @property {() => bigint | number} nowUnixMs
 * @property {(zone: string, unixMs: bigint) => LocalTime | undefined} toLocalTime
 * @property {(pool: string) => PoolFigures | undefined} liveFigures
 * @property {(name: string) => string | undefined} requestHeader
 * @property {() => Header[]} requestHeaders
 */

/** @type {HostFunctions | null} */
let serving = null;

/**
 * Make `functions` answer the host calls; returns what answered before.
 * The component's entry module and the test host call this, policies don't.
 *
 * @param {HostFunctions | null} functions
 * @returns {HostFunctions | null}
 */
export function serveHost(functions) {
  const previous = serving;
  serving = functions;
  return previous;
}

function host() {
  if (serving === null) {
    throw new Error(
      'a host function was called with no host: natively, run the policy through a TestHost ' +
        '(airlock-policy-sdk/testing); in a component, not at module top level (that runs at build time)',
    );
  }
  return serving;
}

/**
 * Write `message` to Airlock's log, tagged with the policy's name.
 *
 * @param {Level} level
 * @param {string} message
 */
export function log(level, message) {
  host().log(level, message);
}

/** Milliseconds since the Unix epoch (fixed per case by `airlock policy test`). */
export function nowUnixMs() {
  return Number(host().nowUnixMs());
}

/**
 * The time `unixMs` in the IANA zone `zone` (e.g. `Europe/Berlin`), from
 * Airlock's bundled tz database, so a zone means the same in every SDK;
 * undefined for an unknown zone.
 *
 * @param {string} zone
 * @param {number} unixMs
 * @returns {LocalTime | undefined}
 */
export function localTime(zone, unixMs) {
  return host().toLocalTime(zone, BigInt(Math.trunc(unixMs))) ?? undefined;
}

/**
 * The current time in the IANA zone `zone`; undefined for an unknown zone.
 *
 * @param {string} zone
 */
export function localNow(zone) {
  return localTime(zone, nowUnixMs());
}

/**
 * Live figures of `pool`; undefined if there is no such pool.
 *
 * @param {string} pool
 * @returns {PoolFigures | undefined}
 */
export function poolFigures(pool) {
  return host().liveFigures(pool) ?? undefined;
}

/**
 * The first value of the judged request's header `name` (any case);
 * undefined when absent, when the action is not a request, or during setup.
 * Credentials arrive as `[redacted]`.
 *
 * @param {string} name
 * @returns {string | undefined}
 */
export function header(name) {
  return host().requestHeader(name) ?? undefined;
}

/**
 * Every header of the judged request, in order, names in lower case; empty
 * when the action is not a request, or during setup.
 *
 * @returns {Header[]}
 */
export function headers() {
  return host().requestHeaders();
}
