"""Native unit tests of business-hours-py (the Rust and Go policies',
ported): `python -m pytest` in this directory, no Wasm. Natively the zone
is resolved by Python's zoneinfo (in a component, by Airlock)."""

import pytest

from airlock import Allow, Hold, ParameterError
from airlock.testing import TestHost, request

from business_hours import BusinessHours

BERLIN = """{"zone": "Europe/Berlin", "hours": ["Mon-Fri 09:00-17:00"],
    "approvers": {"groups": ["oncall"], "quorum": 2, "timeout_seconds": 60}}"""


def judge(parameters, now, action):
    host = TestHost().now(now)
    return host.evaluate(host.setup(BusinessHours, parameters), action)


def refusal(parameters):
    with pytest.raises(ParameterError) as refused:
        TestHost().now("2026-11-23T10:00:00Z").setup(BusinessHours, parameters)
    return refused.value


@pytest.mark.parametrize("now", ["2026-11-23T08:00:00Z", "2026-11-23T15:59:59Z"])
def test_writes_pass_inside_hours_in_the_zone(now):
    # 08:00 UTC is 09:00 in Berlin (CET), 16:59 Berlin the last minute.
    assert judge(BERLIN, now, request("POST", "/x")) == Allow()


def test_summer_time_moves_the_hours():
    assert judge(BERLIN, "2026-07-06T07:00:00Z", request("POST", "/x")) == Allow()
    assert judge(BERLIN, "2026-07-06T06:59:00Z", request("POST", "/x")).kind == "hold"


def test_writes_are_held_outside_hours():
    assert judge(BERLIN, "2026-11-23T07:59:59Z", request("DELETE", "/x")) == Hold(
        "DELETE /x is a write outside business hours (Mon-Fri 09:00-17:00 Europe/Berlin)",
        ["oncall"], 2, 60_000)
    assert judge(BERLIN, "2026-11-23T16:00:00Z", request("POST", "/x")).kind == "hold"


def test_a_grant_when_configured():
    parameters = '{"zone": "UTC", "hours": [], "approvers": {"groups": ["oncall"], "grant_seconds": 1800}}'
    hold = judge(parameters, "2026-11-28T10:00:00Z", request("PUT", "/x"))
    assert hold.grant is not None
    assert (hold.grant.scope, hold.grant.lifetime_ms) == ("PUT example.com/x", 1_800_000)


@pytest.mark.parametrize("method", ["GET", "HEAD", "options", "TRACE"])
def test_reads_always_pass(method):
    assert judge(BERLIN, "2026-11-28T03:00:00Z", request(method, "/x")) == Allow()


def test_bad_parameters_are_refused_with_their_key():
    unknown = refusal('{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": ["oncall"]}}')
    assert (unknown.key, unknown.message) == ("zone", 'unknown time zone "Nowhere/Special"')
    misspelt = refusal('{"zone": "UTC", "hours": [], "hour": ["Mon-Fri 09:00-17:00"], '
                       '"approvers": {"groups": ["oncall"]}}')
    assert (misspelt.key, misspelt.message) == (
        "hour", "unknown field `hour`, expected one of `zone`, `hours`, `approvers`")
    malformed = refusal('{"zone": "UTC", "hours": ["Mon-Fri 09:00-17:00", "Mon-Fri 9-17"], '
                        '"approvers": {"groups": ["oncall"]}}')
    assert malformed.key == "hours[1]" and "bad time" in malformed.message
    no_groups = refusal('{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": []}}')
    assert (no_groups.key, no_groups.message) == ("approvers.groups", "needs at least one group")
    zone_first = refusal('{"zone": "Nowhere/Special", "hours": ["Mon-Fri 9-17"], '
                         '"approvers": {"groups": ["oncall"]}}')
    assert zone_first.key == "zone"
    missing = refusal('{"hours": [], "approvers": {"groups": ["oncall"]}}')
    assert (missing.key, missing.message) == ("", "missing field `zone`")
