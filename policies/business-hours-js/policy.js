/**
 * business-hours-js: the JavaScript port of business-hours, with the same
 * parameters, decisions (reasons, hold fields) and case table.
 *
 * Hold writes made outside business hours. `hours` are weekly windows
 * (`DAYS HH:MM-HH:MM`, see the SDK's `time.Window`) read in the IANA time
 * zone `zone`. Reads (GET, HEAD, OPTIONS, TRACE) always pass; writes pass
 * inside any window and are held for `approvers` outside them. With
 * `grant_seconds` set, an approval lets the same principal's
 * `METHOD HOST/PATH` pass for that long. An unknown zone, a malformed
 * window or any other bad parameter is refused when Airlock loads the
 * policy, with the key at fault (`zone`, `hours[1]`).
 *
 * ```toml
 * zone = "Europe/Berlin"
 * hours = ["Mon-Fri 09:00-17:00"]
 * approvers = { groups = ["oncall"], timeout_seconds = 600 }
 * ```
 *
 * The zone is resolved by the host (`host.localNow`, the contract's
 * `to-local-time`), not by the engine: Airlock's tz database is the one
 * every SDK and `airlock policy test` use.
 *
 * Build and test (from this directory, after `npm install`):
 *
 * ```sh
 * npm test
 * npm run build
 * airlock policy test business-hours-js.wasm ../business-hours/cases.toml
 * ```
 *
 * @module
 */

import { Approvers, Decision, definePolicy, host, schema, time } from 'airlock-policy-sdk';

const parameters = schema.object(
  { zone: schema.string(), hours: schema.array(schema.string()), approvers: Approvers.schema },
  { name: 'Parameters' },
);

export default definePolicy({
  name: 'business-hours-js',
  version: '0.1.0',
  judges: ['request'],
  parameters,
  // In the Rust version's order: the approvers, the zone, the windows.
  setup({ zone, hours, approvers }) {
    approvers.check('approvers');
    time.checkZone('zone', zone);
    const windows = time.parseWindows('hours', hours);
    return (action) => {
      const now = host.localNow(zone);
      // Setup checked the zone: this would be the host's fault.
      if (!now) return Decision.deny(500, `unknown time zone ${JSON.stringify(zone)}`);
      const request = action.request();
      if (!request || !request.isWrite() || time.inAny(windows, now)) return Decision.allow();
      const reason = `${request.method} ${request.path} is a write outside business hours (${hours.join(', ')} ${zone})`;
      // A grant covers this method on this host and path.
      return approvers.hold(reason, `${request.method} ${request.host}${request.path}`);
    };
  },
});
