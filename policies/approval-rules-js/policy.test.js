// The Rust approval-rules unit tests, ported: native, with the SDK's TestHost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decision, ParameterError } from 'airlock-policy-sdk';
import { TestHost, testRequest, testAction } from 'airlock-policy-sdk/testing';
import policy from './policy.js';

const QUICKSTART = `{"rules": [
  {"methods": ["DELETE"], "approvers": {"groups": ["oncall"]}},
  {"paths": ["/admin/**"], "approvers": {"groups": ["oncall"], "quorum": 1, "grant_seconds": 600}}
]}`;

function judge(parameters, action) {
  const host = new TestHost();
  return host.evaluate(host.setup(policy, parameters), action);
}

test('the first matching rule holds', () => {
  assert.deepEqual(
    judge(QUICKSTART, testRequest('DELETE', '/admin/users/7')),
    Decision.hold('DELETE /admin/users/7 needs approval from oncall', ['oncall'], 1, 900_000),
  );
  assert.deepEqual(
    judge(QUICKSTART, testRequest('POST', '/admin/users')),
    Decision.hold('POST /admin/users needs approval from oncall', ['oncall'], 1, 900_000).withGrant(
      'POST example.com/admin/users',
      600_000,
    ),
  );
});

test('unmatched requests pass', () => {
  assert.deepEqual(judge(QUICKSTART, testRequest('GET', '/administrator')), Decision.allow());
  assert.deepEqual(judge(QUICKSTART, testRequest('POST', '/orders')), Decision.allow());
});

test("a rule's hosts must match too, lower-cased", () => {
  const parameters = '{"rules": [{"paths": ["/admin/**"], "hosts": ["*.EXAMPLE.com"], "approvers": {"groups": ["oncall"]}}]}';
  assert.equal(judge(parameters, testRequest('POST', '/admin/users')).kind, 'allow');
  assert.equal(judge(parameters, testRequest('POST', '/admin/users', { host: 'api.example.com' })).kind, 'hold');
});

test('events are allowed', () => {
  const failover = testAction({ tag: 'event', val: { tag: 'failover', val: { route: 'web', fromPool: 'a', toPool: 'b' } } });
  assert.deepEqual(judge(QUICKSTART, failover), Decision.allow());
});

test('bad parameters are refused with their key', () => {
  for (const [parameters, key, message] of [
    ['{}', '', 'missing field `rules`'],
    ['{"rules": [{"methods": ["DELETE"]}]}', 'rules[0]', 'missing field `approvers`'],
    ['{"rules": [{"method": ["DELETE"], "approvers": {"groups": ["oncall"]}}]}', 'rules[0].method', 'unknown field `method`'],
    ['{"rules": [{"approvers": {"groups": []}}]}', 'rules[0].approvers.groups', 'at least one group'],
    ['{"rules": [{"methods": ["GET"], "approvers": {"groups": ["a"]}}, {"approvers": {"groups": ["oncall"], "quorum": 0}}]}', 'rules[1].approvers.quorum', 'at least 1'],
    ['{"rules": [{"methods": "DELETE", "approvers": {"groups": ["oncall"]}}]}', 'rules[0].methods', 'invalid type'],
  ]) {
    assert.throws(
      () => new TestHost().setup(policy, parameters),
      (error) => error instanceof ParameterError && error.key === key && error.message.includes(message),
      parameters,
    );
  }
});
