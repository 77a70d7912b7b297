"""The backtest scores as the worker does: not in a customer's first week, known customers only."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from core.settings import Settings
from core.transaction import transaction_from_mapping
from models.scoring import WARMUP_DAYS
from rules.backtest import in_event_order
from stream.backtest_command import score_with_active_model
from stream.detection_engine import build_rule_engine
from stream.simulator import derive_rng, generate_history, generate_reference
from tests.integration.test_live_scoring import train_and_activate

TZ = ZoneInfo("Asia/Shanghai")
START = date(2026, 2, 1)


def test_each_customer_is_scored_from_a_week_after_their_first_transaction(
    tmp_path: Path,
) -> None:
    rng = derive_rng(3, "backtest-warmup")
    people, _managers = generate_reference(rng, 25, 2, as_of=START)
    history = in_event_order(
        transaction_from_mapping(document)
        for document in generate_history(rng, people, start=START, days=30, scenario_rate=20.0)
    )
    # A customer who opens an account in the middle of the file: everything looks new.
    newcomer = Counter(tx.customer_id for tx in history).most_common(1)[0][0]
    late_start = date(2026, 2, 15)
    transactions = [
        tx
        for tx in history
        if tx.customer_id != newcomer or tx.timestamp.astimezone(TZ).date() >= late_start
    ]
    stranger = next(c.customer_id for c in people if c.customer_id != newcomer)  # no KYC record
    directory = {c.customer_id: c for c in people if c.customer_id != stranger}
    registry = tmp_path / "models"
    # A generous alert budget, so that a newcomer's first days would surely alert.
    train_and_activate(registry, people, history, target_alert_rate=0.3)
    settings = Settings()

    scored = score_with_active_model(
        registry, transactions, directory, build_rule_engine(settings), settings
    )

    assert scored is not None
    _version, anomalies = scored
    first_day: dict[str, date] = {}
    for tx in transactions:
        first_day.setdefault(tx.customer_id, tx.timestamp.astimezone(TZ).date())
    days_in: dict[str, list[int]] = defaultdict(list)
    for detection in anomalies:
        days_in[detection.customer_id].append(
            (detection.bank_day - first_day[detection.customer_id]).days
        )
    assert anomalies
    assert min(min(days) for days in days_in.values()) == WARMUP_DAYS
    assert newcomer in days_in, "the newcomer is scored after their own warm-up"
    assert min(days_in[newcomer]) >= WARMUP_DAYS
    assert stranger not in days_in
