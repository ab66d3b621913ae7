/**
 * A policy, and how it becomes the component's `judge` export.
 *
 * A policy module's default export is `definePolicy({...})`: its metadata
 * (what `describe` answers), the shape of its parameters, and a `setup`
 * that turns the decoded parameters into what judges. Airlock calls the
 * contract's `setup` once when it loads the policy and keeps the memory it
 * leaves as the image every evaluation starts from, so decode, check and
 * derive in `setup`, never per evaluation.
 *
 * @module
 */

import { Action } from './action.js';
import { Decision } from './decision.js';
import * as host from './host.js';
import { ParameterError, decodeParameters, schema } from './parameters.js';

/**
 * @typedef {'request' | 'change' | 'event'} ActionKind
 *
 * @typedef {object} Metadata What `describe` answers.
 * @property {string} name
 * @property {string} version
 * @property {{ request: boolean, change: boolean, event: boolean }} judges
 *
 * @typedef {{ evaluate(action: Action): Decision } | ((action: Action) => Decision)} Judging
 *   What setup returns: an object with `evaluate`, or the function itself.
 *
 * @template P
 * @typedef {object} PolicyDefinition
 * @property {string} name
 * @property {string} version
 * @property {ActionKind[]} [judges] The kinds of action judged; default `['request']`.
 *   Airlock skips the policy for the others.
 * @property {import('./parameters.js').Schema<P>} [parameters] Their shape; by
 *   default anything is accepted and ignored (a policy without parameters).
 * @property {(parameters: P) => Judging} setup Check what the schema cannot
 *   (throw a ParameterError naming the key) and prepare what evaluations
 *   need. Host functions work here, except the request's headers.
 */

const KINDS = ['request', 'change', 'event'];

/**
 * Define a policy; export the result as the policy module's default.
 *
 * @template P
 * @param {PolicyDefinition<P>} definition
 */
export function definePolicy(definition) {
  const { name, version, judges = ['request'], parameters = schema.any(), setup } = definition;
  if (typeof name !== 'string' || typeof version !== 'string' || typeof setup !== 'function') {
    throw new TypeError('definePolicy needs a name, a version and a setup function');
  }
  for (const kind of judges) {
    if (!KINDS.includes(kind)) throw new TypeError(`definePolicy: unknown kind of action ${JSON.stringify(kind)}`);
  }
  /** @type {Metadata} */
  const metadata = {
    name,
    version,
    judges: { request: judges.includes('request'), change: judges.includes('change'), event: judges.includes('event') },
  };
  return Object.freeze({ metadata, parameters, setup });
}

/**
 * Decode `json` into a policy's parameters and set it up: what the exported
 * `setup` does, and what a native test calls (through `TestHost.setup`) to
 * get a policy to evaluate. Throws the ParameterError that refuses them.
 *
 * @template P
 * @param {ReturnType<typeof definePolicy<P>>} policy
 * @param {string} json
 * @returns {(action: Action) => Decision}
 */
export function setUp(policy, json) {
  const judging = policy.setup(decodeParameters(json, policy.parameters));
  if (typeof judging === 'function') return judging;
  if (judging && typeof judging.evaluate === 'function') return (action) => judging.evaluate(action);
  throw new TypeError(`the setup of ${policy.metadata.name} returned neither a function nor an object with evaluate`);
}

/** Log an exception that is about to trap the instance: its message is what Airlock reports. */
function logFailure(during, error) {
  const text = error instanceof Error ? `${error}${error.stack ? `\n${error.stack}` : ''}` : String(error);
  try {
    host.log('error', `${during}: ${text}`);
  } catch {
    // No host to tell: the trap is all there is.
  }
}

/**
 * The component's `judge` export for `policy`, served by `imports` (the
 * contract's `host` interface). The entry module `build.mjs` generates
 * calls this; policies don't.
 *
 * @param {ReturnType<typeof definePolicy>} policy
 * @param {import('./host.js').HostFunctions} imports
 */
export function judgeExports(policy, imports) {
  host.serveHost(imports);
  /** @type {((action: Action) => Decision) | null} */
  let evaluate = null;
  return {
    /** @param {string} parameters */
    setup(parameters) {
      if (evaluate !== null) throw { key: '', message: 'setup ran twice' };
      try {
        evaluate = setUp(policy, parameters);
      } catch (error) {
        // The bindings turn a thrown plain object into the `err` case.
        if (error instanceof ParameterError) throw { key: error.key, message: error.message };
        logFailure('setup', error);
        throw error;
      }
    },
    /** @param {ConstructorParameters<typeof Action>[0]} action */
    evaluate(action) {
      // Airlock always sets a policy up first: fail closed.
      if (evaluate === null) return Decision.deny(500, 'the policy was not set up');
      try {
        const decision = evaluate(new Action(action));
        if (!(decision instanceof Decision)) throw new TypeError(`evaluate returned ${String(decision)}, not a Decision`);
        return decision;
      } catch (error) {
        logFailure('evaluate', error);
        throw error;
      }
    },
    describe() {
      return policy.metadata;
    },
  };
}
