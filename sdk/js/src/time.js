/**
 * Weekly time windows in a named time zone, e.g. business hours
 * `Mon-Fri 09:00-17:00` in `Europe/Berlin`, as the Rust SDK's `time`
 * module has them, with the same messages.
 *
 * Airlock resolves the zone (`host.localNow`; the sandbox has no tz
 * database), so a window means the same in every SDK and in
 * `airlock policy test`.
 *
 * @module
 */

import * as host from './host.js';
import { asciiLower } from './action.js';
import { ParameterError, keyIndex } from './parameters.js';

const DAY_NAMES = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/**
 * Check, in setup, that the zone given at parameter `key` is one Airlock
 * knows (its bundled IANA database); throws a ParameterError otherwise.
 *
 * @param {string} key
 * @param {string} zone
 */
export function checkZone(key, zone) {
  if (host.localTime(zone, 0) === undefined) {
    throw new ParameterError(key, `unknown time zone ${JSON.stringify(zone)}`);
  }
}

/** A weekly window: some days, and a time range on each of them. */
export class Window {
  /**
   * @param {number[]} days ISO weekdays, 1 = Monday to 7 = Sunday.
   * @param {number} start Minutes after midnight, inclusive.
   * @param {number} end Minutes after midnight, exclusive; 1440 for `24:00`.
   */
  constructor(days, start, end) {
    this.days = days;
    this.start = start;
    this.end = end;
  }

  /**
   * Parse `DAYS HH:MM-HH:MM`, where DAYS is a day (`Sat`), a range
   * (`Mon-Fri`, `Fri-Mon` wraps), a comma list (`Sat,Sun`) or `*`. A range
   * whose end is before its start runs past midnight (`22:00-06:00`).
   * Throws an Error naming what did not parse.
   *
   * @param {string} text
   */
  static parse(text) {
    const quoted = JSON.stringify(text);
    const trimmed = text.trim();
    const space = trimmed.indexOf(' ');
    if (space < 0) throw new Error(`window ${quoted}: expected \`DAYS HH:MM-HH:MM\``);
    const hours = trimmed.slice(space + 1).trim();
    const dash = hours.indexOf('-');
    if (dash < 0) throw new Error(`window ${quoted}: expected a time range \`HH:MM-HH:MM\``);
    try {
      return new Window(
        parseDays(trimmed.slice(0, space)),
        parseMinutes(hours.slice(0, dash)),
        parseMinutes(hours.slice(dash + 1)),
      );
    } catch (error) {
      throw new Error(`window ${quoted}: ${error.message}`);
    }
  }

  /**
   * True if `time` falls inside the window. For a window past midnight the
   * hours after midnight belong to the listed day's night: `Fri
   * 22:00-06:00` covers Friday 23:00 and Saturday 05:00.
   *
   * @param {{ weekday: number, hour: number, minute: number }} time
   */
  contains(time) {
    const minute = time.hour * 60 + time.minute;
    if (this.start <= this.end) {
      return this.days.includes(time.weekday) && this.start <= minute && minute < this.end;
    }
    const previousDay = time.weekday === 1 ? 7 : time.weekday - 1;
    return (
      (this.days.includes(time.weekday) && minute >= this.start) ||
      (this.days.includes(previousDay) && minute < this.end)
    );
  }
}

/**
 * Parse the windows of the parameter at `key` (e.g. `hours`); throws a
 * ParameterError at the first bad one (`hours[1]`).
 *
 * @param {string} key
 * @param {string[]} texts
 */
export function parseWindows(key, texts) {
  return texts.map((text, index) => {
    try {
      return Window.parse(text);
    } catch (error) {
      throw new ParameterError(keyIndex(key, index), error.message);
    }
  });
}

/**
 * True if `time` falls in any of `windows`.
 *
 * @param {Window[]} windows
 * @param {{ weekday: number, hour: number, minute: number }} time
 */
export function inAny(windows, time) {
  return windows.some((window) => window.contains(time));
}

function parseDays(text) {
  if (text === '*') return [1, 2, 3, 4, 5, 6, 7];
  const days = [];
  for (const part of text.split(',')) {
    const dash = part.indexOf('-');
    if (dash < 0) {
      days.push(dayNumber(part));
      continue;
    }
    const last = dayNumber(part.slice(dash + 1));
    for (let day = dayNumber(part.slice(0, dash)); ; day = (day % 7) + 1) {
      days.push(day);
      if (day === last) break;
    }
  }
  return days;
}

function dayNumber(name) {
  const lower = asciiLower(name.trim());
  const index = DAY_NAMES.findIndex((day) => lower.startsWith(day) && lower.length >= 3);
  if (index < 0) throw new Error(`unknown day ${JSON.stringify(name)} (use Mon..Sun)`);
  return index + 1;
}

function parseMinutes(text) {
  const bad = new Error(`bad time ${JSON.stringify(text)} (use HH:MM, 00:00 to 24:00)`);
  const colon = text.trim().indexOf(':');
  if (colon < 0) throw bad;
  const hours = parseU16(text.trim().slice(0, colon));
  const minutes = parseU16(text.trim().slice(colon + 1));
  if (hours === undefined || minutes === undefined || minutes >= 60 || hours > 24 || (hours === 24 && minutes !== 0)) {
    throw bad;
  }
  return hours * 60 + minutes;
}

/** As Rust's `u16::from_str`: an optional `+`, then ASCII digits, at most 65535. */
function parseU16(text) {
  if (!/^\+?[0-9]+$/.test(text)) return undefined;
  const value = Number(text);
  return value <= 0xffff ? value : undefined;
}
