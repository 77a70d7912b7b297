"""Loading packs: the default pack is valid; every kind of mistake names file, rule, field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rules.pack import RulePackError, load_pack, packaged_pack_path

GOOD_RULE = """
[[rule]]
id = "R-1"
version = 1
title = "Big cash"
severity = "high"
outcome = "alert"
reason = "cash of {total:,} CNY"
when = ["gte", ["value", "total"], ["param", "threshold"]]
[rule.params]
threshold = "50000"
[rule.values]
total = ["day_total", "CNY", { channels = ["cash"] }]
"""


def write_pack(tmp_path: Path, rules: str, header: str = 'name = "t"\nversion = "1"') -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(f"[pack]\n{header}\n" + textwrap.dedent(rules), encoding="utf-8")
    return path


def refused(tmp_path: Path, rules: str) -> RulePackError:
    with pytest.raises(RulePackError) as caught:
        load_pack(write_pack(tmp_path, rules))
    return caught.value


def test_default_pack_loads_with_every_rule_versioned() -> None:
    pack = load_pack(packaged_pack_path())
    assert pack.name == "pboc"
    ids = [rule.id for rule in pack.rules]
    assert len(ids) == len(set(ids)) >= 18
    assert {rule.outcome.value for rule in pack.rules} == {"report", "alert"}
    assert sum(rule.outcome.value == "report" for rule in pack.rules) == 8
    assert pack.longest_window_hours == 168
    assert pack.baseline_days == 97


def test_a_good_custom_pack_loads(tmp_path: Path) -> None:
    pack = load_pack(write_pack(tmp_path, GOOD_RULE))
    assert pack.label == "t@1"
    assert pack.rules[0].params["threshold"] == 50000


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (('severity = "high"', 'severity = "urgent"'), "severity", "must be one of"),
        (('outcome = "alert"', 'outcome = "maybe"'), "outcome", "report or alert"),
        (("version = 1", 'version = "one"'), "version", "positive integer"),
        (('["gte",', '["gtee",'), "when[0]", "unknown function 'gtee'"),
        (
            ('["param", "threshold"]', '["param", "limit"]'),
            "when[2][1]",
            "unknown parameter 'limit'",
        ),
        (('["value", "total"]', '["value", "sum"]'), "when[1][1]", "unknown value 'sum'"),
        (('"CNY", { channels', '"EUR", { channels'), "values.total[1]", "unit must be"),
        (
            ('channels = ["cash"] }', 'channels = ["bitcoin"] }'),
            "values.total[2].channels",
            "values must be among",
        ),
        (('threshold = "50000"', "threshold = 5.5"), "params.threshold", "as strings"),
        (
            ('reason = "cash of {total:,} CNY"', 'reason = "cash of {totl} CNY"'),
            "reason",
            "unknown placeholder {totl}",
        ),
        (
            (
                'when = ["gte", ["value", "total"], ["param", "threshold"]]',
                'when = ["value", "total"]',
            ),
            "when",
            "must yield a bool",
        ),
        (
            (
                '["gte", ["value", "total"], ["param", "threshold"]]',
                '["gte", ["value", "total"], "cash"]',
            ),
            "when[2]",
            "needs a number here",
        ),
        (
            ('["gte", ["value", "total"], ["param", "threshold"]]', '["gte", ["value", "total"]]'),
            "when",
            "takes 2 argument(s), got 1",
        ),
        (('title = "Big cash"', 'title = "Big cash"\ncolour = "red"'), "colour", "unknown field"),
    ],
    ids=lambda item: item if isinstance(item, str) else None,
)
def test_mistakes_name_the_rule_and_field(
    tmp_path: Path, change: tuple[str, str], field: str, problem: str
) -> None:
    old, new = change
    assert old in GOOD_RULE
    error = refused(tmp_path, GOOD_RULE.replace(old, new, 1))
    assert error.source == "custom.toml"
    assert error.rule_id == "R-1"
    assert error.field == field
    assert problem in error.problem
    assert "custom.toml, rule 'R-1', field" in str(error)


def test_missing_required_field(tmp_path: Path) -> None:
    error = refused(tmp_path, GOOD_RULE.replace('title = "Big cash"\n', ""))
    assert (error.rule_id, error.field, error.problem) == ("R-1", "title", "missing")


def test_a_rule_id_longer_than_the_case_store_keeps_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, GOOD_RULE.replace('id = "R-1"', f'id = "{"R" * 65}"', 1))
    assert (error.rule_id, error.field) == ("#1", "id")
    assert "longer than 64" in error.problem


def test_duplicate_rule_ids_are_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, GOOD_RULE + GOOD_RULE)
    assert (error.rule_id, error.field, error.problem) == ("R-1", "id", "duplicate rule id")


def test_format_spec_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, GOOD_RULE.replace("{total:,}", "{total:,} by {channel:,}"))
    assert error.field == "reason"


def test_broken_toml_and_missing_header(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[pack\nname=", encoding="utf-8")
    with pytest.raises(RulePackError, match=r"broken\.toml: not valid TOML"):
        load_pack(path)
    path.write_text(textwrap.dedent(GOOD_RULE), encoding="utf-8")
    with pytest.raises(RulePackError, match=r"field 'pack'"):
        load_pack(path)
    with pytest.raises(RulePackError, match="file not found"):
        load_pack(tmp_path / "absent.toml")
