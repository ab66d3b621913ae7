// The Rust business-hours unit tests, ported: native, with the SDK's TestHost
// (its clock fixed, local time from Node's Intl).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decision, ParameterError } from 'airlock-policy-sdk';
import { TestHost, testRequest, testAction } from 'airlock-policy-sdk/testing';
import policy from './policy.js';

const BERLIN = `{"zone": "Europe/Berlin", "hours": ["Mon-Fri 09:00-17:00"],
  "approvers": {"groups": ["oncall"], "quorum": 2, "timeout_seconds": 60}}`;

function judge(parameters, now, action) {
  const host = new TestHost().now(now);
  return host.evaluate(host.setup(policy, parameters), action);
}

test('writes pass inside hours in the zone', () => {
  // 08:00 UTC is 09:00 in Berlin (CET), 16:59 Berlin the last minute.
  assert.deepEqual(judge(BERLIN, '2026-11-23T08:00:00Z', testRequest('POST', '/x')), Decision.allow());
  assert.deepEqual(judge(BERLIN, '2026-11-23T15:59:59Z', testRequest('PUT', '/x')), Decision.allow());
});

test('writes are held outside hours', () => {
  assert.deepEqual(
    judge(BERLIN, '2026-11-23T07:59:59Z', testRequest('DELETE', '/x')),
    Decision.hold('DELETE /x is a write outside business hours (Mon-Fri 09:00-17:00 Europe/Berlin)', ['oncall'], 2, 60_000),
  );
  assert.equal(judge(BERLIN, '2026-11-23T16:00:00Z', testRequest('POST', '/x')).kind, 'hold');
});

test('a grant covers METHOD HOST/PATH', () => {
  const parameters = '{"zone": "UTC", "hours": [], "approvers": {"groups": ["oncall"], "grant_seconds": 1800}}';
  assert.deepEqual(
    judge(parameters, '2026-11-28T11:00:00Z', testRequest('PATCH', '/config')).val.grant,
    { scope: 'PATCH example.com/config', lifetimeMs: 1_800_000 },
  );
});

test('reads always pass, and other actions too', () => {
  assert.deepEqual(judge(BERLIN, '2026-11-28T03:00:00Z', testRequest('GET', '/x')), Decision.allow());
  assert.deepEqual(judge(BERLIN, '2026-11-28T03:00:00Z', testRequest('head', '/x')), Decision.allow());
  const change = testAction({ tag: 'change', val: { tag: 'add-backend', val: { pool: 'app', backend: '10.0.0.9:80' } } });
  assert.deepEqual(judge(BERLIN, '2026-11-28T03:00:00Z', change), Decision.allow());
});

test('bad parameters are refused with their key', () => {
  const refusal = (parameters) => {
    try {
      new TestHost().setup(policy, parameters);
    } catch (error) {
      assert.ok(error instanceof ParameterError, String(error));
      return error;
    }
    assert.fail(`${parameters} was accepted`);
  };
  const unknown = refusal('{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": ["oncall"]}}');
  assert.equal(unknown.key, 'zone');
  assert.match(unknown.message, /Nowhere\/Special/);
  assert.equal(refusal('{"zone": "UTC", "hour": ["Mon-Fri 09:00-17:00"], "approvers": {"groups": ["oncall"]}}').key, 'hour');
  const window = refusal('{"zone": "UTC", "hours": ["Mon 25:00-26:00"], "approvers": {"groups": ["oncall"]}}');
  assert.equal(window.key, 'hours[0]');
  assert.match(window.message, /bad time/);
});
