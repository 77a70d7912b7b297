"""The stream bench's floor pack loads and never fires on the bench's kind of stream."""

from __future__ import annotations

from datetime import date

from core.settings import Settings
from core.transaction import transaction_from_mapping
from rules.backtest import in_event_order, run_backtest
from rules.pack import load_pack
from stream.detection_engine import build_rule_engine
from stream.simulator import derive_rng, generate_history, generate_reference
from tests.bench.conftest import REPO_ROOT

FLOOR_PACK = REPO_ROOT / "bench" / "floor_pack.toml"


def test_the_floor_pack_never_fires_where_the_default_pack_does() -> None:
    assert [rule.id for rule in load_pack(FLOOR_PACK).rules] == ["BENCH-FLOOR-NEVER"]
    customers, _ = generate_reference(derive_rng(7, "floor"), 60, 3, as_of=date(2026, 1, 5))
    by_id = {customer.customer_id: customer for customer in customers}
    history = in_event_order(
        transaction_from_mapping(document)
        for document in generate_history(
            derive_rng(7, "floor-history"), customers, start=date(2026, 3, 2), days=9
        )
    )

    def detections(settings: Settings) -> int:
        return sum(1 for _ in run_backtest(history, by_id, build_rule_engine(settings)))

    assert detections(Settings()) > 0, "the stream is one the default pack finds things in"
    assert detections(Settings(rule_pack=FLOOR_PACK)) == 0
