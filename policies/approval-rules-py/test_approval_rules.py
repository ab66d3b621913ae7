"""Native unit tests of approval-rules-py (the Rust policy's, ported):
`python -m pytest` in this directory, no Wasm."""

import pytest

from airlock import Allow, Hold, Metadata, ParameterError
from airlock.testing import TestHost, request

from approval_rules import ApprovalRules

QUICKSTART = """{"rules": [
    {"methods": ["DELETE"], "approvers": {"groups": ["oncall"]}},
    {"paths": ["/admin/**"], "approvers": {"groups": ["oncall"], "quorum": 1, "grant_seconds": 600}}
]}"""


def judge(parameters, action):
    host = TestHost()
    return host.evaluate(host.setup(ApprovalRules, parameters), action)


def test_describe():
    assert ApprovalRules.describe() == Metadata.requests("approval-rules-py", "0.1.0")


def test_first_matching_rule_holds():
    assert judge(QUICKSTART, request("DELETE", "/admin/users/7")) == Hold(
        "DELETE /admin/users/7 needs approval from oncall", ["oncall"], 1, 900_000)
    assert judge(QUICKSTART, request("POST", "/admin/users")) == Hold(
        "POST /admin/users needs approval from oncall", ["oncall"], 1, 900_000,
    ).with_grant("POST example.com/admin/users", 600_000)


def test_methods_ignore_case_and_hosts_must_match():
    assert judge(QUICKSTART, request("delete", "/x")).kind == "hold"
    hosts = '{"rules": [{"paths": ["/admin/**"], "hosts": ["*.Example.com"], "approvers": {"groups": ["oncall"]}}]}'
    assert judge(hosts, request("POST", "/admin/users", host="api.example.com")).kind == "hold"
    assert judge(hosts, request("POST", "/admin/users")) == Allow()


def test_unmatched_requests_pass():
    assert judge(QUICKSTART, request("GET", "/administrator")) == Allow()
    assert judge(QUICKSTART, request("POST", "/orders")) == Allow()


@pytest.mark.parametrize("parameters, key, message", [
    ("{}", "", "missing field `rules`"),
    ('{"rules": [{"methods": ["DELETE"]}]}', "rules[0]", "missing field `approvers`"),
    ('{"rules": [{"method": ["DELETE"], "approvers": {"groups": ["oncall"]}}]}', "rules[0].method",
     "unknown field `method`, expected one of `methods`, `paths`, `hosts`, `approvers`"),
    ('{"rules": [{"approvers": {"groups": []}}]}', "rules[0].approvers.groups",
     "needs at least one group"),
    ('{"rules": [{"approvers": {"groups": ["oncall"], "quorum": 0}}]}',
     "rules[0].approvers.quorum", "must be at least 1"),
    ('{"rules": [{"approvers": {"groups": ["oncall"], "quorum": -1}}]}',
     "rules[0].approvers.quorum", "invalid value: integer `-1`, expected u32"),
    ('{"rules": [{"methods": "DELETE", "approvers": {"groups": ["oncall"]}}]}', "rules[0].methods",
     'invalid type: string "DELETE", expected a sequence'),
    ('{"rules": [{"approvers": {"group": ["oncall"]}}]}', "rules[0].approvers.group",
     "unknown field `group`"),
])
def test_bad_parameters_are_refused_with_their_key(parameters, key, message):
    with pytest.raises(ParameterError) as refusal:
        TestHost().setup(ApprovalRules, parameters)
    assert refusal.value.key == key
    assert message in refusal.value.message
    assert "column" not in refusal.value.message
