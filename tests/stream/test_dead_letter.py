from __future__ import annotations

from stream.dead_letter import HEADER_PREFIX, dead_letter_headers, read_dead_letter_headers


def test_headers_carry_reason_field_and_source_position() -> None:
    headers = dead_letter_headers(
        reason="invalid_value",
        message="'amount' must be greater than zero",
        field="amount",
        topic="transactions",
        partition=3,
        offset=1207,
    )
    assert all(name.startswith(HEADER_PREFIX) for name, _ in headers)
    assert read_dead_letter_headers(headers) == {
        "reason": "invalid_value",
        "message": "'amount' must be greater than zero",
        "field": "amount",
        "source.topic": "transactions",
        "source.partition": "3",
        "source.offset": "1207",
    }


def test_field_header_is_omitted_when_no_field_is_at_fault() -> None:
    headers = dead_letter_headers(
        reason="not_json", message="bad", field=None, topic="t", partition=0, offset=0
    )
    assert "field" not in read_dead_letter_headers(headers)


def test_reading_ignores_foreign_headers() -> None:
    decoded = read_dead_letter_headers(
        {"traceparent": b"00-abc", HEADER_PREFIX + "reason": b"empty"}
    )
    assert decoded == {"reason": "empty"}
