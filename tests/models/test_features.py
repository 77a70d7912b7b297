"""Behavioural features: the streaming profile and the training matrix agree, feature by feature."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from core.customer import Customer, CustomerType, RiskRating
from core.transaction import CONTRACT_FIELDS, Transaction, transaction_from_mapping
from models.features import (
    FEATURE_NAMES,
    LOG_FEATURES,
    BehaviourProfile,
    _all_within,
    _customer_time_order,
    _ints,
    _middle,
    _middle_deviation,
    build_feature_matrix,
    country_risk_from_lists,
    feature_matrix,
)
from rules.reference_data import load_country_lists, load_rates
from stream.simulator import derive_rng, generate_history, generate_reference

SHANGHAI = ZoneInfo("Asia/Shanghai")
# The two paths run the same formulas on the same integers (fen) and rounded floats;
# what is left is numpy's vectorised versus scalar log and summation order.
PARITY_RTOL = 1e-9
PARITY_ATOL = 1e-9
START = datetime(2024, 3, 4, 9, 30, tzinfo=SHANGHAI)  # a Monday
COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}

RISK = country_risk_from_lists(grey=frozenset({"MM", "VN"}), black=frozenset({"KP", "IR"}))


def _customer(customer_id: str = "C1", kind: str = "individual", risk: str = "low") -> Customer:
    return Customer(
        customer_id=customer_id,
        name="测试",
        type=CustomerType(kind),
        risk_rating=RiskRating(risk),
        manager_id="M1",
        country="CN",
        opened_on=date(2020, 1, 1),
        id_type="resident_id",
        id_number="110101199001011234",
    )


def _tx(
    at: datetime,
    amount: str = "100.00",
    *,
    direction: str = "out",
    channel: str = "transfer",
    counterparty: str | None = "P1",
    country: str | None = "CN",
    tx_id: str | None = None,
    customer_id: str = "C1",
) -> Transaction:
    document: dict[str, Any] = {
        "tx_id": tx_id or f"t-{at.isoformat()}-{amount}-{counterparty}",
        "timestamp": at.isoformat(),
        "customer_id": customer_id,
        "account_id": "A1",
        "direction": direction,
        "amount": amount,
        "currency": "CNY",
        "channel": channel,
    }
    if counterparty is not None:
        document["counterparty_id"] = counterparty
    if country is not None:
        document["counterparty_country"] = country
    return transaction_from_mapping(document)


def _frame(transactions: Sequence[Transaction], amounts: Sequence[Decimal]) -> pd.DataFrame:
    rows = []
    for tx, amount_cny in zip(transactions, amounts, strict=True):
        row = tx.to_dict()
        row = {name: row.get(name) for name in CONTRACT_FIELDS}
        row["amount_cny"] = amount_cny
        rows.append(row)
    return pd.DataFrame(rows)


def _stream(
    transactions: Sequence[Transaction],
    amounts: Sequence[Decimal] | None = None,
    customers: dict[str, Customer] | None = None,
    *,
    round_trip: bool = True,
) -> tuple[np.ndarray, dict[str, BehaviourProfile]]:
    """Features one transaction at a time, serialising each profile between transactions."""
    customers = customers or {"C1": _customer()}
    amounts = amounts or [tx.amount for tx in transactions]
    stored: dict[str, str] = {}
    profiles: dict[str, BehaviourProfile] = {}
    vectors = []
    for tx, amount_cny in zip(transactions, amounts, strict=True):
        if round_trip:
            text = stored.get(tx.customer_id)
            profile = (
                BehaviourProfile(SHANGHAI)
                if text is None
                else BehaviourProfile.from_dict(json.loads(text), tz=SHANGHAI)
            )
        else:
            profile = profiles.setdefault(tx.customer_id, BehaviourProfile(SHANGHAI))
        vectors.append(profile.features(tx, amount_cny, customers[tx.customer_id], RISK))
        profile.update(tx, amount_cny)
        stored[tx.customer_id] = json.dumps(profile.to_dict(), separators=(",", ":"))
        profiles[tx.customer_id] = profile
    return np.vstack(vectors), profiles


def _both(transactions: Sequence[Transaction], **kwargs: Any) -> np.ndarray:
    """The streamed features of a tiny history, after checking the matrix path agrees."""
    streamed, _ = _stream(transactions, **kwargs)
    customers = kwargs.get("customers") or {"C1": _customer()}
    matrix = build_feature_matrix(
        _frame(transactions, [tx.amount for tx in transactions]), customers, RISK, SHANGHAI
    )
    np.testing.assert_allclose(matrix.to_numpy(), streamed, rtol=PARITY_RTOL, atol=PARITY_ATOL)
    return streamed


def _column(values: np.ndarray, name: str) -> list[float]:
    return [round(float(v), 9) for v in values[:, COLUMN[name]]]


# --------------------------------------------------------------------------- simulated data


@pytest.fixture(scope="module")
def simulated() -> tuple[list[Transaction], list[Decimal], dict[str, Customer], pd.DataFrame]:
    customers, _ = generate_reference(derive_rng(11, "features-ref"), 60, 6, as_of=date(2024, 1, 1))
    documents = generate_history(
        derive_rng(11, "features-history"),
        customers,
        start=date(2024, 1, 1),
        days=60,
        tz=SHANGHAI,
    )
    rates = load_rates()
    transactions = [transaction_from_mapping(document) for document in documents]
    # The stream's order: event time, then tx_id, as the training path sorts.
    transactions.sort(key=lambda tx: (tx.timestamp, tx.tx_id))
    amounts = [rates.to_cny(tx.amount, tx.currency) for tx in transactions]
    by_id = {c.customer_id: c for c in customers}
    return transactions, amounts, by_id, _frame(transactions, amounts)


def _fatf_risk() -> Any:
    lists = load_country_lists()
    return country_risk_from_lists(grey=lists.grey, black=lists.black)


def test_streaming_and_training_paths_agree_on_simulated_history(simulated: Any) -> None:
    transactions, amounts, customers, frame = simulated
    assert len(transactions) > 5000
    streamed, _ = _stream(transactions, amounts, customers)
    # Shuffled input: the matrix path sorts by itself and answers in the input's order.
    shuffled = frame.sample(frac=1.0, random_state=3)
    matrix = build_feature_matrix(shuffled, customers, RISK, SHANGHAI).loc[frame.index]

    assert list(matrix.columns) == list(FEATURE_NAMES)
    for index, name in enumerate(FEATURE_NAMES):
        assert np.allclose(
            matrix[name].to_numpy(), streamed[:, index], rtol=PARITY_RTOL, atol=PARITY_ATOL
        ), name
    # Not a vacuous match: every feature varies over the simulated book.
    for name in FEATURE_NAMES:
        assert matrix[name].nunique() > 1, name


def test_rows_finished_as_a_batch_equal_each_row_finished_alone(simulated: Any) -> None:
    # The worker takes the logs of a micro-batch's rows in one numpy call: each element
    # must come out as it does for a row alone (features()), bit for bit.
    transactions, amounts, customers, _ = simulated
    profiles: dict[str, BehaviourProfile] = {}
    rows, alone = [], []
    for tx, amount_cny in zip(transactions[:3000], amounts[:3000], strict=True):
        profile = profiles.setdefault(tx.customer_id, BehaviourProfile(SHANGHAI))
        customer = customers[tx.customer_id]
        rows.append(profile.feature_row(tx, amount_cny, customer, RISK))
        alone.append(profile.features(tx, amount_cny, customer, RISK))
        profile.update(tx, amount_cny)
    for start in (0, 7, 500):  # batches of several sizes and offsets
        batch = feature_matrix(rows[start : start + 437])
        assert np.array_equal(batch, np.vstack(alone[start : start + 437]))
    log_columns = [COLUMN[name] for name in LOG_FEATURES]
    assert not np.array_equal(np.array(rows)[:, log_columns], np.vstack(alone)[:, log_columns])


def test_matrix_is_deterministic_and_keeps_the_input_index(simulated: Any) -> None:
    _, _, customers, frame = simulated
    relabelled = frame.set_index(pd.Index([f"row{i}" for i in range(len(frame))]))
    first = build_feature_matrix(relabelled, customers, _fatf_risk(), SHANGHAI)
    second = build_feature_matrix(relabelled, customers, _fatf_risk(), SHANGHAI)
    assert first.index.equals(relabelled.index)
    pd.testing.assert_frame_equal(first, second)
    assert np.isfinite(first.to_numpy()).all()


def test_profile_serialisation_is_deterministic(simulated: Any) -> None:
    transactions, amounts, customers, _ = simulated
    head = transactions[:2000], amounts[:2000]
    _, once = _stream(*head, customers, round_trip=False)
    _, twice = _stream(*head, customers)
    for customer_id, profile in once.items():
        assert profile.to_dict() == twice[customer_id].to_dict()


def test_a_json_round_trip_changes_no_feature_at_all(simulated: Any) -> None:
    transactions, amounts, customers, _ = simulated
    kept, _ = _stream(transactions, amounts, customers, round_trip=False)
    stored, _ = _stream(transactions, amounts, customers)
    np.testing.assert_array_equal(stored, kept)
    # Late arrivals too: a shuffled stretch takes the profile's out-of-order paths.
    late = list(transactions)
    for i in range(0, len(late) - 30, 5):
        late[i], late[i + 30] = late[i + 30], late[i]
    late_amounts = [tx.amount for tx in late]
    kept_late, _ = _stream(late, late_amounts, customers, round_trip=False)
    stored_late, _ = _stream(late, late_amounts, customers)
    np.testing.assert_array_equal(stored_late, kept_late)


# Written by the format-1 profile (long keys) after the 12 transactions of
# _format_1_history; tables written before format 2 hold such values.
FORMAT_1_PROFILE = (
    '{"v":1,"n":12,"first_day":738949,"last_day":738952,"last_hour":474942,'
    '"last_at":1709793000.0,"hours":[1,0,0,1,0,0,1,1,0,1,1,0,0,1,1,0,1,1,0,0,1,0,0,1],'
    '"weekdays":[3,3,3,3,0,0,0],"channels":[3,9,0,0,0],"hourly":[[42,1,16505,0],'
    "[35,1,0,17806],[28,1,19107,0],[21,1,20408,0],[14,1,0,21709],[7,1,23010,0],"
    '[0,1,24311,0]],"day_counts":[3,3,3,3],"day_fen":[69030,57321,45612,33903],'
    '"amount_days":[3,3,3,2,2,2,1,1,1,0,0,0],"amount_logs":[4.615,4.736,4.844,4.942,'
    "5.031,5.112,5.188,5.258,5.323,5.385,5.443,5.498],"
    '"counterparties":"807bbf9fb7461383056e2011390846aa","counterparty_days":[1,0,0,0]}'
)


def _format_1_history() -> list[Transaction]:
    return [
        _tx(
            START + timedelta(hours=7 * i),
            f"{100 + 13 * i}.{i % 100:02d}",
            direction="in" if i % 3 else "out",
            counterparty=f"P{i % 4}",
            channel="cash" if i % 5 == 0 else "transfer",
        )
        for i in range(12)
    ]


def test_a_format_1_profile_reads_as_the_profile_it_was() -> None:
    _, profiles = _stream(_format_1_history(), round_trip=False)
    rebuilt = BehaviourProfile.from_dict(json.loads(FORMAT_1_PROFILE), tz=SHANGHAI)
    assert rebuilt.to_dict() == profiles["C1"].to_dict()
    following = _tx(START + timedelta(days=4), "250.00", counterparty="P2")
    np.testing.assert_array_equal(
        rebuilt.features(following, following.amount, _customer(), RISK),
        profiles["C1"].features(following, following.amount, _customer(), RISK),
    )


def test_profile_json_stays_small(simulated: Any) -> None:
    transactions, amounts, customers, _ = simulated
    _, profiles = _stream(transactions, amounts, customers, round_trip=False)
    sizes = [
        len(json.dumps(profile.to_dict(), separators=(",", ":"))) for profile in profiles.values()
    ]
    busiest = max(profiles.values(), key=lambda profile: profile.transactions)
    assert busiest.transactions > 400
    # About 1.1 KB here (1.3 KB in format 1), mostly the 91 days of counts and fen
    # that the baselines need.
    assert float(np.median(sizes)) <= 1250
    assert max(sizes) <= 4096


def test_busy_customer_profile_is_bounded_whatever_the_volume() -> None:
    # 20 transactions a day for a year, each to a fresh counterparty.
    transactions = [
        _tx(
            START + timedelta(hours=day * 24 + i),
            f"{1000 + 37 * i + day}.55",
            counterparty=f"P{day}-{i}",
        )
        for day in range(365)
        for i in range(20)
    ]
    _, profiles = _stream(transactions, round_trip=False)
    size = len(json.dumps(profiles["C1"].to_dict(), separators=(",", ":")))
    assert size <= 4096


def test_speed_of_both_paths(simulated: Any) -> None:
    transactions, amounts, customers, frame = simulated
    started = time.perf_counter()
    build_feature_matrix(frame, customers, RISK, SHANGHAI)
    matrix_seconds = time.perf_counter() - started
    started = time.perf_counter()
    _stream(transactions, amounts, customers)
    stream_seconds = time.perf_counter() - started
    # Loose bounds for a shared CI machine; the measured rates are in the report.
    assert len(frame) / matrix_seconds > 20_000
    assert len(frame) / stream_seconds > 1_000


# --------------------------------------------------------------------------- single features


def test_rows_at_one_instant_go_by_tx_id_whatever_the_input_order() -> None:
    # Three transactions of C1 at one instant, given in reverse tx_id order, and one of C2
    # between them: the matrix path must take C1's as the stream does (tx_id order), so
    # only the first, "a", meets its counterparty as new.
    at = START + timedelta(days=3)
    given = [
        _tx(at, "300.00", tx_id="c", counterparty="P9"),
        _tx(at, "50.00", tx_id="m", customer_id="C2"),
        _tx(at, "200.00", tx_id="b", counterparty="P9"),
        _tx(at, "100.00", tx_id="a", counterparty="P9"),
    ]
    customers = {"C1": _customer(), "C2": _customer("C2")}
    matrix = build_feature_matrix(
        _frame(given, [tx.amount for tx in given]), customers, RISK, SHANGHAI
    )
    assert matrix["new_counterparty"].tolist() == [0.0, 1.0, 0.0, 1.0]
    in_stream_order = sorted(given, key=lambda tx: (tx.timestamp, tx.tx_id))
    streamed, _ = _stream(in_stream_order, customers=customers)
    by_id = {tx.tx_id: row for tx, row in zip(in_stream_order, streamed, strict=True)}
    np.testing.assert_allclose(
        matrix.to_numpy(),
        np.vstack([by_id[tx.tx_id] for tx in given]),
        rtol=PARITY_RTOL,
        atol=PARITY_ATOL,
    )


def test_the_row_order_is_customer_time_then_tx_id_and_stable() -> None:
    rng = np.random.default_rng(5)
    rows = 2000
    customer = rng.integers(0, 7, rows)
    ns = rng.integers(0, 40, rows) * 1_000_000_000  # many rows share an instant
    tx_ids = pd.Series([f"t{value}" for value in rng.integers(0, 300, rows)])  # and an id
    expected = sorted(range(rows), key=lambda row: (customer[row], ns[row], tx_ids[row]))
    assert _customer_time_order(customer, ns, tx_ids).tolist() == expected


def test_new_counterparty_is_one_then_zero() -> None:
    values = _both(
        [
            _tx(START, counterparty="P1"),
            _tx(START + timedelta(minutes=5), counterparty="P1"),
            _tx(START + timedelta(minutes=9), counterparty="P2"),
            _tx(START + timedelta(minutes=12), counterparty=None),
        ]
    )
    assert _column(values, "new_counterparty") == [1.0, 0.0, 1.0, 0.0]
    assert _column(values, "distinct_counterparties_7d") == [1.0, 1.0, 2.0, 2.0]


def test_counterparty_memory_forgets_the_least_recently_used() -> None:
    transactions = [
        _tx(START + timedelta(minutes=i), counterparty=f"P{i}", tx_id=f"t{i:03}") for i in range(65)
    ]
    transactions.append(_tx(START + timedelta(hours=5), counterparty="P0", tx_id="t999"))
    values = _both(transactions)
    assert _column(values, "new_counterparty")[-1] == 1.0  # P0 was evicted by P64
    assert _column(values, "distinct_counterparties_7d")[-1] == 65.0


def test_counts_in_24h_against_the_baseline() -> None:
    # One transaction a day for ten days, then a burst of five in one hour.
    daily = [_tx(START + timedelta(days=d), tx_id=f"d{d}") for d in range(10)]
    burst = [_tx(START + timedelta(days=10, minutes=m), tx_id=f"b{m}") for m in range(0, 50, 10)]
    values = _both(daily + burst)
    counts = _column(values, "count_24h_vs_baseline")
    # Day 9: 1 in the window against a baseline of 1 a day -> log(2/2) = 0.
    assert counts[9] == 0.0
    # The fifth of the burst: 5 in 24h against 1 a day -> log(6/2).
    assert counts[-1] == pytest.approx(np.log(6 / 2))
    # New customer on its first day: no baseline -> log(n + 1).
    assert counts[0] == pytest.approx(np.log(2))
    assert _column(values, "count_7d_vs_baseline")[-1] == pytest.approx(np.log(12 / 8))
    volumes = _column(values, "volume_24h_vs_baseline")
    assert volumes[-1] == pytest.approx(np.log(501 / 101))


def test_pass_through_balance_over_48h() -> None:
    values = _both(
        [
            _tx(START, "10000.00", direction="in", counterparty="A"),
            _tx(START + timedelta(hours=20), "9900.00", direction="out", counterparty="B"),
            _tx(START + timedelta(hours=80), "50.00", direction="out", counterparty="C"),
        ]
    )
    balance = _column(values, "in_out_balance_48h")
    ratio = _column(values, "out_in_log_ratio_48h")
    assert balance[0] == 0.0  # only money in so far
    assert balance[1] == pytest.approx(0.99)
    assert ratio[1] == pytest.approx(np.log(9901 / 10001))
    assert balance[2] == 0.0  # the earlier pair left the 48h window
    assert ratio[2] == pytest.approx(np.log(51))


def test_days_since_previous_activity() -> None:
    values = _both(
        [
            _tx(START),
            _tx(START + timedelta(hours=12)),
            _tx(START + timedelta(days=200, hours=12)),
        ]
    )
    assert _column(values, "days_since_previous") == [0.0, 0.5, 200.0]


def test_hour_weekday_and_channel_rarity() -> None:
    mondays = [_tx(START + timedelta(days=7 * w), tx_id=f"u{w}") for w in range(9)]  # 09:30
    thursday_night = _tx(START + timedelta(days=7 * 8 + 3, hours=-6), channel="cash", tx_id="odd")
    values = _both([*mondays, thursday_night])
    hour, weekday, channel = (
        _column(values, name) for name in ("hour_rarity", "weekday_rarity", "channel_rarity")
    )
    # The ninth Monday at 09:30 after eight: 1 - (8 + 1) / (8 + k).
    assert hour[8] == pytest.approx(1 - 9 / 32)
    assert weekday[8] == pytest.approx(1 - 9 / 15)
    assert channel[8] == pytest.approx(1 - 9 / 13)
    # Thursday 03:30 in cash, never seen in nine: 1 - 1 / (9 + k).
    assert hour[9] == pytest.approx(1 - 1 / 33)
    assert weekday[9] == pytest.approx(1 - 1 / 16)
    assert channel[9] == pytest.approx(1 - 1 / 14)
    assert hour[0] == pytest.approx(1 - 1 / 24)  # no history yet


def test_amount_robust_z() -> None:
    amounts = ["100.00", "110.00", "90.00", "105.00", "95.00"]
    history = [
        _tx(START + timedelta(days=i), amount, tx_id=f"a{i}") for i, amount in enumerate(amounts)
    ]
    values = _both([*history, _tx(START + timedelta(days=6), "100000.00", tx_id="big")])
    z = _column(values, "amount_robust_z")
    assert z[0] == 0.0  # nothing to compare with
    assert z[-1] > 50
    assert abs(z[-2]) < 2
    assert _column(values, "log_amount_cny")[-1] == pytest.approx(np.log1p(100000))


def test_country_risk_and_customer_fields() -> None:
    customers = {"C9": _customer("C9", "corporate", "high")}
    values = _both(
        [
            _tx(START, country="KP", customer_id="C9"),
            _tx(START + timedelta(minutes=1), country="MM", customer_id="C9"),
            _tx(START + timedelta(minutes=2), country=None, customer_id="C9"),
        ],
        customers=customers,
    )
    assert _column(values, "counterparty_country_risk") == [2.0, 1.0, 0.0]
    assert _column(values, "customer_corporate") == [1.0, 1.0, 1.0]
    assert _column(values, "customer_risk_rating") == [2.0, 2.0, 2.0]


def test_baselines_across_gaps_around_the_90_day_window() -> None:
    # Quiet stretches just short of, at and beyond the window: the profile's running
    # totals must leave out exactly the days that fell out of the window.
    moments, at = [], START
    for gap_days in (0, 1, 5, 30, 89, 1, 90, 2, 91, 1, 92, 3, 200, 1, 1):
        at += timedelta(days=gap_days, hours=3)
        moments += [at, at + timedelta(hours=1)]
    transactions = [
        _tx(moment, f"{100 + 17 * i}.25", counterparty=f"P{i % 3}", tx_id=f"g{i}")
        for i, moment in enumerate(moments)
    ]
    values = _both(transactions)
    assert len(set(_column(values, "volume_7d_vs_baseline"))) > 10


def test_late_transaction_uses_its_own_buckets() -> None:
    on_time = [
        _tx(START, "100.00", direction="in", tx_id="t1"),
        _tx(START + timedelta(hours=30), "100.00", tx_id="t2"),
    ]
    _, profiles = _stream(on_time)
    profile = profiles["C1"]
    late = _tx(START + timedelta(hours=1), "100.00", tx_id="late")
    vector = profile.features(late, late.amount, _customer(), RISK)
    # Only t1 is in the late one's 24h window, and nothing happened "before" it per last_at.
    assert vector[COLUMN["count_24h_vs_baseline"]] == pytest.approx(np.log(3))
    assert vector[COLUMN["days_since_previous"]] == 0.0
    profile.update(late, late.amount)
    assert sum(bucket[0] for bucket in profile.hourly.values()) == 3
    too_late = _tx(START - timedelta(days=200), "100.00", tx_id="old")
    profile.update(too_late, too_late.amount)
    assert profile.transactions == 4
    assert sum(bucket[0] for bucket in profile.daily.values()) == 3  # outside 91 days


def test_matrix_refuses_unknown_customers_and_handles_no_rows() -> None:
    tx = _tx(START, customer_id="C404")
    with pytest.raises(KeyError):
        build_feature_matrix(_frame([tx], [tx.amount]), {}, RISK, SHANGHAI)
    empty = build_feature_matrix(
        _frame([], []).reindex(columns=[*CONTRACT_FIELDS, "amount_cny"]), {}, RISK, SHANGHAI
    )
    assert list(empty.columns) == list(FEATURE_NAMES) and len(empty) == 0


def test_profile_refuses_another_format() -> None:
    with pytest.raises(ValueError):
        BehaviourProfile.from_dict({"v": 99}, tz=SHANGHAI)


def test_integer_lists_are_written_as_json_writes_them_small_or_not() -> None:
    values = [0, 7, 1023, 1024, 40_000, 12_345_678_901, -3]
    assert f"[{_ints(values)}]" == json.dumps(values, separators=(",", ":"))
    assert _ints([]) == ""


def test_the_json_text_equals_the_dict_through_every_update() -> None:
    """to_json keeps the text of the earlier days and the counterparties between writes."""
    profile = BehaviourProfile(SHANGHAI)
    moments = [
        START,
        START + timedelta(hours=2),  # same day
        START + timedelta(days=1),  # a new day
        START + timedelta(days=4),  # empty days between
        START + timedelta(days=2, hours=3),  # late, on an earlier kept day
        START + timedelta(days=89),
        START + timedelta(days=93),  # the first days fall out of the 91 kept
        START + timedelta(days=400),  # silent for longer than every kept span
        START - timedelta(days=1),  # late beyond the kept days
    ]
    for number, moment in enumerate(moments):
        profile.update(
            _tx(moment, f"{100 + number}.00", counterparty=f"P{number % 3}"), Decimal(100 + number)
        )
        text = profile.to_json()
        assert text == json.dumps(profile.to_dict(), separators=(",", ":"))
        assert profile.to_json() == text
        if number % 3 == 2:
            profile = BehaviourProfile.from_dict(json.loads(text), tz=SHANGHAI)
            assert profile.to_json() == text


def test_expiry_keeps_the_running_totals_and_samples_of_the_windows() -> None:
    """A new newest day drops only what left the windows: the kept days' running totals
    stay their sums, and the amount samples are those of the last 90 days (a late one,
    appended as it comes, waits for the next new day)."""
    profile = BehaviourProfile(SHANGHAI)
    offsets = [0, 0.1, 1, 5, 3, 60, 89, 90, 91, 92, 95, 150, 149, 400, 300, 401]
    for number, days in enumerate(offsets):
        newest = profile.last_day
        profile.update(_tx(START + timedelta(days=days), f"{10 + number}.00"), Decimal(10 + number))
        assert profile.last_day is not None
        assert profile._kept_count == sum(count for count, _ in profile.daily.values())
        assert profile._kept_fen == sum(fen for _, fen in profile.daily.values())
        assert all(at > profile.last_day - 91 for at in profile.daily)
        if profile.last_day != newest:
            assert min(profile.amount_days) >= profile.last_day - 90
    assert len(profile.daily) == 2  # days 400 and 401; day 300 came too late for its own
    assert len(profile.amount_days) == 2  # day 300's sample went with day 401
    assert profile.transactions == len(offsets)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 31, 32])
def test_the_middle_deviation_is_the_sorted_deviations_middle_to_the_bit(count: int) -> None:
    rng = random.Random(count)
    for _ in range(300):
        # Rounded logs as the profile keeps them: ties, repeats and the median among them.
        ordered = sorted(round(rng.gauss(8.0, 1.5), rng.choice((0, 1, 3))) for _ in range(count))
        median = _middle(ordered)
        expected = _middle(sorted([abs(value - median) for value in ordered]))
        assert _middle_deviation(ordered, median) == expected


def test_the_sorted_samples_follow_the_samples_through_updates_expiry_and_json() -> None:
    profile = BehaviourProfile(SHANGHAI)
    rng = random.Random(5)
    for number in range(120):
        moment = START + timedelta(days=number // 2 + (100 if number > 80 else 0))  # all expire
        amount = Decimal(rng.choice((100, 250, 999, 5_000, 12_345)))
        profile.update(_tx(moment, f"{amount}.00"), amount)
        assert profile._sorted_logs == sorted(profile.amount_logs)
        if number % 25 == 24:
            profile = BehaviourProfile.from_dict(json.loads(profile.to_json()), tz=SHANGHAI)
            assert profile._sorted_logs == sorted(profile.amount_logs)
    assert len(profile.amount_logs) == 32
    expired = BehaviourProfile(SHANGHAI)
    for days in (0, 1, 200):  # the third drops the first two samples with their days
        expired.update(_tx(START + timedelta(days=days), "100.00"), Decimal(100 + days))
    assert len(expired.amount_logs) == 1 and expired._sorted_logs == expired.amount_logs


def test_all_within_takes_both_bounds_as_inside() -> None:
    assert _all_within([5, 7, 9], 5, 9)
    assert not _all_within([5, 7, 10], 5, 9)
    assert not _all_within([4, 7, 9], 5, 9)
    assert _all_within([], 5, 9)
