/**
 * approval-rules-js: the JavaScript port of approval-rules, with the same
 * parameters, decisions (reasons, hold fields) and case table.
 *
 * Hold requests that match a rule until approvers approve. Each rule names
 * any of `methods`, `paths` and `hosts` (methods by name or `*`, paths and
 * hosts by glob) and the `approvers` who may let a matching request
 * through. A rule matches when every field it gives matches. The first
 * matching rule holds the request (`DELETE /x needs approval from
 * oncall`); with `grant_seconds` set, the approval also lets the same
 * principal's `METHOD HOST/PATH` (any query and body) pass for that long. A
 * request no rule matches passes. Bad parameters are refused when Airlock
 * loads the policy, with the key at fault (`rules[0].method`).
 *
 * ```toml
 * [[rules]]
 * methods = ["DELETE"]
 * approvers = { groups = ["oncall"] }
 *
 * [[rules]]
 * paths = ["/admin/**"]
 * hosts = ["*.example.com"]   # optional
 * approvers = { groups = ["oncall", "security"], quorum = 2, timeout_seconds = 900, grant_seconds = 3600 }
 * ```
 *
 * Build and test (from this directory, after `npm install`):
 *
 * ```sh
 * npm test
 * npm run build
 * airlock policy test approval-rules-js.wasm ../approval-rules/cases.toml
 * ```
 *
 * @module
 */

import { Approvers, Decision, definePolicy, matching, schema } from 'airlock-policy-sdk';

const patterns = () => schema.optional(schema.array(schema.string()));

const parameters = schema.object(
  {
    rules: schema.array(
      schema.object(
        // An absent field is undefined and matches every request.
        { methods: patterns(), paths: patterns(), hosts: patterns(), approvers: Approvers.schema },
        { name: 'Rule' },
      ),
    ),
  },
  { name: 'Parameters' },
);

export default definePolicy({
  name: 'approval-rules-js',
  version: '0.1.0',
  judges: ['request'],
  parameters,
  setup({ rules }) {
    rules.forEach((rule, index) => rule.approvers.check(`rules[${index}].approvers`));
    return (action) => {
      const request = action.request();
      if (!request) return Decision.allow();
      const rule = rules.find(({ methods, paths, hosts }) => matching.requestMatches(methods, paths, hosts, request));
      if (!rule) return Decision.allow();
      const reason = `${request.method} ${request.path} needs approval from ${rule.approvers.groups.join(' or ')}`;
      // A grant covers this method on this host and path, any query and
      // body: `POST api.example.com/admin/users`.
      return rule.approvers.hold(reason, `${request.method} ${request.host}${request.path}`);
    };
  },
});
