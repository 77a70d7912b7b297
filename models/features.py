"""Behavioural features of a transaction against its own customer's history.

One definition, two paths: :class:`BehaviourProfile` computes the features of one
transaction from a bounded per-customer record in the live stream, and
:func:`build_feature_matrix` computes the same numbers for a whole historical file for
training. A parity test (``tests/models/test_features.py``) holds the two together.

Features, in the fixed order of :data:`FEATURE_NAMES`, and why each is there:

============================  ============================================================
feature                       the laundering pattern it exposes
============================  ============================================================
log_amount_cny                large placements and layering moves stand out by size alone
amount_robust_z               an amount far from this customer's usual (behaviour change)
hour_rarity                   activity at hours the customer never uses (mule/takeover)
weekday_rarity                activity on days the customer never uses (mule/takeover)
new_counterparty              money to or from parties never seen before (fan-in/fan-out)
counterparty_country_risk     FATF grey (1) or black (2) list geography
channel_rarity                a switch to cash or wire the customer does not normally use
count_24h_vs_baseline         a burst of transactions in a day (structuring, smurfing)
volume_24h_vs_baseline        a day's value far above the usual daily flow
count_7d_vs_baseline          a week-long burst (structuring spread over days)
volume_7d_vs_baseline         a week's value far above the usual flow (behaviour change)
in_out_balance_48h            money out matching money in within 48h (rapid pass-through)
out_in_log_ratio_48h          direction of the 48h imbalance (collection vs distribution)
distinct_counterparties_7d    many parties in a week (fan-in, fan-out, money-mule hubs)
days_since_previous           a long-quiet account waking up (dormant reactivation)
customer_corporate            corporates and persons have different normal behaviour
customer_risk_rating          the bank's own KYC risk view (low 0, medium 1, high 2)
============================  ============================================================

Definitions (both paths; "local" is the bank's time zone, passed in):

- Amounts are the CNY equivalent the caller gives, rounded to the fen (0.01 CNY).
  ``log_amount_cny = log1p(CNY)``.
- ``amount_robust_z = (log_amount - median) / max(1.4826 * MAD, 0.1)`` over the log
  amounts (rounded to 3 decimals) of the customer's last 32 earlier transactions that
  fall on the transaction's local day or the 90 before it; 0 when there are none. This is the
  bounded approximation of a 90-day median/MAD: a busy customer's median is over its
  last 32 transactions, not all of its 90 days. The 0.1 floor (about 10 %) keeps a
  customer with identical amounts (a salary) from dividing by zero.
- Rarities: ``1 - (n_bucket + 1) / (n_total + k)`` over the customer's whole history,
  Laplace-smoothed over ``k`` buckets (24 hours, 7 weekdays, 5 channels); a customer
  with no history gets ``1 - 1/k`` for every bucket.
- Windows count the transaction itself plus earlier ones: 24h is the current UTC clock
  hour and the 23 before it, 48h the current hour and the 47 before it (hourly
  buckets); 7d is the local day and the 6 before it (daily buckets).
- Baseline: the mean daily count and CNY volume over the local days ``[d-90, d-1]``,
  divided by ``min(90, d - first_day)`` days of known history (0 when the customer is
  new today). ``*_vs_baseline = log((window + 1) / (daily_mean * window_days + 1))``:
  0 means usual, positive means more than usual.
- ``in_out_balance_48h = min(in, out) / max(in, out)`` of the 48h CNY volumes: near 1 when
  what came in went out again. ``out_in_log_ratio_48h = log((out + 1) / (in + 1))``.
- ``new_counterparty``: 1 when the counterparty id is not among the 64 most recently
  used counterparties of the customer; 0 when it is, or when there is no counterparty.
  ``distinct_counterparties_7d``: remembered counterparties last used in the 7-day
  window, plus this one; it saturates at 65 (the memory's bound).
- ``days_since_previous``: event-time days since the customer's newest earlier
  transaction; 0 for the first one (and for a late one, see below).
- Country risk comes from the caller's ``country_risk(country) -> 0 | 1 | 2``
  (see :func:`country_risk_from_lists`); this package does not read the FATF lists.

Event time only: every bucket is keyed on the transaction's own timestamp, never on
the wall clock. Late transactions (older than the newest one applied) are scored
against the buckets of their own time, and when applied they go into their own hour
or day bucket if that bucket is still kept (48 hours, 91 days behind the newest), and
always into the whole-history counts; ``days_since_previous`` is 0 for them. The
training path sees a file sorted by (timestamp, tx_id) per customer, so the two paths
agree exactly for in-order streams and may differ only for late arrivals.

The profile does not deduplicate: the caller applies a transaction once (the stream
already recognises redeliveries with the rule engine's state).
"""

from __future__ import annotations

import base64
import hashlib
import math
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

from core.customer import Customer, CustomerType, RiskRating
from core.transaction import Channel, Direction, Transaction

FloatArray: TypeAlias = npt.NDArray[np.float64]
CountryRiskFunction = Callable[[str | None], int]

FEATURE_NAMES: tuple[str, ...] = (
    "log_amount_cny",
    "amount_robust_z",
    "hour_rarity",
    "weekday_rarity",
    "new_counterparty",
    "counterparty_country_risk",
    "channel_rarity",
    "count_24h_vs_baseline",
    "volume_24h_vs_baseline",
    "count_7d_vs_baseline",
    "volume_7d_vs_baseline",
    "in_out_balance_48h",
    "out_in_log_ratio_48h",
    "distinct_counterparties_7d",
    "days_since_previous",
    "customer_corporate",
    "customer_risk_rating",
)

# Features that are logarithms of ratios: BehaviourProfile.feature_row leaves the ratios
# and feature_matrix takes the logs of a batch at once.
LOG_FEATURES: tuple[str, ...] = (
    "count_24h_vs_baseline",
    "volume_24h_vs_baseline",
    "count_7d_vs_baseline",
    "volume_7d_vs_baseline",
    "out_in_log_ratio_48h",
)
_LOG_COLUMNS = [FEATURE_NAMES.index(name) for name in LOG_FEATURES]

# Features whose low side is no AML signal: an amount below the customer's usual, a
# quieter day or week than usual. The detector floors them at 0 (``one_sided``) so that
# the forest spends its alert budget on the risky side only. Two-sided on purpose:
# out_in_log_ratio_48h (collection and distribution are both patterns).
ONE_SIDED_FEATURES: tuple[str, ...] = (
    "amount_robust_z",
    "count_24h_vs_baseline",
    "volume_24h_vs_baseline",
    "count_7d_vs_baseline",
    "volume_7d_vs_baseline",
)

PROFILE_FORMAT = 2  # 1: the long-key form of before; still read
HOURS_KEPT = 48
DAYS_KEPT = 91  # the day itself and the 90 before it
BASELINE_DAYS = 90
AMOUNT_SAMPLES = 32
AMOUNT_DECIMALS = 3
COUNTERPARTIES_KEPT = 64
MAD_SCALE = 1.4826  # makes the MAD estimate a standard deviation for normal data
MAD_FLOOR = 0.1
CHANNELS: tuple[Channel, ...] = tuple(Channel)
RISK_LEVELS = {RiskRating.LOW: 0, RiskRating.MEDIUM: 1, RiskRating.HIGH: 2}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_EXACT_EPOCH_SECONDS = float(2**32)
_NS_PER_HOUR = 3_600_000_000_000
_NS_PER_DAY = 86_400_000_000_000
_CHANNEL_INDEX: dict[str, int] = {channel.value: i for i, channel in enumerate(CHANNELS)}
_SMALLEST_POSITIVE = float(np.finfo(np.float64).smallest_subnormal)
_ONE = Decimal(1)
_HALF_EVEN = Context(prec=64, rounding=ROUND_HALF_EVEN)
_LAGS = np.arange(1, AMOUNT_SAMPLES + 1)
_ROBUST_Z_CHUNK_ROWS = 4096


# --------------------------------------------------------------------------- shared formulas
# Written once and used by both paths; they work on floats and on numpy arrays alike.


def _fen(amount_cny: Decimal) -> int:
    """The CNY amount in whole fen: exact integer sums in both paths."""
    # The context's quantize: Decimal.quantize's keyword argument costs its parsing.
    return int(_HALF_EVEN.quantize(amount_cny.scaleb(2), _ONE))


def _log_amount(fen: int) -> float:
    return math.log1p(fen / 100)


def _amount_key(log_amount: float) -> float:
    # Rounded so that the profile keeps short numbers; both paths round the same floats.
    return round(log_amount, AMOUNT_DECIMALS)


def _rarity(bucket_count: Any, total: Any, buckets: int) -> Any:
    return 1.0 - (bucket_count + 1.0) / (total + buckets)


# The log features are written as log(ratio) with the ratio apart: the streaming path
# takes the logs of a batch's ratios in one numpy call (feature_matrix). numpy's log, not
# math.log, in both paths: the two differ in the last bit for some inputs.
def _vs_baseline_ratio(window: Any, daily_mean: Any, window_days: int) -> Any:
    return (window + 1.0) / (daily_mean * window_days + 1.0)


def _vs_baseline(window: Any, daily_mean: Any, window_days: int) -> Any:
    return np.log(_vs_baseline_ratio(window, daily_mean, window_days))


def _balance(in_yuan: Any, out_yuan: Any) -> Any:
    # Dividing by at least the smallest positive float gives 0 when nothing moved and
    # min / max otherwise, without np.where's cost on the streaming path's scalars.
    high = np.maximum(in_yuan, out_yuan)
    return np.minimum(in_yuan, out_yuan) / np.maximum(high, _SMALLEST_POSITIVE)


def _out_in_ratio(in_yuan: Any, out_yuan: Any) -> Any:
    return (out_yuan + 1.0) / (in_yuan + 1.0)


def _out_in_log_ratio(in_yuan: Any, out_yuan: Any) -> Any:
    return np.log(_out_in_ratio(in_yuan, out_yuan))


def _robust_z(log_amount: Any, median: Any, mad: Any) -> Any:
    return (log_amount - median) / np.maximum(MAD_SCALE * mad, MAD_FLOOR)


# The streaming path's one transaction at a time: the same IEEE operations on floats
# (max, min and division are exact or correctly rounded alike), without numpy's cost
# per scalar call (about a tenth of the features' time).
def _balance_of(in_yuan: float, out_yuan: float) -> float:
    return min(in_yuan, out_yuan) / max(in_yuan, out_yuan, _SMALLEST_POSITIVE)


def _robust_z_of(log_amount: float, median: float, mad: float) -> float:
    return (log_amount - median) / max(MAD_SCALE * mad, MAD_FLOOR)


def _customer_codes(customer: Customer) -> tuple[float, float]:
    return (
        1.0 if customer.type is CustomerType.CORPORATE else 0.0,
        float(RISK_LEVELS[customer.risk_rating]),
    )


def _hour_index(moment: datetime, epoch: float) -> int:
    """UTC hours since the epoch of ``moment``, whose POSIX seconds are ``epoch``.

    From the float where that is exact: below 2**32 s (the year 2106) floats are less
    than a microsecond apart, so the float nearest a time a microsecond before the hour
    is still before it, and float floor division is exact. Otherwise (and before 1970)
    from the datetime, about 1.5 us more: a subtraction of aware datetimes.
    """
    if 0.0 <= epoch < _EXACT_EPOCH_SECONDS:
        return int(epoch // 3600)
    return (moment - _EPOCH) // _HOUR


def _counterparty_key(counterparty_id: str | None) -> str | None:
    """A short stable digest: 64 of them fit the profile's size budget."""
    if not counterparty_id:
        return None
    return hashlib.blake2b(counterparty_id.encode(), digest_size=4).hexdigest()


def country_risk_from_lists(*, grey: Iterable[str], black: Iterable[str]) -> CountryRiskFunction:
    """A ``country_risk`` function: 2 on the black list, 1 on the grey list, else 0."""
    grey_set, black_set = frozenset(grey), frozenset(black)

    def country_risk(country: str | None) -> int:
        if not country:
            return 0
        code = country.strip().upper()
        return 2 if code in black_set else 1 if code in grey_set else 0

    return country_risk


class CounterpartyMemory:
    """The customer's most recently used counterparties (bounded), with their last day.

    Used as is by both paths: remembering which of an unbounded set of counterparties is
    "known" is exactly the part a bounded record must approximate, so the training path
    runs this same structure rather than a pandas imitation of it.
    """

    __slots__ = ("_last_day", "_last_used_on", "_text")

    def __init__(self, last_day: OrderedDict[str, int] | None = None) -> None:
        # Least recently used first.
        self._last_day: OrderedDict[str, int] = last_day if last_day is not None else OrderedDict()
        # day -> how many remembered counterparties were last used that day: a 7-day
        # count is then seven look-ups instead of a pass over the whole memory.
        self._last_used_on: dict[int, int] = {}
        # (reference day, digests, days back) as JSON text, until the memory changes.
        self._text: tuple[int, str, str] | None = None
        for seen in self._last_day.values():
            self._last_used_on[seen] = self._last_used_on.get(seen, 0) + 1

    def features(self, key: str | None, day: int) -> tuple[float, float]:
        """(new_counterparty, distinct_counterparties_7d) for a transaction on ``day``."""
        tally = self._last_used_on
        recent = sum(tally.get(seen, 0) for seen in range(day - 6, day + 1))
        if key is None:
            return 0.0, float(recent)
        seen_day = self._last_day.get(key)
        if seen_day is None:
            return 1.0, float(recent + 1)
        in_window = day - 6 <= seen_day <= day
        return 0.0, float(recent if in_window else recent + 1)

    def update(self, key: str | None, day: int) -> None:
        """Remember ``key`` as used on ``day``; forget the least recently used beyond the bound."""
        if key is None:
            return
        self._text = None
        previous = self._last_day.pop(key, None)
        if previous is not None:
            self._forget_use(previous)
        last = day if previous is None else max(previous, day)
        self._last_day[key] = last
        self._last_used_on[last] = self._last_used_on.get(last, 0) + 1
        while len(self._last_day) > COUNTERPARTIES_KEPT:
            self._forget_use(self._last_day.popitem(last=False)[1])

    def _forget_use(self, day: int) -> None:
        remaining = self._last_used_on[day] - 1
        if remaining:
            self._last_used_on[day] = remaining
        else:
            del self._last_used_on[day]

    def to_lists(self, reference_day: int) -> tuple[list[str], list[int]]:
        return list(self._last_day), [reference_day - day for day in self._last_day.values()]

    def to_json_texts(self, reference_day: int) -> tuple[str, str]:
        """The digests as a base64 JSON string and their days back as a JSON list."""
        text = self._text
        if text is None or text[0] != reference_day:
            keys, offsets = self.to_lists(reference_day)
            text = self._text = (
                reference_day,
                f'"{base64.b64encode(bytes.fromhex("".join(keys))).decode()}"',
                f"[{_ints(offsets)}]",
            )
        return text[1], text[2]

    @classmethod
    def from_lists(
        cls, keys: list[str], offsets: list[int], reference_day: int
    ) -> CounterpartyMemory:
        return cls(
            OrderedDict(
                (str(key), reference_day - int(offset))
                for key, offset in zip(keys, offsets, strict=True)
            )
        )


# --------------------------------------------------------------------------- streaming path


class TransactionFacts(NamedTuple):
    """One transaction as a profile sees it: its buckets, amount and counterparty key."""

    hour_index: int  # UTC hours since the epoch
    day: int  # bank-local day ordinal
    hour: int  # bank-local hour of the day
    weekday: int  # bank-local, Monday 0
    epoch: float  # POSIX seconds
    fen: int  # the CNY amount in fen
    counterparty: str | None  # _counterparty_key of the counterparty id


class BehaviourProfile:
    """One customer's behaviour summary: bounded, JSON-serialisable, updated per transaction.

    ``features`` scores a transaction against the profile *before* it is applied;
    ``update`` then applies it. ``tz`` is the bank's time zone for hours, weekdays and days.
    JSON size: about 1.1-1.4 KB for a typical simulated customer, under 2.5 KB for the
    busiest, and about 4 KB at worst (every hour and day used, million-yuan sums), since
    every structure below has a fixed maximum length.
    """

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.transactions = 0
        self.first_day: int | None = None
        self.last_day: int | None = None
        self.last_hour: int | None = None
        self.last_at: float | None = None
        self.hour_counts = [0] * 24
        self.weekday_counts = [0] * 7
        self.channel_counts = [0] * len(CHANNELS)
        # hour index (UTC hours since the epoch) -> [count, in fen, out fen]
        self.hourly: dict[int, list[int]] = {}
        # local day ordinal -> [count, fen], and the sums over all kept days
        self.daily: dict[int, list[int]] = {}
        self._kept_count = 0
        self._kept_fen = 0
        # (newest day, entries, the days before it as JSON list items of "dc" and "df"):
        # unchanged until a late transaction lands on an earlier day, and a new day only
        # shifts them (see _daily_json).
        self._daily_tail: tuple[int, int, str, str] | None = None
        # local day ordinal and rounded log amount of the last transactions, in arrival order
        self.amount_days: list[int] = []
        self.amount_logs: list[float] = []
        # amount_logs in thousandths as JSON text, kept in step: written at every write.
        self._amount_texts: list[str] = []
        # amount_logs in increasing order, kept in step: the robust z-score's median and
        # MAD without sorting at every scored transaction.
        self._sorted_logs: list[float] = []
        self.counterparties = CounterpartyMemory()

    def facts(
        self,
        tx: Transaction,
        amount_cny: Decimal,
        *,
        local_time: datetime | None = None,
        epoch: float | None = None,
    ) -> TransactionFacts:
        """What ``features`` and ``update`` need of ``tx``; pass it to both to work it out once.

        A caller that has localised ``tx.timestamp`` already or taken its ``event_epoch``
        passes them (``local_time`` is used only when it is in this profile's zone).
        """
        if local_time is None or local_time.tzinfo is not self.tz:
            local_time = tx.timestamp.astimezone(self.tz)
        if epoch is None:
            epoch = tx.event_epoch
        return TransactionFacts(
            hour_index=_hour_index(tx.timestamp, epoch),
            day=local_time.toordinal(),
            hour=local_time.hour,
            weekday=local_time.weekday(),
            epoch=epoch,
            fen=_fen(amount_cny),
            counterparty=_counterparty_key(tx.counterparty_id),
        )

    def features(
        self,
        tx: Transaction,
        amount_cny: Decimal,
        customer: Customer,
        country_risk: CountryRiskFunction,
        *,
        facts: TransactionFacts | None = None,
    ) -> FloatArray:
        """The FEATURE_NAMES vector of ``tx`` against this profile, which it does not change."""
        row = self.feature_row(tx, amount_cny, customer, country_risk, facts=facts)
        return feature_matrix([row])[0]

    def feature_row(
        self,
        tx: Transaction,
        amount_cny: Decimal,
        customer: Customer,
        country_risk: CountryRiskFunction,
        *,
        facts: TransactionFacts | None = None,
    ) -> list[float]:
        """``features`` before its logarithms: the columns of LOG_FEATURES hold the ratios
        whose logs they are. :func:`feature_matrix` finishes a batch of rows at once."""
        hour_index, day, hour, weekday, moment, fen, counterparty = facts or self.facts(
            tx, amount_cny
        )
        log_amount = _log_amount(fen)

        oldest = day - BASELINE_DAYS
        amount_days = self.amount_days
        if _all_within(amount_days, oldest, day):
            samples = self._sorted_logs  # the usual case: every sample is in the window
        else:
            samples = sorted(
                [
                    value
                    for at, value in zip(amount_days, self.amount_logs, strict=True)
                    if oldest <= at <= day
                ]
            )
        if samples:
            median = _middle(samples)
            amount_z = _robust_z_of(log_amount, median, _middle_deviation(samples, median))
        else:
            amount_z = 0.0

        is_in = tx.direction is Direction.IN
        count_24h, fen_24h = 1, fen
        in_48h, out_48h = (fen, 0) if is_in else (0, fen)
        for index, (count, fen_in, fen_out) in self.hourly.items():
            if hour_index - HOURS_KEPT < index <= hour_index:
                in_48h += fen_in
                out_48h += fen_out
                if index > hour_index - 24:
                    count_24h += count
                    fen_24h += fen_in + fen_out
        count_7d, fen_7d = 1, fen
        for at in range(day - 6, day + 1):
            day_bucket = self.daily.get(at)
            if day_bucket is not None:
                count_7d += day_bucket[0]
                fen_7d += day_bucket[1]
        base_count, base_fen = self._baseline(day)
        span = 0 if self.first_day is None else min(BASELINE_DAYS, max(day - self.first_day, 0))
        mean_count = base_count / span if span else 0.0
        mean_yuan = base_fen / 100 / span if span else 0.0

        new_counterparty, distinct_7d = self.counterparties.features(counterparty, day)
        days_since = 0.0 if self.last_at is None else max(moment - self.last_at, 0.0) / 86400
        corporate, risk = _customer_codes(customer)
        in_yuan, out_yuan = in_48h / 100, out_48h / 100
        return [
            log_amount,
            amount_z,
            _rarity(self.hour_counts[hour], self.transactions, 24),
            _rarity(self.weekday_counts[weekday], self.transactions, 7),
            new_counterparty,
            float(country_risk(tx.counterparty_country or None)),
            _rarity(
                self.channel_counts[_CHANNEL_INDEX[tx.channel.value]],
                self.transactions,
                len(CHANNELS),
            ),
            _vs_baseline_ratio(count_24h, mean_count, 1),
            _vs_baseline_ratio(fen_24h / 100, mean_yuan, 1),
            _vs_baseline_ratio(count_7d, mean_count, 7),
            _vs_baseline_ratio(fen_7d / 100, mean_yuan, 7),
            _balance_of(in_yuan, out_yuan),
            _out_in_ratio(in_yuan, out_yuan),
            distinct_7d,
            days_since,
            corporate,
            risk,
        ]

    def _baseline(self, day: int) -> tuple[int, int]:
        """Transactions and fen of the kept days in ``[day - 90, day - 1]``."""
        last_day = self.last_day
        if last_day is None or day < last_day:  # a late transaction: add up its window
            count, fen = 0, 0
            for at, (day_count, day_fen) in self.daily.items():
                if day - BASELINE_DAYS <= at < day:
                    count += day_count
                    fen += day_fen
            return count, fen
        # Kept days lie in [last_day - 90, last_day] and day >= last_day: the window is
        # the running total less `day` itself and the kept days before day - 90.
        count, fen = self._kept_count, self._kept_fen
        outside = range(last_day - BASELINE_DAYS, min(day - BASELINE_DAYS, last_day + 1))
        for at in (day, *outside):
            day_bucket = self.daily.get(at)
            if day_bucket is not None:
                count -= day_bucket[0]
                fen -= day_bucket[1]
        return count, fen

    def _forget_before(self, day: int) -> None:
        """Drop the daily buckets and amount samples that a new newest ``day`` leaves out of
        their windows. Most new days drop nothing, so nothing is rebuilt unless they do
        (a new dict and three new lists on every new day were a third of ``update``)."""
        daily = self.daily
        for at in [at for at in daily if at <= day - DAYS_KEPT]:
            count, fen = daily.pop(at)
            self._kept_count -= count
            self._kept_fen -= fen
        oldest = day - BASELINE_DAYS
        if any(at < oldest for at in self.amount_days):  # a compiled loop, unlike min()
            kept = [
                (at, value, text)
                for at, value, text in zip(
                    self.amount_days, self.amount_logs, self._amount_texts, strict=True
                )
                if at >= oldest
            ]
            self.amount_days = [at for at, _, _ in kept]
            self.amount_logs = [value for _, value, _ in kept]
            self._amount_texts = [text for _, _, text in kept]
            self._sorted_logs = sorted(self.amount_logs)

    def _set_daily(self, daily: dict[int, list[int]]) -> None:
        self.daily = daily
        self._kept_count = sum(count for count, _ in daily.values())
        self._kept_fen = sum(fen for _, fen in daily.values())

    def update(
        self, tx: Transaction, amount_cny: Decimal, *, facts: TransactionFacts | None = None
    ) -> None:
        """Apply ``tx``: a late one goes to its own buckets if they are still kept."""
        hour_index, day, hour, weekday, moment, fen, counterparty = facts or self.facts(
            tx, amount_cny
        )
        self.transactions += 1
        self.hour_counts[hour] += 1
        self.weekday_counts[weekday] += 1
        self.channel_counts[_CHANNEL_INDEX[tx.channel.value]] += 1
        self.first_day = day if self.first_day is None else min(self.first_day, day)
        self.last_at = moment if self.last_at is None else max(self.last_at, moment)

        if self.last_hour is None or hour_index > self.last_hour:
            self.last_hour = hour_index
            hourly = self.hourly
            for index in [index for index in hourly if index <= hour_index - HOURS_KEPT]:
                del hourly[index]
        if hour_index > self.last_hour - HOURS_KEPT:
            bucket = self.hourly.setdefault(hour_index, [0, 0, 0])
            bucket[0] += 1
            bucket[1 if tx.direction is Direction.IN else 2] += fen

        if self.last_day is None or day > self.last_day:
            self.last_day = day
            self._forget_before(day)
        if day > self.last_day - DAYS_KEPT:
            if day != self.last_day:
                self._daily_tail = None
            day_bucket = self.daily.setdefault(day, [0, 0])
            day_bucket[0] += 1
            day_bucket[1] += fen
            self._kept_count += 1
            self._kept_fen += fen
        self.amount_days.append(day)
        amount_log = _amount_key(_log_amount(fen))
        self.amount_logs.append(amount_log)
        self._amount_texts.append(str(round(amount_log * 1000)))
        insort(self._sorted_logs, amount_log)
        if len(self.amount_logs) > AMOUNT_SAMPLES:
            ordered = self._sorted_logs
            for dropped in self.amount_logs[:-AMOUNT_SAMPLES]:
                del ordered[bisect_left(ordered, dropped)]
            del self.amount_days[:-AMOUNT_SAMPLES], self.amount_logs[:-AMOUNT_SAMPLES]
            del self._amount_texts[:-AMOUNT_SAMPLES]

        self.counterparties.update(counterparty, day)

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form (format 2): short keys, times relative to the newest day.

        Keys: ``n`` transactions; ``d`` newest local day; ``f`` days since the first;
        ``h`` newest UTC hour index, counted from the newest day's UTC midnight; ``t``
        newest event time; ``hc``/``wc``/``cc`` hour, weekday and channel counts;
        ``hb`` hourly buckets as [hours back, count, fen in, fen out]; ``dc``/``df`` count
        and fen per day back; ``ad``/``al`` days back and thousandths of the log amount of
        the last amounts; ``cp`` the counterparty digests, base64; ``cd`` their days back.
        Every value is exact: a round trip gives the very same features.
        """
        last_day = self.last_day or 0
        last_hour = self.last_hour or 0
        day_counts = [0] * DAYS_KEPT
        day_fen = [0] * DAYS_KEPT
        for at, (count, fen) in self.daily.items():
            day_counts[last_day - at] = count
            day_fen[last_day - at] = fen
        used = max((last_day - at + 1 for at in self.daily), default=0)
        keys, offsets = self.counterparties.to_lists(last_day)
        return {
            "v": PROFILE_FORMAT,
            "n": self.transactions,
            "d": self.last_day,
            "f": None if self.first_day is None else last_day - self.first_day,
            "h": None if self.last_hour is None else last_hour - 24 * (last_day - _EPOCH_ORDINAL),
            "t": self.last_at,
            "hc": self.hour_counts,
            "wc": self.weekday_counts,
            "cc": self.channel_counts,
            "hb": [[last_hour - index, *bucket] for index, bucket in self.hourly.items()],
            "dc": day_counts[:used],
            "df": day_fen[:used],
            "ad": [last_day - at for at in self.amount_days],
            # The logs are rounded to thousandths: k / 1000 gives back the very same float.
            "al": [round(value * 1000) for value in self.amount_logs],
            "cp": base64.b64encode(bytes.fromhex("".join(keys))).decode(),
            "cd": offsets,
        }

    def to_json(self) -> str:
        """``to_dict`` as compact JSON text, reusing the text of what did not change.

        Written after every micro-batch: the days before the newest and the counterparty
        memory keep their text until they change; the rest is short lists of integers.
        """
        last_day = self.last_day or 0
        last_hour = self.last_hour or 0
        day_counts, day_fen = self._daily_json(last_day)
        keys, offsets = self.counterparties.to_json_texts(last_day)
        first = None if self.first_day is None else last_day - self.first_day
        hour = None if self.last_hour is None else last_hour - 24 * (last_day - _EPOCH_ORDINAL)
        hourly = ",".join(
            f"[{last_hour - index},{count},{fen_in},{fen_out}]"
            for index, (count, fen_in, fen_out) in self.hourly.items()
        )
        amount_days = _ints([last_day - at for at in self.amount_days])
        amount_logs = ",".join(self._amount_texts)
        return (
            f'{{"v":{PROFILE_FORMAT},"n":{self.transactions},"d":{_number(self.last_day)},'
            f'"f":{_number(first)},"h":{_number(hour)},"t":{_number(self.last_at)},'
            f'"hc":[{_ints(self.hour_counts)}],"wc":[{_ints(self.weekday_counts)}],'
            f'"cc":[{_ints(self.channel_counts)}],"hb":[{hourly}],'
            f'"dc":{day_counts},"df":{day_fen},"ad":[{amount_days}],"al":[{amount_logs}],'
            f'"cp":{keys},"cd":{offsets}}}'
        )

    def _daily_json(self, last_day: int) -> tuple[str, str]:
        """The "dc" and "df" lists as JSON text, the days before ``last_day`` kept as text."""
        daily = self.daily
        if not daily:
            return "[]", "[]"
        tail = self._daily_tail
        if tail is not None and tail[0] != last_day and last_day - tail[0] < DAYS_KEPT:
            tail = self._daily_tail = self._shifted(tail, last_day)
        elif tail is None or tail[0] != last_day:
            used = max(last_day - at + 1 for at in daily)
            counts, fen = [0] * used, [0] * used
            for at, (count, day_fen) in daily.items():
                counts[last_day - at] = count
                fen[last_day - at] = day_fen
            tail = self._daily_tail = (
                last_day,
                used,
                "".join([f",{count}" for count in counts[1:]]),
                "".join([f",{day_fen}" for day_fen in fen[1:]]),
            )
        count, fen_total = daily.get(last_day) or (0, 0)
        return f"[{count}{tail[2]}]", f"[{fen_total}{tail[3]}]"

    def _shifted(self, tail: tuple[int, int, str, str], last_day: int) -> tuple[int, int, str, str]:
        """``tail`` of an earlier newest day moved back to ``last_day``: that day's final
        figures, then empty days, in front; days beyond the kept ones cut off the end."""
        previous_day, used, count_tail, fen_tail = tail
        count, fen = self.daily.get(previous_day) or (0, 0)
        gap = last_day - previous_day
        empty = ",0" * (gap - 1)
        count_tail = f"{empty},{count}{count_tail}"
        fen_tail = f"{empty},{fen}{fen_tail}"
        used += gap
        cut = used - DAYS_KEPT
        if cut > 0:
            count_tail = count_tail.rsplit(",", cut)[0]
            fen_tail = fen_tail.rsplit(",", cut)[0]
            used -= cut
        # Every kept day holds a transaction: the list ends at the oldest of them.
        while count_tail.endswith(",0"):
            count_tail = count_tail[:-2]
            fen_tail = fen_tail.rsplit(",", 1)[0]
            used -= 1
        return last_day, used, count_tail, fen_tail

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, tz: tzinfo) -> BehaviourProfile:
        """Rebuild what ``to_dict`` wrote, or format 1; ValueError for another format."""
        version = data.get("v")
        if version == 1:
            return cls._from_format_1(data, tz=tz)
        if version != PROFILE_FORMAT:
            raise ValueError(f"behaviour profile format {version!r}, expected {PROFILE_FORMAT}")
        profile = cls(tz)
        profile.transactions = int(data["n"])
        last_day = data["d"]
        if last_day is not None:
            profile.last_day = int(last_day)
            profile.first_day = profile.last_day - int(data["f"])
            profile.last_hour = int(data["h"]) + 24 * (profile.last_day - _EPOCH_ORDINAL)
            profile.last_at = float(data["t"])
        profile._restore(
            data["hc"],
            data["wc"],
            data["cc"],
            data["hb"],
            zip(data["dc"], data["df"], strict=True),
            data["ad"],
            [int(thousandths) / 1000 for thousandths in data["al"]],
        )
        packed = base64.b64decode(data["cp"]).hex()
        profile.counterparties = CounterpartyMemory.from_lists(
            [packed[i : i + 8] for i in range(0, len(packed), 8)],
            list(data["cd"]),
            profile.last_day or 0,
        )
        return profile

    @classmethod
    def _from_format_1(cls, data: Mapping[str, Any], *, tz: tzinfo) -> BehaviourProfile:
        # Profiles written before format 2 stay readable: tables keep them until the
        # customer's next transaction rewrites them.
        profile = cls(tz)
        profile.transactions = int(data["n"])
        profile.first_day = data["first_day"]
        profile.last_day = data["last_day"]
        profile.last_hour = data["last_hour"]
        profile.last_at = data["last_at"]
        profile._restore(
            data["hours"],
            data["weekdays"],
            data["channels"],
            data["hourly"],
            zip(data["day_counts"], data["day_fen"], strict=True),
            data["amount_days"],
            [float(value) for value in data["amount_logs"]],
        )
        packed: str = data["counterparties"]
        profile.counterparties = CounterpartyMemory.from_lists(
            [packed[i : i + 8] for i in range(0, len(packed), 8)],
            list(data["counterparty_days"]),
            profile.last_day or 0,
        )
        return profile

    def _restore(
        self,
        hour_counts: Iterable[int],
        weekday_counts: Iterable[int],
        channel_counts: Iterable[int],
        hourly: Iterable[Iterable[int]],
        days_back: Iterable[tuple[int, int]],
        amount_days_back: Iterable[int],
        amount_logs: list[float],
    ) -> None:
        """The parts both formats write alike, relative to the newest hour and day."""
        last_hour = self.last_hour or 0
        last_day = self.last_day or 0
        self.hour_counts = [int(n) for n in hour_counts]
        self.weekday_counts = [int(n) for n in weekday_counts]
        self.channel_counts = [int(n) for n in channel_counts]
        self.hourly = {
            last_hour - int(offset): [int(count), int(fen_in), int(fen_out)]
            for offset, count, fen_in, fen_out in hourly
        }
        self._set_daily(
            {
                last_day - offset: [int(count), int(fen)]
                for offset, (count, fen) in enumerate(days_back)
                if count
            }
        )
        self.amount_days = [last_day - int(offset) for offset in amount_days_back]
        self.amount_logs = amount_logs
        self._amount_texts = [str(round(value * 1000)) for value in amount_logs]
        self._sorted_logs = sorted(amount_logs)


# The text of the small integers most of a profile's lists hold (days back, hour and
# weekday counts): looked up, a list of 64 is written in about a third of the time
# str() takes for each.
_SMALL_INTS = 1024
_SMALL_INT_TEXTS = tuple(str(value) for value in range(_SMALL_INTS))


def _ints(values: Iterable[int]) -> str:
    """Integers as the items of a JSON list (what json.dumps writes for them)."""
    texts = _SMALL_INT_TEXTS
    return ",".join([texts[value] if 0 <= value < _SMALL_INTS else str(value) for value in values])


def _number(value: int | float | None) -> str:
    """A number or None as JSON: ``repr`` is what json.dumps writes for a finite float."""
    return "null" if value is None else repr(value)


def _middle(ordered: list[float]) -> float:
    # The median of a sorted list, computed as the training path computes it.
    count = len(ordered)
    return (ordered[(count - 1) // 2] + ordered[count // 2]) / 2


def _all_within(days: list[int], low: int, high: int) -> bool:
    """Whether every day is in ``[low, high]``: mypyc compiles this to a loop over the
    list, about 2 us a scored transaction less than ``min()`` and ``max()`` of the 32
    days, which it calls through the generic builtins."""
    return all(low <= at <= high for at in days)


def _middle_deviation(ordered: list[float], median: float) -> float:
    """``_middle(sorted(abs(value - median) for value in ordered))`` for the sorted list
    ``ordered`` and its ``median``, to the bit, without building or sorting the deviations.

    The first ``count // 2`` values are at most the median and the rest at least it (the
    mean of two floats lies between them), so the deviations of the first half read
    downwards, ``median - value``, and of the second half read upwards,
    ``value - median``, are two increasing runs: merged up to the middle rank they give
    the middle deviations. ``median - value`` is exactly ``abs(value - median)`` for a
    value below the median (a float difference changes only its sign when swapped).
    """
    count = len(ordered)
    below, above = count // 2 - 1, count // 2
    lower_rank, upper_rank = (count - 1) // 2, count // 2
    lower = upper = 0.0
    for rank in range(upper_rank + 1):
        if below >= 0 and (above >= count or median - ordered[below] <= ordered[above] - median):
            deviation = median - ordered[below]
            below -= 1
        else:
            deviation = ordered[above] - median
            above += 1
        if rank == lower_rank:
            lower = deviation
        upper = deviation
    return (lower + upper) / 2


def feature_matrix(rows: Sequence[list[float]]) -> FloatArray:
    """The FEATURE_NAMES matrix of rows from :meth:`BehaviourProfile.feature_row`.

    The logarithms of a whole batch are taken in one numpy call, not five per row: a
    numpy call on a short list costs more than the logs themselves. numpy's log, not
    math.log, as in the training path (the two differ in the last bit for some inputs),
    and numpy computes each element alike whatever the array's length.
    """
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    matrix[:, _LOG_COLUMNS] = np.log(matrix[:, _LOG_COLUMNS])
    return matrix


# --------------------------------------------------------------------------- training path


def build_feature_matrix(
    transactions: pd.DataFrame,
    customers: Mapping[str, Customer],
    country_risk: CountryRiskFunction,
    tz: tzinfo,
) -> pd.DataFrame:
    """FEATURE_NAMES for every row of a historical file, each against its customer's past.

    ``transactions`` has the contract's columns plus ``amount_cny`` (Decimal, or anything
    ``Decimal(str(x))`` reads); ``timestamp`` holds RFC 3339 strings or aware datetimes.
    Rows are taken in (timestamp, tx_id) order per customer, whatever the input order;
    the result is indexed like the input. Everything is vectorised with numpy/pandas
    except the two counterparty features (``new_counterparty``,
    ``distinct_counterparties_7d``), which run the profile's own bounded
    :class:`CounterpartyMemory` in one pass over the rows.
    """
    rows = len(transactions)
    if rows == 0:
        return pd.DataFrame(columns=list(FEATURE_NAMES), index=transactions.index, dtype=float)
    unknown = set(transactions["customer_id"].unique()) - set(customers)
    if unknown:
        raise KeyError(f"{len(unknown)} customer ids have no Customer, e.g. {min(unknown)!r}")

    stamps = pd.to_datetime(transactions["timestamp"], utc=True, format="ISO8601")
    stamps = stamps.dt.as_unit("ns")
    codes, uniques = pd.factorize(transactions["customer_id"])
    all_ns = stamps.array.asi8
    order = _customer_time_order(codes, all_ns, transactions["tx_id"])
    sorted_tx = transactions.iloc[order]
    customer = codes[order].astype(np.int64)
    ns = all_ns[order]
    local_ns = stamps.dt.tz_convert(tz).dt.tz_localize(None).array.asi8[order]

    hour_index = ns // _NS_PER_HOUR
    day = local_ns // _NS_PER_DAY + _EPOCH_ORDINAL
    hour_of_day = (local_ns // _NS_PER_HOUR) % 24
    weekday = (day - 1) % 7  # ordinal 1 (0001-01-01) is a Monday
    position = np.arange(rows)
    group_start = np.searchsorted(customer, customer, side="left")
    prior = position - group_start

    fen_list = [
        _fen(a if isinstance(a, Decimal) else Decimal(str(a)))
        for a in sorted_tx["amount_cny"].tolist()
    ]
    fen = np.array(fen_list, dtype=np.int64)
    log_amount = np.array(list(map(_log_amount, fen_list)), dtype=np.float64)
    # Enum members or their values alike: str() of a Direction or Channel is its value.
    is_in = (
        np.array([str(value) for value in sorted_tx["direction"].tolist()]) == Direction.IN.value
    )
    channel = np.array(
        [_CHANNEL_INDEX[str(value)] for value in sorted_tx["channel"].tolist()], dtype=np.int64
    )

    out = pd.DataFrame(index=pd.RangeIndex(rows), columns=list(FEATURE_NAMES), dtype=float)
    out["log_amount_cny"] = log_amount
    out["amount_robust_z"] = _robust_z_matrix(log_amount, day, group_start)

    keys = pd.DataFrame({"customer": customer})
    for name, bucket, buckets in (
        ("hour_rarity", hour_of_day, 24),
        ("weekday_rarity", weekday, 7),
        ("channel_rarity", channel, len(CHANNELS)),
    ):
        keys["bucket"] = bucket
        seen = keys.groupby(["customer", "bucket"], sort=False).cumcount().to_numpy()
        out[name] = _rarity(seen, prior, buckets)

    # Lists, not Series.map: pandas would turn the None of "no country" back into NaN.
    countries = [_text_or_none(v) for v in sorted_tx["counterparty_country"].tolist()]
    risk_of = {country: float(country_risk(country)) for country in set(countries)}
    out["counterparty_country_risk"] = [risk_of[country] for country in countries]

    # Window sums over earlier rows of the same customer: searchsorted on a composite
    # (customer, time bucket) key, then differences of running totals.
    fen_in = np.where(is_in, fen, 0).astype(np.float64)
    fen_out = np.where(is_in, 0, fen).astype(np.float64)
    hour_key = _composite(customer, hour_index)
    day_key = _composite(customer, day)

    def earlier(key: npt.NDArray[np.int64], back: int) -> npt.NDArray[np.int64]:
        return np.maximum(np.searchsorted(key, key - back, side="left"), group_start)

    def window_sum(values: FloatArray, low: npt.NDArray[np.int64], high: Any) -> FloatArray:
        running = np.concatenate(([0.0], np.cumsum(values)))
        return np.asarray(running[high] - running[low])

    total_fen = fen.astype(np.float64)
    start_24h, start_48h = earlier(hour_key, 23), earlier(hour_key, HOURS_KEPT - 1)
    count_24h = position - start_24h + 1
    yuan_24h = (window_sum(total_fen, start_24h, position) + fen) / 100
    in_48h = (window_sum(fen_in, start_48h, position) + np.where(is_in, fen, 0)) / 100
    out_48h = (window_sum(fen_out, start_48h, position) + np.where(is_in, 0, fen)) / 100
    start_7d = earlier(day_key, 6)
    count_7d = position - start_7d + 1
    yuan_7d = (window_sum(total_fen, start_7d, position) + fen) / 100
    base_low = earlier(day_key, BASELINE_DAYS)
    base_high = np.maximum(np.searchsorted(day_key, day_key, side="left"), group_start)
    base_count = base_high - base_low
    base_fen = window_sum(total_fen, base_low, base_high)
    span = np.minimum(BASELINE_DAYS, np.maximum(day - day[group_start], 0))
    safe_span = np.where(span > 0, span, 1)
    mean_count = np.where(span > 0, base_count / safe_span, 0.0)
    mean_yuan = np.where(span > 0, base_fen / 100 / safe_span, 0.0)
    out["count_24h_vs_baseline"] = _vs_baseline(count_24h, mean_count, 1)
    out["volume_24h_vs_baseline"] = _vs_baseline(yuan_24h, mean_yuan, 1)
    out["count_7d_vs_baseline"] = _vs_baseline(count_7d, mean_count, 7)
    out["volume_7d_vs_baseline"] = _vs_baseline(yuan_7d, mean_yuan, 7)
    out["in_out_balance_48h"] = _balance(in_48h, out_48h)
    out["out_in_log_ratio_48h"] = _out_in_log_ratio(in_48h, out_48h)

    new_counterparty, distinct_7d = _counterparty_features(
        customer, day, [_text_or_none(v) for v in sorted_tx["counterparty_id"].tolist()]
    )
    out["new_counterparty"] = new_counterparty
    out["distinct_counterparties_7d"] = distinct_7d

    seconds = ns / 1e9
    gap = np.where(prior > 0, seconds - np.concatenate(([0.0], seconds[:-1])), 0.0)
    out["days_since_previous"] = np.maximum(gap, 0.0) / 86400

    # Per distinct customer, then spread over the rows by the customer's code.
    customer_codes = np.array(
        [_customer_codes(customers[customer_id]) for customer_id in uniques], dtype=np.float64
    ).reshape(-1, 2)
    out["customer_corporate"] = customer_codes[customer, 0]
    out["customer_risk_rating"] = customer_codes[customer, 1]
    # Back to the input's row order and index (which may have duplicates).
    values = np.empty((rows, len(FEATURE_NAMES)), dtype=np.float64)
    values[order] = out.to_numpy(dtype=np.float64)
    return pd.DataFrame(values, index=transactions.index, columns=list(FEATURE_NAMES))


def _customer_time_order(
    customer: npt.NDArray[np.intp], ns: npt.NDArray[np.int64], tx_ids: pd.Series
) -> npt.NDArray[np.intp]:
    """Row positions sorted by customer, then time, then tx_id; equal rows keep their order.

    Sorted on the two integer keys first (a stable numpy sort); tx_id, a string, is
    compared only within the rare runs of one customer at one instant.
    """
    order = np.lexsort((ns, customer))
    sorted_customer, sorted_ns = customer[order], ns[order]
    tied = (sorted_customer[1:] == sorted_customer[:-1]) & (sorted_ns[1:] == sorted_ns[:-1])
    if tied.any():
        ids = tx_ids.astype(str).to_numpy()
        starts = np.flatnonzero(tied & ~np.concatenate(([False], tied[:-1])))
        for start in starts.tolist():
            end = start + 1
            while end < len(tied) and tied[end]:
                end += 1
            run = order[start : end + 1]
            # sorted() is stable: equal tx_ids stay in input order, as before.
            order[start : end + 1] = sorted(run.tolist(), key=lambda row: ids[row])
    return order


def _text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value)
    return text or None


def _composite(customer: npt.NDArray[np.int64], bucket: npt.NDArray[np.int64]) -> Any:
    # Sorted by customer then time, so this key is non-decreasing; buckets never collide
    # across customers because every window start is clamped to the customer's first row.
    return customer * (1 << 32) + (bucket - bucket.min())


def _robust_z_matrix(
    log_amount: FloatArray, day: npt.NDArray[np.int64], group_start: npt.NDArray[np.int64]
) -> FloatArray:
    """amount_robust_z over the last AMOUNT_SAMPLES rows within BASELINE_DAYS days."""
    rows = len(log_amount)
    keys = np.array(list(map(_amount_key, log_amount.tolist())), dtype=np.float64)
    z = np.empty(rows, dtype=np.float64)
    # A few thousand rows at a time: the (rows x AMOUNT_SAMPLES) work arrays of a whole
    # file are tens of megabytes each; a chunk's stay in the CPU caches. Row by row the
    # same operations, so the same results.
    for start in range(0, rows, _ROBUST_Z_CHUNK_ROWS):
        end = min(start + _ROBUST_Z_CHUNK_ROWS, rows)
        position = np.arange(start, end)
        earlier = position[:, None] - _LAGS[None, :]
        safe = np.maximum(earlier, 0)
        valid = (earlier >= group_start[start:end, None]) & (
            day[safe] >= (day[start:end] - BASELINE_DAYS)[:, None]
        )
        samples = np.sort(np.where(valid, keys[safe], np.nan), axis=1)  # NaN sorts last
        count = valid.sum(axis=1)
        median = _middle_of_rows(samples, count)
        deviations = np.sort(np.abs(samples - median[:, None]), axis=1)
        mad = _middle_of_rows(deviations, count)
        chunk = _robust_z(log_amount[start:end], np.nan_to_num(median), np.nan_to_num(mad))
        z[start:end] = np.where(count > 0, chunk, 0.0)
    return z


def _middle_of_rows(ordered: FloatArray, count: npt.NDArray[np.int64]) -> FloatArray:
    rows = np.arange(len(ordered))
    low = ordered[rows, np.maximum(count - 1, 0) // 2]
    high = ordered[rows, np.minimum(count // 2, ordered.shape[1] - 1)]
    return np.asarray((low + high) / 2, dtype=np.float64)


def _counterparty_features(
    customer: npt.NDArray[np.int64], day: npt.NDArray[np.int64], counterparties: list[str | None]
) -> tuple[FloatArray, FloatArray]:
    rows = len(customer)
    new = np.zeros(rows)
    distinct = np.zeros(rows)
    memory = CounterpartyMemory()
    current = None
    days = day.tolist()
    # Each distinct counterparty digested once: a busy payee recurs across many rows.
    key_of = {counterparty: _counterparty_key(counterparty) for counterparty in set(counterparties)}
    for row, (who, counterparty) in enumerate(zip(customer.tolist(), counterparties, strict=True)):
        if who != current:
            memory, current = CounterpartyMemory(), who
        key = key_of[counterparty]
        new[row], distinct[row] = memory.features(key, days[row])
        memory.update(key, days[row])
    return new, distinct
