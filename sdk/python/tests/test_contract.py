"""The SDK's types mirror the contract: every record, variant case, enum
and flag of `wit/policy.wit`, as componentize-py generates them, has its
twin in `airlock.types` with the same fields in the same order."""

import dataclasses
import typing

import pytest

from airlock import types as sdk

# WIT records that the SDK names after the variant case carrying them, as
# the Go SDK does; the others keep their WIT names.
CASE_RECORDS = {
    "AddBackend": "BackendChange", "RemoveBackend": "BackendChange",
    "DrainBackend": "BackendChange", "SetWeights": "WeightsChange",
    "ShiftTraffic": "TrafficShift", "ResetOverlay": "OverlayReset",
    "ReloadConfig": "ConfigReload", "Failover": "Failover", "EjectOutlier": "Outlier",
    "SpillSurge": "Spill",
}
SAME_NAME = ["Header", "Principal", "PoolFigures", "Request", "BackendWeight", "Action", "Allow",
             "Deny", "Grant", "Hold", "Metadata", "LocalTime"]


@pytest.fixture(scope="module")
def wit(bindings):
    from wit_world.imports import types
    return types


def field_names(cls):
    return [item.name for item in dataclasses.fields(cls)]


@pytest.mark.parametrize("name", SAME_NAME)
def test_records_have_the_same_fields(wit, name):
    assert field_names(getattr(sdk, name)) == field_names(getattr(wit, name))


@pytest.mark.parametrize("case, record", sorted(CASE_RECORDS.items()))
def test_variant_cases_carry_their_records_fields(wit, case, record):
    assert field_names(getattr(sdk, case)) == field_names(getattr(wit, record))


@pytest.mark.parametrize("variant, base", [("Change", sdk.Change), ("Event", sdk.Event)])
def test_every_variant_case_has_a_class(wit, variant, base):
    cases = [option.__name__.removeprefix(f"{variant}_")
             for option in typing.get_args(getattr(wit, variant))]
    assert sorted(cases) == sorted(cls.__name__ for cls in base.__subclasses__())


def test_subjects_and_decisions(wit):
    assert [option.__name__ for option in typing.get_args(wit.Subject)] == \
        ["Subject_Request", "Subject_Change", "Subject_Event"]
    assert [option.__name__ for option in typing.get_args(wit.Decision)] == \
        ["Decision_Allow", "Decision_Deny", "Decision_Hold"]


def test_enums_and_flags_have_the_same_members(wit, bindings):
    from wit_world.imports import host
    for ours, theirs in [(sdk.Authentication, wit.Authentication), (sdk.Level, host.Level),
                         (sdk.ActionKinds, wit.ActionKinds)]:
        assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]
    assert field_names(wit.ParameterError) == ["key", "message"]
