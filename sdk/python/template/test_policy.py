"""Native unit tests: `python -m pytest` (no Wasm)."""

import pytest

from airlock import Allow, ParameterError
from airlock.testing import TestHost, request

from {{module}} import ThisPolicy


def test_deletes_are_held_in_any_case_and_reads_pass():
    host = TestHost()
    policy = host.setup(ThisPolicy, "{}")
    assert host.evaluate(policy, request("DELETE", "/x")).kind == "hold"
    assert host.evaluate(policy, request("delete", "/x")).kind == "hold"
    assert host.evaluate(policy, request("GET", "/x")) == Allow()


def test_unknown_keys_are_refused():
    with pytest.raises(ParameterError) as refusal:
        TestHost().setup(ThisPolicy, '{"group": ["oncall"]}')
    assert refusal.value.key == "group"
