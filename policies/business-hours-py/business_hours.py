"""business-hours-py: the Python port of business-hours, with the same
parameters, decisions and case table.

Hold writes made outside business hours. `hours` are weekly windows
(`DAYS HH:MM-HH:MM`, see `airlock.window`) read in the IANA time zone
`zone`. Reads (GET, HEAD, OPTIONS, TRACE) always pass; writes pass inside
any window and are held for `approvers` outside them. With `grant_seconds`
set, an approval lets the same principal's `METHOD HOST/PATH` pass for that
long. An unknown zone, a malformed window or any other bad parameter is
refused when Airlock loads the policy, with the key at fault.

    zone = "Europe/Berlin"
    hours = ["Mon-Fri 09:00-17:00"]
    approvers = { groups = ["oncall"], timeout_seconds = 600 }

Build and test (from the repository root):

    python sdk/python/build.py policies/business-hours-py -o /tmp/bh-py.wasm
    airlock policy test /tmp/bh-py.wasm policies/business-hours/cases.toml
    (cd policies/business-hours-py && python -m pytest)
"""

from __future__ import annotations

from dataclasses import dataclass

import airlock
from airlock import Action, Allow, Approvers, Decision, Deny, Metadata, host
from airlock.window import Window, check_zone, in_any, parse_windows


@dataclass
class Parameters:
    """The zone, the weekly windows and who approves writes outside them."""

    zone: str
    hours: list[str]
    approvers: Approvers


@airlock.export
class BusinessHours(airlock.Policy):
    """The policy, set up with its parsed windows."""

    Parameters = Parameters

    def __init__(self, parameters: Parameters, hours: list[Window]) -> None:
        self.parameters = parameters
        self.hours = hours

    @classmethod
    def describe(cls) -> Metadata:
        return Metadata.requests("business-hours-py", "0.1.0")

    @classmethod
    def setup(cls, parameters: Parameters) -> BusinessHours:
        parameters.approvers.check("approvers")
        check_zone("zone", parameters.zone)
        return cls(parameters, parse_windows("hours", parameters.hours))

    def evaluate(self, action: Action) -> Decision:
        parameters = self.parameters
        now = host.local_now(parameters.zone)
        if now is None:
            return Deny(500, f'unknown time zone "{parameters.zone}"')
        request = action.request()
        if request is None or not request.is_write() or in_any(self.hours, now):
            return Allow()
        # A grant covers this method on this host and path.
        scope = f"{request.method} {request.host}{request.path}"
        reason = (f"{request.method} {request.path} is a write outside business hours "
                  f"({', '.join(parameters.hours)} {parameters.zone})")
        return parameters.approvers.hold(reason, scope)
