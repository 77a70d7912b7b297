"""Loaders for the dated files in ``rules/reference/``: FATF lists, rates, holidays, watch list.

Each file says when it was true (``as_of``) and where it came from (``source``); the
loaded object carries both, so a rule hit can say which list version it used. Every
problem in a file is reported with the file, line and field, and loading stops at the
first one: a half-loaded country list or rate table is worse than none.
"""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, tzinfo
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from core.calendar import WorkingCalendar
from core.errors import InvalidInput, LocatedInputError
from core.reference import country_codes, currency_codes
from rules.screening import WatchList, WatchListEntry, normalise_name

PACKAGE = "rules.reference"
FATF_FILE = "fatf.toml"
RATES_FILE = "rates.csv"
HOLIDAYS_FILE = "holidays-cn.csv"
WATCH_LIST_FILE = "watchlist.csv"

CENT = Decimal("0.01")
MAX_RATE_DIGITS = 20
# The two rate columns may disagree this much (rounding of hand-entered rates); more is a typo.
RATE_CROSS_CHECK_TOLERANCE = Decimal("0.01")
# Wide enough that amount x rate is always exact (amounts have at most 19 digits, rates
# at most MAX_RATE_DIGITS); Inexact is trapped to prove it.
_EXACT = Context(prec=64, traps=[Inexact, InvalidOperation])
_ROUNDING = Context(prec=64, rounding=ROUND_HALF_UP)

CountryRisk = Literal["black", "grey"]


class ReferenceDataError(LocatedInputError):
    """A reference-data file that cannot be used; names the file, line and field."""

    def __init__(self, file: str, line: int | None, field: str | None, problem: str) -> None:
        super().__init__(file, problem, line=line, field=field)


class UnknownCurrency(InvalidInput):
    """A currency the rate table has no rate for."""

    def __init__(self, currency: str, as_of: date) -> None:
        super().__init__(
            f"no reference rate for currency {currency[:16]!r} in the rates as of {as_of}"
        )
        self.currency = currency


@dataclass(frozen=True)
class CountryLists:
    """FATF black and grey lists as of one plenary; ISO 3166-1 alpha-2 codes."""

    as_of: date
    source: str
    black: frozenset[str]
    grey: frozenset[str]
    # True while the lists are compiled from secondary sources and await a check.
    verify: bool = False

    def risk_of(self, country: str | None) -> CountryRisk | None:
        """Which FATF list ``country`` is on ("black" or "grey"); None if unlisted or absent."""
        if not country:
            return None
        code = country.strip().upper()
        if code in self.black:
            return "black"
        if code in self.grey:
            return "grey"
        return None


@dataclass(frozen=True)
class RateTable:
    """Reference rates to CNY and USD per unit of each currency, as of one day."""

    as_of: date
    source: str
    cny_per_unit: Mapping[str, Decimal]
    usd_per_unit: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cny_per_unit", MappingProxyType(dict(self.cny_per_unit)))
        object.__setattr__(self, "usd_per_unit", MappingProxyType(dict(self.usd_per_unit)))

    @property
    def currencies(self) -> frozenset[str]:
        """The currency codes this table converts."""
        return frozenset(self.cny_per_unit)

    def to_cny(self, amount: Decimal | int, currency: str) -> Decimal:
        """``amount`` of ``currency`` in CNY, rounded half-up to the fen."""
        return self._convert(amount, currency, self.cny_per_unit)

    def to_usd(self, amount: Decimal | int, currency: str) -> Decimal:
        """``amount`` of ``currency`` in USD, rounded half-up to the cent."""
        return self._convert(amount, currency, self.usd_per_unit)

    def _convert(
        self, amount: Decimal | int, currency: str, rates: Mapping[str, Decimal]
    ) -> Decimal:
        # The common exact-Decimal case skips the type checks and the copy. Conversions
        # are not cached: a multiply and a quantize (about 0.5 us here) cost less than a
        # cache miss, whose key hashes a fresh Decimal (about 1.2 us), and the worker's
        # five conversions of one amount came out even with such a cache.
        if type(amount) is Decimal:
            return self._convert_exactly(amount, currency, rates)
        if isinstance(amount, float | bool) or not isinstance(amount, Decimal | int):
            raise TypeError(f"amount must be a Decimal or an int, not {type(amount).__name__}")
        return self._convert_exactly(Decimal(amount), currency, rates)

    def _convert_exactly(
        self, value: Decimal, currency: str, rates: Mapping[str, Decimal]
    ) -> Decimal:
        rate = rates.get(currency)
        if rate is None:
            raise UnknownCurrency(currency, self.as_of)
        if not value.is_finite():
            raise InvalidInput("amount to convert is not a finite number")
        # The context's quantize, not the Decimal's with context=: a keyword argument
        # costs its parsing, about 0.3 us of a conversion's 0.7.
        return _ROUNDING.quantize(_EXACT.multiply(value, rate), CENT)


@dataclass(frozen=True)
class Reference:
    """Dated reference data the rules read (rates, country lists, watch list, calendar)."""

    rates: RateTable
    country_lists: CountryLists
    watch_list: WatchList
    timezone: tzinfo
    home_currency: str = "CNY"
    bank_country: str = "CN"


# --------------------------------------------------------------------------- loaders


def load_country_lists(path: Path | None = None) -> CountryLists:
    """The FATF lists from ``path``, or the packaged ``fatf.toml``."""
    name, text = _read(path, FATF_FILE)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise ReferenceDataError(
            name, int(found.group(1)) if found else None, None, f"not valid TOML ({exc})"
        ) from None

    def fail(key: str, problem: str, value: str | None = None) -> ReferenceDataError:
        return ReferenceDataError(name, _toml_line(text, key, value), key, problem)

    as_of = document.get("as_of")
    if isinstance(as_of, str):
        as_of = _iso_date(as_of)
    if not isinstance(as_of, date):
        raise fail("as_of", "must be a date such as 2026-06-19")
    source = document.get("source")
    if not isinstance(source, str) or not source.strip():
        raise fail("source", "must be a non-empty string")
    verify = document.get("verify", False)
    if not isinstance(verify, bool):
        raise fail("verify", "must be true or false")
    lists: dict[str, frozenset[str]] = {}
    for table in ("black", "grey"):
        key = f"{table}.countries"
        section = document.get(table)
        codes = section.get("countries") if isinstance(section, dict) else None
        if not isinstance(codes, list):
            raise fail(key, f"[{table}] needs a 'countries' list")
        seen: set[str] = set()
        for code in codes:
            if not isinstance(code, str) or code not in country_codes():
                raise fail(key, f"{code!r} is not an ISO 3166-1 alpha-2 code", str(code))
            if code in seen:
                raise fail(key, f"{code} is listed twice", code)
            seen.add(code)
        lists[table] = frozenset(seen)
    both = sorted(lists["black"] & lists["grey"])
    if both:
        raise fail("grey.countries", f"{both[0]} is on both the black and grey lists", both[0])
    if not lists["black"]:
        raise fail("black.countries", "the black list is empty")
    return CountryLists(
        as_of=as_of, source=source.strip(), black=lists["black"], grey=lists["grey"], verify=verify
    )


def load_rates(path: Path | None = None) -> RateTable:
    """The rate table from ``path``, or the packaged ``rates.csv``."""
    name, text = _read(path, RATES_FILE)
    header = _header(name, text)
    cny: dict[str, Decimal] = {}
    usd: dict[str, Decimal] = {}
    lines: dict[str, int] = {}
    for line, row in _rows(name, text, ("currency", "cny_per_unit", "usd_per_unit")):
        currency = row["currency"]
        if currency not in currency_codes():
            raise ReferenceDataError(name, line, "currency", "is not an ISO 4217 currency code")
        if currency in lines:
            raise ReferenceDataError(
                name, line, "currency", f"{currency} already appears on line {lines[currency]}"
            )
        lines[currency] = line
        cny[currency] = _positive_decimal(name, line, "cny_per_unit", row["cny_per_unit"])
        usd[currency] = _positive_decimal(name, line, "usd_per_unit", row["usd_per_unit"])
    for currency, column, rates in (("CNY", "cny_per_unit", cny), ("USD", "usd_per_unit", usd)):
        if currency not in rates:
            raise ReferenceDataError(name, None, "currency", f"{currency} has no row")
        if rates[currency] != 1:
            raise ReferenceDataError(name, lines[currency], column, f"must be 1 for {currency}")
    cny_per_usd = cny["USD"]
    for currency, line in lines.items():
        implied = usd[currency] * cny_per_usd
        if abs(implied - cny[currency]) > cny[currency] * RATE_CROSS_CHECK_TOLERANCE:
            raise ReferenceDataError(
                name,
                line,
                "usd_per_unit",
                f"times the USD rate gives {implied:.6g} CNY, not {cny[currency]} "
                f"(more than {RATE_CROSS_CHECK_TOLERANCE:%} apart)",
            )
    return RateTable(as_of=header.as_of, source=header.source, cny_per_unit=cny, usd_per_unit=usd)


def load_calendar(path: Path | None = None, *, earliest_beyond: bool = False) -> WorkingCalendar:
    """The working calendar from ``path``, or the packaged ``holidays-cn.csv``.

    ``earliest_beyond``: past the file's last year every day counts as a working day
    (see :class:`~core.calendar.WorkingCalendar`) instead of being refused.
    """
    name, text = _read(path, HOLIDAYS_FILE)
    header = _header(name, text)
    holidays: set[date] = set()
    working: set[date] = set()
    lines: dict[date, int] = {}
    for line, row in _rows(name, text, ("date", "kind", "name")):
        day = _iso_date(row["date"])
        if day is None:
            raise ReferenceDataError(name, line, "date", "is not a YYYY-MM-DD date")
        if day in lines:
            raise ReferenceDataError(
                name, line, "date", f"{day} already appears on line {lines[day]}"
            )
        lines[day] = line
        if header.years is not None and day.year not in header.years:
            raise ReferenceDataError(
                name, line, "date", f"is outside the years {_span(header.years)} of the header"
            )
        if not row["name"]:
            raise ReferenceDataError(name, line, "name", "is empty")
        match row["kind"]:
            case "holiday":
                holidays.add(day)
            case "working_day":
                if day.weekday() < 5:
                    raise ReferenceDataError(
                        name, line, "date", "a make-up working_day must be a Saturday or Sunday"
                    )
                working.add(day)
            case _:
                raise ReferenceDataError(name, line, "kind", "must be holiday or working_day")
    years = header.years
    if years is None:
        if not holidays:
            raise ReferenceDataError(name, None, "date", "no holidays are listed")
        years = range(min(lines).year, max(lines).year + 1)
    # A covered year without any holiday would silently count Spring Festival as workdays.
    holiday_years = {day.year for day in holidays}
    for year in years:
        if year not in holiday_years:
            raise ReferenceDataError(name, 1, "years", f"{year} is covered but has no holidays")
    return WorkingCalendar(
        holidays=frozenset(holidays),
        working_weekends=frozenset(working),
        as_of=header.as_of,
        source=header.source,
        first_year=years.start,
        last_year=years.stop - 1,
        earliest_beyond=earliest_beyond,
    )


def load_watch_list(path: Path | None = None) -> WatchList:
    """The watch list from ``path``, or the packaged synthetic ``watchlist.csv``."""
    name, text = _read(path, WATCH_LIST_FILE)
    header = _header(name, text)
    entries: list[WatchListEntry] = []
    lines: dict[str, int] = {}
    for line, row in _rows(name, text, ("entry_id", "list", "name", "aliases", "country")):
        for column in ("entry_id", "list", "name"):
            if not row[column]:
                raise ReferenceDataError(name, line, column, "is empty")
        entry_id = row["entry_id"]
        if entry_id in lines:
            raise ReferenceDataError(
                name, line, "entry_id", f"{entry_id} already appears on line {lines[entry_id]}"
            )
        lines[entry_id] = line
        aliases = tuple(alias.strip() for alias in row["aliases"].split("|"))
        if aliases == ("",):
            aliases = ()
        if any(not alias for alias in aliases):
            raise ReferenceDataError(name, line, "aliases", "has an empty alias (check the |s)")
        for column, names in (("name", (row["name"],)), ("aliases", aliases)):
            if any(not normalise_name(written) for written in names):
                raise ReferenceDataError(name, line, column, "has a name with no letters")
        country = row["country"] or None
        if country is not None and country not in country_codes():
            raise ReferenceDataError(name, line, "country", "is not an ISO 3166-1 alpha-2 code")
        entries.append(WatchListEntry(entry_id, row["list"], row["name"], aliases, country))
    if not entries:
        raise ReferenceDataError(name, None, None, "has no entries")
    return WatchList(entries, as_of=header.as_of, source=header.source)


# --------------------------------------------------------------------------- file parsing


@dataclass(frozen=True)
class _Header:
    as_of: date
    source: str
    years: range | None = None


_HEADER_KEYS = ("as_of", "source", "years", "verify", "note")
# Keys end a value only where "; key: " follows, so a source may contain semicolons.
_HEADER_SPLIT = re.compile(r";\s*(?=(?:" + "|".join(_HEADER_KEYS) + r"):\s)")


def _read(path: Path | None, default: str) -> tuple[str, str]:
    """The file's name for messages and its text, from ``path`` or the package."""
    if path is None:
        resource = resources.files(PACKAGE).joinpath(default)
        return default, resource.read_text(encoding="utf-8")
    try:
        return str(path), Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReferenceDataError(
            str(path), None, None, f"cannot be read ({exc.strerror})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ReferenceDataError(
            str(path), None, None, f"is not UTF-8 (byte {exc.start})"
        ) from None


def _header(name: str, text: str) -> _Header:
    """The ``# as_of: YYYY-MM-DD; source: ...`` comment on the first line."""
    first = text.splitlines()[0] if text else ""
    if not first.startswith("#"):
        raise ReferenceDataError(
            name, 1, "as_of", "the first line must be '# as_of: YYYY-MM-DD; source: ...'"
        )
    values: dict[str, str] = {}
    for part in _HEADER_SPLIT.split(first.lstrip("#").strip()):
        key, _, value = part.partition(":")
        values[key.strip()] = value.strip()
    as_of = _iso_date(values.get("as_of", ""))
    if as_of is None:
        raise ReferenceDataError(name, 1, "as_of", "is missing or not a YYYY-MM-DD date")
    source = values.get("source", "")
    if not source:
        raise ReferenceDataError(name, 1, "source", "is missing or empty")
    years = None
    if "years" in values:
        found = re.fullmatch(r"(\d{4})\s*-\s*(\d{4})", values["years"])
        if found is None or int(found.group(1)) > int(found.group(2)):
            raise ReferenceDataError(name, 1, "years", "must be a range such as 2024-2026")
        years = range(int(found.group(1)), int(found.group(2)) + 1)
    return _Header(as_of, source, years)


def _rows(name: str, text: str, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data line; comments and blank lines are skipped."""
    header_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            cells = next(csv.reader([raw], strict=True))
        except csv.Error as exc:
            raise ReferenceDataError(name, number, None, f"is not valid CSV ({exc})") from None
        cells = [cell.strip() for cell in cells]
        if not header_seen:
            if tuple(cells) != columns:
                raise ReferenceDataError(
                    name, number, "header", f"the columns must be {','.join(columns)}"
                )
            header_seen = True
            continue
        if len(cells) != len(columns):
            raise ReferenceDataError(
                name, number, None, f"has {len(cells)} fields, expected {len(columns)}"
            )
        yield number, dict(zip(columns, cells, strict=True))
    if not header_seen:
        raise ReferenceDataError(name, None, "header", f"no {','.join(columns)} header row")


def _positive_decimal(name: str, line: int, column: str, value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ReferenceDataError(name, line, column, "not a decimal number") from None
    if not number.is_finite() or number <= 0:
        raise ReferenceDataError(name, line, column, "must be a positive decimal number")
    if len(number.as_tuple().digits) > MAX_RATE_DIGITS:
        raise ReferenceDataError(name, line, column, f"has more than {MAX_RATE_DIGITS} digits")
    return number


def _iso_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def _span(years: range) -> str:
    return f"{years.start}-{years.stop - 1}"


def _toml_line(text: str, key: str, value: str | None) -> int | None:
    """Best-effort line of ``key`` (``table.key`` allowed) or of a quoted ``value`` in it."""
    table, _, leaf = key.rpartition(".")
    in_table = not table
    key_line = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("["):
            in_table = stripped == f"[{table}]"
            continue
        if not in_table:
            continue
        if key_line is None and re.match(rf"{re.escape(leaf)}\s*=", stripped):
            key_line = number
            if value is None:
                return number
        if key_line is not None and value is not None and f'"{value}"' in raw:
            return number
    return key_line


__all__ = [
    "CountryLists",
    "CountryRisk",
    "RateTable",
    "Reference",
    "ReferenceDataError",
    "UnknownCurrency",
    "load_calendar",
    "load_country_lists",
    "load_rates",
    "load_watch_list",
]
