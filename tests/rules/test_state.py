"""Customer state: windows, daily totals and the compact JSON form of the table value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.transaction import Channel, Direction
from rules import state as state_module
from rules.state import CustomerState, TxEvent

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC).timestamp()
DAY = START // 86_400 + 719_163  # the ordinal of 2 March 2026


def event(
    tx_id: str,
    at: float,
    *,
    direction: Direction = Direction.IN,
    channel: Channel = Channel.TRANSFER,
    currency: str = "CNY",
    amount_cny: str = "100.00",
    amount_usd: str = "13.85",
    counterparty: str | None = "6222000011112222",
    country: str | None = None,
    cross_border: bool = False,
    day: int | None = None,
) -> TxEvent:
    return TxEvent(
        tx_id=tx_id,
        at=at,
        day=int(DAY) + int((at - START) // 86_400) if day is None else day,
        direction=direction,
        channel=channel,
        currency=currency,
        amount_cny=Decimal(amount_cny),
        amount_usd=Decimal(amount_usd),
        counterparty=counterparty,
        country=country,
        cross_border=cross_border,
    )


def mixed_state() -> CustomerState:
    """Events of every kind: out of order, fractional times, odd amounts, missing fields."""
    state = CustomerState()
    for added in (
        event("tx-0001", START),
        event("tx-0003", START + 7200, direction=Direction.OUT, channel=Channel.CASH),
        event("tx-0002", START + 3600.25, currency="USD", amount_cny="7123.45", amount_usd="1000"),
        event("other-9", START + 86_400, counterparty=None, country="SG", cross_border=True),
        event("tx-0004", START + 86_400.5, channel=Channel.WIRE, amount_usd="0.1"),
        event("tx-0005", START + 90_000, counterparty="甲公司", currency="EUR"),
    ):
        state.add(added)
    state.fired["TYP-FAN-IN"] = START + 60
    state.mark_position(("source-3", 42))
    return state


def test_the_json_form_gives_back_an_equal_state() -> None:
    state = mixed_state()
    restored = CustomerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.events == state.events
    assert [type(e.at) for e in restored.events] == [float] * len(state.events)
    assert [str(e.amount_cny) for e in restored.events] == [str(e.amount_cny) for e in state.events]
    assert [str(e.amount_usd) for e in restored.events] == [str(e.amount_usd) for e in state.events]
    assert restored.daily == state.daily
    assert (restored.arrived, restored.fired, restored.positions) == (
        state.arrived,
        state.fired,
        state.positions,
    )
    assert (restored.transactions, restored.first_event_at, restored.last_event_at) == (
        state.transactions,
        state.first_event_at,
        state.last_event_at,
    )
    assert restored.to_dict() == state.to_dict()
    assert restored.has_seen("tx-0003") and not restored.has_seen("tx-0006")
    assert restored.has_seen("new", ("source-3", 42))


def test_an_empty_state_round_trips() -> None:
    assert CustomerState.from_dict(CustomerState().to_dict()) == CustomerState()


def test_another_format_version_is_refused() -> None:
    document = mixed_state().to_dict()
    document["v"] = 1
    with pytest.raises(ValueError, match="rules state format 1"):
        CustomerState.from_dict(document)


def test_ids_share_prefixes_and_whole_fen_are_integers_in_the_json() -> None:
    document = mixed_state().to_dict()
    # In full: the first id, and the one after "other-9"; the others only what differs.
    assert json.dumps(document["e"]).count("tx-000") == 2
    assert document["a"] == [0, 2, 1, 3, 4, 5]  # arrivals still retained: their positions
    assert '"100.00"' not in json.dumps(document)


def test_arrivals_no_longer_retained_round_trip_as_ids() -> None:
    state = mixed_state()
    state.expire(
        now=START + 86_400, today=int(DAY) + 1, retention_seconds=3600, daily_days=9,
        fired_seconds=10**6,
    )  # fmt: skip
    assert [e.tx_id for e in state.events] == ["other-9", "tx-0004", "tx-0005"]
    document = json.loads(json.dumps(state.to_dict()))
    assert document["a"] == ["0:tx-0001", "6:3", "6:2", 0, 1, 2]
    restored = CustomerState.from_dict(document)
    assert restored.arrived == state.arrived
    assert restored.has_seen("tx-0002")


def test_events_stay_in_event_time_order_whatever_the_arrival_order() -> None:
    state = mixed_state()
    assert [e.tx_id for e in state.events] == [
        "tx-0001",
        "tx-0002",
        "tx-0003",
        "other-9",
        "tx-0004",
        "tx-0005",
    ]
    assert state.arrived[:3] == ["tx-0001", "tx-0003", "tx-0002"]


def test_a_window_includes_both_ends() -> None:
    state = mixed_state()
    assert [e.tx_id for e in state.window(START, START + 7200)] == [
        "tx-0001",
        "tx-0002",
        "tx-0003",
    ]
    assert [e.tx_id for e in state.window(START + 3600.5, START + 86_400)] == [
        "tx-0003",
        "other-9",
    ]
    assert state.window(START + 100_000, START + 200_000) == []
    assert CustomerState().window(START, START + 1) == []


def test_daily_totals_are_exact_per_direction_and_day() -> None:
    state = mixed_state()
    assert state.daily_fen_total(Direction.IN, int(DAY), int(DAY) + 1) == 10_000 + 712_345
    assert state.daily_fen_total(Direction.OUT, int(DAY), int(DAY) + 1) == 10_000
    assert state.daily_fen_total(None, int(DAY), int(DAY) + 2) == 10_000 * 5 + 712_345
    assert state.daily[int(DAY)].total(Direction.IN) == Decimal("7223.45")


def test_a_baseline_sum_follows_a_late_transaction_into_its_days() -> None:
    state = mixed_state()
    before = state.baseline_fen_total(Direction.IN, int(DAY), int(DAY) + 1)
    state.add(event("late", START + 60, amount_cny="1.00"))
    assert state.baseline_fen_total(Direction.IN, int(DAY), int(DAY) + 1) == before + 100


def test_the_oldest_arrivals_are_forgotten() -> None:
    state = CustomerState()
    for number in range(5):
        state.add(event(f"a{number}", START + number), arrivals_kept=3)
    assert state.arrived == ["a2", "a3", "a4"]
    state.expire(
        now=START + 10**6, today=int(DAY) + 12, retention_seconds=1, daily_days=1, fired_seconds=1
    )
    assert not state.has_seen("a1") and state.has_seen("a2")


def test_events_at_the_same_time_are_ordered_by_tx_id() -> None:
    state = CustomerState()
    for tx_id in ("m", "z", "a", "n"):
        state.add(event(tx_id, START))
    state.add(event("later", START + 1))
    state.add(event("b", START))
    assert [e.tx_id for e in state.events] == ["a", "b", "m", "n", "z", "later"]
    assert [e.tx_id for e in state.window(START, START)] == ["a", "b", "m", "n", "z"]


# mixed_state() as format 2 wrote it: a repeated counterparty as its first event's
# position, days back from the newest day.
FORMAT_2_STATE = (
    '{"v":2,"n":6,"t0":1772413200.0,"t1":1772503200.0,"e":[["0:tx-0001",[1772413200.0],'
    '739677,2,10000,1385,"CNY","6222000011112222"],["6:2",1772416800.25,0,2,712345,"1000",'
    '"USD",0],["6:3",1772420400.0,0,10,10000,1385,"CNY",0],["0:other-9",79200,1,3,10000,'
    '1385,0,null,"SG"],["0:tx-0004",1772499600.5,0,6,10000,"0.1",0,0],["6:5",1772503200.0,'
    '0,2,10000,1385,"EUR","\\u7532\\u516c\\u53f8"]],"d":[739678,1,722345,10000,0,30000,0],'
    '"a":[0,2,1,3,4,5],"f":{"TYP-FAN-IN":1772413260.0},"p":{"source-3":42}}'
)


def test_format_2_is_still_read() -> None:
    restored = CustomerState.from_dict(json.loads(FORMAT_2_STATE))
    assert restored.to_dict() == mixed_state().to_dict()
    assert restored.events == mixed_state().events


def test_a_repeated_counterparty_counts_back_to_its_last_use() -> None:
    document = mixed_state().to_dict()
    assert document["v"] == 3
    assert [item[7] if len(item) > 7 else None for item in document["e"]] == [
        "6222000011112222", 1, 1, None, 2, "甲公司"
    ]  # fmt: skip
    assert document["d"] == [int(DAY), 722345, 10000, 1, 30000, 0]  # days after the previous


def test_the_json_text_equals_the_dict_through_every_change() -> None:
    state = mixed_state()
    encodings: list[str] = []

    def written() -> None:
        text = state.to_json()
        assert text == json.dumps(state.to_dict(), separators=(",", ":"))
        encodings.append(text)

    written()
    state.add(event("tx-0006", START + 90_100, counterparty="6222000011112222"))
    written()
    state.add(event("tx-0000", START - 60, day=int(DAY)))  # late, on an earlier entry's day
    written()
    state.expire(
        now=START + 90_100, today=int(DAY) + 2, retention_seconds=86_400, daily_days=1,
        fired_seconds=10,
    )  # fmt: skip
    written()
    state.mark_position(("source-3", 43))
    state.fired["TYP-STRUCTURING"] = START + 90_100
    written()
    restored = CustomerState.from_dict(json.loads(encodings[-1]))
    assert restored.to_json() == encodings[-1]
    assert len(set(encodings)) == len(encodings)


def test_the_arrivals_text_follows_expiry_and_the_window_sliding() -> None:
    """Arrivals whose events expired are written front-coded, the rest as positions,
    while old arrivals leave the list: the text equals the dict's after every write."""
    state = CustomerState()
    kept = 5
    for index in range(14):
        # Every third one arrives late, before the newest event.
        at = START + 3600 * index - (5400 if index % 3 == 2 else 0)
        state.add(event(f"tx-{index:04d}", at), arrivals_kept=kept)
        if index % 2:
            state.expire(
                now=START + 3600 * index, today=int(DAY), retention_seconds=3 * 3600,
                daily_days=1, fired_seconds=10,
            )  # fmt: skip
        text = state.to_json()
        assert text == json.dumps(state.to_dict(), separators=(",", ":"))
        restored = CustomerState.from_dict(json.loads(text))
        assert restored.arrived == state.arrived
        assert restored.to_json() == text
    document = state.to_dict()
    assert len(document["a"]) == kept
    assert any(isinstance(item, str) for item in document["a"])  # some expired
    assert any(isinstance(item, int) for item in document["a"])  # some retained


# What the state's JSON holds: lists of ids, numbers and names, small dicts, floats.
ENCODED_VALUES = (
    ["0:tx-0001", [1772413200.25], 739677, 2, 10000, "1000", "USD", "甲公司", 0],
    {"TYP-FAN-IN": 1772413260.0, "LVT-CASH-CNY|2026-03-02|in": 1.5},
    {"source-3": 42},
    1767208656.0,
    "19:51",
)


def test_the_encoder_writes_what_json_dumps_writes_with_or_without_the_accelerator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for value in ENCODED_VALUES:
        assert state_module._dumps(value) == json.dumps(value, separators=(",", ":"))
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    plain = state_module._chunk_encoder()
    for value in ENCODED_VALUES:
        assert "".join(plain(value, 0)) == json.dumps(value, separators=(",", ":"))


def test_a_state_read_from_its_text_keeps_that_text_for_its_next_write() -> None:
    """``from_json`` gives the state ``from_dict`` gives, and each event and the daily
    totals keep the text they were read from, under the same previous event and
    counterparty reference a fresh write would encode them with."""
    state = mixed_state()
    state.add(event("tx-0006", START + 2 * 86_400, counterparty="甲公司"))
    text = state.to_json()
    restored, end = CustomerState.from_json(text)
    assert end == len(text)
    assert restored.to_dict() == state.to_dict()
    assert restored.events == state.events
    written_fresh = CustomerState.from_dict(json.loads(text))
    assert written_fresh.to_json() == text  # encodes every event afresh
    previous = None
    for kept, fresh in zip(restored.events, written_fresh.events, strict=True):
        assert kept.encoded is not None and fresh.encoded is not None
        assert kept.encoded[0] is previous
        assert kept.encoded[1:] == fresh.encoded[1:]
        previous = kept
    assert (restored._daily_text, restored._daily_kept) == (
        written_fresh._daily_text,
        written_fresh._daily_kept,
    )
    assert restored.to_json() == text
    # Then changed, its writes still equal a from-scratch encoding.
    restored.add(event("tx-0007", START + 2 * 86_400 + 60, counterparty="6222000011112222"))
    restored.expire(
        now=START + 2 * 86_400 + 60, today=int(DAY) + 2, retention_seconds=86_400,
        daily_days=5, fired_seconds=10,
    )  # fmt: skip
    assert restored.to_json() == json.dumps(restored.to_dict(), separators=(",", ":"))


def test_from_json_reads_only_the_compact_text_and_any_format_it_reads() -> None:
    state = mixed_state()
    spaced = json.dumps(state.to_dict())
    with pytest.raises(ValueError, match="not a compact rules state"):
        CustomerState.from_json(spaced)
    old, end = CustomerState.from_json(FORMAT_2_STATE)
    assert end == len(FORMAT_2_STATE)
    assert old.to_dict() == state.to_dict()
    assert old.to_json() == json.dumps(state.to_dict(), separators=(",", ":"))
    # An object further into a text: the index after it is returned.
    text = state.to_json()
    assert CustomerState.from_json(f"[{text},1]", 1)[1] == len(text) + 1
