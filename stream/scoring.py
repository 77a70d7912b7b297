"""Anomaly scoring in the worker: the model that follows the registry, features, batches.

The worker keeps every customer's :class:`~models.features.BehaviourProfile` up to date
whether or not a model is active, so a model activated later scores warmed-up customers
at once. Scoring happens per micro-batch, in one forest call, in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np

from core.customer import Customer
from core.detection import Detection
from core.errors import AmlwatchError
from core.transaction import Transaction
from models.detector import AnomalyDetector
from models.features import (
    FEATURE_NAMES,
    BehaviourProfile,
    CountryRiskFunction,
    country_risk_from_lists,
    feature_matrix,
)
from models.registry import active_version, load
from models.scoring import anomaly_detection, explain, score_batch, warmed_up
from rules.reference_data import RateTable, Reference
from rules.state import TxEvent
from stream.metrics import NO_MODEL, StreamMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveModel:
    """A loaded detector and the registry version it came from."""

    version: str
    detector: AnomalyDetector


class LiveModel:
    """The model the worker scores with: the registry's active version, once loaded.

    ``current`` changes only by assignment on the event loop, and the agent reads it
    once per micro-batch, so a new version takes over between batches. A version that
    cannot be used (other scikit-learn, other features, altered file) is refused once,
    with a logged error, and the previous model keeps scoring.
    """

    def __init__(self, registry: Path, metrics: StreamMetrics) -> None:
        self.registry = registry
        self.metrics = metrics
        self.current: ActiveModel | None = None
        self._tried: str | None = None  # the last version loaded or refused
        metrics.model.info({"version": NO_MODEL})

    def load_at_start(self) -> None:
        """Load the active version before the worker starts; say so when there is none."""
        wanted = active_version(self.registry)
        if self._worth_loading(wanted):
            assert wanted is not None
            try:
                self._swap(self._load(wanted))
            except AmlwatchError as exc:
                self._refuse(wanted, exc)
        if self.current is None:
            log.warning(
                "no usable anomaly model in %s: applying the rules only until one is activated",
                self.registry,
            )

    async def refresh(self) -> None:
        """Load the version ACTIVE names, if new, in a thread and swap it in."""
        wanted = await asyncio.to_thread(active_version, self.registry)
        if not self._worth_loading(wanted):
            return
        assert wanted is not None
        try:
            loaded = await asyncio.to_thread(self._load, wanted)
        except AmlwatchError as exc:
            self._refuse(wanted, exc)
            return
        self._swap(loaded)

    def _worth_loading(self, wanted: str | None) -> bool:
        # No pointer (never activated, or removed by hand): keep what scores now; there
        # is no "deactivate" command, so a vanished pointer is more likely a mistake.
        return wanted is not None and wanted != self._tried

    def _load(self, version: str) -> ActiveModel:
        return load_model(self.registry, version)

    def _swap(self, loaded: ActiveModel) -> None:
        previous = self.current
        self.current = loaded
        self._tried = loaded.version
        self.metrics.model.info({"version": loaded.version})
        log.warning(
            "anomaly model %s now scores transactions (was %s)",
            loaded.version,
            previous.version if previous else "rules only",
        )

    def _refuse(self, version: str, exc: AmlwatchError) -> None:
        self._tried = version
        still = self.current.version if self.current else "the rules only"
        log.error("anomaly model %s refused: %s; still scoring with %s", version, exc, still)


def load_model(registry: Path, version: str) -> ActiveModel:
    """``version`` from ``registry``, refused (AmlwatchError) unless it scores the
    features this code computes."""
    detector, _metadata = load(registry, version, expected_features=FEATURE_NAMES)
    return ActiveModel(version, detector)


class BehaviourTracker:
    """Applies each new transaction to its customer's profile, with features when due."""

    def __init__(self, rates: RateTable, country_risk: CountryRiskFunction) -> None:
        self.rates = rates
        self.country_risk = country_risk

    @classmethod
    def from_reference(cls, reference: Reference) -> BehaviourTracker:
        """The tracker of the worker whose rules read ``reference``: its rates, and
        country risk from its FATF lists."""
        lists = reference.country_lists
        return cls(reference.rates, country_risk_from_lists(grey=lists.grey, black=lists.black))

    def observe(
        self,
        profile: BehaviourProfile,
        tx: Transaction,
        customer: Customer | None,
        *,
        scoring: bool,
        event: TxEvent | None = None,
        local_time: datetime | None = None,
    ) -> list[float] | None:
        """The feature row of ``tx`` if it is to be scored (see
        :meth:`~models.features.BehaviourProfile.feature_row`; a :class:`ScoringBatch`
        finishes it), then ``tx`` applied to ``profile``.

        Scored: a model is active, the customer is known (type and risk rating are
        features) and past the warm-up. The profile is updated whatever the answer.
        ``event`` and ``local_time`` are what the rules made of ``tx``
        (:class:`~rules.engine.ProcessResult`; the event only if converted with this
        tracker's rates): the amount, event time and local time are then not worked
        out again.
        """
        if event is None:
            amount_cny, epoch = self.rates.to_cny(tx.amount, tx.currency), None
        else:
            amount_cny, epoch = event.amount_cny, event.at
        # Calendar, amount in fen and counterparty digest, worked out once for both calls.
        facts = profile.facts(tx, amount_cny, local_time=local_time, epoch=epoch)
        row = None
        if (
            scoring
            and customer is not None
            and profile.first_day is not None
            and warmed_up(profile.first_day, facts.day)
        ):
            row = profile.feature_row(tx, amount_cny, customer, self.country_risk, facts=facts)
        profile.update(tx, amount_cny, facts=facts)
        return row


@dataclass
class ScoringBatch:
    """The feature rows of one micro-batch, finished and scored together: one numpy
    call for their logarithms, one forest call."""

    transactions: list[Transaction] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)

    def add(self, tx: Transaction, row: list[float]) -> None:
        self.transactions.append(tx)
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def detections(self, model: ActiveModel, tz: tzinfo) -> list[Detection]:
        """The anomaly detections of the batch, explained; CPU-bound, run it in a thread."""
        if not self.rows:
            return []
        # A plain array in FEATURE_NAMES order: the model's names were checked at load.
        matrix = feature_matrix(self.rows)
        scored = score_batch(model.detector, matrix)
        detections = []
        for row in np.flatnonzero(scored.alert):
            values = matrix[row].tolist()
            detections.append(
                anomaly_detection(
                    self.transactions[row],
                    risk=float(scored.risk[row]),
                    reasons=explain(values),
                    values=dict(zip(FEATURE_NAMES, values, strict=True)),
                    model_version=model.version,
                    tz=tz,
                )
            )
        return detections
