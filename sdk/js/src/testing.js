/**
 * Unit-test a policy natively, with `node --test`: a `TestHost` answers the
 * host functions (a fixed clock, local time through `Intl`, the judged
 * request's headers, pool figures) and collects the log, like the Rust
 * SDK's `testing::TestHost` and Go's `airlock.TestHost`.
 *
 * ```js
 * import policy from '../policy.js';
 * import { TestHost, testRequest } from 'airlock-policy-sdk/testing';
 *
 * const host = new TestHost().now('2026-11-23T10:00:00Z').header('X-Reason', 'incident-7');
 * const judge = host.setup(policy, '{"status": 403}');    // throws the ParameterError
 * assert.equal(host.evaluate(judge, testRequest('DELETE', '/x')).kind, 'deny');
 * ```
 *
 * Headers answer only while `evaluate` judges a request (or inside `run`),
 * as in Airlock. The end-to-end check of a built component is
 * `airlock policy test`. Not part of the component: never import this from
 * the policy module itself.
 *
 * @module
 */

import { Action, asciiLower } from './action.js';
import { serveHost } from './host.js';
import { setUp } from './policy.js';

/** @typedef {import('./host.js').PoolFigures} PoolFigures */

/** `Intl` formats by zone, built once each (they are slow to make). */
const formats = new Map();

function formatFor(zone) {
  if (!formats.has(zone)) {
    let format;
    try {
      format = new Intl.DateTimeFormat('en-US', {
        timeZone: zone,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
        timeZoneName: 'short',
      });
    } catch {
      format = null; // RangeError: not a zone Intl knows
    }
    formats.set(zone, format);
  }
  return formats.get(zone);
}

/**
 * `unixMs` in the IANA zone `zone`, from the tz database of Node's ICU,
 * which may differ from Airlock's bundled one in rare historical details;
 * the abbreviation is ICU's English short name (`GMT+1` where Airlock says
 * `CET`). Undefined for an unknown zone.
 *
 * @param {string} zone
 * @param {number} unixMs
 * @returns {import('./host.js').LocalTime | undefined}
 */
export function intlLocalTime(zone, unixMs) {
  const format = formatFor(zone);
  if (!format) return undefined;
  /** @type {Record<string, string>} */
  const parts = {};
  for (const { type, value } of format.formatToParts(new Date(unixMs))) parts[type] = value;
  const [year, month, day, hour, minute, second] = ['year', 'month', 'day', 'hour', 'minute', 'second'].map(
    (part) => Number(parts[part]),
  );
  const wallClockMs = Date.UTC(year, month - 1, day, hour, minute, second);
  const weekday = new Date(Date.UTC(year, month - 1, day)).getUTCDay() || 7;
  return {
    year,
    month,
    day,
    hour,
    minute,
    second,
    weekday,
    utcOffsetSeconds: Math.round((wallClockMs - Math.floor(unixMs / 1000) * 1000) / 1000),
    abbreviation: parts.timeZoneName,
  };
}

/** What the host functions answer during a native test. */
export class TestHost {
  /** What `nowUnixMs` returns (see `now`). */
  nowUnixMs = 0;
  /** @type {{ name: string, value: string }[]} The judged request's headers. */
  headers = [];
  /** @type {PoolFigures[]} The pools `poolFigures` knows. */
  pools = [];
  /** @type {string[]} What the policy logged, `LEVEL message` per call. */
  logs = [];

  /**
   * Fix the clock at an RFC 3339 time, e.g. `2026-11-23T10:00:00Z`.
   *
   * @param {string} rfc3339
   */
  now(rfc3339) {
    const ms = Date.parse(rfc3339);
    if (Number.isNaN(ms)) throw new RangeError(`not an RFC 3339 time: ${rfc3339}`);
    this.nowUnixMs = ms;
    return this;
  }

  /**
   * Add a header of the judged request (the name is lower-cased, as
   * Airlock passes names).
   *
   * @param {string} name
   * @param {string} value
   */
  header(name, value) {
    this.headers.push({ name: asciiLower(name), value });
    return this;
  }

  /**
   * Add a pool that `poolFigures` knows.
   *
   * @param {PoolFigures} figures
   */
  pool(figures) {
    this.pools.push(figures);
    return this;
  }

  /**
   * Run `test` with this host serving the host functions (headers included).
   *
   * @template R
   * @param {() => R} test
   * @returns {R}
   */
  run(test) {
    return this.#serve(true, test);
  }

  /**
   * Set `policy` up with `parameters` (a JSON object text) as Airlock does
   * when it loads it: decoded strictly, then the policy's own setup. Returns
   * the function that judges; throws the ParameterError that refuses them.
   *
   * @param {Parameters<typeof setUp>[0]} policy
   * @param {string} [parameters]
   */
  setup(policy, parameters = '{}') {
    return this.#serve(false, () => setUp(policy, parameters));
  }

  /**
   * Judge `action` with `judge` (what `setup` returned), with this host
   * serving the host functions.
   *
   * @param {(action: Action) => import('./decision.js').Decision} judge
   * @param {Action} action
   */
  evaluate(judge, action) {
    return this.#serve(action.kind === 'request', () => judge(action));
  }

  #serve(withHeaders, test) {
    const served = withHeaders ? this.headers : [];
    const previous = serveHost({
      log: (level, message) => void this.logs.push(`${level} ${message}`),
      nowUnixMs: () => this.nowUnixMs,
      toLocalTime: (zone, unixMs) => intlLocalTime(zone, Number(unixMs)),
      liveFigures: (pool) => this.pools.find((figures) => figures.pool === pool),
      requestHeader: (name) => served.find((header) => header.name === asciiLower(name))?.value,
      requestHeaders: () => served.map((header) => ({ ...header })),
    });
    try {
      return test();
    } finally {
      serveHost(previous);
    }
  }
}

/**
 * A request for `path` on host `example.com` by an anonymous client,
 * routed to route `default` and pool `app`; adjust the fields you care
 * about with `overrides` (`{ host: 'api.example.com' }`) and the
 * principal with `principal`.
 *
 * @param {string} method
 * @param {string} path
 * @param {Partial<ConstructorParameters<typeof import('./action.js').Request>[0]>} [overrides]
 * @param {Partial<ConstructorParameters<typeof import('./action.js').Principal>[0]>} [principal]
 */
export function testRequest(method, path, overrides = {}, principal = {}) {
  return new Action({
    subject: {
      tag: 'request',
      val: {
        method,
        scheme: 'http',
        host: 'example.com',
        path,
        query: undefined,
        clientAddress: '127.0.0.1',
        route: 'default',
        pool: 'app',
        bodySize: undefined,
        contentType: undefined,
        ...overrides,
      },
    },
    principal: { id: 'anonymous', groups: [], authenticatedBy: 'none', ...principal },
  });
}

/**
 * An action that is not a request: `subject` is a change or event variant,
 * e.g. `{ tag: 'event', val: { tag: 'failover', val: { route, fromPool, toPool } } }`.
 *
 * @param {import('./action.js').Subject} subject
 */
export function testAction(subject) {
  return new Action({ subject, principal: { id: 'airlock', groups: [], authenticatedBy: 'balancer' } });
}

/**
 * Figures of a healthy pool of `total` backends with no traffic.
 *
 * @param {string} pool
 * @param {number} total
 * @returns {PoolFigures}
 */
export function healthyPool(pool, total) {
  return { pool, healthyBackends: total, totalBackends: total, inFlight: 0, errorRate: 0, latencyP99Ms: undefined };
}
