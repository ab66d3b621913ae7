"""{{name}}: holds deletes (any case of the method) for approval by the
groups in its parameters (`{{name}}.toml`, default `oncall`), allows
everything else.

Build: `airlock policy build .`   Test: `python -m pytest` and
`airlock policy test {{name}}.wasm cases.toml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import airlock
from airlock import Action, Allow, Approvers, Decision, Metadata, matching


@dataclass
class Parameters:
    """`{{name}}.toml`, checked once when Airlock loads the policy: an
    unknown key is refused with its line, and the previous version keeps
    serving."""

    groups: list[str] = field(default_factory=lambda: ["oncall"])


@airlock.export
class ThisPolicy(airlock.Policy):
    Parameters = Parameters

    def __init__(self, approvers: Approvers) -> None:
        self.approvers = approvers

    @classmethod
    def describe(cls) -> Metadata:
        return Metadata.requests("{{name}}", "0.1.0")

    @classmethod
    def setup(cls, parameters: Parameters) -> ThisPolicy:
        approvers = Approvers.of_groups(*parameters.groups)
        approvers.check("")
        return cls(approvers)

    def evaluate(self, action: Action) -> Decision:
        request = action.request()
        if request is not None and matching.method("DELETE", request.method):
            return self.approvers.hold(f"DELETE {request.path} needs approval", "DELETE")
        return Allow()
