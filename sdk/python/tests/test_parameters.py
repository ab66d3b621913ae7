"""airlock.parameters: strict decoding, in serde's words, keyed by path."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from airlock import U8, U16, U64, Approvers, Hold, NoParameters, ParameterError, decode


@dataclass(kw_only=True)
class Rule:
    methods: list[str] | None = None
    approvers: Approvers


@dataclass
class Parameters:
    rules: list[Rule]
    status: U16 = 403
    ratio: float = 0.5
    strict: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    extra: Any = None


def refusal(text, cls=Parameters):
    with pytest.raises(ParameterError) as refused:
        decode(cls, text)
    return refused.value.key, refused.value.message


def test_a_good_table_decodes_with_defaults():
    decoded = decode(Parameters, '{"rules": [{"approvers": {"groups": ["oncall"], "grant_seconds": 60}}],'
                                 ' "ratio": 1, "labels": {"a": "b"}, "extra": {"x": [1]}}')
    assert decoded == Parameters(
        rules=[Rule(approvers=Approvers(["oncall"], 1, 900, 60))], ratio=1.0,
        labels={"a": "b"}, extra={"x": [1]})
    assert decode(Rule, '{"methods": null, "approvers": {"groups": ["a"]}}').methods is None


@pytest.mark.parametrize("text, key, message", [
    ("{}", "", "missing field `rules`"),
    ('{"rules": [{}]}', "rules[0]", "missing field `approvers`"),
    ('{"rules": [], "rule": []}', "rule",
     "unknown field `rule`, expected one of `rules`, `status`, `ratio`, `strict`, `labels`, `extra`"),
    ('{"rules": [{"approvers": {"groups": ["a"], "quorum": "two"}}]}', "rules[0].approvers.quorum",
     'invalid type: string "two", expected u32'),
    ('{"rules": [{"approvers": {"groups": ["a"], "quorum": -1}}]}', "rules[0].approvers.quorum",
     "invalid value: integer `-1`, expected u32"),
    ('{"rules": [{"approvers": {"groups": ["a"], "quorum": 1.5}}]}', "rules[0].approvers.quorum",
     "invalid type: floating point `1.5`, expected u32"),
    ('{"rules": [{"approvers": {"groups": ["a"], "quorum": true}}]}', "rules[0].approvers.quorum",
     "invalid type: boolean `true`, expected u32"),
    ('{"rules": [{"methods": "DELETE", "approvers": {"groups": ["a"]}}]}', "rules[0].methods",
     'invalid type: string "DELETE", expected a sequence'),
    ('{"rules": [{"methods": [1], "approvers": {"groups": ["a"]}}]}', "rules[0].methods[0]",
     "invalid type: integer `1`, expected a string"),
    ('{"rules": {}}', "rules", "invalid type: map, expected a sequence"),
    ('{"rules": [[]]}', "rules[0]", "invalid type: sequence, expected struct Rule"),
    ('{"rules": [], "status": 70000}', "status", "invalid value: integer `70000`, expected u16"),
    ('{"rules": [], "ratio": "x"}', "ratio", 'invalid type: string "x", expected f64'),
    ('{"rules": [], "strict": 1}', "strict", "invalid type: integer `1`, expected a boolean"),
    ('{"rules": [], "labels": {"a": 2}}', "labels.a", "invalid type: integer `2`, expected a string"),
    ('{"rules": [], "labels": []}', "labels", "invalid type: sequence, expected a map"),
    ('{"rules": [], "rules": []}', "rules", "duplicate field `rules`"),
    ("[]", "", "invalid type: sequence, expected struct Parameters"),
    ("null", "", "invalid type: null, expected struct Parameters"),
])
def test_mistakes_are_refused_at_their_key(text, key, message):
    assert refusal(text) == (key, message)


def test_bad_json_is_refused_as_a_whole_without_position():
    key, message = refusal('{"rules": ')
    assert key == "" and message.startswith("the parameters are not valid JSON")
    assert "line" not in message and "column" not in message
    assert refusal('{"rules": [], "ratio": NaN}')[0] == ""


def test_no_parameters_takes_anything():
    assert isinstance(decode(NoParameters, '{"whatever": [1, 2]}'), NoParameters)


def test_unknown_field_lists_the_one_or_no_fields():
    @dataclass
    class One:
        only: U8 = 0

    @dataclass
    class Empty:
        pass

    assert refusal('{"x": 1}', One) == ("x", "unknown field `x`, expected `only`")
    assert refusal('{"x": 1}', Empty) == ("x", "unknown field `x`, there are no fields")


def test_approvers_check_and_hold():
    approvers = Approvers.of_groups("oncall", "leads")
    approvers.check("")
    assert approvers.hold("why", "scope") == Hold("why", ["oncall", "leads"], 1, 900_000)
    assert Approvers(["a"], 2, 60, 30).hold("r", "POST x/y") == Hold(
        "r", ["a"], 2, 60_000).with_grant("POST x/y", 30_000)
    assert Approvers(["a"], 1, 2**64 - 1).hold("r", "s").timeout_ms == 2**64 - 1
    with pytest.raises(ParameterError) as refused:
        Approvers([]).check("rules[2].approvers")
    assert (refused.value.key, refused.value.message) == ("rules[2].approvers.groups",
                                                          "needs at least one group")
    with pytest.raises(ParameterError) as refused:
        Approvers(["a"], 0).check("")
    assert (refused.value.key, refused.value.message) == ("quorum", "must be at least 1")


def test_parameter_errors_read_key_then_message():
    assert str(ParameterError("rules[0]", "missing field `approvers`")) == \
        "rules[0]: missing field `approvers`"
    assert str(ParameterError(".", "bad")) == "bad"


def test_large_u64_values_decode():
    @dataclass
    class Big:
        n: U64

    assert decode(Big, '{"n": 18446744073709551615}').n == 2**64 - 1
    assert refusal('{"n": 18446744073709551616}', Big) == (
        "n", "invalid value: integer `18446744073709551616`, expected u64")
