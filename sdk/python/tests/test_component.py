"""The component glue (`airlock._component`), driven natively over the
stub bindings: the host imports are replaced by test doubles, and the
exports are called with the values componentize-py would pass."""

import sys

import pytest

import airlock
from airlock import host
from test_policy import HeaderGate


@pytest.fixture
def glue(bindings, monkeypatch):
    from componentize_py_types import Err
    from wit_world.imports import host as wit_host
    from wit_world.imports import types as wit

    before = host._backend  # importing the glue installs its host
    import airlock._component as component

    logs = []
    monkeypatch.setattr(wit_host, "log", lambda level, message: logs.append((level, message)))
    monkeypatch.setattr(wit_host, "now_unix_ms", lambda: 1_795_428_000_000)
    monkeypatch.setattr(wit_host, "request_header",
                        lambda name: "T-1" if name.lower() == "x-ticket" else None)
    monkeypatch.setattr(wit_host, "request_headers", lambda: [wit.Header("x-ticket", "T-1")])
    monkeypatch.setattr(wit_host, "live_figures", lambda pool: wit.PoolFigures(
        pool, 1, 2, 0, 0.5, None) if pool == "app" else None)
    monkeypatch.setattr(wit_host, "to_local_time", lambda zone, ms: None)
    # setup sends stdout and stderr to the host's log: undone after the test.
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(component._LogWriter, "silenced", False)
    monkeypatch.setattr(airlock, "_exported", HeaderGate)
    monkeypatch.setattr(component, "_policy", None)
    host.install(component._ComponentHost())
    yield component, wit, Err, logs
    host.install(before)


def request_action(wit, method="GET"):
    request = wit.Request(method, "http", "example.com", "/x", None, "127.0.0.1", "default",
                          "app", None, None)
    return wit.Action(wit.Subject_Request(request),
                      wit.Principal("alice", ["dev"], wit.Authentication.TOKEN))


def test_describe_and_setup_and_evaluate(glue):
    component, wit, Err, logs = glue
    judge = component.Judge()
    assert judge.describe() == wit.Metadata(
        "header-gate", "1.0.0", wit.ActionKinds.REQUEST | wit.ActionKinds.EVENT)
    assert judge.evaluate(request_action(wit)) == wit.Decision_Deny(
        wit.Deny(500, "the policy was not set up", []))
    judge.setup('{"status": 401}')
    assert logs[-1][1] == "set up, header T-1"
    assert judge.evaluate(request_action(wit)) == wit.Decision_Allow(
        wit.Allow([wit.Header("x-checked", "yes")], []))
    event = wit.Action(wit.Subject_Event(wit.Event_Failover(wit.Failover("web", "a", "b"))),
                       wit.Principal("airlock", [], wit.Authentication.BALANCER))
    assert judge.evaluate(event) == wit.Decision_Allow(wit.Allow([], []))
    with pytest.raises(Err) as twice:
        judge.setup("{}")
    assert twice.value.value == wit.ParameterError("", "setup ran twice")


def test_a_refusal_is_the_contracts_parameter_error(glue):
    component, wit, Err, _ = glue
    with pytest.raises(Err) as refused:
        component.Judge().setup('{"status": "x"}')
    assert refused.value.value == wit.ParameterError("status", 'invalid type: string "x", expected u16')


def test_every_subject_lifts(glue):
    component, wit, _, _ = glue
    principal = wit.Principal("ops", [], wit.Authentication.MTLS)
    changes = [
        wit.Change_AddBackend(wit.BackendChange("app", "10.0.0.1:80")),
        wit.Change_RemoveBackend(wit.BackendChange("app", "10.0.0.1:80")),
        wit.Change_DrainBackend(wit.BackendChange("app", "10.0.0.1:80")),
        wit.Change_SetWeights(wit.WeightsChange("app", [wit.BackendWeight("10.0.0.1:80", 5)])),
        wit.Change_ShiftTraffic(wit.TrafficShift("web", "a", "b", 50)),
        wit.Change_ResetOverlay(wit.OverlayReset(3)),
        wit.Change_ReloadConfig(wit.ConfigReload("ab" * 32, "pools +canary")),
    ]
    events = [
        wit.Event_Failover(wit.Failover("web", "a", "b")),
        wit.Event_EjectOutlier(wit.Outlier("app", "10.0.0.1:80", "error rate 0.4")),
        wit.Event_SpillSurge(wit.Spill("web", "a", "b", 20)),
    ]
    lifted = [component._lift_action(wit.Action(wit.Subject_Change(change), principal))
              for change in changes]
    lifted += [component._lift_action(wit.Action(wit.Subject_Event(event), principal))
               for event in events]
    assert [type(action.subject).__name__ for action in lifted] == [
        "AddBackend", "RemoveBackend", "DrainBackend", "SetWeights", "ShiftTraffic",
        "ResetOverlay", "ReloadConfig", "Failover", "EjectOutlier", "SpillSurge"]
    assert lifted[3].subject.weights == [airlock.BackendWeight("10.0.0.1:80", 5)]
    assert lifted[0].principal == airlock.Principal("ops", [], airlock.Authentication.MTLS)
    request = component._lift_action(request_action(wit, "POST"))
    assert request.request() == airlock.Request("POST", "http", "example.com", "/x", None,
                                                "127.0.0.1", "default", "app", None, None)


def test_holds_lower_with_their_grant(glue):
    component, wit, _, _ = glue
    hold = airlock.Hold("r", ["oncall"], 2, 60_000).with_grant("POST x/y", 1000)
    assert component._lower_decision(hold) == wit.Decision_Hold(
        wit.Hold("r", ["oncall"], 2, 60_000, wit.Grant("POST x/y", 1000)))
    with pytest.raises(TypeError, match="not Allow, Deny or Hold"):
        component._lower_decision(None)


def test_an_exception_is_logged_in_one_line_then_traps(glue, monkeypatch):
    component, wit, _, logs = glue
    judge = component.Judge()
    judge.setup("{}")
    monkeypatch.setattr(HeaderGate, "evaluate", lambda self, action: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        judge.evaluate(request_action(wit))
    from wit_world.imports import host as wit_host
    level, message = logs[-1]
    assert level == wit_host.Level.ERROR
    assert message.startswith("exception: ZeroDivisionError: division by zero at ")


def test_host_functions_convert(glue):
    airlock_figures = host.pool_figures("app")
    assert airlock_figures == airlock.PoolFigures("app", 1, 2, 0, 0.5, None)
    assert host.pool_figures("nope") is None and host.local_now("UTC") is None
    assert host.headers() == [airlock.Header("x-ticket", "T-1")]


def test_printing_goes_to_the_log(glue, monkeypatch):
    component, wit, _, logs = glue
    from wit_world.imports import host as wit_host
    judge = component.Judge()
    judge.setup("{}")

    def chatty(self, action):
        print("judging", action.principal.id)
        print("no newline", end="")
        return airlock.Allow()

    monkeypatch.setattr(HeaderGate, "evaluate", chatty)
    judge.evaluate(request_action(wit))
    assert logs[-2:] == [(wit_host.Level.INFO, "judging alice"), (wit_host.Level.INFO, "no newline")]
