"""airlock.Policy, export, set_up and the TestHost, as a policy uses them."""

from dataclasses import dataclass

import pytest

import airlock
from airlock import (
    Allow, Authentication, Deny, Failover, Header, Metadata, ParameterError, Principal, host,
)
from airlock.testing import TestHost, healthy_pool, request


@dataclass
class Parameters:
    status: airlock.U16 = 403


class HeaderGate(airlock.Policy):
    """Denies requests without `x-ticket`; reads what the host offers."""

    Parameters = Parameters

    def __init__(self, status):
        self.status = status

    @classmethod
    def describe(cls):
        return Metadata("header-gate", "1.0.0", airlock.ActionKinds.REQUEST | airlock.ActionKinds.EVENT)

    @classmethod
    def setup(cls, parameters):
        if not 400 <= parameters.status < 600:
            raise ParameterError("status", "must be a 4xx or 5xx status")
        host.log(airlock.Level.INFO, f"set up, header {host.header('x-ticket')}")
        return cls(parameters.status)

    def evaluate(self, action):
        request = action.request()
        if request is None:
            figures = action.figures("app")
            return Allow() if figures and figures.healthy_backends else Deny(503, "no figures")
        if request.header("X-Ticket") is None:
            return Deny(self.status, f"no ticket; {len(request.headers())} headers")
        return airlock.allow_with_header("X-Checked", "yes")


def test_set_up_decodes_then_calls_setup():
    with TestHost():
        assert airlock.set_up(HeaderGate, '{"status": 401}').status == 401
    with pytest.raises(ParameterError) as refused:
        TestHost().setup(HeaderGate, '{"status": 200}')
    assert refused.value.key == "status"


def test_headers_answer_only_for_a_request_and_not_in_setup():
    test_host = TestHost().header("X-Ticket", "T-1").header("Accept", "*/*")
    policy = test_host.setup(HeaderGate)
    assert test_host.logs == ["info set up, header None"]
    assert test_host.evaluate(policy, request("GET", "/")) == Allow([Header("x-checked", "yes")])
    assert TestHost().evaluate(policy, request("GET", "/")) == Deny(403, "no ticket; 0 headers")
    event = airlock.Action(Failover("web", "a", "b"), Principal("airlock", [], Authentication.BALANCER))
    assert test_host.evaluate(policy, event) == Deny(503, "no figures")
    assert test_host.pool(healthy_pool("app", 2)).evaluate(policy, event) == Allow()


def test_the_clock_and_local_time():
    with TestHost().now("2026-11-23T10:00:00Z") as test_host:
        assert host.now_unix_ms() == 1795428000000
        berlin = host.local_now("Europe/Berlin")
        assert (berlin.hour, berlin.weekday, berlin.utc_offset_seconds, berlin.abbreviation) == \
            (11, 1, 3600, "CET")
        assert host.local_time("Nowhere/Special", 0) is None
        assert host.local_time("../etc/passwd", 0) is None
        assert test_host.now_unix_ms() == 1795428000000
    assert TestHost().now("2026-07-06T07:00:00+02:00").clock_ms == 1783314000000


def test_host_functions_outside_a_test_host_say_so():
    with pytest.raises(RuntimeError, match="outside a component and outside TestHost"):
        host.now_unix_ms()


def test_export_takes_one_policy_class(monkeypatch):
    monkeypatch.setattr(airlock, "_exported", None)
    assert airlock.export(HeaderGate) is HeaderGate
    assert airlock.exported() is HeaderGate
    assert airlock.export(HeaderGate) is HeaderGate
    with pytest.raises(RuntimeError, match="exported already"):
        airlock.export(type("Other", (airlock.Policy,), {}))
    with pytest.raises(TypeError):
        airlock.export(object)


def test_a_policy_without_parameters_takes_any():
    class Plain(airlock.Policy):
        def evaluate(self, action):
            return Allow()

    assert TestHost().evaluate(TestHost().setup(Plain, '{"x": 1}'), request("GET", "/")) == Allow()


def test_decisions_and_requests():
    assert Allow().kind == "allow" and Deny(403, "no").kind == "deny"
    hold = airlock.Hold("r", ["oncall"])
    assert (hold.kind, hold.quorum, hold.timeout_ms, hold.grant) == ("hold", 1, 900_000, None)
    assert hold.with_grant("s", 5).grant == airlock.Grant("s", 5) and hold.grant is None
    get = request("get", "/").request()
    assert not get.is_write() and request("PATCH", "/").request().is_write()
    assert Principal("a", ["x"]).in_group("x") and not Principal("a").in_group("x")


def test_headers_are_header_objects_or_pairs_and_anything_else_is_refused_natively():
    from airlock import Allow, Deny, Header

    assert Allow(set_headers=[("x-a", "1")]).set_headers == [Header("x-a", "1")]
    assert Deny(429, "slow down", [("retry-after", "5")]).headers == [Header("retry-after", "5")]
    with pytest.raises(TypeError, match="set_headers"):
        Allow(set_headers=[{"x-a": "1"}])
