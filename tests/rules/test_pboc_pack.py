"""The default pack rule by rule: a positive, a negative and an exact-boundary case each.

Everything runs through the real engine with the packaged pack (``Ledger``). Thresholds
are inclusive (含本数): a boundary case puts a figure exactly on the threshold and, where
that is meaningful, one cent (or one step) short of it. The last test checks that every
rule id of the pack has all three kinds of case.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from core.detection import Detection, Outcome, Severity
from rules.engine import RuleEngine
from rules.reference_data import Reference
from tests.rules.conftest import Ledger, customer

CASES = frozenset({"positive", "negative", "boundary"})
COVERED: defaultdict[str, set[str]] = defaultdict(set)
TestFunction = TypeVar("TestFunction", bound=Callable[..., Any])

CENT = Decimal("0.01")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FIRST_DAY = date(2026, 3, 2)  # Ledger.start


def covers(case: str, *rule_ids: str) -> Callable[[TestFunction], TestFunction]:
    """Record that the decorated test is a ``case`` (positive/negative/boundary) of rules."""
    assert case in CASES, case

    def record(test: TestFunction) -> TestFunction:
        for rule_id in rule_ids:
            COVERED[rule_id].add(case)
        return test

    return record


def only(ledger: Ledger, rule_id: str) -> Detection:
    """The single detection ``rule_id`` made so far."""
    found = ledger.fired(rule_id)
    assert len(found) == 1, [d.reasons for d in found]
    return found[0]


def reason(ledger: Ledger, rule_id: str) -> str:
    return only(ledger, rule_id).reasons[0]


def detectors(found: list[Detection]) -> list[str]:
    return [d.detector for d in found]


def large_value_ids(ledger: Ledger) -> set[str]:
    return {d.detector for d in ledger.detections if d.detector.startswith("LVT-")}


def routine(
    ledger: Ledger, *, days: int, amount: str | int, directions: tuple[str, ...] = ("in", "out")
) -> None:
    """One flow per direction every day at 09:00 for ``days`` days: a usual routine."""
    for day in range(days):
        for direction in directions:
            ledger.tx(
                amount,
                at=day * DAY,
                direction=direction,
                counterparty_id=f"ROUTINE-{direction.upper()}",
            )


# ---------------------------------------------------------------- large-value reports

# rule id -> (customer type, transaction fields, threshold, unit of the threshold)
LARGE_VALUE: dict[str, tuple[str, dict[str, Any], int, str]] = {
    "LVT-CASH-CNY": ("individual", {"channel": "cash"}, 50_000, "CNY"),
    "LVT-CASH-FX": ("individual", {"channel": "cash", "currency": "USD"}, 10_000, "USD"),
    "LVT-CORP-TRANSFER-CNY": ("corporate", {"counterparty_country": "CN"}, 2_000_000, "CNY"),
    "LVT-CORP-TRANSFER-FX": (
        "corporate",
        {"channel": "wire", "currency": "USD", "counterparty_country": "US"},
        200_000,
        "USD",
    ),
    "LVT-IND-DOMESTIC-CNY": ("individual", {"counterparty_country": "CN"}, 500_000, "CNY"),
    "LVT-IND-DOMESTIC-FX": (
        "individual",
        {"currency": "USD", "counterparty_country": "CN"},
        100_000,
        "USD",
    ),
    "LVT-IND-CROSSBORDER-CNY": (
        "individual",
        {"channel": "wire", "counterparty_country": "SG"},
        200_000,
        "CNY",
    ),
    "LVT-IND-CROSSBORDER-FX": (
        "individual",
        {"channel": "wire", "currency": "USD", "counterparty_country": "SG"},
        10_000,
        "USD",
    ),
}


@covers("positive", *LARGE_VALUE)
@pytest.mark.parametrize("rule_id", LARGE_VALUE)
def test_large_value_report_sums_the_bank_day_and_lists_each_transaction(
    pboc_engine: RuleEngine, rule_id: str
) -> None:
    kind, fields, threshold, unit = LARGE_VALUE[rule_id]
    ledger = Ledger(pboc_engine, customer=customer(kind))
    first = Decimal(threshold) * Decimal("0.6")
    assert rule_id not in {d.detector for d in ledger.tx(first, **fields)}
    ledger.tx(threshold - first, at=6 * HOUR, **fields)
    report = only(ledger, rule_id)
    assert report.outcome is Outcome.REPORT
    assert report.tx_ids == ("T00001", "T00002")
    assert report.bank_day == FIRST_DAY
    total = Decimal(threshold).quantize(CENT)
    assert "inflow" in report.reasons[0]
    assert f"{total:,} {unit} on 2026-03-02" in report.reasons[0]
    assert f"at or above {threshold:,} {unit}" in report.reasons[0]


@covers("boundary", *LARGE_VALUE)
@pytest.mark.parametrize("rule_id", LARGE_VALUE)
def test_large_value_threshold_is_inclusive(pboc_engine: RuleEngine, rule_id: str) -> None:
    kind, fields, threshold, _ = LARGE_VALUE[rule_id]
    one_cent_short = Ledger(pboc_engine, customer=customer(kind))
    one_cent_short.tx(threshold - CENT, direction="out", **fields)
    assert one_cent_short.fired(rule_id) == []
    exactly = Ledger(pboc_engine, customer=customer(kind))
    exactly.tx(Decimal(threshold).quantize(CENT), direction="out", **fields)
    assert only(exactly, rule_id).tx_ids == ("T00001",)
    assert "outflow" in reason(exactly, rule_id)


@covers("negative", "LVT-CASH-CNY")
def test_cash_in_and_cash_out_are_totalled_separately(ledger: Ledger) -> None:
    ledger.tx("30000", channel="cash", direction="in")
    assert ledger.tx("20000", channel="cash", direction="out", at=HOUR) == []
    ledger.tx("30000", channel="cash", direction="out", at=2 * HOUR)
    assert only(ledger, "LVT-CASH-CNY").tx_ids == ("T00002", "T00003")


@covers("negative", "LVT-CASH-CNY")
def test_transfers_and_foreign_cash_do_not_count_towards_cny_cash(ledger: Ledger) -> None:
    ledger.tx("30000", channel="cash")
    ledger.tx("20000", channel="transfer", at=HOUR)
    ledger.tx("2000", channel="cash", currency="USD", at=2 * HOUR)  # 14,200 CNY
    assert ledger.fired("LVT-CASH-CNY") == []


@covers("negative", "LVT-CASH-CNY")
def test_cash_totals_do_not_carry_over_to_the_next_bank_day(ledger: Ledger) -> None:
    ledger.tx("30000", channel="cash")
    ledger.tx("20000", channel="cash", at=DAY)
    assert ledger.fired("LVT-CASH-CNY") == []


@covers("negative", "LVT-CASH-FX")
def test_cny_cash_does_not_count_towards_foreign_currency_cash(ledger: Ledger) -> None:
    ledger.tx("9000", channel="cash", currency="USD")
    ledger.tx("49000", channel="cash", currency="CNY", at=HOUR)  # 6,901.41 USD
    assert ledger.fired("LVT-CASH-FX") == []
    assert ledger.fired("LVT-CASH-CNY") == []


@covers("positive", "LVT-CASH-FX")
def test_foreign_cash_in_several_currencies_is_summed_in_usd(
    ledger: Ledger, reference: Reference
) -> None:
    assert reference.rates.to_usd(Decimal("4329.27"), "EUR") == Decimal("5000.00")
    ledger.tx("5000", channel="cash", currency="USD")
    ledger.tx("4329.27", channel="cash", currency="EUR", at=HOUR)
    assert "10,000.00 USD" in reason(ledger, "LVT-CASH-FX")


@covers("boundary", "LVT-CASH-FX")
@pytest.mark.parametrize(("euros", "reports"), [("8658.52", False), ("8658.53", True)])
def test_euro_cash_reports_from_exactly_10000_usd_at_the_reference_rate(
    ledger: Ledger, reference: Reference, euros: str, reports: bool
) -> None:
    worth = reference.rates.to_usd(Decimal(euros), "EUR")
    assert (worth >= 10_000) is reports  # 9,999.98 and 10,000.00 USD
    ledger.tx(euros, channel="cash", currency="EUR")
    assert bool(ledger.fired("LVT-CASH-FX")) is reports


@covers(
    "negative",
    "LVT-CORP-TRANSFER-CNY",
    "LVT-CORP-TRANSFER-FX",
    "LVT-IND-DOMESTIC-CNY",
    "LVT-IND-DOMESTIC-FX",
    "LVT-IND-CROSSBORDER-CNY",
    "LVT-IND-CROSSBORDER-FX",
)
@pytest.mark.parametrize(
    ("kind", "amount", "currency", "country", "expected"),
    [
        ("individual", "500000", "CNY", "CN", {"LVT-IND-DOMESTIC-CNY"}),
        ("corporate", "500000", "CNY", "CN", set()),
        ("individual", "2000000", "CNY", "CN", {"LVT-IND-DOMESTIC-CNY"}),
        ("corporate", "2000000", "CNY", "CN", {"LVT-CORP-TRANSFER-CNY"}),
        ("individual", "200000", "CNY", "SG", {"LVT-IND-CROSSBORDER-CNY"}),
        ("corporate", "200000", "CNY", "SG", set()),
        ("individual", "100000", "USD", "CN", {"LVT-IND-DOMESTIC-FX"}),
        ("corporate", "100000", "USD", "CN", set()),
        ("individual", "10000", "USD", "SG", {"LVT-IND-CROSSBORDER-FX"}),
        ("corporate", "10000", "USD", "SG", set()),
        ("individual", "200000", "USD", "US", {"LVT-IND-CROSSBORDER-FX"}),
        ("corporate", "200000", "USD", "US", {"LVT-CORP-TRANSFER-FX"}),
    ],
)
def test_corporates_and_natural_persons_have_their_own_transfer_thresholds(
    pboc_engine: RuleEngine,
    kind: str,
    amount: str,
    currency: str,
    country: str,
    expected: set[str],
) -> None:
    ledger = Ledger(pboc_engine, customer=customer(kind))
    ledger.tx(amount, direction="out", currency=currency, counterparty_country=country)
    assert large_value_ids(ledger) == expected


@covers("negative", "LVT-CORP-TRANSFER-CNY")
def test_corporate_cash_is_not_a_transfer(pboc_engine: RuleEngine) -> None:
    ledger = Ledger(pboc_engine, customer=customer("corporate"))
    ledger.tx("1000000", channel="cash")
    ledger.tx("1000000", channel="transfer", at=HOUR)
    assert large_value_ids(ledger) == {"LVT-CASH-CNY"}


@covers("negative", "LVT-IND-DOMESTIC-CNY", "LVT-IND-CROSSBORDER-CNY")
def test_domestic_and_cross_border_transfers_are_totalled_separately(ledger: Ledger) -> None:
    ledger.tx("400000", direction="out", counterparty_country="CN")
    ledger.tx("150000", direction="out", counterparty_country="SG", at=HOUR)
    assert large_value_ids(ledger) == set()


@covers("positive", "LVT-IND-DOMESTIC-CNY")
def test_a_counterparty_without_a_country_counts_as_domestic(ledger: Ledger) -> None:
    ledger.tx("300000", direction="out")
    ledger.tx("200000", direction="out", counterparty_country="CN", at=HOUR)
    assert only(ledger, "LVT-IND-DOMESTIC-CNY").tx_ids == ("T00001", "T00002")
    assert ledger.fired("LVT-IND-CROSSBORDER-CNY") == []


def test_a_report_is_made_once_per_customer_bank_day_direction_and_rule(
    pboc_engine: RuleEngine,
) -> None:
    ledger = Ledger(pboc_engine)
    assert detectors(ledger.tx("50000", channel="cash")) == ["LVT-CASH-CNY"]
    assert ledger.tx("60000", channel="cash", at=HOUR) == []
    out = ledger.tx("50000", channel="cash", direction="out", at=2 * HOUR)
    assert detectors(out) == ["LVT-CASH-CNY"]
    usd = ledger.tx("10000", channel="cash", currency="USD", at=3 * HOUR)
    assert detectors(usd) == ["LVT-CASH-FX"]
    assert detectors(ledger.tx("50000", channel="cash", at=DAY)) == ["LVT-CASH-CNY"]
    reports = ledger.fired("LVT-CASH-CNY")
    assert [(d.bank_day, d.trigger_tx_id) for d in reports] == [
        (FIRST_DAY, "T00001"),
        (FIRST_DAY, "T00003"),  # outflow
        (FIRST_DAY + timedelta(days=1), "T00005"),
    ]
    assert len({d.detection_id for d in reports}) == 3
    other_customer = Ledger(pboc_engine, customer=customer(customer_id="C2"))
    assert detectors(other_customer.tx("50000", channel="cash")) == ["LVT-CASH-CNY"]


# ---------------------------------------------------------------- structuring


def near_threshold_cash(ledger: Ledger, third: str, *, third_at: timedelta = DAY) -> None:
    ledger.tx("46000", channel="cash")
    ledger.tx("47000", channel="cash", at=5 * HOUR)
    ledger.tx(third, channel="cash", at=third_at)


@covers("positive", "TYP-STRUCTURING")
def test_three_cash_deposits_just_under_50000_on_two_days_alert(ledger: Ledger) -> None:
    near_threshold_cash(ledger, "48000")
    alert = only(ledger, "TYP-STRUCTURING")
    assert alert.outcome is Outcome.ALERT
    assert alert.severity is Severity.HIGH
    assert alert.trigger_tx_id == "T00003"
    assert set(alert.tx_ids) == {"T00001", "T00002", "T00003"}
    assert (
        "3 cash inflows of 46,000.00-48,000.00 CNY within 7 days, on 2 different days, "
        "each just under 50,000 CNY"
    ) in alert.reasons[0]


@covers("negative", "TYP-STRUCTURING")
def test_two_cash_deposits_just_under_the_threshold_do_not_alert(ledger: Ledger) -> None:
    ledger.tx("46000", channel="cash")
    ledger.tx("47000", channel="cash", at=DAY)
    assert ledger.fired("TYP-STRUCTURING") == []


@covers("negative", "TYP-STRUCTURING")
def test_three_near_threshold_deposits_on_a_single_day_do_not_alert(ledger: Ledger) -> None:
    near_threshold_cash(ledger, "48000", third_at=10 * HOUR)
    assert ledger.fired("TYP-STRUCTURING") == []


@covers("negative", "TYP-STRUCTURING")
def test_near_threshold_deposits_further_apart_than_7_days_do_not_alert(ledger: Ledger) -> None:
    for day in (0, 4, 8):
        ledger.tx("48000", channel="cash", at=day * DAY)
    assert ledger.fired("TYP-STRUCTURING") == []


@covers("boundary", "TYP-STRUCTURING")
@pytest.mark.parametrize(
    ("third", "alerts"),
    [("44999.99", False), ("45000.00", True), ("49999.99", True), ("50000.00", False)],
)
def test_near_threshold_means_from_45000_up_to_but_not_including_50000(
    ledger: Ledger, third: str, alerts: bool
) -> None:
    near_threshold_cash(ledger, third)
    assert bool(ledger.fired("TYP-STRUCTURING")) is alerts


# ---------------------------------------------------------------- pass-through


@covers("positive", "TYP-PASS-THROUGH")
def test_most_of_a_large_inflow_leaving_within_48_hours_alerts(ledger: Ledger) -> None:
    ledger.tx("100000")
    ledger.tx("90000", direction="out", at=24 * HOUR)
    alert = only(ledger, "TYP-PASS-THROUGH")
    assert alert.tx_ids == ("T00001", "T00002")
    assert (
        "90,000.00 CNY out within 48 hours of 100,000.00 CNY in (90% passed through)"
        in alert.reasons[0]
    )


@covers("negative", "TYP-PASS-THROUGH")
@pytest.mark.parametrize(
    ("inflow", "outflow", "after"),
    [
        ("99999.99", "90000", HOUR),  # inflow too small
        ("100000", "70000", HOUR),  # 70% stays
        ("100000", "120000", HOUR),  # more leaves than came in
        ("100000", "90000", 49 * HOUR),  # too late
    ],
)
def test_pass_through_needs_100000_in_and_80_to_110_percent_out_within_48_hours(
    ledger: Ledger, inflow: str, outflow: str, after: timedelta
) -> None:
    ledger.tx(inflow)
    ledger.tx(outflow, direction="out", at=after)
    assert ledger.fired("TYP-PASS-THROUGH") == []


@covers("negative", "TYP-PASS-THROUGH")
def test_the_natural_person_pass_through_rule_ignores_corporates(pboc_engine: RuleEngine) -> None:
    ledger = Ledger(pboc_engine, customer=customer("corporate"))
    ledger.tx("100000")
    ledger.tx("90000", direction="out", at=HOUR)
    assert ledger.fired("TYP-PASS-THROUGH") == []


@covers("boundary", "TYP-PASS-THROUGH")
def test_exactly_100000_in_and_exactly_80_percent_out_at_exactly_48_hours_alerts(
    ledger: Ledger,
) -> None:
    ledger.tx("100000")
    ledger.tx("80000", direction="out", at=48 * HOUR)
    assert "(80% passed through)" in reason(ledger, "TYP-PASS-THROUGH")


def test_a_cent_under_80_percent_out_does_not_alert(ledger: Ledger) -> None:
    ledger.tx("100000")
    ledger.tx("79999.99", direction="out", at=HOUR)
    assert ledger.fired("TYP-PASS-THROUGH") == []


# ---------------------------------------------------------------- fan-in / fan-out

FAN = {"TYP-FAN-IN": "in", "TYP-FAN-OUT": "out"}


def spread_over_72_hours(ledger: Ledger, direction: str, amounts: list[str]) -> None:
    """One payment per distinct counterparty, evenly from hour 0 to hour 72."""
    last = len(amounts) - 1
    for index, amount in enumerate(amounts):
        at = 72 * HOUR * index / last
        ledger.tx(amount, direction=direction, at=at, counterparty_id=f"P{index}")


@covers("positive", *FAN)
@pytest.mark.parametrize("rule_id", FAN)
def test_eight_counterparties_and_50000_within_72_hours_alert(ledger: Ledger, rule_id: str) -> None:
    spread_over_72_hours(ledger, FAN[rule_id], ["6250"] * 8)
    alert = only(ledger, rule_id)
    assert alert.trigger_tx_id == "T00008"
    assert len(alert.tx_ids) == 8
    assert "8 distinct counterparties" in alert.reasons[0]
    assert "50,000.00 CNY within 72 hours" in alert.reasons[0]


@covers("negative", *FAN)
@pytest.mark.parametrize("rule_id", FAN)
def test_seven_counterparties_do_not_alert_however_much_they_pay(
    ledger: Ledger, rule_id: str
) -> None:
    spread_over_72_hours(ledger, FAN[rule_id], ["20000"] * 7)
    assert ledger.fired(rule_id) == []


@covers("negative", *FAN)
@pytest.mark.parametrize("rule_id", FAN)
def test_a_counterparty_paid_twice_counts_once(ledger: Ledger, rule_id: str) -> None:
    for index in range(8):
        ledger.tx("7000", direction=FAN[rule_id], at=index * HOUR, counterparty_id=f"P{index % 7}")
    assert ledger.fired(rule_id) == []


@covers("negative", *FAN)
@pytest.mark.parametrize("rule_id", FAN)
def test_the_natural_person_fan_rules_ignore_corporates(
    pboc_engine: RuleEngine, rule_id: str
) -> None:
    ledger = Ledger(pboc_engine, customer=customer("corporate"))
    spread_over_72_hours(ledger, FAN[rule_id], ["6250"] * 8)
    assert ledger.fired(rule_id) == []


@covers("boundary", *FAN)
@pytest.mark.parametrize("rule_id", FAN)
@pytest.mark.parametrize(("last", "alerts"), [("6249.99", False), ("6250.00", True)])
def test_fan_total_of_exactly_50000_over_exactly_72_hours_alerts(
    ledger: Ledger, rule_id: str, last: str, alerts: bool
) -> None:
    spread_over_72_hours(ledger, FAN[rule_id], ["6250"] * 7 + [last])
    assert bool(ledger.fired(rule_id)) is alerts


# ---------------------------------------------------------------- corporate variants
# A corporate's routine: 95 days of one inflow and one outflow a day at 09:00; the burst
# comes on day 95 from 10:00, so the routine of days 93 and 94 sits inside the windows.

CORPORATE_FAN = {"TYP-FAN-IN-CORPORATE": "in", "TYP-FAN-OUT-CORPORATE": "out"}


def corporate_with_routine(engine: RuleEngine, daily: str | int | None) -> Ledger:
    ledger = Ledger(engine, customer=customer("corporate"))
    if daily is not None:
        routine(ledger, days=95, amount=daily)
    return ledger


def corporate_fan_burst(ledger: Ledger, direction: str, amount: str | int) -> None:
    """Eight new counterparties within 70 minutes on day 95."""
    for index in range(8):
        ledger.tx(
            amount,
            direction=direction,
            at=95 * DAY + HOUR + index * 10 * timedelta(minutes=1),
            counterparty_id=f"NEW-{index}",
        )


# v2 of the corporate fan rules: counterparties the company had no transaction with in
# the 6 days before the last 24 hours, not volume against the 90-day routine.
KNOWN = 10


def corporate_with_known_counterparties(engine: RuleEngine, days: int = 10) -> Ledger:
    """A company that paid and was paid by the same ten counterparties every day."""
    ledger = Ledger(engine, customer=customer("corporate"))
    for day in range(days):
        for index in range(KNOWN):
            for direction in ("in", "out"):
                ledger.tx(
                    "30000",
                    direction=direction,
                    at=day * DAY + index * timedelta(minutes=1),
                    counterparty_id=f"KNOWN-{index}",
                )
    return ledger


def new_counterparty_burst(
    ledger: Ledger,
    direction: str,
    *,
    count: int = 8,
    last_at: timedelta = 10 * DAY + 2 * HOUR,
    channel: str = "transfer",
    prefix: str = "NEW",
) -> None:
    """``count`` counterparties, ten minutes apart, the last at ``last_at``."""
    for index in range(count):
        ledger.tx(
            "5000",
            direction=direction,
            channel=channel,
            at=last_at - (count - 1 - index) * timedelta(minutes=10),
            counterparty_id=f"{prefix}-{index}",
        )


@covers("positive", *CORPORATE_FAN)
@pytest.mark.parametrize("rule_id", CORPORATE_FAN)
def test_eight_counterparties_new_to_the_company_within_a_day_alert(
    pboc_engine: RuleEngine, rule_id: str
) -> None:
    ledger = corporate_with_known_counterparties(pboc_engine)
    ledger.tx("30000", direction=CORPORATE_FAN[rule_id], at=10 * DAY, counterparty_id="KNOWN-0")
    new_counterparty_burst(ledger, CORPORATE_FAN[rule_id])
    alert = only(ledger, rule_id)
    assert alert.values[f"new_{'payers' if rule_id.endswith('IN-CORPORATE') else 'payees'}"] == "8"
    assert "8 counterparties with no transaction in the 6 days before" in alert.reasons[0]
    assert "within 24 hours (9 pay" in alert.reasons[0]  # the known one is not new
    assert "70,000.00 CNY in all" in alert.reasons[0]


@covers("negative", *CORPORATE_FAN)
@pytest.mark.parametrize("rule_id", CORPORATE_FAN)
def test_many_known_counterparties_in_a_day_do_not_alert(
    pboc_engine: RuleEngine, rule_id: str
) -> None:
    # Ten distinct counterparties and 300,000 CNY a day each way: the old volume rule's
    # noise. All of them were seen in the days before.
    ledger = corporate_with_known_counterparties(pboc_engine, days=20)
    assert ledger.fired(rule_id) == []


@covers("negative", *CORPORATE_FAN)
@pytest.mark.parametrize("rule_id", CORPORATE_FAN)
@pytest.mark.parametrize(
    ("days", "channel", "who"),
    [(10, "card", "corporate"), (10, "other", "corporate"), (10, "transfer", "individual")],
    ids=["card", "other", "natural person"],
)
def test_card_and_other_channels_and_natural_persons_do_not_count(
    pboc_engine: RuleEngine, rule_id: str, days: int, channel: str, who: str
) -> None:
    ledger = corporate_with_known_counterparties(pboc_engine, days=days)
    ledger.customer = customer(who)
    new_counterparty_burst(ledger, CORPORATE_FAN[rule_id], count=12, channel=channel)
    assert ledger.fired(rule_id) == []


@covers("negative", *CORPORATE_FAN)
@pytest.mark.parametrize("rule_id", CORPORATE_FAN)
def test_a_counterparty_seen_in_the_6_days_before_is_not_new(
    pboc_engine: RuleEngine, rule_id: str
) -> None:
    ledger = corporate_with_known_counterparties(pboc_engine)
    # NEW-7 was paid (either way) five days earlier.
    ledger.tx("100", direction="in", at=5 * DAY + 3 * HOUR, counterparty_id="NEW-7")
    new_counterparty_burst(ledger, CORPORATE_FAN[rule_id])
    assert ledger.fired(rule_id) == []


@covers("boundary", *CORPORATE_FAN)
@pytest.mark.parametrize("rule_id", CORPORATE_FAN)
@pytest.mark.parametrize(
    ("earlier", "alerts"), [(timedelta(0), False), (timedelta(seconds=1), True)]
)
def test_a_counterparty_last_seen_exactly_7_days_before_is_still_known(
    pboc_engine: RuleEngine, rule_id: str, earlier: timedelta, alerts: bool
) -> None:
    ledger = corporate_with_known_counterparties(pboc_engine)
    last_at = 10 * DAY + 2 * HOUR
    ledger.tx("100", direction="out", at=last_at - 7 * DAY - earlier, counterparty_id="NEW-7")
    new_counterparty_burst(ledger, CORPORATE_FAN[rule_id], last_at=last_at)
    assert bool(ledger.fired(rule_id)) is alerts


@covers("boundary", *CORPORATE_FAN)
@pytest.mark.parametrize("rule_id", CORPORATE_FAN)
@pytest.mark.parametrize(
    ("count", "first_at", "alerts"),
    [(7, 10 * DAY, False), (8, 10 * DAY, True), (8, 10 * DAY - timedelta(seconds=1), False)],
    ids=["7 new", "8 new over exactly 24 hours", "8 new over 24 hours and a second"],
)
def test_corporate_fan_alerts_from_8_new_counterparties_within_exactly_24_hours(
    pboc_engine: RuleEngine, rule_id: str, count: int, first_at: timedelta, alerts: bool
) -> None:
    ledger = corporate_with_known_counterparties(pboc_engine)
    direction = CORPORATE_FAN[rule_id]
    ledger.tx("5000", direction=direction, at=first_at, counterparty_id="FIRST")
    new_counterparty_burst(ledger, direction, count=count - 1, last_at=10 * DAY + 24 * HOUR)
    assert bool(ledger.fired(rule_id)) is alerts


@covers("boundary", *CORPORATE_FAN)
@pytest.mark.parametrize("rule_id", CORPORATE_FAN)
@pytest.mark.parametrize(("short", "alerts"), [(timedelta(0), True), (timedelta(seconds=1), False)])
def test_corporate_fan_needs_exactly_7_days_of_history(
    pboc_engine: RuleEngine, rule_id: str, short: timedelta, alerts: bool
) -> None:
    ledger = Ledger(pboc_engine, customer=customer("corporate"))
    ledger.tx("30000", counterparty_id="KNOWN-0")  # the first activity, day 0 at 09:00
    new_counterparty_burst(ledger, CORPORATE_FAN[rule_id], last_at=7 * DAY - short)
    assert bool(ledger.fired(rule_id)) is alerts


def corporate_pass_through(ledger: Ledger, amount: int) -> None:
    ledger.tx(amount, at=95 * DAY + HOUR, counterparty_id="NEW-IN")
    ledger.tx(amount, direction="out", at=95 * DAY + 2 * HOUR, counterparty_id="NEW-OUT")


@covers("positive", "TYP-PASS-THROUGH-CORPORATE")
def test_corporate_pass_through_far_above_the_usual_inflow_alerts(
    pboc_engine: RuleEngine,
) -> None:
    ledger = corporate_with_routine(pboc_engine, 100_000)
    corporate_pass_through(ledger, 1_000_000)
    assert (
        "1,100,000.00 CNY out within 48 hours of 1,100,000.00 CNY in (100% passed through), "
        "5.5 times the usual 2-day inflow"
    ) in reason(ledger, "TYP-PASS-THROUGH-CORPORATE")


@covers("negative", "TYP-PASS-THROUGH-CORPORATE")
@pytest.mark.parametrize(
    ("daily", "amount"),
    [(None, 1_000_000), (100_000, 480_000)],
    ids=["no history", "2.9 times the usual"],
)
def test_corporate_pass_through_without_a_break_from_routine_does_not_alert(
    pboc_engine: RuleEngine, daily: int | None, amount: int
) -> None:
    ledger = corporate_with_routine(pboc_engine, daily)
    corporate_pass_through(ledger, amount)
    assert ledger.fired("TYP-PASS-THROUGH-CORPORATE") == []


@covers("boundary", "TYP-PASS-THROUGH-CORPORATE")
def test_corporate_pass_through_alerts_at_exactly_3_times_the_usual_2_days(
    pboc_engine: RuleEngine,
) -> None:
    # 500,000 + one routine day of 100,000 = 600,000 = 3 x (2 days x 100,000)
    ledger = corporate_with_routine(pboc_engine, 100_000)
    corporate_pass_through(ledger, 500_000)
    alert = only(ledger, "TYP-PASS-THROUGH-CORPORATE")
    assert (alert.values["inflow"], alert.values["times"]) == ("600000", "3")


# ---------------------------------------------------------------- dormant accounts


@covers("positive", "TYP-DORMANT-REACTIVATION")
def test_large_flow_after_months_of_silence_alerts(ledger: Ledger) -> None:
    ledger.tx("1000")
    ledger.tx("50000", at=120 * DAY)
    alert = only(ledger, "TYP-DORMANT-REACTIVATION")
    assert alert.trigger_tx_id == "T00002"
    assert "50,000.00 CNY inflow after 120" in alert.reasons[0]
    assert "days without activity" in alert.reasons[0]


@covers("negative", "TYP-DORMANT-REACTIVATION")
@pytest.mark.parametrize(("amount", "gap"), [("50000", 89 * DAY), ("19999.99", 120 * DAY)])
def test_a_short_silence_or_a_small_amount_does_not_alert(
    ledger: Ledger, amount: str, gap: timedelta
) -> None:
    ledger.tx("1000")
    ledger.tx(amount, at=gap)
    assert ledger.fired("TYP-DORMANT-REACTIVATION") == []


@covers("negative", "TYP-DORMANT-REACTIVATION")
def test_a_first_transaction_is_not_a_reactivation(ledger: Ledger) -> None:
    ledger.tx("50000")
    assert ledger.fired("TYP-DORMANT-REACTIVATION") == []


@covers("boundary", "TYP-DORMANT-REACTIVATION")
def test_exactly_20000_after_exactly_90_days_alerts(ledger: Ledger) -> None:
    ledger.tx("1000")
    ledger.tx("20000.00", at=90 * DAY)
    assert "20,000.00 CNY inflow after 90" in reason(ledger, "TYP-DORMANT-REACTIVATION")


def test_a_minute_short_of_90_days_of_silence_does_not_alert(ledger: Ledger) -> None:
    ledger.tx("1000")
    ledger.tx("20000", at=90 * DAY - timedelta(minutes=1))
    assert ledger.fired("TYP-DORMANT-REACTIVATION") == []


# ---------------------------------------------------------------- FATF lists


@covers("positive", "TYP-FATF-BLACKLIST")
@pytest.mark.parametrize("country", ["KP", "IR", "MM"])
def test_a_counterparty_in_a_black_list_country_is_a_critical_alert(
    ledger: Ledger, country: str
) -> None:
    ledger.tx("1000", direction="out", counterparty_country=country)
    alert = only(ledger, "TYP-FATF-BLACKLIST")
    assert alert.severity is Severity.CRITICAL
    assert (
        f"outflow of 1,000 CNY with a counterparty in {country} (FATF black list as of 2026-06-19)"
    ) in alert.reasons[0]
    assert alert.values["country"] == country


@covers("negative", "TYP-FATF-BLACKLIST")
@pytest.mark.parametrize("country", [None, "CN", "SG", "VN"])
def test_other_countries_are_not_black_listed(ledger: Ledger, country: str | None) -> None:
    ledger.tx("1000000", direction="out", counterparty_country=country)
    assert ledger.fired("TYP-FATF-BLACKLIST") == []


@covers("boundary", "TYP-FATF-BLACKLIST")
def test_black_list_has_no_cool_down_and_no_minimum_amount(ledger: Ledger) -> None:
    ledger.tx("0.01", direction="out", counterparty_country="KP")
    ledger.tx("0.01", direction="out", counterparty_country="KP")  # the same instant
    assert [d.tx_ids for d in ledger.fired("TYP-FATF-BLACKLIST")] == [("T00001",), ("T00002",)]


@covers("positive", "TYP-FATF-GREYLIST")
def test_a_large_flow_with_a_grey_list_country_alerts(ledger: Ledger) -> None:
    ledger.tx("60000", direction="out", counterparty_country="VN")
    alert = only(ledger, "TYP-FATF-GREYLIST")
    assert alert.severity is Severity.MEDIUM
    assert (
        "outflow of 60,000.00 CNY with a counterparty in VN (FATF grey list as of 2026-06-19)"
    ) in alert.reasons[0]


@covers("negative", "TYP-FATF-GREYLIST")
@pytest.mark.parametrize(("amount", "country"), [("49999.99", "VN"), ("60000", "KP")])
def test_a_small_grey_list_flow_or_a_black_list_country_is_not_a_grey_list_alert(
    ledger: Ledger, amount: str, country: str
) -> None:
    ledger.tx(amount, direction="out", counterparty_country=country)
    assert ledger.fired("TYP-FATF-GREYLIST") == []


@covers("boundary", "TYP-FATF-GREYLIST")
def test_grey_list_alerts_from_exactly_50000_cny(ledger: Ledger) -> None:
    ledger.tx("50000.00", counterparty_country="KE")
    assert "inflow of 50,000.00 CNY" in reason(ledger, "TYP-FATF-GREYLIST")


# ---------------------------------------------------------------- behaviour change
# An individual's routine: 2,000 CNY a day in one direction for 70 days (days 0-69); on
# day 70 the 7-day window holds the routine of days 64-69 (12,000) and the new amount.

BEHAVIOUR = {"TYP-BEHAVIOUR-CHANGE-IN": "in", "TYP-BEHAVIOUR-CHANGE-OUT": "out"}


def after_routine(
    ledger: Ledger, direction: str, amount: str, *, days: int = 70, daily: int = 2000
) -> None:
    routine(ledger, days=days, amount=daily, directions=(direction,))
    ledger.tx(amount, direction=direction, at=days * DAY + HOUR)


@covers("positive", *BEHAVIOUR)
@pytest.mark.parametrize("rule_id", BEHAVIOUR)
def test_a_week_far_above_the_usual_alerts(ledger: Ledger, rule_id: str) -> None:
    after_routine(ledger, BEHAVIOUR[rule_id], "150000")
    alert = only(ledger, rule_id)
    assert len(alert.tx_ids) == 7
    assert "162,000.00 CNY" in alert.reasons[0]
    assert "usual 2,000.00 CNY per day (11.6 times the 90-day average week)" in alert.reasons[0]


@covers("negative", *BEHAVIOUR)
@pytest.mark.parametrize("rule_id", BEHAVIOUR)
@pytest.mark.parametrize(
    ("days", "daily"), [(50, 2000), (70, 20000)], ids=["50 days of history", "2 times usual"]
)
def test_a_short_history_or_a_week_near_the_usual_does_not_alert(
    ledger: Ledger, rule_id: str, days: int, daily: int
) -> None:
    after_routine(ledger, BEHAVIOUR[rule_id], "150000", days=days, daily=daily)
    assert ledger.fired(rule_id) == []


@covers("boundary", *BEHAVIOUR)
@pytest.mark.parametrize("rule_id", BEHAVIOUR)
@pytest.mark.parametrize(("amount", "alerts"), [("87999.99", False), ("88000.00", True)])
def test_behaviour_change_alerts_from_exactly_100000_in_7_days(
    ledger: Ledger, rule_id: str, amount: str, alerts: bool
) -> None:
    after_routine(ledger, BEHAVIOUR[rule_id], amount)  # + 12,000 of routine
    assert bool(ledger.fired(rule_id)) is alerts


def test_first_outflows_after_months_of_inflows_only_alert(ledger: Ledger) -> None:
    routine(ledger, days=90, amount=2000, directions=("in",))
    ledger.tx("300000", direction="out", at=90 * DAY + HOUR)
    assert ledger.fired("TYP-BEHAVIOUR-CHANGE-OUT") != []


# ---------------------------------------------------------------- round amounts


@covers("positive", "TYP-ROUND-AMOUNTS")
def test_four_round_amounts_within_7_days_alert(ledger: Ledger) -> None:
    for day, amount in enumerate(["10000", "20000", "30000", "50000"]):
        ledger.tx(amount, at=day * DAY)
    alert = only(ledger, "TYP-ROUND-AMOUNTS")
    assert alert.severity is Severity.LOW
    assert alert.tx_ids == ("T00001", "T00002", "T00003", "T00004")
    assert (
        "4 inflows in round multiples of 10,000 CNY within 7 days, 110,000.00 CNY in all"
    ) in alert.reasons[0]


@covers("negative", "TYP-ROUND-AMOUNTS")
@pytest.mark.parametrize(
    "flows",
    [
        [("10000", "in"), ("20000", "in"), ("30000", "in"), ("40000.01", "in")],
        [("10000", "in"), ("20000", "in"), ("30000", "in"), ("5000", "in")],
        [("10000", "in"), ("20000", "in"), ("30000", "out"), ("40000", "out")],
    ],
    ids=["not a multiple", "below 10000", "two directions"],
)
def test_three_round_amounts_in_one_direction_do_not_alert(
    ledger: Ledger, flows: list[tuple[str, str]]
) -> None:
    for day, (amount, direction) in enumerate(flows):
        ledger.tx(amount, direction=direction, at=day * DAY)
    assert ledger.fired("TYP-ROUND-AMOUNTS") == []


@covers("boundary", "TYP-ROUND-AMOUNTS")
@pytest.mark.parametrize(
    ("last_at", "alerts"), [(168 * HOUR, True), (168 * HOUR + timedelta(seconds=1), False)]
)
def test_round_amount_window_is_exactly_7_days_inclusive(
    ledger: Ledger, last_at: timedelta, alerts: bool
) -> None:
    for at in (timedelta(0), DAY, 2 * DAY, last_at):
        ledger.tx("10000", at=at)
    assert bool(ledger.fired("TYP-ROUND-AMOUNTS")) is alerts


# ---------------------------------------------------------------- velocity


def fifteen_in_24_hours(ledger: Ledger, last: str = "2000") -> None:
    """15 transactions, in and out alternately, the last exactly 24 hours after the first."""
    for index in range(15):
        ledger.tx(
            last if index == 14 else "2000",
            direction="in" if index % 2 == 0 else "out",
            at=24 * HOUR * index / 14,
        )


@covers("positive", "TYP-VELOCITY-BURST")
def test_fifteen_transactions_totalling_30000_in_24_hours_alert(ledger: Ledger) -> None:
    fifteen_in_24_hours(ledger)
    alert = only(ledger, "TYP-VELOCITY-BURST")
    assert alert.trigger_tx_id == "T00015"
    assert len(alert.tx_ids) == 15
    assert "15 transactions in 24 hours, 30,000.00 CNY in all" in alert.reasons[0]


@covers("negative", "TYP-VELOCITY-BURST")
def test_fourteen_transactions_in_24_hours_do_not_alert(ledger: Ledger) -> None:
    for index in range(14):
        ledger.tx("5000", at=index * HOUR)
    assert ledger.fired("TYP-VELOCITY-BURST") == []


@covers("negative", "TYP-VELOCITY-BURST")
def test_velocity_burst_ignores_corporates(pboc_engine: RuleEngine) -> None:
    ledger = Ledger(pboc_engine, customer=customer("corporate"))
    fifteen_in_24_hours(ledger)
    assert ledger.fired("TYP-VELOCITY-BURST") == []


@covers("boundary", "TYP-VELOCITY-BURST")
@pytest.mark.parametrize(("last", "alerts"), [("1999.99", False), ("2000.00", True)])
def test_velocity_burst_alerts_from_exactly_30000(ledger: Ledger, last: str, alerts: bool) -> None:
    fifteen_in_24_hours(ledger, last)
    assert bool(ledger.fired("TYP-VELOCITY-BURST")) is alerts


# ---------------------------------------------------------------- watch list


@covers("positive", "TYP-WATCHLIST")
def test_a_listed_counterparty_name_is_a_critical_alert_every_time(ledger: Ledger) -> None:
    ledger.tx("100", direction="out", counterparty_name="Blackfen Minerals Corporation")
    ledger.tx("100", direction="out", counterparty_name="Blackfen Minerals Corporation")
    alerts = ledger.fired("TYP-WATCHLIST")
    assert [d.trigger_tx_id for d in alerts] == ["T00001", "T00002"]  # cool-down 0
    assert alerts[0].severity is Severity.CRITICAL
    assert alerts[0].score == 1.0
    assert (
        "counterparty matches watch-list entry WL-E002 (synthetic-sanctions) with score 1.00"
    ) in alerts[0].reasons[0]


@covers("positive", "TYP-WATCHLIST")
@pytest.mark.parametrize(
    ("name", "entry_id"),
    [
        ("Minerals Blackfen Corp", "WL-E002"),  # word order, legal form
        ("Blackfenn Minerals Corp", "WL-E002"),  # spelling
        ("Relief Foundation Marrowgate", "WL-E009"),  # word order
        ("Hsueh Ming-chien", "WL-P006"),  # Wade-Giles of 薛铭骞
        ("Mingqian Xue", "WL-P006"),  # given name first
    ],
)
def test_variant_spellings_and_word_orders_of_a_listed_name_alert(
    ledger: Ledger, name: str, entry_id: str
) -> None:
    ledger.tx("100", counterparty_name=name)
    alert = only(ledger, "TYP-WATCHLIST")
    assert f"watch-list entry {entry_id} " in alert.reasons[0]
    assert alert.values["watchlist_entry"] == entry_id
    assert f"with score {alert.values['watchlist_score']}" in alert.reasons[0]


@covers("negative", "TYP-WATCHLIST")
@pytest.mark.parametrize("name", [None, "Shanghai Pudong Trading Co", "张伟"])
def test_an_unrelated_or_missing_name_does_not_alert(ledger: Ledger, name: str | None) -> None:
    ledger.tx("100", counterparty_name=name)
    assert ledger.fired("TYP-WATCHLIST") == []


@covers("boundary", "TYP-WATCHLIST")
@pytest.mark.parametrize(
    ("name", "alerts"), [("Axaxa Velloquin", False), ("Saffronmere Exxhange Cox", True)]
)
def test_watch_list_alerts_from_a_score_of_exactly_0_85(
    ledger: Ledger, reference: Reference, name: str, alerts: bool
) -> None:
    match = reference.watch_list.best_match(name, threshold=0.5)
    assert match is not None and (round(match.score, 4) == 0.85) is alerts  # 0.8462 or 0.85
    ledger.tx("100", counterparty_name=name)
    assert bool(ledger.fired("TYP-WATCHLIST")) is alerts


# ---------------------------------------------------------------- every rule


def test_every_rule_of_the_pack_has_a_positive_a_negative_and_a_boundary_case(
    pboc_engine: RuleEngine,
) -> None:
    pack_ids = {rule.id for rule in pboc_engine.pack.rules}
    missing = {
        rule_id: sorted(CASES - COVERED[rule_id])
        for rule_id in sorted(pack_ids)
        if CASES - COVERED[rule_id]
    }
    assert missing == {}
    assert set(COVERED) - pack_ids == set()  # no cases for rules the pack no longer has
