// Native unit tests: `npm test`, no Wasm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decision } from 'airlock-policy-sdk';
import { TestHost, testRequest } from 'airlock-policy-sdk/testing';
import policy from './policy.js';

test('deletes are held in any case and reads pass', () => {
  const host = new TestHost();
  const judge = host.setup(policy, '{}');
  assert.equal(host.evaluate(judge, testRequest('DELETE', '/x')).kind, 'hold');
  assert.equal(host.evaluate(judge, testRequest('delete', '/x')).kind, 'hold');
  assert.deepEqual(host.evaluate(judge, testRequest('GET', '/x')), Decision.allow());
});

test('unknown keys are refused', () => {
  assert.throws(() => new TestHost().setup(policy, '{"group": ["oncall"]}'), { key: 'group' });
});
