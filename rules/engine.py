"""The rule engine: one code path from a transaction and its customer's state to detections.

The live stream and the backtest both call :meth:`RuleEngine.process` with the same
kind of :class:`~rules.state.CustomerState`; nothing here knows about Kafka, files or
clocks. Detections are emitted at most once per key:

- ``report`` rules: once per customer, bank-local day, direction and rule (a PBoC
  large-value report lists every transaction of that day that makes up the total);
- ``alert`` rules: at most once per customer and rule within the rule's cool-down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from core.customer import Customer, CustomerType
from core.detection import Detection, Outcome, detection_id
from core.transaction import Transaction
from rules.expressions import EvalContext
from rules.pack import Rule, RulePack, customer_type_of
from rules.reference_data import Reference
from rules.state import CustomerState, TxEvent

RECENT_DETECTIONS_KEPT = 16


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What one transaction triggered, and whether it had been applied before.

    A new transaction's result carries the event the state took and the bank-local
    time it was worked out from, so that what else the caller does with the
    transaction (its behaviour profile, the case store's amounts) need not convert
    and localise it again; a redelivery's carries neither.
    """

    detections: tuple[Detection, ...]
    duplicate: bool
    event: TxEvent | None = None
    local_time: datetime | None = None

    # Written out, as TxEvent's is: the generated one is interpreted, and one result is
    # made per transaction (about 3% of the backtest's rules phase).
    def __init__(
        self,
        detections: tuple[Detection, ...],
        duplicate: bool,
        event: TxEvent | None = None,
        local_time: datetime | None = None,
    ) -> None:
        object.__setattr__(self, "detections", detections)
        object.__setattr__(self, "duplicate", duplicate)
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "local_time", local_time)


class RuleEngine:
    """Applies a transaction to its customer's state and evaluates the pack."""

    def __init__(self, pack: RulePack, reference: Reference, *, lateness_hours: int = 48) -> None:
        self.pack = pack
        self.reference = reference
        self.lateness_hours = lateness_hours
        # Events must stay for the longest window, plus late arrivals that still count.
        self.retention_seconds = (pack.longest_window_hours + lateness_hours) * 3600.0
        self.daily_days = max(pack.baseline_days, pack.longest_window_hours // 24) + 2
        self.fired_seconds = (
            max(
                self.retention_seconds,
                max((rule.cooldown_hours for rule in pack.rules), default=0) * 3600.0,
            )
            + 2 * 86_400
        )
        self._admitted: dict[tuple[Any, ...], tuple[Rule, ...]] = {}

    def to_event(self, tx: Transaction) -> TxEvent:
        """The state's view of ``tx``: bank-local day, amounts in CNY and USD."""
        return self._event(tx, tx.timestamp.astimezone(self.reference.timezone))

    def _event(self, tx: Transaction, local_time: datetime) -> TxEvent:
        reference = self.reference
        country = tx.counterparty_country
        return TxEvent(
            tx_id=tx.tx_id,
            at=tx.event_epoch,
            day=local_time.toordinal(),
            direction=tx.direction,
            channel=tx.channel,
            currency=tx.currency,
            amount_cny=reference.rates.to_cny(tx.amount, tx.currency),
            amount_usd=reference.rates.to_usd(tx.amount, tx.currency),
            counterparty=tx.counterparty_id or tx.counterparty_name,
            country=country,
            cross_border=country is not None and country != reference.bank_country,
        )

    def rules_for(
        self, tx: Transaction, customer_type: CustomerType, cross_border: bool
    ) -> tuple[Rule, ...]:
        """The pack's rules whose ``applies_to`` admits ``tx``, in pack order.

        ``applies_to`` reads only these five facts, so the answer is kept per combination:
        a handful of combinations cover a whole book of customers.
        """
        key = (tx.channel, tx.direction, customer_type, cross_border, tx.currency)
        admitted = self._admitted.get(key)
        if admitted is None:
            home = self.reference.home_currency
            admitted = self._admitted[key] = tuple(
                rule
                for rule in self.pack.rules
                if rule.applies_to.admits(tx, customer_type, cross_border, home)
            )
        return admitted

    def process(
        self,
        state: CustomerState,
        tx: Transaction,
        customer: Customer | None,
        position: tuple[str, int] | None = None,
    ) -> ProcessResult:
        """Apply ``tx`` to ``state`` (in place) and return what it triggered.

        ``position`` is where ``tx`` sits in an ordered input (stream name, offset), if
        the caller knows. A transaction already applied, by position or by tx_id, is a
        redelivery: the state is left alone and the detections it triggered the first
        time are returned again (their ids are stable, so downstream de-duplicates).
        """
        if state.has_seen(tx.tx_id, position):
            again = tuple(
                Detection.from_dict(document)
                for document in state.recent_detections
                if document["trigger_tx_id"] == tx.tx_id
            )
            return ProcessResult(again, duplicate=True)
        timezone = self.reference.timezone
        local_time = tx.timestamp.astimezone(timezone)
        event = self._event(tx, local_time)
        previous = state.last_event_at
        state.add(event)
        if position is not None:
            state.mark_position(position)
        detections: list[Detection] = []
        rules = self.rules_for(tx, customer_type_of(customer), event.cross_border)
        if rules:
            ctx = EvalContext(
                tx=tx,
                event=event,
                customer=customer,
                state=state,
                reference=self.reference,
                previous_event_at=previous,
                local_time=local_time,
            )
            for rule in rules:
                # Most rules stop at a guard, before _evaluate prepares the context.
                ctx.params = rule.params
                for guard in rule.guards:
                    if not guard(ctx):
                        break
                else:
                    detection = self._evaluate(rule, ctx)
                    if detection is not None:
                        detections.append(detection)
        if detections or state.recent_detections:
            state.remember_detections(detections, kept=RECENT_DETECTIONS_KEPT)
        newest = state.last_event_at or event.at
        # In event order the newest is this transaction, whose bank day is known.
        today = (
            event.day
            if newest == event.at
            else datetime.fromtimestamp(newest, timezone).date().toordinal()
        )
        state.expire(
            now=newest,
            today=today,
            retention_seconds=self.retention_seconds,
            daily_days=self.daily_days,
            fired_seconds=self.fired_seconds,
        )
        return ProcessResult(tuple(detections), False, event, local_time)

    def remember(self, state: CustomerState, detections: Iterable[Detection]) -> None:
        """Record detections made beside the pack (the anomaly model) for re-emission."""
        state.remember_detections(detections, kept=RECENT_DETECTIONS_KEPT)

    def _evaluate(self, rule: Rule, ctx: EvalContext) -> Detection | None:
        """``rule`` over ``ctx`` once its guards passed: the detection, or None."""
        ctx.pending_values = rule.values
        # Emptied rather than replaced: a detection copies what it keeps of them. They
        # hold the previous rule's values, or what the guards noted and selected.
        values, notes, touched = ctx.values, ctx.notes, ctx.touched
        if values:
            values.clear()
        if notes:
            notes.clear()
        if touched:
            touched.clear()
        if not rule.when(ctx):
            return None
        event, state = ctx.event, ctx.state
        day = date.fromordinal(event.day)
        if rule.outcome is Outcome.REPORT:
            key = f"{rule.id}|{day.isoformat()}|{event.direction.value}"
            if key in state.fired:
                return None
            identity: tuple[str, ...] = (day.isoformat(), event.direction.value)
        else:
            key = rule.id
            fired_at = state.fired.get(key)
            if fired_at is not None and event.at - fired_at < rule.cooldown_hours * 3600:
                return None
            identity = (event.tx_id,)
        state.fired[key] = event.at
        # Every value goes into the reason and the evidence, not only those `when` needed.
        for name, compute in rule.values.items():
            if name not in ctx.values:
                ctx.values[name] = compute(ctx)
        evidence = {e.tx_id: e for selection in ctx.touched for e in selection}
        evidence[event.tx_id] = event
        tx_ids = tuple(e.tx_id for e in sorted(evidence.values(), key=lambda e: (e.at, e.tx_id)))
        facts = self._facts(rule, ctx, day, len(tx_ids))
        score = float(ctx.notes["watchlist_score"]) if "watchlist_score" in ctx.notes else 1.0
        return Detection(
            detection_id=detection_id(rule.id, str(rule.version), ctx.tx.customer_id, *identity),
            detector=rule.id,
            detector_version=str(rule.version),
            outcome=rule.outcome,
            severity=rule.severity,
            customer_id=ctx.tx.customer_id,
            trigger_tx_id=event.tx_id,
            tx_ids=tx_ids,
            reasons=(f"{rule.title}: {rule.reason.format(**facts)}",),
            created_at=ctx.tx.timestamp,
            bank_day=day,
            score=score,
            values={name: _text(value) for name, value in ctx.values.items()} | ctx.notes,
            pack=self.pack.label,
        )

    def _facts(self, rule: Rule, ctx: EvalContext, day: date, tx_count: int) -> dict[str, Any]:
        tx, event = ctx.tx, ctx.event
        facts: dict[str, Any] = {
            "direction": "inflow" if event.direction.value == "in" else "outflow",
            "channel": tx.channel.value,
            "currency": tx.currency,
            "amount": tx.amount,
            "amount_cny": event.amount_cny,
            "day": day.isoformat(),
            "tx_count": tx_count,
            "country": "",
            "fatf_list": "",
            "fatf_as_of": "",
            "watchlist_entry": "",
            "watchlist_list": "",
            "watchlist_score": "",
        }
        facts.update(ctx.notes)
        facts.update(rule.params)
        facts.update(ctx.values)
        return facts


def _text(value: Any) -> str:
    """Evidence values as text: integers plain, fractions to 4 places, infinity as such."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral():
            return format(value.normalize(), "f")
        return format(value.quantize(Decimal("0.0001")).normalize(), "f")
    return str(value)
