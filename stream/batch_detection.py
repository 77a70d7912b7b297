"""One micro-batch's detection work on the worker, apart from the broker and the table.

The rules run transaction by transaction; the anomaly model scores the whole batch at
the end, in one forest call. What the rules left in a customer's state by then is
therefore the state after the batch's *last* transaction, not after the scored one, and
the anomaly cool-down must not be read from it: on a backlog a batch spans days of
event time, and the rules' expiry (relative to the newest event) can drop the memory of
an alert that a transaction earlier in the same batch is still within 24 hours of. The
cool-down is read when the batch first meets the customer, as the backtest's running
dict of last alerts would hold it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo

from core.customer import Customer
from core.detection import Detection
from core.transaction import Transaction
from models.scoring import AnomalyCooldowns
from rules.engine import ProcessResult, RuleEngine
from stream.customer_table import CustomerRecord
from stream.scoring import BehaviourTracker, ScoringBatch

# Where a customer's state remembers its last anomaly alert (beside the rules' cool-downs).
ANOMALY_COOLDOWN_KEY = "anomaly:cooldown"


@dataclass
class BatchDetection:
    """Rules and profile updates per transaction, then the anomaly alerts the batch keeps.

    Each customer's record is read once (``read_record``) and changed in place; the
    caller stages ``changed`` and scores ``to_score`` (when ``scoring``).
    """

    engine: RuleEngine
    behaviour: BehaviourTracker
    customer_of: Callable[[str], Customer | None]
    read_record: Callable[[str], CustomerRecord | None]
    tz: tzinfo
    scoring: bool
    working: dict[str, CustomerRecord] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    applied: list[tuple[Transaction, ProcessResult]] = field(default_factory=list)
    to_score: ScoringBatch = field(default_factory=ScoringBatch)
    # Seeded with each customer's last anomaly alert as the batch first found it.
    cooldowns: AnomalyCooldowns = field(default_factory=AnomalyCooldowns)
    # The profile takes the rules' event (its converted amount) when both convert with
    # one rate table.
    _rules_convert_alike: bool = field(init=False)

    def __post_init__(self) -> None:
        self._rules_convert_alike = self.behaviour.rates is self.engine.reference.rates

    def apply(self, tx: Transaction, position: tuple[str, int] | None) -> ProcessResult:
        """Apply ``tx`` to its customer's record; InvalidInput when it cannot be processed
        here (nothing is changed then)."""
        customer_id = tx.customer_id
        record = self.working.get(customer_id)
        if record is None:
            record = self.read_record(customer_id) or CustomerRecord.new(self.tz)
            self.working[customer_id] = record
            last = record.rules.fired.get(ANOMALY_COOLDOWN_KEY)
            if last is not None:
                self.cooldowns.last_alert_at[customer_id] = last
        customer = self.customer_of(customer_id)
        result = self.engine.process(record.rules, tx, customer, position)
        self.applied.append((tx, result))
        if not result.duplicate:
            self.changed.add(customer_id)
            row = self.behaviour.observe(
                record.profile,
                tx,
                customer,
                scoring=self.scoring,
                event=result.event if self._rules_convert_alike else None,
                local_time=result.local_time,
            )
            if row is not None:
                self.to_score.add(tx, row)
        return result

    def take_anomalies(self, found: Sequence[Detection]) -> dict[str, Detection]:
        """The anomaly detections outside their customer's cool-down, by trigger tx_id, in
        the order found (the batch's); each customer's record remembers the last taken
        and keeps the detections for re-emission on a redelivery."""
        kept = []
        for detection in found:
            at = detection.created_at.timestamp()
            if self.cooldowns.take(detection.customer_id, at):
                rules = self.working[detection.customer_id].rules
                rules.fired[ANOMALY_COOLDOWN_KEY] = at
                self.engine.remember(rules, (detection,))
                kept.append(detection)
        return {detection.trigger_tx_id: detection for detection in kept}
