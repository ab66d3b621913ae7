/**
 * The action a policy judges, as the contract's types arrive in JavaScript:
 * records are objects with camelCase fields (`clientAddress`,
 * `authenticatedBy`), variants are `{ tag, val }` with the WIT case name as
 * the tag (`'request'`, `'shift-traffic'`), enums are their WIT names
 * (`'token'`), options are a value or `undefined`. The classes here add the
 * lookups of the Rust and Go SDKs: `action.request()`,
 * `request.header(name)`, `request.isWrite()`, `principal.inGroup(group)`.
 *
 * @module
 */

import * as host from './host.js';

/**
 * @typedef {'none' | 'token' | 'mtls' | 'balancer'} Authentication
 *
 * @typedef {object} BackendChange
 * @property {string} pool
 * @property {string} backend `host:port`.
 *
 * @typedef {{ tag: 'add-backend' | 'remove-backend' | 'drain-backend', val: BackendChange }
 *   | { tag: 'set-weights', val: { pool: string, weights: { backend: string, weight: number }[] } }
 *   | { tag: 'shift-traffic', val: { route: string, fromPool: string, toPool: string, percent: number } }
 *   | { tag: 'reset-overlay', val: { changes: number } }
 *   | { tag: 'reload-config', val: { sha256: string, summary: string } }} Change
 *
 * @typedef {{ tag: 'failover', val: { route: string, fromPool: string, toPool: string } }
 *   | { tag: 'eject-outlier', val: { pool: string, backend: string, evidence: string } }
 *   | { tag: 'spill-surge', val: { route: string, fromPool: string, toPool: string, percent: number } }} Event
 *
 * @typedef {{ tag: 'request', val: Request } | { tag: 'change', val: Change }
 *   | { tag: 'event', val: Event }} Subject
 */

const SAFE_METHODS = ['get', 'head', 'options', 'trace'];

/** Lower-case ASCII letters only, as the Rust SDK compares names. */
export function asciiLower(text) {
  return text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

/** A client request that matched a route and is about to be forwarded. */
export class Request {
  /**
   * @param {object} fields The contract's `request` record.
   * @param {string} fields.method
   * @param {string} fields.scheme `http` or `https`.
   * @param {string} fields.host Without port, lower case.
   * @param {string} fields.path Normalized: what is judged is what is forwarded.
   * @param {string} [fields.query] Without `?`.
   * @param {string} fields.clientAddress
   * @param {string} fields.route
   * @param {string} fields.pool
   * @param {number | bigint} [fields.bodySize] From `content-length`.
   * @param {string} [fields.contentType]
   */
  constructor(fields) {
    this.method = fields.method;
    this.scheme = fields.scheme;
    this.host = fields.host;
    this.path = fields.path;
    this.query = fields.query ?? undefined;
    this.clientAddress = fields.clientAddress;
    this.route = fields.route;
    this.pool = fields.pool;
    /** @type {number | undefined} */
    this.bodySize = fields.bodySize == null ? undefined : Number(fields.bodySize);
    this.contentType = fields.contentType ?? undefined;
  }

  /**
   * The first value of header `name` (any case), asked of the host: a
   * policy pays only for the headers it reads. Credentials arrive as
   * `[redacted]`.
   *
   * @param {string} name
   */
  header(name) {
    return host.header(name);
  }

  /** Every header, in order, names in lower case. */
  headers() {
    return host.headers();
  }

  /** True for methods that change state: anything but GET, HEAD, OPTIONS and TRACE, in any case. */
  isWrite() {
    return !SAFE_METHODS.includes(asciiLower(this.method));
  }
}

/** Who asks for the action. */
export class Principal {
  /**
   * @param {object} fields
   * @param {string} fields.id Stable subject, e.g. `alice`, or `airlock` for events.
   * @param {string[]} fields.groups
   * @param {Authentication} fields.authenticatedBy
   */
  constructor(fields) {
    this.id = fields.id;
    this.groups = fields.groups;
    this.authenticatedBy = fields.authenticatedBy;
  }

  /** True if the principal belongs to `group`. */
  inGroup(group) {
    return this.groups.includes(group);
  }
}

/** What is about to happen, and who asks. */
export class Action {
  /**
   * @param {object} fields
   * @param {Subject} fields.subject
   * @param {Principal | ConstructorParameters<typeof Principal>[0]} fields.principal
   */
  constructor({ subject, principal }) {
    this.subject =
      subject.tag === 'request' && !(subject.val instanceof Request)
        ? { tag: 'request', val: new Request(subject.val) }
        : subject;
    this.principal = principal instanceof Principal ? principal : new Principal(principal);
  }

  /** `request`, `change` or `event`. */
  get kind() {
    return this.subject.tag;
  }

  /** The request being judged, if this action is one. */
  request() {
    return this.subject.tag === 'request' ? /** @type {Request} */ (this.subject.val) : undefined;
  }

  /** The operator's change (`{ tag: 'shift-traffic', val }`, ...), if this action is one. */
  change() {
    return this.subject.tag === 'change' ? /** @type {Change} */ (this.subject.val) : undefined;
  }

  /** The balancer's event (`{ tag: 'failover', val }`, ...), if this action is one. */
  event() {
    return this.subject.tag === 'event' ? /** @type {Event} */ (this.subject.val) : undefined;
  }

  /**
   * The live figures of `pool`, if there is such a pool.
   *
   * @param {string} pool
   */
  figures(pool) {
    return host.poolFigures(pool);
  }
}
