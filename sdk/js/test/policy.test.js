// A policy end to end, natively: definePolicy, the TestHost, and the component glue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decision, ParameterError, definePolicy, matching, schema, host } from '../src/index.js';
import { judgeExports } from '../src/policy.js';
import { TestHost, testRequest, testAction, healthyPool } from '../src/testing.js';

const noDeletes = definePolicy({
  name: 'no-deletes',
  version: '0.1.0',
  judges: ['request', 'event'],
  parameters: schema.object({ status: schema.optional(schema.u16(), 403) }, { name: 'Parameters' }),
  setup({ status }) {
    if (status < 400 || status > 599) throw new ParameterError('status', 'must be a 4xx or 5xx status');
    host.log('info', `set up at ${host.nowUnixMs()}`);
    return (action) => {
      const request = action.request();
      if (!request) return Decision.allow();
      if (request.header('x-reason')?.startsWith('incident-')) return Decision.allowWithHeader('X-Waved', 'yes');
      if (matching.method('DELETE', request.method)) return Decision.deny(status, 'deletes are not allowed here');
      return Decision.allow();
    };
  },
});

test('describe says what it judges', () => {
  assert.deepEqual(noDeletes.metadata, { name: 'no-deletes', version: '0.1.0', judges: { request: true, change: false, event: true } });
});

test('the test host serves clock, headers and figures, and keeps the log', () => {
  const testHost = new TestHost().now('2026-11-23T10:00:00Z').header('X-Reason', 'incident-7').pool(healthyPool('app', 2));
  const judge = testHost.setup(noDeletes, '{"status": 451}');
  assert.deepEqual(testHost.logs, ['info set up at 1795428000000']);
  assert.deepEqual(testHost.evaluate(judge, testRequest('DELETE', '/x')), Decision.allowWithHeader('x-waved', 'yes'));
  assert.deepEqual(new TestHost().evaluate(judge, testRequest('delete', '/x')), Decision.deny(451, 'deletes are not allowed here'));
  assert.equal(testHost.run(() => testRequest('GET', '/').figures('app').healthyBackends), 2);
  const failover = testAction({ tag: 'event', val: { tag: 'failover', val: { route: 'web', fromPool: 'a', toPool: 'b' } } });
  assert.equal(failover.request(), undefined);
  assert.equal(testHost.run(() => host.header('x-reason')), 'incident-7');
});

test('headers answer nothing during setup or for other actions', () => {
  const peek = definePolicy({
    name: 'peek', version: '0', judges: ['request', 'change'],
    setup() {
      const atSetup = host.header('x-a');
      return () => Decision.deny(400, `${atSetup} ${host.header('x-a')}`);
    },
  });
  const testHost = new TestHost().header('x-a', 'b');
  const judge = testHost.setup(peek);
  assert.equal(testHost.evaluate(judge, testRequest('GET', '/')).val.reason, 'undefined b');
  const change = testAction({ tag: 'change', val: { tag: 'reset-overlay', val: { changes: 2 } } });
  assert.equal(testHost.evaluate(judge, change).val.reason, 'undefined undefined');
});

test('host functions outside a host say how to fix it', () => {
  assert.throws(() => host.nowUnixMs(), /TestHost/);
});

test('the component glue refuses, judges, logs and fails closed', () => {
  const logs = [];
  const imports = {
    log: (level, message) => logs.push(`${level} ${message}`),
    nowUnixMs: () => 5n,
    toLocalTime: () => undefined,
    liveFigures: () => undefined,
    requestHeader: () => undefined,
    requestHeaders: () => [],
  };
  const judge = judgeExports(noDeletes, imports);
  assert.deepEqual(judge.describe(), noDeletes.metadata);
  const raw = {
    subject: { tag: 'request', val: { method: 'DELETE', scheme: 'http', host: 'h', path: '/', query: undefined, clientAddress: '::1', route: 'r', pool: 'p', bodySize: 12n, contentType: undefined } },
    principal: { id: 'alice', groups: ['dev'], authenticatedBy: 'token' },
  };
  assert.deepEqual(judge.evaluate(raw), Decision.deny(500, 'the policy was not set up'));
  assert.throws(() => judge.setup('{"status": 200}'), (thrown) => !(thrown instanceof Error) && thrown.key === 'status');
  assert.throws(() => judge.setup('{"status": "x"}'), (thrown) => thrown.message === 'invalid type: string "x", expected u16');
  judge.setup('{}');
  assert.deepEqual(logs, ['info set up at 5']);
  assert.deepEqual(judge.evaluate(raw), Decision.deny(403, 'deletes are not allowed here'));
  assert.throws(() => judge.setup('{}'), { key: '', message: 'setup ran twice' });

  const broken = judgeExports(definePolicy({ name: 'b', version: '0', setup: () => () => undefined }), imports);
  broken.setup('{}');
  assert.throws(() => broken.evaluate(raw), TypeError);
  assert.match(logs.at(-1), /^error evaluate: TypeError: evaluate returned undefined, not a Decision/);
});
