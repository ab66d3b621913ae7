/**
 * Reading a policy's parameters strictly, as the Rust SDK does with serde
 * and `deny_unknown_fields`: a policy declares their shape with `schema`,
 * and an unknown key, a missing field or a value of the wrong type refuses
 * them with a {@link ParameterError} whose key is the path of the key at
 * fault (`rules[2].methods`), worded as serde words it, so that a JS, Go
 * and Rust port of a policy refuse alike and Airlock can point at the line
 * of the TOML file.
 *
 * ```js
 * const parameters = schema.object({
 *   paths: schema.array(schema.string()),
 *   status: schema.optional(schema.u16(), 403),
 * }, { name: 'Parameters' });
 * ```
 *
 * One difference: JSON.parse does not tell `1.0` from `1`, so an integral
 * float is taken where serde would refuse it (`1.5` is refused).
 *
 * @module
 */

import { Decision, saturatingMillis } from './decision.js';

/** Refuses a policy's parameters: the contract's `parameter-error`. */
export class ParameterError extends Error {
  /**
   * @param {string} key The path of the key at fault (`rules[2].methods`:
   *   keys joined by dots, `[i]` for elements); empty when the parameters
   *   as a whole are wrong.
   * @param {string} message What is wrong, without the key.
   */
  constructor(key, message) {
    super(message);
    this.name = 'ParameterError';
    this.key = key === '.' ? '' : key;
  }

  /** `KEY: MESSAGE`, as Airlock shows it. */
  toString() {
    return this.key ? `${this.key}: ${this.message}` : this.message;
  }
}

/**
 * The path of field `name` inside the table at `key`.
 *
 * @param {string} key
 * @param {string} name
 */
export function keyField(key, name) {
  return key ? `${key}.${name}` : name;
}

/**
 * The path of element `index` of the array at `key`.
 *
 * @param {string} key
 * @param {number} index
 */
export function keyIndex(key, index) {
  return `${key}[${index}]`;
}

/**
 * A parameter's shape: `decode` checks a parsed JSON value found at `key`
 * and returns what the policy gets, or throws a ParameterError.
 *
 * @template T
 * @typedef {object} Schema
 * @property {string} expected What serde calls the type, e.g. `u32`, `a sequence`.
 * @property {(value: unknown, key: string) => T} decode
 * @property {boolean} [optional] A field that may be absent (or null).
 * @property {T} [fallback] What an absent optional field decodes to.
 */

/** A JSON value described as serde_json's `invalid type` messages do. */
function found(value) {
  switch (typeof value) {
    case 'string':
      return `string ${JSON.stringify(value)}`;
    case 'number':
      return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${value}\``;
    case 'boolean':
      return `boolean \`${value}\``;
  }
  if (value === null) return 'null';
  return Array.isArray(value) ? 'sequence' : 'map';
}

function invalidType(value, expected, key) {
  return new ParameterError(key, `invalid type: ${found(value)}, expected ${expected}`);
}

function isTable(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * @param {string} name
 * @param {number | bigint} min
 * @param {number | bigint} max
 * @returns {Schema<number>}
 */
function integer(name, min, max) {
  return {
    expected: name,
    decode(value, key) {
      if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidType(value, name, key);
      if (value < min || value > max) {
        throw new ParameterError(key, `invalid value: integer \`${value}\`, expected ${name}`);
      }
      return value;
    },
  };
}

/** Constructors of parameter shapes, named as the Rust types a Rust port would use. */
export const schema = {
  /** @returns {Schema<string>} */
  string: () => ({
    expected: 'a string',
    decode(value, key) {
      if (typeof value !== 'string') throw invalidType(value, 'a string', key);
      return value;
    },
  }),
  /** @returns {Schema<boolean>} */
  bool: () => ({
    expected: 'a boolean',
    decode(value, key) {
      if (typeof value !== 'boolean') throw invalidType(value, 'a boolean', key);
      return value;
    },
  }),
  u8: () => integer('u8', 0, 0xff),
  u16: () => integer('u16', 0, 0xffff),
  u32: () => integer('u32', 0, 0xffff_ffff),
  /** Above 2^53 the value is the nearest double. */
  u64: () => integer('u64', 0, 2 ** 64 - 1),
  i32: () => integer('i32', -(2 ** 31), 2 ** 31 - 1),
  i64: () => integer('i64', -(2 ** 63), 2 ** 63 - 1),
  /** @returns {Schema<number>} */
  f64: () => ({
    expected: 'f64',
    decode(value, key) {
      if (typeof value !== 'number') throw invalidType(value, 'f64', key);
      return value;
    },
  }),
  /** Anything, as it is: the parameters of a policy that takes none. */
  any: () => ({ expected: 'any value', decode: (value) => value }),

  /**
   * A list of `item`s.
   *
   * @template T
   * @param {Schema<T>} item
   * @returns {Schema<T[]>}
   */
  array: (item) => ({
    expected: 'a sequence',
    decode(value, key) {
      if (!Array.isArray(value)) throw invalidType(value, 'a sequence', key);
      return value.map((element, index) => item.decode(element, keyIndex(key, index)));
    },
  }),

  /**
   * A table with string keys and `item` values, e.g. weights by backend.
   *
   * @template T
   * @param {Schema<T>} item
   * @returns {Schema<Map<string, T>>}
   */
  map: (item) => ({
    expected: 'a map',
    decode(value, key) {
      if (!isTable(value)) throw invalidType(value, 'a map', key);
      return new Map(Object.entries(value).map(([name, v]) => [name, item.decode(v, keyField(key, name))]));
    },
  }),

  /**
   * A table with exactly these `fields` (each a schema; wrap optional ones
   * in `schema.optional`): an unknown key is refused, a missing required
   * field too. Decodes to an object with the same keys, or to what
   * `build(fields)` makes of it.
   *
   * @param {Record<string, Schema<any>>} fields
   * @param {{ name?: string, build?: (decoded: Record<string, any>) => any }} [options]
   *   `name`: the struct's name for messages (`expected struct Rule`).
   * @returns {Schema<any>}
   */
  object: (fields, { name, build } = {}) => {
    const names = Object.keys(fields);
    const expected = name ? `struct ${name}` : 'a map';
    return {
      expected,
      decode(value, key) {
        if (!isTable(value)) throw invalidType(value, expected, key);
        /** @type {Record<string, any>} */
        const decoded = {};
        // In document order, as serde meets them: the first bad key wins.
        for (const [field, v] of Object.entries(value)) {
          if (!Object.hasOwn(fields, field)) throw new ParameterError(keyField(key, field), unknownField(field, names));
          const shape = fields[field];
          decoded[field] = shape.optional && v === null ? shape.fallback : shape.decode(v, keyField(key, field));
        }
        for (const field of names) {
          if (Object.hasOwn(decoded, field)) continue;
          if (!fields[field].optional) throw new ParameterError(key, `missing field \`${field}\``);
          decoded[field] = fields[field].fallback;
        }
        return build ? build(decoded) : decoded;
      },
    };
  },

  /**
   * A field that may be absent (or null): then it is `fallback`.
   *
   * @template T
   * @param {Schema<T>} inner
   * @param {T} [fallback]
   * @returns {Schema<T>}
   */
  optional: (inner, fallback) => ({ ...inner, optional: true, fallback }),
};

/** serde's words for an unknown key. */
function unknownField(field, names) {
  const message = `unknown field \`${field}\``;
  if (names.length === 0) return `${message}, there are no fields`;
  if (names.length === 1) return `${message}, expected \`${names[0]}\``;
  return `${message}, expected one of ${names.map((n) => `\`${n}\``).join(', ')}`;
}

/**
 * Parse `text` (a JSON object) and decode it with `shape`.
 *
 * @template T
 * @param {string} text
 * @param {Schema<T>} shape
 * @returns {T}
 */
export function decodeParameters(text, shape) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ParameterError('', `the parameters are not valid JSON: ${error.message}`);
  }
  return shape.decode(value, '');
}

/**
 * Who may approve a hold, as every holding policy reads it from its
 * parameters (`Approvers.schema`):
 *
 * ```toml
 * [approvers]
 * groups = ["oncall"]
 * quorum = 1              # distinct approvers, default 1
 * timeout_seconds = 900   # default 15 minutes
 * grant_seconds = 3600    # optional: after approval, same-scope actions pass this long
 * ```
 */
export class Approvers {
  /**
   * @param {object} fields
   * @param {string[]} fields.groups Members of any of these groups may approve.
   * @param {number} [fields.quorum] Distinct approvers needed; default 1.
   * @param {number} [fields.timeoutSeconds] How long the action waits; default 900.
   * @param {number} [fields.grantSeconds] If set, an approval opens a grant of this lifetime.
   */
  constructor({ groups, quorum = 1, timeoutSeconds = 15 * 60, grantSeconds = undefined }) {
    this.groups = groups;
    this.quorum = quorum;
    this.timeoutSeconds = timeoutSeconds;
    this.grantSeconds = grantSeconds;
  }

  /** The `[approvers]` table, decoded into an `Approvers`. */
  static schema = schema.object(
    {
      groups: schema.array(schema.string()),
      quorum: schema.optional(schema.u32(), 1),
      timeout_seconds: schema.optional(schema.u64(), 15 * 60),
      grant_seconds: schema.optional(schema.u64()),
    },
    {
      name: 'Approvers',
      build: (table) =>
        new Approvers({
          groups: table.groups,
          quorum: table.quorum,
          timeoutSeconds: table.timeout_seconds,
          grantSeconds: table.grant_seconds,
        }),
    },
  );

  /**
   * Approvers from `groups`, quorum 1, 15 minutes, no grant.
   *
   * @param {string[]} groups
   */
  static groups(groups) {
    return new Approvers({ groups: [...groups] });
  }

  /**
   * Check what the schema cannot: at least one group and a quorum of at
   * least 1. `at` is the table's key, e.g. `rules[2].approvers` (empty at
   * the top); throws a ParameterError at `AT.groups` or `AT.quorum`.
   *
   * @param {string} at
   */
  check(at) {
    if (this.groups.length === 0) throw new ParameterError(keyField(at, 'groups'), 'needs at least one group');
    if (this.quorum === 0) throw new ParameterError(keyField(at, 'quorum'), 'must be at least 1');
  }

  /**
   * Hold for these approvers; with `grantSeconds` set, the approval opens
   * a grant over `scope`.
   *
   * @param {string} reason
   * @param {string} scope
   */
  hold(reason, scope) {
    const hold = Decision.hold(reason, this.groups, this.quorum, saturatingMillis(this.timeoutSeconds));
    return this.grantSeconds === undefined ? hold : hold.withGrant(scope, saturatingMillis(this.grantSeconds));
  }
}
