/**
 * Write Airlock policies in JavaScript, against the contract
 * `airlock:policy@0.2.0` (`wit/policy.wit`).
 *
 * A policy module's default export is `definePolicy({...})`; `build.mjs`
 * bundles it with this SDK and turns it into a WebAssembly component with
 * ComponentizeJS, which Airlock runs in a sandbox for every action it
 * judges. Natively, `airlock-policy-sdk/testing` serves the host functions,
 * so a policy's logic is unit-tested with `node --test`, without Wasm.
 *
 * ```js
 * import { definePolicy, schema, matching, Decision, ParameterError } from 'airlock-policy-sdk';
 *
 * export default definePolicy({
 *   name: 'no-deletes',
 *   version: '0.1.0',
 *   parameters: schema.object({ status: schema.u16() }, { name: 'Parameters' }),
 *   setup({ status }) {
 *     if (status < 400 || status > 599) throw new ParameterError('status', 'must be a 4xx or 5xx status');
 *     return (action) => {
 *       const request = action.request();
 *       return request && matching.method('DELETE', request.method)
 *         ? Decision.deny(status, 'deletes are not allowed here')
 *         : Decision.allow();
 *     };
 *   },
 * });
 * ```
 *
 * @module
 */

export { Action, Principal, Request } from './action.js';
export { Decision } from './decision.js';
export { definePolicy, setUp } from './policy.js';
export { Approvers, ParameterError, decodeParameters, keyField, keyIndex, schema } from './parameters.js';
export * as host from './host.js';
export * as matching from './matching.js';
export * as time from './time.js';
