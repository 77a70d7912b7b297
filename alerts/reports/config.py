"""The report files' data: PBoC tags and codes, goAML code lists, the reporting institution.

Every one of them is a data file (packaged beside this module, or given by path), so a
wrong tag, a changed code list or another institution needs no code change.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from core.errors import InvalidInput

PACKAGE = "alerts.reports"


@dataclass(frozen=True)
class PbocTags:
    """Tag names by logical name, mandatory children, code lists (``pboc_tags.toml``)."""

    tags: Mapping[str, str]
    mandatory: Mapping[str, tuple[str, ...]]
    codes: Mapping[str, Any]
    message_types: Mapping[str, Mapping[str, str]]
    unavailable: str
    source: str

    def tag(self, name: str) -> str:
        """The tag of logical element ``name``."""
        try:
            return self.tags[name]
        except KeyError:
            raise InvalidInput(f"pboc_tags.toml has no tag for {name!r}") from None

    def code(self, table: str, key: str) -> str:
        """The code of ``key`` in code list ``table`` (falling back to its ``default``)."""
        codes = self.codes.get(table)
        if not isinstance(codes, Mapping):
            raise InvalidInput(f"pboc_tags.toml has no code list {table!r}")
        value = codes.get(key, codes.get("default"))
        if value is None:
            raise InvalidInput(f"pboc_tags.toml code list {table!r} has no code for {key!r}")
        return str(value)


@dataclass(frozen=True)
class GoamlCodes:
    """goAML code lists (``goaml_codes.toml``); an FIU's own copy replaces them."""

    submission_code: str
    currency_code_local: str
    lists: Mapping[str, Mapping[str, str]]

    def code(self, table: str, key: str) -> str:
        """The code of ``key`` in list ``table`` (falling back to its ``default``)."""
        codes = self.lists.get(table, {})
        value = codes.get(key, codes.get("default"))
        if value is None:
            raise InvalidInput(f"goAML code list {table!r} has no code for {key!r}")
        return value


@dataclass(frozen=True)
class Institution:
    """The reporting institution as the report files name it (``institution.toml``)."""

    name: str
    pboc_code: str
    branch_name: str
    branch_region: str
    transaction_place: str
    filer: str
    rentity_id: int
    rentity_branch: str
    reporting_person_first_name: str
    reporting_person_last_name: str
    address: str
    city: str
    country: str


@dataclass(frozen=True)
class ReportConfig:
    """Everything a report file needs besides the case store's records."""

    pboc: PbocTags
    goaml: GoamlCodes
    institution: Institution


def load_report_config(
    *,
    pboc_tags: Path | None = None,
    goaml_codes: Path | None = None,
    institution: Path | None = None,
) -> ReportConfig:
    """The packaged data files, or the ones given by path."""
    return ReportConfig(
        pboc=_pboc(_toml(pboc_tags, "pboc_tags.toml")),
        goaml=_goaml(_toml(goaml_codes, "goaml_codes.toml")),
        institution=_institution(_toml(institution, "institution.toml")),
    )


@cache
def alpha3_countries() -> Mapping[str, str]:
    """ISO 3166-1 alpha-2 -> alpha-3 (PBoC nationality codes)."""
    text = resources.files(PACKAGE).joinpath("iso3166_alpha3.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return MappingProxyType({row["alpha2"]: row["alpha3"] for row in rows})


def _toml(path: Path | None, packaged: str) -> tuple[str, dict[str, Any]]:
    name = str(path) if path is not None else packaged
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path is not None
            else resources.files(PACKAGE).joinpath(packaged).read_text(encoding="utf-8")
        )
        return name, tomllib.loads(text)
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{name} is not valid TOML: {exc}") from None


def _pboc(loaded: tuple[str, dict[str, Any]]) -> PbocTags:
    name, data = loaded
    try:
        return PbocTags(
            tags=MappingProxyType({str(k): str(v) for k, v in data["tags"].items()}),
            mandatory=MappingProxyType(
                {str(k): tuple(str(x) for x in v) for k, v in data["mandatory"].items()}
            ),
            codes=MappingProxyType(dict(data["codes"])),
            message_types=MappingProxyType(
                {k: MappingProxyType(dict(v)) for k, v in data["message_types"].items()}
            ),
            unavailable=str(data.get("unavailable", "@N")),
            source=str(data.get("source", name)),
        )
    except (KeyError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"{name}: missing or malformed section {exc}") from None


def _goaml(loaded: tuple[str, dict[str, Any]]) -> GoamlCodes:
    name, data = loaded
    try:
        lists = {
            key: MappingProxyType({str(k): str(v) for k, v in value.items()})
            for key, value in data.items()
            if isinstance(value, dict)
        }
        return GoamlCodes(
            submission_code=str(data["submission_code"]),
            currency_code_local=str(data["currency_code_local"]),
            lists=MappingProxyType(lists),
        )
    except KeyError as exc:
        raise InvalidInput(f"{name}: missing {exc}") from None


def _institution(loaded: tuple[str, dict[str, Any]]) -> Institution:
    name, data = loaded
    fields = Institution.__dataclass_fields__
    missing = [field for field in fields if field not in data]
    if missing:
        raise InvalidInput(f"{name}: missing {', '.join(missing)}")
    values: dict[str, Any] = {field: str(data[field]) for field in fields}
    try:
        values["rentity_id"] = int(data["rentity_id"])
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: rentity_id must be a whole number") from None
    return Institution(**values)


__all__ = [
    "GoamlCodes",
    "Institution",
    "PbocTags",
    "ReportConfig",
    "alpha3_countries",
    "load_report_config",
]
