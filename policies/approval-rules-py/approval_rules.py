"""approval-rules-py: the Python port of approval-rules, with the same
parameters, decisions (reasons, hold fields, grant scopes) and case table.

Hold requests that match a rule until approvers approve. Each rule names
any of `methods`, `paths` and `hosts` (methods by name or `*`, paths and
hosts by glob) and the `approvers` who may let a matching request through.
A rule matches when every field it gives matches. The first matching rule
holds the request (`DELETE /x needs approval from oncall`); with
`grant_seconds` set, the approval also lets the same principal's
`METHOD HOST/PATH` pass for that long. A request no rule matches passes.
Bad parameters are refused when Airlock loads the policy, with the key at
fault (`rules[0].method`).

    [[rules]]
    methods = ["DELETE"]
    approvers = { groups = ["oncall"] }

    [[rules]]
    paths = ["/admin/**"]
    hosts = ["*.example.com"]   # optional
    approvers = { groups = ["oncall", "security"], quorum = 2, timeout_seconds = 900, grant_seconds = 3600 }

Build and test (from the repository root):

    python sdk/python/build.py policies/approval-rules-py -o /tmp/ar-py.wasm
    airlock policy test /tmp/ar-py.wasm policies/approval-rules/cases.toml
    (cd policies/approval-rules-py && python -m pytest)
"""

from __future__ import annotations

from dataclasses import dataclass

import airlock
from airlock import Action, Allow, Approvers, Decision, Metadata, Request, key_index
from airlock.matching import request_matches


@dataclass(kw_only=True)
class Rule:
    """One rule: a missing field matches every request."""

    methods: list[str] | None = None
    paths: list[str] | None = None
    hosts: list[str] | None = None
    approvers: Approvers

    def matches(self, request: Request) -> bool:
        return request_matches(self.methods, self.paths, self.hosts, request)


@dataclass
class Parameters:
    """`rules`, in order."""

    rules: list[Rule]


@airlock.export
class ApprovalRules(airlock.Policy):
    """The policy, set up with its rules."""

    Parameters = Parameters

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def describe(cls) -> Metadata:
        return Metadata.requests("approval-rules-py", "0.1.0")

    @classmethod
    def setup(cls, parameters: Parameters) -> ApprovalRules:
        for index, rule in enumerate(parameters.rules):
            rule.approvers.check(key_index("rules", index) + ".approvers")
        return cls(parameters.rules)

    def evaluate(self, action: Action) -> Decision:
        request = action.request()
        if request is None:
            return Allow()
        for rule in self.rules:
            if rule.matches(request):
                reason = (f"{request.method} {request.path} needs approval from "
                          + " or ".join(rule.approvers.groups))
                # A grant covers this method on this host and path, any query
                # and body: `POST api.example.com/admin/users`.
                scope = f"{request.method} {request.host}{request.path}"
                return rule.approvers.hold(reason, scope)
        return Allow()
