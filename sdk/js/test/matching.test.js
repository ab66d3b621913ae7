// The Rust SDK's matching tests, ported: globs, prefixes, methods, request rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { glob, pathUnder, method, requestMatches } from '../src/matching.js';

test('a single star stays within a segment', () => {
  assert.ok(glob('/users/*/keys', '/users/alice/keys'));
  assert.ok(!glob('/users/*/keys', '/users/alice/bob/keys'));
  assert.ok(glob('/admin/*', '/admin/'));
  assert.ok(!glob('/admin/*', '/admin/a/b'));
});

test('a double star crosses segments', () => {
  assert.ok(glob('/admin/**', '/admin/a/b/c'));
  assert.ok(glob('/admin/**', '/admin/'));
  assert.ok(!glob('/admin/**', '/administrator'));
  assert.ok(!glob('/admin/**', '/admin'));
  assert.ok(glob('**.json', '/a/b/c.json'));
});

test('question marks and literals', () => {
  assert.ok(glob('/v?/items', '/v2/items'));
  assert.ok(!glob('/v?/items', '/v/items'));
  assert.ok(glob('*.example.com', 'api.example.com'));
  assert.ok(!glob('*.example.com', 'example.com'));
  assert.ok(!glob('/a', '/ab'));
  // Bytes, as in Rust: `?` is one UTF-8 byte, so a two-byte character needs two.
  assert.ok(!glob('/?', '/é'));
  assert.ok(glob('/??', '/é'));
});

test('pathological patterns stay linear', () => {
  const text = `/${'a'.repeat(16 * 1024)}`;
  assert.ok(!glob('**a**a**a**a**a**a**a**b', text));
  assert.ok(glob('**a**a**a**a**a**a**a**', text));
});

test('prefixes match whole segments', () => {
  assert.ok(pathUnder('/api', '/api'));
  assert.ok(pathUnder('/api/', '/api/users'));
  assert.ok(!pathUnder('/api', '/apiary'));
  assert.ok(pathUnder('/', '/anything'));
});

test('methods ignore case and a star matches all', () => {
  assert.ok(method('delete', 'DELETE'));
  assert.ok(method('*', 'PATCH'));
  assert.ok(!method('GET', 'POST'));
});

test('a rule matches when every field it gives matches', () => {
  const request = { method: 'POST', path: '/admin/users', host: 'api.example.com' };
  assert.ok(requestMatches(undefined, undefined, undefined, request));
  assert.ok(requestMatches(['post'], ['/admin/**'], ['*.EXAMPLE.com'], request));
  assert.ok(!requestMatches([], undefined, undefined, request), 'an empty list matches nothing');
  assert.ok(!requestMatches(undefined, ['/admin/**'], ['example.com'], request));
});
