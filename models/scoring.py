"""Scoring in batches and explanations a manager can read.

Explanations compare each feature with what is usual *for this customer* (the features
are built that way: robust z-scores, ratios to the customer's baseline, rarities of
the customer's own habits) and say the three most unusual things with their numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

from core.detection import Detection, Outcome, Severity, detection_id
from core.transaction import Transaction
from models.detector import AnomalyDetector
from models.features import FEATURE_NAMES

TOP_REASONS = 3
ANOMALY_DETECTOR = "anomaly"
# Risk is the share of training behaviour that was less unusual.
HIGH_RISK = 0.999
# A customer's first week only builds their profile: with no history everything looks
# new, so every first transaction would alert. A dormant account waking up is scored:
# its history starts long before.
WARMUP_DAYS = 7

# feature -> (how unusual, 0 = not at all; the sentence). Only positive scores count.
_Explainer = tuple[Callable[[float], float], Callable[[float], str]]


def _times(value: float) -> float:
    return math.exp(value)


EXPLAINERS: dict[str, _Explainer] = {
    "amount_robust_z": (
        lambda z: z / 3 - 1,
        lambda z: f"amount {z:.1f} robust deviations above this customer's usual amounts",
    ),
    "hour_rarity": (
        lambda r: (r - 0.9) * 10,
        lambda r: f"at an hour this customer almost never uses ({1 - r:.0%} of their activity)",
    ),
    "weekday_rarity": (
        lambda r: (r - 0.9) * 10,
        lambda r: f"on a weekday this customer rarely uses ({1 - r:.0%} of their activity)",
    ),
    "new_counterparty": (
        lambda v: v * 0.6,
        lambda v: "first transaction with this counterparty",
    ),
    "counterparty_country_risk": (
        lambda v: v,
        lambda v: "counterparty in a FATF " + ("black" if v >= 2 else "grey") + "-list country",
    ),
    "channel_rarity": (
        lambda r: (r - 0.9) * 10,
        lambda r: f"a channel this customer rarely uses ({1 - r:.0%} of their activity)",
    ),
    "count_24h_vs_baseline": (
        lambda v: _times(v) / 4 - 1,
        lambda v: f"{_times(v):.1f}x the usual number of transactions in 24 hours",
    ),
    "volume_24h_vs_baseline": (
        lambda v: _times(v) / 5 - 1,
        lambda v: f"{_times(v):.1f}x the usual amount moved in 24 hours",
    ),
    "count_7d_vs_baseline": (
        lambda v: _times(v) / 3 - 1,
        lambda v: f"{_times(v):.1f}x the usual number of transactions in 7 days",
    ),
    "volume_7d_vs_baseline": (
        lambda v: _times(v) / 4 - 1,
        lambda v: f"{_times(v):.1f}x the usual amount moved in 7 days",
    ),
    "in_out_balance_48h": (
        lambda v: (v - 0.8) * 5,
        lambda v: f"money in and out within 48 hours balance to {v:.0%} (pass-through)",
    ),
    "distinct_counterparties_7d": (
        lambda v: v / 8 - 1,
        lambda v: f"{v:.0f} different counterparties in 7 days",
    ),
    "days_since_previous": (
        lambda v: v / 60 - 1,
        lambda v: f"first activity in {v:.0f} days",
    ),
}


# One anomaly alert per customer per day: further unusual transactions of the same
# episode would only repeat it (they join the customer's open case anyway).
ANOMALY_COOLDOWN_HOURS = 24.0


def outside_cooldown(
    last_alert_at: float | None, at: float, hours: float = ANOMALY_COOLDOWN_HOURS
) -> bool:
    """Whether an anomaly alert at event time ``at`` may fire after the customer's last one."""
    return last_alert_at is None or abs(at - last_alert_at) >= hours * 3600.0


class AnomalyCooldowns:
    """Each customer's last anomaly alert, and which further alerts the cool-down lets
    through; the backtest and the worker both take alerts through it, in event order."""

    def __init__(self) -> None:
        self.last_alert_at: dict[str, float] = {}

    def take(self, customer_id: str, at: float) -> bool:
        """Whether an alert at event time ``at`` may fire; if so it becomes the last one."""
        if not outside_cooldown(self.last_alert_at.get(customer_id), at):
            return False
        self.last_alert_at[customer_id] = at
        return True


@dataclass(frozen=True, slots=True)
class Scored:
    """Risk of each row (0-1, higher is riskier) and whether it crosses the threshold."""

    risk: npt.NDArray[np.float64]
    alert: npt.NDArray[np.bool_]


def score_batch(
    detector: AnomalyDetector, features: pd.DataFrame | npt.NDArray[np.float64]
) -> Scored:
    """Score a whole batch at once: each call has a fixed cost, each row a small one.

    A DataFrame has its column names checked against the model's; a float64 array is
    taken as rows in FEATURE_NAMES order without that check (the worker's hot path: the
    registry checked the model's feature names when it loaded it).
    """
    if len(features) == 0:
        return Scored(np.zeros(0), np.zeros(0, dtype=bool))
    if isinstance(features, pd.DataFrame):
        risk = detector.risk_score(features)
    else:
        risk = detector.risk_score_rows(features)
    return Scored(risk=risk, alert=risk > detector.threshold_)


def warmed_up(first_day: Any, day: Any) -> Any:
    """Whether a transaction on ``day`` is scored: its customer was first seen a week before.

    Days are bank-local day ordinals; scalars and numpy arrays alike.
    """
    return day - first_day >= WARMUP_DAYS


def explain(values: Sequence[float], names: Sequence[str] = FEATURE_NAMES) -> list[str]:
    """Up to three reasons, most unusual first, in words with their numbers."""
    ranked: list[tuple[float, str]] = []
    for name, value in zip(names, values, strict=True):
        explainer = EXPLAINERS.get(name)
        if explainer is None or not math.isfinite(value):
            continue
        how_unusual, sentence = explainer
        score = how_unusual(value)
        if score > 0:
            ranked.append((score, sentence(value)))
    ranked.sort(key=lambda item: -item[0])
    return [sentence for _, sentence in ranked[:TOP_REASONS]]


def anomaly_detection(
    tx: Transaction,
    *,
    risk: float,
    reasons: Sequence[str],
    values: Mapping[str, float],
    model_version: str,
    tz: tzinfo,
) -> Detection:
    """The alert for a transaction the model finds unusual; its id is stable per version."""
    return Detection(
        detection_id=detection_id("anomaly", model_version, tx.customer_id, tx.tx_id),
        detector=ANOMALY_DETECTOR,
        detector_version=model_version,
        outcome=Outcome.ALERT,
        severity=Severity.HIGH if risk >= HIGH_RISK else Severity.MEDIUM,
        customer_id=tx.customer_id,
        trigger_tx_id=tx.tx_id,
        tx_ids=(tx.tx_id,),
        reasons=tuple(reasons) or ("behaviour unlike this customer's history",),
        created_at=tx.timestamp,
        bank_day=tx.timestamp.astimezone(tz).date(),
        score=round(risk, 6),
        values={name: f"{value:.4g}" for name, value in values.items()},
    )
