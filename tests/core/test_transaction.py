"""The validator: every kind of bad input is refused with its reason; good input round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from core.transaction import (
    Channel,
    Direction,
    InvalidReason,
    InvalidTransaction,
    Transaction,
    decode_transaction,
    transaction_from_mapping,
)


def valid_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "tx_id": "TX-000001",
        "timestamp": "2026-11-28T09:30:00+08:00",
        "customer_id": "C0001",
        "account_id": "6222000000000001",
        "direction": "in",
        "amount": "49999.99",
        "currency": "CNY",
        "channel": "cash",
    }
    document.update(changes)
    return {key: value for key, value in document.items() if value is not _DROP}


_DROP = object()


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def refused(payload: bytes | None, **options: Any) -> InvalidTransaction:
    with pytest.raises(InvalidTransaction) as caught:
        decode_transaction(payload, **options)
    return caught.value


def test_valid_message_decodes_every_field() -> None:
    payload = encode(
        valid_document(
            counterparty_id="CP-9",
            counterparty_name="某某贸易有限公司",
            counterparty_country="HK",
            description="货款",
        )
    )
    tx = decode_transaction(payload)
    assert tx.tx_id == "TX-000001"
    assert tx.timestamp == datetime(2026, 11, 28, 1, 30, tzinfo=UTC)
    assert tx.timestamp.utcoffset() == timedelta(hours=8)
    assert tx.direction is Direction.IN
    assert tx.channel is Channel.CASH
    assert tx.amount == Decimal("49999.99")
    assert isinstance(tx.amount, Decimal)
    assert tx.counterparty_country == "HK"
    assert tx.counterparty_name == "某某贸易有限公司"


def test_numeric_amount_is_read_exactly_not_through_float() -> None:
    tx = decode_transaction(
        b'{"tx_id":"t","timestamp":"2026-01-01T00:00:00Z","customer_id":"c",'
        b'"account_id":"a","direction":"out","amount":0.1,"currency":"USD",'
        b'"channel":"wire"}'
    )
    assert tx.amount == Decimal("0.1")
    assert tx.timestamp.tzinfo == UTC or tx.timestamp.utcoffset() == timedelta(0)


def test_optional_fields_may_be_absent_or_null() -> None:
    tx = decode_transaction(encode(valid_document(counterparty_id=None, description=None)))
    assert tx.counterparty_id is None
    assert tx.description is None
    assert tx.counterparty_country is None


def test_unknown_extra_fields_are_kept_and_round_trip() -> None:
    document = valid_document(branch_code="0101", tags=["x", 1])
    tx = decode_transaction(encode(document))
    assert dict(tx.extra) == {"branch_code": "0101", "tags": ["x", 1]}
    again = decode_transaction(tx.to_json_bytes())
    assert again == tx
    assert json.loads(tx.to_json_bytes())["branch_code"] == "0101"


def test_canonical_json_keeps_offset_and_amount_string() -> None:
    tx = decode_transaction(encode(valid_document(amount=1500)))
    document = json.loads(tx.to_json_bytes())
    assert document["amount"] == "1500"
    assert document["timestamp"] == "2026-11-28T09:30:00+08:00"


def _decoded_by_the_stdlib_alone(payload: bytes) -> Transaction | InvalidReason:
    """What decode_transaction made of a parsed payload before orjson: Decimal floats."""
    try:
        document = json.loads(payload, parse_float=Decimal)
    except ValueError:
        return InvalidReason.NOT_JSON
    try:
        return transaction_from_mapping(document)
    except InvalidTransaction as refusal:
        return refusal.reason


# Where orjson's answer differs from the stdlib's (floats for fractions, exponents and
# integers beyond 64 bits; lone surrogates and NaN refused): the stdlib's must be kept.
_PARSER_EDGES = {
    "float-in-extra": valid_document(weight=Decimal("0.5")),
    "float-deep-in-extra": valid_document(
        tags=["x", {"w": Decimal("2.5"), "n": [Decimal("1E-7")]}]
    ),
    "exponent-amount": valid_document(amount=Decimal("1E+3")),
    "integer-beyond-64-bits": valid_document(big=2**64, small=-(2**63) - 1),
    "integer-at-64-bits": valid_document(big=2**64 - 1, small=-(2**63)),
    "plain-nested-extra": valid_document(tags=["x", 1, {"k": None, "t": True}]),
    "duplicate-key": valid_document(),
    "lone-surrogate": valid_document(description="SURROGATE"),
    "top-level-array": [valid_document()],
}


def _edge_payload(name: str) -> bytes:
    text = json.dumps(_PARSER_EDGES[name], default=str, ensure_ascii=False)
    # json.dumps writes Decimal through default=str as a string: make them numbers again.
    for number in ("0.5", "2.5", "1E-7", "1E+3"):
        text = text.replace(f'"{number}"', number)
    if name == "duplicate-key":
        text = text.replace('"amount": "49999.99"', '"amount": "1.00", "amount": "2.00"')
    if name == "lone-surrogate":
        text = text.replace("SURROGATE", "\\ud800")  # a JSON escape orjson refuses
    return text.encode()


@pytest.mark.parametrize("name", sorted(_PARSER_EDGES))
def test_fast_parser_gives_what_the_stdlib_decoder_gives(name: str) -> None:
    payload = _edge_payload(name)
    expected = _decoded_by_the_stdlib_alone(payload)
    try:
        got: Transaction | InvalidReason = decode_transaction(payload)
    except InvalidTransaction as refusal:
        got = refusal.reason
    # repr, not ==: 0.5 == Decimal("0.5") and float(2**64) == 2**64 would hide a float.
    assert repr(got) == repr(expected)


def test_fast_parser_edges_are_the_cases_they_name() -> None:
    assert decode_transaction(_edge_payload("float-in-extra")).extra["weight"] == Decimal("0.5")
    assert (
        type(decode_transaction(_edge_payload("float-deep-in-extra")).extra["tags"][1]["n"][0])
        is Decimal
    )
    assert decode_transaction(_edge_payload("exponent-amount")).amount == Decimal(1000)
    assert decode_transaction(_edge_payload("integer-beyond-64-bits")).extra["big"] == 2**64
    assert type(decode_transaction(_edge_payload("integer-beyond-64-bits")).extra["big"]) is int
    assert decode_transaction(_edge_payload("duplicate-key")).amount == Decimal("2.00")
    assert decode_transaction(_edge_payload("lone-surrogate")).description == "\ud800"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2345", "1.2345"),
        (" 1.2345 ", "1.2345"),
        ("1.23450", "1.2345"),
        ("1_000.25", "1000.25"),
        ("1.2_3", "1.23"),
        ("12.", "12"),
        (".5", "0.5"),
        ("1.5E-3", "0.0015"),
        ("1.5e-4", None),
        ("1.23456", None),
        ("1.00001", None),
        ("1E-5", None),
        ("1.2345_6", None),
    ],
)
def test_decimal_places_are_counted_exactly_in_every_notation(
    text: str, expected: str | None
) -> None:
    payload = encode(valid_document(amount=text))
    if expected is None:
        assert refused(payload).field == "amount"
    else:
        amount = decode_transaction(payload).amount
        assert str(amount) == str(Decimal(expected)) and amount == Decimal(expected)


def test_excess_zero_decimals_are_normalised_not_refused() -> None:
    tx = decode_transaction(encode(valid_document(amount="12.500000")))
    assert tx.amount == Decimal("12.5")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, InvalidReason.EMPTY),
        (b"", InvalidReason.EMPTY),
        (b"not json at all", InvalidReason.NOT_JSON),
        (b'{"tx_id": "t1", ', InvalidReason.NOT_JSON),
        (b"\xff\xfe\x00garbage", InvalidReason.NOT_UTF8),
        ('{"tx_id": "\u00e9"}'.encode("latin-1"), InvalidReason.NOT_UTF8),
        (b"[1, 2, 3]", InvalidReason.NOT_OBJECT),
        (b'"a string"', InvalidReason.NOT_OBJECT),
        (b"42", InvalidReason.NOT_OBJECT),
        (b"null", InvalidReason.NOT_OBJECT),
        (b"[" * 100_000 + b"]" * 100_000, InvalidReason.NOT_JSON),
    ],
    ids=[
        "none",
        "empty",
        "non-json",
        "truncated-json",
        "non-utf8",
        "latin1",
        "array",
        "string",
        "number",
        "null",
        "deeply-nested",
    ],
)
def test_undecodable_payloads(payload: bytes | None, reason: InvalidReason) -> None:
    assert refused(payload, max_bytes=1_000_000).reason is reason


def test_payload_over_the_size_limit_is_refused_before_parsing() -> None:
    big = encode(valid_document(description="x" * 1_000_000))
    error = refused(big)
    assert error.reason is InvalidReason.TOO_LARGE
    assert str(len(big)) in error.message


def test_one_megabyte_garbage_is_refused_quickly_as_too_large() -> None:
    assert refused(b"\x00" * 1_048_576).reason is InvalidReason.TOO_LARGE


@pytest.mark.parametrize(
    "name",
    [
        "tx_id",
        "timestamp",
        "customer_id",
        "account_id",
        "direction",
        "amount",
        "currency",
        "channel",
    ],
)
def test_each_required_field_missing(name: str) -> None:
    error = refused(encode(valid_document(**{name: _DROP})))
    assert error.reason is InvalidReason.MISSING_FIELD
    assert error.field == name


def test_required_field_null_counts_as_missing() -> None:
    error = refused(encode(valid_document(customer_id=None)))
    assert (error.reason, error.field) == (InvalidReason.MISSING_FIELD, "customer_id")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tx_id", 12345),
        ("customer_id", ["C1"]),
        ("account_id", {"no": 1}),
        ("direction", 1),
        ("channel", True),
        ("amount", True),
        ("amount", [100]),
        ("amount", {"value": 100}),
        ("currency", 156),
        ("timestamp", 1795830000),
        ("counterparty_country", 86),
        ("counterparty_name", 42),
        ("description", ["a"]),
    ],
)
def test_wrong_typed_fields(name: str, value: Any) -> None:
    error = refused(encode(valid_document(**{name: value})))
    assert error.reason is InvalidReason.WRONG_TYPE
    assert error.field == name


@pytest.mark.parametrize(
    "amount",
    [
        "-1",
        -5,
        "0",
        0,
        "0.00",
        "-0.01",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "1e400",
        "1000000000000000000",
        "12abc",
        "",
        "   ",
        "0.00001",
        "1" * 70,
    ],
)
def test_bad_amounts(amount: Any) -> None:
    error = refused(encode(valid_document(amount=amount)))
    assert error.reason is InvalidReason.INVALID_VALUE
    assert error.field == "amount"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_nan_and_infinity_literals_are_refused(literal: bytes) -> None:
    payload = encode(valid_document(amount=0)).replace(b'"amount": 0', b'"amount": ' + literal)
    assert literal in payload
    assert refused(payload).reason is InvalidReason.NOT_JSON


def test_huge_json_number_is_refused_as_invalid_value() -> None:
    payload = encode(valid_document(amount=0)).replace(b'"amount": 0', b'"amount": 1' + b"0" * 500)
    assert refused(payload).reason is InvalidReason.INVALID_VALUE


def test_largest_allowed_amount_passes() -> None:
    tx = decode_transaction(encode(valid_document(amount="999999999999999.9999")))
    assert tx.amount == Decimal("999999999999999.9999")


@pytest.mark.parametrize("currency", ["cny", "XYZ", "RMB", "US", "USDD", ""])
def test_bad_currency(currency: str) -> None:
    error = refused(encode(valid_document(currency=currency)))
    assert (error.reason, error.field) == (InvalidReason.INVALID_VALUE, "currency")


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-28T09:30:00",
        "2026-11-28",
        "yesterday",
        "2026-13-01T00:00:00+08:00",
        "2026-02-30T00:00:00+08:00",
        "28/11/2026 09:30 +0800",
        "",
    ],
)
def test_bad_timestamp(timestamp: str) -> None:
    error = refused(encode(valid_document(timestamp=timestamp)))
    assert (error.reason, error.field) == (InvalidReason.INVALID_VALUE, "timestamp")


def test_timestamp_with_z_and_other_offsets_is_accepted() -> None:
    tx = decode_transaction(encode(valid_document(timestamp="2026-11-28T01:30:00.123Z")))
    assert tx.timestamp.utcoffset() == timedelta(0)
    tx = decode_transaction(encode(valid_document(timestamp="2026-11-28T01:30:00-05:00")))
    assert tx.timestamp.tzinfo == timezone(timedelta(hours=-5))


@pytest.mark.parametrize(
    ("name", "value"),
    [("direction", "IN"), ("direction", "credit"), ("channel", "crypto"), ("channel", "")],
)
def test_unknown_enum_values(name: str, value: str) -> None:
    error = refused(encode(valid_document(**{name: value})))
    assert (error.reason, error.field) == (InvalidReason.INVALID_VALUE, name)
    assert "one of" in error.message


@pytest.mark.parametrize("country", ["XX", "cn", "CHN", ""])
def test_bad_counterparty_country(country: str) -> None:
    error = refused(encode(valid_document(counterparty_country=country)))
    assert (error.reason, error.field) == (InvalidReason.INVALID_VALUE, "counterparty_country")


@pytest.mark.parametrize("name", ["tx_id", "customer_id", "account_id"])
def test_blank_or_overlong_identifiers(name: str) -> None:
    assert refused(encode(valid_document(**{name: "  "}))).field == name
    assert (
        refused(encode(valid_document(**{name: "x" * 129}))).reason is InvalidReason.INVALID_VALUE
    )


def test_error_messages_never_echo_field_values() -> None:
    secret = "张三-110101199003071234"
    for document in (
        valid_document(currency=secret),
        valid_document(direction=secret),
        valid_document(timestamp=secret),
        valid_document(amount=secret),
    ):
        assert secret not in refused(encode(document)).message
