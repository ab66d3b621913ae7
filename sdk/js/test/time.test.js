// The Rust SDK's window tests, ported, and the zone check through a TestHost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Window, parseWindows, checkZone } from '../src/time.js';
import { ParameterError } from '../src/parameters.js';
import { TestHost, intlLocalTime } from '../src/testing.js';

const at = (weekday, hour, minute) => ({ weekday, hour, minute });

test('business hours cover weekdays only', () => {
  const window = Window.parse('Mon-Fri 09:00-17:00');
  assert.ok(window.contains(at(1, 9, 0)));
  assert.ok(window.contains(at(5, 16, 59)));
  assert.ok(!window.contains(at(5, 17, 0)));
  assert.ok(!window.contains(at(6, 12, 0)));
});

test('windows past midnight belong to the day they start', () => {
  const window = Window.parse('Fri 22:00-06:00');
  assert.ok(window.contains(at(5, 23, 0)));
  assert.ok(window.contains(at(6, 5, 59)));
  assert.ok(!window.contains(at(5, 5, 0)));
  assert.ok(!window.contains(at(6, 22, 30)));
});

test('day lists, wrapping ranges and star', () => {
  assert.ok(Window.parse('Sat,Sun 00:00-24:00').contains(at(7, 23, 59)));
  assert.ok(Window.parse('Fri-Mon 10:00-11:00').contains(at(1, 10, 30)));
  assert.ok(!Window.parse('Fri-Mon 10:00-11:00').contains(at(3, 10, 30)));
  assert.ok(Window.parse('* 00:00-24:00').contains(at(3, 0, 0)));
});

test('malformed windows say what is wrong', () => {
  assert.throws(() => Window.parse('Mon-Fri'), /DAYS HH:MM-HH:MM/);
  assert.throws(() => Window.parse('Funday 09:00-10:00'), /unknown day "Funday"/);
  assert.throws(() => Window.parse('Mon 9-10'), /^Error: window "Mon 9-10": bad time "9" \(use HH:MM, 00:00 to 24:00\)$/);
  assert.throws(() => Window.parse('Mon 24:30-25:00'), /bad time/);
  assert.throws(() => Window.parse('Mon -1:00-02:00'), /bad time/);
});

test('a bad window is refused at its index', () => {
  assert.throws(
    () => parseWindows('hours', ['Mon-Fri 09:00-17:00', 'Sat 25:00-26:00']),
    (error) => error instanceof ParameterError && error.key === 'hours[1]' && /bad time "25:00"/.test(error.message),
  );
});

test('zones are checked through the host', () => {
  new TestHost().run(() => {
    checkZone('zone', 'Europe/Berlin');
    assert.throws(() => checkZone('zone', 'Europe/Atlantis'), { key: 'zone', message: 'unknown time zone "Europe/Atlantis"' });
  });
});

test('the test host converts like Airlock does', () => {
  // 2026-11-23 is a Monday; Berlin is UTC+1 then, UTC+2 in July.
  assert.deepEqual(intlLocalTime('Europe/Berlin', Date.parse('2026-11-23T10:00:00Z')), {
    year: 2026, month: 11, day: 23, hour: 11, minute: 0, second: 0, weekday: 1,
    utcOffsetSeconds: 3600, abbreviation: 'GMT+1',
  });
  assert.equal(intlLocalTime('Europe/Berlin', Date.parse('2026-07-05T22:30:00Z')).weekday, 1);
  assert.equal(intlLocalTime('Europe/Berlin', Date.parse('2026-07-05T22:30:00Z')).utcOffsetSeconds, 7200);
  assert.equal(intlLocalTime('UTC', 0).abbreviation, 'UTC');
  assert.equal(intlLocalTime('Nowhere/Special', 0), undefined);
});
