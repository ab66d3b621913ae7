/**
 * {{name}}: holds deletes (any case of the method) for approval by the
 * groups in its parameters (`{{name}}.toml`, default `oncall`), allows
 * everything else.
 *
 * Set up: `npm install`. Test: `npm test` and
 * `airlock policy test {{name}}.wasm cases.toml`. Build: `airlock policy build .`
 * (or `npm run build`).
 *
 * @module
 */

import { Approvers, Decision, definePolicy, matching, schema } from 'airlock-policy-sdk';

export default definePolicy({
  name: '{{name}}',
  version: '0.1.0',
  judges: ['request'],
  // `{{name}}.toml`, checked once when Airlock loads the policy: an unknown
  // key is refused with its line, and the previous version keeps serving.
  parameters: schema.object({ groups: schema.optional(schema.array(schema.string()), ['oncall']) }, { name: 'Parameters' }),
  setup({ groups }) {
    const approvers = Approvers.groups(groups);
    approvers.check('');
    return (action) => {
      const request = action.request();
      if (request && matching.method('DELETE', request.method)) {
        return approvers.hold(`DELETE ${request.path} needs approval`, 'DELETE');
      }
      return Decision.allow();
    };
  },
});
