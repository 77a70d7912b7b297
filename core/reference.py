"""ISO code lists shipped as dated data files beside this module."""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources


def _codes(filename: str) -> frozenset[str]:
    text = resources.files("core.data").joinpath(filename).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return frozenset(row["code"] for row in rows)


@cache
def currency_codes() -> frozenset[str]:
    """ISO 4217 alphabetic currency codes."""
    return _codes("iso4217.csv")


@cache
def country_codes() -> frozenset[str]:
    """ISO 3166-1 alpha-2 country codes."""
    return _codes("iso3166.csv")
