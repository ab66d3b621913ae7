// Strict parameters: the keys and serde's words, as the Rust and Go SDKs refuse them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Approvers, ParameterError, decodeParameters, schema } from '../src/parameters.js';
import { Decision } from '../src/decision.js';

const rules = schema.object({
  rules: schema.array(
    schema.object(
      {
        methods: schema.optional(schema.array(schema.string())),
        paths: schema.optional(schema.array(schema.string())),
        hosts: schema.optional(schema.array(schema.string())),
        approvers: Approvers.schema,
      },
      { name: 'Rule' },
    ),
  ),
}, { name: 'Parameters' });

function refusal(json) {
  try {
    decodeParameters(json, rules);
  } catch (error) {
    assert.ok(error instanceof ParameterError, String(error));
    return [error.key, error.message];
  }
  assert.fail(`${json} was accepted`);
}

test('mistakes are refused with their key, in serde words', () => {
  assert.deepEqual(refusal('{}'), ['', 'missing field `rules`']);
  assert.deepEqual(refusal('{"rules": [{"methods": ["DELETE"]}]}'), ['rules[0]', 'missing field `approvers`']);
  assert.deepEqual(refusal('{"rules": [{"method": ["DELETE"], "approvers": {"groups": ["oncall"]}}]}'), [
    'rules[0].method',
    'unknown field `method`, expected one of `methods`, `paths`, `hosts`, `approvers`',
  ]);
  assert.deepEqual(refusal('{"rules": [{"methods": "DELETE", "approvers": {"groups": ["a"]}}]}'), [
    'rules[0].methods',
    'invalid type: string "DELETE", expected a sequence',
  ]);
  assert.deepEqual(refusal('{"rules": [{"approvers": {"groups": ["a"], "quorum": "two"}}]}'), [
    'rules[0].approvers.quorum',
    'invalid type: string "two", expected u32',
  ]);
  assert.deepEqual(refusal('{"rules": [{"approvers": {"groups": ["a"], "quorum": -1}}]}'), [
    'rules[0].approvers.quorum',
    'invalid value: integer `-1`, expected u32',
  ]);
  assert.deepEqual(refusal('{"rules": [{"approvers": {"groups": ["a"], "quorum": 1.5}}]}'), [
    'rules[0].approvers.quorum',
    'invalid type: floating point `1.5`, expected u32',
  ]);
  assert.deepEqual(refusal('{"rules": [7]}'), ['rules[0]', 'invalid type: integer `7`, expected struct Rule']);
  assert.deepEqual(refusal('[]'), ['', 'invalid type: sequence, expected struct Parameters']);
  assert.match(refusal('{').join(), /not valid JSON/);
});

test('optional fields take their defaults, also when null', () => {
  const { rules: [rule] } = decodeParameters('{"rules": [{"paths": null, "approvers": {"groups": ["oncall"]}}]}', rules);
  assert.equal(rule.methods, undefined);
  assert.equal(rule.paths, undefined);
  assert.deepEqual(rule.approvers, new Approvers({ groups: ['oncall'], quorum: 1, timeoutSeconds: 900 }));
});

test('approvers check their groups and quorum and hold with a grant', () => {
  assert.throws(() => new Approvers({ groups: [] }).check('rules[2].approvers'), {
    key: 'rules[2].approvers.groups',
    message: 'needs at least one group',
  });
  assert.throws(() => new Approvers({ groups: ['a'], quorum: 0 }).check(''), { key: 'quorum', message: 'must be at least 1' });
  assert.deepEqual(
    new Approvers({ groups: ['oncall'], quorum: 2, timeoutSeconds: 60, grantSeconds: 600 }).hold('why', 'POST x/y'),
    Decision.hold('why', ['oncall'], 2, 60_000).withGrant('POST x/y', 600_000),
  );
  assert.equal(Approvers.groups(['oncall']).hold('why', 'scope').val.grant, undefined);
  // Saturating, as in Rust: u64::MAX milliseconds.
  assert.equal(new Approvers({ groups: ['a'], timeoutSeconds: 2 ** 63 }).hold('r', 's').val.timeoutMs, (1n << 64n) - 1n);
});
