"""Detections: what a rule (or later the model) found, before it becomes a case.

A detection with outcome ``report`` is a mandatory large-value report record; one with
outcome ``alert`` is a suspicion for the customer's account manager. Its
``detection_id`` is a stable idempotency key, so a replay produces the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from core.compiled import reduced_through_init


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Outcome(StrEnum):
    REPORT = "report"  # mandatory large-value transaction report, not an alert
    ALERT = "alert"  # suspicious, routed to the responsible account manager


def detection_id(*parts: str) -> str:
    """A stable id from the parts that make a detection unique."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"det-{digest[:24]}"


@dataclass(frozen=True, slots=True)
class Detection:
    """One rule hit (or anomaly) on one customer, with the evidence that triggered it."""

    detection_id: str
    detector: str  # rule id, or "anomaly"
    detector_version: str
    outcome: Outcome
    severity: Severity
    customer_id: str
    trigger_tx_id: str
    tx_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    created_at: datetime  # event time of the transaction that triggered it
    bank_day: date
    score: float = 1.0
    values: Mapping[str, str] = field(default_factory=dict)
    pack: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return reduced_through_init(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also the body of the alerts and reports topics)."""
        return {
            "detection_id": self.detection_id,
            "detector": self.detector,
            "detector_version": self.detector_version,
            "outcome": self.outcome.value,
            "severity": self.severity.value,
            "customer_id": self.customer_id,
            "trigger_tx_id": self.trigger_tx_id,
            "tx_ids": list(self.tx_ids),
            "reasons": list(self.reasons),
            "created_at": self.created_at.isoformat(),
            "bank_day": self.bank_day.isoformat(),
            "score": self.score,
            "values": dict(self.values),
            "pack": self.pack,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Detection:
        """Inverse of :meth:`to_dict`."""
        return cls(
            detection_id=document["detection_id"],
            detector=document["detector"],
            detector_version=str(document["detector_version"]),
            outcome=Outcome(document["outcome"]),
            severity=Severity(document["severity"]),
            customer_id=document["customer_id"],
            trigger_tx_id=document["trigger_tx_id"],
            tx_ids=tuple(document["tx_ids"]),
            reasons=tuple(document["reasons"]),
            created_at=datetime.fromisoformat(document["created_at"]),
            bank_day=date.fromisoformat(document["bank_day"]),
            score=float(document.get("score", 1.0)),
            values=dict(document.get("values") or {}),
            pack=document.get("pack"),
        )
