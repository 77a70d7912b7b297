"""The Transaction record of the contract in DESIGN.md, and its strict JSON decoder.

The decoder is the single gate between untrusted bytes and the rest of the system: it
either returns a fully valid :class:`Transaction` or raises :class:`InvalidTransaction`
with a low-cardinality ``reason`` (safe as a metric label), the offending ``field`` and
a message for people. It never echoes field values, which may be customer data.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

from core.errors import InvalidInput
from core.reference import country_codes, currency_codes

# Larger than any real single transaction, small enough that sums over a customer's
# history stay far inside Decimal's default 28-digit context.
MAX_AMOUNT = Decimal("999999999999999.9999")
MAX_AMOUNT_DECIMAL_PLACES = 4
_SMALLEST_PLACE = Decimal(1).scaleb(-MAX_AMOUNT_DECIMAL_PLACES)
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 2000
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024


class Direction(StrEnum):
    """Credit to (``in``) or debit from (``out``) the customer's account."""

    IN = "in"
    OUT = "out"


class Channel(StrEnum):
    CASH = "cash"
    TRANSFER = "transfer"
    CARD = "card"
    WIRE = "wire"
    OTHER = "other"


class InvalidReason(StrEnum):
    """Why a message was refused; few values on purpose (they label metrics)."""

    TOO_LARGE = "too_large"
    EMPTY = "empty"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"


class InvalidTransaction(InvalidInput):
    """A message that is not a valid transaction; ``reason`` is a metric-safe category."""

    def __init__(self, reason: InvalidReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


REQUIRED_FIELDS = (
    "tx_id",
    "timestamp",
    "customer_id",
    "account_id",
    "direction",
    "amount",
    "currency",
    "channel",
)
OPTIONAL_FIELDS = (
    "counterparty_id",
    "counterparty_name",
    "counterparty_country",
    "description",
)
CONTRACT_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
# Looked up for every key of every message: a set, and enum members by value without
# the Enum call (about a microsecond each).
_CONTRACT_FIELD_SET = frozenset(CONTRACT_FIELDS)
_DIRECTION_BY_VALUE: dict[str, Direction] = {member.value: member for member in Direction}
_CHANNEL_BY_VALUE: dict[str, Channel] = {member.value: member for member in Channel}
# A transaction without extra fields: one read-only empty mapping for all of them.
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Transaction:
    """One movement on a customer's account, already validated.

    ``__init__`` is written out: the one ``dataclass`` generates is Python that mypyc does
    not compile, and every transaction decoded or read from a file makes one (2.3 us
    interpreted). It sets the fields below, in their order, with their defaults.
    """

    tx_id: str
    timestamp: datetime
    customer_id: str
    account_id: str
    direction: Direction
    amount: Decimal
    currency: str
    channel: Channel
    counterparty_id: str | None = None
    counterparty_name: str | None = None
    counterparty_country: str | None = None
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA)

    def __init__(
        self,
        tx_id: str,
        timestamp: datetime,
        customer_id: str,
        account_id: str,
        direction: Direction,
        amount: Decimal,
        currency: str,
        channel: Channel,
        counterparty_id: str | None = None,
        counterparty_name: str | None = None,
        counterparty_country: str | None = None,
        description: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        # object.__setattr__, as a frozen dataclass's own __init__ sets its fields. Named
        # in each line, not through a local alias: mypyc turns the named call into a
        # direct store, and the alias into a generic call per field (a compiled
        # 13-field class here: 50 ns a construction against 1.3 us).
        object.__setattr__(self, "tx_id", tx_id)
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "customer_id", customer_id)
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "counterparty_id", counterparty_id)
        object.__setattr__(self, "counterparty_name", counterparty_name)
        object.__setattr__(self, "counterparty_country", counterparty_country)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "extra", _NO_EXTRA if extra is None else extra)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape: amount as a string, timestamp in RFC 3339, extras kept."""
        document: dict[str, Any] = dict(self.extra)
        document.update(
            tx_id=self.tx_id,
            timestamp=self.timestamp.isoformat(),
            customer_id=self.customer_id,
            account_id=self.account_id,
            direction=self.direction.value,
            amount=str(self.amount),
            currency=self.currency,
            channel=self.channel.value,
        )
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                document[name] = value
        return document

    def to_json_bytes(self) -> bytes:
        """Canonical UTF-8 JSON that :func:`decode_transaction` reads back unchanged."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @property
    def event_epoch(self) -> float:
        """Event time as POSIX seconds."""
        return self.timestamp.timestamp()


def _refuse_constant(name: str) -> Any:
    raise InvalidTransaction(InvalidReason.NOT_JSON, f"JSON constant {name} is not allowed")


# Made once: json.loads with these arguments builds a new decoder for every message.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_refuse_constant)


def decode_transaction(
    payload: bytes | None, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Transaction:
    """Decode and validate one message value; raise InvalidTransaction with the reason."""
    if payload is None or len(payload) == 0:
        raise InvalidTransaction(InvalidReason.EMPTY, "message value is empty")
    if len(payload) > max_bytes:
        raise InvalidTransaction(
            InvalidReason.TOO_LARGE,
            f"message value is {len(payload)} bytes, more than the limit of {max_bytes}",
        )
    document = _parsed_without_floats(payload)
    if document is not None:
        return transaction_from_mapping(document)
    # Numbers with a fraction or exponent, which must be Decimal, or not valid JSON:
    # the stdlib decoder answers exactly, and says where the JSON is wrong.
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTransaction(
            InvalidReason.NOT_UTF8, f"message value is not UTF-8 (byte {exc.start})"
        ) from None
    try:
        document = _DECODER.decode(text)
    except InvalidTransaction:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidTransaction(
            InvalidReason.NOT_JSON,
            f"message value is not valid JSON at line {exc.lineno} column {exc.colno}",
        ) from None
    except (ValueError, RecursionError):
        # Integers over Python's digit limit, or nesting deeper than the recursion limit.
        raise InvalidTransaction(
            InvalidReason.NOT_JSON, "message value is not valid JSON"
        ) from None
    return transaction_from_mapping(document)


def _parsed_without_floats(payload: bytes) -> Any:
    """``payload`` parsed by orjson (3-4 us a transaction faster than the stdlib here), or
    None when orjson refuses it or it holds a float.

    What orjson accepts and parses without a float is what the stdlib decoder makes of
    it too (the same strings, integers, keys, last duplicate key winning). It refuses
    what the stdlib decoder may accept (lone surrogates, NaN) and makes floats of
    fractions, exponents and integers beyond 64 bits, which must be Decimal and int:
    those go to the stdlib decoder.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return None if _holds_float(document) else document


def _holds_float(value: Any) -> bool:
    """Whether a float is anywhere in a parsed JSON value."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return isinstance(value, float)
    for item in value:
        if isinstance(item, float):
            return True
        # Two isinstance calls, not one of `dict | list`: mypyc checks each type inline
        # but builds that union anew at every call (18,000 instructions a transaction).
        if (isinstance(item, dict) or isinstance(item, list)) and _holds_float(item):  # noqa: SIM101
            return True
    return False


def transaction_from_mapping(document: Any) -> Transaction:
    """Validate an already-parsed JSON document (or CSV row) into a Transaction."""
    if not isinstance(document, dict):
        raise InvalidTransaction(
            InvalidReason.NOT_OBJECT,
            f"message value must be a JSON object, not {_json_type(document)}",
        )
    for name in REQUIRED_FIELDS:
        if document.get(name) is None:
            raise InvalidTransaction(
                InvalidReason.MISSING_FIELD, f"required field {name!r} is missing", name
            )
    extra = {key: value for key, value in document.items() if key not in _CONTRACT_FIELD_SET}
    return Transaction(
        tx_id=_identifier(document, "tx_id"),
        timestamp=_timestamp(document["timestamp"]),
        customer_id=_identifier(document, "customer_id"),
        account_id=_identifier(document, "account_id"),
        direction=_member(_DIRECTION_BY_VALUE, document, "direction"),
        amount=_amount(document["amount"]),
        currency=_currency(document["currency"]),
        channel=_member(_CHANNEL_BY_VALUE, document, "channel"),
        counterparty_id=_optional_text(document, "counterparty_id", MAX_ID_LENGTH),
        counterparty_name=_optional_text(document, "counterparty_name", MAX_TEXT_LENGTH),
        counterparty_country=_country(document.get("counterparty_country")),
        description=_optional_text(document, "description", MAX_TEXT_LENGTH),
        extra=MappingProxyType(extra),
    )


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float() | Decimal():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


def _string(document: dict[str, Any], name: str) -> str:
    value = document[name]
    if not isinstance(value, str):
        raise InvalidTransaction(
            InvalidReason.WRONG_TYPE, f"{name!r} must be a string, not {_json_type(value)}", name
        )
    return value


_E = TypeVar("_E", bound=StrEnum)


def _identifier(document: dict[str, Any], name: str) -> str:
    value = _string(document, name)
    if not value.strip():
        raise InvalidTransaction(InvalidReason.INVALID_VALUE, f"{name!r} is blank", name)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE,
            f"{name!r} is {len(value)} characters long, more than {MAX_ID_LENGTH}",
            name,
        )
    return value


def _optional_text(document: dict[str, Any], name: str, max_length: int) -> str | None:
    if document.get(name) is None:
        return None
    value = _string(document, name)
    if len(value) > max_length:
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE,
            f"{name!r} is {len(value)} characters long, more than {max_length}",
            name,
        )
    return value


def _member(by_value: Mapping[str, _E], document: dict[str, Any], name: str) -> _E:
    member = by_value.get(_string(document, name))
    if member is None:
        allowed = ", ".join(by_value)
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE, f"{name!r} must be one of: {allowed}", name
        )
    return member


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidTransaction(
            InvalidReason.WRONG_TYPE,
            f"'timestamp' must be an RFC 3339 string, not {_json_type(value)}",
            "timestamp",
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE, "'timestamp' is not an RFC 3339 date-time", "timestamp"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE,
            "'timestamp' has no UTC offset (RFC 3339 needs one, e.g. +08:00 or Z)",
            "timestamp",
        )
    return moment


def _amount(value: Any) -> Decimal:
    # bool is an int subclass; true/false are never amounts.
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise InvalidTransaction(
            InvalidReason.WRONG_TYPE,
            f"'amount' must be a decimal number or string, not {_json_type(value)}",
            "amount",
        )
    few_places = False  # known to have at most MAX_AMOUNT_DECIMAL_PLACES decimals
    if isinstance(value, str):
        if len(value) > 64:
            raise InvalidTransaction(
                InvalidReason.INVALID_VALUE, "'amount' string is too long", "amount"
            )
        text = value.strip()
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise InvalidTransaction(
                InvalidReason.INVALID_VALUE, "'amount' is not a decimal number", "amount"
            ) from None
        # Plain digits with a point: its places are what follows the point, read without
        # as_tuple() (0.5 us). Exponents and the rest are checked below.
        point = text.find(".")
        few_places = (
            text.isascii()
            and "e" not in text.lower()
            and (point < 0 or len(text) - point - 1 <= MAX_AMOUNT_DECIMAL_PLACES)
        )
    else:
        amount = Decimal(value)
    if not amount.is_finite():
        raise InvalidTransaction(InvalidReason.INVALID_VALUE, "'amount' is not finite", "amount")
    if amount <= 0:
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE, "'amount' must be greater than zero", "amount"
        )
    if amount > MAX_AMOUNT:
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE, f"'amount' is larger than {MAX_AMOUNT}", "amount"
        )
    if few_places:
        return amount
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_AMOUNT_DECIMAL_PLACES:
        if amount != amount.quantize(_SMALLEST_PLACE):
            raise InvalidTransaction(
                InvalidReason.INVALID_VALUE,
                f"'amount' has more than {MAX_AMOUNT_DECIMAL_PLACES} decimal places",
                "amount",
            )
        amount = amount.quantize(_SMALLEST_PLACE)
    return amount


def _currency(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidTransaction(
            InvalidReason.WRONG_TYPE,
            f"'currency' must be a string, not {_json_type(value)}",
            "currency",
        )
    if value not in currency_codes():
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE,
            "'currency' is not an upper-case ISO 4217 code",
            "currency",
        )
    return value


def _country(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTransaction(
            InvalidReason.WRONG_TYPE,
            f"'counterparty_country' must be a string, not {_json_type(value)}",
            "counterparty_country",
        )
    if value not in country_codes():
        raise InvalidTransaction(
            InvalidReason.INVALID_VALUE,
            "'counterparty_country' is not an upper-case ISO 3166-1 alpha-2 code",
            "counterparty_country",
        )
    return value


@dataclass(frozen=True, slots=True)
class CsvRowError:
    """A transactions-file row that failed validation, located by line and field."""

    source: str
    line: int
    error: InvalidTransaction

    def __str__(self) -> str:
        field = f", field {self.error.field!r}" if self.error.field else ""
        return f"{self.source} line {self.line}{field}: {self.error.message}"


def read_transactions_csv(path: Path) -> Iterator[tuple[int, Transaction | CsvRowError]]:
    """(line, Transaction or CsvRowError) per data row of a CSV with the contract's columns.

    Empty cells of optional fields mean absent; other columns are kept as extra fields.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            document = {
                key: value
                for key, value in row.items()
                if key is not None and not (value == "" and key in OPTIONAL_FIELDS)
            }
            try:
                yield reader.line_num, transaction_from_mapping(document)
            except InvalidTransaction as exc:
                yield reader.line_num, CsvRowError(path.name, reader.line_num, exc)
