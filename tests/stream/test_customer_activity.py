from __future__ import annotations

import json

from core.transaction import decode_transaction
from stream.app import apply_transaction


def tx(tx_id: str, timestamp: str = "2026-11-28T10:00:00+08:00"):  # type: ignore[no-untyped-def]
    return decode_transaction(
        json.dumps(
            {
                "tx_id": tx_id,
                "timestamp": timestamp,
                "customer_id": "C1",
                "account_id": "A1",
                "direction": "out",
                "amount": "10",
                "currency": "CNY",
                "channel": "card",
            }
        ).encode()
    )


def test_first_transaction_starts_the_customer_state() -> None:
    activity = apply_transaction(None, tx("t1"), keep_recent=16)
    assert activity.transactions == 1
    assert activity.recent_tx_ids == ["t1"]
    assert activity.last_event_at == tx("t1").event_epoch


def test_recent_ids_are_bounded_and_keep_the_newest() -> None:
    activity = None
    for index in range(40):
        activity = apply_transaction(activity, tx(f"t{index}"), keep_recent=16)
    assert activity is not None
    assert activity.transactions == 40
    assert activity.recent_tx_ids == [f"t{index}" for index in range(24, 40)]


def test_late_transaction_does_not_move_last_activity_back() -> None:
    activity = apply_transaction(None, tx("t1", "2026-11-28T10:00:00+08:00"), keep_recent=16)
    activity = apply_transaction(activity, tx("t0", "2026-11-27T10:00:00+08:00"), keep_recent=16)
    assert activity.last_event_at == tx("t1").event_epoch
    assert activity.transactions == 2
